//! `weft`, the CNI plugin: wires a pod's interface with a /128 IPv6 and a /32 IPv4 address
//! from weftd and answers the runtime per CNI spec 1.1.0.
//!
//! The story of one run: read the environment and stdin ([`invocation`]), parse the
//! config ([`config`]; a pod that keeps one family says so in [`families`]), do the
//! command ([`commands`]) talking to weftd ([`daemon`]) and the kernel ([`wiring`]),
//! then print the result ([`result`]) or the error object ([`error`]), and tell weftd
//! how it went, for its metrics.
//!
//! The process starts at [`main`], a C entry point, not std's runtime start-up: see there.
#![cfg_attr(not(test), no_main)]
#![deny(unsafe_code)]

mod commands;
mod config;
mod daemon;
mod error;
mod families;
mod invocation;
mod result;
mod wiring;

use std::collections::HashMap;
use std::ffi::c_int;
use std::io::Write;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::time::Instant;
use weft_wire::Request;

/// The exit statuses: CNI reads failure from the error object on stdout.
const SUCCESS: c_int = 0;
const FAILURE: c_int = 1;

/// The process entry, in place of std's runtime start-up, which the plugin does not
/// need: it maps an alternate signal stack and installs a stack-overflow handler whose
/// set-up reads `/proc/self/maps` (glibc's `pthread_getattr_np`). That was 70 µs of a
/// ~0.5 ms process floor, on every pod start (a static test binary, 512 µs against
/// 441 µs per spawn, medians of 5 x 400). Of what it did, weft keeps the open standard
/// descriptors ([`keep_standard_fds_open`]). Not kept: SIGPIPE ignored (a runtime
/// that closes the plugin's stdout before reading the result ends it by that signal;
/// the weftd socket is written with `MSG_NOSIGNAL` either way) and the overflow
/// message (an overflow still ends the process, by SIGSEGV).
///
/// Exporting the `main` symbol is the only unsafe construct in weft; it touches no memory.
#[cfg(not(test))]
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: c_int, _argv: *const *const std::ffi::c_char) -> c_int {
    keep_standard_fds_open();
    run()
}

/// Descriptors 0-2 open (std's start-up did this): a closed one gets /dev/null, so no
/// file the plugin opens takes stdout's place and receives the result.
#[cfg_attr(test, allow(dead_code))]
fn keep_standard_fds_open() {
    while let Ok(null) = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        if null.as_raw_fd() > 2 {
            break;
        }
        // It fills a closed standard descriptor: keep it open.
        let _ = null.into_raw_fd();
    }
}

#[cfg_attr(test, allow(dead_code))]
fn run() -> c_int {
    let started = Instant::now();
    let env: HashMap<String, String> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let invocation = match invocation::Invocation::parse(&env, std::io::stdin().lock()) {
        Ok(invocation) => invocation,
        Err(e) => return fail(&e, config::LATEST),
    };
    let outcome = commands::execute(&invocation);
    let label = match &outcome.result {
        Ok(_) => "ok",
        Err(e) => e.label(),
    };
    let code = match &outcome.result {
        Ok(Some(text)) => print(text),
        Ok(None) => SUCCESS,
        Err(e) => fail(e, &outcome.cni_version),
    };
    if let Some(mut daemon) = outcome.daemon {
        daemon.report(&Request::Report {
            operation: invocation.command,
            result: label.to_owned(),
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    code
}

fn print(text: &str) -> c_int {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|_| out.flush()) {
        Ok(()) => SUCCESS,
        Err(_) => FAILURE,
    }
}

fn fail(error: &error::CniError, cni_version: &str) -> c_int {
    eprintln!("weft: {error}");
    let _ = print(&error.to_json(cni_version, None));
    FAILURE
}
