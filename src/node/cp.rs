//! `node cp`: copies a file or a directory to or from a node by name (`NAME:/path`, as scp),
//! as one tar stream over one exec channel of the built-in engine, so modes are kept both ways
//! and a tree costs no more round trips than one file. The destination is replaced whole or
//! not at all: the archive is unpacked into a fresh directory beside it, then moved into place.

use crate::error::{Error, Result};
use crate::provider::Provider;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One side of a copy: a local path, or a path on a node.
#[derive(Debug, PartialEq, Eq)]
pub enum Place {
    Local(PathBuf),
    Remote { node: String, path: String },
}

/// `NAME:/path` is on a node (a name has no `/`); anything else is local (`./a:b` to force).
pub fn parse(arg: &str) -> Place {
    match arg.split_once(':') {
        Some((node, path)) if !node.is_empty() && !node.contains('/') => Place::Remote {
            node: node.into(),
            path: if path.is_empty() {
                ".".into()
            } else {
                path.into()
            },
        },
        _ => Place::Local(arg.into()),
    }
}

fn base(path: &str) -> Result<String> {
    Path::new(path.trim_end_matches('/'))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::usage(format!("{path}: names no file")))
}

fn q(s: &str) -> String {
    shlex::try_quote(s)
        .map(|c| c.into_owned())
        .unwrap_or_default()
}

/// Copies `src` to `dst`; exactly one of them on a node. Returns the remote tar's status.
pub fn copy(
    provider: &dyn Provider,
    src: &str,
    dst: &str,
    jump_of: crate::bastion::JumpOf<'_>,
) -> Result<i32> {
    match (parse(src), parse(dst)) {
        (Place::Local(from), Place::Remote { node, path }) => {
            upload(provider, &from, &node, &path, jump_of)
        }
        (Place::Remote { node, path }, Place::Local(to)) => {
            download(provider, &node, &path, &to, jump_of)
        }
        _ => Err(Error::usage(format!(
            "cp {src} {dst}: exactly one side must be NAME:/path on a node"
        ))),
    }
}

fn connect(
    provider: &dyn Provider,
    name: &str,
    jump_of: crate::bastion::JumpOf<'_>,
) -> Result<crate::ssh::Connection> {
    let node = super::find(provider, name)?;
    let target = super::target(&node, jump_of(&node).as_ref())?;
    crate::ssh::connect(&target, Instant::now() + super::CONNECT_WAIT, &mut || {
        Ok(true)
    })
}

fn upload(
    provider: &dyn Provider,
    from: &Path,
    node: &str,
    to: &str,
    jump_of: crate::bastion::JumpOf<'_>,
) -> Result<i32> {
    let meta = std::fs::metadata(from).map_err(|e| Error::io(from.display(), e))?;
    base(to)?;
    let name = base(&from.to_string_lossy())?;
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let built = if meta.is_dir() {
        tar.append_dir_all(&name, from)
    } else {
        tar.append_path_with_name(from, &name)
    };
    let bytes = built
        .and_then(|_| tar.into_inner())
        .map_err(|e| Error::io(from.display(), e))?;
    // into an existing directory: under the source's name; else as the destination itself
    let script = format!(
        "set -e; d={d}; n={name}; if [ -d \"$d\" ]; then d=\"$d/$n\"; fi; \
         t=$(mktemp -d \"$(dirname \"$d\")/.node-cp.XXXXXX\"); \
         (cd \"$t\" && tar xpf -); rm -rf \"$d\"; mv \"$t/$n\" \"$d\"; rmdir \"$t\"",
        d = q(to),
        name = q(&name),
    );
    let mut conn = connect(provider, node, jump_of)?;
    let mut err = std::io::stderr();
    conn.exec_streamed(&script, &bytes, &mut |is_err, data| {
        if is_err {
            let _ = err.write_all(data);
        }
    })
}

fn download(
    provider: &dyn Provider,
    node: &str,
    from: &str,
    to: &Path,
    jump_of: crate::bastion::JumpOf<'_>,
) -> Result<i32> {
    let name = base(from)?;
    let dir = Path::new(from.trim_end_matches('/'))
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| ".".into());
    let script = format!("cd {} && tar cf - {}", q(&dir), q(&name));
    let mut conn = connect(provider, node, jump_of)?;
    let mut bytes = Vec::new();
    let mut err = std::io::stderr();
    let status = conn.exec_streamed(&script, &[], &mut |is_err, data| {
        if is_err {
            let _ = err.write_all(data);
        } else {
            bytes.extend_from_slice(data);
        }
    })?;
    if status != 0 {
        return Ok(status);
    }
    let (parent, dest) = if to.is_dir() {
        (to.to_path_buf(), to.join(&name))
    } else {
        let parent = to
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        (parent.to_path_buf(), to.to_path_buf())
    };
    let tmp = tempfile::Builder::new()
        .prefix(".node-cp.")
        .tempdir_in(&parent)
        .map_err(|e| Error::io(parent.display(), e))?;
    tar::Archive::new(bytes.as_slice())
        .unpack(tmp.path())
        .map_err(|e| Error::io(format!("unpacking {node}:{from}"), e))?;
    if dest.is_dir() {
        std::fs::remove_dir_all(&dest).map_err(|e| Error::io(dest.display(), e))?;
    }
    std::fs::rename(tmp.path().join(&name), &dest).map_err(|e| Error::io(dest.display(), e))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_places_are_name_colon_path() {
        assert_eq!(
            parse("web:/etc/app"),
            Place::Remote {
                node: "web".into(),
                path: "/etc/app".into()
            }
        );
        assert_eq!(parse("./a:b"), Place::Local("./a:b".into()));
        assert_eq!(parse("/tmp/x"), Place::Local("/tmp/x".into()));
        assert_eq!(
            parse("web:"),
            Place::Remote {
                node: "web".into(),
                path: ".".into()
            }
        );
    }
}
