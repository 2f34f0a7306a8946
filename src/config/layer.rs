//! A config layer: one directory (or the built-in `defaults/`) that may hold `provision.toml`,
//! `pubkeys/`, `scripts/` and `files/`. Bundles find their scripts and files in the layer that
//! defines them, so a layer is also the lookup root for those.

use crate::error::{Error, Result};
use crate::file_content::FileContent;
use include_dir::{include_dir, Dir};
use std::fmt;
use std::path::{Path, PathBuf};

static DEFAULTS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/defaults");

/// Where a layer's files live.
#[derive(Debug, Clone)]
pub enum LayerSource {
    /// `defaults/`, compiled into the binaries.
    Builtin,
    /// A directory on disk.
    Dir(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub source: LayerSource,
}

/// A file read from a layer: its bytes, its Unix mode and a human name for messages.
#[derive(Debug, Clone)]
pub struct LayerFile {
    pub display: String,
    pub bytes: Vec<u8>,
    pub mode: u32,
}

/// A file of a layer's `files/`, not read into memory: see [`Layer::file_ref`].
#[derive(Debug, Clone)]
pub struct LayerFileRef {
    pub display: String,
    pub content: FileContent,
    pub size: u64,
    pub sha256: String,
    pub mode: u32,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            LayerSource::Builtin => write!(f, "(built-in defaults)"),
            LayerSource::Dir(p) => write!(f, "{}", p.display()),
        }
    }
}

impl Layer {
    pub fn builtin() -> Self {
        Layer {
            source: LayerSource::Builtin,
        }
    }

    pub fn dir(path: impl Into<PathBuf>) -> Self {
        Layer {
            source: LayerSource::Dir(path.into()),
        }
    }

    /// The layer's label in plans and messages: the directory, or `defaults`.
    pub fn label(&self) -> String {
        match &self.source {
            LayerSource::Builtin => "defaults".to_string(),
            LayerSource::Dir(p) => p.display().to_string(),
        }
    }

    /// The text of `provision.toml` and its display path, when the layer has one.
    pub fn provision_toml(&self) -> Result<Option<(String, String)>> {
        match self.read_opt(Path::new("provision.toml"), 0o644)? {
            None => Ok(None),
            Some(f) => {
                let text = String::from_utf8(f.bytes)
                    .map_err(|_| Error::config(format!("{}: not UTF-8", f.display)))?;
                Ok(Some((f.display, text)))
            }
        }
    }

    /// This layer's settings: its `provision.toml`, else the original's `__init__.py` read
    /// statically (a directory with both uses `provision.toml` and says so).
    pub fn layer_config(&self) -> Result<Option<super::schema::LayerConfig>> {
        let py = match &self.source {
            LayerSource::Dir(dir) => Some(dir.join("__init__.py")).filter(|p| p.is_file()),
            LayerSource::Builtin => None,
        };
        if let Some((display, text)) = self.provision_toml()? {
            let mut lc = super::schema::parse(&display, &text)?;
            if let Some(py) = py {
                lc.warnings.push(format!(
                    "{}: not read, {display} is used instead",
                    py.display()
                ));
            }
            return Ok(Some(lc));
        }
        let (Some(py), LayerSource::Dir(dir)) = (py, &self.source) else {
            return Ok(None);
        };
        let display = py.display().to_string();
        let text =
            std::fs::read_to_string(&py).map_err(|e| Error::config(format!("{display}: {e}")))?;
        super::pyinit::parse(dir, &display, &text).map(Some)
    }

    /// `files/name` of this layer without reading it into memory: where its bytes are, its
    /// size, sha256 (hashed in chunks) and mode.
    pub fn file_ref(&self, name: &str) -> Result<Option<LayerFileRef>> {
        let rel = Path::new("files").join(name);
        match &self.source {
            LayerSource::Builtin => Ok(DEFAULTS.get_file(&rel).map(|f| LayerFileRef {
                display: format!("defaults/{}", rel.display()),
                size: f.contents().len() as u64,
                sha256: crate::file_content::sha256_hex(f.contents()),
                content: FileContent::memory(f.contents()),
                mode: 0o644,
            })),
            LayerSource::Dir(dir) => {
                let path = dir.join(rel);
                let Some(meta) = file_meta(&path)? else {
                    return Ok(None);
                };
                let (identity, sha256) = crate::file_content::hash_file(&path)
                    .map_err(|e| Error::config(format!("{}: {e}", path.display())))?;
                use std::os::unix::fs::PermissionsExt;
                Ok(Some(LayerFileRef {
                    display: path.display().to_string(),
                    size: identity.size,
                    sha256,
                    content: FileContent::Disk { path, identity },
                    mode: meta.permissions().mode() & 0o7777,
                }))
            }
        }
    }

    /// Reads `sub/name` (e.g. `scripts/emacs.sh`) from this layer.
    pub fn read(&self, sub: &str, name: &str, default_mode: u32) -> Result<Option<LayerFile>> {
        self.read_opt(&Path::new(sub).join(name), default_mode)
    }

    fn read_opt(&self, rel: &Path, default_mode: u32) -> Result<Option<LayerFile>> {
        match &self.source {
            LayerSource::Builtin => Ok(DEFAULTS.get_file(rel).map(|f| LayerFile {
                display: format!("defaults/{}", rel.display()),
                bytes: f.contents().to_vec(),
                mode: default_mode,
            })),
            LayerSource::Dir(dir) => {
                let path = dir.join(rel);
                let Some(meta) = file_meta(&path)? else {
                    return Ok(None);
                };
                let bytes = std::fs::read(&path)
                    .map_err(|e| Error::config(format!("{}: {e}", path.display())))?;
                use std::os::unix::fs::PermissionsExt;
                Ok(Some(LayerFile {
                    display: path.display().to_string(),
                    bytes,
                    mode: meta.permissions().mode() & 0o7777,
                }))
            }
        }
    }

    /// Every file in the layer's `pubkeys/`, sorted by name.
    pub fn pubkey_files(&self) -> Result<Vec<LayerFile>> {
        match &self.source {
            LayerSource::Builtin => {
                let mut out: Vec<LayerFile> = DEFAULTS
                    .get_dir("pubkeys")
                    .map(|d| {
                        d.files()
                            .map(|f| LayerFile {
                                display: format!("defaults/{}", f.path().display()),
                                bytes: f.contents().to_vec(),
                                mode: 0o644,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.sort_by(|a, b| a.display.cmp(&b.display));
                Ok(out)
            }
            LayerSource::Dir(dir) => {
                let keydir = dir.join("pubkeys");
                let entries = match std::fs::read_dir(&keydir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
                    Err(e) => return Err(Error::config(format!("{}: {e}", keydir.display()))),
                };
                let mut paths = Vec::new();
                for entry in entries {
                    let entry =
                        entry.map_err(|e| Error::config(format!("{}: {e}", keydir.display())))?;
                    let path = entry.path();
                    let name = entry.file_name();
                    if name.to_string_lossy().starts_with('.') {
                        continue;
                    }
                    // a dangling symlink would silently mean one key fewer on the node
                    match std::fs::metadata(&path) {
                        Ok(m) if m.is_file() => paths.push(path),
                        Ok(_) => {}
                        Err(e) => {
                            let to = std::fs::read_link(&path)
                                .map(|t| format!(" (a symlink to {})", t.display()))
                                .unwrap_or_default();
                            return Err(Error::config(format!("{}{to}: {e}", path.display())));
                        }
                    }
                }
                paths.sort();
                paths
                    .into_iter()
                    .map(|p| {
                        let bytes = std::fs::read(&p)
                            .map_err(|e| Error::config(format!("{}: {e}", p.display())))?;
                        Ok(LayerFile {
                            display: p.display().to_string(),
                            bytes,
                            mode: 0o644,
                        })
                    })
                    .collect()
            }
        }
    }
}

/// The metadata of the file at `path`; `None` when there is none; a directory is an error.
fn file_meta(path: &Path) -> Result<Option<std::fs::Metadata>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::config(format!("{}: {e}", path.display()))),
    };
    if meta.is_dir() {
        return Err(Error::config(format!("{}: is a directory", path.display())));
    }
    Ok(Some(meta))
}
