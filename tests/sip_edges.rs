//! The edge cases of SIP the issue names, played by sipp scenarios
//! (`tests/sipp/*.xml`) through kamailio against the real helper.
#![cfg(unix)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::kamailio::Kamailio;
use support::sipp::Sipp;
use support::*;

const PASSWORD: &str = "kam-secret-7";

fn registered_helper(k: &Kamailio, dir: &std::path::Path) -> (Helper, Conn) {
    registered_helper_with(k, dir, "")
}

/// `extra` is appended to the helper's config.toml.
fn registered_helper_with(k: &Kamailio, dir: &std::path::Path, extra: &str) -> (Helper, Conn) {
    support::agent::registered_udp(k, dir, extra)
}

#[test]
fn early_media_then_busy_ends_the_call_with_486() {
    let k = Kamailio::start(PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let (_helper, mut conn) = registered_helper(&k, dir.path());
    let sipp = Sipp::uas("uas_183_486.xml");
    conn.request("call", json!({"target": sipp.target()}));
    assert_eq!(conn.event("call-in-progress")["sipCode"], 183);
    let ended = conn.event("call-ended");
    assert_eq!((ended["reason"].as_str(), ended["sipCode"].as_u64()), (Some("busy"), Some(486)));
    sipp.assert_passed();
}

#[test]
fn re_invite_glare_491_is_retried_and_the_hold_succeeds() {
    let k = Kamailio::start(PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let (_helper, mut conn) = registered_helper(&k, dir.path());
    let sipp = Sipp::uas("uas_reinvite_491.xml");
    conn.request("call", json!({"target": sipp.target()}));
    conn.event("call-confirmed");
    conn.request("holdCall", json!({}));
    // 491, then a retry 2.1–4 s later (we own the Call-ID), accepted as recvonly.
    let held = conn.event("call-held");
    assert_eq!(held["peerDirection"], "recvonly", "{held}");
    conn.request("endCall", json!({}));
    assert_eq!(conn.event("call-ended")["reason"], "local-hangup");
    sipp.assert_passed();
}

#[test]
fn refer_with_a_failing_notify_cancels_the_transfer_and_keeps_the_call() {
    let k = Kamailio::start(PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let (_helper, mut conn) = registered_helper(&k, dir.path());
    let sipp = Sipp::uas("uas_refer_fail.xml");
    conn.request("call", json!({"target": sipp.target()}));
    conn.event("call-confirmed");
    conn.request("transferCall", json!({"type": "direct", "target": "carol"}));
    conn.event("call-transfer-started");
    assert_eq!(conn.event("call-transfer-cancel")["sipCode"], 503);
    let status = conn.request("getStatus", json!({}));
    assert_eq!(status["result"]["calls"][0]["state"], "connected", "{status}");
    conn.request("endCall", json!({}));
    conn.event("call-ended");
    sipp.assert_passed();
}

#[test]
fn a_missing_ack_ends_the_answered_call_with_bye_after_64_t1() {
    let k = Kamailio::start(PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let (_helper, mut conn) = registered_helper(&k, dir.path());
    let sipp = Sipp::uac("uac_no_ack.xml", "agent1", k.port);
    conn.event("call-incoming");
    conn.request("answerCall", json!({}));
    // No ACK ever comes: the helper resends its 200 and gives up after 32 s.
    conn.stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let ended = conn.event("call-ended");
    assert_eq!((ended["reason"].as_str(), ended["sipCode"].as_u64()), (Some("failed"), Some(408)));
    sipp.assert_passed();
}

#[test]
fn a_200_crossing_our_cancel_is_acknowledged_and_ended_with_bye() {
    let k = Kamailio::start(PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let (_helper, mut conn) = registered_helper(&k, dir.path());
    let sipp = Sipp::uas("uas_cancel_crosses_200.xml");
    conn.request("call", json!({"target": sipp.target()}));
    assert_eq!(conn.event("call-in-progress")["sipCode"], 180);
    conn.request("endCall", json!({}));
    // sipp answers the INVITE after our CANCEL: the helper ACKs and sends BYE
    // (sipp fails unless both arrive), and the agent sees a cancelled call.
    let ended = conn.event("call-ended");
    assert_eq!(ended["reason"], "cancelled", "{ended}");
    sipp.assert_passed();
}

#[test]
fn challenges_to_the_re_invite_and_the_bye_are_answered_with_credentials() {
    let k = Kamailio::start(PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let (_helper, mut conn) = registered_helper(&k, dir.path());
    let sipp = Sipp::uas("uas_challenge_in_dialog.xml");
    conn.request("call", json!({"target": sipp.target()}));
    conn.event("call-confirmed");
    conn.request("holdCall", json!({}));
    // 401, then the re-INVITE again with credentials sipp verifies.
    assert_eq!(conn.event("call-held")["peerDirection"], "recvonly");
    conn.request("endCall", json!({}));
    assert_eq!(conn.event("call-ended")["reason"], "local-hangup");
    // 401 to the BYE, then the BYE again with valid credentials.
    sipp.assert_passed();
}

#[test]
fn the_helper_refreshes_a_90_s_session_by_re_invite() {
    let k = Kamailio::start(PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let (_helper, mut conn) = registered_helper_with(&k, dir.path(), "[calls]\nsession_expires = 90\n");
    let sipp = Sipp::uas("uas_session_timer.xml");
    conn.request("call", json!({"target": sipp.target()}));
    conn.event("call-confirmed");
    // sipp hangs up only after a valid refresh arrived (due 45 s in).
    conn.stream.set_read_timeout(Some(Duration::from_secs(75))).unwrap();
    let ended = conn.event("call-ended");
    assert_eq!(ended["reason"], "remote-hangup", "{ended}");
    sipp.assert_passed();
}

/// RFC 3550 §6.3.7: when the call ends, its RTP stream ends with a compound
/// RTCP packet (a report, then BYE for the stream's SSRC), on the RTP port
/// the answer's `a=rtcp-mux` asked for. The far end's media is this test.
#[test]
fn the_calls_rtp_stream_ends_with_an_rtcp_bye() {
    let k = Kamailio::start(PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let (_helper, mut conn) = registered_helper(&k, dir.path());
    let media = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    media.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let port = media.local_addr().unwrap().port().to_string();
    let sipp = Sipp::uas_with("uas_rtp_peer.xml", &["-key", "peer_rtp", &port]);
    conn.request("call", json!({"target": sipp.target()}));
    conn.event("call-confirmed");
    let mut buf = [0u8; 2048];
    let is_rtcp = |d: &[u8]| d.len() >= 8 && (192..=223).contains(&d[1]);
    // The helper's stream: PCMU packets, whose SSRC the BYE must name.
    let ssrc = loop {
        let (n, _) = media.recv_from(&mut buf).expect("RTP from the helper");
        if n >= 12 && !is_rtcp(&buf[..n]) && buf[1] & 0x7f == 0 {
            break u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        }
    };
    conn.request("endCall", json!({}));
    assert_eq!(conn.event("call-ended")["reason"], "local-hangup");
    // Every packet of the compound by type, with its first SSRC.
    let packets = loop {
        let (n, _) = media.recv_from(&mut buf).expect("the helper's RTCP BYE");
        let mut rest = &buf[..n];
        if !is_rtcp(rest) {
            continue;
        }
        let mut packets = vec![];
        while rest.len() >= 8 {
            let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
            packets.push((rest[1], u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]])));
            rest = &rest[len.min(rest.len())..];
        }
        if packets.iter().any(|(pt, _)| *pt == 203) {
            break packets;
        }
    };
    let types: Vec<u8> = packets.iter().map(|(pt, _)| *pt).collect();
    assert_eq!(types, [200, 202, 203], "SR (we sent), SDES, BYE last: {packets:?}");
    assert!(packets.iter().all(|(_, s)| *s == ssrc), "the BYE is for the stream sent (SSRC {ssrc:#x}): {packets:?}");
    sipp.assert_passed();
}
