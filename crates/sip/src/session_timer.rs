//! Session timers (RFC 4028): a call whose far end vanished without a BYE
//! does not stay up for ever. One side refreshes the session (a re-INVITE)
//! every half interval; the other ends it with BYE when no refresh came.
//!
//! This module holds the headers' grammar and the clock; [`crate::call`]
//! sends the re-INVITEs and BYEs.

use std::time::{Duration, Instant};

use rsip::{Header, Request, Response};

/// Our Min-SE, and the smallest interval RFC 4028 allows.
pub const MIN_SE: u32 = 90;

/// Who refreshes, as `refresher=` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

impl Refresher {
    pub fn param(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// A `Session-Expires` header: `90;refresher=uac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    pub seconds: u32,
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    /// The header of `m` (also its compact form `x`), if present and valid.
    pub fn of(headers: &rsip::Headers) -> Option<SessionExpires> {
        let value = other_header(headers, &["session-expires", "x"])?;
        let mut parts = value.split(';').map(str::trim);
        let seconds = parts.next()?.parse::<u32>().ok()?;
        let refresher = parts.find_map(|p| {
            let (name, v) = p.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("refresher") {
                return None;
            }
            match v.trim().to_ascii_lowercase().as_str() {
                "uac" => Some(Refresher::Uac),
                "uas" => Some(Refresher::Uas),
                _ => None,
            }
        });
        Some(SessionExpires { seconds, refresher })
    }

    pub fn to_header_value(self) -> String {
        match self.refresher {
            Some(r) => format!("{};refresher={}", self.seconds, r.param()),
            None => self.seconds.to_string(),
        }
    }
}

/// The `Min-SE` of a message (a 422 or a request), if any.
pub fn min_se(headers: &rsip::Headers) -> Option<u32> {
    other_header(headers, &["min-se"])?.split(';').next()?.trim().parse().ok()
}

/// Whether the message's Supported (or compact `k`) lists `timer`.
pub fn supports_timer(headers: &rsip::Headers) -> bool {
    headers.iter().any(|h| match h {
        Header::Supported(s) => s.to_string().to_ascii_lowercase().contains("timer"),
        Header::Other(name, value) if name.eq_ignore_ascii_case("k") || name.eq_ignore_ascii_case("supported") => {
            value.to_ascii_lowercase().split(',').any(|o| o.trim() == "timer")
        }
        _ => false,
    })
}

fn other_header<'a>(headers: &'a rsip::Headers, names: &[&str]) -> Option<&'a str> {
    headers.iter().find_map(|h| match h {
        Header::Other(name, value) if names.iter().any(|n| name.eq_ignore_ascii_case(n)) => Some(value.as_str()),
        _ => None,
    })
}

/// The running timer of one confirmed session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTimer {
    pub interval: Duration,
    /// We send the refreshes; otherwise we watch for the peer's.
    pub we_refresh: bool,
    refreshed_at: Instant,
}

impl SessionTimer {
    pub fn new(now: Instant, seconds: u32, we_refresh: bool) -> SessionTimer {
        SessionTimer { interval: Duration::from_secs(u64::from(seconds)), we_refresh, refreshed_at: now }
    }

    /// A refresh succeeded (ours or the peer's): the interval starts again.
    pub fn refreshed(&mut self, now: Instant) {
        self.refreshed_at = now;
    }

    /// When to act next: our refresh at half the interval (§7.4), or, when
    /// the peer refreshes, the BYE at expiry minus min(32 s, interval/3) (§10).
    pub fn deadline(&self) -> Instant {
        if self.we_refresh {
            self.refreshed_at + self.interval / 2
        } else {
            let margin = Duration::from_secs(32).min(self.interval / 3);
            self.refreshed_at + self.interval - margin
        }
    }
}

/// The interval and refresher our 2xx names for an INVITE that asked for a
/// session timer, given our own preferred interval (0 = no preference).
/// `Err(MIN_SE)` when the request's interval is below our Min-SE (422).
pub fn answer_for(request: &Request, ours: u32) -> Result<Option<SessionExpires>, u32> {
    let Some(asked) = SessionExpires::of(&request.headers) else { return Ok(None) };
    if asked.seconds < MIN_SE {
        return Err(MIN_SE);
    }
    // We may shorten it, never below the caller's Min-SE or ours.
    let floor = min_se(&request.headers).unwrap_or(MIN_SE).max(MIN_SE);
    let seconds = if ours > 0 { asked.seconds.min(ours.max(floor)) } else { asked.seconds };
    let refresher = asked.refresher.unwrap_or(if supports_timer(&request.headers) {
        Refresher::Uac
    } else {
        // A caller that cannot refresh: we do (§9).
        Refresher::Uas
    });
    Ok(Some(SessionExpires { seconds, refresher: Some(refresher) }))
}

/// The timer a 2xx to our INVITE sets up; `None` when the answerer wants none.
pub fn from_answer(now: Instant, response: &Response, we_are_uac: bool) -> Option<SessionTimer> {
    let se = SessionExpires::of(&response.headers)?;
    let refresher = se.refresher.unwrap_or(Refresher::Uac);
    let we_refresh = (refresher == Refresher::Uac) == we_are_uac;
    Some(SessionTimer::new(now, se.seconds.max(MIN_SE), we_refresh))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(extra: &str) -> Request {
        let text = format!(
            "INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Request::try_from(text.as_str()).unwrap()
    }

    #[test]
    fn parses_session_expires_in_long_and_compact_form() {
        let r = request("Session-Expires: 1800;refresher=uas\r\n");
        assert_eq!(
            SessionExpires::of(&r.headers),
            Some(SessionExpires { seconds: 1800, refresher: Some(Refresher::Uas) })
        );
        let r = request("x: 600\r\n");
        assert_eq!(SessionExpires::of(&r.headers), Some(SessionExpires { seconds: 600, refresher: None }));
        assert_eq!(SessionExpires::of(&request("Session-Expires: soon\r\n").headers), None);
        assert_eq!(min_se(&request("Min-SE: 120\r\n").headers), Some(120));
    }

    #[test]
    fn the_answer_keeps_the_callers_choice_and_refuses_too_short_intervals() {
        let r = request("Supported: timer\r\nSession-Expires: 1800;refresher=uac\r\n");
        assert_eq!(answer_for(&r, 0), Ok(Some(SessionExpires { seconds: 1800, refresher: Some(Refresher::Uac) })));
        // Ours is shorter: we may lower it, not below Min-SE.
        assert_eq!(answer_for(&r, 600).unwrap().unwrap().seconds, 600);
        assert_eq!(
            answer_for(&request("Session-Expires: 1800\r\nMin-SE: 900\r\n"), 600).unwrap().unwrap().seconds,
            900
        );
        // A caller without timer support leaves the refreshing to us.
        let r = request("Session-Expires: 300\r\n");
        assert_eq!(answer_for(&r, 0).unwrap().unwrap().refresher, Some(Refresher::Uas));
        assert_eq!(answer_for(&request("Session-Expires: 30\r\n"), 0), Err(MIN_SE));
        assert_eq!(answer_for(&request(""), 1800), Ok(None));
    }

    #[test]
    fn deadlines_follow_rfc_4028() {
        let t0 = Instant::now();
        let ours = SessionTimer::new(t0, 90, true);
        assert_eq!(ours.deadline(), t0 + Duration::from_secs(45));
        let theirs = SessionTimer::new(t0, 90, false);
        assert_eq!(theirs.deadline(), t0 + Duration::from_secs(60), "90 − min(32, 30)");
        let long = SessionTimer::new(t0, 1800, false);
        assert_eq!(long.deadline(), t0 + Duration::from_secs(1800 - 32));
    }
}
