//! The names this machine destroyed, so `destroy-node NAME` run again (a retried CI step, a
//! second `make clean`) exits 0 "already gone" as documented, while a name it never destroyed
//! and cannot find is still exit 1 "not found" — a typo must not look like success. One empty
//! file per provider and name under the state directory; records older than 30 days are pruned
//! when a new one is written.

use crate::state;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// How long a record is kept.
const KEEP: Duration = Duration::from_secs(30 * 24 * 3600);

fn dir(provider: &str) -> PathBuf {
    state::state_dir().join("destroyed").join(provider)
}

/// Records that `name` was destroyed on `provider`; best effort (a failure only costs the
/// "already gone" answer later).
pub fn record(provider: &str, name: &str) {
    let dir = dir(provider);
    if state::ensure_dir(&dir).is_err() {
        return;
    }
    let _ = std::fs::write(dir.join(name), b"");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let now = SystemTime::now();
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > KEEP);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Whether this machine destroyed `name` on `provider` (within the last 30 days).
pub fn was_destroyed(provider: &str, name: &str) -> bool {
    !name.contains('/') && dir(provider).join(name).is_file()
}
