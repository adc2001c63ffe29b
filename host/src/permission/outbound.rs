//! Where a guest's outgoing HTTP may go: the rules of its HTTP client link, from the link's
//! target config, checked against the request's host name, port and the addresses the name
//! resolves to.
//!
//! | key | value | default |
//! |---|---|---|
//! | `allow` | comma-separated host names (`api.example.com`, `*.example.com`), addresses and networks (`10.1.2.3`, `10.0.0.0/8`, `fd00::/8`) | anything not denied |
//! | `deny` | as `allow`; wins over it | nothing beyond the default |
//! | `ports` | comma-separated ports | any port |
//!
//! Loopback, link-local (which holds cloud metadata services, `169.254.169.254`), unspecified,
//! multicast and broadcast addresses are denied unless an address or network in `allow`
//! names them: a host name in `allow` does not open them (its DNS may point anywhere).

use std::net::IpAddr;

use ipnet::IpNet;

/// An entry of an HTTP client link's config that is not a rule.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// An `allow` or `deny` entry (`key`) that is no host name, address or network.
    #[error("`{key}`: `{entry}` is not a host name, address or network")]
    NotAHost { key: &'static str, entry: String },
    /// A `ports` entry that is no port.
    #[error("`ports`: `{0}` is not a port")]
    NotAPort(String),
}

/// Which rule refused a request, for the log.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The name resolved to nothing.
    #[error("`{host}` resolved to no address")]
    NoAddress { host: String },
    /// `ports` does not list the port.
    #[error("port {port} is not in the link's `ports`")]
    Port { port: u16 },
    /// `deny` names the host.
    #[error("`{host}` is in the link's `deny`")]
    DeniedHost { host: String },
    /// `deny` names one of its addresses.
    #[error("`{host}` is {ip}, which the link's `deny` names")]
    DeniedAddress { host: String, ip: IpAddr },
    /// One of its addresses is loopback, link-local, unspecified, multicast or broadcast, and
    /// no address or network in `allow` names it.
    #[error("`{host}` is {ip}, {kind} address; name it in the link's `allow` to reach it")]
    Special { host: String, ip: IpAddr, kind: &'static str },
    /// `allow` is given and names neither the host nor the address.
    #[error("`{host}` ({ip}) is not in the link's `allow`")]
    NotAllowed { host: String, ip: IpAddr },
}

/// One entry of `allow` or `deny`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    /// An address or network.
    Net(IpNet),
    /// A host name, or `*.` and a suffix for its subdomains.
    Host(String),
}

impl Rule {
    /// `entry` of `key` (`allow` or `deny`).
    fn parse(key: &'static str, entry: &str) -> Result<Self, RuleError> {
        if let Ok(net) = entry.parse::<IpNet>() {
            return Ok(Self::Net(net));
        }
        if let Ok(ip) = entry.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return Ok(Self::Net(IpNet::from(ip)));
        }
        let name = entry.strip_prefix("*.").unwrap_or(entry);
        let valid = !name.is_empty() && name.len() <= 253 && name.split('.').all(|l| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !valid {
            return Err(RuleError::NotAHost { key, entry: entry.to_string() });
        }
        Ok(Self::Host(entry.to_ascii_lowercase()))
    }

    fn matches_host(&self, host: &str) -> bool {
        match self {
            Self::Host(pattern) => match pattern.strip_prefix("*.") {
                Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix) && host[..host.len() - suffix.len()].ends_with('.'),
                None => host == pattern,
            },
            Self::Net(_) => false,
        }
    }

    fn matches_ip(&self, ip: IpAddr) -> bool {
        matches!(self, Self::Net(net) if net.contains(&ip))
    }
}

/// The rules of one HTTP client link.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
    ports: Option<Vec<u16>>,
}

/// What kind of address is denied unless allowed by address, if `ip` is one.
fn special(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    };
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => Some("a loopback"),
        IpAddr::V4(v4) if v4.is_link_local() => Some("a link-local (cloud metadata)"),
        IpAddr::V4(v4) if v4.is_unspecified() => Some("an unspecified"),
        IpAddr::V4(v4) if v4.is_multicast() || v4.is_broadcast() => Some("a multicast or broadcast"),
        IpAddr::V6(v6) if v6.is_loopback() => Some("a loopback"),
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("a link-local"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("an unspecified"),
        IpAddr::V6(v6) if v6.is_multicast() => Some("a multicast"),
        _ => None,
    }
}

impl OutboundPolicy {
    /// The rules in a link's target config (`allow`, `deny`, `ports`).
    ///
    /// # Errors
    /// An entry that is not a host name, address, network or port, naming it.
    pub fn from_config(config: &std::collections::BTreeMap<String, String>) -> Result<Self, RuleError> {
        let rules = |key: &'static str| -> Result<Vec<Rule>, RuleError> {
            let Some(list) = config.get(key) else { return Ok(Vec::new()) };
            list.split(',').map(str::trim).filter(|e| !e.is_empty()).map(|e| Rule::parse(key, e)).collect()
        };
        let ports = match config.get("ports") {
            None => None,
            Some(list) => Some(
                list.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| p.parse::<u16>().map_err(|_| RuleError::NotAPort(p.to_string())))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        Ok(Self { allow: rules("allow")?, deny: rules("deny")?, ports })
    }

    /// Whether a request to `host` (a name, or an address literal) on `port`, which resolved
    /// to `ips`, may be sent.
    ///
    /// # Errors
    /// The rule that refuses it.
    pub fn check(&self, host: &str, port: u16, ips: &[IpAddr]) -> Result<(), Refusal> {
        let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase();
        if ips.is_empty() {
            return Err(Refusal::NoAddress { host });
        }
        if self.ports.as_ref().is_some_and(|ports| !ports.contains(&port)) {
            return Err(Refusal::Port { port });
        }
        if self.deny.iter().any(|r| r.matches_host(&host)) {
            return Err(Refusal::DeniedHost { host });
        }
        for &ip in ips {
            if self.deny.iter().any(|r| r.matches_ip(ip)) {
                return Err(Refusal::DeniedAddress { host, ip });
            }
            let by_address = self.allow.iter().any(|r| r.matches_ip(ip));
            if let Some(kind) = special(ip).filter(|_| !by_address) {
                return Err(Refusal::Special { host, ip, kind });
            }
            if !self.allow.is_empty() && !by_address && !self.allow.iter().any(|r| r.matches_host(&host)) {
                return Err(Refusal::NotAllowed { host, ip });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(pairs: &[(&str, &str)]) -> OutboundPolicy {
        OutboundPolicy::from_config(&pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()).expect("valid")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn loopback_link_local_and_metadata_are_denied_by_default() {
        let open = policy(&[]);
        assert!(open.check("example.com", 443, &[ip("93.184.216.34")]).is_ok());
        for bad in ["127.0.0.1", "169.254.169.254", "0.0.0.0", "::1", "fe80::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "224.0.0.1", "255.255.255.255"] {
            assert!(matches!(open.check(bad, 80, &[ip(bad)]), Err(Refusal::Special { .. })), "{bad}");
        }
        // A public name that resolves to loopback (or has one loopback address) is denied too.
        assert!(matches!(open.check("rebind.example", 80, &[ip("93.184.216.34"), ip("127.0.0.1")]), Err(Refusal::Special { kind: "a loopback", .. })));
        // A name in `allow` does not open a loopback address; an address does.
        assert!(policy(&[("allow", "localhost")]).check("localhost", 80, &[ip("127.0.0.1")]).is_err());
        assert!(policy(&[("allow", "127.0.0.0/8")]).check("localhost", 80, &[ip("127.0.0.1")]).is_ok());
        assert!(policy(&[("allow", "127.0.0.1")]).check("127.0.0.1", 8080, &[ip("127.0.0.1")]).is_ok());
    }

    #[test]
    fn allow_deny_and_ports() {
        let p = policy(&[("allow", "*.example.com, 10.0.0.0/8"), ("deny", "secret.example.com, 10.9.0.0/16"), ("ports", "443, 8443")]);
        assert!(p.check("api.example.com", 443, &[ip("93.184.216.34")]).is_ok());
        assert!(matches!(p.check("example.com", 443, &[ip("93.184.216.34")]), Err(Refusal::NotAllowed { .. })), "`*.` is for subdomains");
        assert!(p.check("badexample.com", 443, &[ip("93.184.216.34")]).is_err());
        assert!(p.check("API.Example.COM.", 443, &[ip("93.184.216.34")]).is_ok(), "case and a trailing dot");
        assert_eq!(p.check("secret.example.com", 443, &[ip("93.184.216.34")]), Err(Refusal::DeniedHost { host: "secret.example.com".into() }), "deny wins");
        assert!(p.check("10.1.2.3", 8443, &[ip("10.1.2.3")]).is_ok());
        assert!(matches!(p.check("10.9.2.3", 443, &[ip("10.9.2.3")]), Err(Refusal::DeniedAddress { .. })));
        assert_eq!(p.check("api.example.com", 80, &[ip("93.184.216.34")]), Err(Refusal::Port { port: 80 }));
        assert!(p.check("other.org", 443, &[ip("93.184.216.34")]).is_err(), "not allowed");
        assert!(matches!(p.check("api.example.com", 443, &[]), Err(Refusal::NoAddress { .. })));
    }

    #[test]
    fn bad_entries_are_refused() {
        for (k, v) in [("allow", "exa mple.com"), ("deny", "10.0.0.0/40"), ("ports", "http"), ("allow", "*.")] {
            assert!(OutboundPolicy::from_config(&[(k.to_string(), v.to_string())].into_iter().collect()).is_err(), "{k}={v}");
        }
        let bad = OutboundPolicy::from_config(&[("deny".to_string(), "10.0.0.0/40".to_string())].into_iter().collect());
        assert_eq!(bad, Err(RuleError::NotAHost { key: "deny", entry: "10.0.0.0/40".into() }));
        assert_eq!(bad.expect_err("refused").to_string(), "`deny`: `10.0.0.0/40` is not a host name, address or network", "the message is as before");
    }
}
