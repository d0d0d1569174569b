//! The policy inputs' local copy (`<state dir>/kubernetes-policy.json`): a weftd
//! restarting while the apiserver is unreachable judges new pods by the last word it had
//! from the controller instead of isolating every one of them, as the node's allocation
//! is kept for the same reason (`kube/allocation.rs`). Written by rename, so a crash
//! leaves the old copy or the new, never a torn one.

use std::path::{Path, PathBuf};

use tracing::warn;

use super::inputs::{PolicyInputs, SavedInputs};

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("kubernetes-policy.json")
}

/// The saved inputs, if any could be read; an unreadable copy is said and ignored.
pub fn load(state_dir: &Path) -> Option<PolicyInputs> {
    let path = path(state_dir);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read the saved NetworkPolicy inputs");
            return None;
        }
    };
    match serde_json::from_slice::<SavedInputs>(&text) {
        Ok(saved) => Some(PolicyInputs::restored(saved)),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "ignoring the saved NetworkPolicy inputs");
            None
        }
    }
}

/// Saves `inputs`, replacing the previous copy at once.
pub fn save(state_dir: &Path, inputs: &PolicyInputs) -> std::io::Result<()> {
    let tmp = state_dir.join(".kubernetes-policy.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&inputs.saved())?)?;
    std::fs::rename(tmp, path(state_dir))
}

#[cfg(test)]
#[path = "../tests/policy_saved.rs"]
mod tests;
