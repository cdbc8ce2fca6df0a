//! The configuration schema, its defaults and its validation rules.

use std::collections::BTreeMap;
use std::path::PathBuf;

use agent_helper_protocol::methods::LogLevel;
use serde::{Deserialize, Serialize};

/// Every settable key, as `section.key`. Policy locks and `setConfig` work on these.
pub const KEYS: &[&str] = &[
    "sip.domain",
    "sip.servers",
    "sip.failover",
    "sip.backup_server",
    "sip.transport",
    "sip.register_expiry",
    "sip.reconnect_min",
    "sip.reconnect_max",
    "sip.keepalive_interval",
    "sip.custom_headers",
    "sip.call_id_header",
    "sip.user_agent",
    "sip.tls_ca_file",
    "sip.srtp",
    "calls.no_answer_timeout",
    "calls.auto_answer",
    "calls.auto_answer_delay",
    "calls.avoid_two_way_hold",
    "calls.session_expires",
    "codecs.allow",
    "codecs.opus_dtx",
    "codecs.ptime",
    "dtmf.mode",
    "dtmf.duration_ms",
    "dtmf.gap_ms",
    "audio.microphone",
    "audio.speaker",
    "audio.ringer",
    "audio.ring_on_all_devices",
    "audio.ringtone",
    "audio.device_rate",
    "audio.streams",
    "browser.allowed_origins",
    "log.level",
    "log.max_file_bytes",
    "log.max_files",
    "recording.allowed",
    "recording.folder",
    "recording.segment_seconds",
    "monitoring.allowed",
    "monitoring.allowed_supervisors",
    "desktop.language",
    "desktop.call_popup",
    "desktop.customer_fields",
    "desktop.autostart",
];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub sip: SipConfig,
    pub calls: CallsConfig,
    pub codecs: CodecsConfig,
    pub dtmf: DtmfConfig,
    pub audio: AudioConfig,
    pub browser: BrowserConfig,
    pub log: LogConfig,
    pub recording: RecordingConfig,
    pub monitoring: MonitoringConfig,
    pub desktop: DesktopConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailoverMode {
    /// Try the servers in the listed order.
    Priority,
    /// Pick a random server first, then go round the list.
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SrtpMode {
    /// Plain RTP only.
    Off,
    /// Offer SRTP, accept plain RTP.
    Optional,
    /// "Secure phone": refuse calls without SRTP.
    Required,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipServer {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Overrides `sip.transport` for this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SipConfig {
    /// SIP domain of the agent's address (`user@domain`); empty = the first server's host.
    pub domain: String,
    /// Registrars/proxies in failover order.
    pub servers: Vec<SipServer>,
    pub failover: FailoverMode,
    /// A second server registered at the same time as the active one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_server: Option<SipServer>,
    pub transport: Transport,
    /// Seconds asked for in REGISTER `Expires`.
    pub register_expiry: u32,
    /// Seconds before the first reconnect attempt; doubles up to `reconnect_max`.
    pub reconnect_min: u32,
    pub reconnect_max: u32,
    /// Seconds between keep-alives to the server (CRLF ping over TCP/TLS,
    /// OPTIONS over UDP) that notice a dead server; 0 turns them off.
    pub keepalive_interval: u32,
    /// Extra headers on REGISTER and INVITE, name → value.
    pub custom_headers: BTreeMap<String, String>,
    /// Header that carries the contact center's call id on inbound INVITEs.
    pub call_id_header: String,
    pub user_agent: String,
    /// PEM file with extra CA certificates for TLS (in addition to the system roots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    pub srtp: SrtpMode,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            domain: String::new(),
            servers: Vec::new(),
            failover: FailoverMode::Priority,
            backup_server: None,
            transport: Transport::Udp,
            register_expiry: 300,
            reconnect_min: 2,
            reconnect_max: 60,
            keepalive_interval: 30,
            custom_headers: BTreeMap::new(),
            call_id_header: "X-Call-Id".into(),
            user_agent: format!("AgentHelper/{}", agent_helper_protocol::HELPER_VERSION),
            tls_ca_file: None,
            srtp: SrtpMode::Off,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CallsConfig {
    /// Seconds an unanswered inbound call rings before it is rejected; 0 = ring until cancelled.
    pub no_answer_timeout: u32,
    pub auto_answer: bool,
    /// Seconds to ring before auto-answering.
    pub auto_answer_delay: u32,
    /// When the far end holds us, do not put it on hold in return.
    pub avoid_two_way_hold: bool,
    /// RFC 4028 session interval in seconds; 0 turns session timers off.
    pub session_expires: u32,
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            no_answer_timeout: 60,
            auto_answer: false,
            auto_answer_delay: 0,
            avoid_two_way_hold: true,
            session_expires: 1800,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Opus,
    G722,
    Pcmu,
    Pcma,
    /// Only in builds with the `g729` feature (bcg729 is GPL-3).
    G729,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CodecsConfig {
    /// Allowed codecs, most preferred first; others are removed from SDP.
    pub allow: Vec<Codec>,
    /// Opus discontinuous transmission: silence is not sent (a refresh every
    /// 400 ms), and peers are asked to do the same (`usedtx=1`). A peer that
    /// asks for it gets it either way.
    pub opus_dtx: bool,
    /// The packet time we ask peers for (`a=ptime`), ms; what we send
    /// follows the peer's own `a=ptime`, else this.
    pub ptime: u32,
}

impl Default for CodecsConfig {
    fn default() -> Self {
        Self { allow: vec![Codec::Opus, Codec::G722, Codec::Pcmu, Codec::Pcma], opus_dtx: false, ptime: 20 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtmfMode {
    /// RFC 4733 telephone-event in the media stream.
    Rfc4733,
    /// SIP INFO with `application/dtmf-relay`.
    Info,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DtmfConfig {
    pub mode: DtmfMode,
    pub duration_ms: u32,
    pub gap_ms: u32,
}

impl Default for DtmfConfig {
    fn default() -> Self {
        Self { mode: DtmfMode::Rfc4733, duration_ms: 100, gap_ms: 70 }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AudioConfig {
    /// Stable device id; absent = the system default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub microphone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
    /// Devices that ring on inbound calls; empty = the speaker.
    pub ringer: Vec<String>,
    pub ring_on_all_devices: bool,
    /// WAV file played as the ring tone instead of the built-in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ringtone: Option<PathBuf>,
    /// The rate call audio devices are opened at.
    pub device_rate: DeviceRate,
    /// The API audio streams go through.
    pub streams: AudioStreams,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceRate {
    /// The codec's (8, 16 or 48 kHz): the sound server converts, where it
    /// can; a device that refuses the rate is opened at its own.
    #[default]
    Codec,
    /// The device's own: the helper converts (a headset that glitches when
    /// its rate switches, or to keep the sound server's converter out).
    Native,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioStreams {
    /// libpulse where a PulseAudio server (or PipeWire's) runs, cpal elsewhere.
    #[default]
    Auto,
    /// cpal on every system (what Windows and macOS always use).
    Cpal,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BrowserConfig {
    /// Exact origins of the Agent Desktop (`https://desk.example.com`).
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    pub level: LogLevel,
    /// BPClient.log is rotated when it grows past this many bytes.
    pub max_file_bytes: u64,
    /// Log files kept, BPClient.log included.
    pub max_files: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: LogLevel::Info, max_file_bytes: 10 * 1024 * 1024, max_files: 10 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordingConfig {
    /// Screen recording may be started (by policy, normally set by the administrator).
    pub allowed: bool,
    /// Where recordings go; absent = the profile's recordings folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folder: Option<PathBuf>,
    /// Recordings are cut into segments of this many seconds, so a crash loses at most one.
    pub segment_seconds: u32,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self { allowed: false, folder: None, segment_seconds: 300 }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MonitoringConfig {
    /// Supervisors may watch this agent's screen live.
    pub allowed: bool,
    /// Supervisor ids allowed to monitor; empty = any supervisor the Agent Desktop authorises.
    pub allowed_supervisors: Vec<String>,
}

/// The desktop app's windows (the headless helper has none and ignores these).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DesktopConfig {
    pub language: Language,
    /// Show the inbound-call popup over other windows.
    pub call_popup: bool,
    /// `X-Customer-Info` fields the popup shows, in this order, under these
    /// labels; empty = every field under its own name.
    pub customer_fields: Vec<CustomerField>,
    /// Start the desktop app when the agent logs in to the computer.
    pub autostart: bool,
}

impl Default for DesktopConfig {
    fn default() -> Self {
        Self { language: Language::En, call_popup: true, customer_fields: Vec::new(), autostart: false }
    }
}

/// The languages the desktop windows are translated into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    En,
    Fi,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerField {
    /// The field's name in the `X-Customer-Info` JSON object.
    pub key: String,
    /// What the agent sees.
    pub label: String,
}

/// The popup has room for this many customer fields.
pub const MAX_CUSTOMER_FIELDS: usize = 20;

/// Headers the SIP stack writes itself; configuring them would break dialogs.
const RESERVED_HEADERS: &[&str] = &[
    "via",
    "from",
    "to",
    "call-id",
    "cseq",
    "contact",
    "content-length",
    "content-type",
    "max-forwards",
    "route",
    "record-route",
    "authorization",
    "proxy-authorization",
    "expires",
    "user-agent",
    "allow",
    "supported",
    "require",
];

impl Config {
    /// Every rule the types alone do not express, as (`section.key`, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |key: &str, msg: String| out.push((key.to_owned(), msg));
        let range = |v: u64, lo: u64, hi: u64| (lo..=hi).contains(&v);

        let s = &self.sip;
        for (i, server) in s.servers.iter().enumerate() {
            if let Err(m) = check_host(&server.host) {
                bad(&format!("sip.servers[{i}].host"), m);
            }
            if server.port == Some(0) {
                bad(&format!("sip.servers[{i}].port"), "port must be 1–65535".into());
            }
        }
        if let Some(b) = &s.backup_server {
            if let Err(m) = check_host(&b.host) {
                bad("sip.backup_server.host", m);
            }
            if b.port == Some(0) {
                bad("sip.backup_server.port", "port must be 1–65535".into());
            }
        }
        if !s.domain.is_empty()
            && let Err(m) = check_host(&s.domain)
        {
            bad("sip.domain", m);
        }
        if !range(s.register_expiry.into(), 60, 86_400) {
            bad("sip.register_expiry", format!("must be 60–86400 seconds (got {})", s.register_expiry));
        }
        if s.keepalive_interval != 0 && !range(s.keepalive_interval.into(), 5, 3600) {
            bad("sip.keepalive_interval", format!("must be 0 (off) or 5–3600 seconds (got {})", s.keepalive_interval));
        }
        if !range(s.reconnect_min.into(), 1, 3600) {
            bad("sip.reconnect_min", format!("must be 1–3600 seconds (got {})", s.reconnect_min));
        }
        if !range(s.reconnect_max.into(), 1, 3600) {
            bad("sip.reconnect_max", format!("must be 1–3600 seconds (got {})", s.reconnect_max));
        } else if s.reconnect_max < s.reconnect_min {
            bad(
                "sip.reconnect_max",
                format!("must not be below sip.reconnect_min ({} < {})", s.reconnect_max, s.reconnect_min),
            );
        }
        for (name, value) in &s.custom_headers {
            if let Err(m) = check_header(name, value) {
                bad("sip.custom_headers", m);
            }
        }
        if !s.call_id_header.is_empty() && !is_token(&s.call_id_header) {
            bad("sip.call_id_header", format!("{:?} is not a valid header name", s.call_id_header));
        }
        if s.user_agent.is_empty() || s.user_agent.len() > 128 || s.user_agent.chars().any(char::is_control) {
            bad("sip.user_agent", "must be 1–128 printable characters".into());
        }

        let c = &self.calls;
        if c.no_answer_timeout != 0 && !range(c.no_answer_timeout.into(), 5, 3600) {
            bad(
                "calls.no_answer_timeout",
                format!("must be 0 (never) or 5–3600 seconds (got {})", c.no_answer_timeout),
            );
        }
        if c.auto_answer_delay > 60 {
            bad("calls.auto_answer_delay", format!("must be 0–60 seconds (got {})", c.auto_answer_delay));
        }
        if c.session_expires != 0 && !range(c.session_expires.into(), 90, 86_400) {
            // RFC 4028 §4: Min-SE is never below 90 seconds.
            bad("calls.session_expires", format!("must be 0 (off) or 90–86400 seconds (got {})", c.session_expires));
        }

        let codecs = &self.codecs.allow;
        if codecs.is_empty() {
            bad("codecs.allow", "at least one codec must be allowed".into());
        }
        for (i, codec) in codecs.iter().enumerate() {
            if codecs[..i].contains(codec) {
                bad("codecs.allow", format!("{codec:?} is listed twice").to_lowercase());
            }
        }

        let ptime = self.codecs.ptime;
        if !range(ptime.into(), 10, 60) || !ptime.is_multiple_of(10) {
            bad("codecs.ptime", format!("must be 10, 20, 30, 40, 50 or 60 ms (got {ptime})"));
        }

        let d = &self.dtmf;
        if !range(d.duration_ms.into(), 40, 6000) {
            bad("dtmf.duration_ms", format!("must be 40–6000 ms (got {})", d.duration_ms));
        }
        if !range(d.gap_ms.into(), 30, 6000) {
            bad("dtmf.gap_ms", format!("must be 30–6000 ms (got {})", d.gap_ms));
        }

        for origin in &self.browser.allowed_origins {
            if let Err(m) = check_origin(origin) {
                bad("browser.allowed_origins", m);
            }
        }

        let l = &self.log;
        if !range(l.max_file_bytes, 1024, 1024 * 1024 * 1024) {
            bad("log.max_file_bytes", format!("must be 1024 bytes – 1 GiB (got {})", l.max_file_bytes));
        }
        if !range(l.max_files.into(), 1, 100) {
            bad("log.max_files", format!("must be 1–100 (got {})", l.max_files));
        }

        if !range(self.recording.segment_seconds.into(), 10, 3600) {
            bad(
                "recording.segment_seconds",
                format!("must be 10–3600 seconds (got {})", self.recording.segment_seconds),
            );
        }

        let fields = &self.desktop.customer_fields;
        if fields.len() > MAX_CUSTOMER_FIELDS {
            bad("desktop.customer_fields", format!("at most {MAX_CUSTOMER_FIELDS} fields (got {})", fields.len()));
        }
        let printable = |t: &str| !t.is_empty() && t.chars().count() <= 64 && !t.chars().any(char::is_control);
        for (i, f) in fields.iter().enumerate() {
            if !printable(&f.key) || !printable(&f.label) {
                bad("desktop.customer_fields", format!("field {i}: key and label must be 1–64 printable characters"));
            } else if fields[..i].iter().any(|g| g.key == f.key) {
                bad("desktop.customer_fields", format!("{:?} is listed twice", f.key));
            }
        }
        out
    }
}

fn check_host(host: &str) -> Result<(), String> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if ok { Ok(()) } else { Err(format!("{host:?} is not a host name or IP address")) }
}

/// RFC 3261 `token` characters.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c))
}

/// A custom SIP header from config or from `call{headers}`: a token name the
/// stack does not write itself, and a one-line value of at most 1024 characters.
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    if !is_token(name) {
        return Err(format!("{name:?} is not a valid header name"));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!("{name} is written by the SIP stack and cannot be configured"));
    }
    if value.len() > 1024 || value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!("value of {name} must be one line of at most 1024 characters"));
    }
    Ok(())
}

/// An exact web origin: scheme, host and optional port, nothing else.
/// Plain http is only accepted for localhost (development and tests).
fn check_origin(origin: &str) -> Result<(), String> {
    let bad = || format!("{origin:?} is not an exact origin like https://desk.example.com");
    let (scheme, rest) = origin.split_once("://").ok_or_else(bad)?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '*', '@', ' ']) {
        return Err(bad());
    }
    let (host, port) = if rest.starts_with('[') {
        let end = rest.find(']').ok_or_else(bad)?;
        (&rest[..=end], &rest[end + 1..])
    } else {
        rest.find(':').map_or((rest, ""), |i| (&rest[..i], &rest[i..]))
    };
    if !port.is_empty() {
        let digits = port.strip_prefix(':').ok_or_else(bad)?;
        if digits.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad());
        }
    }
    check_host(host).map_err(|_| bad())?;
    match scheme {
        "https" => Ok(()),
        "http" if matches!(host, "localhost" | "127.0.0.1" | "[::1]") => Ok(()),
        "http" => Err(format!("{origin:?}: plain http is only allowed for localhost")),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().problems(), vec![]);
    }

    #[test]
    fn every_serialized_key_is_listed_in_keys() {
        let mut c = Config::default();
        c.sip.backup_server = Some(SipServer { host: "b".into(), port: None, transport: None });
        c.sip.tls_ca_file = Some("/ca.pem".into());
        c.audio.microphone = Some("m".into());
        c.audio.speaker = Some("s".into());
        c.audio.ringtone = Some("/r.wav".into());
        c.recording.folder = Some("/rec".into());
        let table = toml::Table::try_from(&c).unwrap();
        let mut seen = Vec::new();
        for (section, v) in &table {
            for key in v.as_table().unwrap().keys() {
                seen.push(format!("{section}.{key}"));
            }
        }
        seen.sort();
        let mut keys: Vec<String> = KEYS.iter().map(|k| k.to_string()).collect();
        keys.sort();
        assert_eq!(seen, keys);
    }

    #[test]
    fn origins_must_be_exact() {
        assert!(check_origin("https://desk.example.com").is_ok());
        assert!(check_origin("https://desk.example.com:8443").is_ok());
        assert!(check_origin("http://localhost:8080").is_ok());
        for bad in [
            "https://desk.example.com/",
            "https://*.example.com",
            "http://desk.example.com",
            "desk.example.com",
            "https://a:0",
            "chrome-extension://abc",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reserved_and_malformed_headers_are_refused() {
        assert!(check_header("X-Site", "helsinki").is_ok());
        assert!(check_header("Via", "x").is_err());
        assert!(check_header("X Bad", "x").is_err());
        assert!(check_header("X-Inject", "a\r\nVia: evil").is_err());
    }

    #[test]
    fn range_rules_name_their_key() {
        let mut c = Config::default();
        c.dtmf.duration_ms = 10;
        c.sip.reconnect_min = 100;
        c.codecs.allow = vec![Codec::Pcmu, Codec::Pcmu];
        c.codecs.ptime = 25;
        let keys: Vec<_> = c.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["sip.reconnect_max", "codecs.allow", "codecs.ptime", "dtmf.duration_ms"]);
        for ptime in [10, 30, 60] {
            let c = Config { codecs: CodecsConfig { ptime, ..CodecsConfig::default() }, ..Config::default() };
            assert!(c.problems().is_empty(), "{ptime}");
        }
    }
}
