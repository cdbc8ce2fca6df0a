//! Method names and their typed parameters and results (camelCase on the wire).
//! Parameters reject unknown members, so a misspelt field is an `invalid-params`
//! error rather than a silently ignored one.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::password::Password;

pub const HELLO: &str = "hello";
pub const GET_STATUS: &str = "getStatus";
pub const LOGIN: &str = "login";
pub const LOGOUT: &str = "logout";
pub const SET_LOG_LEVEL: &str = "setLogLevel";
pub const GET_CONFIG: &str = "getConfig";
pub const SET_CONFIG: &str = "setConfig";
pub const COLLECT_DIAGNOSTICS: &str = "collectDiagnostics";
pub const CALL: &str = "call";
pub const ANSWER_CALL: &str = "answerCall";
pub const REJECT_CALL: &str = "rejectCall";
pub const END_CALL: &str = "endCall";
pub const SEND_DTMF: &str = "sendDtmf";
pub const HOLD_CALL: &str = "holdCall";
pub const RESUME_CALL: &str = "resumeCall";
pub const TRANSFER_CALL: &str = "transferCall";
pub const CONFIRM_TRANSFER: &str = "confirmTransfer";
pub const LIST_DEVICES: &str = "listDevices";
pub const MUTE_CALL: &str = "muteCall";
pub const UNMUTE_CALL: &str = "unmuteCall";
pub const GET_CALL_STATS: &str = "getCallStats";
pub const SET_DEVICES: &str = "setDevices";

/// Methods this helper answers, in the order `hello` lists them.
pub const ALL: &[&str] = &[
    HELLO,
    GET_STATUS,
    LOGIN,
    LOGOUT,
    SET_LOG_LEVEL,
    GET_CONFIG,
    SET_CONFIG,
    COLLECT_DIAGNOSTICS,
    CALL,
    ANSWER_CALL,
    REJECT_CALL,
    END_CALL,
    SEND_DTMF,
    HOLD_CALL,
    RESUME_CALL,
    TRANSFER_CALL,
    CONFIRM_TRANSFER,
    LIST_DEVICES,
    MUTE_CALL,
    UNMUTE_CALL,
    GET_CALL_STATS,
    SET_DEVICES,
];

/// `setDevices`: device ids from `listDevices`; `""` is the system default;
/// absent keys stay as they are.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetDevicesParams {
    #[serde(default)]
    pub microphone: Option<String>,
    #[serde(default)]
    pub speaker: Option<String>,
    /// Devices that ring; empty = the speaker.
    #[serde(default)]
    pub ringer: Option<Vec<String>>,
    #[serde(default)]
    pub ring_on_all_devices: Option<bool>,
}

/// Voice quality of one call as received here (`getCallStats`, `quality-report`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallStats {
    pub call_id: String,
    /// `PCMU/8000` …
    pub codec: String,
    pub packets_received: u64,
    pub packets_lost: u64,
    /// Lost in the last report interval, percent.
    pub loss_percent: f64,
    /// RFC 3550 interarrival jitter, ms.
    pub jitter_ms: f64,
    /// What the jitter buffer held when the speaker asked for audio (the
    /// frame due and any after it), ms, averaged over the last two seconds.
    pub buffer_ms: f64,
    /// Frames concealed (lost or late), late and duplicate packets.
    pub concealed: u64,
    pub late: u64,
    pub duplicates: u64,
    pub packets_sent: u64,
    /// RTP payload bytes sent (the codec's bitrate over the call's time).
    pub payload_bytes_sent: u64,
    /// Round-trip time from RTCP (the peer's report on our sender report), ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Loss the peer reports for what we send (RTCP), percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_loss_percent: Option<f64>,
    /// ITU-T G.107 E-model rating and its mean opinion score.
    pub r_factor: f64,
    pub mos: f64,
}

/// One audio device of `listDevices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AudioDevice {
    /// Stable across restarts and re-plugs; what `audio.*` settings hold.
    pub id: String,
    pub name: String,
    /// `input` or `output`.
    pub direction: String,
    /// The system's default device for its direction.
    pub default: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransferCallParams {
    #[serde(default)]
    pub call_id: Option<String>,
    /// `direct` (blind) or `consulted`.
    #[serde(rename = "type", default = "default_transfer_type")]
    pub kind: String,
    /// Where the other party goes: a SIP URI, user or number.
    pub target: String,
}

fn default_transfer_type() -> String {
    "direct".into()
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendDtmfParams {
    #[serde(default)]
    pub call_id: Option<String>,
    /// Digits `0-9 A-D * #`; `,` is a 2 s pause. At most 64.
    pub tones: String,
    /// Tone length in ms (40–6000); `dtmf.duration_ms` when absent.
    #[serde(default)]
    pub duration: Option<u32>,
    /// Pause between tones in ms (30–6000); `dtmf.gap_ms` when absent.
    #[serde(default)]
    pub inter_tone_gap: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallParams {
    /// A SIP URI (`sip:bob@pbx.example.com`) or a user / number in the account's domain.
    pub target: String,
    /// Extra SIP headers for this call's INVITE, name → value.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

/// `answerCall`, `endCall`: the call, or the only one that fits when absent.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallIdParams {
    #[serde(default)]
    pub call_id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RejectCallParams {
    #[serde(default)]
    pub call_id: Option<String>,
    /// 486 Busy Here (default), 603 Decline, 480 Temporarily Unavailable …
    #[serde(default)]
    pub code: Option<u16>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallStatus {
    pub call_id: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// `calling`, `ringing`, `incoming`, `connected`, `ending`.
    pub state: String,
    /// The other party's SIP URI.
    pub remote: String,
    /// Negotiated codec, once known (e.g. `PCMU/8000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    /// Who holds the call: `local`, `remote` or `both`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    /// The agent's microphone is muted on this call.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub muted: bool,
}

impl CallStatus {
    /// A call just started: no codec yet, not held, not muted.
    pub fn new(call_id: String, direction: &str, state: &str, remote: String) -> CallStatus {
        CallStatus {
            call_id,
            direction: direction.into(),
            state: state.into(),
            remote,
            codec: None,
            hold: None,
            muted: false,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HelloParams {
    /// Version of the SDK or program calling, for the log.
    #[serde(default)]
    pub sdk_version: Option<String>,
    /// Oldest helper the caller works with (semver). Older → `helper-outdated`.
    #[serde(default)]
    pub min_helper_version: Option<String>,
    /// A short name of the calling program, for the log.
    #[serde(default)]
    pub client: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelloResult {
    pub helper_version: String,
    pub protocol_version: u32,
    pub methods: Vec<String>,
    pub events: Vec<String>,
    /// The same as `getStatus`, so a new connection learns the current state at once.
    pub status: Status,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub helper_version: String,
    pub pid: u32,
    /// RFC 3339, local time of the helper's machine.
    pub started_at: String,
    pub uptime_ms: u64,
    pub profile_dir: String,
    pub config_file: String,
    /// The administrator's policy file, when one is in force.
    pub policy_file: Option<String>,
    /// Configuration keys fixed by the policy file (dotted, e.g. `sip.transport`).
    pub locked_keys: Vec<String>,
    /// Problems found in the configuration that did not stop the helper (unknown keys …).
    pub config_warnings: Vec<String>,
    pub log_file: String,
    pub log_level: LogLevel,
    pub account: Option<AccountStatus>,
    pub registration: RegistrationStatus,
    /// Calls in progress (ringing, connected …).
    pub calls: Vec<CallStatus>,
    /// Clients connected to the local socket, this one included.
    pub clients: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountStatus {
    pub username: String,
    /// The password is kept in the OS keyring across restarts.
    pub remembered: bool,
    /// The helper holds a password for this account (in memory, loaded from the
    /// keyring or given by `login`).
    pub password_available: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationStatus {
    /// `not-configured` (no account or no server), `registering`, `registered`,
    /// `unregistering`, `unregistered` or `failed`.
    pub state: String,
    /// `host:port` of the registrar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// `udp`, `tcp` or `tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// Seconds granted by the registrar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u32>,
    /// Why it failed: `auth-failed`, `timeout`, `rejected`, `unreachable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The SIP status code of a rejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_code: Option<u16>,
    /// The second registration with `sip.backup_server`, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupRegistrationStatus>,
}

/// The backup registration: `{server, state}`, `state` as for the main one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRegistrationStatus {
    pub server: String,
    pub state: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl std::str::FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "error" => Ok(LogLevel::Error),
            "warn" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            "trace" => Ok(LogLevel::Trace),
            other => Err(format!("unknown log level {other:?} (error, warn, info, debug, trace)")),
        }
    }
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginParams {
    pub username: String,
    pub password: Password,
    /// Keep the password in the OS keyring so the next start logs in by itself.
    #[serde(default)]
    pub remember: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetLogLevelParams {
    pub level: LogLevel,
    /// Also write it to config.toml (`log.level`) so it survives a restart.
    #[serde(default)]
    pub persist: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetConfigParams {
    /// Dotted key, e.g. `calls.no_answer_timeout`.
    pub key: String,
    /// The new value as JSON; `null` removes the key from config.toml (back to default).
    pub value: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigView {
    /// The effective configuration: defaults, then config.toml, then the policy file.
    pub config: Value,
    pub locked_keys: Vec<String>,
    pub config_file: String,
    pub policy_file: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiagnosticsBundle {
    /// Absolute path of the zip file.
    pub path: String,
    pub bytes: u64,
    /// Names of the entries in the zip.
    pub files: Vec<String>,
}

/// Methods without parameters (`{}`), and answers with nothing to say (`{}`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// `login`: the account now in use.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginResult {
    pub account: AccountStatus,
}

/// `setConfig`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SetConfigResult {
    pub key: String,
    /// The new effective value.
    pub value: Value,
    /// The change takes effect at the next start only.
    pub restart_required: bool,
}

/// `call`, `answerCall`, `rejectCall`, `endCall`, `holdCall`, `resumeCall`:
/// the call acted on.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallRef {
    pub call_id: String,
}

/// `transferCall`, `confirmTransfer`: the call transferred and, for a
/// consulted transfer, the consultation call.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransferResult {
    pub call_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consult_call_id: Option<String>,
}

/// `muteCall`, `unmuteCall`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MuteResult {
    pub call_id: String,
    pub muted: bool,
}

/// `sendDtmf`: how the digits go out, `rfc4733` or `info`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendDtmfResult {
    pub call_id: String,
    pub method: String,
}

/// `listDevices` answer and `devices-changed` payload.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceList {
    pub devices: Vec<AudioDevice>,
}

/// `setDevices`: the devices now chosen (`""` = the system default).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChosenDevices {
    pub microphone: String,
    pub speaker: String,
    pub ringer: Vec<String>,
    pub ring_on_all_devices: bool,
}

/// Parses `params` into a method's parameter type, with a message that names the
/// offending field (`login: password: invalid type: integer `5`, expected a string`).
pub fn parse_params<T: serde::de::DeserializeOwned>(method: &str, params: Value) -> Result<T, crate::ApiError> {
    serde_path_to_error::deserialize(params).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path == "." { format!("{method}: {inner}") } else { format!("{method}: {path}: {inner}") };
        crate::ApiError::new(crate::ErrorCode::InvalidParams, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrong_types_and_unknown_fields_name_the_field() {
        let e = parse_params::<LoginParams>(LOGIN, json!({"username":"a","password":5})).unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::InvalidParams);
        assert!(e.message.contains("password"), "{}", e.message);
        let e = parse_params::<LoginParams>(LOGIN, json!({"username":"a","password":"p","remeber":true})).unwrap_err();
        assert!(e.message.contains("remeber"), "{}", e.message);
        let e = parse_params::<SetLogLevelParams>(SET_LOG_LEVEL, json!({"level":"loud"})).unwrap_err();
        assert!(e.message.contains("level"), "{}", e.message);
    }
}
