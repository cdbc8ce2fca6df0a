//! Keep-alives on a virtual clock: OPTIONS over UDP, CRLF pings over TCP/TLS,
//! a dead server noticed, and the address the server sees reported.

use std::time::{Duration, Instant};

use agent_helper_sip::ids::SequentialIds;
use agent_helper_sip::keepalive::*;
use agent_helper_sip::message::response_to;
use agent_helper_sip::registration::Transport;
use agent_helper_sip::transaction::Timers;
use rsip::{Request, Response, SipMessage, StatusCode};

fn keepalive(t0: Instant, transport: Transport) -> KeepAlive {
    keepalive_every(t0, transport, 30)
}

fn keepalive_every(t0: Instant, transport: Transport, seconds: u64) -> KeepAlive {
    let cfg = KeepAliveConfig {
        transport,
        interval: Duration::from_secs(seconds),
        server_uri: "sip:pbx.example.com:5060".into(),
        aor: "alice@pbx.example.com".into(),
        local: "10.0.0.5:5070".into(),
        user_agent: "AgentHelper/test".into(),
        timers: Timers::default(),
    };
    KeepAlive::new(t0, cfg, Box::new(SequentialIds::default()))
}

/// Runs timers up to `until`; returns what came out, with its time.
fn advance(k: &mut KeepAlive, until: Instant) -> Vec<(Instant, KeepAliveOutput)> {
    let mut seen = vec![];
    while let Some(at) = k.poll_timeout().filter(|t| *t <= until) {
        k.handle_timeout(at);
        while let Some(o) = k.poll_output() {
            seen.push((at, o));
        }
    }
    seen
}

fn options_in(outputs: &[(Instant, KeepAliveOutput)]) -> Vec<Request> {
    outputs
        .iter()
        .filter_map(|(_, o)| match o {
            KeepAliveOutput::Transmit(SipMessage::Request(r)) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn udp_sends_options_every_interval_and_any_answer_keeps_it_alive() {
    let t0 = Instant::now();
    let mut k = keepalive(t0, Transport::Udp);
    assert!(advance(&mut k, t0 + Duration::from_millis(29_999)).is_empty(), "nothing before the interval");
    let out = advance(&mut k, t0 + Duration::from_secs(30));
    let sent = options_in(&out);
    assert_eq!(sent.len(), 1);
    let text = sent[0].to_string();
    for needle in [
        "OPTIONS sip:pbx.example.com:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK",
        ";rport",
        "From: <sip:alice@pbx.example.com>;tag=",
        "CSeq: 1 OPTIONS",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
    // A 404 is an answer too: the server is there.
    let t = t0 + Duration::from_secs(30);
    assert!(k.handle_response(t, response_to(&sent[0], StatusCode::NotFound, Some("x")).unwrap()));
    assert_eq!(k.poll_output(), None, "nothing to report for our own address");
    let out = advance(&mut k, t0 + Duration::from_secs(60));
    let next = options_in(&out);
    assert_eq!(next.len(), 1, "the next OPTIONS one interval later: {out:?}");
    assert!(next[0].to_string().contains("CSeq: 2 OPTIONS"));
    assert!(!out.iter().any(|(_, o)| *o == KeepAliveOutput::Dead));
}

#[test]
fn udp_server_that_never_answers_is_dead_after_timer_f() {
    let t0 = Instant::now();
    let mut k = keepalive(t0, Transport::Udp);
    let out = advance(&mut k, t0 + Duration::from_secs(120));
    let dead: Vec<_> = out.iter().filter(|(_, o)| *o == KeepAliveOutput::Dead).collect();
    assert_eq!(dead.len(), 1, "{out:?}");
    // Sent at 30 s, Timer F = 64·T1 = 32 s later.
    assert_eq!(dead[0].0, t0 + Duration::from_secs(62));
    assert!(options_in(&out).len() > 1, "retransmitted on the way (Timer E)");
    assert_eq!(k.poll_timeout(), None, "a dead keep-alive stays quiet");
}

#[test]
fn the_address_the_server_sees_is_reported() {
    let t0 = Instant::now();
    let mut k = keepalive(t0, Transport::Udp);
    let sent = options_in(&advance(&mut k, t0 + Duration::from_secs(30)));
    let ok = response_to(&sent[0], StatusCode::OK, Some("x")).unwrap();
    let text = ok.to_string().replacen(";rport", ";received=198.51.100.9;rport=61000", 1);
    let ok = Response::try_from(text.as_str()).unwrap();
    assert!(k.handle_response(t0 + Duration::from_secs(30), ok));
    assert_eq!(k.poll_output(), Some(KeepAliveOutput::Observed("198.51.100.9:61000".into())));
}

#[test]
fn tcp_pings_and_a_missing_pong_declares_the_server_dead() {
    let t0 = Instant::now();
    let mut k = keepalive(t0, Transport::Tcp);
    let out = advance(&mut k, t0 + Duration::from_secs(30));
    assert_eq!(out, [(t0 + Duration::from_secs(30), KeepAliveOutput::Ping)]);
    // The pong comes: nothing more until the next interval.
    k.handle_pong();
    let out = advance(&mut k, t0 + Duration::from_secs(59));
    assert!(out.is_empty(), "{out:?}");
    let out = advance(&mut k, t0 + Duration::from_secs(60));
    assert_eq!(out, [(t0 + Duration::from_secs(60), KeepAliveOutput::Ping)]);
    // No pong this time: dead after PONG_TIMEOUT.
    let out = advance(&mut k, t0 + Duration::from_secs(75));
    assert_eq!(out, [(t0 + Duration::from_secs(60) + PONG_TIMEOUT, KeepAliveOutput::Dead)]);
}

#[test]
fn a_server_that_never_pongs_is_asked_with_options_instead() {
    let t0 = Instant::now();
    let mut k = keepalive(t0, Transport::Tls);
    let out = advance(&mut k, t0 + Duration::from_secs(40));
    // Ping at 30 s, no pong by 40 s: not dead, but an OPTIONS on the stream.
    assert_eq!(out[0], (t0 + Duration::from_secs(30), KeepAliveOutput::Ping));
    let sent = options_in(&out);
    assert_eq!(sent.len(), 1, "{out:?}");
    assert!(sent[0].to_string().contains("Via: SIP/2.0/TLS "), "{}", sent[0]);
    assert!(!out.iter().any(|(_, o)| *o == KeepAliveOutput::Dead));
    // It answers: alive; the next probe is OPTIONS again, one interval later.
    assert!(k.handle_response(t0 + Duration::from_secs(40), response_to(&sent[0], StatusCode::OK, None).unwrap()));
    let out = advance(&mut k, t0 + Duration::from_secs(70));
    assert_eq!(options_in(&out).len(), 1, "{out:?}");
    assert!(!out.iter().any(|(_, o)| *o == KeepAliveOutput::Ping || *o == KeepAliveOutput::Dead));
    // Then it goes silent: dead after Timer F (no retransmissions over TLS).
    let out = advance(&mut k, t0 + Duration::from_secs(120));
    assert_eq!(out, [(t0 + Duration::from_secs(70 + 32), KeepAliveOutput::Dead)]);
}

#[test]
fn an_interval_shorter_than_the_pong_timeout_does_not_postpone_it() {
    let t0 = Instant::now();
    let mut k = keepalive_every(t0, Transport::Tcp, 5);
    advance(&mut k, t0 + Duration::from_secs(5));
    k.handle_pong();
    let out = advance(&mut k, t0 + Duration::from_secs(30));
    // Ping at 10 s unanswered; no new ping at 15 s; dead at 20 s.
    assert_eq!(
        out,
        [(t0 + Duration::from_secs(10), KeepAliveOutput::Ping), (t0 + Duration::from_secs(20), KeepAliveOutput::Dead)]
    );
}
