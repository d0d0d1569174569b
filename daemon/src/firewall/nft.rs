//! Runs the `nft` program, the only process weftd starts. Like Kubernetes' knftables,
//! weftd drives `nft` with a script on stdin: `nft -f` applies a whole script as one
//! transaction, so a failed script changes nothing.

use super::table::Table;
use crate::error::{Error, Result};
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `nft -f -` with `script` on stdin.
pub fn apply(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(cannot_run)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| Error::Firewall(format!("writing to nft: {e}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| Error::Firewall(format!("waiting for nft: {e}")))?;
    refused("the script", &output)
}

/// `nft -j list table <family> <name>`: the table as JSON, `None` when it does not
/// exist.
pub fn list_table(table: Table) -> Result<Option<Vec<u8>>> {
    let output = Command::new("nft")
        .args(["-j", "list", "table", table.family(), table.name()])
        .stdin(Stdio::null())
        .output()
        .map_err(cannot_run)?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() && stderr.contains("No such file or directory") {
        return Ok(None);
    }
    refused(&format!("listing table {table}"), &output)?;
    Ok(Some(output.stdout))
}

fn cannot_run(e: std::io::Error) -> Error {
    Error::Firewall(format!(
        "cannot run nft (is the nftables package installed?): {e}"
    ))
}

fn refused(what: &str, output: &Output) -> Result<()> {
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Firewall(format!(
        "nft refused {what} ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}
