//! One datagram from the network through everything the phone does with it:
//! parsing, the §8.2 checks, transaction keys, a server transaction, an
//! inbound call (SDP offer, Replaces, Session-Expires included), a client
//! transaction's response path and what keep-alives read from a response.
#![no_main]

use std::time::{Duration, Instant};

use agent_helper_sip::call::{Call, Endpoint};
use agent_helper_sip::ids::SequentialIds;
use agent_helper_sip::registration::Transport;
use agent_helper_sip::sdp::{AudioCodec, Direction, LocalMedia};
use agent_helper_sip::transaction::{ClientTransaction, ServerTransaction, Timers, TransactionKey};
use agent_helper_sip::replaces::Replaces;
use agent_helper_sip::{checks, keepalive, message, session_timer};
use libfuzzer_sys::fuzz_target;
use rsip::SipMessage;

const INVITE: &str = "INVITE sip:bob@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKf\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: f\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";

fn endpoint() -> Endpoint {
    Endpoint {
        username: "agent".into(),
        domain: "h".into(),
        display_name: None,
        local: "127.0.0.1:5070".into(),
        transport: Transport::Udp,
        user_agent: "fuzz".into(),
        timers: Timers::default(),
        session_expires: 1800,
        avoid_two_way_hold: true,
    }
}

fn media() -> LocalMedia {
    LocalMedia {
        address: "127.0.0.1".parse().unwrap(),
        rtp_port: 4000,
        codecs: vec![AudioCodec::new(0, "PCMU", 8000, 1), AudioCodec::new(111, "opus", 48000, 2)],
        telephone_event: 101,
        direction: Direction::SendRecv,
        session_id: 1,
        version: 1,
        rtcp_port: None,
        srtp: agent_helper_sip::sdp::SrtpPolicy::Optional,
        keys: Vec::new(),
        opus_dtx: true,
        ptime: 20,
    }
}

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let Ok(msg) = SipMessage::try_from(data) else { return };
    match msg {
        SipMessage::Request(req) => {
            let _ = checks::check_request(&req);
            let _ = session_timer::answer_for(&req, 600);
            for h in req.headers.iter() {
                if let rsip::Header::Other(_, value) = h {
                    let _ = Replaces::parse(value);
                    let _ = Replaces::from_uri(value);
                }
            }
            let _ = TransactionKey::for_server(&req);
            let _ = message::response_to(&req, rsip::StatusCode::OK, Some("t"));
            if let Ok(mut t) = ServerTransaction::new(now, req.clone(), false, Timers::default()) {
                t.handle_request(now, req.clone());
                let _ = t.send_response(now, message::response_to(&req, rsip::StatusCode::from(486), None).unwrap_or_default());
                while t.poll_output().is_some() {}
                t.handle_timeout(now + Duration::from_secs(40));
            }
            if let Ok(mut call) = Call::incoming(now, endpoint(), req.clone(), media(), None, Box::new(SequentialIds::default())) {
                let _ = call.answer(now);
                call.handle_request(now, req);
                while call.poll_output().is_some() {}
                call.handle_timeout(now + Duration::from_secs(40));
            }
        }
        SipMessage::Response(resp) => {
            let _ = TransactionKey::for_response(&resp);
            let _ = keepalive::observed_address(&resp);
            let _ = session_timer::from_answer(now, &resp, true);
            let invite = rsip::Request::try_from(INVITE).expect("fixed request parses");
            let mut t = ClientTransaction::new(now, invite, false, Timers::default()).expect("fixed request is valid");
            t.handle_response(now, resp);
            while t.poll_output().is_some() {}
        }
    }
});
