//! The state directory and atomic writes. Drivers that keep records on this machine (local
//! nodes, deployed static hosts), deploy journals and description files all write through here,
//! so a crash or a full disk never leaves a half-written file behind: a write goes to a
//! temporary file in the same directory, is synced, then renamed over the target.

use crate::error::{Error, Result};
use serde::Serialize;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The environment variable that overrides the state directory (tests, CI sandboxes).
pub(crate) const STATE_DIR_ENV: &str = "PROVISION_STATE_DIR";

/// Where provision keeps its records: `$PROVISION_STATE_DIR` when set and not empty, else the
/// platform state directory (`$XDG_STATE_HOME` or `~/.local/state`) plus `/provision`.
///
/// Only computes the path; [`ensure_dir`] (and every write here) creates it on demand.
pub(crate) fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let base = dirs::state_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".local").join("state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("provision")
}

/// Creates `dir` and any missing parents with mode 0700 (records may name hosts and keys).
/// Existing directories keep their mode.
pub(crate) fn ensure_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))
}

/// Writes `bytes` to `path` with permission bits `mode`, atomically: a temporary file in the
/// same directory is written, fsynced and renamed over `path`, then the directory is synced.
/// Readers see the old content or the new, never a mix. The parent directory is created
/// (0700) if missing.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    ensure_dir(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fail = |e: std::io::Error| Error::io(format!("cannot write {}", path.display()), e);
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(fail)?;
    // The temp file starts 0600; set the final mode before any byte lands in it.
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(fail)?;
    tmp.write_all(bytes).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    // Make the rename itself durable; not every filesystem lets a directory be synced.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Checks, without leaving anything behind, that [`write_atomic`] could write `path`: it is
/// not a directory (nor a non-regular file such as `/proc/version` or a FIFO), and its
/// directory — or the nearest existing ancestor, when the directory will be created — takes
/// a new file (probed with a temporary file, which also catches read-only mounts and `/proc`).
/// `what` names the flag in the message (`-d`, `--junit`).
pub(crate) fn check_writable(what: &str, path: &Path) -> Result<()> {
    let bad = |why: String| Error::usage(format!("{what} {}: {why}", path.display()));
    if path.as_os_str().is_empty() || path.to_string_lossy().ends_with('/') {
        return Err(bad("give a file path, not a directory".into()));
    }
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => return Err(bad("is a directory; give a file path".into())),
        Ok(m) if !m.is_file() => return Err(bad("is not a regular file".into())),
        _ => {}
    }
    let mut dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    while !dir.exists() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
            _ => dir = PathBuf::from("."),
        }
    }
    if !dir.is_dir() {
        return Err(bad(format!("{} is not a directory", dir.display())));
    }
    tempfile::Builder::new()
        .prefix(".provision-probe.")
        .tempfile_in(&dir)
        .map(drop)
        .map_err(|e| bad(format!("cannot write in {}: {e}", dir.display())))
}

/// Like [`check_writable`] for a directory that files will be written into (made if missing).
pub(crate) fn check_writable_dir(what: &str, dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::usage(format!(
            "{what} {}: is not a directory",
            dir.display()
        )));
    }
    check_writable(what, &dir.join(".provision-probe"))
        .map_err(|_| Error::usage(format!("{what} {}: cannot write there", dir.display())))
}

/// [`write_atomic`] of `value` as pretty JSON with a trailing newline, mode 0600.
pub(crate) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(value)
        .map_err(|e| Error::unexpected(format!("cannot encode {}: {e}", path.display())))?;
    text.push(b'\n');
    write_atomic(path, &text, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_whole_file_with_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("sub/dir/file.txt");
        write_atomic(&path, b"first version, longer", 0o644).unwrap();
        write_atomic(&path, b"second", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        // No temporary files left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("file.txt")]);
    }

    #[test]
    fn check_writable_refuses_directories_and_unwritable_places() {
        let tmp = tempfile::tempdir().unwrap();
        let e = check_writable("-d", tmp.path()).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        let e = check_writable("--junit", Path::new("/proc/version")).unwrap_err();
        assert!(e.to_string().starts_with("--junit /proc/version"), "{e}");
        assert_eq!(e.code(), crate::error::code::USAGE);
        check_writable("-d", &tmp.path().join("new/sub/d.json")).unwrap();
        assert!(!tmp.path().join("new").exists(), "a check creates nothing");
        let ro = tmp.path().join("ro");
        fs::create_dir(&ro).unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
        // root may write anywhere; only a non-root run sees the refusal
        // SAFETY: geteuid takes no arguments and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            assert!(check_writable("-d", &ro.join("d.json")).is_err());
        }
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "no probe left"
        );
    }

    #[test]
    fn write_json_atomic_writes_pretty_json() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.json");
        write_json_atomic(&path, &serde_json::json!({"a": 1})).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["a"], 1);
    }
}
