//! `weft`, the CNI plugin: wires a pod's interface with a /128 IPv6 and a /32 IPv4 address
//! from weftd and answers the runtime per CNI spec 1.1.0.
//!
//! The story of one run: read the environment and stdin ([`invocation`]), parse the
//! config ([`config`]), do the command ([`commands`]) talking to weftd ([`daemon`]) and
//! the kernel ([`wiring`]), then print the result ([`result`]) or the error object
//! ([`error`]), and tell weftd how it went, for its metrics.
#![forbid(unsafe_code)]

mod commands;
mod config;
mod daemon;
mod error;
mod invocation;
mod result;
mod wiring;

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;
use weft_wire::Request;

fn main() -> ExitCode {
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
        Ok(None) => ExitCode::SUCCESS,
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

fn print(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|_| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

fn fail(error: &error::CniError, cni_version: &str) -> ExitCode {
    eprintln!("weft: {error}");
    let _ = print(&error.to_json(cni_version, None));
    ExitCode::FAILURE
}
