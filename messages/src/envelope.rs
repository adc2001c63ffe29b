//! The reply envelope: `{"success": bool, "message": "…", "response": T}`.

use serde::{Deserialize, Serialize};

/// The envelope every control-interface reply travels in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtlResponse<T> {
    /// Whether the host did (or accepted to do) what was asked.
    pub success: bool,
    /// A human-readable message; on failure it says what was wrong.
    #[serde(default)]
    pub message: String,
    /// The payload, omitted when there is none.
    #[serde(default = "Option::default", skip_serializing_if = "Option::is_none")]
    pub response: Option<T>,
}

impl<T> CtlResponse<T> {
    /// A successful reply carrying `response`.
    pub fn ok(response: T) -> Self {
        Self { success: true, message: String::new(), response: Some(response) }
    }

    /// A failed reply that says why.
    pub fn error(message: impl Into<String>) -> Self {
        Self { success: false, message: message.into(), response: None }
    }
}

impl CtlResponse<()> {
    /// A successful reply with no payload.
    pub fn success(message: impl Into<String>) -> Self {
        Self { success: true, message: message.into(), response: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_response_is_omitted() {
        let json = serde_json::to_value(CtlResponse::success("done")).unwrap();
        assert_eq!(json, serde_json::json!({"success": true, "message": "done"}));
    }

    #[test]
    fn error_has_message() {
        let json = serde_json::to_value(CtlResponse::<()>::error("bad")).unwrap();
        assert_eq!(json, serde_json::json!({"success": false, "message": "bad"}));
    }
}
