//! One datagram on a call's media port: RTP/RTCP demultiplexing, RTP parsing
//! with its length checks, telephone-events, and the jitter buffer fed with
//! whatever timestamps and lengths the packet claims; the same datagram as
//! SRTP of every suite (it must fail authentication, never panic), and as
//! RTCP (a compound packet walked report by report); the payload decoded by
//! every codec, and a gap concealed into it.
#![no_main]

use std::time::{Duration, Instant};

use agent_helper_media::codec::Codec;
use agent_helper_media::dtmf::TelephoneEvent;
use agent_helper_media::jitter::JitterBuffer;
use agent_helper_media::rtcp::Rtcp;
use agent_helper_media::rtp;
use agent_helper_media::srtp::{Session, Suite};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Rtcp::new(1, "fuzz").receive(Instant::now(), std::time::SystemTime::now(), data);
    let _ = rtp::classify(data);
    let _ = TelephoneEvent::parse(data);
    if let Ok(p) = rtp::parse(data) {
        let now = Instant::now();
        let mut jb = JitterBuffer::new(8000, Duration::from_millis(20), Duration::from_millis(300));
        jb.push(now, p.timestamp, p.payload.len() as u32, p.payload.to_vec());
        jb.push(now, p.timestamp.wrapping_add(160), 160, vec![0; 160]);
        let _ = jb.pop(now + Duration::from_millis(400));
        let _ = jb.peek_next();
        let mut pcm = vec![];
        for name in ["PCMU", "G722", "opus"] {
            if let Ok(mut codec) = Codec::for_name(name) {
                codec.decode(&p.payload, &mut pcm);
                codec.conceal(Some(&p.payload), codec.frame(), &mut pcm);
            }
        }
    }
    for suite in Suite::ALL {
        let keying = vec![7u8; suite.keying_len()];
        if let Ok(mut s) = Session::new(suite, &keying, &keying) {
            let _ = s.unprotect(data);
        }
    }
});
