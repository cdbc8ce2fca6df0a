//! The checks a UAS makes before a request reaches a call (RFC 3261 §8.2),
//! answered with the codes RFC 3261 and the torture tests of RFC 4475 expect.

use rsip::prelude::*;
use rsip::{Header, Method, Request};

/// Extensions we implement (for `Require`).
const SUPPORTED: &[&str] = &["replaces"];
/// Body types we understand, by method.
const SDP: &str = "application/sdp";

/// A refusal: status code, reason phrase, and an extra header to add (such as
/// `Unsupported` or `Accept`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub reason: &'static str,
    pub header: Option<(String, String)>,
}

fn refuse(code: u16, reason: &'static str) -> Refusal {
    Refusal { code, reason, header: None }
}

/// `Ok` when the request may go on to a transaction; otherwise how to refuse it.
pub fn check_request(req: &Request) -> Result<(), Refusal> {
    if req.version != rsip::Version::V2 {
        return Err(refuse(505, "Version Not Supported"));
    }
    let missing = req.via_header().is_err()
        || req.from_header().is_err()
        || req.to_header().is_err()
        || req.call_id_header().is_err()
        || crate::message::cseq(req).is_err();
    if missing {
        return Err(refuse(400, "Missing or malformed mandatory header"));
    }
    if crate::message::cseq(req).is_ok_and(|(_, m)| m != req.method) {
        return Err(refuse(400, "CSeq method does not match the request"));
    }
    let scheme = req.uri.scheme.as_ref().map(|s| s.to_string().to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("sip" | "sips")) {
        return Err(refuse(416, "Unsupported URI Scheme"));
    }
    if req.method != Method::Ack && req.method != Method::Cancel {
        let mut unsupported = Vec::new();
        for h in req.headers.iter() {
            if let Header::Require(r) = h {
                for option in r.value().split(',').map(str::trim).filter(|o| !o.is_empty()) {
                    if !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(option)) {
                        unsupported.push(option.to_owned());
                    }
                }
            }
        }
        if !unsupported.is_empty() {
            return Err(Refusal {
                code: 420,
                reason: "Bad Extension",
                header: Some(("Unsupported".into(), unsupported.join(", "))),
            });
        }
    }
    if !req.body.is_empty() && matches!(req.method, Method::Invite | Method::Ack) {
        let ctype = req.headers.iter().find_map(|h| match h {
            Header::ContentType(c) => Some(c.value().to_ascii_lowercase()),
            _ => None,
        });
        let is_sdp = ctype.as_deref().is_some_and(|c| c.split(';').next().is_some_and(|t| t.trim() == SDP));
        if !is_sdp {
            return Err(Refusal {
                code: 415,
                reason: "Unsupported Media Type",
                header: Some(("Accept".into(), SDP.into())),
            });
        }
        let encoded = req.headers.iter().any(|h| match h {
            Header::ContentEncoding(e) => !e.value().trim().eq_ignore_ascii_case("identity"),
            _ => false,
        });
        if encoded {
            return Err(Refusal {
                code: 415,
                reason: "Unsupported Media Type",
                header: Some(("Accept-Encoding".into(), "identity".into())),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(first_line: &str, extra: &str, body: &str) -> Request {
        let method = first_line.split(' ').next().unwrap();
        let text = format!(
            "{first_line}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: x\r\nCSeq: 1 {method}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        Request::try_from(text.as_str()).unwrap()
    }

    #[test]
    fn a_plain_invite_passes() {
        let sdp = "v=0\r\n";
        assert_eq!(check_request(&req("INVITE sip:b@h SIP/2.0", "Content-Type: application/sdp\r\n", sdp)), Ok(()));
        assert_eq!(check_request(&req("OPTIONS sip:b@h SIP/2.0", "", "")), Ok(()));
    }

    #[test]
    fn refusals_carry_the_rfc_codes() {
        let code = |r: Request| check_request(&r).unwrap_err().code;
        assert_eq!(code(req("INVITE sip:b@h SIP/2.0", "Require: 100rel, foo\r\n", "")), 420);
        let r = check_request(&req("INVITE sip:b@h SIP/2.0", "Require: foo\r\n", "")).unwrap_err();
        assert_eq!(r.header, Some(("Unsupported".into(), "foo".into())));
        assert_eq!(code(req("INVITE sip:b@h SIP/2.0", "Content-Type: text/plain\r\n", "hello")), 415);
        assert_eq!(
            code(req("INVITE sip:b@h SIP/2.0", "Content-Type: application/sdp\r\nContent-Encoding: gzip\r\n", "x")),
            415
        );
        // rsip cannot parse `tel:+…` at all (such a request is dropped); other schemes are refused.
        assert_eq!(code(req("INVITE im:bob@h SIP/2.0", "", "")), 416);
        let mut bad_cseq = req("OPTIONS sip:b@h SIP/2.0", "", "");
        bad_cseq.method = Method::Info;
        assert_eq!(code(bad_cseq), 400);
        let mut v1 = req("OPTIONS sip:b@h SIP/2.0", "", "");
        v1.version = rsip::Version::V1;
        assert_eq!(code(v1), 505);
        let no_call_id = Request::try_from("OPTIONS sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(code(no_call_id), 400);
        // ACK and CANCEL are never refused for Require (§8.2.2.3).
        assert_eq!(check_request(&req("CANCEL sip:b@h SIP/2.0", "Require: foo\r\n", "")), Ok(()));
    }
}
