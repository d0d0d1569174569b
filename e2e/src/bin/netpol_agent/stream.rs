//! `stream`: one long-lived TCP connection to an `echo` server, a numbered chunk sent
//! every interval and every echoed byte checked, so that a stall shows as a gap between
//! echoed chunks and a reset, a loss or a corruption as an error.

use super::{Args, Target, Transport};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long the connection may take to open.
const CONNECT: Duration = Duration::from_secs(2);

/// Chunk `seq`: its number (8 bytes, big endian), then bytes that depend on it.
fn chunk(seq: u64, size: usize) -> Vec<u8> {
    let mut bytes = seq.to_be_bytes().to_vec();
    bytes.extend((8..size).map(|i| (seq as usize).wrapping_add(i) as u8));
    bytes
}

pub fn stream(args: &Args) -> Result<(), String> {
    args.only(&["--until", "--interval-ms", "--size"])?;
    let until = args.until()?;
    let interval = Duration::from_millis(args.required("--interval-ms")?);
    let size: usize = args.required("--size")?;
    if size < 8 {
        return Err("--size must be at least 8 (the chunk's number)".into());
    }
    let target = match args.targets()?.as_slice() {
        [t] if t.transport == Transport::Tcp => t.clone(),
        _ => return Err("stream takes one tcp/ADDR/PORT target".into()),
    };
    let outcome = run(&target, &until, interval, size);
    match outcome {
        Ok(Echoed {
            chunks,
            max_gap,
            max_gap_ended,
        }) => {
            let gap = max_gap.as_secs_f64() * 1000.0;
            let at = max_gap_ended.as_secs_f64();
            println!(
                "stream {} chunks={chunks} max_gap_ms={gap:.1} max_gap_ended_s={at:.3}",
                target.text
            );
            Ok(())
        }
        Err(e) => {
            println!("stream {} error {e}", target.text);
            std::process::exit(1);
        }
    }
}

/// What came back.
#[derive(Debug, Clone, Copy)]
struct Echoed {
    chunks: u64,
    /// The longest time between two echoed chunks.
    max_gap: Duration,
    /// When it ended, from the `streaming` line.
    max_gap_ended: Duration,
}

/// Streams until `until` exists.
fn run(
    target: &Target,
    until: &std::path::Path,
    interval: Duration,
    size: usize,
) -> Result<Echoed, String> {
    let stream =
        TcpStream::connect_timeout(&target.addr, CONNECT).map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let reader = stream.try_clone().map_err(|e| e.to_string())?;
    super::serve::announce(&format!("streaming {}", target.text));
    let started = Instant::now();
    let failed = AtomicBool::new(false);
    std::thread::scope(|s| {
        let echoed = s.spawn(|| {
            let outcome = read_echoes(reader, size, started);
            if outcome.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            outcome
        });
        let sent = send_chunks(&stream, until, interval, size, &failed);
        let _ = stream.shutdown(Shutdown::Write);
        let echoed = echoed.join().map_err(|_| "the reader panicked")??;
        let sent = sent?;
        if echoed.chunks != sent {
            return Err(format!("{sent} chunks sent, {} echoed", echoed.chunks));
        }
        Ok(echoed)
    })
}

/// Sends chunk after chunk, one per interval, until `until` exists or the reader failed;
/// how many.
fn send_chunks(
    mut stream: &TcpStream,
    until: &std::path::Path,
    interval: Duration,
    size: usize,
    failed: &AtomicBool,
) -> Result<u64, String> {
    let mut seq = 0;
    let mut next = Instant::now();
    while !until.exists() && !failed.load(Ordering::Relaxed) {
        stream
            .write_all(&chunk(seq, size))
            .map_err(|e| format!("write of chunk {seq}: {e}"))?;
        seq += 1;
        next += interval;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    Ok(seq)
}

/// Reads and checks echoed chunks until the server closes.
fn read_echoes(mut stream: TcpStream, size: usize, started: Instant) -> Result<Echoed, String> {
    let mut buffer = vec![0u8; size];
    let mut echoed = Echoed {
        chunks: 0,
        max_gap: Duration::ZERO,
        max_gap_ended: Duration::ZERO,
    };
    let mut last: Option<Instant> = None;
    loop {
        let seq = echoed.chunks;
        match read_chunk(&mut stream, &mut buffer) {
            Ok(false) => return Ok(echoed),
            Ok(true) => {}
            Err(e) => return Err(format!("read after {seq} chunks: {e}")),
        }
        let now = Instant::now();
        if let Some(gap) = last.map(|last| now - last) {
            if gap > echoed.max_gap {
                echoed.max_gap = gap;
                echoed.max_gap_ended = now - started;
            }
        }
        last = Some(now);
        if buffer != chunk(seq, size) {
            return Err(format!("chunk {seq} came back altered"));
        }
        echoed.chunks += 1;
    }
}

/// Fills `buffer`; false on a clean end before its first byte.
fn read_chunk(stream: &mut TcpStream, buffer: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buffer.len() {
        match stream.read(&mut buffer[filled..])? {
            0 if filled == 0 => return Ok(false),
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => filled += n,
        }
    }
    Ok(true)
}
