//! From a component reference to component bytes, with every way it can be wrong named.

use std::path::{Path, PathBuf};

use crate::error::{HostError, Result};

/// Reads the component `reference` names: `file:///abs/path.wasm`, `file://rel/path.wasm` or a
/// plain path. Checks size and that it is a component (not a core module, not something else).
///
/// # Errors
/// [`HostError::ComponentRef`] saying what is wrong with the reference or the file.
pub fn read_component(reference: &str, max_size: u64) -> Result<Vec<u8>> {
    let path = path_of(reference)?;
    let bad = |reason: String| HostError::ComponentRef { reference: reference.to_string(), reason };
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
            reason: format!("`{scheme}://` references are not supported yet; use `file://` or a path"),
        });
    }
    Ok(Path::new(reference).to_path_buf())
}

/// `Ok` when `bytes` are a WebAssembly component; otherwise why not.
fn check_component(bytes: &[u8]) -> std::result::Result<(), String> {
    const MAGIC: &[u8; 4] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err("not a WebAssembly file (no `\\0asm` header)".into());
    }
    // Bytes 4..8: version (u16) and layer (u16); layer 1 is a component, 0 a core module.
    match u16::from_le_bytes([bytes[6], bytes[7]]) {
        1 => Ok(()),
        0 => Err("a core WebAssembly module, not a component; turn it into one with \
                  `wasm-tools component new` (or build for wasm32-wasip2)"
            .into()),
        layer => Err(format!("unknown WebAssembly layer {layer}")),
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
    fn component_check() {
        assert!(check_component(b"hello world").unwrap_err().contains("not a WebAssembly file"));
        assert!(check_component(b"\0asm\x01\0\0\0").unwrap_err().contains("core WebAssembly module"));
        assert!(check_component(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
