//! RTCP for one call (RFC 3550 §6): every report interval we send a sender
//! report (or a receiver report while we send nothing) about the peer's
//! stream, with our CNAME; from the peer's reports about our stream we learn
//! the round-trip time (§6.4.1: arrival − LSR − DLSR) and the loss and
//! jitter it sees. When the call's media ends, the last compound packet
//! carries a BYE for our source (§6.3.7), and a peer's BYE is noted.
//! Packets are built and read with webrtc-rs's `rtc-rtcp`; time comes in
//! as an argument.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rtc_rtcp::goodbye::Goodbye;
use rtc_rtcp::packet::Packet;
use rtc_rtcp::receiver_report::ReceiverReport;
use rtc_rtcp::reception_report::ReceptionReport;
use rtc_rtcp::sender_report::SenderReport;
use rtc_rtcp::source_description::{SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem};

/// Seconds from the NTP epoch (1900) to the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
/// Longest RTCP datagram we read (a compound packet is a few hundred bytes).
pub const MAX_RTCP: usize = 1500;

/// What we sent, for a sender report.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub packets: u32,
    pub octets: u32,
    /// The RTP timestamp that corresponds to the report's wallclock.
    pub rtp_timestamp: u32,
}

/// What we received from the peer's stream, for the report block.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub ssrc: u32,
    pub fraction_lost: u8,
    pub total_lost: u32,
    pub extended_highest: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
}

/// How the peer says it receives our stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerView {
    pub fraction_lost: f64,
    pub total_lost: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RtcpError {
    #[error("RTCP datagram over {MAX_RTCP} bytes")]
    TooLong,
    #[error("malformed RTCP: {0}")]
    Malformed(String),
}

pub struct Rtcp {
    ssrc: u32,
    cname: Bytes,
    /// The middle 32 bits of the NTP time of the peer's last SR, and when it came.
    last_sr: Option<(u32, Instant)>,
    rtt: Option<Duration>,
    peer_view: Option<PeerView>,
    reports_received: u64,
    /// Sources the peer said goodbye for (RTCP BYE), the latest last.
    left: Vec<u32>,
}

/// Sources said goodbye for that we keep at most (one BYE names up to 31).
const MAX_LEFT: usize = 31;

/// A wallclock as a 64-bit NTP timestamp.
pub fn ntp(wallclock: SystemTime) -> u64 {
    let since = wallclock.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + NTP_UNIX_OFFSET;
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

fn middle32(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

impl Rtcp {
    pub fn new(ssrc: u32, cname: &str) -> Rtcp {
        Rtcp {
            ssrc,
            cname: Bytes::copy_from_slice(cname.as_bytes()),
            last_sr: None,
            rtt: None,
            peer_view: None,
            reports_received: 0,
            left: Vec::new(),
        }
    }

    /// Whether the peer said goodbye (RTCP BYE) for `ssrc`: its stream ended.
    pub fn peer_left(&self, ssrc: u32) -> bool {
        self.left.contains(&ssrc)
    }

    /// The latest round-trip time, from the peer's report on our stream.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// The loss and jitter the peer last reported for our stream.
    pub fn peer_view(&self) -> Option<PeerView> {
        self.peer_view
    }

    pub fn reports_received(&self) -> u64 {
        self.reports_received
    }

    /// Our compound report now: SR when we have sent (else RR), with a
    /// block about the peer's stream once it has one, then SDES CNAME.
    pub fn report(
        &self,
        now: Instant,
        wallclock: SystemTime,
        sent: Option<Sent>,
        received: Option<Received>,
    ) -> Vec<u8> {
        let block = received.map(|r| {
            // DLSR: how long since the peer's last SR, in 1/65536 s.
            let (lsr, dlsr) = match self.last_sr {
                Some((lsr, at)) => (lsr, (now.saturating_duration_since(at).as_secs_f64() * 65536.0) as u32),
                None => (0, 0),
            };
            ReceptionReport {
                ssrc: r.ssrc,
                fraction_lost: r.fraction_lost,
                total_lost: r.total_lost.min(0x7F_FFFF),
                last_sequence_number: r.extended_highest,
                jitter: r.jitter,
                last_sender_report: lsr,
                delay: dlsr,
            }
        });
        let reports: Vec<ReceptionReport> = block.into_iter().collect();
        let first: Box<dyn Packet> = match sent {
            Some(s) => Box::new(SenderReport {
                ssrc: self.ssrc,
                ntp_time: ntp(wallclock),
                rtp_time: s.rtp_timestamp,
                packet_count: s.packets,
                octet_count: s.octets,
                reports,
                profile_extensions: Bytes::new(),
            }),
            None => Box::new(ReceiverReport { ssrc: self.ssrc, reports, profile_extensions: Bytes::new() }),
        };
        let sdes: Box<dyn Packet> = Box::new(SourceDescription {
            chunks: vec![SourceDescriptionChunk {
                source: self.ssrc,
                items: vec![SourceDescriptionItem { sdes_type: SdesType::SdesCname, text: self.cname.clone() }],
            }],
        });
        rtc_rtcp::packet::marshal(&[first, sdes]).map(|b| b.to_vec()).unwrap_or_default()
    }

    /// The last compound packet of the call (RFC 3550 §6.3.7): the report
    /// as [`Self::report`] makes it, then a BYE for our source, so the peer
    /// knows the stream ended rather than went quiet or was lost.
    pub fn goodbye(
        &self,
        now: Instant,
        wallclock: SystemTime,
        sent: Option<Sent>,
        received: Option<Received>,
    ) -> Vec<u8> {
        let mut packet = self.report(now, wallclock, sent, received);
        let bye: Box<dyn Packet> = Box::new(Goodbye { sources: vec![self.ssrc], reason: Bytes::new() });
        packet.extend(rtc_rtcp::packet::marshal(&[bye]).map(|b| b.to_vec()).unwrap_or_default());
        packet
    }

    /// A compound RTCP packet from the peer, arrived at `now`.
    pub fn receive(&mut self, now: Instant, wallclock: SystemTime, datagram: &[u8]) -> Result<(), RtcpError> {
        if datagram.len() > MAX_RTCP {
            return Err(RtcpError::TooLong);
        }
        let arrival = middle32(ntp(wallclock));
        for p in reports_in(datagram)? {
            let any = p.as_any();
            if let Some(bye) = any.downcast_ref::<Goodbye>() {
                for &source in &bye.sources {
                    if self.left.contains(&source) {
                        continue;
                    }
                    if self.left.len() == MAX_LEFT {
                        self.left.remove(0);
                    }
                    self.left.push(source);
                }
                continue;
            }
            let (blocks, sr) = if let Some(sr) = any.downcast_ref::<SenderReport>() {
                (&sr.reports, Some(sr))
            } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                (&rr.reports, None)
            } else {
                continue;
            };
            self.reports_received += 1;
            if let Some(sr) = sr {
                self.last_sr = Some((middle32(sr.ntp_time), now));
            }
            for b in blocks.iter().filter(|b| b.ssrc == self.ssrc) {
                self.peer_view = Some(PeerView {
                    fraction_lost: f64::from(b.fraction_lost) / 256.0,
                    total_lost: b.total_lost,
                    jitter: b.jitter,
                });
                if b.last_sender_report != 0 {
                    let rtt = arrival.wrapping_sub(b.last_sender_report).wrapping_sub(b.delay);
                    // A clock step or a forged block gives nonsense: keep under a minute.
                    if rtt < 60 * 65536 {
                        self.rtt = Some(Duration::from_secs_f64(f64::from(rtt) / 65536.0));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether a datagram is plain RTCP from end to end: every header version 2
/// with an RTCP packet type (RFC 5761: 192–223) and the lengths tiling the
/// datagram exactly. SRTCP is never that: after its RTCP come the E-flag and
/// index word and the tag, which the first header's length does not cover.
/// On an SRTP call this tells a peer's unprotected packet (baresip sends a
/// plain APP "PING" to open NAT pinholes) from one that failed its check.
pub fn is_plain_compound(datagram: &[u8]) -> bool {
    let mut rest = datagram;
    while rest.len() >= 4 {
        let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        if rest[0] >> 6 != 2 || !(192..=223).contains(&rest[1]) || len > rest.len() {
            return false;
        }
        rest = &rest[len..];
    }
    rest.is_empty() && !datagram.is_empty()
}

/// The sender and receiver reports and the BYEs of a compound packet. Other
/// packets (SDES, APP, feedback) are stepped over by their length, whatever their
/// content: only a first header that is not RTCP, or a length past the
/// end, makes the datagram malformed.
fn reports_in(datagram: &[u8]) -> Result<Vec<Box<dyn Packet>>, RtcpError> {
    let mut reports = Vec::new();
    let mut rest = datagram;
    let mut first = true;
    while rest.len() >= 4 {
        let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        if rest[0] >> 6 != 2 || len > rest.len() {
            if first {
                return Err(RtcpError::Malformed("not an RTCP header".into()));
            }
            // Trailing bytes after valid packets (seen from baresip after an APP).
            break;
        }
        let (packet, next) = rest.split_at(len);
        let mut buf = packet;
        match packet[1] {
            200 | 201 => {
                let parsed = rtc_rtcp::packet::unmarshal(&mut buf).map_err(|e| RtcpError::Malformed(e.to_string()))?;
                reports.extend(parsed);
            }
            // A BYE that does not parse (a reason running past its packet)
            // costs only itself: the reports beside it are still read.
            203 => reports.extend(rtc_rtcp::packet::unmarshal(&mut buf).unwrap_or_default()),
            _ => {}
        }
        rest = next;
        first = false;
    }
    if first {
        return Err(RtcpError::Malformed("shorter than an RTCP header".into()));
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A compound packet (SR and SDES) from another sender, SSRC 2.
    fn a_sender_report(now: Instant) -> Vec<u8> {
        let sent = Sent { packets: 1, octets: 1, rtp_timestamp: 1 };
        Rtcp::new(2, "y").report(now, SystemTime::now(), Some(sent), None)
    }

    #[test]
    fn round_trip_time_comes_from_the_peers_report_on_our_sender_report() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let (mut alice, mut bob) = (Rtcp::new(1, "alice@host"), Rtcp::new(2, "bob@host"));
        let sent = Sent { packets: 50, octets: 8000, rtp_timestamp: 160 * 50 };
        // Alice's SR reaches Bob 40 ms later.
        let sr = alice.report(t0, wall, Some(sent), None);
        bob.receive(t0 + Duration::from_millis(40), wall + Duration::from_millis(40), &sr).unwrap();
        // Bob holds it 100 ms, then reports on Alice's stream; it arrives 40 ms later.
        let got = Received { ssrc: 1, fraction_lost: 64, total_lost: 3, extended_highest: 70_000, jitter: 80 };
        let rr = bob.report(t0 + Duration::from_millis(140), wall + Duration::from_millis(140), None, Some(got));
        alice.receive(t0 + Duration::from_millis(180), wall + Duration::from_millis(180), &rr).unwrap();
        let rtt = alice.rtt().unwrap().as_secs_f64() * 1000.0;
        assert!((rtt - 80.0).abs() < 1.0, "rtt {rtt} ms");
        assert_eq!(alice.peer_view(), Some(PeerView { fraction_lost: 0.25, total_lost: 3, jitter: 80 }));
        assert_eq!(bob.rtt(), None, "Bob sent no SR: no RTT for him yet");
    }

    #[test]
    fn the_last_packet_says_goodbye_for_our_source_after_the_report() {
        let now = Instant::now();
        let sent = Sent { packets: 3, octets: 480, rtp_timestamp: 480 };
        let got = Received { ssrc: 2, fraction_lost: 0, total_lost: 0, extended_highest: 9, jitter: 4 };
        let last = Rtcp::new(1, "alice@host").goodbye(now, SystemTime::now(), Some(sent), Some(got));
        let packets = rtc_rtcp::packet::unmarshal(&mut &last[..]).unwrap();
        let types: Vec<u8> = packets.iter().map(|p| p.header().packet_type as u8).collect();
        assert_eq!(types, [200, 202, 203], "SR, SDES, then BYE (RFC 3550 §6.1: BYE last)");
        let bye = packets[2].as_any().downcast_ref::<Goodbye>().unwrap();
        assert_eq!(bye.sources, [1]);
        assert!(is_plain_compound(&last));
        // The peer reads the report in it and learns that source 1 left.
        let mut bob = Rtcp::new(2, "bob@host");
        assert!(!bob.peer_left(1));
        bob.receive(now, SystemTime::now(), &last).unwrap();
        assert_eq!(bob.reports_received(), 1);
        assert!(bob.peer_left(1) && !bob.peer_left(2));
        assert!(bob.peer_view().is_some(), "the report before the BYE still counts");
        // A report alone says no goodbye.
        let mut carol = Rtcp::new(2, "carol@host");
        carol
            .receive(now, SystemTime::now(), &Rtcp::new(1, "a").report(now, SystemTime::now(), Some(sent), None))
            .unwrap();
        assert!(!carol.peer_left(1));
    }

    #[test]
    fn a_bye_that_does_not_parse_costs_only_itself() {
        let now = Instant::now();
        // SR + SDES, then a BYE for one source whose reason length runs past its packet.
        let mut compound = a_sender_report(now);
        compound.extend([0x81, 203, 0, 2, 0, 0, 0, 2, 200, b'g', b'o', 0]);
        let mut r = Rtcp::new(1, "x");
        r.receive(now, SystemTime::now(), &compound).unwrap();
        assert_eq!(r.reports_received(), 1);
        assert!(!r.peer_left(2), "the broken BYE is not taken");
        // A BYE naming more sources than we keep keeps the latest.
        let mut many = vec![0x80 | 31, 203, 0, 31];
        for s in 100..131u32 {
            many.extend(s.to_be_bytes());
        }
        let mut twice = many.clone();
        twice[4..]
            .chunks_exact_mut(4)
            .enumerate()
            .for_each(|(i, c)| c.copy_from_slice(&(200 + i as u32).to_be_bytes()));
        r.receive(now, SystemTime::now(), &[&compound[..compound.len() - 12], &many[..]].concat()).unwrap();
        r.receive(now, SystemTime::now(), &[&compound[..compound.len() - 12], &twice[..]].concat()).unwrap();
        assert!(r.peer_left(230) && !r.peer_left(100), "bounded to the latest {MAX_LEFT}");
    }

    #[test]
    fn packets_we_do_not_read_are_stepped_over() {
        let now = Instant::now();
        let sr = a_sender_report(now);
        // An APP packet ("PING", 4 bytes of data) and stray bytes after the SR and SDES.
        let mut compound = vec![0x80, 204, 0, 3, 0, 0, 0, 2, b'P', b'I', b'N', b'G', 1, 2, 3, 4];
        compound.extend(&sr);
        compound.extend([0x00; 14]);
        let mut r = Rtcp::new(1, "x");
        r.receive(now, SystemTime::now(), &compound).unwrap();
        assert_eq!(r.reports_received(), 1);
    }

    #[test]
    fn hostile_rtcp_is_an_error_not_a_panic() {
        let mut r = Rtcp::new(1, "x");
        let now = Instant::now();
        let good = a_sender_report(now);
        for cut in 0..good.len() {
            let _ = r.receive(now, SystemTime::now(), &good[..cut]);
        }
        let mut lying = good.clone();
        lying[2] = 0xFF; // length field far past the end
        lying[3] = 0xFF;
        assert!(r.receive(now, SystemTime::now(), &lying).is_err());
        assert_eq!(r.receive(now, SystemTime::now(), &vec![0x80; MAX_RTCP + 1]), Err(RtcpError::TooLong));
        assert!(r.receive(now, SystemTime::now(), &good).is_ok());
    }

    #[test]
    fn plain_rtcp_is_told_from_srtcp_and_from_noise() {
        let now = Instant::now();
        let sr = a_sender_report(now);
        let ping = [0x80, 204, 0, 3, 0xa3, 0x80, 0x30, 0xe7, b'P', b'I', b'N', b'G', b'P', b'O', b'N', b'G'];
        assert!(is_plain_compound(&sr));
        assert!(is_plain_compound(&ping));
        for suite in crate::srtp::Suite::ALL {
            let key = vec![7u8; suite.keying_len()];
            let mut session = crate::srtp::Session::new(suite, &key, &key).unwrap();
            for packet in [&sr[..], &ping[..]] {
                let sealed = session.protect_rtcp(packet).unwrap();
                assert!(!is_plain_compound(&sealed), "{suite:?} SRTCP taken for plain: {sealed:?}");
            }
        }
        assert!(!is_plain_compound(&[]));
        assert!(!is_plain_compound(&ping[..15]), "cut short");
        assert!(!is_plain_compound(&[&ping[..], &[0u8; 4]].concat()), "trailing bytes");
        let mut rtp = ping;
        rtp[1] = 0; // PCMU: RTP, not RTCP
        assert!(!is_plain_compound(&rtp));
    }
}
