//! A peer's SDP body: parsed, and answered when it parses.
#![no_main]

use agent_helper_sip::sdp::{self, AudioCodec, Direction, LocalMedia};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(remote) = sdp::parse(data) else { return };
    let local = LocalMedia {
        address: "127.0.0.1".parse().unwrap(),
        rtp_port: 4000,
        codecs: vec![AudioCodec::new(0, "PCMU", 8000, 1), AudioCodec::new(8, "PCMA", 8000, 1)],
        telephone_event: 101,
        direction: Direction::SendRecv,
        session_id: 1,
        version: 1,
        rtcp_port: None,
        srtp: agent_helper_sip::sdp::SrtpPolicy::Optional,
        keys: Vec::new(),
        opus_dtx: true,
        ptime: 20,
    };
    let _ = sdp::answer(&local, &remote);
    let _ = sdp::accept_answer(&local, &remote);
});
