//! SDP offer/answer for one audio stream (RFC 3264, RFC 4566), parsed with
//! rtc-sdp. The offer lists the configured codecs in order of preference plus
//! `telephone-event` (RFC 4733); the answer keeps the offerer's payload
//! numbers and picks the first codec both sides have, in our order.
//!
//! SRTP keys travel in `a=crypto` (SDES, RFC 4568) as [`SrtpPolicy`] says:
//! offered beside plain RTP, required (`RTP/SAVP`, "secure only"), or only
//! accepted from a peer that insists on it.

use std::io::Cursor;

use rtc_sdp::SessionDescription;

/// Longest SDP body we parse.
pub const MAX_SDP: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioCodec {
    pub payload_type: u8,
    /// Encoding name as in `a=rtpmap` (`PCMU`, `opus` …).
    pub name: String,
    pub clock_rate: u32,
    pub channels: u8,
}

impl AudioCodec {
    pub fn new(payload_type: u8, name: &str, clock_rate: u32, channels: u8) -> Self {
        Self { payload_type, name: name.into(), clock_rate, channels }
    }

    fn same_codec(&self, other: &AudioCodec) -> bool {
        self.name.eq_ignore_ascii_case(&other.name) && self.clock_rate == other.clock_rate
    }

    fn rtpmap(&self) -> String {
        if self.channels > 1 {
            format!("{}/{}/{}", self.name, self.clock_rate, self.channels)
        } else {
            format!("{}/{}", self.name, self.clock_rate)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// What we answer to a peer that offers `self` (RFC 3264 §6.1).
    pub fn answer_to(self, ours: Direction) -> Direction {
        match (self, ours) {
            (Direction::Inactive, _) | (_, Direction::Inactive) => Direction::Inactive,
            (Direction::SendOnly, Direction::SendRecv | Direction::RecvOnly) => Direction::RecvOnly,
            (Direction::RecvOnly, Direction::SendRecv | Direction::SendOnly) => Direction::SendOnly,
            (Direction::SendRecv, d) => d,
            _ => Direction::Inactive,
        }
    }
}

/// Whether calls use SRTP, keyed in SDP (SDES).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SrtpPolicy {
    /// Not offered; accepted from a peer that insists (`RTP/SAVP`).
    #[default]
    Off,
    /// Offered beside plain RTP (`RTP/AVP` with `a=crypto`), used if the peer takes it.
    Optional,
    /// "Secure only": offered as `RTP/SAVP`; a peer without SRTP is refused.
    Required,
}

/// Crypto lines read from one SDP, at most (a peer offers one per suite).
const MAX_CRYPTO_LINES: usize = 16;
/// `a=fmtp` lines read at most, and the longest parameter list kept.
const MAX_FMTP_LINES: usize = 32;
const MAX_FMTP_LEN: usize = 512;
/// Longest `inline:` key we read, in base64 characters (AES-256 + salt is 62).
const MAX_KEY_CHARS: usize = 64;

/// One SDES key: `a=crypto:<tag> <suite> inline:<master key ‖ salt, base64>`.
#[derive(Clone, PartialEq, Eq)]
pub struct SdesKey {
    pub tag: u32,
    /// The suite's SDP name (`AES_CM_128_HMAC_SHA1_80` …).
    pub suite: String,
    pub keying: Vec<u8>,
}

/// Keys never reach a log.
impl std::fmt::Debug for SdesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SdesKey({} {} <{} bytes>)", self.tag, self.suite, self.keying.len())
    }
}

fn base64() -> base64::engine::GeneralPurpose {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_encode_padding(true).with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

impl SdesKey {
    fn attr(&self) -> String {
        use base64::Engine as _;
        format!("a=crypto:{} {} inline:{}\r\n", self.tag, self.suite, base64().encode(&self.keying))
    }

    /// The value of an `a=crypto` attribute. Lines we cannot use (a key
    /// with an MKI, session parameters, a malformed key) are `None`.
    fn parse(value: &str) -> Option<SdesKey> {
        use base64::Engine as _;
        let mut parts = value.split_ascii_whitespace();
        let tag = parts.next().filter(|t| t.len() <= 9)?.parse().ok()?;
        let suite = parts.next().filter(|s| s.len() <= 64)?.to_ascii_uppercase();
        let key_params = parts.next()?;
        if parts.next().is_some() || key_params.contains(';') {
            return None;
        }
        let mut fields = key_params.strip_prefix("inline:")?.split('|');
        let key = fields.next().filter(|k| k.len() <= MAX_KEY_CHARS)?;
        // A lifetime is fine (we rekey never); an MKI is not supported.
        if fields.any(|f| f.contains(':')) {
            return None;
        }
        let keying = base64().decode(key).ok()?;
        Some(SdesKey { tag, suite, keying })
    }
}

/// The SRTP a call settled on: the suite, our keying and the peer's.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    pub suite: String,
    pub local: Vec<u8>,
    pub remote: Vec<u8>,
}

impl std::fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SrtpKeys({})", self.suite)
    }
}

/// Our side of the stream.
#[derive(Debug, Clone)]
pub struct LocalMedia {
    pub address: std::net::IpAddr,
    pub rtp_port: u16,
    /// Most preferred first.
    pub codecs: Vec<AudioCodec>,
    pub telephone_event: u8,
    pub direction: Direction,
    pub session_id: u64,
    pub version: u64,
    /// Where we take RTCP when it is not multiplexed (`a=rtcp`, RFC 3605);
    /// we offer `a=rtcp-mux` (RFC 5761) as well.
    pub rtcp_port: Option<u16>,
    pub srtp: SrtpPolicy,
    /// Our SRTP keys, one per suite we take, most preferred first (offered
    /// unless the policy is `Off`; the one for the suite chosen answers).
    pub keys: Vec<SdesKey>,
    /// Ask peers for Opus DTX (`usedtx=1`).
    pub opus_dtx: bool,
    /// The packet time we ask for (`a=ptime`), ms.
    pub ptime: u32,
}

/// The peer's audio stream as its SDP describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMedia {
    pub address: String,
    pub rtp_port: u16,
    pub codecs: Vec<AudioCodec>,
    pub telephone_event: Option<u8>,
    pub direction: Direction,
    /// The profile is `RTP/SAVP` (or `SAVPF`): SRTP or nothing.
    pub secure: bool,
    pub crypto: Vec<SdesKey>,
    /// `a=rtcp-mux`: RTCP on the RTP port.
    pub rtcp_mux: bool,
    /// `a=rtcp`, else the RTP port + 1 (RFC 3550 §11).
    pub rtcp_port: u16,
    /// `a=fmtp` parameters by payload type (what the peer asks of what we
    /// send it, e.g. Opus `maxaveragebitrate`, RFC 7587 §6.1).
    pub fmtp: Vec<(u8, String)>,
    /// `a=ptime` and `a=maxptime` (RFC 4566 §6), ms: how the peer wants
    /// what we send it packed.
    pub ptime: Option<u32>,
    pub maxptime: Option<u32>,
}

impl RemoteMedia {
    /// The peer's format parameters for payload type `pt` ("" without any).
    pub fn fmtp_of(&self, pt: u8) -> &str {
        self.fmtp.iter().find(|(p, _)| *p == pt).map_or("", |(_, f)| f.as_str())
    }
}

/// What both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: AudioCodec,
    pub telephone_event: Option<u8>,
    pub remote_address: String,
    pub remote_port: u16,
    /// Our direction.
    pub direction: Direction,
    /// SRTP, when agreed.
    pub srtp: Option<SrtpKeys>,
    /// RTCP goes on the RTP ports (both sides agreed `a=rtcp-mux`).
    pub rtcp_mux: bool,
    /// The peer's RTCP port when not multiplexed.
    pub remote_rtcp_port: u16,
    /// The peer's `a=fmtp` for the codec (its wishes for what we send).
    pub peer_fmtp: String,
    /// The packet time to send, ms: the peer's `a=ptime`, else ours, never
    /// above its `a=maxptime` (the codec may frame it finer).
    pub ptime: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("malformed SDP: {0}")]
    Malformed(String),
    #[error("no audio stream in the SDP")]
    NoAudio,
    #[error("no codec in common")]
    NoCommonCodec,
    #[error("the peer requires SRTP with no crypto suite we support")]
    NoCommonCrypto,
    #[error("secure media (SRTP) is required and the peer offered none")]
    SecureMediaRequired,
}

/// The body of an offer or answer: `keys` go in `a=crypto` lines, and
/// `secure` makes the profile `RTP/SAVP`.
fn session_text(
    local: &LocalMedia,
    codecs: &[AudioCodec],
    te: Option<u8>,
    direction: Direction,
    keys: &[SdesKey],
    secure: bool,
    rtcp_mux: bool,
) -> String {
    let ip = match local.address {
        std::net::IpAddr::V4(_) => "IP4",
        std::net::IpAddr::V6(_) => "IP6",
    };
    let mut pts: Vec<String> = codecs.iter().map(|c| c.payload_type.to_string()).collect();
    pts.extend(te.map(|t| t.to_string()));
    let mut s = format!(
        "v=0\r\no=- {sid} {ver} IN {ip} {addr}\r\ns=-\r\nc=IN {ip} {addr}\r\nt=0 0\r\nm=audio {port} {proto} {pts}\r\n",
        sid = local.session_id,
        ver = local.version,
        addr = local.address,
        port = local.rtp_port,
        pts = pts.join(" "),
        proto = if secure { "RTP/SAVP" } else { "RTP/AVP" },
    );
    if let Some(p) = local.rtcp_port {
        s.push_str(&format!("a=rtcp:{p}\r\n"));
    }
    if rtcp_mux {
        s.push_str("a=rtcp-mux\r\n");
    }
    for k in keys {
        s.push_str(&k.attr());
    }
    for c in codecs {
        s.push_str(&format!("a=rtpmap:{} {}\r\n", c.payload_type, c.rtpmap()));
        // We decode mono (RFC 7587 §7: stereo=0 asks the sender for mono,
        // which spends its bits, and its FEC, on the one channel we play).
        if c.name.eq_ignore_ascii_case("opus") {
            let dtx = if local.opus_dtx { ";usedtx=1" } else { "" };
            s.push_str(&format!("a=fmtp:{} stereo=0;sprop-stereo=0;useinbandfec=1{dtx}\r\n", c.payload_type));
        }
        // No Annex B (VAD/comfort noise): its absence would mean yes (RFC 4856).
        if c.name.eq_ignore_ascii_case("G729") {
            s.push_str(&format!("a=fmtp:{} annexb=no\r\n", c.payload_type));
        }
    }
    if let Some(t) = te {
        s.push_str(&format!("a=rtpmap:{t} telephone-event/8000\r\na=fmtp:{t} 0-16\r\n"));
    }
    s.push_str(&format!("a=ptime:{}\r\na={}\r\n", local.ptime, direction.attr()));
    s
}

/// Our offer.
pub fn offer(local: &LocalMedia) -> String {
    let keys: &[SdesKey] = if local.srtp == SrtpPolicy::Off { &[] } else { &local.keys };
    session_text(
        local,
        &local.codecs,
        Some(local.telephone_event),
        local.direction,
        keys,
        local.srtp == SrtpPolicy::Required,
        true,
    )
}

/// The first of the peer's keys whose suite we have (and with a key of the
/// length ours has), with ours for that suite.
fn common_key<'a>(local: &'a LocalMedia, remote: &'a RemoteMedia) -> Option<(&'a SdesKey, &'a SdesKey)> {
    remote.crypto.iter().find_map(|theirs| {
        local
            .keys
            .iter()
            .find(|ours| ours.suite == theirs.suite && ours.keying.len() == theirs.keying.len())
            .map(|ours| (theirs, ours))
    })
}

/// Packet times a peer may ask for, ms (RFC 4566 gives no bound; a packet
/// longer than this is no call audio).
const PTIMES: std::ops::RangeInclusive<u32> = 1..=200;

/// What we send is packed as the peer asks (`a=ptime`), else as we asked,
/// and never beyond its `a=maxptime`.
fn send_ptime(local: &LocalMedia, remote: &RemoteMedia) -> u32 {
    let wish = remote.ptime.unwrap_or(local.ptime);
    remote.maxptime.map_or(wish, |max| wish.min(max))
}

/// Our answer to `remote`'s offer and what it settles.
pub fn answer(local: &LocalMedia, remote: &RemoteMedia) -> Result<(String, Negotiated), SdpError> {
    let codec = local
        .codecs
        .iter()
        .find_map(|ours| remote.codecs.iter().find(|theirs| theirs.same_codec(ours)))
        .cloned()
        .ok_or(SdpError::NoCommonCodec)?;
    let direction = remote.direction.answer_to(local.direction);
    // Best-effort crypto from the peer is taken unless SRTP is off here; a
    // peer that insists gets it either way.
    let common = (remote.secure || local.srtp != SrtpPolicy::Off).then(|| common_key(local, remote)).flatten();
    let (keys, srtp) = match common {
        Some((theirs, ours)) => (
            vec![SdesKey { tag: theirs.tag, ..ours.clone() }],
            Some(SrtpKeys { suite: ours.suite.clone(), local: ours.keying.clone(), remote: theirs.keying.clone() }),
        ),
        None if remote.secure => return Err(SdpError::NoCommonCrypto),
        None if local.srtp == SrtpPolicy::Required => return Err(SdpError::SecureMediaRequired),
        None => (vec![], None),
    };
    let text = session_text(
        local,
        std::slice::from_ref(&codec),
        remote.telephone_event,
        direction,
        &keys,
        remote.secure,
        remote.rtcp_mux,
    );
    Ok((
        text,
        Negotiated {
            peer_fmtp: remote.fmtp_of(codec.payload_type).to_owned(),
            codec,
            telephone_event: remote.telephone_event,
            remote_address: remote.address.clone(),
            remote_port: remote.rtp_port,
            direction,
            srtp,
            rtcp_mux: remote.rtcp_mux,
            remote_rtcp_port: remote.rtcp_port,
            ptime: send_ptime(local, remote),
        },
    ))
}

/// What the peer's answer to our offer settles.
pub fn accept_answer(local: &LocalMedia, remote: &RemoteMedia) -> Result<Negotiated, SdpError> {
    let codec = remote
        .codecs
        .iter()
        .find(|theirs| local.codecs.iter().any(|ours| ours.same_codec(theirs)))
        .cloned()
        .ok_or(SdpError::NoCommonCodec)?;
    // The answer names the tag of the offered key it took.
    let srtp = remote.crypto.iter().find_map(|theirs| {
        local
            .keys
            .iter()
            .find(|ours| {
                ours.tag == theirs.tag && ours.suite == theirs.suite && ours.keying.len() == theirs.keying.len()
            })
            .map(|ours| SrtpKeys {
                suite: ours.suite.clone(),
                local: ours.keying.clone(),
                remote: theirs.keying.clone(),
            })
    });
    let srtp = srtp.filter(|_| local.srtp != SrtpPolicy::Off);
    if srtp.is_none() && local.srtp == SrtpPolicy::Required {
        return Err(SdpError::SecureMediaRequired);
    }
    Ok(Negotiated {
        peer_fmtp: remote.fmtp_of(codec.payload_type).to_owned(),
        codec,
        telephone_event: remote.telephone_event,
        remote_address: remote.address.clone(),
        remote_port: remote.rtp_port,
        direction: remote.direction.answer_to(local.direction),
        srtp,
        // We offered it: the answer decides.
        rtcp_mux: remote.rtcp_mux,
        remote_rtcp_port: remote.rtcp_port,
        ptime: send_ptime(local, remote),
    })
}

/// The first active audio stream of an SDP body.
pub fn parse(body: &[u8]) -> Result<RemoteMedia, SdpError> {
    if body.len() > MAX_SDP {
        return Err(SdpError::Malformed(format!("body over {MAX_SDP} bytes")));
    }
    let text = std::str::from_utf8(body).map_err(|e| SdpError::Malformed(e.to_string()))?;
    // rtc-sdp is strict about line endings; peers send CRLF or LF.
    let normalized: String = text.lines().map(|l| format!("{l}\r\n")).collect();
    let sdp = std::panic::catch_unwind(|| SessionDescription::unmarshal(&mut Cursor::new(normalized.as_bytes())))
        .map_err(|_| SdpError::Malformed("SDP parser failed".into()))?
        .map_err(|e| SdpError::Malformed(e.to_string()))?;
    let media = sdp
        .media_descriptions
        .iter()
        .find(|m| m.media_name.media == "audio" && m.media_name.port.value > 0)
        .ok_or(SdpError::NoAudio)?;
    let address = media
        .connection_information
        .as_ref()
        .or(sdp.connection_information.as_ref())
        .and_then(|c| c.address.as_ref())
        .map(|a| a.address.clone())
        .ok_or_else(|| SdpError::Malformed("no connection address".into()))?;
    let rtp_port = u16::try_from(media.media_name.port.value).map_err(|_| SdpError::Malformed("bad port".into()))?;
    let mapped = media.codecs();
    let mut codecs = Vec::new();
    let mut telephone_event = None;
    for f in &media.media_name.formats {
        let Ok(pt) = f.parse::<u8>() else { continue };
        let codec = match mapped.get(&pt) {
            Some(c) => AudioCodec::new(pt, &c.name, c.clock_rate, c.encoding_parameters.parse().unwrap_or(1)),
            // Static payload types may come without rtpmap (RFC 3551).
            None => match pt {
                0 => AudioCodec::new(0, "PCMU", 8000, 1),
                8 => AudioCodec::new(8, "PCMA", 8000, 1),
                9 => AudioCodec::new(9, "G722", 8000, 1),
                18 => AudioCodec::new(18, "G729", 8000, 1),
                _ => continue,
            },
        };
        if codec.name.eq_ignore_ascii_case("telephone-event") {
            telephone_event.get_or_insert(pt);
        } else {
            codecs.push(codec);
        }
    }
    let direction = ["sendrecv", "sendonly", "recvonly", "inactive"]
        .into_iter()
        .find(|d| media.has_attribute(d) || sdp.has_attribute(d))
        .map(|d| match d {
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => Direction::SendRecv,
        })
        .unwrap_or(Direction::SendRecv);
    let secure = media.media_name.protos.iter().any(|p| p.to_ascii_uppercase().starts_with("SAVP"));
    let crypto = media
        .attributes
        .iter()
        .filter(|a| a.key == "crypto")
        .take(MAX_CRYPTO_LINES)
        .filter_map(|a| a.value.as_deref().and_then(SdesKey::parse))
        .collect();
    let rtcp_mux = media.has_attribute("rtcp-mux");
    let rtcp_port = media
        .attribute("rtcp")
        .flatten()
        .and_then(|v| v.split_ascii_whitespace().next()?.parse::<u16>().ok())
        .filter(|p| *p != 0)
        .unwrap_or(rtp_port.saturating_add(1));
    let fmtp = media
        .attributes
        .iter()
        .filter(|a| a.key == "fmtp")
        .take(MAX_FMTP_LINES)
        .filter_map(|a| {
            let (pt, params) = a.value.as_deref()?.trim().split_once(char::is_whitespace)?;
            let params = params.trim();
            (params.len() <= MAX_FMTP_LEN).then(|| Some((pt.parse::<u8>().ok()?, params.to_owned())))?
        })
        .collect();
    // Media-level first, then session-level; a value out of range is ignored.
    let millis = |key: &str| {
        media
            .attribute(key)
            .flatten()
            .or_else(|| sdp.attribute(key).map(String::as_str))
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|ms| PTIMES.contains(ms))
    };
    let (ptime, maxptime) = (millis("ptime"), millis("maxptime"));
    Ok(RemoteMedia {
        address,
        rtp_port,
        codecs,
        telephone_event,
        direction,
        secure,
        crypto,
        rtcp_mux,
        rtcp_port,
        fmtp,
        ptime,
        maxptime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> LocalMedia {
        LocalMedia {
            address: "10.0.0.5".parse().unwrap(),
            rtp_port: 40000,
            codecs: vec![
                AudioCodec::new(111, "opus", 48000, 2),
                AudioCodec::new(0, "PCMU", 8000, 1),
                AudioCodec::new(8, "PCMA", 8000, 1),
            ],
            telephone_event: 101,
            direction: Direction::SendRecv,
            session_id: 42,
            version: 1,
            rtcp_port: Some(40001),
            srtp: SrtpPolicy::Off,
            keys: vec![
                SdesKey { tag: 1, suite: "AES_CM_128_HMAC_SHA1_80".into(), keying: vec![1; 30] },
                SdesKey { tag: 2, suite: "AEAD_AES_128_GCM".into(), keying: vec![2; 28] },
            ],
            opus_dtx: false,
            ptime: 20,
        }
    }

    fn with_srtp(srtp: SrtpPolicy) -> LocalMedia {
        LocalMedia { srtp, ..local() }
    }

    const PLAIN_OFFER: &str =
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";

    #[test]
    fn rtcp_mux_is_offered_and_used_only_when_the_answer_has_it() {
        let text = offer(&local());
        assert!(text.contains("a=rtcp:40001\r\na=rtcp-mux\r\n"), "{text}");
        let back = parse(text.as_bytes()).unwrap();
        assert!(back.rtcp_mux);
        assert_eq!(back.rtcp_port, 40001);
        let plain = parse(PLAIN_OFFER.as_bytes()).unwrap();
        assert!(!plain.rtcp_mux);
        assert_eq!(plain.rtcp_port, 5005, "RTP + 1 without a=rtcp");
        let (answer_text, n) = answer(&local(), &plain).unwrap();
        assert!(!n.rtcp_mux && !answer_text.contains("rtcp-mux"));
        assert_eq!(n.remote_rtcp_port, 5005);
        let (answer_text, n) = answer(&local(), &back).unwrap();
        assert!(n.rtcp_mux && answer_text.contains("a=rtcp-mux"));
        assert!(!accept_answer(&local(), &plain).unwrap().rtcp_mux);
    }

    #[test]
    fn the_peers_format_parameters_for_the_chosen_codec_are_kept() {
        let theirs = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 96 0\r\n\
            a=rtpmap:96 opus/48000/2\r\na=fmtp:96 maxaveragebitrate=16000; usedtx=1\r\na=fmtp:0 nonsense\r\n\
            a=fmtp:x bad\r\na=fmtp:97\r\n";
        let remote = parse(theirs.as_bytes()).unwrap();
        assert_eq!(remote.fmtp_of(96), "maxaveragebitrate=16000; usedtx=1");
        assert_eq!(remote.fmtp_of(0), "nonsense");
        assert_eq!(remote.fmtp_of(8), "");
        let (_, n) = answer(&local(), &remote).unwrap();
        assert_eq!((n.codec.payload_type, n.peer_fmtp.as_str()), (96, "maxaveragebitrate=16000; usedtx=1"));
        assert_eq!(accept_answer(&local(), &remote).unwrap().peer_fmtp, "maxaveragebitrate=16000; usedtx=1");
        let huge = format!("{theirs}a=fmtp:8 {}\r\n", "x".repeat(MAX_FMTP_LEN + 1));
        assert_eq!(parse(huge.as_bytes()).unwrap().fmtp_of(8), "", "an oversized list is not kept");
    }

    #[test]
    fn we_send_as_the_peer_packs_its_ptime_within_its_maxptime() {
        assert!(offer(&local()).contains("a=ptime:20\r\n"));
        let ours = LocalMedia { ptime: 30, ..local() };
        assert!(offer(&ours).contains("a=ptime:30\r\n"), "{}", offer(&ours));
        let sent = |extra: &str| {
            let remote = parse(format!("{PLAIN_OFFER}{extra}").as_bytes()).unwrap();
            let answered = answer(&ours, &remote).unwrap();
            assert!(answered.0.contains("a=ptime:30\r\n"), "our answer asks for ours: {}", answered.0);
            assert_eq!(accept_answer(&ours, &remote).unwrap().ptime, answered.1.ptime);
            (remote.ptime, remote.maxptime, answered.1.ptime)
        };
        assert_eq!(sent(""), (None, None, 30), "no wish: ours");
        assert_eq!(sent("a=ptime:40\r\n"), (Some(40), None, 40));
        assert_eq!(sent("a=maxptime:20\r\n"), (None, Some(20), 20), "ours capped by its maximum");
        assert_eq!(sent("a=ptime:60\r\na=maxptime:40\r\n"), (Some(60), Some(40), 40));
        // Hostile or nonsense values are no wish at all.
        for bad in ["a=ptime:0\r\n", "a=ptime:abc\r\n", "a=ptime:99999999999\r\n", "a=ptime:-20\r\n", "a=ptime:201\r\n"]
        {
            assert_eq!(sent(bad), (None, None, 30), "{bad}");
        }
        // At session level it counts too.
        let session = PLAIN_OFFER.replace("t=0 0\r\n", "t=0 0\r\na=ptime:10\r\n");
        assert_eq!(parse(session.as_bytes()).unwrap().ptime, Some(10));
    }

    #[test]
    fn opus_dtx_is_asked_of_peers_only_when_set() {
        assert!(!offer(&local()).contains("usedtx"));
        let text = offer(&LocalMedia { opus_dtx: true, ..local() });
        assert!(text.contains("a=fmtp:111 stereo=0;sprop-stereo=0;useinbandfec=1;usedtx=1\r\n"), "{text}");
        assert_eq!(parse(text.as_bytes()).unwrap().fmtp_of(111), "stereo=0;sprop-stereo=0;useinbandfec=1;usedtx=1");
    }

    #[test]
    fn srtp_offers_follow_the_policy_and_keys_round_trip() {
        assert!(!offer(&local()).contains("crypto"), "off: not offered");
        let optional = offer(&with_srtp(SrtpPolicy::Optional));
        assert!(optional.contains("RTP/AVP") && optional.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"));
        let required = offer(&with_srtp(SrtpPolicy::Required));
        assert!(required.contains("m=audio 40000 RTP/SAVP 111"), "{required}");
        let back = parse(required.as_bytes()).unwrap();
        assert!(back.secure);
        assert_eq!(back.crypto, with_srtp(SrtpPolicy::Required).keys);
        assert!(!format!("{:?}", back.crypto).contains("[1, 1"), "keys stay out of Debug");
    }

    #[test]
    fn answers_take_the_peers_first_suite_we_have_under_its_tag() {
        let theirs = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 5004 RTP/SAVP 0\r\n\
            a=crypto:3 AES_256_CM_HMAC_SHA1_80 inline:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n\
            a=crypto:7 AEAD_AES_128_GCM inline:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBw==\r\n";
        let remote = parse(theirs.as_bytes()).unwrap();
        // Off here, but the peer insists: SRTP it is.
        let (text, n) = answer(&local(), &remote).unwrap();
        let keys = n.srtp.unwrap();
        assert_eq!((keys.suite.as_str(), keys.remote.as_slice()), ("AEAD_AES_128_GCM", &[7u8; 28][..]));
        assert_eq!(keys.local, vec![2; 28]);
        let back = parse(text.as_bytes()).unwrap();
        assert!(back.secure);
        assert_eq!(back.crypto, [SdesKey { tag: 7, suite: "AEAD_AES_128_GCM".into(), keying: vec![2; 28] }]);
        // And the offerer reads that answer back into the same keys, mirrored.
        let mine = LocalMedia {
            srtp: SrtpPolicy::Required,
            keys: vec![SdesKey { tag: 7, suite: "AEAD_AES_128_GCM".into(), keying: vec![7; 28] }],
            ..local()
        };
        let settled = accept_answer(&mine, &back).unwrap().srtp.unwrap();
        assert_eq!((settled.local, settled.remote), (vec![7; 28], vec![2; 28]));
    }

    #[test]
    fn secure_only_refuses_plain_peers_and_plain_refuses_unknown_suites() {
        let plain = parse(PLAIN_OFFER.as_bytes()).unwrap();
        assert_eq!(answer(&with_srtp(SrtpPolicy::Required), &plain).unwrap_err(), SdpError::SecureMediaRequired);
        assert!(answer(&with_srtp(SrtpPolicy::Optional), &plain).unwrap().1.srtp.is_none());
        assert_eq!(accept_answer(&with_srtp(SrtpPolicy::Required), &plain).unwrap_err(), SdpError::SecureMediaRequired);
        let unknown = PLAIN_OFFER.replace("RTP/AVP", "RTP/SAVP") + "a=crypto:1 F8_128_HMAC_SHA1_80 inline:AAAA\r\n";
        assert_eq!(answer(&local(), &parse(unknown.as_bytes()).unwrap()).unwrap_err(), SdpError::NoCommonCrypto);
    }

    #[test]
    fn crypto_lines_we_cannot_use_are_skipped() {
        for bad in [
            "1 AES_CM_128_HMAC_SHA1_80 inline:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB|2^20|1:4",
            "1 AES_CM_128_HMAC_SHA1_80 inline:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB UNENCRYPTED_SRTP",
            "1 AES_CM_128_HMAC_SHA1_80 inline:not*base64",
            "1 AES_CM_128_HMAC_SHA1_80",
            "x AES_CM_128_HMAC_SHA1_80 inline:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB",
            "1234567890 AES_CM_128_HMAC_SHA1_80 inline:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB",
        ] {
            assert_eq!(SdesKey::parse(bad), None, "{bad}");
        }
        let with_lifetime =
            SdesKey::parse("1 aes_cm_128_hmac_sha1_80 inline:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB|2^31");
        assert_eq!(with_lifetime.unwrap().keying, vec![1; 30]);
        let many = PLAIN_OFFER.to_owned()
            + &"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB\r\n".repeat(100);
        assert_eq!(parse(many.as_bytes()).unwrap().crypto.len(), MAX_CRYPTO_LINES);
    }

    #[test]
    fn our_offer_parses_back_with_codecs_in_order() {
        let text = offer(&local());
        let m = parse(text.as_bytes()).unwrap();
        assert_eq!(m.address, "10.0.0.5");
        assert_eq!(m.rtp_port, 40000);
        assert_eq!(m.codecs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["opus", "PCMU", "PCMA"]);
        assert_eq!(m.telephone_event, Some(101));
        assert_eq!(m.direction, Direction::SendRecv);
        assert!(text.contains("a=rtpmap:111 opus/48000/2\r\n"), "{text}");
    }

    #[test]
    fn answer_keeps_the_offerers_payload_numbers_and_our_preference() {
        let remote_offer = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 5004 RTP/AVP 8 0 96\na=rtpmap:96 telephone-event/8000\na=sendonly\n";
        let remote = parse(remote_offer.as_bytes()).unwrap();
        let (text, n) = answer(&local(), &remote).unwrap();
        assert_eq!(n.codec.name, "PCMU", "our preference among the common ones");
        assert_eq!(n.telephone_event, Some(96));
        assert_eq!(n.direction, Direction::RecvOnly, "they only send: we only receive");
        let back = parse(text.as_bytes()).unwrap();
        assert_eq!(back.codecs, [AudioCodec::new(0, "PCMU", 8000, 1)]);
        assert_eq!(back.telephone_event, Some(96));
    }

    #[test]
    fn no_common_codec_and_garbage_are_errors() {
        let g729_only =
            "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 5004 RTP/AVP 18\r\n";
        assert_eq!(answer(&local(), &parse(g729_only.as_bytes()).unwrap()).unwrap_err(), SdpError::NoCommonCodec);
        for bad in
            ["", "v=0", "garbage\r\n\r\n", "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=video 1 RTP/AVP 96\r\n"]
        {
            assert!(parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(parse(&vec![b'a'; MAX_SDP + 1]).is_err());
    }
}
