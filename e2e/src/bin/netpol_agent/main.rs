//! The NetworkPolicy tests' agent, run inside pod namespaces.
//!
//! ```text
//! netpol_agent serve PORT...
//! netpol_agent echo PORT
//! netpol_agent probe --timeout-ms N [--in-flight K] TARGET...     TARGET = tcp|udp/ADDR/PORT
//! netpol_agent probe-loop --until FILE --interval-ms N --timeout-ms N TARGET...
//! netpol_agent stream --until FILE --interval-ms N --size BYTES TARGET    (tcp only)
//! netpol_agent flood --pps N --port P ADDR...
//! ```
//!
//! `serve` listens on `[::]` (both families: IPV6_V6ONLY is off by default on Linux) on
//! each port, TCP and UDP: a TCP connection gets one byte and is closed, a UDP datagram
//! is echoed. It prints `serving PORT...` once every socket is bound, then runs until
//! killed. `echo` is a TCP echo server on `[::]:PORT` (every connection echoed until it
//! ends), printing `echoing PORT` once bound.
//!
//! `probe` tries the targets concurrently (at most K in flight, 16 unless told) and prints
//! `TARGET ok` or `TARGET fail` per target, in the order given. A TCP target is ok when the
//! byte arrives within the timeout (a connection a policy lets through but whose reply it
//! drops is a failure), and the probe then resets the connection (no TIME_WAIT on either
//! side); a UDP target when the echo does. `probe-loop` starts one such
//! probe of every target every interval until FILE exists, then prints
//! `TARGET tries=N ok=M ok_at=T,...` per target (or `missed_at=`: the Unix millisecond
//! starts of the rarer outcome's first ten tries). A UDP echo counts only from the
//! target's address and port.
//!
//! `stream` sends a numbered chunk every interval over one TCP connection to an `echo`
//! server and checks every echoed byte, until FILE exists; it then closes its sending
//! side, reads the rest and prints `stream TARGET chunks=N max_gap_ms=G max_gap_ended_s=T`,
//! G being the longest time between two echoed chunks and T when it ended (seconds
//! after the `streaming` line). Any error (a reset, a wrong byte, a short
//! echo) prints `stream TARGET error ...` and exits 1.
//!
//! `flood` sends to every ADDR, from as many threads, N UDP datagrams and N TCP SYNs a
//! second to port P (each SYN a fresh connection attempt abandoned at once, so only the
//! SYN leaves), whatever the answers; it prints `flooding` once started, then runs until
//! killed.

mod flood;
mod probe;
mod serve;
mod stream;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

const USAGE: &str = "usage: netpol_agent serve PORT... | echo PORT \
     | probe --timeout-ms N [--in-flight K] TARGET... \
     | probe-loop --until FILE --interval-ms N --timeout-ms N TARGET... \
     | stream --until FILE --interval-ms N --size BYTES TARGET \
     | flood --pps N --port P ADDR...   (TARGET = tcp|udp/ADDR/PORT)";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
}

/// One `tcp|udp/ADDR/PORT` argument.
#[derive(Debug, Clone)]
struct Target {
    text: String,
    transport: Transport,
    addr: SocketAddr,
}

fn parse_target(text: &str) -> Result<Target, String> {
    let mut parts = text.split('/');
    let (Some(transport), Some(addr), Some(port), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("target {text:?} is not tcp|udp/ADDR/PORT"));
    };
    let transport = match transport {
        "tcp" => Transport::Tcp,
        "udp" => Transport::Udp,
        other => return Err(format!("target {text:?}: unknown transport {other:?}")),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|e| format!("target {text:?}: address: {e}"))?;
    let port: u16 = port
        .parse()
        .map_err(|e| format!("target {text:?}: port: {e}"))?;
    Ok(Target {
        text: text.to_owned(),
        transport,
        addr: SocketAddr::new(addr, port),
    })
}

/// A command line: `--flag value` pairs and the other words, in order.
#[derive(Debug, Default)]
struct Args {
    flags: Vec<(String, String)>,
    words: Vec<String>,
}

impl Args {
    fn parse(args: &[String]) -> Result<Args, String> {
        let mut parsed = Args::default();
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            if arg.starts_with("--") {
                let value = rest.next().ok_or_else(|| format!("{arg} needs a value"))?;
                parsed.flags.push((arg.clone(), value.clone()));
            } else {
                parsed.words.push(arg.clone());
            }
        }
        Ok(parsed)
    }

    /// The value of `flag`, parsed; `None` when absent.
    fn optional<T: FromStr>(&self, flag: &str) -> Result<Option<T>, String>
    where
        T::Err: std::fmt::Display,
    {
        let Some((_, value)) = self.flags.iter().find(|(f, _)| f == flag) else {
            return Ok(None);
        };
        value
            .parse()
            .map(Some)
            .map_err(|e| format!("{flag} {value:?}: {e}"))
    }

    /// The value of `flag`, parsed; an error when absent.
    fn required<T: FromStr>(&self, flag: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        self.optional(flag)?
            .ok_or_else(|| format!("{flag} is required"))
    }

    /// Refuses flags not in `known`.
    fn only(&self, known: &[&str]) -> Result<(), String> {
        match self
            .flags
            .iter()
            .find(|(f, _)| !known.contains(&f.as_str()))
        {
            Some((flag, _)) => Err(format!("unknown flag {flag}")),
            None => Ok(()),
        }
    }

    fn targets(&self) -> Result<Vec<Target>, String> {
        if self.words.is_empty() {
            return Err("no target".into());
        }
        self.words.iter().map(|t| parse_target(t)).collect()
    }

    fn until(&self) -> Result<PathBuf, String> {
        self.required("--until")
    }
}

fn ports(words: &[String]) -> Result<Vec<u16>, String> {
    if words.is_empty() {
        return Err("at least one port is needed".into());
    }
    words
        .iter()
        .map(|a| a.parse().map_err(|e| format!("port {a:?}: {e}")))
        .collect()
}

fn run(command: &str, args: &Args) -> Result<(), String> {
    match command {
        "serve" => {
            args.only(&[])?;
            serve::serve(&ports(&args.words)?)
        }
        "echo" => {
            args.only(&[])?;
            match ports(&args.words)?.as_slice() {
                [port] => serve::echo(*port),
                _ => Err("echo takes one port".into()),
            }
        }
        "probe" => probe::probe(args),
        "probe-loop" => probe::probe_loop(args),
        "stream" => stream::stream(args),
        "flood" => flood::flood(args),
        other => Err(format!("unknown command {other:?}")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.split_first() {
        Some((command, rest)) => Args::parse(rest).and_then(|a| run(command, &a)),
        None => Err("no command".into()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netpol_agent: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
