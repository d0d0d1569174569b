//! The plugin's whole input: the CNI_* environment and stdin, parsed as `main` parses
//! them (lossy UTF-8 environment, `Invocation::parse`, then the config on stdin).
//!
//! Input format, so seeds stay readable: `KEY=VALUE` lines, then a NUL byte, then stdin.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use weft_fuzz::config::NetConf;
use weft_fuzz::invocation::{Command, Invocation};

fuzz_target!(|data: &[u8]| {
    let (env_text, stdin) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let env: HashMap<String, String> = String::from_utf8_lossy(env_text)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let Ok(invocation) = Invocation::parse(&env, stdin) else {
        return;
    };
    assert_eq!(invocation.stdin, stdin);
    if matches!(
        invocation.command,
        Command::Add | Command::Del | Command::Check
    ) {
        let attachment = invocation
            .attachment
            .as_ref()
            .expect("ADD, DEL, CHECK name one");
        assert_eq!(Some(&attachment.container_id), env.get("CNI_CONTAINERID"));
        assert_eq!(Some(&attachment.ifname), env.get("CNI_IFNAME"));
    }
    if let Some(netns) = &invocation.netns {
        assert!(netns.is_absolute());
    }
    if let Some(mac) = invocation.mac {
        assert!(mac[0] & 1 == 0 && mac != [0; 6]);
    }
    let _ = NetConf::parse(&invocation.stdin);
});
