//! From a component reference to component bytes, with every way it can be wrong named.
//!
//! A reference is chosen by whoever sends the control message, so a file reference is a request
//! to read a file of this machine. [`FileLoad`] decides whether that is allowed: not at all
//! unless the operator allows it (wasmCloud's `--allow-file-load`), and only under the
//! directories given when any are. A refusal does not say whether the file exists.

use std::path::{Component as PathPart, Path, PathBuf};

use crate::error::{HostError, Result};

/// Why a file may not be loaded, or why what it holds is not a component.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The host was started without `--allow-file-load`.
    #[error("this host does not load components from files (start it with --allow-file-load)")]
    FilesNotAllowed,
    /// The path (as written, or as resolved) is outside every allowed directory.
    #[error("only files under {dirs} may be loaded here")]
    OutsideDirs {
        /// The allowed directories, for the message.
        dirs: String,
    },
    /// The file system refused.
    #[error("cannot read {}: {error}", path.display())]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// What the file system said.
        error: std::io::Error,
    },
    /// No `\0asm` header.
    #[error("not a WebAssembly file (no `\\0asm` header)")]
    NotWasm,
    /// A core module where a component is needed.
    #[error("a core WebAssembly module, not a component; turn it into one with `wasm-tools component new` (or build for wasm32-wasip2)")]
    CoreModule,
    /// A WebAssembly layer this host does not know.
    #[error("unknown WebAssembly layer {0}")]
    UnknownLayer(u16),
}

/// Which files a host may load components from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileLoad {
    /// Whether file references are accepted at all.
    pub allowed: bool,
    /// When not empty, files must lie under one of these directories (absolute paths).
    pub dirs: Vec<PathBuf>,
}

impl FileLoad {
    /// Any file the host's user can read.
    pub fn anywhere() -> Self {
        Self { allowed: true, dirs: Vec::new() }
    }

    /// `Ok` when `path` may be read, checked on the path as written (before the file system is
    /// touched, so a refusal reveals nothing about the file).
    fn check_path(&self, path: &Path) -> std::result::Result<(), LoadError> {
        if !self.allowed {
            return Err(LoadError::FilesNotAllowed);
        }
        if self.dirs.is_empty() {
            return Ok(());
        }
        let outside = || LoadError::OutsideDirs { dirs: self.dirs_text() };
        if !path.is_absolute() || path.components().any(|c| matches!(c, PathPart::ParentDir | PathPart::CurDir)) {
            return Err(outside());
        }
        if self.dirs.iter().any(|d| path.starts_with(d)) {
            Ok(())
        } else {
            Err(outside())
        }
    }

    /// `Ok` when the file `path` resolves to (symbolic links followed) is still under an
    /// allowed directory.
    fn check_resolved(&self, path: &Path) -> std::result::Result<(), LoadError> {
        if self.dirs.is_empty() {
            return Ok(());
        }
        let real = std::fs::canonicalize(path).map_err(|error| LoadError::Unreadable { path: path.to_path_buf(), error })?;
        let inside = self.dirs.iter().any(|d| std::fs::canonicalize(d).is_ok_and(|d| real.starts_with(d)));
        if inside {
            Ok(())
        } else {
            Err(LoadError::OutsideDirs { dirs: self.dirs_text() })
        }
    }

    /// `Ok` when the file `path` names may be read (or, for a provider, run): the path as
    /// written, then the file it resolves to.
    ///
    /// # Errors
    /// Why not, without saying whether the file exists when the path alone is refused.
    pub fn check(&self, path: &Path) -> std::result::Result<(), LoadError> {
        self.check_path(path)?;
        self.check_resolved(path)
    }

    fn dirs_text(&self) -> String {
        self.dirs.iter().map(|d| format!("`{}`", d.display())).collect::<Vec<_>>().join(", ")
    }
}

/// Reads the component `reference` names: `file:///abs/path.wasm`, `file://rel/path.wasm` or a
/// plain path, when `files` allows it. Checks size and that it is a component (not a core
/// module, not something else).
///
/// # Errors
/// [`HostError::ComponentRef`] saying what is wrong with the reference or the file.
pub fn read_component(reference: &str, max_size: u64, files: &FileLoad) -> Result<Vec<u8>> {
    let path = path_of(reference)?;
    let bad = |reason: String| HostError::ComponentRef { reference: reference.to_string(), reason };
    files.check_path(&path).map_err(|e| bad(e.to_string()))?;
    files.check_resolved(&path).map_err(|e| bad(e.to_string()))?;
    let meta = std::fs::metadata(&path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(bad(format!("{} is not a file", path.display())));
    }
    if meta.len() > max_size {
        return Err(bad(format!(
            "{} is {} bytes, over the host's component size limit of {max_size} bytes",
            path.display(),
            meta.len()
        )));
    }
    let bytes = std::fs::read(&path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    check_component(&bytes).map_err(|reason| bad(format!("{}: {reason}", path.display())))?;
    Ok(bytes)
}

/// Where components come from besides files: registry credentials, and the lattice whose
/// artifact store `nats://` references name.
#[derive(Clone, Debug)]
pub struct Sources {
    /// Credentials per registry (`registry.put`).
    pub registries: crate::wasm::sources::oci::Registries,
    /// A NATS connection to the lattice, for `nats://` artifacts.
    pub nats: async_nats::Client,
    /// The lattice name.
    pub lattice: String,
}

/// The bytes of the component `reference` names: from the lattice's artifact store
/// (`nats://…`, [`crate::wasm::sources::artifacts`]), an OCI registry ([`crate::wasm::sources::oci`]) or a file
/// as [`read_component`] reads it (on a blocking thread). Remote pulls are bounded by a timeout.
///
/// # Errors
/// [`HostError::ComponentRef`] saying what is wrong with the reference, the source or the file.
pub async fn fetch(reference: &str, config: &crate::wasm::WasmConfig, sources: &Sources) -> Result<Vec<u8>> {
    let bad = |reason: String| HostError::ComponentRef { reference: reference.to_string(), reason };
    let remote = if reference.starts_with(crate::wasm::sources::artifacts::SCHEME) {
        Some(crate::wasm::sources::artifacts::pull(reference, &sources.nats, &sources.lattice, &config.oci, config.max_component_size).await.map_err(|e| e.to_string()))
    } else if crate::wasm::sources::oci::is_oci(reference) {
        Some(crate::wasm::sources::oci::pull(reference, &config.oci, &sources.registries, config.max_component_size).await.map_err(|e| e.to_string()))
    } else {
        None
    };
    if let Some(pulled) = remote {
        let bytes = pulled.map_err(bad)?;
        check_component(&bytes).map_err(|e| bad(e.to_string()))?;
        return Ok(bytes);
    }
    let (r, max, files) = (reference.to_string(), config.max_component_size, config.file_load.clone());
    tokio::task::spawn_blocking(move || read_component(&r, max, &files))
        .await
        .map_err(|e| bad(format!("the file reader failed: {e}")))?
}

/// The file a reference names.
///
/// # Errors
/// [`HostError::ComponentRef`] for a scheme Trellis cannot load from (yet).
pub fn path_of(reference: &str) -> Result<PathBuf> {
    let reference = reference.trim();
    if reference.is_empty() {
        return Err(HostError::ComponentRef { reference: String::new(), reason: "the reference is empty".into() });
    }
    if let Some(rest) = reference.strip_prefix("file://") {
        return Ok(PathBuf::from(rest));
    }
    if let Some((scheme, _)) = reference.split_once("://") {
        return Err(HostError::ComponentRef {
            reference: reference.to_string(),
            reason: format!("`{scheme}://` references are not supported yet; use an OCI reference, `file://` or a path"),
        });
    }
    Ok(Path::new(reference).to_path_buf())
}

/// `Ok` when `bytes` are a WebAssembly component; otherwise why not.
fn check_component(bytes: &[u8]) -> std::result::Result<(), LoadError> {
    const MAGIC: &[u8; 4] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(LoadError::NotWasm);
    }
    // Bytes 4..8: version (u16) and layer (u16); layer 1 is a component, 0 a core module.
    match u16::from_le_bytes([bytes[6], bytes[7]]) {
        1 => Ok(()),
        0 => Err(LoadError::CoreModule),
        layer => Err(LoadError::UnknownLayer(layer)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(path_of("file:///a/b.wasm").unwrap(), PathBuf::from("/a/b.wasm"));
        assert_eq!(path_of("./b.wasm").unwrap(), PathBuf::from("./b.wasm"));
        assert!(path_of("oci://ghcr.io/x:1").unwrap_err().to_string().contains("`oci://` references are not supported"));
        assert!(path_of(" ").unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn file_load_policy() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.wasm");
        std::fs::write(&file, b"\0asm\x0d\0\x01\0").unwrap();
        let off = FileLoad::default();
        let err = read_component(file.to_str().unwrap(), 1 << 20, &off).unwrap_err().to_string();
        assert!(err.contains("does not load components from files"), "{err}");
        // The same refusal for a file that does not exist: nothing is revealed.
        let missing = read_component("/nonexistent/x.wasm", 1 << 20, &off).unwrap_err().to_string();
        assert_eq!(err.replace(file.to_str().unwrap(), "P"), missing.replace("/nonexistent/x.wasm", "P"));
        assert!(read_component(file.to_str().unwrap(), 1 << 20, &FileLoad::anywhere()).is_ok());

        let only = FileLoad { allowed: true, dirs: vec![dir.path().to_path_buf()] };
        assert!(read_component(file.to_str().unwrap(), 1 << 20, &only).is_ok());
        for outside in ["/etc/passwd", "/etc/nonexistent", "relative.wasm"] {
            let err = read_component(outside, 1 << 20, &only).unwrap_err().to_string();
            assert!(err.contains("only files under"), "{outside}: {err}");
        }
        let escape = format!("{}/../../etc/passwd", dir.path().display());
        assert!(read_component(&escape, 1 << 20, &only).unwrap_err().to_string().contains("only files under"));
        // A symbolic link inside that points outside is refused too.
        let link = dir.path().join("link.wasm");
        std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
        assert!(read_component(link.to_str().unwrap(), 1 << 20, &only).unwrap_err().to_string().contains("only files under"));
    }

    #[test]
    fn component_check() {
        assert!(matches!(check_component(b"hello world"), Err(LoadError::NotWasm)));
        assert!(matches!(check_component(b"\0asm\x01\0\0\0"), Err(LoadError::CoreModule)));
        assert!(LoadError::CoreModule.to_string().contains("wasm-tools component new"));
        assert!(check_component(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
