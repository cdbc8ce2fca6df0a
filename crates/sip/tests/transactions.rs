//! RFC 3261 §17 timers and state changes on a virtual clock: the clock is a
//! base `Instant` plus offsets, advanced by the test; nothing sleeps.

use std::time::{Duration, Instant};

use agent_helper_sip::transaction::*;
use rsip::{Request, Response, SipMessage, StatusCode};

fn request(method: &str, branch: &str) -> Request {
    let text = format!(
        "{method} sip:bob@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\n\
         To: <sip:bob@127.0.0.1>\r\n\
         Call-ID: c1@127.0.0.1\r\n\
         CSeq: 1 {method}\r\n\
         Route: <sip:proxy.example.com;lr>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    Request::try_from(text.as_str()).expect("test request parses")
}

fn response_to(req: &Request, code: u16) -> Response {
    agent_helper_sip::message::response_to(req, StatusCode::from(code), Some("b2")).unwrap()
}

const T1: Duration = Duration::from_millis(500);

/// Runs the transaction's timers up to `until`, returning the offsets (ms from
/// `base`) at which something was transmitted.
fn run_client(t: &mut ClientTransaction, base: Instant, until: Duration) -> (Vec<u64>, Vec<ClientOutput>) {
    let mut sent = Vec::new();
    let mut other = Vec::new();
    let mut drain = |t: &mut ClientTransaction, at: Instant| {
        while let Some(o) = t.poll_output() {
            match o {
                ClientOutput::Transmit(_) => sent.push((at - base).as_millis() as u64),
                o => other.push(o),
            }
        }
    };
    drain(t, base);
    while let Some(at) = t.poll_timeout() {
        if at > base + until {
            break;
        }
        t.handle_timeout(at);
        drain(t, at);
    }
    (sent, other)
}

#[test]
fn invite_over_udp_retransmits_with_timer_a_doubling_and_times_out_with_timer_b() {
    let base = Instant::now();
    let mut t = ClientTransaction::new(base, request("INVITE", "z9hG4bK-1"), false, Timers::default()).unwrap();
    let (sent, other) = run_client(&mut t, base, Duration::from_secs(60));
    // 0, then T1 doubling: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; Timer B at 64·T1 = 32 s.
    assert_eq!(sent, [0, 500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(other, [ClientOutput::Timeout]);
    assert!(t.is_terminated());
}

#[test]
fn invite_over_tcp_is_sent_once_and_still_times_out() {
    let base = Instant::now();
    let mut t = ClientTransaction::new(base, request("INVITE", "z9hG4bK-2"), true, Timers::default()).unwrap();
    let (sent, other) = run_client(&mut t, base, Duration::from_secs(60));
    assert_eq!(sent, [0]);
    assert_eq!(other, [ClientOutput::Timeout]);
}

#[test]
fn non_invite_retransmits_capped_at_t2_and_at_t2_once_proceeding() {
    let base = Instant::now();
    let req = request("REGISTER", "z9hG4bK-3");
    let mut t = ClientTransaction::new(base, req.clone(), false, Timers::default()).unwrap();
    let (sent, other) = run_client(&mut t, base, Duration::from_secs(60));
    // Timer E: 0.5, 1, 2, 4, 4, 4 … ; Timer F at 32 s.
    assert_eq!(sent, [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
    assert_eq!(other, [ClientOutput::Timeout]);

    let mut t = ClientTransaction::new(base, req.clone(), false, Timers::default()).unwrap();
    while t.poll_output().is_some() {}
    t.handle_response(base + Duration::from_millis(100), response_to(&req, 100));
    assert_eq!(t.state(), ClientState::Proceeding);
    assert!(matches!(t.poll_output(), Some(ClientOutput::Response(r)) if r.status_code.code() == 100));
    // The first E (0.5 s) still fires; after it the interval is T2.
    let (sent, _) = run_client(&mut t, base, Duration::from_millis(9000));
    assert_eq!(sent, [500, 4500, 8500]);
}

#[test]
fn non_invite_final_response_completes_then_ends_after_timer_k() {
    let base = Instant::now();
    let req = request("REGISTER", "z9hG4bK-4");
    let mut t = ClientTransaction::new(base, req.clone(), false, Timers::default()).unwrap();
    while t.poll_output().is_some() {}
    let at = base + Duration::from_millis(200);
    t.handle_response(at, response_to(&req, 401));
    assert_eq!(t.state(), ClientState::Completed);
    assert!(matches!(t.poll_output(), Some(ClientOutput::Response(r)) if r.status_code.code() == 401));
    // Retransmitted final responses are absorbed.
    t.handle_response(at + T1, response_to(&req, 401));
    assert_eq!(t.poll_output(), None);
    assert_eq!(t.poll_timeout(), Some(at + Duration::from_secs(5)), "Timer K = T4 over UDP");
    t.handle_timeout(at + Duration::from_secs(5));
    assert!(t.is_terminated());

    let mut t = ClientTransaction::new(base, req.clone(), true, Timers::default()).unwrap();
    t.handle_response(at, response_to(&req, 200));
    assert!(t.is_terminated(), "Timer K = 0 over TCP");
}

#[test]
fn invite_rejected_is_acked_on_the_same_branch_and_reacked_on_retransmission() {
    let base = Instant::now();
    let invite = request("INVITE", "z9hG4bK-5");
    let mut t = ClientTransaction::new(base, invite.clone(), false, Timers::default()).unwrap();
    while t.poll_output().is_some() {}
    t.handle_response(base + T1, response_to(&invite, 180));
    assert_eq!(t.state(), ClientState::Proceeding);
    let _ = t.poll_output();
    // No more INVITE retransmissions once a provisional arrived (Timer A stopped).
    assert_eq!(t.poll_timeout(), Some(base + Duration::from_secs(32)), "only Timer B left");

    let busy = response_to(&invite, 486);
    t.handle_response(base + 2 * T1, busy.clone());
    let Some(ClientOutput::Transmit(SipMessage::Request(ack))) = t.poll_output() else { panic!("ACK first") };
    assert_eq!(ack.method, rsip::Method::Ack);
    assert_eq!(agent_helper_sip::message::branch(&ack).unwrap(), "z9hG4bK-5");
    assert_eq!(agent_helper_sip::message::cseq(&ack).unwrap(), (1, rsip::Method::Ack));
    let text = ack.to_string();
    assert!(text.contains("tag=b2"), "To tag from the response: {text}");
    assert!(text.contains("Route: <sip:proxy.example.com;lr>"), "{text}");
    assert!(matches!(t.poll_output(), Some(ClientOutput::Response(r)) if r.status_code.code() == 486));
    assert_eq!(t.state(), ClientState::Completed);

    t.handle_response(base + 3 * T1, busy);
    assert_eq!(t.poll_output(), Some(ClientOutput::Transmit(SipMessage::Request(ack))));
    // Timer D: 32 s over UDP.
    t.handle_timeout(base + 2 * T1 + Duration::from_secs(32));
    assert!(t.is_terminated());
}

#[test]
fn invite_accepted_passes_2xx_retransmissions_to_the_tu_until_timer_m() {
    let base = Instant::now();
    let invite = request("INVITE", "z9hG4bK-6");
    let mut t = ClientTransaction::new(base, invite.clone(), false, Timers::default()).unwrap();
    while t.poll_output().is_some() {}
    let ok = response_to(&invite, 200);
    t.handle_response(base + T1, ok.clone());
    assert_eq!(t.state(), ClientState::Accepted);
    assert_eq!(t.poll_output(), Some(ClientOutput::Response(ok.clone())));
    t.handle_response(base + 2 * T1, ok.clone());
    assert_eq!(t.poll_output(), Some(ClientOutput::Response(ok)), "the TU ACKs each 2xx");
    assert_eq!(t.poll_timeout(), Some(base + T1 + 64 * T1));
    t.handle_timeout(base + T1 + 64 * T1);
    assert!(t.is_terminated());
}

fn run_server(t: &mut ServerTransaction, base: Instant, until: Duration) -> (Vec<u64>, Vec<ServerOutput>) {
    let mut sent = Vec::new();
    let mut other = Vec::new();
    let mut drain = |t: &mut ServerTransaction, at: Instant| {
        while let Some(o) = t.poll_output() {
            match o {
                ServerOutput::Transmit(_) => sent.push((at - base).as_millis() as u64),
                o => other.push(o),
            }
        }
    };
    drain(t, base);
    while let Some(at) = t.poll_timeout() {
        if at > base + until {
            break;
        }
        t.handle_timeout(at);
        drain(t, at);
    }
    (sent, other)
}

#[test]
fn server_invite_sends_trying_and_repeats_the_last_response_to_retransmissions() {
    let base = Instant::now();
    let invite = request("INVITE", "z9hG4bK-7");
    let mut t = ServerTransaction::new(base, invite.clone(), false, Timers::default()).unwrap();
    let Some(ServerOutput::Transmit(SipMessage::Response(trying))) = t.poll_output() else { panic!("100 first") };
    assert_eq!(trying.status_code.code(), 100);
    t.send_response(base, response_to(&invite, 180)).unwrap();
    let ringing = t.poll_output();
    t.handle_request(base + T1, invite.clone());
    assert_eq!(t.poll_output(), ringing, "retransmitted INVITE gets the last provisional");
}

#[test]
fn server_invite_rejection_retransmits_with_timer_g_until_timer_h() {
    let base = Instant::now();
    let invite = request("INVITE", "z9hG4bK-8");
    let mut t = ServerTransaction::new(base, invite.clone(), false, Timers::default()).unwrap();
    while t.poll_output().is_some() {}
    t.send_response(base, response_to(&invite, 486)).unwrap();
    assert_eq!(t.state(), ServerState::Completed);
    let (sent, other) = run_server(&mut t, base, Duration::from_secs(60));
    // Sent at 0, then Timer G: 0.5, 1, 2, 4, 4 … until Timer H (32 s) gives up.
    assert_eq!(sent, [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
    assert_eq!(other, [ServerOutput::AckTimeout]);
    assert!(t.is_terminated());
}

#[test]
fn server_invite_ack_confirms_and_timer_i_ends_it() {
    let base = Instant::now();
    let invite = request("INVITE", "z9hG4bK-9");
    let mut t = ServerTransaction::new(base, invite.clone(), false, Timers::default()).unwrap();
    t.send_response(base, response_to(&invite, 603)).unwrap();
    while t.poll_output().is_some() {}
    let ack = agent_helper_sip::message::ack_for(&invite, &response_to(&invite, 603)).unwrap();
    assert_eq!(TransactionKey::for_server(&ack).unwrap(), TransactionKey::for_server(&invite).unwrap());
    t.handle_request(base + T1, ack);
    assert_eq!(t.state(), ServerState::Confirmed);
    assert_eq!(t.poll_timeout(), Some(base + T1 + Duration::from_secs(5)), "Timer I = T4");
    t.handle_request(base + 2 * T1, invite.clone());
    assert_eq!(t.poll_output(), None, "absorbed in Confirmed");
    t.handle_timeout(base + T1 + Duration::from_secs(5));
    assert!(t.is_terminated());
}

#[test]
fn server_non_invite_completes_and_ends_after_timer_j_or_at_once_over_tcp() {
    let base = Instant::now();
    let reg = request("REGISTER", "z9hG4bK-10");
    let mut t = ServerTransaction::new(base, reg.clone(), false, Timers::default()).unwrap();
    assert_eq!(t.poll_output(), None, "no automatic 100 for non-INVITE");
    t.handle_request(base + T1, reg.clone());
    assert_eq!(t.poll_output(), None, "absorbed in Trying");
    t.send_response(base + T1, response_to(&reg, 200)).unwrap();
    let ok = t.poll_output();
    t.handle_request(base + 2 * T1, reg.clone());
    assert_eq!(t.poll_output(), ok);
    assert!(matches!(t.send_response(base, response_to(&reg, 500)), Err(TransactionError::WrongState { .. })));
    t.handle_timeout(base + T1 + 64 * T1);
    assert!(t.is_terminated());

    let mut t = ServerTransaction::new(base, reg.clone(), true, Timers::default()).unwrap();
    t.send_response(base, response_to(&reg, 200)).unwrap();
    assert!(t.is_terminated());
}

#[test]
fn keys_match_responses_to_client_transactions_by_branch_and_method() {
    let invite = request("INVITE", "z9hG4bK-11");
    let resp = response_to(&invite, 180);
    assert_eq!(TransactionKey::for_response(&resp).unwrap(), TransactionKey::for_client(&invite).unwrap());
    let cancel = request("CANCEL", "z9hG4bK-11");
    assert_ne!(TransactionKey::for_client(&cancel).unwrap(), TransactionKey::for_client(&invite).unwrap());
}

#[test]
fn messages_without_a_usable_branch_or_cseq_are_refused_not_panicked_on() {
    let base = Instant::now();
    let old_style = request("OPTIONS", "1234");
    assert!(ClientTransaction::new(base, old_style, false, Timers::default()).is_err());
    let no_cseq = Request::try_from(
        "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap();
    assert!(ServerTransaction::new(base, no_cseq, false, Timers::default()).is_err());
}
