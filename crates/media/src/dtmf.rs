//! DTMF as RTP telephone-events (RFC 4733 §2.3): a 4-byte payload with the
//! event code, an end bit, the volume and the duration so far. One event
//! keeps its start timestamp in every packet; its end is sent three times.

/// The event code of a DTMF digit (RFC 4733 §3.2), `None` for anything else.
pub fn event_code(digit: char) -> Option<u8> {
    match digit.to_ascii_uppercase() {
        d @ '0'..='9' => Some(d as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        d @ 'A'..='D' => Some(d as u8 - b'A' + 12),
        _ => None,
    }
}

pub fn digit_of(code: u8) -> Option<char> {
    match code {
        0..=9 => Some((b'0' + code) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + code - 12) as char),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub code: u8,
    pub end: bool,
    /// dBm0 below 0 (RFC 4733: 0–63).
    pub volume: u8,
    /// In timestamp units since the event's start.
    pub duration: u16,
}

impl TelephoneEvent {
    pub fn parse(payload: &[u8]) -> Option<TelephoneEvent> {
        let p: &[u8; 4] = payload.get(..4)?.try_into().ok()?;
        Some(TelephoneEvent {
            code: p[0],
            end: p[1] & 0x80 != 0,
            volume: p[1] & 0x3F,
            duration: u16::from_be_bytes([p[2], p[3]]),
        })
    }

    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [self.code, (if self.end { 0x80 } else { 0 }) | (self.volume & 0x3F), d[0], d[1]]
    }
}

/// Sends one digit as a series of event packets, one per 20 ms frame.
#[derive(Debug, Clone)]
pub struct EventSender {
    code: u8,
    /// Tone length, in timestamp units.
    length: u32,
    elapsed: u32,
    ends_sent: u8,
}

/// What to put on the wire for the current frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPacket {
    pub payload: [u8; 4],
    /// The first packet of an event carries the marker bit.
    pub marker: bool,
}

impl EventSender {
    /// `digit` for `length` timestamp units (clock of the telephone-event, usually 8000 Hz).
    pub fn new(digit: char, length: u32) -> Option<EventSender> {
        Some(EventSender {
            code: event_code(digit)?,
            length: length.clamp(1, u32::from(u16::MAX)),
            elapsed: 0,
            ends_sent: 0,
        })
    }

    /// The packet for the next `frame` timestamp units; `None` once the end
    /// has been sent three times (the event is over).
    pub fn next(&mut self, frame: u32) -> Option<EventPacket> {
        if self.ends_sent >= 3 {
            return None;
        }
        let marker = self.elapsed == 0;
        self.elapsed = (self.elapsed + frame).min(self.length);
        let end = self.elapsed >= self.length;
        if end {
            self.ends_sent += 1;
        }
        let ev = TelephoneEvent { code: self.code, end, volume: 10, duration: self.elapsed as u16 };
        Some(EventPacket { payload: ev.to_bytes(), marker })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for d in "0123456789*#ABCD".chars() {
            assert_eq!(digit_of(event_code(d).unwrap()), Some(d));
        }
        assert_eq!(event_code('x'), None);
        assert_eq!(digit_of(16), None);
    }

    #[test]
    fn a_100_ms_digit_is_five_packets_then_three_ends() {
        let mut s = EventSender::new('#', 800).unwrap();
        let mut packets = vec![];
        while let Some(p) = s.next(160) {
            packets.push(p);
        }
        assert_eq!(packets.len(), 5 + 2, "the 5th carries the first end; two repeats");
        assert!(packets[0].marker && !packets[1].marker);
        let events: Vec<_> = packets.iter().map(|p| TelephoneEvent::parse(&p.payload).unwrap()).collect();
        assert_eq!(events[0], TelephoneEvent { code: 11, end: false, volume: 10, duration: 160 });
        assert!(events[4..].iter().all(|e| e.end && e.duration == 800));
        assert_eq!(TelephoneEvent::parse(&[1, 2, 3]), None, "truncated");
    }
}
