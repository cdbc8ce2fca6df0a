//! Event names and payloads. Every connected client receives every event.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::methods::{AccountStatus, LogLevel};

/// The account changed: `login`, `logout`, or the remembered password was loaded at start.
pub const ACCOUNT_CHANGED: &str = "account-changed";
/// A configuration key changed through the API.
pub const CONFIG_CHANGED: &str = "config-changed";
/// The log level changed.
pub const LOG_LEVEL_CHANGED: &str = "log-level-changed";

/// The SIP registration changed (data: the `registration` of getStatus).
pub const REGISTRATION_CHANGED: &str = "registration-changed";
/// Something went wrong with the phone, or came right again.
pub const PHONE_ERROR: &str = "phone-error";

/// Events this helper emits, in the order `hello` lists them.
pub const ALL: &[&str] = &[ACCOUNT_CHANGED, CONFIG_CHANGED, LOG_LEVEL_CHANGED, REGISTRATION_CHANGED, PHONE_ERROR];

/// `phone-error` payload. `error` is one of `auth-failed` (the registrar
/// refused the credentials three times; not retried until a new login),
/// `connection-failed` (cannot register), `connection-lost` (was registered,
/// now cannot refresh), `connection-restored`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PhoneError {
    pub error: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_code: Option<u16>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccountChanged {
    /// `None` after logout.
    pub account: Option<AccountStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigChanged {
    pub key: String,
    /// The new effective value (`null` when the key has no value).
    pub value: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogLevelChanged {
    pub level: LogLevel,
    pub persisted: bool,
}
