//! RTP and RTCP packets from the network (RFC 3550), checked before anything
//! is built from them: a datagram is parsed only when every length it
//! declares (CSRC count, header extension, padding) fits inside it. Anything
//! else is dropped with a reason the caller counts.

use bytes::Bytes;
use rtc_shared::marshal::{Marshal, Unmarshal};

/// Largest RTP datagram we accept.
pub const MAX_PACKET: usize = 1500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("shorter than an RTP header")]
    Truncated,
    #[error("not RTP version 2")]
    BadVersion,
    #[error("CSRC list, extension or padding longer than the packet")]
    BadLength,
    #[error("larger than {MAX_PACKET} bytes")]
    TooLarge,
    #[error("RTP parser refused it")]
    Unparsable,
}

/// What one datagram on the media port is (RTP and RTCP may share it: RFC 5761).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rtp,
    Rtcp,
}

/// RFC 5761 §4: RTCP packet types 192–223 occupy payload types 64–95 with the marker bit.
pub fn classify(datagram: &[u8]) -> Kind {
    match datagram.get(1) {
        Some(b) if (192..=223).contains(b) => Kind::Rtcp,
        _ => Kind::Rtp,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: Bytes,
}

/// Parses one RTP datagram after checking its declared lengths.
pub fn parse(datagram: &[u8]) -> Result<RtpPacket, RtpError> {
    if datagram.len() > MAX_PACKET {
        return Err(RtpError::TooLarge);
    }
    if datagram.len() < 12 {
        return Err(RtpError::Truncated);
    }
    if datagram[0] >> 6 != 2 {
        return Err(RtpError::BadVersion);
    }
    let csrc = usize::from(datagram[0] & 0x0F);
    let mut end_of_header = 12 + 4 * csrc;
    if datagram.len() < end_of_header {
        return Err(RtpError::BadLength);
    }
    if datagram[0] & 0x10 != 0 {
        // Extension: 4 bytes of profile + length, then length × 4 bytes.
        let Some(len) = datagram.get(end_of_header + 2..end_of_header + 4) else { return Err(RtpError::BadLength) };
        end_of_header += 4 + 4 * usize::from(u16::from_be_bytes([len[0], len[1]]));
        if datagram.len() < end_of_header {
            return Err(RtpError::BadLength);
        }
    }
    if datagram[0] & 0x20 != 0 {
        let pad = usize::from(*datagram.last().unwrap_or(&0));
        if pad == 0 || end_of_header + pad > datagram.len() {
            return Err(RtpError::BadLength);
        }
    }
    let mut buf = Bytes::copy_from_slice(datagram);
    let p = rtc_rtp::Packet::unmarshal(&mut buf).map_err(|_| RtpError::Unparsable)?;
    Ok(RtpPacket {
        payload_type: p.header.payload_type,
        marker: p.header.marker,
        sequence: p.header.sequence_number,
        timestamp: p.header.timestamp,
        ssrc: p.header.ssrc,
        payload: p.payload,
    })
}

/// Our outgoing stream: one SSRC, sequence numbers and timestamps that
/// start at random values (RFC 3550 §5.1) and advance by what is sent.
pub struct RtpSender {
    pub ssrc: u32,
    pub payload_type: u8,
    sequence: u16,
    timestamp: u32,
    pub packets_sent: u64,
    pub octets_sent: u64,
}

impl RtpSender {
    pub fn new(ssrc: u32, payload_type: u8, first_sequence: u16, first_timestamp: u32) -> RtpSender {
        RtpSender {
            ssrc,
            payload_type,
            sequence: first_sequence,
            timestamp: first_timestamp,
            packets_sent: 0,
            octets_sent: 0,
        }
    }

    /// The RTP timestamp the next packet will carry.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// One packet carrying `payload` (`samples` long); `marker` starts a talkspurt.
    pub fn packet(&mut self, payload: &[u8], samples: u32, marker: bool) -> Vec<u8> {
        let packet = rtc_rtp::Packet {
            header: rtc_rtp::header::Header {
                version: 2,
                marker,
                payload_type: self.payload_type,
                sequence_number: self.sequence,
                timestamp: self.timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(payload),
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples);
        self.packets_sent += 1;
        self.octets_sent += payload.len() as u64;
        packet.marshal().map(|b| b.to_vec()).unwrap_or_default()
    }

    /// A packet of another payload type that keeps `timestamp` (a
    /// telephone-event repeats its start time); the sequence advances, the
    /// stream's clock does not.
    pub fn packet_at(&mut self, payload_type: u8, timestamp: u32, payload: &[u8], marker: bool) -> Vec<u8> {
        let packet = rtc_rtp::Packet {
            header: rtc_rtp::header::Header {
                version: 2,
                marker,
                payload_type,
                sequence_number: self.sequence,
                timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(payload),
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.packets_sent += 1;
        self.octets_sent += payload.len() as u64;
        packet.marshal().map(|b| b.to_vec()).unwrap_or_default()
    }

    /// Advances the clock without sending (silence suppressed, or on hold).
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_our_own_packets() {
        let mut s = RtpSender::new(0xDEADBEEF, 0, 65_535, 4_294_967_200);
        let a = s.packet(&[1, 2, 3], 160, true);
        let b = s.packet(&[4], 160, false);
        let pa = parse(&a).unwrap();
        let pb = parse(&b).unwrap();
        assert_eq!((pa.sequence, pa.timestamp, pa.marker, pa.ssrc), (65_535, 4_294_967_200, true, 0xDEADBEEF));
        assert_eq!((pb.sequence, pb.timestamp), (0, 4_294_967_200u32.wrapping_add(160)));
        assert_eq!(&pa.payload[..], &[1, 2, 3]);
        assert_eq!(classify(&a), Kind::Rtp);
    }

    #[test]
    fn hostile_packets_are_refused_with_a_reason() {
        let good = RtpSender::new(1, 0, 1, 1).packet(&[0; 160], 160, false);
        assert_eq!(parse(&good[..11]), Err(RtpError::Truncated));
        let mut v1 = good.clone();
        v1[0] = (v1[0] & 0x3F) | 0x40;
        assert_eq!(parse(&v1), Err(RtpError::BadVersion));
        let mut csrc = good[..20].to_vec();
        csrc[0] |= 0x0F; // 15 CSRCs = 60 bytes, the packet has 20
        assert_eq!(parse(&csrc), Err(RtpError::BadLength));
        let mut ext = good.clone();
        ext[0] |= 0x10;
        ext[14] = 0xFF;
        ext[15] = 0xFF; // 262 140 bytes of extension declared
        assert_eq!(parse(&ext), Err(RtpError::BadLength));
        let mut pad = good.clone();
        pad[0] |= 0x20;
        *pad.last_mut().unwrap() = 250;
        assert_eq!(parse(&pad), Err(RtpError::BadLength));
        assert_eq!(parse(&vec![0x80; 2000]), Err(RtpError::TooLarge));
        assert_eq!(classify(&[0x81, 200, 0, 6]), Kind::Rtcp, "a sender report");
    }
}
