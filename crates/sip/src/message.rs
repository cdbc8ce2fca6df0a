//! What transactions need from a message, read without panicking: a message
//! from the network that lacks a header is an error, never a crash.

use rsip::prelude::*;
use rsip::{Header, Headers, Method, Request, Response, StatusCode};

/// The magic cookie of RFC 3261 branches (§8.1.1.7); older branches are not matched.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The peer sent a message we cannot use (missing or malformed header).
    #[error("malformed SIP message: {0}")]
    Malformed(String),
}

fn malformed(e: impl std::fmt::Display) -> MessageError {
    MessageError::Malformed(e.to_string())
}

/// The topmost Via, typed.
pub fn top_via(headers: &impl HeadersExt) -> Result<rsip::typed::Via, MessageError> {
    headers.via_header().map_err(malformed)?.typed().map_err(malformed)
}

/// The branch of the topmost Via, which must carry the RFC 3261 cookie.
pub fn branch(headers: &impl HeadersExt) -> Result<String, MessageError> {
    let via = top_via(headers)?;
    let branch = via.branch().ok_or_else(|| malformed("top Via has no branch"))?.to_string();
    if !branch.starts_with(BRANCH_COOKIE) {
        return Err(malformed(format!("branch {branch:?} lacks the {BRANCH_COOKIE} cookie")));
    }
    Ok(branch)
}

/// Sequence number and method of CSeq.
pub fn cseq(headers: &impl HeadersExt) -> Result<(u32, Method), MessageError> {
    let c = headers.cseq_header().map_err(malformed)?.typed().map_err(malformed)?;
    Ok((c.seq, c.method))
}

/// `StatusCode` for `code` with its proper reason phrase (rsip's own table
/// lacks 202, which it would send as "202 Other").
pub fn status(code: u16) -> StatusCode {
    match code {
        202 => StatusCode::Other(202, "Accepted".into()),
        c => StatusCode::from(c),
    }
}

/// A response to `request` as RFC 3261 §8.2.6.2 builds it: Via, From, To,
/// Call-ID and CSeq copied, `to_tag` added to To when given and not there yet.
pub fn response_to(request: &Request, status: StatusCode, to_tag: Option<&str>) -> Result<Response, MessageError> {
    let mut headers = Headers::default();
    for h in request.headers.iter() {
        match h {
            Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => headers.push(h.clone()),
            Header::To(to) => {
                let mut to = to.typed().map_err(malformed)?;
                if let Some(tag) = to_tag
                    && to.tag().is_none()
                {
                    to = to.with_tag(tag.into());
                }
                headers.push(Header::To(to.into()));
            }
            _ => {}
        }
    }
    headers.push(Header::ContentLength(rsip::headers::ContentLength::from(0u32)));
    Ok(Response { status_code: status, version: rsip::Version::V2, headers, body: Vec::new() })
}

/// The ACK for a non-2xx final response (RFC 3261 §17.1.1.3): same
/// Request-URI, Call-ID, From, CSeq number and top Via as the INVITE; To from
/// the response; the INVITE's Route headers.
pub fn ack_for(invite: &Request, response: &Response) -> Result<Request, MessageError> {
    let mut headers = Headers::default();
    headers.push(Header::Via(invite.via_header().map_err(malformed)?.clone()));
    headers.push(Header::MaxForwards(rsip::headers::MaxForwards::from(70u32)));
    headers.push(Header::From(invite.from_header().map_err(malformed)?.clone()));
    headers.push(Header::To(response.to_header().map_err(malformed)?.clone()));
    headers.push(Header::CallId(invite.call_id_header().map_err(malformed)?.clone()));
    let (seq, _) = cseq(invite)?;
    headers.push(Header::CSeq(rsip::typed::CSeq { seq, method: Method::Ack }.into()));
    for h in invite.headers.iter() {
        if let Header::Route(_) = h {
            headers.push(h.clone());
        }
    }
    headers.push(Header::ContentLength(rsip::headers::ContentLength::from(0u32)));
    Ok(Request { method: Method::Ack, uri: invite.uri.clone(), version: rsip::Version::V2, headers, body: Vec::new() })
}
