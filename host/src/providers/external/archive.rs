//! Provider archives (`.par`, `.par.gz`): wasmCloud's packaging of a provider, a tar (optionally
//! gzipped) with signed claims (`claims.jwt`) and one executable per target (`x86_64-linux.bin`,
//! …). Read by wasmCloud's `provider-archive` crate; this host then checks what that crate does
//! not: the claims' signature, expiry and not-before (`wascap::jwt::validate_token`). The
//! crate checks each binary against the hash its claims record, so a binary that was changed
//! after signing is refused. The issuer must be one the host trusts (`trust::TrustPolicy`).
//!
//! A gzipped archive is inflated with a bound on its size and ratio before the crate reads it
//! ([`MAX_UNPACKED_ARCHIVE`], [`MAX_ARCHIVE_RATIO`]): the crate inflates every entry in memory
//! before any check, so a gzip bomb would otherwise exhaust the host.
//!
//! The binary for this machine is written, executable, to a directory of the host's own (mode
//! 0700, removed with the host), named by its SHA-256.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use provider_archive::ProviderArchive;
use sha2::{Digest as _, Sha256};
use wascap::jwt::CapabilityProvider;

pub use super::error::ArchiveError;

/// Largest archive read, in bytes.
pub const MAX_ARCHIVE: u64 = 512 << 20;

/// Largest a gzipped archive may be once inflated, in bytes.
pub const MAX_UNPACKED_ARCHIVE: u64 = 1 << 30;

/// Largest inflation ratio accepted for a gzipped archive past its first [`RATIO_FREE_BYTES`].
pub const MAX_ARCHIVE_RATIO: u64 = 100;

/// Inflated bytes that no ratio applies to (small archives of text shrink very well).
const RATIO_FREE_BYTES: u64 = 64 << 20;

/// The tar inside `bytes`: `bytes` itself, or inflated from gzip with a bound on the inflated
/// size and ratio, so a gzip bomb is refused after at most [`MAX_UNPACKED_ARCHIVE`] bytes of
/// work and never before its claims are checked.
///
/// # Errors
/// A gzip stream that is corrupt, or inflates past a bound.
fn unpacked(name: &str, bytes: Vec<u8>) -> Result<Vec<u8>, ArchiveError> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let packed = bytes.len() as u64;
    let limit = MAX_UNPACKED_ARCHIVE.min(packed.saturating_mul(MAX_ARCHIVE_RATIO).max(RATIO_FREE_BYTES));
    let mut tar = Vec::new();
    let read = std::io::Read::read_to_end(&mut std::io::Read::take(flate2::read::GzDecoder::new(&bytes[..]), limit + 1), &mut tar)
        .map_err(|e| ArchiveError::Invalid { name: name.to_string(), reason: e.to_string() })?;
    // provider-archive inflates a gzip it finds without any bound: one inside another is
    // refused rather than handed to it.
    if tar.starts_with(&[0x1f, 0x8b]) {
        return Err(ArchiveError::NestedGzip(name.to_string()));
    }
    if read as u64 > limit {
        return Err(ArchiveError::Bomb {
            name: name.to_string(),
            limit,
            packed,
            max: MAX_UNPACKED_ARCHIVE,
            ratio: MAX_ARCHIVE_RATIO,
            free: RATIO_FREE_BYTES,
        });
    }
    Ok(tar)
}

/// The target name archives use for this machine (`{arch}-{os}`, e.g. `x86_64-linux`).
pub fn native_target() -> String {
    format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
}

/// Whether `path` names an archive rather than an executable.
pub fn is_archive(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.ends_with(".par") || name.ends_with(".par.gz")
}

/// Reads and verifies the archive at `archive` (claims, binary hashes, trusted issuer) and writes
/// its binary for this machine into `into`; returns the binary's path and the claims (with their
/// JWT, which a secrets backend is shown).
///
/// # Errors
/// What is wrong with the archive, in words for `provider_start_failed`.
pub async fn extract(archive: &Path, into: &Path, trust: &crate::trust::TrustPolicy) -> Result<(PathBuf, crate::trust::ProviderToken), ArchiveError> {
    let name = archive.display().to_string();
    let read = |e: &dyn std::fmt::Display| ArchiveError::Read { name: name.clone(), reason: e.to_string() };
    let size = tokio::fs::metadata(archive).await.map_err(|e| read(&e))?.len();
    if size > MAX_ARCHIVE {
        return Err(ArchiveError::TooLarge { name, size, max: MAX_ARCHIVE });
    }
    let bytes = tokio::fs::read(archive).await.map_err(|e| read(&e))?;
    let bytes = {
        let owned = name.clone();
        tokio::task::spawn_blocking(move || unpacked(&owned, bytes)).await.map_err(|e| read(&e))??
    };
    let target = native_target();
    // The reader unwraps on some malformed claims; on a task of its own, that is an error here
    // rather than a panic of the host.
    // Every binary is read (not only this machine's), so a missing target can name the others.
    let loading = tokio::spawn(async move { ProviderArchive::try_load(&bytes).await.map_err(|e| e.to_string()) });
    let par = loading
        .await
        .map_err(|_| ArchiveError::Malformed(name.clone()))?
        .map_err(|reason| ArchiveError::Invalid { name: name.clone(), reason })?;
    let token = par.claims_token().ok_or_else(|| ArchiveError::NoClaims(name.clone()))?;
    let check = wascap::jwt::validate_token::<CapabilityProvider>(&token.jwt)
        .map_err(|e| ArchiveError::Unchecked { name: name.clone(), reason: e.to_string() })?;
    if !check.signature_valid {
        return Err(ArchiveError::BadSignature(name));
    }
    if check.expired {
        return Err(ArchiveError::Expired { name, when: check.expires_human });
    }
    if check.cannot_use_yet {
        return Err(ArchiveError::NotYetValid { name, when: check.not_before_human });
    }
    trust.check_issuer(&token.claims.issuer).map_err(|source| ArchiveError::Untrusted { name: name.clone(), source })?;
    let binary = par
        .target_bytes(&target)
        .ok_or_else(|| ArchiveError::NoTarget { name: name.clone(), target: target.clone(), targets: par.targets().join(", ") })?;
    let digest = Sha256::digest(&binary);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let path = into.join(format!("{hex}.bin"));
    if tokio::fs::metadata(&path).await.is_err() {
        let partial = into.join(format!("{hex}.partial"));
        tokio::fs::write(&partial, &binary).await.map_err(|source| ArchiveError::Write { what: "write the provider binary", source })?;
        tokio::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o700))
            .await
            .map_err(|source| ArchiveError::Write { what: "make the provider binary executable", source })?;
        tokio::fs::rename(&partial, &path).await.map_err(|source| ArchiveError::Write { what: "write the provider binary", source })?;
    }
    Ok((path, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn a_gzip_bomb_is_refused_and_a_plain_archive_passes() {
        let bomb = gzip(&vec![0u8; 200 << 20]);
        assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
        let err = unpacked("bomb.par.gz", bomb).unwrap_err().to_string();
        assert!(err.contains("gzip bomb"), "{err}");
        assert_eq!(unpacked("a.par", b"plain tar".to_vec()).unwrap(), b"plain tar");
        assert_eq!(unpacked("a.par.gz", gzip(b"small")).unwrap(), b"small");
        let nested = unpacked("nested.par.gz", gzip(&gzip(b"tar"))).unwrap_err().to_string();
        assert!(nested.contains("gzip inside gzip"), "{nested}");
    }
}
