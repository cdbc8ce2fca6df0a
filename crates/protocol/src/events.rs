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

pub const CALL_INCOMING: &str = "call-incoming";
pub const CALL_STARTED: &str = "call-started";
pub const CALL_IN_PROGRESS: &str = "call-in-progress";
pub const CALL_ANSWERED: &str = "call-answered";
pub const CALL_CONFIRMED: &str = "call-confirmed";
pub const CALL_ENDED: &str = "call-ended";
/// A DTMF digit from the other party: `{"callId","digit","method":"info"}`.
pub const CALL_DTMF: &str = "call-dtmf";
/// `{"callId","by":"local"|"remote"}`; for `local`, `peerDirection` is what the peer answered.
pub const CALL_HELD: &str = "call-held";
pub const CALL_RESUMED: &str = "call-resumed";
/// The agent's microphone is muted on a call: `{"callId"}`.
pub const CALL_MUTED: &str = "call-muted";
pub const CALL_UNMUTED: &str = "call-unmuted";
/// The other party accepted our transfer request and is calling the target.
pub const CALL_TRANSFER_STARTED: &str = "call-transfer-started";
/// The target answered; our call ends (`call-ended{reason:"transferred"}`).
pub const CALL_TRANSFER_SUCCESS: &str = "call-transfer-success";
/// The transfer was refused or the target did not answer; the call goes on.
pub const CALL_TRANSFER_CANCEL: &str = "call-transfer-cancel";
/// The other party transferred us: `{"callId","newCallId","target"}`; the new
/// call follows with its own `call-*` events.
pub const CALL_TRANSFERRED: &str = "call-transferred";
/// An audio device was plugged or unplugged, or the default changed:
/// `{"devices":[…]}` as `listDevices` answers.
pub const DEVICES_CHANGED: &str = "devices-changed";
/// A call's speaker or microphone changed: `{"callId","direction":"output|input",
/// "device","reason":"lost|restored"}` — `lost`: the device in use went away
/// and the system default carries the call; `restored`: the chosen one is back.
pub const CALL_AUDIO_DEVICE_CHANGED: &str = "call-audio-device-changed";
/// Voice quality of a call, every few seconds while it is up: `CallStats`.
pub const QUALITY_REPORT: &str = "quality-report";

/// Events this helper emits, in the order `hello` lists them.
pub const ALL: &[&str] = &[
    ACCOUNT_CHANGED,
    CONFIG_CHANGED,
    LOG_LEVEL_CHANGED,
    REGISTRATION_CHANGED,
    PHONE_ERROR,
    CALL_INCOMING,
    CALL_STARTED,
    CALL_IN_PROGRESS,
    CALL_ANSWERED,
    CALL_CONFIRMED,
    CALL_ENDED,
    CALL_DTMF,
    CALL_HELD,
    CALL_RESUMED,
    CALL_MUTED,
    CALL_UNMUTED,
    CALL_TRANSFER_STARTED,
    CALL_TRANSFER_SUCCESS,
    CALL_TRANSFER_CANCEL,
    CALL_TRANSFERRED,
    DEVICES_CHANGED,
    QUALITY_REPORT,
    CALL_AUDIO_DEVICE_CHANGED,
];

/// `call-incoming`: who calls, and what the contact center sent with it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallIncoming {
    pub call_id: String,
    /// The caller's SIP URI.
    pub from: String,
    pub display_name: Option<String>,
    pub to: String,
    /// `X-…` headers of the INVITE, name → value.
    pub headers: std::collections::BTreeMap<String, String>,
    /// `X-Customer-Info` parsed as JSON, when it is JSON.
    pub customer_info: Option<Value>,
    /// The value of the header named by `sip.call_id_header`.
    pub contact_center_call_id: Option<String>,
    /// This call takes the place of that one (consulted transfer, RFC 3891):
    /// it is answered at once and the other call ends as `replaced`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces_call_id: Option<String>,
}

/// `call-ended`. `reason`: `local-hangup`, `remote-hangup`, `cancelled`,
/// `rejected`, `busy`, `timeout`, `no-answer`, `failed`, `transferred`,
/// `replaced`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallEnded {
    pub call_id: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `phone-error` payload. `error` is one of `auth-failed` (the registrar
/// refused the credentials three times; not retried until a new login),
/// `connection-failed` (cannot register), `connection-lost` (was registered,
/// now cannot refresh), `connection-restored`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhoneError {
    pub error: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_code: Option<u16>,
    /// The call concerned (`hold-failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountChanged {
    /// `None` after logout.
    pub account: Option<AccountStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigChanged {
    pub key: String,
    /// The new effective value (`null` when the key has no value).
    pub value: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogLevelChanged {
    pub level: LogLevel,
    pub persisted: bool,
}

/// `call-started`: a call this helper places.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallStarted {
    pub call_id: String,
    /// `outbound`.
    pub direction: String,
    /// The SIP URI called.
    pub remote: String,
}

/// `call-in-progress`: a provisional answer (180 ringing, 183 progress).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallInProgress {
    pub call_id: String,
    pub sip_code: u16,
}

/// `call-answered`: the call is up, with the negotiated codec (e.g. `PCMU/8000`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallAnswered {
    pub call_id: String,
    pub codec: Option<String>,
}

/// Events about one call with nothing more to say: `call-confirmed`,
/// `call-muted`, `call-unmuted`, `call-transfer-started`, `call-transfer-success`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallEvent {
    pub call_id: String,
}

/// `call-held`, `call-resumed`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallHeld {
    pub call_id: String,
    /// `local` (we held or resumed) or `remote`.
    pub by: String,
    /// For `local`: the direction the peer answered (`recvonly`, `inactive` …).
    pub peer_direction: Option<String>,
}

/// `call-transfer-cancel`: the transfer failed; the call goes on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallTransferCancel {
    pub call_id: String,
    pub sip_code: u16,
}

/// `call-transferred`: the other party transferred us to `target`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallTransferred {
    pub call_id: String,
    pub new_call_id: String,
    pub target: String,
}

/// `call-audio-device-changed`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallAudioDeviceChanged {
    pub call_id: String,
    /// `output` or `input`.
    pub direction: String,
    /// The device now carrying the call (`""` = the system default).
    pub device: String,
    /// `lost` or `restored`.
    pub reason: String,
}

/// `call-dtmf`: a digit from the other party.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallDtmf {
    pub call_id: String,
    pub digit: String,
    /// `rfc4733` or `info`.
    pub method: String,
}
