//! Where a planned file's bytes are, and their sha256. It exists so that a plan does not hold
//! every file in memory: a file from a config directory stays on disk (its path, size and hash
//! are planned) and is read in bounded chunks while it is sent (`ssh::files_tar`). Files of the built-in defaults are small and compiled in.
//!
//! While a file is sent it is checked against its identity when planned (device, inode, size,
//! modification time) rather than hashed again, so each node of a pool costs no hashing.
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
    /// On disk, read when it is sent; `identity` is the file's as it was hashed.
    Disk { path: PathBuf, identity: Identity },
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

/// A file's identity: device, inode, size and modification time. While it stays the same the
/// content is the one hashed (a remembered hash holds; a file sent is the file planned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    dev: u64,
    ino: u64,
    pub size: u64,
    mtime: (i64, i64),
}

impl Identity {
    pub fn of(meta: &std::fs::Metadata) -> Identity {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

fn remembered() -> &'static Mutex<HashMap<Identity, String>> {
    static HASHES: OnceLock<Mutex<HashMap<Identity, String>>> = OnceLock::new();
    HASHES.get_or_init(Default::default)
}

/// The identity and sha256 of the file at `path`, read in chunks (never whole); remembered for
/// the process by the file's identity. A file that changed while it was hashed is an error.
pub fn hash_file(path: &Path) -> std::io::Result<(Identity, String)> {
    let mut file = std::fs::File::open(path)?;
    let id = Identity::of(&file.metadata()?);
    if let Some(h) = remembered().lock().ok().and_then(|m| m.get(&id).cloned()) {
        return Ok((id, h));
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
    if size != id.size || Identity::of(&file.metadata()?) != id {
        return Err(std::io::Error::other("it changed while it was read"));
    }
    if let Ok(mut m) = remembered().lock() {
        m.insert(id, h.clone());
    }
    Ok((id, h))
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
        let (id, h) = hash_file(&p).unwrap();
        assert_eq!((id.size, h), (200_000, sha256_hex(&bytes)));
        // remembered: the same answer again
        assert_eq!(hash_file(&p).unwrap().1, sha256_hex(&bytes));
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
