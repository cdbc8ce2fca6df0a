//! Two `Call`s, one per side, passing messages to each other in memory on a
//! virtual clock: the whole INVITE dialog without a network.

use std::time::{Duration, Instant};

use agent_helper_sip::call::*;
use agent_helper_sip::ids::SequentialIds;
use agent_helper_sip::registration::Transport;
use agent_helper_sip::sdp::{AudioCodec, Direction, LocalMedia, SdesKey, SrtpPolicy};
use agent_helper_sip::transaction::Timers;
use rsip::headers::UntypedHeader;
use rsip::{Method, SipMessage};

fn ep(user: &str, local: &str, transport: Transport) -> Endpoint {
    Endpoint {
        username: user.into(),
        domain: "example.com".into(),
        display_name: Some("Agent".into()),
        local: local.into(),
        transport,
        user_agent: "test".into(),
        timers: Timers::default(),
        session_expires: 0,
        avoid_two_way_hold: false,
    }
}

fn media(port: u16, codecs: &[(u8, &str)]) -> LocalMedia {
    LocalMedia {
        address: "127.0.0.1".parse().unwrap(),
        rtp_port: port,
        codecs: codecs.iter().map(|(pt, n)| AudioCodec::new(*pt, n, 8000, 1)).collect(),
        telephone_event: 101,
        direction: Direction::SendRecv,
        session_id: 1,
        version: 1,
        rtcp_port: None,
        srtp: SrtpPolicy::Off,
        keys: vec![SdesKey { tag: 1, suite: "AES_CM_128_HMAC_SHA1_80".into(), keying: vec![port as u8; 30] }],
        opus_dtx: false,
        ptime: 20,
    }
}

fn secure_media(port: u16) -> LocalMedia {
    LocalMedia { srtp: SrtpPolicy::Required, ..media(port, &[(0, "PCMU")]) }
}

fn ids(prefix: u64) -> Box<SequentialIds> {
    let mut ids = SequentialIds::default();
    for _ in 0..prefix {
        use agent_helper_sip::ids::Ids;
        ids.token();
    }
    Box::new(ids)
}

/// Drains a call: messages sent, events raised.
fn drain(c: &mut Call) -> (Vec<SipMessage>, Vec<CallEvent>) {
    let (mut sent, mut events) = (vec![], vec![]);
    while let Some(o) = c.poll_output() {
        match o {
            CallOutput::Transmit(m) => sent.push(m),
            CallOutput::Event(e) => events.push(e),
        }
    }
    (sent, events)
}

/// Delivers `msgs` to `to`.
fn deliver(to: &mut Call, now: Instant, msgs: Vec<SipMessage>) {
    for m in msgs {
        match m {
            SipMessage::Request(r) => {
                assert!(to.owns_request(&r), "request not recognised: {r}");
                to.handle_request(now, r)
            }
            SipMessage::Response(r) => {
                assert!(to.owns_response(&r), "response not recognised: {r}");
                to.handle_response(now, r)
            }
        }
    }
}

fn start(t0: Instant, transport: Transport) -> (Call, Call) {
    start_with(t0, transport, |_| {})
}

/// As [`start`], with both endpoints adjusted by `tweak`.
fn start_with(t0: Instant, transport: Transport, tweak: impl Fn(&mut Endpoint)) -> (Call, Call) {
    let (mut alice, mut bob) = (ep("alice", "10.0.0.1:5070", transport), ep("bob", "10.0.0.2:5080", transport));
    tweak(&mut alice);
    tweak(&mut bob);
    let mut a = Call::outgoing(
        t0,
        alice,
        "sip:bob@example.com",
        &[("X-Customer-Info".into(), r#"{"name":"Ann"}"#.into())],
        media(4000, &[(8, "PCMA"), (0, "PCMU")]),
        ids(0),
    )
    .unwrap();
    let (sent, events) = drain(&mut a);
    assert!(events.is_empty());
    let SipMessage::Request(invite) = sent.into_iter().next().unwrap() else { panic!() };
    assert_eq!(invite.method, Method::Invite);
    let text = invite.to_string();
    assert!(
        text.contains("X-Customer-Info: {\"name\":\"Ann\"}") && text.contains("m=audio 4000 RTP/AVP 8 0 101"),
        "{text}"
    );
    let b =
        Call::incoming(t0, bob, invite, media(6000, &[(0, "PCMU")]), Some(Duration::from_secs(60)), ids(100)).unwrap();
    (a, b)
}

#[test]
fn outbound_call_rings_is_answered_confirmed_and_hung_up() {
    let t0 = Instant::now();
    let (mut a, mut b) = start(t0, Transport::Udp);
    assert_eq!(b.state(), CallState::Incoming);
    let (sent, _) = drain(&mut b);
    let codes: Vec<u16> = sent
        .iter()
        .map(|m| match m {
            SipMessage::Response(r) => r.status_code.code(),
            _ => 0,
        })
        .collect();
    assert_eq!(codes, [100, 180]);
    deliver(&mut a, t0, sent);
    assert_eq!(drain(&mut a).1, [CallEvent::Progress { code: 180 }]);
    assert_eq!(a.state(), CallState::Ringing);

    b.answer(t0).unwrap();
    let (sent, events) = drain(&mut b);
    assert_eq!(events, [CallEvent::Answered]);
    assert_eq!(b.negotiated().unwrap().codec.name, "PCMU", "the only codec in common");
    deliver(&mut a, t0, sent);
    let (sent, events) = drain(&mut a);
    assert_eq!(events, [CallEvent::Answered, CallEvent::Confirmed]);
    assert_eq!(a.negotiated().unwrap().remote_port, 6000);
    let SipMessage::Request(ack) = &sent[0] else { panic!() };
    assert_eq!(ack.method, Method::Ack);
    assert!(ack.uri.to_string().contains("10.0.0.2:5080"), "ACK goes to the Contact: {ack}");
    deliver(&mut b, t0, sent);
    assert_eq!(drain(&mut b).1, [CallEvent::Confirmed]);
    assert_eq!((a.state(), b.state()), (CallState::Confirmed, CallState::Confirmed));

    let t1 = t0 + Duration::from_secs(30);
    a.hangup(t1);
    let (sent, events) = drain(&mut a);
    assert_eq!(events, [CallEvent::Ended { reason: "local-hangup", sip_code: None }]);
    deliver(&mut b, t1, sent);
    let (sent, events) = drain(&mut b);
    assert_eq!(events, [CallEvent::Ended { reason: "remote-hangup", sip_code: None }]);
    deliver(&mut a, t1, sent);
    // Both finish once their transactions have absorbed retransmissions.
    for c in [&mut a, &mut b] {
        while let Some(t) = c.poll_timeout() {
            c.handle_timeout(t);
            drain(c);
        }
        assert!(c.is_finished());
    }
}

#[test]
fn inbound_200_is_retransmitted_until_the_ack() {
    let t0 = Instant::now();
    let (mut a, mut b) = start(t0, Transport::Udp);
    drain(&mut b);
    b.answer(t0).unwrap();
    let (first, _) = drain(&mut b);
    // The ACK is lost twice: 200 goes out again at T1 and 3·T1.
    let mut resent = 0;
    for at in [500u64, 1500] {
        b.handle_timeout(t0 + Duration::from_millis(at));
        resent += drain(&mut b).0.len();
    }
    assert_eq!(resent, 2);
    deliver(&mut a, t0, first);
    let (ack, _) = drain(&mut a);
    deliver(&mut b, t0 + Duration::from_secs(2), ack);
    assert_eq!(b.state(), CallState::Confirmed);
    assert!(b.poll_timeout().is_none_or(|t| t > t0 + Duration::from_secs(2)));
}

#[test]
fn reject_busy_and_cancel_before_answer() {
    let t0 = Instant::now();
    let (mut a, mut b) = start(t0, Transport::Tcp);
    let (ringing, _) = drain(&mut b);
    deliver(&mut a, t0, ringing);
    drain(&mut a);
    b.reject(t0, 486).unwrap();
    let (sent, events) = drain(&mut b);
    assert_eq!(events, [CallEvent::Ended { reason: "rejected", sip_code: Some(486) }]);
    deliver(&mut a, t0, sent);
    let (ack, events) = drain(&mut a);
    assert_eq!(events, [CallEvent::Ended { reason: "busy", sip_code: Some(486) }]);
    assert!(matches!(&ack[0], SipMessage::Request(r) if r.method == Method::Ack), "non-2xx ACK from the transaction");

    // CANCEL: caller hangs up while it rings.
    let (mut a, mut b) = start(t0, Transport::Udp);
    let (ringing, _) = drain(&mut b);
    deliver(&mut a, t0, ringing);
    drain(&mut a);
    a.hangup(t0 + Duration::from_secs(3));
    let (sent, _) = drain(&mut a);
    let SipMessage::Request(cancel) = &sent[0] else { panic!() };
    assert_eq!(cancel.method, Method::Cancel);
    deliver(&mut b, t0, sent);
    let (sent, events) = drain(&mut b);
    assert_eq!(events, [CallEvent::Ended { reason: "cancelled", sip_code: Some(487) }]);
    let codes: Vec<u16> = sent
        .iter()
        .map(|m| match m {
            SipMessage::Response(r) => r.status_code.code(),
            _ => 0,
        })
        .collect();
    assert_eq!(codes, [200, 487], "200 for the CANCEL, 487 for the INVITE");
    deliver(&mut a, t0, sent);
    assert_eq!(drain(&mut a).1, [CallEvent::Ended { reason: "cancelled", sip_code: Some(487) }]);
}

#[test]
fn unanswered_inbound_call_ends_with_480_after_the_no_answer_timeout() {
    let t0 = Instant::now();
    let (_a, mut b) = start(t0, Transport::Udp);
    drain(&mut b);
    b.handle_timeout(t0 + Duration::from_secs(59));
    assert_eq!(drain(&mut b).1, []);
    b.handle_timeout(t0 + Duration::from_secs(60));
    let (sent, events) = drain(&mut b);
    assert_eq!(events, [CallEvent::Ended { reason: "no-answer", sip_code: Some(480) }]);
    assert!(matches!(&sent[0], SipMessage::Response(r) if r.status_code.code() == 480));
}

#[test]
fn outbound_call_without_answer_times_out() {
    let t0 = Instant::now();
    let mut a = Call::outgoing(
        t0,
        ep("alice", "10.0.0.1:5070", Transport::Udp),
        "sip:nobody@example.com",
        &[],
        media(4000, &[(0, "PCMU")]),
        ids(0),
    )
    .unwrap();
    drain(&mut a);
    let mut events = vec![];
    while let Some(t) = a.poll_timeout() {
        a.handle_timeout(t);
        events.extend(drain(&mut a).1);
    }
    assert_eq!(events, [CallEvent::Ended { reason: "timeout", sip_code: Some(408) }]);
    assert!(
        Call::outgoing(t0, ep("a", "h:1", Transport::Udp), "bob\r\nVia: x", &[], media(1, &[(0, "PCMU")]), ids(0))
            .is_err()
    );
}

#[test]
fn secure_only_refuses_plain_media_both_ways_and_keys_both_sides_when_offered() {
    let t0 = Instant::now();
    let dial = |media: LocalMedia| {
        let mut a =
            Call::outgoing(t0, ep("alice", "10.0.0.1:5070", Transport::Tls), "sip:bob@example.com", &[], media, ids(0))
                .unwrap();
        let (sent, _) = drain(&mut a);
        let SipMessage::Request(invite) = sent.into_iter().next().unwrap() else { panic!() };
        (a, invite)
    };
    // A plain offer to a secure-only phone: 488 saying why.
    let (_, plain_invite) = dial(media(4000, &[(0, "PCMU")]));
    let refusal = Call::incoming(
        t0,
        ep("bob", "10.0.0.2:5080", Transport::Tls),
        plain_invite,
        secure_media(6000),
        None,
        ids(100),
    )
    .err()
    .unwrap();
    assert_eq!(refusal.status_code.code(), 488);
    assert!(refusal.to_string().contains("Warning: 399 agent-helper \"secure media (SRTP) required\""), "{refusal}");

    // A secure-only caller answered without SRTP: ACK, then BYE at once.
    let (mut a, invite) = dial(secure_media(4000));
    assert!(invite.to_string().contains("m=audio 4000 RTP/AVP".replace("AVP", "SAVP").as_str()));
    let mut plain_b = Call::incoming(
        t0,
        ep("bob", "10.0.0.2:5080", Transport::Tls),
        invite.clone(),
        LocalMedia { srtp: SrtpPolicy::Off, ..media(6000, &[(0, "PCMU")]) },
        None,
        ids(100),
    )
    .unwrap();
    plain_b.answer(t0).unwrap();
    let (sent, _) = drain(&mut plain_b);
    // bob (SRTP off) still takes a peer that insists: to test the refusal,
    // strip its answer's crypto as a plain phone would send it.
    let sent: Vec<SipMessage> = sent
        .into_iter()
        .map(|m| match m {
            SipMessage::Response(mut r) if r.status_code.code() == 200 => {
                let body = String::from_utf8(r.body.clone()).unwrap();
                let plain: String =
                    body.lines().filter(|l| !l.starts_with("a=crypto")).map(|l| format!("{l}\r\n")).collect();
                r.body = plain.replace("RTP/SAVP", "RTP/AVP").into_bytes();
                SipMessage::Response(r)
            }
            m => m,
        })
        .collect();
    deliver(&mut a, t0, sent);
    let (sent, events) = drain(&mut a);
    assert_eq!(events.last(), Some(&CallEvent::Ended { reason: "secure-media-refused", sip_code: None }));
    assert!(!events.contains(&CallEvent::Confirmed), "{events:?}");
    let methods: Vec<String> = sent
        .iter()
        .filter_map(|m| match m {
            SipMessage::Request(r) => Some(r.method.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(methods, ["ACK", "BYE"]);

    // Secure-only both sides: SRTP keyed both ways, mirrored.
    let (mut a, invite) = dial(secure_media(4000));
    let mut b =
        Call::incoming(t0, ep("bob", "10.0.0.2:5080", Transport::Tls), invite, secure_media(6000), None, ids(100))
            .unwrap();
    b.answer(t0).unwrap();
    let (sent, _) = drain(&mut b);
    deliver(&mut a, t0, sent);
    drain(&mut a);
    let (ka, kb) = (a.negotiated().unwrap().srtp.clone().unwrap(), b.negotiated().unwrap().srtp.clone().unwrap());
    assert_eq!((ka.local.clone(), ka.remote.clone()), (kb.remote, kb.local));
    assert_eq!((ka.local, ka.remote), (vec![160; 30], vec![112; 30]), "4000 and 6000 as u8 keyed the test keys");
}

#[test]
fn an_offer_without_a_common_codec_is_refused_with_488() {
    let t0 = Instant::now();
    let mut a = Call::outgoing(
        t0,
        ep("alice", "10.0.0.1:5070", Transport::Udp),
        "sip:bob@example.com",
        &[],
        media(4000, &[(18, "G729")]),
        ids(0),
    )
    .unwrap();
    let (sent, _) = drain(&mut a);
    let SipMessage::Request(invite) = sent.into_iter().next().unwrap() else { panic!() };
    let refusal = Call::incoming(
        t0,
        ep("bob", "10.0.0.2:5080", Transport::Udp),
        invite,
        media(6000, &[(0, "PCMU")]),
        None,
        ids(100),
    )
    .err()
    .unwrap();
    assert_eq!(refusal.status_code.code(), 488);
}

#[test]
fn auto_answer_after_a_delay_and_hints_from_the_pbx() {
    let t0 = Instant::now();
    let (mut a, mut b) = start(t0, Transport::Udp);
    let (ringing, _) = drain(&mut b);
    deliver(&mut a, t0, ringing);
    drain(&mut a);
    b.answer_after(t0, Duration::from_secs(2));
    b.handle_timeout(t0 + Duration::from_millis(1999));
    assert_eq!(drain(&mut b).1, []);
    b.handle_timeout(t0 + Duration::from_secs(2));
    let (sent, events) = drain(&mut b);
    assert_eq!(events, [CallEvent::Answered]);
    deliver(&mut a, t0, sent);
    assert!(drain(&mut a).1.contains(&CallEvent::Confirmed));

    let invite = |extra: &str| {
        rsip::Request::try_from(format!("INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n").as_str()).unwrap()
    };
    assert_eq!(auto_answer_hint(&invite("Call-Info: <sip:pbx>;answer-after=3\r\n")), Some(Duration::from_secs(3)));
    assert_eq!(auto_answer_hint(&invite("Call-Info: <sip:pbx>;answer-after=99999\r\n")), Some(Duration::from_secs(60)));
    assert_eq!(auto_answer_hint(&invite("Alert-Info: <http://x>;info=alert-autoanswer\r\n")), Some(Duration::ZERO));
    assert_eq!(auto_answer_hint(&invite("Alert-Info: <http://x/ring.wav>\r\n")), None);
    assert_eq!(auto_answer_hint(&invite("")), None);
}

fn confirmed(t0: Instant) -> (Call, Call) {
    confirmed_with(t0, |_| {})
}

fn confirmed_with(t0: Instant, tweak: impl Fn(&mut Endpoint)) -> (Call, Call) {
    let (mut a, mut b) = start_with(t0, Transport::Udp, tweak);
    let (ringing, _) = drain(&mut b);
    deliver(&mut a, t0, ringing);
    drain(&mut a);
    b.answer(t0).unwrap();
    let (ok, _) = drain(&mut b);
    deliver(&mut a, t0, ok);
    let (ack, _) = drain(&mut a);
    deliver(&mut b, t0, ack);
    drain(&mut b);
    (a, b)
}

#[test]
fn dtmf_by_sip_info_one_digit_at_a_time_paced_by_duration_and_gap() {
    let t0 = Instant::now();
    let (mut a, mut b) = confirmed(t0);
    a.send_dtmf_info(t0, "1#,a", Duration::from_millis(100), Duration::from_millis(50)).unwrap();
    let mut got = vec![];
    let mut now = t0;
    // Deliver each INFO, answer it, and run the sender's clock to its next deadline.
    for _ in 0..50 {
        let (sent, _) = drain(&mut a);
        for m in &sent {
            if let SipMessage::Request(r) = m {
                assert_eq!(r.method, Method::Info);
                assert!(r.to_string().contains("Content-Type: application/dtmf-relay"), "{r}");
            }
        }
        deliver(&mut b, now, sent);
        let (answers, events) = drain(&mut b);
        got.extend(events.into_iter().map(|e| (e, (now - t0).as_millis())));
        deliver(&mut a, now, answers);
        match a.poll_timeout() {
            Some(t) if a.dtmf_pending() > 0 || t < t0 + Duration::from_secs(5) => {
                now = t;
                a.handle_timeout(t);
            }
            _ => break,
        }
        if got.len() == 3 {
            break;
        }
    }
    let digits: Vec<(CallEvent, u128)> = got;
    assert_eq!(
        digits,
        [
            (CallEvent::Dtmf { digit: '1' }, 0),
            (CallEvent::Dtmf { digit: '#' }, 150),
            // ',' pauses 2 s after the '#' tone and gap.
            (CallEvent::Dtmf { digit: 'A' }, 2300),
        ]
    );
    assert!(a.send_dtmf_info(t0, "1", Duration::from_millis(100), Duration::from_millis(50)).is_ok());
    // Before the call is up there is no dialog to send INFO in.
    let (mut c, _) = start(t0, Transport::Udp);
    assert!(c.send_dtmf_info(t0, "1", Duration::from_millis(100), Duration::from_millis(50)).is_err());
}

/// Passes messages back and forth until both sides are quiet.
fn settle(a: &mut Call, b: &mut Call, now: Instant) -> (Vec<CallEvent>, Vec<CallEvent>) {
    let (mut ea, mut eb) = (vec![], vec![]);
    for _ in 0..20 {
        let (sa, va) = drain(a);
        let (sb, vb) = drain(b);
        ea.extend(va);
        eb.extend(vb);
        if sa.is_empty() && sb.is_empty() {
            break;
        }
        deliver(b, now, sa);
        deliver(a, now, sb);
    }
    (ea, eb)
}

#[test]
fn hold_and_resume_both_ways_with_re_invites() {
    let t0 = Instant::now();
    let (mut a, mut b) = confirmed(t0);
    a.set_hold(t0, true).unwrap();
    let (ea, eb) = settle(&mut a, &mut b, t0);
    assert_eq!(ea, [CallEvent::LocalHold { held: true, peer: Direction::RecvOnly }]);
    assert_eq!(eb, [CallEvent::RemoteHold { held: true }]);
    assert_eq!((a.hold_state(), b.hold_state()), ((true, false), (false, true)));

    // Resume right away: the finished re-INVITE does not stand in the way.
    a.set_hold(t0, false).unwrap();
    let (ea, eb) = settle(&mut a, &mut b, t0);
    assert_eq!(ea, [CallEvent::LocalHold { held: false, peer: Direction::SendRecv }]);
    assert_eq!(eb, [CallEvent::RemoteHold { held: false }]);

    // The callee holds the caller.
    b.set_hold(t0, true).unwrap();
    let (ea, eb) = settle(&mut a, &mut b, t0);
    assert_eq!(ea, [CallEvent::RemoteHold { held: true }]);
    assert_eq!(eb, [CallEvent::LocalHold { held: true, peer: Direction::RecvOnly }]);
    // The call is still up and ends normally.
    a.hangup(t0);
    let (ea, eb) = settle(&mut a, &mut b, t0);
    assert!(ea.contains(&CallEvent::Ended { reason: "local-hangup", sip_code: None }));
    assert!(eb.contains(&CallEvent::Ended { reason: "remote-hangup", sip_code: None }));
}

#[test]
fn crossing_re_invites_get_491_and_are_retried() {
    let t0 = Instant::now();
    let (mut a, mut b) = confirmed(t0);
    a.set_hold(t0, true).unwrap();
    b.set_hold(t0, true).unwrap();
    let (sa, _) = drain(&mut a);
    let (sb, _) = drain(&mut b);
    deliver(&mut b, t0, sa);
    deliver(&mut a, t0, sb);
    let (ea, eb) = settle(&mut a, &mut b, t0);
    assert_eq!((ea, eb), (vec![], vec![]), "both refused with 491, nothing changed");
    // The callee retries within 2 s, the caller after 2.1 s: the callee wins.
    let mut now = t0;
    let (mut ea, mut eb) = (vec![], vec![]);
    for _ in 0..10 {
        let next = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .filter(|t| *t < t0 + Duration::from_secs(5))
            .min();
        let Some(next) = next else { break };
        now = next;
        a.handle_timeout(now);
        b.handle_timeout(now);
        let (x, y) = settle(&mut a, &mut b, now);
        ea.extend(x);
        eb.extend(y);
    }
    assert!(eb.contains(&CallEvent::LocalHold { held: true, peer: Direction::RecvOnly }), "{eb:?}");
    assert!(ea.contains(&CallEvent::RemoteHold { held: true }), "{ea:?}");
    assert!(ea.contains(&CallEvent::LocalHold { held: true, peer: Direction::Inactive }), "both on hold: {ea:?}");
    assert!(now <= t0 + Duration::from_secs(5));
}

fn notify(c: &Call, refer_sent: &rsip::Request, frag: &str, state: &str) -> rsip::Request {
    // Built from the REFER as the peer would: in the same dialog, From/To swapped.
    let text = refer_sent.to_string();
    let header = |name: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{name}: "))).unwrap().to_owned();
    let body = format!("{frag}\r\n");
    let n = format!(
        "NOTIFY sip:alice@10.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5080;branch=z9hG4bKn{}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} NOTIFY\r\nEvent: refer\r\nSubscription-State: {state}\r\nContent-Type: message/sipfrag\r\nContent-Length: {}\r\n\r\n{body}",
        frag.len(),
        header("To"),
        header("From"),
        c.sip_call_id(),
        100 + frag.len(),
        body.len()
    );
    rsip::Request::try_from(n.as_str()).unwrap()
}

#[test]
fn blind_transfer_with_refer_and_sipfrag_notifies() {
    let t0 = Instant::now();
    let (mut a, mut b) = confirmed(t0);
    a.transfer(t0, "sip:carol@example.com").unwrap();
    let (sent, _) = drain(&mut a);
    let SipMessage::Request(refer) = &sent[0] else { panic!() };
    assert_eq!(refer.method, Method::Refer);
    let text = refer.to_string();
    assert!(
        text.contains("Refer-To: <sip:carol@example.com>") && text.contains("Referred-By: <sip:alice@example.com>"),
        "{text}"
    );
    // Our Call only knows REFER as "not implemented" on the receiving side yet: answer it by hand.
    let accepted = agent_helper_sip::message::response_to(refer, rsip::StatusCode::from(202), Some("x")).unwrap();
    let refer = refer.clone();
    deliver(&mut a, t0, vec![SipMessage::Response(accepted)]);
    assert_eq!(drain(&mut a).1, [CallEvent::TransferAccepted]);
    a.handle_request(t0, notify(&a, &refer, "SIP/2.0 100 Trying", "active;expires=60"));
    assert_eq!(drain(&mut a).1, []);
    a.handle_request(t0, notify(&a, &refer, "SIP/2.0 200 OK", "terminated;reason=noresource"));
    let (sent, events) = drain(&mut a);
    assert_eq!(events, [CallEvent::TransferSucceeded, CallEvent::Ended { reason: "transferred", sip_code: None }]);
    let methods: Vec<String> = sent
        .iter()
        .map(|m| match m {
            SipMessage::Request(r) => r.method.to_string(),
            SipMessage::Response(r) => r.status_code.code().to_string(),
        })
        .collect();
    assert!(methods.contains(&"BYE".to_string()) && methods.contains(&"200".to_string()), "{methods:?}");
    let _ = &mut b;
}

#[test]
fn a_refused_or_failed_transfer_keeps_the_call() {
    let t0 = Instant::now();
    let (mut a, _b) = confirmed(t0);
    a.transfer(t0, "sip:carol@example.com").unwrap();
    let (sent, _) = drain(&mut a);
    let SipMessage::Request(refer) = &sent[0] else { panic!() };
    let refused = agent_helper_sip::message::response_to(refer, rsip::StatusCode::from(603), Some("x")).unwrap();
    deliver(&mut a, t0, vec![SipMessage::Response(refused)]);
    assert_eq!(drain(&mut a).1, [CallEvent::TransferFailed { code: 603 }]);
    assert_eq!(a.state(), CallState::Confirmed);
    // And a transfer whose target is busy.
    a.transfer(t0, "sip:carol@example.com").unwrap();
    let (sent, _) = drain(&mut a);
    let SipMessage::Request(refer) = sent[0].clone() else { panic!() };
    let accepted = agent_helper_sip::message::response_to(&refer, rsip::StatusCode::from(202), Some("x")).unwrap();
    deliver(&mut a, t0, vec![SipMessage::Response(accepted)]);
    drain(&mut a);
    a.handle_request(t0, notify(&a, &refer, "SIP/2.0 486 Busy Here", "terminated"));
    assert_eq!(drain(&mut a).1, [CallEvent::TransferFailed { code: 486 }]);
    assert_eq!(a.state(), CallState::Confirmed);
}

#[test]
fn an_incoming_refer_is_accepted_and_answered_with_sipfrag_notifies() {
    let t0 = Instant::now();
    let (mut a, mut b) = confirmed(t0);
    // b transfers a (b's REFER is built by b's own transfer()).
    b.transfer(t0, "sip:carol@example.com").unwrap();
    let (refer, _) = drain(&mut b);
    deliver(&mut a, t0, refer);
    let (sent, events) = drain(&mut a);
    assert_eq!(events, [CallEvent::TransferRequested { target: "sip:carol@example.com".into(), replaces: None }]);
    let first_lines: Vec<String> = sent.iter().map(|m| m.to_string().lines().next().unwrap().to_owned()).collect();
    assert_eq!(first_lines[0], "SIP/2.0 202 Accepted");
    assert!(first_lines[1].starts_with("NOTIFY "), "{first_lines:?}");
    deliver(&mut b, t0, sent);
    let (acks, events) = drain(&mut b);
    assert_eq!(events, [CallEvent::TransferAccepted]);
    deliver(&mut a, t0, acks);
    // a's new call to carol is answered: the final NOTIFY tells b, who hangs up on a.
    a.notify_refer_progress(t0, 200);
    let (notify, _) = drain(&mut a);
    deliver(&mut b, t0, notify);
    let (sent, events) = drain(&mut b);
    assert_eq!(events, [CallEvent::TransferSucceeded, CallEvent::Ended { reason: "transferred", sip_code: None }]);
    deliver(&mut a, t0, sent);
    assert!(drain(&mut a).1.contains(&CallEvent::Ended { reason: "remote-hangup", sip_code: None }));
}

#[test]
fn a_challenged_invite_is_sent_again_with_credentials() {
    let t0 = Instant::now();
    let mut a = Call::outgoing(
        t0,
        ep("alice", "10.0.0.1:5070", Transport::Tcp),
        "sip:bob@example.com",
        &[],
        media(4000, &[(0, "PCMU")]),
        ids(0),
    )
    .unwrap()
    .with_password("s3cret");
    let (sent, _) = drain(&mut a);
    let SipMessage::Request(first) = sent[0].clone() else { panic!() };
    let mut challenge =
        agent_helper_sip::message::response_to(&first, rsip::StatusCode::from(407), Some("px")).unwrap();
    challenge.headers.push(rsip::Header::ProxyAuthenticate(rsip::headers::ProxyAuthenticate::new(
        r#"Digest realm="example.com", nonce="n1", qop="auth""#,
    )));
    deliver(&mut a, t0, vec![SipMessage::Response(challenge.clone())]);
    let (sent, events) = drain(&mut a);
    assert_eq!(events, [], "transparent to the user");
    let methods: Vec<String> = sent.iter().map(|m| m.to_string().lines().next().unwrap().to_owned()).collect();
    assert!(methods[0].starts_with("ACK "), "the 407 is ACKed: {methods:?}");
    let SipMessage::Request(second) = sent[1].clone() else { panic!("{methods:?}") };
    let text = second.to_string();
    assert!(
        text.contains("CSeq: 2 INVITE") && text.contains("Proxy-Authorization: Digest username=\"alice\""),
        "{text}"
    );
    assert_eq!(agent_helper_sip::message::cseq(&second).unwrap().0, 2);
    let ok = agent_helper_sip::message::response_to(&second, rsip::StatusCode::OK, Some("b2")).unwrap();
    deliver(&mut a, t0, vec![SipMessage::Response(ok)]);
    let (sent, events) = drain(&mut a);
    assert!(events.contains(&CallEvent::Confirmed), "{events:?}");
    assert!(sent[0].to_string().contains("CSeq: 2 ACK"), "the ACK follows the INVITE's CSeq: {}", sent[0]);

    // Without a password, or refused twice, the challenge ends the call.
    let mut b = Call::outgoing(
        t0,
        ep("alice", "10.0.0.1:5070", Transport::Tcp),
        "sip:bob@example.com",
        &[],
        media(4000, &[(0, "PCMU")]),
        ids(0),
    )
    .unwrap();
    let (sent, _) = drain(&mut b);
    let SipMessage::Request(inv) = sent[0].clone() else { panic!() };
    let mut c = agent_helper_sip::message::response_to(&inv, rsip::StatusCode::from(407), Some("px")).unwrap();
    c.headers
        .push(rsip::Header::ProxyAuthenticate(rsip::headers::ProxyAuthenticate::new(r#"Digest realm="x", nonce="n""#)));
    deliver(&mut b, t0, vec![SipMessage::Response(c)]);
    assert_eq!(drain(&mut b).1, [CallEvent::Ended { reason: "rejected", sip_code: Some(407) }]);
}

#[test]
fn consulted_transfer_names_the_consultation_dialog_as_the_target_sees_it() {
    let t0 = Instant::now();
    // alice talks to bob (`ab`/`bob`) and consults carol (`ac`/`carol`).
    let (mut ab, mut bob) = confirmed(t0);
    let (ac, carol) = confirmed(t0);
    let replaces = ac.replaces().expect("confirmed dialogs know both tags");
    assert!(carol.is_named_by(&replaces), "carol finds her dialog with alice by it");
    assert!(!ac.is_named_by(&replaces), "tags are from the target's point of view");

    ab.transfer_replacing(t0, "sip:carol@example.com", Some(&replaces)).unwrap();
    let (refer, _) = drain(&mut ab);
    let text = refer[0].to_string();
    assert!(text.contains("Refer-To: <sip:carol@example.com?Replaces="), "{text}");
    deliver(&mut bob, t0, refer);
    let (_, events) = drain(&mut bob);
    let [CallEvent::TransferRequested { target, replaces: Some(got) }] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(target, "sip:carol@example.com");
    assert!(carol.is_named_by(got), "bob's INVITE will replace carol's call with alice");
}

#[test]
fn a_replaced_call_ends_with_bye_and_reason_replaced() {
    let t0 = Instant::now();
    let (mut a, mut b) = confirmed(t0);
    a.end_replaced(t0);
    let (sent, events) = drain(&mut a);
    assert_eq!(events, [CallEvent::Ended { reason: "replaced", sip_code: None }]);
    assert!(sent[0].to_string().starts_with("BYE "), "{}", sent[0]);
    deliver(&mut b, t0, sent);
    assert!(drain(&mut b).1.contains(&CallEvent::Ended { reason: "remote-hangup", sip_code: None }));
}

#[test]
fn a_refer_with_a_broken_replaces_is_refused() {
    let t0 = Instant::now();
    let (mut a, mut b) = confirmed(t0);
    b.transfer(t0, "sip:carol@example.com").unwrap();
    let (refer, _) = drain(&mut b);
    let text = refer[0].to_string().replace("<sip:carol@example.com>", "<sip:carol@example.com?Replaces=nonsense>");
    let SipMessage::Request(req) = SipMessage::try_from(text.as_str()).unwrap() else { panic!() };
    a.handle_request(t0, req);
    let (sent, events) = drain(&mut a);
    assert!(events.is_empty(), "{events:?}");
    assert!(sent[0].to_string().starts_with("SIP/2.0 400"), "{}", sent[0]);
}

fn challenge_to(req: &rsip::Request, code: u16) -> SipMessage {
    let mut c = agent_helper_sip::message::response_to(req, rsip::StatusCode::from(code), Some("px")).unwrap();
    let v = r#"Digest realm="example.com", nonce="n9", qop="auth""#;
    c.headers.push(if code == 407 {
        rsip::Header::ProxyAuthenticate(rsip::headers::ProxyAuthenticate::new(v))
    } else {
        rsip::Header::WwwAuthenticate(rsip::headers::WwwAuthenticate::new(v))
    });
    SipMessage::Response(c)
}

fn requests(sent: &[SipMessage]) -> Vec<rsip::Request> {
    sent.iter()
        .filter_map(|m| match m {
            SipMessage::Request(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn challenges_to_in_dialog_requests_are_answered_once_with_credentials() {
    let t0 = Instant::now();
    let (a, _b) = confirmed(t0);
    let mut a = a.with_password("s3cret");

    // A re-INVITE (hold) challenged by the proxy: ACKed, sent again with credentials.
    a.set_hold(t0, true).unwrap();
    let reinvite = requests(&drain(&mut a).0).remove(0);
    let (seq, _) = agent_helper_sip::message::cseq(&reinvite).unwrap();
    deliver(&mut a, t0, vec![challenge_to(&reinvite, 407)]);
    let (sent, events) = drain(&mut a);
    assert_eq!(events, [], "transparent to the agent");
    let sent = requests(&sent);
    assert_eq!(sent[0].method, rsip::Method::Ack);
    let again = sent[1].clone();
    assert_eq!(agent_helper_sip::message::cseq(&again).unwrap(), (seq + 1, rsip::Method::Invite));
    assert!(again.to_string().contains("Proxy-Authorization: Digest username=\"alice\""), "{again}");
    assert!(again.to_string().contains("a=sendonly"), "still the hold offer");
    let mut ok = agent_helper_sip::message::response_to(&again, rsip::StatusCode::OK, Some("b")).unwrap();
    ok.body = b"v=0\r\no=- 1 2 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 4002 RTP/AVP 0\r\na=recvonly\r\n".to_vec();
    deliver(&mut a, t0, vec![SipMessage::Response(ok)]);
    let (_, events) = drain(&mut a);
    assert!(matches!(events.as_slice(), [CallEvent::LocalHold { held: true, .. }]), "{events:?}");

    // A second challenge to the credentialed request is a refusal.
    a.set_hold(t0, false).unwrap();
    let resume = requests(&drain(&mut a).0).remove(0);
    deliver(&mut a, t0, vec![challenge_to(&resume, 401)]);
    let again = requests(&drain(&mut a).0).pop().unwrap();
    deliver(&mut a, t0, vec![challenge_to(&again, 401)]);
    assert_eq!(drain(&mut a).1, [CallEvent::HoldFailed { code: 401 }]);

    // BYE challenged by the server: sent again with Authorization, next CSeq.
    a.hangup(t0);
    let bye = requests(&drain(&mut a).0).remove(0);
    deliver(&mut a, t0, vec![challenge_to(&bye, 401)]);
    let again = requests(&drain(&mut a).0);
    assert_eq!(again.len(), 1, "{again:?}");
    let (bye_seq, _) = agent_helper_sip::message::cseq(&bye).unwrap();
    assert_eq!(agent_helper_sip::message::cseq(&again[0]).unwrap(), (bye_seq + 1, rsip::Method::Bye));
    assert!(again[0].to_string().contains("Authorization: Digest username=\"alice\""), "{}", again[0]);
    let ok = agent_helper_sip::message::response_to(&again[0], rsip::StatusCode::OK, None).unwrap();
    deliver(&mut a, t0, vec![SipMessage::Response(ok)]);
    drain(&mut a);
    let later = t0 + std::time::Duration::from_secs(40);
    a.handle_timeout(later);
    assert!(a.is_finished(), "nothing left in flight");
}

/// A confirmed call where alice asks for `a_se` seconds of session interval
/// and bob prefers `b_se` (0 = none).
fn confirmed_with_session_timers(t0: Instant, a_se: u32, b_se: u32) -> (Call, Call, String) {
    let mut a_ep = ep("alice", "10.0.0.1:5070", Transport::Udp);
    a_ep.session_expires = a_se;
    let mut b_ep = ep("bob", "10.0.0.2:5080", Transport::Udp);
    b_ep.session_expires = b_se;
    let mut a = Call::outgoing(t0, a_ep, "sip:bob@example.com", &[], media(4000, &[(0, "PCMU")]), ids(0)).unwrap();
    let SipMessage::Request(invite) = drain(&mut a).0.remove(0) else { panic!() };
    let invite_text = invite.to_string();
    let mut b = Call::incoming(t0, b_ep, invite, media(6000, &[(0, "PCMU")]), None, ids(100)).unwrap();
    drain(&mut b);
    b.answer(t0).unwrap();
    let (ok, _) = drain(&mut b);
    let ok_text = ok[0].to_string();
    deliver(&mut a, t0, ok);
    let (ack, _) = drain(&mut a);
    deliver(&mut b, t0, ack);
    drain(&mut b);
    (a, b, format!("{invite_text}\n----\n{ok_text}"))
}

/// Runs `c`'s timers up to `until`, returning what it sent.
fn run_until(c: &mut Call, until: Instant) -> Vec<(Instant, SipMessage)> {
    let mut sent = vec![];
    while let Some(at) = c.poll_timeout().filter(|t| *t <= until) {
        c.handle_timeout(at);
        sent.extend(drain(c).0.into_iter().map(|m| (at, m)));
    }
    sent
}

#[test]
fn session_timer_the_caller_refreshes_every_half_interval() {
    let t0 = Instant::now();
    let (mut a, mut b, exchange) = confirmed_with_session_timers(t0, 90, 0);
    assert!(
        exchange.contains("Session-Expires: 90\r\n") && exchange.contains("Supported: replaces, timer"),
        "{exchange}"
    );
    assert!(
        exchange.contains("Session-Expires: 90;refresher=uac") && exchange.contains("Require: timer"),
        "{exchange}"
    );

    // Nothing before 45 s; then a re-INVITE with the same media and our interval.
    assert!(run_until(&mut a, t0 + Duration::from_millis(44_999)).is_empty());
    let sent = run_until(&mut a, t0 + Duration::from_secs(45));
    let SipMessage::Request(refresh) = &sent[0].1 else { panic!("{sent:?}") };
    assert_eq!(refresh.method, Method::Invite);
    let text = refresh.to_string();
    assert!(text.contains("Session-Expires: 90;refresher=uac") && text.contains("a=sendrecv"), "{text}");
    deliver(&mut b, t0 + Duration::from_secs(45), vec![sent[0].1.clone()]);
    let (ok, events) = drain(&mut b);
    assert!(events.is_empty(), "a refresh is not a hold: {events:?}");
    deliver(&mut a, t0 + Duration::from_secs(45), ok);
    let (ack, events) = drain(&mut a);
    assert!(events.is_empty(), "{events:?}");
    deliver(&mut b, t0 + Duration::from_secs(45), ack);
    drain(&mut b);

    // bob, who does not refresh, would end the call 60 s after the last refresh
    // (90 − min(32, 30)); alice's next refresh at 90 s keeps it alive.
    assert!(run_until(&mut b, t0 + Duration::from_secs(90)).iter().all(|(_, m)| !m.to_string().starts_with("BYE")));
    let sent = run_until(&mut a, t0 + Duration::from_secs(90));
    assert_eq!(sent.iter().filter(|(_, m)| m.to_string().starts_with("INVITE ")).count(), 1);
    assert_eq!(a.state(), CallState::Confirmed);
}

#[test]
fn session_timer_a_silent_refresher_gets_bye_before_the_session_expires() {
    let t0 = Instant::now();
    let (_a, mut b, _) = confirmed_with_session_timers(t0, 90, 0);
    // alice vanishes: bob sends BYE at 60 s and the call ends as session-expired.
    let sent = run_until(&mut b, t0 + Duration::from_secs(59));
    assert!(sent.iter().all(|(_, m)| !m.to_string().starts_with("BYE")), "{sent:?}");
    b.handle_timeout(t0 + Duration::from_secs(60));
    let (sent, events) = drain(&mut b);
    assert!(sent[0].to_string().starts_with("BYE "), "{}", sent[0]);
    assert_eq!(events, [CallEvent::Ended { reason: "session-expired", sip_code: None }]);
}

#[test]
fn session_timer_422_raises_the_interval_and_too_short_offers_are_refused() {
    let t0 = Instant::now();
    let mut a_ep = ep("alice", "10.0.0.1:5070", Transport::Udp);
    a_ep.session_expires = 90;
    let mut a = Call::outgoing(t0, a_ep, "sip:bob@example.com", &[], media(4000, &[(0, "PCMU")]), ids(0)).unwrap();
    let SipMessage::Request(invite) = drain(&mut a).0.remove(0) else { panic!() };
    let mut too_small =
        agent_helper_sip::message::response_to(&invite, rsip::StatusCode::from(422), Some("b")).unwrap();
    too_small.headers.push(rsip::Header::Other("Min-SE".into(), "300".into()));
    deliver(&mut a, t0, vec![SipMessage::Response(too_small)]);
    let (sent, events) = drain(&mut a);
    assert!(events.is_empty(), "{events:?}");
    let again = sent.iter().find(|m| m.to_string().starts_with("INVITE ")).unwrap().to_string();
    assert!(again.contains("Session-Expires: 300") && again.contains("CSeq: 2 INVITE"), "{again}");

    // An INVITE asking for less than 90 s gets 422 with our Min-SE.
    let text = invite.to_string().replace("Session-Expires: 90", "Session-Expires: 30");
    let short = rsip::Request::try_from(text.as_str()).unwrap();
    let refusal = Call::incoming(
        t0,
        ep("bob", "10.0.0.2:5080", Transport::Udp),
        short,
        media(6000, &[(0, "PCMU")]),
        None,
        ids(9),
    )
    .err()
    .expect("refused");
    assert_eq!(refusal.status_code.code(), 422);
    assert!(refusal.to_string().contains("Min-SE: 90"), "{refusal}");
}

#[test]
fn a_peer_holding_us_while_we_hold_it_releases_our_hold() {
    let t0 = Instant::now();
    let (mut a, mut b) = confirmed_with(t0, |e| e.avoid_two_way_hold = true);
    a.set_hold(t0, true).unwrap();
    let (offer, _) = drain(&mut a);
    deliver(&mut b, t0, offer);
    let (answer, _) = drain(&mut b);
    deliver(&mut a, t0, answer);
    let (ack, events) = drain(&mut a);
    assert!(matches!(events.as_slice(), [CallEvent::LocalHold { held: true, .. }]), "{events:?}");
    deliver(&mut b, t0, ack);
    drain(&mut b);

    // Now b holds a: a answers sendrecv (not inactive) and gives up its own hold.
    b.set_hold(t0, true).unwrap();
    let (offer, _) = drain(&mut b);
    deliver(&mut a, t0, offer);
    let (sent, events) = drain(&mut a);
    assert_eq!(
        events,
        [
            CallEvent::LocalHold { held: false, peer: agent_helper_sip::sdp::Direction::SendOnly },
            CallEvent::RemoteHold { held: true }
        ]
    );
    let ok = sent.iter().map(|m| m.to_string()).find(|m| m.starts_with("SIP/2.0 200")).expect("200");
    assert!(ok.contains("a=recvonly"), "{ok}");
    assert_eq!(a.hold_state(), (false, true));
}

#[test]
fn sips_targets_need_tls_and_get_a_sips_contact() {
    let t0 = Instant::now();
    let over = |transport| {
        Call::outgoing(
            t0,
            ep("alice", "10.0.0.1:5061", transport),
            "sips:bob@example.com",
            &[],
            media(4000, &[(0, "PCMU")]),
            ids(0),
        )
    };
    assert!(matches!(over(Transport::Udp), Err(agent_helper_sip::call::CallError::NeedsTls(_))));
    assert!(matches!(over(Transport::Tcp), Err(agent_helper_sip::call::CallError::NeedsTls(_))));
    let mut a = over(Transport::Tls).unwrap();
    let SipMessage::Request(invite) = drain(&mut a).0.remove(0) else { panic!() };
    let text = invite.to_string();
    assert!(text.starts_with("INVITE sips:bob@example.com SIP/2.0"), "{text}");
    assert!(
        text.contains("Contact: <sips:alice@10.0.0.1:5061>") && text.contains("<sips:alice@example.com>;tag="),
        "{text}"
    );

    // A sips: request that did not come over TLS is refused (416).
    let refusal = Call::incoming(
        t0,
        ep("bob", "10.0.0.2:5080", Transport::Udp),
        invite.clone(),
        media(6000, &[(0, "PCMU")]),
        None,
        ids(9),
    )
    .err()
    .expect("refused");
    assert_eq!(refusal.status_code.code(), 416);
    let mut b = Call::incoming(
        t0,
        ep("bob", "10.0.0.2:5061", Transport::Tls),
        invite,
        media(6000, &[(0, "PCMU")]),
        None,
        ids(9),
    )
    .unwrap();
    drain(&mut b);
    b.answer(t0).unwrap();
    let ok = drain(&mut b).0.iter().map(|m| m.to_string()).find(|m| m.starts_with("SIP/2.0 200")).unwrap();
    assert!(ok.contains("Contact: <sips:bob@10.0.0.2:5061>"), "{ok}");
}
