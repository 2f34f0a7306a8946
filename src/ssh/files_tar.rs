//! `files.tar`, generated while it is sent: a [`Read`] that yields each file's tar header
//! (built by the `tar` crate, long names included), then the file's bytes read from disk in
//! bounded chunks as the channel takes them (the pump's 32 KiB buffer), then the padding, and
//! the two end blocks. Memory stays at one chunk per node whatever the bundle's size, and
//! reading overlaps sending.
//!
//! Each file is checked against its plan while it streams: a file that is missing, shorter or
//! longer than planned, or whose identity (device, inode, size, modification time) is not the
//! one hashed when planned — when opened or after its last byte — stops the stream with an
//! error naming it before the archive is complete, so the node's `tar` fails and nothing is
//! moved into place. (Checking the identity, not hashing again, keeps a pool's nodes from each
//! hashing the bundle.)

use crate::error::Error;
use crate::file_content::{FileContent, Identity};
use crate::plan::PlannedFile;
use std::io::{self, Read};

/// Why a file whose identity is not the planned one stops the stream.
const CHANGED: &str = "it changed since it was planned (modified or replaced)";

/// The files as a tar to unpack at `/`: each at its staged path with its mode.
pub(super) struct FilesTar<'a> {
    node: String,
    files: &'a [PlannedFile],
    staged: Vec<String>,
    next: usize,
    /// Header, padding or end bytes not yet handed out.
    pending: Vec<u8>,
    pos: usize,
    body: Option<Body<'a>>,
    ended: bool,
    failure: Option<Error>,
}

/// The file being streamed.
struct Body<'a> {
    file: &'a PlannedFile,
    reader: Reader<'a>,
    left: u64,
}

/// Where a body's bytes come from.
enum Reader<'a> {
    Memory(&'a [u8]),
    /// The open file and its identity when planned.
    Disk(std::fs::File, Identity),
}

impl Reader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self {
            Reader::Memory(bytes) => bytes.read(out),
            Reader::Disk(file, _) => file.read(out),
        }
    }

    /// Whether the file is still the one planned (always, in memory).
    fn unchanged(&self) -> io::Result<bool> {
        match self {
            Reader::Memory(_) => Ok(true),
            Reader::Disk(file, planned) => Ok(Identity::of(&file.metadata()?) == *planned),
        }
    }
}

impl<'a> FilesTar<'a> {
    /// `staged[i]` is where `files[i]` is unpacked (a path under `/`).
    pub(super) fn new(node: &str, files: &'a [PlannedFile], staged: Vec<String>) -> Self {
        FilesTar {
            node: node.to_string(),
            files,
            staged,
            next: 0,
            pending: Vec::new(),
            pos: 0,
            body: None,
            ended: false,
            failure: None,
        }
    }

    /// Why the stream stopped early, when a file did not match its plan.
    pub(super) fn take_failure(&mut self) -> Option<Error> {
        self.failure.take()
    }

    fn fail(&mut self, f: &PlannedFile, why: impl std::fmt::Display) -> io::Error {
        let msg = format!("writing files: {} (for {}): {why}", f.source, f.target);
        self.failure = Some(Error::deploy(&self.node, &msg));
        io::Error::other(msg)
    }

    /// The next file's header into `pending`, and its body opened.
    fn start(&mut self, i: usize) -> io::Result<()> {
        let f = &self.files[i];
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(f.size);
        h.set_mode(f.mode & 0o7777);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(&mut h, self.staged[i].trim_start_matches('/'), io::empty())
            .map_err(|e| self.fail(f, e))?;
        self.pending = std::mem::take(b.get_mut());
        self.pos = 0;
        let reader = match &f.content {
            FileContent::Memory(bytes) => Reader::Memory(bytes),
            FileContent::Disk { path, identity } => match std::fs::File::open(path) {
                Ok(file) => Reader::Disk(file, *identity),
                Err(e) => return Err(self.fail(f, format!("cannot open it: {e}"))),
            },
        };
        match reader.unchanged() {
            Ok(true) => {}
            Ok(false) => return Err(self.fail(f, CHANGED)),
            Err(e) => return Err(self.fail(f, e)),
        }
        self.body = Some(Body {
            file: f,
            reader,
            left: f.size,
        });
        Ok(())
    }

    /// The body is sent: checks that the file ended where planned with the planned content.
    fn end_body(&mut self, mut body: Body<'a>) -> io::Result<()> {
        let f = body.file;
        let mut probe = [0u8; 1];
        match body.reader.read(&mut probe) {
            Ok(0) => {}
            Ok(_) => {
                return Err(self.fail(
                    f,
                    format!("it grew since it was planned ({} bytes)", f.size),
                ))
            }
            Err(e) => return Err(self.fail(f, e)),
        }
        match body.reader.unchanged() {
            Ok(true) => {}
            Ok(false) => return Err(self.fail(f, CHANGED)),
            Err(e) => return Err(self.fail(f, e)),
        }
        let pad = (512 - f.size % 512) % 512;
        self.pending = vec![0; pad as usize];
        self.pos = 0;
        Ok(())
    }
}

impl Read for FilesTar<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.failure.is_some() {
            return Err(io::Error::other("the files tar stopped"));
        }
        loop {
            if self.pos < self.pending.len() {
                let n = out.len().min(self.pending.len() - self.pos);
                out[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if let Some(body) = &mut self.body {
                if body.left > 0 {
                    let want = out
                        .len()
                        .min(usize::try_from(body.left).unwrap_or(usize::MAX));
                    match body.reader.read(&mut out[..want]) {
                        Ok(0) => {
                            let (f, left) = (body.file, body.left);
                            return Err(self.fail(
                                f,
                                format!(
                                    "it is shorter than planned ({} of {} bytes)",
                                    f.size - left,
                                    f.size
                                ),
                            ));
                        }
                        Ok(n) => {
                            body.left -= n as u64;
                            return Ok(n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            let f = body.file;
                            return Err(self.fail(f, e));
                        }
                    }
                }
                let body = self.body.take().expect("a body");
                self.end_body(body)?;
                continue;
            }
            if self.next < self.files.len() {
                self.next += 1;
                self.start(self.next - 1)?;
                continue;
            }
            if !self.ended {
                self.ended = true;
                self.pending = vec![0; 1024];
                self.pos = 0;
                continue;
            }
            return Ok(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file_content::sha256_hex;

    fn planned(target: &str, content: FileContent, size: u64, sha256: String) -> PlannedFile {
        PlannedFile {
            target: target.into(),
            source: format!("src{target}"),
            bundle: "b".into(),
            layer: "l".into(),
            size,
            mode: 0o640,
            content,
            sha256,
        }
    }

    fn mem(target: &str, bytes: &[u8]) -> PlannedFile {
        planned(
            target,
            FileContent::memory(bytes),
            bytes.len() as u64,
            sha256_hex(bytes),
        )
    }

    /// The whole stream, read in small pieces as the pump does.
    fn drain(t: &mut FilesTar) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 700];
        loop {
            match t.read(&mut buf)? {
                0 => return Ok(out),
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    #[test]
    fn the_stream_is_the_tar_the_builder_makes() {
        let long = format!("/etc/{}/x", "d".repeat(150));
        let files = vec![
            mem("/etc/a", b"hello"),
            mem(&long, &[7u8; 1300]),
            mem("/e", b""),
        ];
        let staged: Vec<String> = files.iter().map(|f| format!("{}.s", f.target)).collect();
        let got = drain(&mut FilesTar::new("n", &files, staged.clone())).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        for (f, p) in files.iter().zip(&staged) {
            let FileContent::Memory(bytes) = &f.content else {
                unreachable!()
            };
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(f.size);
            h.set_mode(f.mode);
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            b.append_data(&mut h, p.trim_start_matches('/'), &bytes[..])
                .unwrap();
        }
        assert_eq!(got, b.into_inner().unwrap());
    }

    #[test]
    fn a_file_unlike_its_plan_stops_the_stream_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        let stream = |size: u64, identity: Identity| {
            let files = vec![planned(
                "/t/big",
                FileContent::Disk {
                    path: p.clone(),
                    identity,
                },
                size,
                String::new(),
            )];
            let mut t = FilesTar::new("node1", &files, vec!["/t/.s/big".into()]);
            let ok = drain(&mut t).is_ok();
            (ok, t.take_failure().map(|e| e.to_string()))
        };
        let meta = || Identity::of(&std::fs::metadata(&p).unwrap());
        std::fs::write(&p, vec![1u8; 100_000]).unwrap();
        let planned_id = meta();
        assert_eq!(stream(100_000, planned_id), (true, None));
        // same size, other content, written later: another modification time
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&p, vec![2u8; 100_000]).unwrap();
        let now = meta();
        let cases = [
            (100_000, planned_id, "it changed since it was planned"),
            (90_000, now, "it grew since it was planned"),
            (
                110_000,
                now,
                "shorter than planned (100000 of 110000 bytes)",
            ),
        ];
        for (size, id, why) in cases {
            let (ok, e) = stream(size, id);
            let e = e.unwrap();
            assert!(!ok);
            assert!(
                e.starts_with("node1: writing files: src/t/big (for /t/big): ") && e.contains(why),
                "{e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
        std::fs::remove_file(&p).unwrap();
        let (ok, e) = stream(100_000, now);
        assert!(!ok && e.unwrap().contains("cannot open it"));
    }
}
