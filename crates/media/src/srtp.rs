//! SRTP (RFC 3711) for a call whose keys were exchanged in SDP (SDES,
//! RFC 4568): one context protects what we send with our key, another
//! checks and decrypts what arrives with the peer's. The ciphers are
//! webrtc-rs's `rtc-srtp` (ring underneath).
//!
//! A forged packet must not cost memory: `rtc-srtp` keeps state for every
//! SSRC it is shown, so packets from an SSRC that has not yet authenticated
//! are tried on a scratch context that is thrown away when it fills up; only
//! SSRCs proven by a valid tag reach the call's receiving context.

use std::collections::HashSet;

use rtc_srtp::context::Context;
use rtc_srtp::protection_profile::ProtectionProfile;

/// Replay window, in packets (RFC 3711 §3.3.2 asks for at least 64).
const REPLAY_WINDOW: usize = 128;
/// Unproven SSRCs the scratch context may hold before it is renewed.
const SCRATCH_SSRCS: usize = 16;
/// SSRCs a call may prove (a peer changes SSRC on a transfer or re-INVITE, rarely more).
const MAX_SSRCS: usize = 32;

/// The SRTP crypto suites we offer and accept, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
    AeadAes128Gcm,
}

impl Suite {
    pub const ALL: [Suite; 3] = [Suite::AesCm128HmacSha1_80, Suite::AeadAes128Gcm, Suite::AesCm128HmacSha1_32];

    /// The name in SDP (RFC 4568 §6.2, RFC 7714 §12).
    pub fn sdp_name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            Suite::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    pub fn from_sdp_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.sdp_name().eq_ignore_ascii_case(name))
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            Suite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            Suite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
            Suite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        }
    }

    /// Master key length, in bytes.
    pub fn key_len(self) -> usize {
        self.profile().key_len()
    }

    /// Master key and salt together, as SDES carries them.
    pub fn keying_len(self) -> usize {
        self.profile().key_len() + self.profile().salt_len()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    #[error("SRTP keying material for {suite} must be {expected} bytes, got {got}")]
    KeyLength { suite: &'static str, expected: usize, got: usize },
    #[error("SRTP: {0}")]
    Crypto(String),
    /// A tag that does not verify, a replayed or truncated packet.
    #[error("SRTP packet rejected: {0}")]
    Rejected(String),
}

/// One call's SRTP: ours to protect, theirs to check.
pub struct Session {
    suite: Suite,
    remote_keying: Vec<u8>,
    send: Context,
    receive: Context,
    /// SSRCs that authenticated: only these reach `receive`.
    proven: HashSet<u32>,
    scratch: Option<Context>,
    scratch_ssrcs: usize,
}

impl Session {
    /// `local` and `remote` are master key ‖ master salt, as in `a=crypto`.
    pub fn new(suite: Suite, local: &[u8], remote: &[u8]) -> Result<Session, SrtpError> {
        Ok(Session {
            suite,
            remote_keying: remote.to_vec(),
            send: context(suite, local, false)?,
            receive: context(suite, remote, true)?,
            proven: HashSet::new(),
            scratch: None,
            scratch_ssrcs: 0,
        })
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// An RTP packet made ready to send.
    pub fn protect(&mut self, rtp: &[u8]) -> Result<Vec<u8>, SrtpError> {
        self.send.encrypt_rtp(rtp).map(|b| b.to_vec()).map_err(|e| SrtpError::Crypto(e.to_string()))
    }

    /// An SRTP packet from the network, checked and decrypted.
    pub fn unprotect(&mut self, srtp: &[u8]) -> Result<Vec<u8>, SrtpError> {
        self.unprotect_with(srtp, 8, |c, p| c.decrypt_rtp(p))
    }

    /// An RTCP packet made ready to send (SRTCP).
    pub fn protect_rtcp(&mut self, rtcp: &[u8]) -> Result<Vec<u8>, SrtpError> {
        self.send.encrypt_rtcp(rtcp).map(|b| b.to_vec()).map_err(|e| SrtpError::Crypto(e.to_string()))
    }

    /// An SRTCP packet from the network, checked and decrypted.
    pub fn unprotect_rtcp(&mut self, srtcp: &[u8]) -> Result<Vec<u8>, SrtpError> {
        self.unprotect_with(srtcp, 4, |c, p| c.decrypt_rtcp(p))
    }

    /// Decrypts with the receiving context once the packet's SSRC (at
    /// `ssrc_at`) has proven itself on the scratch context.
    fn unprotect_with(
        &mut self,
        packet: &[u8],
        ssrc_at: usize,
        decrypt: impl Fn(&mut Context, &[u8]) -> rtc_shared::error::Result<bytes::BytesMut>,
    ) -> Result<Vec<u8>, SrtpError> {
        let reject = |e: rtc_shared::error::Error| SrtpError::Rejected(e.to_string());
        let Some(ssrc) = packet.get(ssrc_at..ssrc_at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])) else {
            return Err(SrtpError::Rejected("shorter than a header".into()));
        };
        if !self.proven.contains(&ssrc) {
            if self.proven.len() >= MAX_SSRCS {
                return Err(SrtpError::Rejected("too many SSRCs".into()));
            }
            if self.scratch.is_none() || self.scratch_ssrcs >= SCRATCH_SSRCS {
                self.scratch = Some(context(self.suite, &self.remote_keying, false)?);
                self.scratch_ssrcs = 0;
            }
            self.scratch_ssrcs += 1;
            if let Some(scratch) = &mut self.scratch {
                decrypt(scratch, packet).map_err(reject)?;
            }
            self.proven.insert(ssrc);
        }
        decrypt(&mut self.receive, packet).map(|b| b.to_vec()).map_err(reject)
    }
}

fn context(suite: Suite, keying: &[u8], replay: bool) -> Result<Context, SrtpError> {
    let key_len = suite.key_len();
    if keying.len() != suite.keying_len() {
        return Err(SrtpError::KeyLength { suite: suite.sdp_name(), expected: suite.keying_len(), got: keying.len() });
    }
    let provider = rtc_crypto::default_provider().map_err(|e| SrtpError::Crypto(e.to_string()))?;
    let window = replay.then(|| rtc_srtp::option::srtp_replay_protection(REPLAY_WINDOW));
    let rtcp_window = replay.then(|| rtc_srtp::option::srtcp_replay_protection(REPLAY_WINDOW));
    Context::new(&keying[..key_len], &keying[key_len..], suite.profile(), window, rtcp_window, provider.crypto())
        .map_err(|e| SrtpError::Crypto(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::RtpSender;

    fn keying(suite: Suite, seed: u8) -> Vec<u8> {
        (0..suite.keying_len()).map(|i| seed.wrapping_mul(31).wrapping_add(i as u8)).collect()
    }

    #[test]
    fn every_suite_round_trips_and_hides_the_payload() {
        for suite in Suite::ALL {
            let (a, b) = (keying(suite, 1), keying(suite, 2));
            let mut alice = Session::new(suite, &a, &b).unwrap();
            let mut bob = Session::new(suite, &b, &a).unwrap();
            let mut sender = RtpSender::new(0x1234_5678, 0, 100, 1000);
            for n in 0..5u8 {
                let rtp = sender.packet(&[n; 160], 160, false);
                let wire = alice.protect(&rtp).unwrap();
                assert!(!wire.windows(160).any(|w| w == [n; 160]), "{suite:?}: payload in the clear");
                assert_eq!(bob.unprotect(&wire).unwrap(), rtp, "{suite:?}");
            }
        }
    }

    #[test]
    fn rtcp_is_protected_too() {
        let suite = Suite::AesCm128HmacSha1_80;
        let (a, b) = (keying(suite, 1), keying(suite, 2));
        let mut alice = Session::new(suite, &a, &b).unwrap();
        let mut bob = Session::new(suite, &b, &a).unwrap();
        let report = crate::rtcp::Rtcp::new(0xABCD, "alice").report(
            std::time::Instant::now(),
            std::time::SystemTime::now(),
            Some(crate::rtcp::Sent { packets: 1, octets: 160, rtp_timestamp: 160 }),
            None,
        );
        let wire = alice.protect_rtcp(&report).unwrap();
        assert_ne!(wire[8..], report[8..], "encrypted after the first header");
        assert_eq!(bob.unprotect_rtcp(&wire).unwrap(), report);
        let mut forged = wire.clone();
        forged[10] ^= 4;
        assert!(bob.unprotect_rtcp(&forged).is_err());
        assert!(bob.unprotect_rtcp(&wire).is_err(), "replayed");
    }

    #[test]
    fn bad_tags_replays_truncation_and_wrong_keys_are_rejected() {
        let suite = Suite::AesCm128HmacSha1_80;
        let (a, b) = (keying(suite, 1), keying(suite, 2));
        let mut alice = Session::new(suite, &a, &b).unwrap();
        let mut bob = Session::new(suite, &b, &a).unwrap();
        let mut sender = RtpSender::new(7, 0, 1, 1);
        let wire = alice.protect(&sender.packet(&[9; 160], 160, false)).unwrap();
        let mut forged = wire.clone();
        *forged.last_mut().unwrap() ^= 1;
        assert!(matches!(bob.unprotect(&forged), Err(SrtpError::Rejected(_))), "bad tag");
        assert!(bob.unprotect(&wire[..wire.len() - 4]).is_err(), "truncated");
        assert!(bob.unprotect(&wire[..6]).is_err(), "shorter than a header");
        bob.unprotect(&wire).unwrap();
        assert!(bob.unprotect(&wire).is_err(), "replayed");
        let mut stranger = Session::new(suite, &keying(suite, 3), &a).unwrap();
        let other = stranger.protect(&sender.packet(&[9; 160], 160, false)).unwrap();
        assert!(bob.unprotect(&other).is_err(), "wrong key");
        assert!(matches!(Session::new(suite, &a[..10], &b), Err(SrtpError::KeyLength { .. })));
    }

    #[test]
    fn forged_packets_from_many_ssrcs_hold_no_state() {
        let suite = Suite::AesCm128HmacSha1_80;
        let (a, b) = (keying(suite, 1), keying(suite, 2));
        let mut bob = Session::new(suite, &b, &a).unwrap();
        for ssrc in 0..10_000u32 {
            let mut forged = RtpSender::new(ssrc, 0, 1, 1).packet(&[0; 170], 160, false);
            forged.extend_from_slice(&[0; 10]);
            assert!(bob.unprotect(&forged).is_err());
        }
        assert!(bob.proven.is_empty());
        assert!(bob.scratch_ssrcs <= SCRATCH_SSRCS);
        // The real sender still gets through.
        let mut alice = Session::new(suite, &a, &b).unwrap();
        let rtp = RtpSender::new(42, 0, 1, 1).packet(&[5; 160], 160, false);
        assert_eq!(bob.unprotect(&alice.protect(&rtp).unwrap()).unwrap(), rtp);
    }
}
