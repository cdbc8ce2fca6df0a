//! Stable error codes. Integrators match on `code`; `message` is for people.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Every error the helper can answer with. The kebab-case names are part of the
/// public API and never change meaning; new codes may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    // The caller sent something we cannot read.
    /// The frame was not valid UTF-8 JSON.
    InvalidJson,
    /// Valid JSON, but not a request (`id`, `method`, `params`).
    InvalidRequest,
    /// The frame declared more than 1 MiB; it was discarded.
    FrameTooLarge,
    /// No such method (see `hello.methods` for what this helper offers).
    UnknownMethod,
    /// Parameters of the wrong shape or out of range.
    InvalidParams,

    // The caller is not allowed or not compatible.
    /// `hello{minHelperVersion}` is newer than this helper.
    HelperOutdated,
    /// The key is fixed by the administrator's policy file.
    PolicyLocked,
    /// The connecting process belongs to another user.
    PeerNotAllowed,

    // State and configuration.
    /// No such configuration key.
    UnknownConfigKey,
    /// The value is not valid for that configuration key.
    InvalidConfigValue,
    /// The operation needs an account (`login` first).
    NotLoggedIn,
    /// The OS keyring (Secret Service, Keychain, Credential Manager) is not reachable.
    KeyringUnavailable,
    /// A call needs a registered phone.
    NotRegistered,
    /// No call with that id (or none fits the request).
    NoSuchCall,
    /// The audio system (PulseAudio, WASAPI, CoreAudio) cannot be reached.
    AudioUnavailable,

    // Local side.
    /// The native-messaging bridge could not reach or start the helper.
    HelperUnavailable,
    /// The answer would exceed the frame cap.
    ResponseTooLarge,
    /// The helper is shutting down.
    ShuttingDown,
    /// A file could not be read or written.
    Io,
    /// A bug in the helper; details are in BPClient.log.
    Internal,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Unit variants always serialize to a string.
        let v = serde_json::to_value(self).map_err(|_| std::fmt::Error)?;
        f.write_str(v.as_str().unwrap_or("internal"))
    }
}

/// The `error` member of a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error, schemars::JsonSchema)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Machine-readable details, e.g. `{"required":"2.0.0","installed":"1.4.0"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_in_kebab_case() {
        assert_eq!(serde_json::to_string(&ErrorCode::HelperOutdated).unwrap(), r#""helper-outdated""#);
        assert_eq!(ErrorCode::FrameTooLarge.to_string(), "frame-too-large");
    }
}
