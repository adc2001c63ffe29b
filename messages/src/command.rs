//! A control message parsed once, from its subject and body, into a typed command.

use std::collections::HashMap;

use serde::de::DeserializeOwned;

use crate::component::{ComponentAuctionRequest, ScaleComponentCommand, UpdateComponentCommand};
use crate::error::{Error, Result};
use crate::host::{HostLabel, HostLabelIdentifier, StopHostCommand};
use crate::link::{DeleteInterfaceLinkDefinitionRequest, Link};
use crate::provider::{ProviderAuctionRequest, StartProviderCommand, StopProviderCommand};
use crate::subjects::Subjects;

/// Which control operation a subject names, before its body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// `host.ping`
    HostPing,
    /// `host.get.{id}`
    HostGet,
    /// `host.stop.{id}`
    HostStop,
    /// `label.put.{id}`
    LabelPut,
    /// `label.del.{id}`
    LabelDel,
    /// `component.scale.{id}`
    ComponentScale,
    /// `component.update.{id}`
    ComponentUpdate,
    /// `component.auction`
    ComponentAuction,
    /// `provider.start.{id}`
    ProviderStart,
    /// `provider.stop.{id}`
    ProviderStop,
    /// `provider.auction`
    ProviderAuction,
    /// `link.put`
    LinkPut,
    /// `link.del`
    LinkDel,
    /// `link.get`
    LinkGet,
    /// `claims.get`
    ClaimsGet,
    /// `config.put.{name}`
    ConfigPut,
    /// `config.get.{name}`
    ConfigGet,
    /// `config.del.{name}`
    ConfigDel,
    /// `registry.put`
    RegistryPut,
}

impl Operation {
    /// The operation named by the tokens after the lattice prefix, with the trailing host id
    /// or config name when the operation has one.
    pub fn from_tokens<'a>(tokens: &[&'a str]) -> Option<(Self, Option<&'a str>)> {
        use Operation::*;
        let op = match tokens {
            ["host", "ping"] => (HostPing, None),
            ["component", "auction"] => (ComponentAuction, None),
            ["provider", "auction"] => (ProviderAuction, None),
            ["link", "put"] => (LinkPut, None),
            ["link", "del"] => (LinkDel, None),
            ["link", "get"] => (LinkGet, None),
            ["claims", "get"] => (ClaimsGet, None),
            ["registry", "put"] => (RegistryPut, None),
            [group, verb, last] if !last.is_empty() => {
                let op = match (*group, *verb) {
                    ("host", "get") => HostGet,
                    ("host", "stop") => HostStop,
                    ("label", "put") => LabelPut,
                    ("label", "del") => LabelDel,
                    ("component", "scale") => ComponentScale,
                    ("component", "update") => ComponentUpdate,
                    ("provider", "start") => ProviderStart,
                    ("provider", "stop") => ProviderStop,
                    ("config", "put") => ConfigPut,
                    ("config", "get") => ConfigGet,
                    ("config", "del") => ConfigDel,
                    _ => return None,
                };
                (op, Some(*last))
            }
            _ => return None,
        };
        Some(op)
    }

    /// The operation's name as it appears in subjects, e.g. `label.put`.
    pub fn name(self) -> &'static str {
        use Operation::*;
        match self {
            HostPing => "host.ping",
            HostGet => "host.get",
            HostStop => "host.stop",
            LabelPut => "label.put",
            LabelDel => "label.del",
            ComponentScale => "component.scale",
            ComponentUpdate => "component.update",
            ComponentAuction => "component.auction",
            ProviderStart => "provider.start",
            ProviderStop => "provider.stop",
            ProviderAuction => "provider.auction",
            LinkPut => "link.put",
            LinkDel => "link.del",
            LinkGet => "link.get",
            ClaimsGet => "claims.get",
            ConfigPut => "config.put",
            ConfigGet => "config.get",
            ConfigDel => "config.del",
            RegistryPut => "registry.put",
        }
    }
}

/// A control message, fully parsed. Host ids are the ones in the subject.
#[derive(Clone, Debug, PartialEq)]
pub enum CtlCommand {
    /// Describe yourself.
    HostPing,
    /// Send your inventory.
    HostGet {
        /// Addressed host.
        host_id: String,
    },
    /// Stop gracefully.
    HostStop {
        /// Addressed host.
        host_id: String,
        /// The body (timeout).
        command: StopHostCommand,
    },
    /// Set a label.
    LabelPut {
        /// Addressed host.
        host_id: String,
        /// The label.
        label: HostLabel,
    },
    /// Delete a label.
    LabelDel {
        /// Addressed host.
        host_id: String,
        /// The key.
        label: HostLabelIdentifier,
    },
    /// Scale a component.
    ComponentScale {
        /// Addressed host.
        host_id: String,
        /// The body.
        command: ScaleComponentCommand,
    },
    /// Update a component.
    ComponentUpdate {
        /// Addressed host.
        host_id: String,
        /// The body.
        command: UpdateComponentCommand,
    },
    /// Bid if the constraints match.
    ComponentAuction(ComponentAuctionRequest),
    /// Start a provider.
    ProviderStart {
        /// Addressed host.
        host_id: String,
        /// The body.
        command: StartProviderCommand,
    },
    /// Stop a provider.
    ProviderStop {
        /// Addressed host.
        host_id: String,
        /// The body.
        command: StopProviderCommand,
    },
    /// Bid if the constraints match.
    ProviderAuction(ProviderAuctionRequest),
    /// Put a link.
    LinkPut(Link),
    /// Delete a link.
    LinkDel(DeleteInterfaceLinkDefinitionRequest),
    /// List links.
    LinkGet,
    /// List claims.
    ClaimsGet,
    /// Put a named config.
    ConfigPut {
        /// Config name.
        name: String,
        /// Its values.
        values: HashMap<String, String>,
    },
    /// Get a named config.
    ConfigGet {
        /// Config name.
        name: String,
    },
    /// Delete a named config.
    ConfigDel {
        /// Config name.
        name: String,
    },
    /// Registry credentials per registry host.
    RegistryPut(crate::registry::RegistryCredentials),
}

impl CtlCommand {
    /// Parses a control message received on `subject` with body `payload`.
    ///
    /// # Errors
    /// [`Error::ForeignSubject`] when the subject is not under this lattice's prefix,
    /// [`Error::UnknownOperation`] when it names no operation, [`Error::EmptyBody`] /
    /// [`Error::InvalidBody`] / [`Error::InvalidField`] when the body is not what the operation
    /// needs.
    pub fn parse(subjects: &Subjects, subject: &str, payload: &[u8]) -> Result<Self> {
        let (op, last) = Self::operation(subjects, subject)?;
        let last = last.unwrap_or_default().to_string();
        use Operation as O;
        Ok(match op {
            O::HostPing => Self::HostPing,
            O::HostGet => Self::HostGet { host_id: last },
            O::HostStop => Self::HostStop { host_id: last, command: body_or_default(op, payload)? },
            O::LabelPut => {
                let label: HostLabel = body(op, payload)?;
                Self::LabelPut { host_id: last, label }
            }
            O::LabelDel => Self::LabelDel { host_id: last, label: body(op, payload)? },
            O::ComponentScale => {
                let command: ScaleComponentCommand = body(op, payload)?;
                require(op, "component_id", &command.component_id)?;
                Self::ComponentScale { host_id: last, command }
            }
            O::ComponentUpdate => {
                let command: UpdateComponentCommand = body(op, payload)?;
                require(op, "component_id", &command.component_id)?;
                require(op, "new_component_ref", &command.new_component_ref)?;
                Self::ComponentUpdate { host_id: last, command }
            }
            O::ComponentAuction => Self::ComponentAuction(body(op, payload)?),
            O::ProviderStart => {
                let command: StartProviderCommand = body(op, payload)?;
                require(op, "provider_id", &command.provider_id)?;
                Self::ProviderStart { host_id: last, command }
            }
            O::ProviderStop => {
                let command: StopProviderCommand = body(op, payload)?;
                require(op, "provider_id", &command.provider_id)?;
                Self::ProviderStop { host_id: last, command }
            }
            O::ProviderAuction => Self::ProviderAuction(body(op, payload)?),
            O::LinkPut => {
                let link: Link = body(op, payload)?;
                require(op, "source_id", &link.source_id)?;
                require(op, "target", &link.target)?;
                require(op, "wit_namespace", &link.wit_namespace)?;
                require(op, "wit_package", &link.wit_package)?;
                Self::LinkPut(link)
            }
            O::LinkDel => Self::LinkDel(body(op, payload)?),
            O::LinkGet => Self::LinkGet,
            O::ClaimsGet => Self::ClaimsGet,
            O::ConfigPut => Self::ConfigPut { name: last, values: body_or_default(op, payload)? },
            O::ConfigGet => Self::ConfigGet { name: last },
            O::ConfigDel => Self::ConfigDel { name: last },
            O::RegistryPut => Self::RegistryPut(body_or_default(op, payload)?),
        })
    }

    /// The operation this command is.
    pub fn kind(&self) -> Operation {
        use Operation as O;
        match self {
            Self::HostPing => O::HostPing,
            Self::HostGet { .. } => O::HostGet,
            Self::HostStop { .. } => O::HostStop,
            Self::LabelPut { .. } => O::LabelPut,
            Self::LabelDel { .. } => O::LabelDel,
            Self::ComponentScale { .. } => O::ComponentScale,
            Self::ComponentUpdate { .. } => O::ComponentUpdate,
            Self::ComponentAuction(_) => O::ComponentAuction,
            Self::ProviderStart { .. } => O::ProviderStart,
            Self::ProviderStop { .. } => O::ProviderStop,
            Self::ProviderAuction(_) => O::ProviderAuction,
            Self::LinkPut(_) => O::LinkPut,
            Self::LinkDel(_) => O::LinkDel,
            Self::LinkGet => O::LinkGet,
            Self::ClaimsGet => O::ClaimsGet,
            Self::ConfigPut { .. } => O::ConfigPut,
            Self::ConfigGet { .. } => O::ConfigGet,
            Self::ConfigDel { .. } => O::ConfigDel,
            Self::RegistryPut(_) => O::RegistryPut,
        }
    }

    /// The operation `subject` names, without reading a body.
    ///
    /// # Errors
    /// [`Error::ForeignSubject`] or [`Error::UnknownOperation`].
    pub fn operation<'a>(subjects: &Subjects, subject: &'a str) -> Result<(Operation, Option<&'a str>)> {
        let tokens = subjects.ctl_tokens(subject).ok_or_else(|| Error::ForeignSubject {
            subject: subject.to_string(),
            expected: subjects.base().to_string(),
        })?;
        Operation::from_tokens(&tokens).ok_or_else(|| Error::UnknownOperation {
            operation: tokens.join("."),
            subject: subject.to_string(),
        })
    }
}

fn body<T: DeserializeOwned>(op: Operation, payload: &[u8]) -> Result<T> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::EmptyBody { operation: op.name() });
    }
    serde_json::from_slice(payload).map_err(|source| Error::InvalidBody { operation: op.name(), source })
}

fn body_or_default<T: DeserializeOwned + Default>(op: Operation, payload: &[u8]) -> Result<T> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    body(op, payload)
}

fn require(op: Operation, field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::InvalidField { operation: op.name(), reason: format!("`{field}` must not be empty") });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subjects() -> Subjects {
        Subjects::new("wasmbus.ctl", "lat")
    }

    #[test]
    fn parses_label_put() {
        let cmd = CtlCommand::parse(&subjects(), "wasmbus.ctl.v1.lat.label.put.NHOST", br#"{"key":"a","value":"b"}"#).unwrap();
        assert_eq!(
            cmd,
            CtlCommand::LabelPut { host_id: "NHOST".into(), label: HostLabel { key: "a".into(), value: "b".into() } }
        );
    }

    #[test]
    fn stop_accepts_empty_body() {
        let cmd = CtlCommand::parse(&subjects(), "wasmbus.ctl.v1.lat.host.stop.NHOST", b"").unwrap();
        assert!(matches!(cmd, CtlCommand::HostStop { command: StopHostCommand { timeout: None, .. }, .. }));
    }

    #[test]
    fn scale_reads_count_as_max_instances() {
        let cmd = CtlCommand::parse(
            &subjects(),
            "wasmbus.ctl.v1.lat.component.scale.NHOST",
            br#"{"component_ref":"file:///x.wasm","component_id":"echo","count":3}"#,
        )
        .unwrap();
        let CtlCommand::ComponentScale { command, .. } = cmd else { panic!("wrong command {cmd:?}") };
        assert_eq!(command.max_instances, 3);
    }

    #[test]
    fn errors_name_the_problem() {
        let s = subjects();
        let err = CtlCommand::parse(&s, "wasmbus.ctl.v1.lat.label.put.N", b"").unwrap_err();
        assert_eq!(err.to_string(), "`label.put` needs a JSON body and the message was empty");
        let err = CtlCommand::parse(&s, "wasmbus.ctl.v1.lat.label.put.N", b"{not json").unwrap_err();
        assert!(err.to_string().starts_with("`label.put` body is not valid: "), "{err}");
        let err = CtlCommand::parse(&s, "wasmbus.ctl.v1.lat.label.put.N", br#"{"key":"a"}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `value`"), "{err}");
        let err = CtlCommand::parse(&s, "wasmbus.ctl.v1.lat.host.dance.N", b"").unwrap_err();
        assert_eq!(err.to_string(), "unknown control operation `host.dance.N` (subject `wasmbus.ctl.v1.lat.host.dance.N`)");
        let err = CtlCommand::parse(&s, "wasmbus.ctl.v1.lat.component.scale.N", br#"{"component_id":" "}"#).unwrap_err();
        assert_eq!(err.to_string(), "`component.scale`: `component_id` must not be empty");
        let err = CtlCommand::parse(&s, "other.v1.lat.host.ping", b"").unwrap_err();
        assert!(matches!(err, Error::ForeignSubject { .. }));
    }

    #[test]
    fn config_put_needs_string_values() {
        let s = subjects();
        let cmd = CtlCommand::parse(&s, "wasmbus.ctl.v1.lat.config.put.db", br#"{"url":"x"}"#).unwrap();
        assert_eq!(cmd, CtlCommand::ConfigPut { name: "db".into(), values: [("url".to_string(), "x".to_string())].into() });
        let err = CtlCommand::parse(&s, "wasmbus.ctl.v1.lat.config.put.db", br#"{"n":1}"#).unwrap_err();
        assert!(matches!(err, Error::InvalidBody { operation: "config.put", .. }), "{err}");
    }
}
