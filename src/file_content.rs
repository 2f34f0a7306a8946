//! Where a planned file's bytes are, and their sha256. It exists so that a plan does not hold
//! every file in memory: a file from a config directory stays on disk (its path, size and hash
//! are planned) and is read in bounded chunks while it is sent (`ssh::files_tar`), checked
//! against the planned size and hash. Files of the built-in defaults are small and compiled in.
//!
//! Hashing reads the file once per process: the hashes are remembered by the file's identity
//! (device, inode, size, modification time), so a pool of many nodes with the same bundle
//! hashes it once, not once per node.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// A planned file's bytes.
#[derive(Debug, Clone)]
pub enum FileContent {
    /// In memory (the built-in defaults, tests).
    Memory(Arc<[u8]>),
    /// On disk, read when it is sent.
    Disk(PathBuf),
}

impl FileContent {
    pub fn memory(bytes: &[u8]) -> FileContent {
        FileContent::Memory(bytes.into())
    }
}

/// Chunk size for hashing and sending a file.
pub const CHUNK: usize = 64 * 1024;

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of a digest.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A file's identity: what must stay the same for a remembered hash to hold.
type Identity = (u64, u64, u64, i64, i64);

fn remembered() -> &'static Mutex<HashMap<Identity, String>> {
    static HASHES: OnceLock<Mutex<HashMap<Identity, String>>> = OnceLock::new();
    HASHES.get_or_init(Default::default)
}

/// The size and sha256 of the file at `path`, read in chunks (never whole); remembered for the
/// process by the file's identity.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    let id: Identity = (
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
    );
    if let Some(h) = remembered().lock().ok().and_then(|m| m.get(&id).cloned()) {
        return Ok((meta.len(), h));
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let h = hex(&hasher.finalize());
    if size == meta.len() {
        if let Ok(mut m) = remembered().lock() {
            m.insert(id, h.clone());
        }
    }
    Ok((size, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_hashes_as_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(hash_file(&p).unwrap(), (200_000, sha256_hex(&bytes)));
        // remembered: the same answer again
        assert_eq!(hash_file(&p).unwrap().1, sha256_hex(&bytes));
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
