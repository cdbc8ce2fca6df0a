//! Malformed RTP, RTCP and telephone-events from the network: truncated,
//! wrong version, huge CSRC counts and extension lengths, bad padding, random
//! bytes. Everything is dropped with a reason or parsed, never a panic, and
//! the jitter buffer stays bounded whatever arrives. A deterministic walk over
//! mutations (the fuzz target in crates/sip/fuzz goes further, not in CI).

use std::time::{Duration, Instant};

use agent_helper_media::dtmf::TelephoneEvent;
use agent_helper_media::jitter::JitterBuffer;
use agent_helper_media::rtp::{self, RtpSender};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn thirty_thousand_mutated_packets_never_panic_and_stay_bounded() {
    let mut sender = RtpSender::new(0x1234_5678, 0, 100, 1000);
    let seeds = [
        sender.packet(&[0xFF; 160], 160, true),
        sender.packet_at(
            101,
            2000,
            &TelephoneEvent { code: 5, end: false, volume: 10, duration: 160 }.to_bytes(),
            true,
        ),
        vec![0x81, 200, 0, 6, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(8000, Duration::from_millis(20), Duration::from_millis(300));
    let (mut parsed, mut refused) = (0, 0);
    for i in 0..30_000u32 {
        let mut p = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(p.len() + 1);
            match rng.below(5) {
                0 => p.truncate(at),
                1 if at < p.len() => p[at] = rng.next() as u8,
                // The first byte carries version, padding, extension and the CSRC count.
                2 if !p.is_empty() => p[0] = rng.next() as u8,
                3 => p.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
                _ => p.splice(at..at, (0..rng.below(8)).map(|_| 0xFF)).for_each(drop),
            }
        }
        let _ = rtp::classify(&p);
        let _ = TelephoneEvent::parse(&p);
        match rtp::parse(&p) {
            Ok(pkt) => {
                parsed += 1;
                // Whatever timestamps and lengths a sender claims.
                jb.push(
                    t0 + Duration::from_millis(u64::from(i)),
                    pkt.timestamp,
                    pkt.payload.len() as u32,
                    pkt.payload.to_vec(),
                );
                let _ = jb.pop(t0 + Duration::from_millis(u64::from(i)));
            }
            Err(_) => refused += 1,
        }
    }
    assert!(parsed > 1000 && refused > 1000, "both paths exercised: {parsed} parsed, {refused} refused");
    assert!(jb.depth() <= Duration::from_secs(600), "bounded: {:?}", jb.depth());
}

/// SRTP from the network: every mutation of a protected packet (a flipped
/// bit in the header, payload or tag, truncation, bytes added) fails
/// authentication and is dropped; the untouched packets still decrypt.
#[test]
fn mutated_srtp_packets_are_rejected_and_the_real_ones_still_pass() {
    use agent_helper_media::srtp::{Session, Suite};
    for suite in Suite::ALL {
        let (a, b) = (vec![3u8; suite.keying_len()], vec![4u8; suite.keying_len()]);
        let mut alice = Session::new(suite, &a, &b).unwrap();
        let mut bob = Session::new(suite, &b, &a).unwrap();
        let mut sender = RtpSender::new(0x1234_5678, 0, 100, 1000);
        let mut rng = Rng(0x51_7CC1_B727_220A);
        for _ in 0..2_000 {
            let real = alice.protect(&sender.packet(&[0x55; 160], 160, false)).unwrap();
            let mut p = real.clone();
            let at = rng.below(p.len());
            match rng.below(3) {
                0 => p.truncate(at),
                1 => p[at] ^= 1 << rng.below(8),
                _ => p.extend((0..1 + rng.below(16)).map(|_| rng.next() as u8)),
            }
            assert!(bob.unprotect(&p).is_err(), "{suite:?}: a mutated packet passed");
            assert_eq!(bob.unprotect(&real).map(|r| r.len()), Ok(12 + 160), "{suite:?}");
        }
    }
}

/// Payloads as a hostile sender makes them, through every codec: any length
/// from nothing to a jumbo datagram, any bytes, concealment asked for any
/// length with any "next" packet. Nothing panics, a concealed frame is as
/// long as asked, and what a payload decodes to is bounded by its length.
#[test]
fn any_payload_decodes_and_any_gap_conceals_in_every_codec() {
    use agent_helper_media::codec::Codec;
    let mut rng = Rng(0x0BAD_C0DE_1234_5678);
    for name in ["PCMU", "PCMA", "G722", "opus"] {
        let mut codec = Codec::for_name(name).unwrap();
        let mut pcm = vec![];
        for _ in 0..3000 {
            let len = [0, 1, 2, 3, 159, 160, 161, 320, 1500][rng.below(9)];
            let payload: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if rng.below(2) == 0 {
                codec.decode(&payload, &mut pcm);
                // At most 120 ms of Opus, two samples per G.722 byte.
                assert!(pcm.len() <= (2 * len).max(5760), "{name}: {} samples from {len} bytes", pcm.len());
            } else {
                let samples = rng.below(5761);
                let next = (rng.below(2) == 0).then_some(payload.as_slice());
                codec.conceal(next, samples, &mut pcm);
                assert_eq!(pcm.len(), samples, "{name}: concealed {} of {samples}", pcm.len());
            }
        }
    }
}
