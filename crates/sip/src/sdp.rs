//! SDP offer/answer for one audio stream (RFC 3264, RFC 4566), parsed with
//! rtc-sdp. The offer lists the configured codecs in order of preference plus
//! `telephone-event` (RFC 4733); the answer keeps the offerer's payload
//! numbers and picks the first codec both sides have, in our order.

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
}

/// The peer's audio stream as its SDP describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMedia {
    pub address: String,
    pub rtp_port: u16,
    pub codecs: Vec<AudioCodec>,
    pub telephone_event: Option<u8>,
    pub direction: Direction,
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
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("malformed SDP: {0}")]
    Malformed(String),
    #[error("no audio stream in the SDP")]
    NoAudio,
    #[error("no codec in common")]
    NoCommonCodec,
}

fn session_text(local: &LocalMedia, codecs: &[AudioCodec], te: Option<u8>, direction: Direction) -> String {
    let ip = match local.address {
        std::net::IpAddr::V4(_) => "IP4",
        std::net::IpAddr::V6(_) => "IP6",
    };
    let mut pts: Vec<String> = codecs.iter().map(|c| c.payload_type.to_string()).collect();
    pts.extend(te.map(|t| t.to_string()));
    let mut s = format!(
        "v=0\r\no=- {sid} {ver} IN {ip} {addr}\r\ns=-\r\nc=IN {ip} {addr}\r\nt=0 0\r\nm=audio {port} RTP/AVP {pts}\r\n",
        sid = local.session_id,
        ver = local.version,
        addr = local.address,
        port = local.rtp_port,
        pts = pts.join(" "),
    );
    for c in codecs {
        s.push_str(&format!("a=rtpmap:{} {}\r\n", c.payload_type, c.rtpmap()));
        // We decode mono (RFC 7587 §7: stereo=0 asks the sender for mono,
        // which spends its bits, and its FEC, on the one channel we play).
        if c.name.eq_ignore_ascii_case("opus") {
            s.push_str(&format!("a=fmtp:{} stereo=0;sprop-stereo=0;useinbandfec=1\r\n", c.payload_type));
        }
    }
    if let Some(t) = te {
        s.push_str(&format!("a=rtpmap:{t} telephone-event/8000\r\na=fmtp:{t} 0-16\r\n"));
    }
    s.push_str(&format!("a=ptime:20\r\na={}\r\n", direction.attr()));
    s
}

/// Our offer.
pub fn offer(local: &LocalMedia) -> String {
    session_text(local, &local.codecs, Some(local.telephone_event), local.direction)
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
    let text = session_text(local, std::slice::from_ref(&codec), remote.telephone_event, direction);
    Ok((
        text,
        Negotiated {
            codec,
            telephone_event: remote.telephone_event,
            remote_address: remote.address.clone(),
            remote_port: remote.rtp_port,
            direction,
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
    Ok(Negotiated {
        codec,
        telephone_event: remote.telephone_event,
        remote_address: remote.address.clone(),
        remote_port: remote.rtp_port,
        direction: remote.direction.answer_to(local.direction),
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
    Ok(RemoteMedia { address, rtp_port, codecs, telephone_event, direction })
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
        }
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
