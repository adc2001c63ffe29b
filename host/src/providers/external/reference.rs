//! From a provider reference to the executable to run.
//!
//! Running a file is a bigger grant than loading wasm from it, so the host's file policy
//! ([`FileLoad`]: off unless `--allow-file-load`, and only under `--file-load-dir`s when any are
//! given) decides, and the file must be a regular file with an execute bit, or a provider
//! archive (`.par`, `.par.gz`). A provider image in an OCI registry is native code from
//! elsewhere: run only with `--allow-provider-images`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use super::error::StartError;
use crate::wasm::sources::load::FileLoad;

/// What a provider reference names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executable {
    /// An executable file.
    File(PathBuf),
    /// A provider archive (`.par`, `.par.gz`) holding one.
    Archive(PathBuf),
    /// A provider image in an OCI registry (a provider archive layer).
    Image(String),
}

/// The executable `reference` names, when this host may run it.
///
/// # Errors
/// Why not, in words for the `provider_start_failed` event.
pub fn executable(reference: &str, files: &FileLoad, images: bool) -> Result<Executable, StartError> {
    let reference = reference.trim();
    let path = if let Some(rest) = reference.strip_prefix("file://") {
        PathBuf::from(rest)
    } else if crate::wasm::sources::oci::is_oci(reference) {
        if !images {
            return Err(StartError::ImagesOff);
        }
        return Ok(Executable::Image(reference.to_string()));
    } else if let Some((scheme, _)) = reference.split_once("://") {
        return Err(StartError::Scheme(scheme.to_string()));
    } else {
        PathBuf::from(reference)
    };
    if reference.is_empty() {
        return Err(StartError::EmptyReference);
    }
    if !files.allowed {
        return Err(StartError::FilesOff);
    }
    files.check(&path).map_err(StartError::FilePolicy)?;
    let name = path.display().to_string();
    let meta = std::fs::metadata(&path).map_err(|source| StartError::Read { name: name.clone(), source })?;
    if !meta.is_file() {
        return Err(StartError::NotFile(name));
    }
    if crate::providers::external::archive::is_archive(&path) {
        return Ok(Executable::Archive(path));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(StartError::NotExecutable(name));
    }
    Ok(Executable::File(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_checked_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("p");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "x").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let any = FileLoad::anywhere();
        let executable = |r: &str, files: &FileLoad| executable(r, files, false);
        assert_eq!(executable(&exe.display().to_string(), &any).unwrap(), Executable::File(exe.clone()));
        assert_eq!(executable(&format!("file://{}", exe.display()), &any).unwrap(), Executable::File(exe.clone()));
        let refused = |r: &str, files: &FileLoad| executable(r, files).unwrap_err().to_string();
        assert!(refused(&plain.display().to_string(), &any).contains("not executable"));
        assert!(refused(&dir.path().display().to_string(), &any).contains("not a file"));
        assert!(refused("/no/such/provider", &any).contains("cannot read"));
        assert!(refused(&exe.display().to_string(), &FileLoad::default()).contains("--allow-file-load"));
        let elsewhere = FileLoad { allowed: true, dirs: vec![PathBuf::from("/opt/providers")] };
        assert!(refused(&exe.display().to_string(), &elsewhere).contains("only files under"));
        assert!(refused("ghcr.io/wasmcloud/keyvalue-redis:0.28.0", &any).contains("--allow-provider-images"));
        assert!(refused("oci://ghcr.io/x/y:1", &any).contains("--allow-provider-images"));
        assert_eq!(
            super::executable("ghcr.io/wasmcloud/keyvalue-redis:0.28.0", &FileLoad::default(), true).unwrap(),
            Executable::Image("ghcr.io/wasmcloud/keyvalue-redis:0.28.0".into())
        );
        assert!(refused("ftp://x/y", &any).contains("not supported"));
        assert!(refused("", &any).contains("empty"));
        let par = dir.path().join("p.par.gz");
        std::fs::write(&par, "x").unwrap();
        assert_eq!(executable(&par.display().to_string(), &any).unwrap(), Executable::Archive(par.clone()));
        assert!(refused(&par.display().to_string(), &FileLoad::default()).contains("--allow-file-load"));
    }
}
