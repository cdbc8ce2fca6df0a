//! Calls on the phone: our side of the media, dialling, and taking an
//! inbound INVITE (with what the Agent Desktop learns about it).

use std::time::{Duration, Instant};

use agent_helper_config::{Codec, Config, SrtpMode};
use agent_helper_media::srtp::Suite;
use agent_helper_sip::call::{Call, CallState};
use agent_helper_sip::ids::RandomIds;
use agent_helper_sip::replaces::Replaces;
use agent_helper_sip::sdp::{AudioCodec, Direction, LocalMedia, SdesKey, SrtpPolicy};
use rsip::prelude::*;
use rsip::{Header, SipMessage};
use tokio::net::UdpSocket;

use super::media::{MediaControl, MediaHandle};
use super::{Active, ActiveCall, MAX_CALL_HEADERS, MAX_CUSTOMER_INFO};

/// The configured codecs as SDP codecs, most preferred first.
pub(super) fn audio_codecs(config: &Config) -> Vec<AudioCodec> {
    config
        .codecs
        .allow
        .iter()
        .map(|c| match c {
            Codec::Opus => AudioCodec::new(111, "opus", 48000, 2),
            Codec::G722 => AudioCodec::new(9, "G722", 8000, 1),
            Codec::Pcmu => AudioCodec::new(0, "PCMU", 8000, 1),
            Codec::Pcma => AudioCodec::new(8, "PCMA", 8000, 1),
            // Only builds with the g729 feature play it (libbcg729 is GPL-3).
            Codec::G729 => AudioCodec::new(18, "G729", 8000, 1),
        })
        // Only what the media engine can play and record is offered.
        .filter(|c| super::media::SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(&c.name)))
        .collect()
}

/// Opens the call's RTP socket, starts its media task and describes our
/// side of the stream.
pub(super) async fn local_media(
    local_ip: std::net::IpAddr,
    config: &Config,
    call_id: &str,
    links: super::media::MediaLinks,
) -> Result<(LocalMedia, MediaHandle), String> {
    let socket = UdpSocket::bind((local_ip, 0)).await.map_err(|e| format!("cannot open an RTP port: {e}"))?;
    let port = socket.local_addr().map_err(|e| e.to_string())?.port();
    // RTCP on a port of its own unless the peer takes rtcp-mux (RFC 5761).
    let rtcp = UdpSocket::bind((local_ip, 0)).await.map_err(|e| format!("cannot open an RTCP port: {e}"))?;
    let rtcp_port = rtcp.local_addr().map_err(|e| e.to_string())?.port();
    let session_id =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(1);
    let media = LocalMedia {
        address: local_ip,
        rtp_port: port,
        codecs: audio_codecs(config),
        telephone_event: 101,
        direction: Direction::SendRecv,
        session_id,
        version: 1,
        rtcp_port: Some(rtcp_port),
        srtp: match config.sip.srtp {
            SrtpMode::Off => SrtpPolicy::Off,
            SrtpMode::Optional => SrtpPolicy::Optional,
            SrtpMode::Required => SrtpPolicy::Required,
        },
        keys: srtp_keys()?,
        opus_dtx: config.codecs.opus_dtx,
        ptime: config.codecs.ptime,
    };
    Ok((media, super::media::start(socket, rtcp, call_id.to_owned(), links)))
}

/// Fresh SRTP keys for a call, one per suite we take (tags 1, 2 …): even
/// with SRTP off, a peer that insists on it gets one.
fn srtp_keys() -> Result<Vec<SdesKey>, String> {
    Suite::ALL
        .into_iter()
        .enumerate()
        .map(|(i, suite)| {
            let mut keying = vec![0u8; suite.keying_len()];
            getrandom::fill(&mut keying).map_err(|e| format!("no randomness for SRTP keys: {e}"))?;
            Ok(SdesKey { tag: i as u32 + 1, suite: suite.sdp_name().to_owned(), keying })
        })
        .collect()
}

/// What the call's media task should do now, from its SDP and hold state.
pub(super) fn media_control(call: &Call, config: &Config, muted: bool) -> MediaControl {
    let wanted = !matches!(call.state(), CallState::Ended | CallState::Ending);
    let devices = MediaControl {
        speaker: config.audio.speaker.clone(),
        microphone: config.audio.microphone.clone(),
        wanted,
        opus_dtx: config.codecs.opus_dtx,
        native_rate: config.audio.device_rate == agent_helper_config::DeviceRate::Native,
        ..MediaControl::default()
    };
    let Some(n) = call.negotiated() else { return devices };
    let remote = format!("{}:{}", n.remote_address, n.remote_port).parse().ok().or_else(|| {
        n.remote_address.parse::<std::net::IpAddr>().ok().map(|ip| std::net::SocketAddr::new(ip, n.remote_port))
    });
    let (local_hold, _) = call.hold_state();
    let sends = matches!(n.direction, Direction::SendRecv | Direction::SendOnly) && !local_hold;
    let receives = matches!(n.direction, Direction::SendRecv | Direction::RecvOnly);
    let live = matches!(call.state(), CallState::Confirmed | CallState::Answering);
    MediaControl {
        remote: if live && n.remote_port != 0 { remote } else { None },
        payload_type: n.codec.payload_type,
        telephone_event: n.telephone_event,
        codec: n.codec.name.clone(),
        peer_fmtp: n.peer_fmtp.clone(),
        ptime: n.ptime,
        srtp: n.srtp.clone(),
        rtcp_mux: n.rtcp_mux,
        remote_rtcp: if n.rtcp_mux {
            remote
        } else {
            remote.map(|r| std::net::SocketAddr::new(r.ip(), n.remote_rtcp_port))
        },
        send: sends,
        receive: receives,
        muted,
        ..devices
    }
}

/// `sip:…` as given, or a user / number in the account's domain.
pub(super) fn target_uri(target: &str, domain: &str) -> String {
    if target.starts_with("sip:") || target.starts_with("sips:") {
        target.to_owned()
    } else {
        format!("sip:{target}@{domain}")
    }
}

pub(super) async fn dial(
    a: &mut Active,
    call_id: &str,
    target: &str,
    headers: &[(String, String)],
) -> Result<(), String> {
    let uri = target_uri(target, &a.primary.endpoint.domain);
    let (media, rtp) = local_media(a.primary.local_ip, &a.config, call_id, a.media_links.clone()).await?;
    let mut all_headers: Vec<(String, String)> =
        a.config.sip.custom_headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    all_headers.extend(headers.iter().cloned());
    match Call::outgoing(Instant::now(), a.primary.endpoint.clone(), &uri, &all_headers, media, Box::new(RandomIds)) {
        Ok(call) => {
            let call = call.with_password(a.password.expose());
            a.calls.push(ActiveCall {
                id: call_id.to_owned(),
                call,
                via_backup: false,
                muted: false,
                announce_started: true,
                rtp,
            });
            Ok(())
        }
        Err(e) => {
            drop(rtp);
            Err(e.to_string())
        }
    }
}

/// What the Agent Desktop learns about an inbound call.
pub(super) fn incoming_info(
    call_id: &str,
    call: &Call,
    call_id_header: &str,
) -> agent_helper_protocol::events::CallIncoming {
    let invite = call.invite();
    let from = invite.from_header().map(|h| h.value().to_owned()).unwrap_or_default();
    let display_name = from
        .split('<')
        .next()
        .map(|d| d.trim().trim_matches('"').to_owned())
        .filter(|d| !d.is_empty() && from.contains('<'));
    let to = invite.to_header().map(|h| h.value().to_owned()).unwrap_or_default();
    let mut headers = std::collections::BTreeMap::new();
    let mut customer_info = None;
    let mut cc_call_id = None;
    for h in invite.headers.iter() {
        let Header::Other(name, value) = h else { continue };
        if !call_id_header.is_empty() && name.eq_ignore_ascii_case(call_id_header) {
            cc_call_id = Some(value.chars().take(256).collect());
        }
        if !name.to_ascii_lowercase().starts_with("x-") || headers.len() >= MAX_CALL_HEADERS {
            continue;
        }
        if name.eq_ignore_ascii_case("x-customer-info") && value.len() <= MAX_CUSTOMER_INFO {
            customer_info = serde_json::from_str(value).ok();
        }
        headers.insert(name.clone(), value.chars().take(1024).collect());
    }
    let uri = |v: &str| v.split('<').nth(1).and_then(|r| r.split('>').next()).unwrap_or(v).trim().to_owned();
    agent_helper_protocol::events::CallIncoming {
        call_id: call_id.to_owned(),
        from: uri(&from),
        display_name,
        to: uri(&to),
        headers,
        customer_info,
        contact_center_call_id: cc_call_id,
        replaces_call_id: None,
    }
}

/// Answers an INVITE statelessly (it starts no call of ours).
async fn refuse(a: &mut Active, invite: &rsip::Request, code: u16, via_backup: bool) {
    if let Ok(resp) =
        agent_helper_sip::message::response_to(invite, agent_helper_sip::message::status(code), Some("ah"))
    {
        let _ = a.binding(via_backup).link.send(SipMessage::Response(resp).to_string().as_bytes()).await;
    }
}

pub(super) async fn new_inbound_call(a: &mut Active, invite: rsip::Request, via_backup: bool) {
    // Consulted transfer (RFC 3891): this INVITE takes the place of one of our calls.
    let replaces_header = invite.headers.iter().find_map(|h| match h {
        Header::Other(name, value) if name.eq_ignore_ascii_case("replaces") => Some(value.clone()),
        _ => None,
    });
    let mut replaced: Option<String> = None;
    if let Some(value) = replaces_header {
        let Some(r) = Replaces::parse(&value) else { return refuse(a, &invite, 400, via_backup).await };
        let Some(old) = a.calls.iter().find(|c| c.call.is_named_by(&r) && c.call.state() != CallState::Ended) else {
            return refuse(a, &invite, 481, via_backup).await;
        };
        if r.early_only && old.call.state() == CallState::Confirmed {
            return refuse(a, &invite, 486, via_backup).await;
        }
        replaced = Some(old.id.clone());
    }
    let (local_ip, endpoint) = {
        let b = a.binding(via_backup);
        (b.local_ip, b.endpoint.clone())
    };
    let mut ids = RandomIds;
    let call_id = format!("c-{}", agent_helper_sip::ids::Ids::token(&mut ids));
    let (media, rtp) = match local_media(local_ip, &a.config, &call_id, a.media_links.clone()).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "cannot take an inbound call");
            return refuse(a, &invite, 500, via_backup).await;
        }
    };
    let no_answer = match a.config.calls.no_answer_timeout {
        0 => None,
        s => Some(Duration::from_secs(u64::from(s))),
    };
    let now = Instant::now();
    let calls = &a.config.calls;
    let auto_answer = if calls.auto_answer {
        Some(Duration::from_secs(u64::from(calls.auto_answer_delay)))
    } else {
        agent_helper_sip::call::auto_answer_hint(&invite)
    };
    match Call::incoming(now, endpoint, invite, media, no_answer, Box::new(RandomIds)) {
        Ok(mut call) => {
            if let Some(old_id) = &replaced {
                // The agent already took this conversation: answer, end the old leg.
                tracing::info!(call_id, replaces = old_id, "call replaces another");
                if let Err(e) = call.answer(now) {
                    tracing::warn!(call_id, error = %e, "cannot answer the replacing call");
                }
                if let Some(old) = a.calls.iter_mut().find(|c| c.id == *old_id) {
                    old.call.end_replaced(now);
                }
            } else if let Some(delay) = auto_answer {
                tracing::info!(call_id, delay_ms = delay.as_millis() as u64, "auto-answer");
                call.answer_after(now, delay);
            }
            let mut info = incoming_info(&call_id, &call, &a.config.sip.call_id_header);
            info.replaces_call_id = replaced;
            a.calls.push(ActiveCall { id: call_id, call, via_backup, muted: false, announce_started: false, rtp });
            // Queued for flush(): the event follows the 100/180 on the wire.
            a.pending_incoming.push(info);
        }
        Err(resp) => {
            drop(rtp);
            let warning = resp.headers.iter().find_map(|h| match h {
                Header::Other(name, value) if name.eq_ignore_ascii_case("Warning") => Some(value.clone()),
                _ => None,
            });
            tracing::warn!(
                code = resp.status_code.code(),
                warning = warning.as_deref().unwrap_or(""),
                "an inbound call was refused"
            );
            if resp.via_header().is_ok() {
                let _ = a.binding(via_backup).link.send(SipMessage::Response(resp).to_string().as_bytes()).await;
            }
        }
    }
}
