//! Component and provider references as the CLI hands them to a host.

/// A local path that exists becomes an absolute `file://` reference, so the host (whatever its
/// working directory) finds the same file.
pub(crate) fn absolute(reference: &str) -> String {
    if reference.contains("://") {
        return reference.to_string();
    }
    match std::fs::canonicalize(reference) {
        Ok(path) => format!("file://{}", path.display()),
        Err(_) => reference.to_string(),
    }
}
