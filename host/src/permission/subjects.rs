//! Which NATS subjects a guest may publish or send requests to.
//!
//! A guest linked for `wasmcloud:messaging/consumer` publishes only to subjects its link's
//! target config allows (`subjects`, comma-separated NATS patterns with `*` and `>`), plus the
//! reply subject of the message it is handling. Whatever the allow-list says, the lattice's own
//! subjects are never reachable: the control interface (under the host's control prefix and
//! `wasmbus.`), events, provider RPC, Trellis calls (`trellis.`), wRPC calls between providers
//! and components of the host's lattice (`{lattice}.*.wrpc.>`: publishing there would call a
//! component without a link, subscribing would read calls and forge answers), wadm's API
//! (`wadm.`), the JetStream/KV/system APIs (every `$…` subject) and other clients' inboxes
//! (`_INBOX.`). wRPC subjects start with the lattice's name, so those of other lattices on the
//! same NATS account cannot be told from ordinary subjects: NATS permissions separate lattices.

/// Longest subject a guest may use (NATS has no limit of its own short of the payload size).
pub const MAX_SUBJECT_LEN: usize = 512;

/// Whether NATS `pattern` (tokens, `*` for one, a final `>` for one or more) matches
/// `subject`.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return p.next().is_none(),
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Why a subject cannot be published to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// Empty, or over [`MAX_SUBJECT_LEN`] bytes.
    #[error("subject must be 1 to {MAX_SUBJECT_LEN} bytes")]
    Length,
    /// An empty token, a wildcard or whitespace.
    #[error("`{0}` is not a concrete NATS subject (empty token, wildcard or whitespace)")]
    NotConcrete(String),
}

/// `Ok` when `subject` is a concrete subject a client could publish to: tokens of visible
/// characters, no wildcards, not too long.
///
/// # Errors
/// Why it is not.
pub fn check_concrete(subject: &str) -> Result<(), SubjectError> {
    if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN {
        return Err(SubjectError::Length);
    }
    if subject.split('.').any(|t| t.is_empty() || t == "*" || t == ">" || t.chars().any(|c| c.is_whitespace() || c.is_control())) {
        return Err(SubjectError::NotConcrete(subject.to_string()));
    }
    Ok(())
}

/// The wRPC subjects of `lattice`.
fn wrpc_subjects(lattice: &str) -> String {
    format!("{lattice}.*.wrpc.>")
}

/// Whether `subject` belongs to the lattice machinery (of any lattice) under control prefix
/// `ctl_prefix`, or is a wRPC subject of `lattice`.
pub fn is_system(subject: &str, ctl_prefix: &str, lattice: &str) -> bool {
    const PREFIXES: &[&str] = &["wasmbus.", "trellis.", "wadm.", "_INBOX.", "$"];
    PREFIXES.iter().any(|p| subject.starts_with(p))
        || matches(&format!("{ctl_prefix}.>"), subject)
        || matches(&wrpc_subjects(lattice), subject)
}

/// Whether some subject matches both patterns.
fn overlap(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.split('.'), b.split('.'));
    loop {
        match (a.next(), b.next()) {
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == "*" || y == "*" || x == y => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether subscription `pattern` could receive a subject of the lattice machinery: it is one,
/// or it starts with a wildcard, or its first token is a system subject's first token, or it
/// could match a wRPC subject of `lattice`.
pub fn could_match_system(pattern: &str, ctl_prefix: &str, lattice: &str) -> bool {
    let first = pattern.split('.').next().unwrap_or_default();
    let ctl_first = ctl_prefix.split('.').next().unwrap_or_default();
    matches!(first, "*" | ">" | "wasmbus" | "trellis" | "wadm" | "_INBOX")
        || first.starts_with('$')
        || first == ctl_first
        || overlap(pattern, &wrpc_subjects(lattice))
}

/// The patterns of an allow-list value (`a.b, c.*, d.>`).
pub fn allow_list(value: Option<&str>) -> Vec<&str> {
    value.unwrap_or_default().split(',').map(str::trim).filter(|p| !p.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(matches("a.b", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(matches("a.*", "a.b"));
        assert!(!matches("a.*", "a.b.c"));
        assert!(matches("a.>", "a.b.c"));
        assert!(!matches("a.>", "a"));
        assert!(matches(">", "anything.at.all"));
        assert!(matches("*.x", "y.x"));
    }

    #[test]
    fn system_subjects() {
        for s in [
            "wasmbus.ctl.v1.default.host.stop.NABC",
            "wasmbus.evt.default.host_stopped",
            "wasmbus.rpc.default.kv.linkdefs.put",
            "trellis.rpc.default.echo",
            "$JS.API.STREAM.DELETE.KV_LATTICEDATA_default",
            "$KV.LATTICEDATA_default.COMPONENT_x",
            "$SYS.REQ.SERVER.PING",
            "_INBOX.abc.def",
            "wadm.api.default.model.del.app",
            "acme.ctl.v1.default.host.stop.N",
        ] {
            assert!(is_system(s, "acme.ctl", "default"), "{s}");
        }
        assert!(is_system("default.echo.wrpc.0.0.1.trellis:echo/echo@0.1.0.echo", "wasmbus.ctl", "default"));
        assert!(!is_system("default.echo.orders", "wasmbus.ctl", "default"));
        assert!(!is_system("orders.created", "wasmbus.ctl", "default"));
        assert!(!is_system("wasmbusiness.x", "wasmbus.ctl", "default"));
        assert!(could_match_system("default.>", "wasmbus.ctl", "default"));
        assert!(could_match_system("default.*.wrpc.>", "wasmbus.ctl", "default"));
        assert!(could_match_system("default.echo.*.x", "wasmbus.ctl", "default"));
        assert!(!could_match_system("default.echo.orders", "wasmbus.ctl", "default"));
        assert!(!could_match_system("orders.>", "wasmbus.ctl", "default"));
    }

    #[test]
    fn subscriptions_that_could_see_the_lattice() {
        for p in [">", "*.x", "wasmbus.evt.default.>", "$KV.LATTICEDATA_default.>", "_INBOX.>", "acme.x", "trellis.rpc.*.*"] {
            assert!(could_match_system(p, "acme.ctl", "default"), "{p}");
        }
        for p in ["orders.>", "orders.*", "demo.echo"] {
            assert!(!could_match_system(p, "wasmbus.ctl", "default"), "{p}");
        }
    }

    #[test]
    fn concrete_subjects() {
        assert!(check_concrete("a.b").is_ok());
        for bad in ["", "a..b", "a.*", "a.>", "a b", ".a", &"x".repeat(MAX_SUBJECT_LEN + 1)] {
            assert!(check_concrete(bad).is_err(), "{bad:?}");
        }
        assert_eq!(allow_list(Some(" a.b , c.> ,")), vec!["a.b", "c.>"]);
        assert!(allow_list(None).is_empty());
    }
}
