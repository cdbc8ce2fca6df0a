//! Mutated and truncated SIP messages from the network: parsing and framing
//! must return errors, never panic. A deterministic pseudo-random walk over
//! mutations of real messages (no external fuzzer needed to run in CI).

use agent_helper_sip::framing::StreamFramer;
use agent_helper_sip::message;

const SEEDS: &[&str] = &[
    "REGISTER sip:pbx.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK776;rport\r\nMax-Forwards: 70\r\nFrom: <sip:alice@pbx.example.com>;tag=a1\r\nTo: <sip:alice@pbx.example.com>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@10.0.0.5:5070;transport=udp>;expires=300\r\nContent-Length: 0\r\n\r\n",
    "SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK776;rport=5070;received=10.0.0.5\r\nFrom: <sip:alice@pbx.example.com>;tag=a1\r\nTo: <sip:alice@pbx.example.com>;tag=b2\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\nWWW-Authenticate: Digest realm=\"pbx\", nonce=\"abc\", qop=\"auth\"\r\nContent-Length: 0\r\n\r\n",
    "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h:5060;branch=z9hG4bKx\r\nFrom: \"Bob\" <sip:bob@x>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: y\r\nCSeq: 7 INVITE\r\nContent-Type: application/sdp\r\nContent-Length: 10\r\n\r\nv=0\r\no=- 1\r\n",
];

/// xorshift64*: reproducible, no dependency.
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

const INTERESTING: &[&[u8]] = &[
    b"\r\n",
    b":",
    b";",
    b"<",
    b">",
    b"\"",
    b"\\",
    b"%",
    b"\0",
    b"\xff",
    b"SIP/2.0",
    b"99999999999999999999",
    b"-1",
    b" ",
    b"=",
    b",",
    b"@",
    b"[",
    b"]",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(5) {
            0 => v.truncate(at),
            1 if at < v.len() => v[at] = rng.next() as u8,
            2 => {
                let ins = INTERESTING[rng.below(INTERESTING.len())];
                v.splice(at..at, ins.iter().copied());
            }
            3 if at < v.len() => {
                let end = (at + rng.below(16)).min(v.len());
                v.drain(at..end);
            }
            _ => {
                let from = rng.below(v.len());
                let end = (from + rng.below(32)).min(v.len());
                let chunk = v[from..end].to_vec();
                v.splice(at..at, chunk);
            }
        }
    }
    v
}

#[test]
fn mutated_messages_never_panic_the_parser_or_the_transaction_helpers() {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut parsed = 0;
    for i in 0..30_000 {
        let seed = SEEDS[i % SEEDS.len()].as_bytes();
        let input = mutate(&mut rng, seed);
        let outcome = std::panic::catch_unwind(|| {
            if let Ok(m) = rsip::SipMessage::try_from(input.as_slice()) {
                // What the stack reads from every message must not panic either.
                match &m {
                    rsip::SipMessage::Request(r) => {
                        let _ = message::branch(r);
                        let _ = message::cseq(r);
                        let _ = message::response_to(r, rsip::StatusCode::OK, Some("t"));
                    }
                    rsip::SipMessage::Response(r) => {
                        let _ = message::branch(r);
                        let _ = message::cseq(r);
                    }
                }
                let _ = m.to_string();
                return true;
            }
            false
        });
        match outcome {
            Ok(true) => parsed += 1,
            Ok(false) => {}
            Err(_) => panic!("panic on input {:?}", String::from_utf8_lossy(&input)),
        }
        let mut framer = StreamFramer::default();
        framer.push(&input);
        while let Ok(Some(_)) = framer.poll() {}
    }
    assert!(parsed > 1000, "the mutations should still leave many parsable messages ({parsed})");
}
