//! One call: the INVITE dialog (RFC 3261 §12–§15, §9 CANCEL) in either
//! direction, sans-IO.
//!
//! Outbound: INVITE with our SDP offer → provisional responses
//! (`Progress`) → 2xx (`Answered`, ACK sent, `Confirmed`) or a failure
//! (`Ended`). Hanging up before the answer CANCELs (after the first
//! provisional, as §9.1 asks); after it, BYE.
//!
//! Inbound: the INVITE is answered with 100 and 180 at once (`Incoming`);
//! `answer` sends 200 with our SDP answer and retransmits it until the ACK
//! (§13.3.1.4), `reject` sends a final error; a CANCEL or a no-answer timeout
//! ends it. BYE from either side ends a confirmed call.
//!
//! DTMF goes out as SIP INFO (`application/dtmf-relay`, one digit per INFO,
//! the next one after the answer and the tone's duration plus the gap; `,` is
//! a 2 s pause), and INFO digits from the peer become `Dtmf` events.
//!
//! Session timers (RFC 4028, [`crate::session_timer`]): our INVITE asks for
//! `Endpoint::session_expires`; the 2xx decides who refreshes. The refresher
//! re-INVITEs every half interval; the other side sends BYE when no refresh
//! came in time (`session-expired`). A 422 raises the interval once.
//!
//! A 401/407 to any of our requests (INVITE, re-INVITE, BYE, REFER, INFO,
//! NOTIFY) is answered once with credentials for the strongest challenge.
//!
//! Hold and resume are re-INVITEs with `a=sendonly` / `a=sendrecv`; a peer's
//! re-INVITE is answered from its offer and reported as remote hold or
//! resume. Crossing re-INVITEs get 491 and ours is retried after 2.1–4 s
//! (we own the Call-ID) or 0–2 s (§14.1); a re-INVITE that times out or gets
//! 408/481 ends the call with BYE (§14.1, §12.2.1.2).
//!
//! Blind transfer: REFER (RFC 3515) with Refer-To and Referred-By; the
//! peer's NOTIFYs (message/sipfrag) report the new call, and its success
//! ends ours with BYE. An incoming REFER (being transferred) is accepted with
//! 202 and an immediate NOTIFY 100 (RFC 3515 §2.4.4); the caller of
//! [`Call::notify_refer_progress`] reports the new call's fate.
//!
//! Consulted transfer (RFC 5589 §7): [`Call::transfer_replacing`] sends a
//! REFER whose Refer-To carries the consultation dialog's Replaces; an
//! incoming one reports that Replaces with the target. The driver matches an
//! INVITE's Replaces to a call with [`Call::is_named_by`] and ends that call
//! with [`Call::end_replaced`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rsip::prelude::*;
use rsip::{Header, Method, Request, Response, SipMessage, StatusCode};

use crate::ids::Ids;
use crate::message::{self, BRANCH_COOKIE, response_to};
use crate::registration::Transport;
use crate::replaces::Replaces;
use crate::sdp::{self, LocalMedia, Negotiated};
use crate::session_timer::{self, MIN_SE, Refresher, SessionExpires, SessionTimer};
use crate::transaction::{ClientOutput, ClientTransaction, ServerOutput, ServerTransaction, Timers, TransactionKey};

/// The methods a call understands, for Allow.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY";

/// What every call of one account needs to build its messages.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub username: String,
    pub domain: String,
    pub display_name: Option<String>,
    /// Our `host:port` for Via and Contact.
    pub local: String,
    pub transport: Transport,
    pub user_agent: String,
    pub timers: Timers,
    /// RFC 4028 session interval we ask for, in seconds; 0 = none.
    pub session_expires: u32,
    /// When the peer holds us while we hold it, release our hold rather
    /// than leave the call held from both ends (`calls.avoid_two_way_hold`).
    pub avoid_two_way_hold: bool,
}

impl Endpoint {
    /// Our Contact; a `sips:` one for dialogs that must stay on TLS (RFC 5630).
    fn contact(&self, secure: bool) -> String {
        let user = crate::registration::escape_user(&self.username);
        if secure {
            format!("<sips:{user}@{}>", self.local)
        } else {
            format!("<sip:{user}@{};transport={}>", self.local, self.transport.param())
        }
    }

    fn via(&self, branch: &str) -> String {
        format!("SIP/2.0/{} {};branch={branch};rport", self.transport.via_name(), self.local)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// Outbound INVITE sent.
    Calling,
    /// Outbound, a provisional response came.
    Ringing,
    /// Inbound, ringing here.
    Incoming,
    /// Inbound, 200 sent, waiting for the ACK.
    Answering,
    Confirmed,
    /// BYE or CANCEL sent.
    Ending,
    Ended,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// A provisional response (180, 183) to our INVITE.
    Progress { code: u16 },
    /// 2xx received (outbound) or sent (inbound).
    Answered,
    /// ACK sent (outbound) or received (inbound): media may flow.
    Confirmed,
    /// `reason`: `local-hangup`, `remote-hangup`, `cancelled`, `rejected`,
    /// `busy`, `timeout`, `no-answer`, `failed`.
    Ended { reason: &'static str, sip_code: Option<u16> },
    /// A DTMF digit received by SIP INFO.
    Dtmf { digit: char },
    /// Our hold or resume took effect; `peer` is the direction the peer answered.
    LocalHold { held: bool, peer: sdp::Direction },
    /// Our hold or resume was refused with `code`; nothing changed.
    HoldFailed { code: u16 },
    /// The peer put us on hold, or took us off it.
    RemoteHold { held: bool },
    /// The peer accepted our REFER (202) and is calling the target.
    TransferAccepted,
    /// The transfer target answered the peer; our call ends next.
    TransferSucceeded,
    /// The REFER was refused, or the peer's call to the target failed.
    TransferFailed { code: u16 },
    /// The peer asks us to call `target` instead (we are being transferred),
    /// with `replaces` when it is a consulted transfer.
    TransferRequested { target: String, replaces: Option<Replaces> },
}

#[derive(Debug, Clone, PartialEq)]
pub enum CallOutput {
    Transmit(SipMessage),
    Event(CallEvent),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Message(#[from] message::MessageError),
    #[error("cannot {0} in state {1:?}")]
    WrongState(&'static str, CallState),
    #[error("SDP: {0}")]
    Sdp(#[from] sdp::SdpError),
    #[error("invalid target {0:?}")]
    BadTarget(String),
    #[error("{0}: a sips: URI needs the TLS transport (sip.transport = \"tls\")")]
    NeedsTls(String),
}

pub struct Call {
    ep: Endpoint,
    ids: Box<dyn Ids>,
    outbound: bool,
    state: CallState,
    call_id: String,
    local_tag: String,
    remote_tag: Option<String>,
    /// `From` of outbound calls, `To` of inbound ones (without tag).
    local_uri: String,
    remote_uri: String,
    local_cseq: u32,
    remote_target: String,
    route_set: Vec<String>,
    invite: Request,
    invite_client: Option<(TransactionKey, ClientTransaction)>,
    invite_server: Option<(TransactionKey, ServerTransaction)>,
    clients: Vec<(TransactionKey, ClientTransaction)>,
    servers: Vec<(TransactionKey, ServerTransaction)>,
    media: LocalMedia,
    negotiated: Option<Negotiated>,
    /// Inbound INVITE without SDP: our 200 carries the offer, the ACK the answer.
    late_offer: bool,
    ack: Option<Request>,
    ok: Option<Response>,
    ok_retransmit_at: Option<Instant>,
    ok_interval: Duration,
    ok_give_up_at: Option<Instant>,
    no_answer_at: Option<Instant>,
    /// Inbound: answer by itself at this time (auto-answer).
    answer_at: Option<Instant>,
    cancel_wanted: bool,
    /// Our SRTP policy is "secure only" and the answer offered none.
    media_refused: bool,
    provisional_seen: bool,
    /// Digits still to send, with their tone duration and gap.
    dtmf: VecDeque<char>,
    dtmf_duration: Duration,
    dtmf_gap: Duration,
    /// The INFO in flight and when it was sent.
    dtmf_in_flight: Option<(TransactionKey, Instant)>,
    dtmf_next_at: Option<Instant>,
    local_hold: bool,
    remote_hold: bool,
    /// Our re-INVITE in flight, and whether it holds.
    reinvite: Option<(TransactionKey, ClientTransaction, bool)>,
    reinvite_cseq: u32,
    /// After a 491: when to try again, and what.
    reinvite_retry: Option<(Instant, bool)>,
    /// Our last re-INVITE as sent, to send again with credentials (once: a
    /// challenge to one that carried them is a refusal).
    reinvite_request: Option<Request>,
    /// The ACK of our last re-INVITE's 2xx, resent if that 2xx comes again.
    reinvite_ack: Option<(TransactionKey, Request)>,
    /// We sent a 2xx to an INVITE and wait for its ACK.
    awaiting_ack: bool,
    /// Our REFER in flight, then `None` once answered; `transferring` until the outcome.
    refer: Option<TransactionKey>,
    transferring: bool,
    /// A `sips:` dialog: our Contact is `sips:` too.
    secure: bool,
    /// The session timer of the confirmed call (RFC 4028), if one was agreed.
    session: Option<SessionTimer>,
    /// Inbound: the Session-Expires our 2xx names.
    session_answer: Option<SessionExpires>,
    /// The re-INVITE in flight only refreshes the session (no event for it).
    reinvite_refresh: bool,
    /// The account's password, for INVITEs the proxy challenges (401/407).
    password: Option<zeroize::Zeroizing<String>>,
    /// The INVITE was sent again with a larger Session-Expires after a 422.
    interval_raised: bool,
    /// INVITEs resent with credentials so far; a second refusal is final.
    auth_attempts: u32,
    out: VecDeque<CallOutput>,
}

impl Call {
    /// Starts an outbound call to `target` (a SIP URI) with our SDP offer.
    pub fn outgoing(
        now: Instant,
        ep: Endpoint,
        target: &str,
        extra_headers: &[(String, String)],
        media: LocalMedia,
        mut ids: Box<dyn Ids>,
    ) -> Result<Call, CallError> {
        if !(target.starts_with("sip:") || target.starts_with("sips:"))
            || target.len() > 512
            || target.contains(['\r', '\n', '<', '>', ' '])
        {
            return Err(CallError::BadTarget(target.to_owned()));
        }
        // A sips: target must be reached over TLS all the way (RFC 5630).
        let secure = target.starts_with("sips:");
        if secure && ep.transport != Transport::Tls {
            return Err(CallError::NeedsTls(target.to_owned()));
        }
        let call_id = ids.token();
        let local_tag = ids.token();
        let scheme = if secure { "sips" } else { "sip" };
        let local_uri = format!("{scheme}:{}@{}", crate::registration::escape_user(&ep.username), ep.domain);
        let branch = format!("{BRANCH_COOKIE}{}", ids.token());
        let body = sdp::offer(&media);
        let from = match &ep.display_name {
            Some(d) => format!("\"{}\" <{local_uri}>", d.replace(['"', '\\'], "")),
            None => format!("<{local_uri}>"),
        };
        let mut text = format!(
            "INVITE {target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from};tag={local_tag}\r\nTo: <{target}>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: {contact}\r\n\
             Allow: {ALLOW}\r\nSupported: replaces, timer\r\nUser-Agent: {ua}\r\nContent-Type: application/sdp\r\n",
            via = ep.via(&branch),
            contact = ep.contact(secure),
            ua = ep.user_agent,
        );
        if ep.session_expires > 0 {
            text.push_str(&format!("Session-Expires: {}\r\nMin-SE: {MIN_SE}\r\n", ep.session_expires.max(MIN_SE)));
        }
        for (name, value) in extra_headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        let invite = Request::try_from(text.as_str()).map_err(|e| CallError::BadTarget(format!("{target}: {e}")))?;
        let txn = ClientTransaction::new(now, invite.clone(), ep.transport.reliable(), ep.timers)
            .map_err(|e| CallError::BadTarget(e.to_string()))?;
        let key = TransactionKey::for_client(&invite)?;
        let mut call = Call::base(ep, ids, invite, media);
        call.outbound = true;
        call.secure = secure;
        call.state = CallState::Calling;
        call.call_id = call_id;
        call.local_tag = local_tag;
        call.local_uri = local_uri;
        call.remote_uri = target.to_owned();
        call.local_cseq = 1;
        call.remote_target = target.to_owned();
        call.invite_client = Some((key, txn));
        call.drain(now);
        Ok(call)
    }

    /// Takes an inbound INVITE: 100 and 180 go out at once. On error, the
    /// response to send instead (400, 488 …) comes back.
    pub fn incoming(
        now: Instant,
        ep: Endpoint,
        invite: Request,
        media: LocalMedia,
        no_answer_after: Option<Duration>,
        mut ids: Box<dyn Ids>,
    ) -> Result<Call, Response> {
        // What to answer instead when the INVITE cannot start a call. A request
        // too broken even for a response gets an empty one, which the driver drops.
        let reject = |code: u16| response_to(&invite, message::status(code), Some("x")).unwrap_or_default();
        let call_id = invite.call_id_header().map(|c| c.value().to_owned());
        let from = invite.from_header().map(|f| f.value().to_owned());
        let to = invite.to_header().map(|t| t.value().to_owned());
        let (Ok(call_id), Ok(from), Ok(to)) = (call_id, from, to) else { return Err(reject(400)) };
        let remote_tag = tag_of(&from);
        let key = TransactionKey::for_server(&invite).map_err(|_| reject(400))?;
        let secure = invite.uri.scheme.as_ref().is_some_and(|s| s.to_string().eq_ignore_ascii_case("sips"));
        if secure && ep.transport != Transport::Tls {
            return Err(reject(416));
        }
        let session_answer = session_timer::answer_for(&invite, ep.session_expires).map_err(|min| {
            let mut r = reject(422);
            r.headers.push(Header::Other("Min-SE".into(), min.to_string()));
            r
        })?;
        let late_offer = invite.body.is_empty();
        let negotiated = if late_offer {
            None
        } else {
            let offer = sdp::parse(&invite.body).map_err(|_| reject(488))?;
            Some(sdp::answer(&media, &offer).map_err(|e| not_acceptable(reject(488), &e))?.1)
        };
        let txn =
            ServerTransaction::new(now, invite.clone(), ep.transport.reliable(), ep.timers).map_err(|_| reject(400))?;
        let remote_target = contact_uri(&invite).unwrap_or_else(|| uri_of(&from));
        let route_set = record_routes(&invite);
        let local_tag = ids.token();
        let mut call = Call::base(ep, ids, invite, media);
        call.state = CallState::Incoming;
        call.secure = secure;
        call.call_id = call_id;
        call.local_tag = local_tag;
        call.remote_tag = remote_tag;
        call.local_uri = uri_of(&to);
        call.remote_uri = uri_of(&from);
        call.remote_target = remote_target;
        call.route_set = route_set;
        call.invite_server = Some((key, txn));
        call.negotiated = negotiated;
        call.late_offer = late_offer;
        call.no_answer_at = no_answer_after.map(|d| now + d);
        call.session_answer = session_answer;
        // The INVITE is a request to us: CANCEL may come at once.
        call.provisional_seen = true;
        let ringing = call.response(StatusCode::Ringing, None);
        call.send_invite_response(now, ringing);
        Ok(call)
    }

    /// Gives the call the account's password, so that an INVITE the proxy
    /// challenges (401/407) is sent again with credentials.
    pub fn with_password(mut self, password: &str) -> Call {
        self.password = Some(zeroize::Zeroizing::new(password.to_owned()));
        self
    }

    /// A call with every piece of state at its starting value; the two
    /// constructors above fill in what their direction knows.
    fn base(ep: Endpoint, ids: Box<dyn Ids>, invite: Request, media: LocalMedia) -> Call {
        Call {
            ids,
            outbound: false,
            state: CallState::Calling,
            call_id: String::new(),
            local_tag: String::new(),
            remote_tag: None,
            local_uri: String::new(),
            remote_uri: String::new(),
            local_cseq: 0,
            remote_target: String::new(),
            route_set: Vec::new(),
            invite,
            invite_client: None,
            invite_server: None,
            clients: Vec::new(),
            servers: Vec::new(),
            media,
            negotiated: None,
            late_offer: false,
            ack: None,
            ok: None,
            ok_retransmit_at: None,
            ok_interval: ep.timers.t1,
            ok_give_up_at: None,
            no_answer_at: None,
            answer_at: None,
            cancel_wanted: false,
            media_refused: false,
            provisional_seen: false,
            dtmf: VecDeque::new(),
            dtmf_duration: Duration::from_millis(100),
            dtmf_gap: Duration::from_millis(70),
            dtmf_in_flight: None,
            dtmf_next_at: None,
            local_hold: false,
            remote_hold: false,
            reinvite: None,
            reinvite_cseq: 0,
            reinvite_retry: None,
            reinvite_request: None,
            reinvite_ack: None,
            awaiting_ack: false,
            refer: None,
            transferring: false,
            secure: false,
            session: None,
            session_answer: None,
            reinvite_refresh: false,
            password: None,
            auth_attempts: 0,
            interval_raised: false,
            out: VecDeque::new(),
            ep,
        }
    }

    // ----- getters -----

    pub fn state(&self) -> CallState {
        self.state
    }

    pub fn is_outbound(&self) -> bool {
        self.outbound
    }

    /// The INVITE that started the call (ours or the peer's), for its headers.
    pub fn invite(&self) -> &Request {
        &self.invite
    }

    pub fn sip_call_id(&self) -> &str {
        &self.call_id
    }

    pub fn remote_uri(&self) -> &str {
        &self.remote_uri
    }

    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// What a Replaces header naming this dialog says, for the party at the
    /// other end (its tag is `to-tag`); `None` before the peer's tag is known.
    pub fn replaces(&self) -> Option<Replaces> {
        Some(Replaces {
            call_id: self.call_id.clone(),
            to_tag: self.remote_tag.clone()?,
            from_tag: self.local_tag.clone(),
            early_only: false,
        })
    }

    /// Whether an INVITE's Replaces header names this dialog (RFC 3891 §3).
    pub fn is_named_by(&self, r: &Replaces) -> bool {
        self.call_id == r.call_id && self.local_tag == r.to_tag && self.remote_tag.as_deref() == Some(&r.from_tag)
    }

    /// (we hold the peer, the peer holds us)
    pub fn hold_state(&self) -> (bool, bool) {
        (self.local_hold, self.remote_hold)
    }

    /// Digits queued for sending.
    pub fn dtmf_pending(&self) -> usize {
        self.dtmf.len()
    }

    /// Ended, and no transaction is still absorbing retransmissions.
    pub fn is_finished(&self) -> bool {
        self.state == CallState::Ended
            && self.invite_client.is_none()
            && self.invite_server.is_none()
            && self.clients.is_empty()
            && self.servers.is_empty()
            && self.reinvite.is_none()
    }

    /// Whether `response` belongs to one of this call's client transactions.
    pub fn owns_response(&self, response: &Response) -> bool {
        let Ok(key) = TransactionKey::for_response(response) else { return false };
        self.invite_client.as_ref().is_some_and(|(k, _)| *k == key)
            || self.clients.iter().any(|(k, _)| *k == key)
            || self.reinvite.as_ref().is_some_and(|(k, _, _)| *k == key)
            || self.reinvite_ack.as_ref().is_some_and(|(k, _)| *k == key)
    }

    /// Whether `request` belongs to this call: a retransmission, a CANCEL of
    /// our pending INVITE, or an in-dialog request.
    pub fn owns_request(&self, request: &Request) -> bool {
        if let Ok(key) = TransactionKey::for_server(request) {
            if self.invite_server.as_ref().is_some_and(|(k, _)| *k == key)
                || self.servers.iter().any(|(k, _)| *k == key)
            {
                return true;
            }
            if request.method == Method::Cancel {
                let invite_key = TransactionKey { method: "INVITE".into(), ..key };
                return self.invite_server.as_ref().is_some_and(|(k, _)| *k == invite_key);
            }
        }
        let Ok(call_id) = request.call_id_header() else { return false };
        if call_id.value() != self.call_id {
            return false;
        }
        let to_tag = request.to_header().ok().and_then(|t| tag_of(t.value()));
        let from_tag = request.from_header().ok().and_then(|f| tag_of(f.value()));
        to_tag.as_deref() == Some(self.local_tag.as_str()) && from_tag == self.remote_tag
    }

    // ----- commands -----

    /// Answers a ringing inbound call by itself after `delay` (auto-answer).
    pub fn answer_after(&mut self, now: Instant, delay: Duration) {
        if self.state == CallState::Incoming {
            self.answer_at = Some(now + delay);
        }
    }

    /// Answers a ringing inbound call.
    pub fn answer(&mut self, now: Instant) -> Result<(), CallError> {
        if self.state != CallState::Incoming {
            return Err(CallError::WrongState("answer", self.state));
        }
        let body = if self.late_offer {
            sdp::offer(&self.media)
        } else {
            let offer = sdp::parse(&self.invite.body)?;
            let (text, negotiated) = sdp::answer(&self.media, &offer)?;
            self.negotiated = Some(negotiated);
            text
        };
        let mut ok = self.response(StatusCode::OK, Some(body));
        if let Some(se) = self.session_answer {
            add_session_headers(&mut ok.headers, se, session_timer::supports_timer(&self.invite.headers));
            self.session = Some(SessionTimer::new(now, se.seconds, se.refresher == Some(Refresher::Uas)));
        }
        self.no_answer_at = None;
        self.answer_at = None;
        self.state = CallState::Answering;
        self.send_invite_response(now, ok.clone());
        // The TU retransmits 2xx until the ACK (RFC 3261 §13.3.1.4).
        self.ok = Some(ok);
        self.awaiting_ack = true;
        self.ok_interval = self.ep.timers.t1;
        self.ok_retransmit_at = (!self.ep.transport.reliable()).then(|| now + self.ok_interval);
        self.ok_give_up_at = Some(now + self.ep.timers.sixty_four_t1());
        self.out.push_back(CallOutput::Event(CallEvent::Answered));
        Ok(())
    }

    /// Puts the peer on hold (`true`) or takes it off (`false`) with a re-INVITE.
    pub fn set_hold(&mut self, now: Instant, hold: bool) -> Result<(), CallError> {
        if self.state != CallState::Confirmed || self.reinvite.is_some() || self.reinvite_retry.is_some() {
            return Err(CallError::WrongState(if hold { "hold" } else { "resume" }, self.state));
        }
        self.send_reinvite(now, hold);
        self.drain(now);
        Ok(())
    }

    /// A re-INVITE that only refreshes the session (RFC 4028 §7.4): the same
    /// media, the Session-Expires we keep.
    fn send_refresh(&mut self, now: Instant) {
        let hold = self.local_hold;
        self.send_reinvite(now, hold);
        self.reinvite_refresh = true;
    }

    fn send_reinvite(&mut self, now: Instant, hold: bool) {
        self.reinvite_refresh = false;
        let mut media = self.media.clone();
        media.version += 1;
        media.direction = if hold { sdp::Direction::SendOnly } else { sdp::Direction::SendRecv };
        let body = sdp::offer(&media);
        let Some(mut invite) = self.in_dialog(Method::Invite) else { return };
        self.media = media;
        self.reinvite_cseq = self.local_cseq;
        set_sdp_body(&mut invite.headers, &mut invite.body, body, &self.ep.contact(self.secure));
        if let Some(s) = &self.session {
            // We send this re-INVITE, so we are its UAC: we refresh from now on.
            let se = SessionExpires { seconds: s.interval.as_secs() as u32, refresher: Some(Refresher::Uac) };
            invite.headers.push(Header::Other("Session-Expires".into(), se.to_header_value()));
            invite.headers.push(Header::Supported(rsip::headers::Supported::new("replaces, timer")));
        }
        if let (Ok(key), Ok(txn)) = (
            TransactionKey::for_client(&invite),
            ClientTransaction::new(now, invite.clone(), self.ep.transport.reliable(), self.ep.timers),
        ) {
            self.reinvite = Some((key, txn, hold));
            self.reinvite_request = Some(invite);
        }
    }

    /// Blind transfer: asks the peer to call `target` (a SIP URI) instead of us.
    pub fn transfer(&mut self, now: Instant, target: &str) -> Result<(), CallError> {
        self.transfer_replacing(now, target, None)
    }

    /// Consulted transfer when `replaces` is given: the peer calls `target`
    /// with that Replaces header, taking over our consultation call with it.
    pub fn transfer_replacing(
        &mut self,
        now: Instant,
        target: &str,
        replaces: Option<&Replaces>,
    ) -> Result<(), CallError> {
        if self.state != CallState::Confirmed || self.transferring {
            return Err(CallError::WrongState("transfer", self.state));
        }
        if !(target.starts_with("sip:") || target.starts_with("sips:"))
            || target.len() > 512
            || target.contains(['\r', '\n', '<', '>', ' ', '?'])
        {
            return Err(CallError::BadTarget(target.to_owned()));
        }
        let refer_to = match replaces {
            Some(r) => r.in_uri(target),
            None => target.to_owned(),
        };
        let Some(mut refer) = self.in_dialog(Method::Refer) else {
            return Err(CallError::BadTarget(target.to_owned()));
        };
        refer.headers.retain(|h| !matches!(h, Header::ContentLength(_)));
        refer.headers.push(Header::Other("Refer-To".into(), format!("<{refer_to}>")));
        refer.headers.push(Header::Other("Referred-By".into(), format!("<{}>", self.local_uri)));
        refer.headers.push(Header::Contact(rsip::headers::Contact::new(self.ep.contact(self.secure))));
        refer.headers.push(Header::ContentLength(rsip::headers::ContentLength::from(0u32)));
        let key = TransactionKey::for_client(&refer)?;
        let txn = ClientTransaction::new(now, refer, self.ep.transport.reliable(), self.ep.timers)
            .map_err(|e| CallError::BadTarget(e.to_string()))?;
        self.clients.push((key.clone(), txn));
        self.refer = Some(key);
        self.transferring = true;
        self.drain(now);
        Ok(())
    }

    /// Reports the progress of the call made for the peer's REFER: a sipfrag
    /// NOTIFY with `code`; a final code ends the implicit subscription.
    pub fn notify_refer_progress(&mut self, now: Instant, code: u16) {
        if self.state != CallState::Confirmed {
            return;
        }
        let reason = match code {
            100 => "Trying",
            180 => "Ringing",
            183 => "Session Progress",
            200..=299 => "OK",
            486 => "Busy Here",
            487 => "Request Terminated",
            _ => "Failed",
        };
        let body = format!("SIP/2.0 {code} {reason}\r\n");
        let state = if code >= 200 { "terminated;reason=noresource" } else { "active;expires=60" };
        let Some(mut notify) = self.in_dialog(Method::Notify) else { return };
        notify.headers.retain(|h| !matches!(h, Header::ContentLength(_)));
        notify.headers.push(Header::Event(rsip::headers::Event::new("refer")));
        notify.headers.push(Header::SubscriptionState(rsip::headers::SubscriptionState::new(state)));
        notify.headers.push(Header::Contact(rsip::headers::Contact::new(self.ep.contact(self.secure))));
        notify.headers.push(Header::ContentType(rsip::headers::ContentType::new("message/sipfrag")));
        notify.headers.push(Header::ContentLength(rsip::headers::ContentLength::from(body.len() as u32)));
        notify.body = body.into_bytes();
        if let (Ok(key), Ok(txn)) = (
            TransactionKey::for_client(&notify),
            ClientTransaction::new(now, notify, self.ep.transport.reliable(), self.ep.timers),
        ) {
            self.clients.push((key, txn));
        }
        self.drain(now);
    }

    /// Queues DTMF digits (`0-9 A-D * #`, `,` = 2 s pause) to send by SIP INFO.
    /// The caller validates the digits and the timing.
    pub fn send_dtmf_info(
        &mut self,
        now: Instant,
        tones: &str,
        duration: Duration,
        gap: Duration,
    ) -> Result<(), CallError> {
        if self.state != CallState::Confirmed {
            return Err(CallError::WrongState("send DTMF", self.state));
        }
        self.dtmf_duration = duration;
        self.dtmf_gap = gap;
        self.dtmf.extend(tones.chars().map(|c| c.to_ascii_uppercase()));
        if self.dtmf_in_flight.is_none() && self.dtmf_next_at.is_none() {
            self.dtmf_next_at = Some(now);
            self.next_dtmf(now);
        }
        self.drain(now);
        Ok(())
    }

    fn next_dtmf(&mut self, now: Instant) {
        if self.dtmf_in_flight.is_some()
            || self.dtmf_next_at.is_some_and(|t| t > now)
            || self.state != CallState::Confirmed
        {
            return;
        }
        self.dtmf_next_at = None;
        let Some(digit) = self.dtmf.pop_front() else { return };
        if digit == ',' {
            self.dtmf_next_at = Some(now + Duration::from_secs(2));
            return;
        }
        let body = format!("Signal={digit}\r\nDuration={}\r\n", self.dtmf_duration.as_millis());
        let Some(mut info) = self.in_dialog(Method::Info) else { return };
        info.headers.retain(|h| !matches!(h, Header::ContentLength(_)));
        info.headers.push(Header::ContentType(rsip::headers::ContentType::new("application/dtmf-relay")));
        info.headers.push(Header::ContentLength(rsip::headers::ContentLength::from(body.len() as u32)));
        info.body = body.into_bytes();
        if let (Ok(key), Ok(txn)) = (
            TransactionKey::for_client(&info),
            ClientTransaction::new(now, info, self.ep.transport.reliable(), self.ep.timers),
        ) {
            self.dtmf_in_flight = Some((key.clone(), now));
            self.clients.push((key, txn));
        }
    }

    /// Rejects a ringing inbound call (486 Busy Here, 603 Decline, 480 …).
    pub fn reject(&mut self, now: Instant, code: u16) -> Result<(), CallError> {
        if self.state != CallState::Incoming {
            return Err(CallError::WrongState("reject", self.state));
        }
        let code = if (400..700).contains(&code) { code } else { 486 };
        self.finish_inbound(now, code, "rejected");
        Ok(())
    }

    /// Another call took this one's place (an INVITE with Replaces): end it
    /// as `replaced`.
    pub fn end_replaced(&mut self, now: Instant) {
        match self.state {
            CallState::Incoming => self.finish_inbound(now, 487, "replaced"),
            CallState::Answering | CallState::Confirmed => {
                self.ok_retransmit_at = None;
                self.ok_give_up_at = None;
                self.send_bye(now);
                self.end("replaced", None);
            }
            _ => {
                self.hangup(now);
                self.end("replaced", None);
            }
        }
        self.drain(now);
    }

    /// Ends the call whatever its state: CANCEL, a rejection or BYE.
    pub fn hangup(&mut self, now: Instant) {
        match self.state {
            CallState::Calling | CallState::Ringing => {
                self.cancel_wanted = true;
                self.state = CallState::Ending;
                if self.provisional_seen {
                    self.send_cancel(now);
                }
            }
            CallState::Incoming => self.finish_inbound(now, 603, "local-hangup"),
            CallState::Answering | CallState::Confirmed => {
                self.ok_retransmit_at = None;
                self.ok_give_up_at = None;
                self.send_bye(now);
                self.end("local-hangup", None);
            }
            CallState::Ending | CallState::Ended => {}
        }
        self.drain(now);
    }

    // ----- inputs -----

    pub fn handle_response(&mut self, now: Instant, response: Response) {
        let Ok(key) = TransactionKey::for_response(&response) else { return };
        if let Some((k, txn)) = &mut self.invite_client
            && *k == key
        {
            txn.handle_response(now, response);
            self.drain(now);
            return;
        }
        if let Some((k, txn, _)) = &mut self.reinvite
            && *k == key
        {
            txn.handle_response(now, response);
            self.drain(now);
            return;
        }
        if let Some((k, ack)) = &self.reinvite_ack
            && *k == key
        {
            if response.status_code.code() / 100 == 2 {
                // Our ACK was lost: the peer repeats its 2xx.
                self.out.push_back(CallOutput::Transmit(SipMessage::Request(ack.clone())));
            }
            return;
        }
        if let Some((_, txn)) = self.clients.iter_mut().find(|(k, _)| *k == key) {
            txn.handle_response(now, response);
        }
        self.drain(now);
    }

    pub fn handle_request(&mut self, now: Instant, request: Request) {
        // Retransmissions and the ACK of a non-2xx go to their transaction.
        if let Ok(key) = TransactionKey::for_server(&request) {
            if let Some((k, txn)) = &mut self.invite_server
                && *k == key
                && !(request.method == Method::Ack && self.state == CallState::Answering)
            {
                txn.handle_request(now, request);
                self.drain(now);
                return;
            }
            if let Some((_, txn)) = self.servers.iter_mut().find(|(k, _)| *k == key) {
                txn.handle_request(now, request);
                self.drain(now);
                return;
            }
        }
        match request.method {
            Method::Ack => {
                // The ACK of our 2xx (its own branch, in the dialog): stop resending the 2xx.
                if self.awaiting_ack {
                    self.awaiting_ack = false;
                    self.ok_retransmit_at = None;
                    self.ok_give_up_at = None;
                }
                if self.state == CallState::Answering {
                    let mut refused = false;
                    if self.late_offer
                        && let Ok(answer) = sdp::parse(&request.body)
                    {
                        let accepted = sdp::accept_answer(&self.media, &answer);
                        refused = accepted == Err(sdp::SdpError::SecureMediaRequired);
                        self.negotiated = accepted.ok();
                    }
                    self.state = CallState::Confirmed;
                    self.out.push_back(CallOutput::Event(CallEvent::Confirmed));
                    if refused {
                        // "Secure only", and the ACK's answer has no SRTP.
                        self.send_bye(now);
                        self.end("secure-media-refused", None);
                    }
                }
            }
            Method::Cancel => {
                self.respond_new(now, &request, 200);
                // 200 for the CANCEL goes out before the INVITE's 487 (§9.2).
                self.drain(now);
                if self.state == CallState::Incoming {
                    self.finish_inbound(now, 487, "cancelled");
                }
            }
            Method::Bye => {
                self.respond_new(now, &request, 200);
                if self.state != CallState::Ended {
                    self.ok_retransmit_at = None;
                    self.ok_give_up_at = None;
                    self.end("remote-hangup", None);
                }
            }
            Method::Invite if self.state == CallState::Confirmed => self.on_reinvite(now, request),
            Method::Refer if self.state == CallState::Confirmed => {
                let refer_to = request.headers.iter().find_map(|h| match h {
                    Header::Other(name, value)
                        if name.eq_ignore_ascii_case("refer-to") || name.eq_ignore_ascii_case("r") =>
                    {
                        Some(value.clone())
                    }
                    _ => None,
                });
                let target =
                    refer_to.as_deref().map(uri_of).filter(|u| u.starts_with("sip:") || u.starts_with("sips:"));
                // The URI without its embedded headers (`?…`), and the Replaces among them.
                let split = target.as_deref().map(Replaces::from_uri);
                let broken_replaces = split.as_ref().is_some_and(|(_, r)| r.is_none())
                    && target.as_deref().is_some_and(|t| t.to_ascii_lowercase().contains("replaces="));
                match split {
                    None => self.respond_new(now, &request, 400),
                    Some(_) if broken_replaces => self.respond_new(now, &request, 400),
                    Some((target, replaces)) => {
                        self.respond_new(now, &request, 202);
                        self.drain(now);
                        self.notify_refer_progress(now, 100);
                        self.out.push_back(CallOutput::Event(CallEvent::TransferRequested { target, replaces }));
                    }
                }
            }
            Method::Notify => {
                let is_refer = request.headers.iter().any(
                    |h| matches!(h, Header::Event(e) if e.value().trim().to_ascii_lowercase().starts_with("refer")),
                );
                if !is_refer {
                    self.respond_new(now, &request, 489);
                } else {
                    self.respond_new(now, &request, 200);
                    // Body: "SIP/2.0 200 OK" — the status of the peer's call to the target.
                    let code = String::from_utf8_lossy(&request.body)
                        .lines()
                        .next()
                        .and_then(|l| l.split_whitespace().nth(1))
                        .and_then(|c| c.parse::<u16>().ok());
                    let terminated = request.headers.iter().any(|h| matches!(h, Header::SubscriptionState(v) if v.value().trim().to_ascii_lowercase().starts_with("terminated")));
                    if self.transferring {
                        match code {
                            Some(200..=299) => {
                                self.transferring = false;
                                self.out.push_back(CallOutput::Event(CallEvent::TransferSucceeded));
                                // The peer talks to the target now: leave (RFC 5589 §6.1).
                                self.send_bye(now);
                                self.end("transferred", None);
                            }
                            Some(c) if c >= 300 => {
                                self.transferring = false;
                                self.out.push_back(CallOutput::Event(CallEvent::TransferFailed { code: c }));
                            }
                            _ if terminated => {
                                self.transferring = false;
                                self.out.push_back(CallOutput::Event(CallEvent::TransferFailed {
                                    code: code.unwrap_or(0),
                                }));
                            }
                            _ => {}
                        }
                    }
                }
            }
            Method::Info => {
                let is_dtmf = request.headers.iter().any(|h| matches!(h, Header::ContentType(c) if c.value().to_ascii_lowercase().starts_with("application/dtmf-relay")));
                let digit = String::from_utf8_lossy(&request.body)
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("Signal=").map(|d| d.trim().to_owned()))
                    .and_then(|d| d.chars().next())
                    .map(|c| c.to_ascii_uppercase())
                    .filter(|c| c.is_ascii_digit() || matches!(c, 'A'..='D' | '*' | '#'));
                match (is_dtmf, digit) {
                    (true, Some(digit)) => {
                        self.respond_new(now, &request, 200);
                        self.out.push_back(CallOutput::Event(CallEvent::Dtmf { digit }));
                    }
                    (true, None) => self.respond_new(now, &request, 400),
                    // No INFO package of ours (RFC 6086 §4.2.2 legacy INFO).
                    (false, _) => self.respond_new(now, &request, 415),
                }
            }
            _ => self.respond_new(now, &request, 501),
        }
        self.drain(now);
    }

    /// The peer's re-INVITE: answer from its offer (or offer in our 200).
    fn on_reinvite(&mut self, now: Instant, request: Request) {
        if self.reinvite.is_some() || self.awaiting_ack {
            // Glare: ours is in flight (§14.2).
            self.respond_new(now, &request, 491);
            return;
        }
        let Ok(key) = TransactionKey::for_server(&request) else { return };
        let Ok(mut txn) = ServerTransaction::new(now, request.clone(), self.ep.transport.reliable(), self.ep.timers)
        else {
            return;
        };
        let offered = sdp::parse(&request.body).ok().map(|o| o.direction);
        let holds_us = matches!(offered, Some(sdp::Direction::SendOnly | sdp::Direction::Inactive));
        // Two-way hold leaves a call no one can resume alone: give up ours.
        let release_ours = self.ep.avoid_two_way_hold && self.local_hold && holds_us;
        let ours = if self.local_hold && !release_ours { sdp::Direction::SendOnly } else { sdp::Direction::SendRecv };
        let mut media = self.media.clone();
        media.version += 1;
        media.direction = ours;
        let mut held_now = self.remote_hold;
        let body = if request.body.is_empty() {
            sdp::offer(&media)
        } else {
            let answered = sdp::parse(&request.body).and_then(|offer| {
                held_now = matches!(offer.direction, sdp::Direction::SendOnly | sdp::Direction::Inactive);
                sdp::answer(&media, &offer)
            });
            match answered {
                Ok((text, negotiated)) => {
                    self.negotiated = Some(negotiated);
                    text
                }
                Err(e) => {
                    if let Ok(r) = response_to(&request, StatusCode::NotAcceptableHere, Some(&self.local_tag)) {
                        let _ = txn.send_response(now, not_acceptable(r, &e));
                        self.servers.push((key, txn));
                    }
                    return;
                }
            }
        };
        self.media = media;
        let mut ok = response_to(&request, StatusCode::OK, Some(&self.local_tag)).unwrap_or_default();
        set_sdp_body(&mut ok.headers, &mut ok.body, body, &self.ep.contact(self.secure));
        // The peer's re-INVITE refreshes the session, possibly with new terms.
        match session_timer::answer_for(&request, self.ep.session_expires) {
            Ok(Some(se)) => {
                add_session_headers(&mut ok.headers, se, session_timer::supports_timer(&request.headers));
                self.session = Some(SessionTimer::new(now, se.seconds, se.refresher == Some(Refresher::Uas)));
            }
            _ => {
                if let Some(s) = &mut self.session {
                    s.refreshed(now);
                }
            }
        }
        let _ = txn.send_response(now, ok.clone());
        self.servers.push((key, txn));
        self.ok = Some(ok);
        self.awaiting_ack = true;
        self.ok_interval = self.ep.timers.t1;
        self.ok_retransmit_at = (!self.ep.transport.reliable()).then(|| now + self.ok_interval);
        self.ok_give_up_at = Some(now + self.ep.timers.sixty_four_t1());
        if release_ours {
            self.local_hold = false;
            let peer = offered.unwrap_or(sdp::Direction::SendOnly);
            self.out.push_back(CallOutput::Event(CallEvent::LocalHold { held: false, peer }));
        }
        if held_now != self.remote_hold {
            self.remote_hold = held_now;
            self.out.push_back(CallOutput::Event(CallEvent::RemoteHold { held: held_now }));
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((_, t, _)) = &mut self.reinvite
            && t.poll_timeout().is_some_and(|d| d <= now)
        {
            t.handle_timeout(now);
        }
        if let Some((at, hold)) = self.reinvite_retry
            && at <= now
        {
            self.reinvite_retry = None;
            if self.state == CallState::Confirmed {
                self.send_reinvite(now, hold);
            }
        }
        if let Some((_, t)) = &mut self.invite_client
            && t.poll_timeout().is_some_and(|d| d <= now)
        {
            t.handle_timeout(now);
        }
        if let Some((_, t)) = &mut self.invite_server
            && t.poll_timeout().is_some_and(|d| d <= now)
        {
            t.handle_timeout(now);
        }
        for (_, t) in &mut self.clients {
            if t.poll_timeout().is_some_and(|d| d <= now) {
                t.handle_timeout(now);
            }
        }
        for (_, t) in &mut self.servers {
            if t.poll_timeout().is_some_and(|d| d <= now) {
                t.handle_timeout(now);
            }
        }
        if let Some(at) = self.ok_retransmit_at.filter(|t| *t <= now) {
            if let Some(ok) = self.ok.clone() {
                self.out.push_back(CallOutput::Transmit(SipMessage::Response(ok)));
            }
            self.ok_interval = (self.ok_interval * 2).min(self.ep.timers.t2);
            self.ok_retransmit_at = Some(at + self.ok_interval);
        }
        if self.ok_give_up_at.is_some_and(|t| t <= now) {
            // No ACK for our 200: the call cannot be established (§13.3.1.4).
            self.ok_retransmit_at = None;
            self.ok_give_up_at = None;
            self.send_bye(now);
            self.end("failed", Some(408));
        }
        if self.dtmf_next_at.is_some_and(|t| t <= now) {
            self.next_dtmf(now);
        }
        if self.answer_at.is_some_and(|t| t <= now) && self.state == CallState::Incoming {
            // An offer we cannot answer was refused at INVITE time; nothing else fails here.
            let _ = self.answer(now);
        }
        if self.state == CallState::Confirmed
            && let Some(s) = &mut self.session
            && s.deadline() <= now
        {
            if !s.we_refresh {
                // No refresh came: the far end is gone (RFC 4028 §10).
                self.send_bye(now);
                self.end("session-expired", None);
            } else {
                // A re-INVITE already in flight (a hold) refreshes as well.
                s.refreshed(now);
                if self.reinvite.is_none() && self.reinvite_retry.is_none() {
                    self.send_refresh(now);
                }
            }
        }
        if self.no_answer_at.is_some_and(|t| t <= now) && self.state == CallState::Incoming {
            self.finish_inbound(now, 480, "no-answer");
        }
        self.drain(now);
    }

    // ----- outputs -----

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let txns = self
            .invite_client
            .iter()
            .filter_map(|(_, t)| t.poll_timeout())
            .chain(self.invite_server.iter().filter_map(|(_, t)| t.poll_timeout()))
            .chain(self.clients.iter().filter_map(|(_, t)| t.poll_timeout()))
            .chain(self.servers.iter().filter_map(|(_, t)| t.poll_timeout()));
        let reinvite = self.reinvite.as_ref().and_then(|(_, t, _)| t.poll_timeout());
        let retry = self.reinvite_retry.map(|(at, _)| at);
        let session = self.session.as_ref().filter(|_| self.state == CallState::Confirmed).map(SessionTimer::deadline);
        txns.chain(
            [
                self.ok_retransmit_at,
                self.ok_give_up_at,
                self.no_answer_at,
                self.answer_at,
                self.dtmf_next_at,
                reinvite,
                retry,
                session,
            ]
            .into_iter()
            .flatten(),
        )
        .min()
    }

    #[must_use]
    pub fn poll_output(&mut self) -> Option<CallOutput> {
        self.out.pop_front()
    }

    // ----- internals -----

    fn end(&mut self, reason: &'static str, sip_code: Option<u16>) {
        if self.state != CallState::Ended {
            self.state = CallState::Ended;
            self.no_answer_at = None;
            self.answer_at = None;
            self.out.push_back(CallOutput::Event(CallEvent::Ended { reason, sip_code }));
        }
    }

    fn finish_inbound(&mut self, now: Instant, code: u16, reason: &'static str) {
        let resp = self.response(message::status(code), None);
        self.send_invite_response(now, resp);
        self.end(reason, Some(code));
    }

    /// A response to the INVITE, with our To tag and Contact.
    fn response(&self, status: StatusCode, sdp_body: Option<String>) -> Response {
        let mut r = response_to(&self.invite, status, Some(&self.local_tag)).unwrap_or_default();
        r.headers.retain(|h| !matches!(h, Header::ContentLength(_)));
        for h in self.invite.headers.iter() {
            if let Header::RecordRoute(_) = h {
                r.headers.push(h.clone());
            }
        }
        r.headers.push(Header::Contact(rsip::headers::Contact::new(self.ep.contact(self.secure))));
        r.headers.push(Header::UserAgent(rsip::headers::UserAgent::new(self.ep.user_agent.clone())));
        if r.status_code.code() / 100 == 2 {
            r.headers.push(Header::Allow(rsip::headers::Allow::new(ALLOW)));
            r.headers.push(Header::Supported(rsip::headers::Supported::new("replaces, timer")));
        }
        match sdp_body {
            Some(body) => {
                r.headers.push(Header::ContentType(rsip::headers::ContentType::new("application/sdp")));
                r.headers.push(Header::ContentLength(rsip::headers::ContentLength::from(body.len() as u32)));
                r.body = body.into_bytes();
            }
            None => r.headers.push(Header::ContentLength(rsip::headers::ContentLength::from(0u32))),
        }
        r
    }

    fn send_invite_response(&mut self, now: Instant, response: Response) {
        if let Some((_, txn)) = &mut self.invite_server {
            let _ = txn.send_response(now, response);
        }
        self.drain(now);
    }

    /// Answers a request that starts a transaction of its own (BYE, CANCEL …).
    fn respond_new(&mut self, now: Instant, request: &Request, code: u16) {
        let (Ok(key), Ok(resp)) =
            (TransactionKey::for_server(request), response_to(request, message::status(code), Some(&self.local_tag)))
        else {
            return;
        };
        if let Ok(mut txn) = ServerTransaction::new(now, request.clone(), self.ep.transport.reliable(), self.ep.timers)
        {
            let _ = txn.send_response(now, resp);
            self.servers.push((key, txn));
        }
    }

    /// A request inside the dialog (BYE): Request-URI the remote target, Route the route set.
    fn in_dialog(&mut self, method: Method) -> Option<Request> {
        self.local_cseq += 1;
        let branch = format!("{BRANCH_COOKIE}{}", self.ids.token());
        let remote_tag = self.remote_tag.as_ref().map(|t| format!(";tag={t}")).unwrap_or_default();
        let (from, to) =
            (format!("<{}>;tag={}", self.local_uri, self.local_tag), format!("<{}>{remote_tag}", self.remote_uri));
        let mut text = format!(
            "{method} {target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {seq} {method}\r\n",
            target = self.remote_target,
            via = self.ep.via(&branch),
            cid = self.call_id,
            seq = self.local_cseq,
        );
        for r in &self.route_set {
            text.push_str(&format!("Route: {r}\r\n"));
        }
        text.push_str(&format!("User-Agent: {}\r\nContent-Length: 0\r\n\r\n", self.ep.user_agent));
        Request::try_from(text.as_str()).ok()
    }

    fn send_bye(&mut self, now: Instant) {
        let Some(bye) = self.in_dialog(Method::Bye) else { return };
        if let (Ok(key), Ok(txn)) = (
            TransactionKey::for_client(&bye),
            ClientTransaction::new(now, bye.clone(), self.ep.transport.reliable(), self.ep.timers),
        ) {
            self.clients.push((key, txn));
        }
    }

    /// CANCEL of our INVITE (§9.1): same Request-URI, Call-ID, From, To, top Via and CSeq number.
    fn send_cancel(&mut self, now: Instant) {
        let inv = &self.invite;
        let mut headers = rsip::Headers::default();
        for h in inv.headers.iter() {
            match h {
                Header::Via(_) if !headers.iter().any(|h| matches!(h, Header::Via(_))) => headers.push(h.clone()),
                Header::From(_) | Header::To(_) | Header::CallId(_) | Header::Route(_) | Header::MaxForwards(_) => {
                    headers.push(h.clone())
                }
                _ => {}
            }
        }
        let seq = message::cseq(inv).map_or(1, |(n, _)| n);
        headers.push(Header::CSeq(rsip::typed::CSeq { seq, method: Method::Cancel }.into()));
        headers.push(Header::ContentLength(rsip::headers::ContentLength::from(0u32)));
        let cancel =
            Request { method: Method::Cancel, uri: inv.uri.clone(), version: rsip::Version::V2, headers, body: vec![] };
        if let (Ok(key), Ok(txn)) = (
            TransactionKey::for_client(&cancel),
            ClientTransaction::new(now, cancel.clone(), self.ep.transport.reliable(), self.ep.timers),
        ) {
            self.clients.push((key, txn));
        }
    }

    /// The ACK of a 2xx: a new request in the dialog with the INVITE's CSeq number.
    fn ack_for_2xx(&mut self, cseq: u32) -> Option<Request> {
        let branch = format!("{BRANCH_COOKIE}{}", self.ids.token());
        let remote_tag = self.remote_tag.as_ref().map(|t| format!(";tag={t}")).unwrap_or_default();
        let mut text = format!(
            "ACK {target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <{local}>;tag={ltag}\r\nTo: <{remote}>{remote_tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq} ACK\r\n",
            target = self.remote_target,
            via = self.ep.via(&branch),
            local = self.local_uri,
            ltag = self.local_tag,
            remote = self.remote_uri,
            cid = self.call_id,
        );
        for r in &self.route_set {
            text.push_str(&format!("Route: {r}\r\n"));
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        Request::try_from(text.as_str()).ok()
    }

    /// Moves transaction outputs out and reacts to responses for the TU.
    fn drain(&mut self, now: Instant) {
        let mut responses = Vec::new();
        let mut invite_timeout = false;
        if let Some((_, t)) = &mut self.invite_client {
            while let Some(o) = t.poll_output() {
                match o {
                    ClientOutput::Transmit(m) => self.out.push_back(CallOutput::Transmit(m)),
                    ClientOutput::Response(r) => responses.push(r),
                    ClientOutput::Timeout => invite_timeout = true,
                }
            }
            if t.is_terminated() {
                self.invite_client = None;
            }
        }
        if let Some((_, t)) = &mut self.invite_server {
            while let Some(o) = t.poll_output() {
                if let ServerOutput::Transmit(m) = o {
                    self.out.push_back(CallOutput::Transmit(m));
                }
            }
            if t.is_terminated() {
                self.invite_server = None;
            }
        }
        let mut reinvite_result = None;
        if let Some((key, t, hold)) = &mut self.reinvite {
            while let Some(o) = t.poll_output() {
                match o {
                    ClientOutput::Transmit(m) => self.out.push_back(CallOutput::Transmit(m)),
                    ClientOutput::Response(r) if r.status_code.code() >= 200 => {
                        reinvite_result = Some((key.clone(), Some(r), *hold))
                    }
                    ClientOutput::Response(_) => {}
                    ClientOutput::Timeout => reinvite_result = Some((key.clone(), None, *hold)),
                }
            }
        }
        // Done at its final answer: a new hold or resume may follow at once. A
        // non-2xx transaction keeps absorbing retransmissions (and re-ACKing)
        // among the others; a 2xx is re-ACKed through `reinvite_ack`.
        let finished = self.reinvite.as_ref().is_some_and(|(_, t, _)| t.is_terminated());
        if (finished || reinvite_result.is_some())
            && let Some((k, t, _)) = self.reinvite.take()
        {
            let was_2xx = matches!(&reinvite_result, Some((_, Some(r), _)) if r.status_code.code() / 100 == 2);
            if !t.is_terminated() && !was_2xx {
                self.clients.push((k, t));
            }
        }
        if let Some((key, r, hold)) = reinvite_result {
            self.on_reinvite_result(now, key, r, hold);
        }
        let mut dtmf_done = false;
        let mut refer_answer = None;
        let mut challenged = Vec::new();
        for (k, t) in &mut self.clients {
            while let Some(o) = t.poll_output() {
                match o {
                    ClientOutput::Transmit(m) => self.out.push_back(CallOutput::Transmit(m)),
                    ClientOutput::Response(r)
                        if matches!(r.status_code.code(), 401 | 407)
                            && self.password.is_some()
                            && t.request().method != Method::Cancel
                            && t.request().method != Method::Invite =>
                    {
                        challenged.push((k.clone(), r));
                    }
                    ClientOutput::Response(r) if r.status_code.code() >= 200 => {
                        dtmf_done |= self.dtmf_in_flight.as_ref().is_some_and(|(key, _)| key == k);
                        if self.refer.as_ref() == Some(k) {
                            refer_answer = Some(r.status_code.code());
                        }
                    }
                    ClientOutput::Timeout if self.refer.as_ref() == Some(k) => refer_answer = Some(408),
                    ClientOutput::Timeout if self.dtmf_in_flight.as_ref().is_some_and(|(key, _)| key == k) => {
                        // The peer does not answer our INFOs: drop the rest of the digits.
                        self.dtmf.clear();
                        dtmf_done = true;
                    }
                    _ => {}
                }
            }
        }
        // Challenged requests go again with credentials; one that cannot
        // counts as refused (a REFER's transfer fails, a DTMF queue stops).
        let mut retried = false;
        for (k, r) in challenged {
            if self.retry_in_dialog_with_credentials(now, &k, &r) {
                retried = true;
            } else {
                let code = r.status_code.code();
                if self.refer.as_ref() == Some(&k) {
                    refer_answer = Some(code);
                }
                if self.dtmf_in_flight.as_ref().is_some_and(|(key, _)| *key == k) {
                    self.dtmf.clear();
                    dtmf_done = true;
                }
            }
        }
        self.clients.retain(|(_, t)| !t.is_terminated());
        if retried {
            // The new transactions' first sends.
            for (_, t) in &mut self.clients {
                while let Some(o) = t.poll_output() {
                    if let ClientOutput::Transmit(m) = o {
                        self.out.push_back(CallOutput::Transmit(m));
                    }
                }
            }
        }
        if let Some(code) = refer_answer {
            self.refer = None;
            if (200..300).contains(&code) {
                self.out.push_back(CallOutput::Event(CallEvent::TransferAccepted));
            } else {
                self.transferring = false;
                self.out.push_back(CallOutput::Event(CallEvent::TransferFailed { code }));
            }
        }
        if dtmf_done && let Some((_, sent)) = self.dtmf_in_flight.take() {
            // Next digit: after the answer, and not before this tone and the gap are over.
            self.dtmf_next_at = Some((sent + self.dtmf_duration + self.dtmf_gap).max(now));
        }
        for (_, t) in &mut self.servers {
            while let Some(ServerOutput::Transmit(m)) = t.poll_output() {
                self.out.push_back(CallOutput::Transmit(m));
            }
        }
        self.servers.retain(|(_, t)| !t.is_terminated());

        for r in responses {
            self.on_invite_response(now, r);
        }
        if invite_timeout {
            self.end("timeout", Some(408));
        }
    }

    fn on_reinvite_result(&mut self, now: Instant, key: TransactionKey, r: Option<Response>, hold: bool) {
        let code = r.as_ref().map_or(408, |r| r.status_code.code());
        match (code, r) {
            (200..=299, Some(r)) => {
                if let Some(ack) = self.ack_for_2xx(self.reinvite_cseq) {
                    self.out.push_back(CallOutput::Transmit(SipMessage::Request(ack.clone())));
                    self.reinvite_ack = Some((key, ack));
                }
                let answer = sdp::parse(&r.body).ok();
                let peer = answer.as_ref().map_or(sdp::Direction::SendRecv, |m| m.direction);
                if let Some(n) = answer.and_then(|a| sdp::accept_answer(&self.media, &a).ok()) {
                    self.negotiated = Some(n);
                }
                if self.local_hold != hold {
                    self.local_hold = hold;
                    self.out.push_back(CallOutput::Event(CallEvent::LocalHold { held: hold, peer }));
                }
                // Any accepted re-INVITE refreshes the session.
                if self.session.is_some() {
                    self.session = session_timer::from_answer(now, &r, true).or(self.session.take()).map(|mut s| {
                        s.refreshed(now);
                        s
                    });
                }
            }
            (401 | 407, Some(r)) => {
                let request = self.reinvite_request.clone();
                let retry = request.and_then(|req| self.with_credentials(&req, &r, self.local_cseq + 1));
                match retry {
                    Some(invite) => {
                        self.local_cseq += 1;
                        self.reinvite_cseq = self.local_cseq;
                        if let (Ok(k), Ok(txn)) = (
                            TransactionKey::for_client(&invite),
                            ClientTransaction::new(now, invite.clone(), self.ep.transport.reliable(), self.ep.timers),
                        ) {
                            self.reinvite_request = Some(invite);
                            self.reinvite = Some((k, txn, hold));
                            self.drain(now);
                        }
                    }
                    None => self.hold_refused(code),
                }
            }
            (491, _) => {
                // §14.1: the Call-ID owner (the caller) waits 2.1–4 s, the other 0–2 s.
                let spread = u64::from_str_radix(self.ids.token().get(..4).unwrap_or("0"), 16).unwrap_or(0);
                let wait = if self.outbound { 2100 + spread % 1900 } else { spread % 2000 };
                self.reinvite_retry = Some((now + Duration::from_millis(wait), hold));
            }
            (408 | 481, _) => {
                // The dialog is gone (§12.2.1.2).
                self.send_bye(now);
                self.end("failed", Some(code));
            }
            // A refused refresh changes nothing the agent sees; the next one comes later.
            (_, _) if self.reinvite_refresh => {}
            (code, _) => self.hold_refused(code),
        }
    }

    fn hold_refused(&mut self, code: u16) {
        self.media.direction = if self.local_hold { sdp::Direction::SendOnly } else { sdp::Direction::SendRecv };
        self.out.push_back(CallOutput::Event(CallEvent::HoldFailed { code }));
    }

    /// Answers a 401/407 to our INVITE (the transaction already ACKed it):
    /// the same INVITE with the next CSeq, a new branch and credentials for the
    /// strongest challenge. `false` when we have no password, the challenge
    /// is unusable, or credentials were already refused once.
    fn resend_invite_with_credentials(&mut self, now: Instant, r: &Response) -> bool {
        if self.auth_attempts >= 1 {
            return false;
        }
        let (seq, _) = message::cseq(&self.invite).unwrap_or((1, Method::Invite));
        let invite = self.invite.clone();
        let Some(invite) = self.with_credentials(&invite, r, seq + 1) else { return false };
        let sent = self.send_new_invite(now, invite, seq + 1);
        if sent {
            self.auth_attempts += 1;
        }
        sent
    }

    /// Sends `invite` (CSeq `seq`) in place of the INVITE that was refused;
    /// the old transaction keeps absorbing retransmissions of the refusal.
    fn send_new_invite(&mut self, now: Instant, invite: Request, seq: u32) -> bool {
        let Ok(key) = TransactionKey::for_client(&invite) else { return false };
        let Ok(txn) = ClientTransaction::new(now, invite.clone(), self.ep.transport.reliable(), self.ep.timers) else {
            return false;
        };
        self.local_cseq = seq;
        self.invite = invite;
        if let Some(old) = self.invite_client.replace((key, txn)) {
            self.clients.push(old);
        }
        self.drain(now);
        true
    }

    /// Answers a 422 (Session Interval Too Small, RFC 4028 §8.1.1): the
    /// INVITE again with the Min-SE the answerer asked for, once.
    fn resend_invite_with_interval(&mut self, now: Instant, r: &Response) -> bool {
        let Some(min) = session_timer::min_se(&r.headers).filter(|m| (MIN_SE..=86_400).contains(m)) else {
            return false;
        };
        if self.interval_raised {
            return false;
        }
        let (seq, _) = message::cseq(&self.invite).unwrap_or((1, Method::Invite));
        let mut invite = self.reissued(&self.invite.clone(), seq + 1);
        invite.headers.retain(|h| !matches!(h, Header::Other(n, _) if n.eq_ignore_ascii_case("session-expires") || n.eq_ignore_ascii_case("min-se") || n.eq_ignore_ascii_case("x")));
        invite.headers.push(Header::Other("Session-Expires".into(), min.to_string()));
        invite.headers.push(Header::Other("Min-SE".into(), min.to_string()));
        let sent = self.send_new_invite(now, invite, seq + 1);
        self.interval_raised |= sent;
        sent
    }

    /// `request` with CSeq `seq` and a new branch: the same request as a new transaction.
    fn reissued(&mut self, request: &Request, seq: u32) -> Request {
        let mut out = request.clone();
        out.headers.retain(|h| !matches!(h, Header::Via(_) | Header::CSeq(_)));
        let branch = format!("{BRANCH_COOKIE}{}", self.ids.token());
        let mut headers = rsip::Headers::default();
        headers.push(Header::Via(rsip::headers::Via::new(self.ep.via(&branch))));
        headers.push(Header::CSeq(rsip::typed::CSeq { seq, method: request.method }.into()));
        for h in out.headers.iter() {
            headers.push(h.clone());
        }
        out.headers = headers;
        out
    }

    /// `request` again with CSeq `seq`, a new branch and credentials for the
    /// strongest challenge in `r` (RFC 3261 §22.2, §22.3). `None` without a
    /// password or a usable challenge, or when `request` already carried
    /// credentials: a second refusal is final.
    fn with_credentials(&mut self, request: &Request, r: &Response, seq: u32) -> Option<Request> {
        let password = self.password.clone()?;
        let carried =
            request.headers.iter().any(|h| matches!(h, Header::Authorization(_) | Header::ProxyAuthorization(_)));
        if carried {
            return None;
        }
        let (challenge, proxy) = crate::auth::Challenge::from_response(r).ok()?;
        let method = request.method.to_string();
        let uri = request.uri.to_string();
        let cnonce = self.ids.token();
        let value = challenge.authorization(&self.ep.username, &password, &method, &uri, &cnonce, 1);
        let mut out = self.reissued(request, seq);
        let credentials = if proxy {
            Header::ProxyAuthorization(rsip::headers::ProxyAuthorization::new(value))
        } else {
            Header::Authorization(rsip::headers::Authorization::new(value))
        };
        // After Via and CSeq, before the rest (any position is valid).
        let mut headers = rsip::Headers::default();
        for (i, h) in out.headers.iter().enumerate() {
            if i == 2 {
                headers.push(credentials.clone());
            }
            headers.push(h.clone());
        }
        out.headers = headers;
        Some(out)
    }

    /// A 401/407 to one of our in-dialog requests (BYE, REFER, INFO, NOTIFY):
    /// the request again with credentials, as a new transaction that takes
    /// over the old one's role. `false` when it cannot be retried.
    fn retry_in_dialog_with_credentials(&mut self, now: Instant, key: &TransactionKey, r: &Response) -> bool {
        let Some(request) = self.clients.iter().find(|(k, _)| k == key).map(|(_, t)| t.request().clone()) else {
            return false;
        };
        let Some(retry) = self.with_credentials(&request, r, self.local_cseq + 1) else { return false };
        let (Ok(new_key), Ok(txn)) = (
            TransactionKey::for_client(&retry),
            ClientTransaction::new(now, retry, self.ep.transport.reliable(), self.ep.timers),
        ) else {
            return false;
        };
        self.local_cseq += 1;
        if self.refer.as_ref() == Some(key) {
            self.refer = Some(new_key.clone());
        }
        if let Some((k, _)) = &mut self.dtmf_in_flight
            && k == key
        {
            *k = new_key.clone();
        }
        self.clients.push((new_key, txn));
        true
    }

    fn on_invite_response(&mut self, now: Instant, r: Response) {
        let code = r.status_code.code();
        match code {
            100 => {}
            101..=199 => {
                self.provisional_seen = true;
                if self.cancel_wanted {
                    self.send_cancel(now);
                    self.drain(now);
                } else if self.state == CallState::Calling || self.state == CallState::Ringing {
                    self.state = CallState::Ringing;
                    self.out.push_back(CallOutput::Event(CallEvent::Progress { code }));
                }
            }
            200..=299 => {
                let first = self.ack.is_none();
                if first {
                    self.remote_tag = r.to_header().ok().and_then(|t| tag_of(t.value()));
                    if let Some(c) = contact_uri(&r) {
                        self.remote_target = c;
                    }
                    let mut routes = record_routes(&r);
                    routes.reverse();
                    self.route_set = routes;
                    if let Ok(answer) = sdp::parse(&r.body) {
                        match sdp::accept_answer(&self.media, &answer) {
                            Ok(n) => self.negotiated = Some(n),
                            Err(sdp::SdpError::SecureMediaRequired) => self.media_refused = true,
                            Err(_) => self.negotiated = None,
                        }
                    }
                    self.session = session_timer::from_answer(now, &r, true);
                    self.ack = self.ack_for_2xx(message::cseq(&self.invite).map_or(1, |(n, _)| n));
                }
                if let Some(ack) = self.ack.clone() {
                    self.out.push_back(CallOutput::Transmit(SipMessage::Request(ack)));
                }
                if first {
                    if self.cancel_wanted {
                        // The 200 crossed our CANCEL: end the call properly (§9.1).
                        self.send_bye(now);
                        self.drain(now);
                        self.end("cancelled", None);
                    } else if self.media_refused {
                        // "Secure only" and the answer has no SRTP: no audio
                        // goes out in the clear; the call ends at once.
                        self.send_bye(now);
                        self.drain(now);
                        self.end("secure-media-refused", None);
                    } else {
                        self.state = CallState::Confirmed;
                        self.out.push_back(CallOutput::Event(CallEvent::Answered));
                        self.out.push_back(CallOutput::Event(CallEvent::Confirmed));
                    }
                }
            }
            422 if !self.cancel_wanted && self.state != CallState::Ended => {
                if !self.resend_invite_with_interval(now, &r) {
                    self.end("rejected", Some(code));
                }
            }
            401 | 407 if !self.cancel_wanted && self.state != CallState::Ended => {
                if !self.resend_invite_with_credentials(now, &r) {
                    self.end("rejected", Some(code));
                }
            }
            // A secure-only offer (RTP/SAVP) the peer cannot take.
            488 if self.media.srtp == sdp::SrtpPolicy::Required => self.end("secure-media-refused", Some(code)),
            _ => {
                let reason = match code {
                    487 => "cancelled",
                    486 | 600 => "busy",
                    408 | 480 => "no-answer",
                    _ => "rejected",
                };
                self.end(reason, Some(code));
            }
        }
    }
}

/// Session-Expires (and Require: timer when the peer supports it) on a 2xx.
fn add_session_headers(headers: &mut rsip::Headers, se: SessionExpires, peer_supports_timer: bool) {
    headers.push(Header::Other("Session-Expires".into(), se.to_header_value()));
    if peer_supports_timer {
        headers.push(Header::Require(rsip::headers::Require::new("timer")));
    }
}

/// Replaces a message's body with SDP, with Content-Type, Content-Length and Contact.
fn set_sdp_body(headers: &mut rsip::Headers, body: &mut Vec<u8>, sdp_text: String, contact: &str) {
    headers.retain(|h| !matches!(h, Header::ContentLength(_) | Header::ContentType(_) | Header::Contact(_)));
    headers.push(Header::Contact(rsip::headers::Contact::new(contact)));
    headers.push(Header::ContentType(rsip::headers::ContentType::new("application/sdp")));
    headers.push(Header::ContentLength(rsip::headers::ContentLength::from(sdp_text.len() as u32)));
    *body = sdp_text.into_bytes();
}

/// Longest auto-answer delay a PBX may ask for.
const MAX_AUTO_ANSWER: Duration = Duration::from_secs(60);

/// The auto-answer an INVITE asks for: `Call-Info: <…>;answer-after=N`
/// (seconds), or an `Alert-Info` with `info=alert-autoanswer` /
/// `auto-answer` (at once). Delays are capped at one minute.
pub fn auto_answer_hint(invite: &Request) -> Option<Duration> {
    for h in invite.headers.iter() {
        match h {
            Header::CallInfo(v) => {
                let after = v.value().split(';').find_map(|p| p.trim().strip_prefix("answer-after="));
                if let Some(secs) = after.and_then(|s| s.trim().parse::<u64>().ok()) {
                    return Some(Duration::from_secs(secs).min(MAX_AUTO_ANSWER));
                }
            }
            Header::AlertInfo(v) => {
                let v = v.value().to_ascii_lowercase();
                if v.contains("alert-autoanswer") || v.contains("auto-answer") || v.contains("autoanswer") {
                    return Some(Duration::ZERO);
                }
            }
            _ => {}
        }
    }
    None
}

/// `tag` parameter of a From/To value.
fn tag_of(value: &str) -> Option<String> {
    let params = value.rsplit_once('>').map_or(value, |(_, p)| p);
    params.split(';').find_map(|p| p.trim().strip_prefix("tag=")).map(|t| t.trim().to_owned())
}

/// The URI inside `<…>` (or up to the first `;`).
fn uri_of(value: &str) -> String {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => value[a + 1..b].to_owned(),
        _ => value.split(';').next().unwrap_or(value).trim().to_owned(),
    }
}

fn contact_uri(m: &impl HeadersExt) -> Option<String> {
    m.headers().iter().find_map(|h| match h {
        Header::Contact(c) => Some(uri_of(c.value())),
        _ => None,
    })
}

/// Record-Route entries in message order (each `<uri;lr>`), split at commas.
fn record_routes(m: &impl HeadersExt) -> Vec<String> {
    let mut out = Vec::new();
    for h in m.headers().iter() {
        if let Header::RecordRoute(r) = h {
            for part in r.value().split(',') {
                let part = part.trim();
                if !part.is_empty() {
                    out.push(if part.starts_with('<') { part.to_owned() } else { format!("<{part}>") });
                }
            }
        }
    }
    out
}

/// A 488 that says why when the reason is SRTP (RFC 3261 §20.43: a
/// Warning the caller's phone can show).
fn not_acceptable(mut response: Response, error: &sdp::SdpError) -> Response {
    let text = match error {
        sdp::SdpError::SecureMediaRequired => "secure media (SRTP) required",
        sdp::SdpError::NoCommonCrypto => "no common SRTP crypto suite",
        _ => return response,
    };
    response.headers.push(Header::Other("Warning".into(), format!("399 agent-helper \"{text}\"")));
    response
}
