//! What a scale may ask of one component's resources: `component_limits`, as wasmCloud 1.9's
//! host reads them. `max_memory_limit` is the bytes of linear memory each of the component's
//! instances may grow to, at most the host's `--max-component-memory` (a component may ask for
//! less than the host allows, never more). wasmCloud 1.9 reads `max_execution_time` too and
//! does not apply it; here it is not read either, and other keys are ignored as there.

use std::collections::HashMap;

pub use crate::error::LimitsError;

/// The key of the memory limit in `component_limits`.
pub const MAX_MEMORY_LIMIT: &str = "max_memory_limit";

/// One WebAssembly page: the least memory a limit may allow.
const PAGE: u64 = 64 << 10;

/// The limits one component was scaled with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ComponentLimits {
    /// Bytes of linear memory per instance, when the scale asked for a limit.
    pub max_memory: Option<u64>,
    /// What its annotations asked of instance reuse (read beside the limits, from the scale's
    /// annotations: [`crate::wasm::reuse`]).
    pub reuse: crate::wasm::reuse::Reuse,
}

impl ComponentLimits {
    /// Reads `component_limits` for a host whose components may have `host_max` bytes each.
    ///
    /// # Errors
    /// A memory limit that is not a number of bytes, is less than a page, or is above `host_max`.
    pub fn parse(limits: Option<&HashMap<String, String>>, host_max: u64) -> Result<Self, LimitsError> {
        let Some(text) = limits.and_then(|l| l.get(MAX_MEMORY_LIMIT)) else { return Ok(Self::default()) };
        let asked: u64 = text.trim().parse().map_err(|_| LimitsError::NotBytes(text.clone()))?;
        if asked < PAGE {
            return Err(LimitsError::BelowPage(asked));
        }
        if asked > host_max {
            return Err(LimitsError::AboveHost { asked, host: host_max });
        }
        Ok(Self { max_memory: Some(asked), ..Self::default() })
    }

    /// The memory an instance may grow to on a host allowing `host_max`.
    pub fn max_memory(&self, host_max: u64) -> u64 {
        self.max_memory.map_or(host_max, |m| m.min(host_max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(value: &str) -> Result<ComponentLimits, LimitsError> {
        ComponentLimits::parse(Some(&HashMap::from([(MAX_MEMORY_LIMIT.to_string(), value.to_string())])), 256 << 20)
    }

    #[test]
    fn a_component_may_ask_for_less_memory_never_more() {
        assert_eq!(ComponentLimits::parse(None, 256 << 20), Ok(ComponentLimits::default()));
        assert_eq!(ComponentLimits::default().max_memory(256 << 20), 256 << 20);
        let eight = limits("8388608").expect("8 MiB");
        assert_eq!(eight.max_memory(256 << 20), 8 << 20);
        assert_eq!(limits(&(256u64 << 20).to_string()).map(|l| l.max_memory), Ok(Some(256 << 20)));
        assert_eq!(limits("268435457"), Err(LimitsError::AboveHost { asked: (256 << 20) + 1, host: 256 << 20 }));
        assert_eq!(limits("8MiB"), Err(LimitsError::NotBytes("8MiB".into())));
        assert_eq!(limits("-1"), Err(LimitsError::NotBytes("-1".into())));
        assert_eq!(limits("100"), Err(LimitsError::BelowPage(100)));
        let other = HashMap::from([("max_execution_time".to_string(), "5".to_string())]);
        assert_eq!(ComponentLimits::parse(Some(&other), 256 << 20), Ok(ComponentLimits::default()), "other keys are not read");
    }
}
