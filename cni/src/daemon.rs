//! The plugin's side of the weftd socket: plain blocking I/O, one connection per run.

use crate::error::{CniError, Result};
use std::io::{BufReader, ErrorKind as IoKind};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;
use weft_wire::{read_message, write_message, ErrorKind, Request, Response};

/// How long weftd may take to answer. ADD can wait for the removal of a previous veth of
/// the same attachment; anything longer means the daemon is stuck.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to weftd.
#[derive(Debug)]
pub struct Daemon {
    reader: BufReader<UnixStream>,
    socket: String,
}

impl Daemon {
    /// Connects; a missing or refusing socket is "plugin not available" (code 50).
    pub fn connect(socket: &Path) -> Result<Daemon> {
        let name = socket.display().to_string();
        let stream = UnixStream::connect(socket).map_err(|e| {
            CniError::DaemonUnavailable(format!("weftd is not reachable at {name}: {e}"))
        })?;
        stream
            .set_read_timeout(Some(ANSWER_TIMEOUT))
            .and_then(|_| stream.set_write_timeout(Some(ANSWER_TIMEOUT)))
            .map_err(|e| CniError::Io(format!("configuring the socket {name}: {e}")))?;
        Ok(Daemon {
            reader: BufReader::new(stream),
            socket: name,
        })
    }

    /// Sends `request` and waits for the answer, turning daemon refusals into errors.
    pub fn call(&mut self, request: &Request) -> Result<Response> {
        self.send(request)?;
        self.receive()
    }

    /// Sends `request` without waiting, so the caller can work while weftd does.
    pub fn send(&mut self, request: &Request) -> Result<()> {
        write_message(self.reader.get_mut(), request).map_err(|e| self.lost(e))
    }

    /// Waits for the answer to the last request sent.
    pub fn receive(&mut self) -> Result<Response> {
        let response: Option<Response> =
            read_message(&mut self.reader).map_err(|e| self.lost(e))?;
        let response = response.ok_or_else(|| {
            CniError::DaemonUnavailable(format!(
                "weftd at {} closed the connection without answering",
                self.socket
            ))
        })?;
        match response {
            Response::Error { kind, message, .. } => Err(match kind {
                ErrorKind::Exhausted => CniError::Exhausted(message),
                ErrorKind::CoolingDown | ErrorKind::NotReady => CniError::TryAgainLater(message),
                ErrorKind::AlreadyAllocated => CniError::AlreadyAllocated(message),
                ErrorKind::BadRequest => CniError::InvalidConfig(message),
                ErrorKind::Internal => CniError::DaemonInternal(message),
            }),
            other => Ok(other),
        }
    }

    fn lost(&self, e: std::io::Error) -> CniError {
        match e.kind() {
            IoKind::WouldBlock | IoKind::TimedOut => CniError::TryAgainLater(format!(
                "weftd at {} did not answer within {ANSWER_TIMEOUT:?}",
                self.socket
            )),
            _ => CniError::DaemonUnavailable(format!(
                "weftd at {} did not answer like weftd: {e}",
                self.socket
            )),
        }
    }

    /// An answer of the wrong shape for the request.
    pub fn unexpected(&self, response: &Response) -> CniError {
        let text = serde_json::to_string(response).unwrap_or_else(|_| format!("{response:?}"));
        CniError::DaemonUnavailable(format!(
            "weftd at {} answered with an unexpected message: {text}",
            self.socket
        ))
    }

    /// Reports the outcome of this run for metrics, without waiting for anything.
    pub fn report(&mut self, request: &Request) {
        let _ = write_message(self.reader.get_mut(), request);
    }
}
