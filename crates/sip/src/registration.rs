//! Registration of one binding with one registrar (RFC 3261 §10), sans-IO.
//!
//! - Digest challenges (401 / 407) are answered; the last challenge is reused
//!   for refreshes (with the next `nc`), so a healthy refresh is one round trip.
//! - Three consecutive rejections of our credentials stop it in
//!   [`Failure::AuthFailed`]: a registrar is never hammered with a wrong
//!   password. `stale=true` challenges do not count. New credentials start over.
//! - The binding is refreshed before it expires (at the granted expiry minus
//!   half of it, at most 30 s early). `423 Interval Too Brief` raises the
//!   requested expiry to `Min-Expires`.
//! - Any other failure (rejection, no answer) is retried after a back-off
//!   that doubles from `reconnect_min` to `reconnect_max`.
//!
//! - The `received`/`rport` of the registrar's answer (RFC 3581) is our
//!   address as the registrar sees it; when it differs from ours (a NAT), the
//!   binding is registered again with that address.
//!
//! Failing over to another server is the driver's decision: it sees
//! [`RegistrationState::Failed`] and may start a registration elsewhere.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rsip::prelude::UntypedHeader;
use rsip::{Header, Request, Response, SipMessage};
use zeroize::Zeroizing;

use crate::auth::Challenge;
use crate::ids::Ids;
use crate::transaction::{ClientOutput, ClientTransaction, Timers, TransactionKey};

/// Consecutive rejections of the same credentials before giving up.
pub const MAX_AUTH_FAILURES: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    pub fn param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// TCP and TLS deliver or fail; nothing is retransmitted over them.
    pub fn reliable(self) -> bool {
        self != Transport::Udp
    }
}

#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// User part of the address of record, also the digest username.
    pub username: String,
    /// Domain of the address of record (`sip:username@domain`); the Request-URI.
    pub domain: String,
    pub transport: Transport,
    /// Our `host:port` for Via sent-by and Contact.
    pub local: String,
    /// Expiry asked for, in seconds.
    pub expires: u32,
    pub user_agent: String,
    /// Extra headers (already validated: token names, one-line values).
    pub extra_headers: Vec<(String, String)>,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub timers: Timers,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The registrar rejected our credentials [`MAX_AUTH_FAILURES`] times in a row.
    AuthFailed,
    /// No final response (Timer F).
    Timeout,
    /// A final response other than success or a usable challenge.
    Rejected { code: u16, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationState {
    Unregistered,
    Registering,
    /// Bound for `expires` seconds (as granted by the registrar).
    Registered {
        expires: u32,
    },
    Unregistering,
    Failed(Failure),
}

#[derive(Debug, Clone, PartialEq)]
pub enum RegistrationOutput {
    /// Send to the registrar over the configured transport.
    Transmit(SipMessage),
    StateChanged(RegistrationState),
    /// The registrar sees us at this `host:port` (behind a NAT): the binding
    /// now uses it, and so should Via and Contact of everything else.
    AddressChanged(String),
}

pub struct Registration {
    cfg: RegistrationConfig,
    password: Zeroizing<String>,
    ids: Box<dyn Ids>,
    call_id: String,
    from_tag: String,
    cseq: u32,
    expires: u32,
    state: RegistrationState,
    txn: Option<(TransactionKey, ClientTransaction)>,
    /// The transaction in flight removes the binding (Expires: 0).
    removing: bool,
    sent_with_auth: bool,
    challenge: Option<(Challenge, bool)>,
    nc: u32,
    auth_failures: u32,
    refresh_at: Option<Instant>,
    retry_at: Option<Instant>,
    backoff: Duration,
    out: VecDeque<RegistrationOutput>,
}

impl Registration {
    pub fn new(cfg: RegistrationConfig, password: &str, mut ids: Box<dyn Ids>) -> Self {
        let call_id = ids.token();
        let from_tag = ids.token();
        Registration {
            expires: cfg.expires,
            backoff: cfg.reconnect_min,
            cfg,
            password: Zeroizing::new(password.to_owned()),
            ids,
            call_id,
            from_tag,
            cseq: 0,
            state: RegistrationState::Unregistered,
            txn: None,
            removing: false,
            sent_with_auth: false,
            challenge: None,
            nc: 0,
            auth_failures: 0,
            refresh_at: None,
            retry_at: None,
            out: VecDeque::new(),
        }
    }

    // ----- getters -----

    pub fn state(&self) -> &RegistrationState {
        &self.state
    }

    /// Requests sent so far that carried credentials (for tests and logs).
    pub fn auth_failures(&self) -> u32 {
        self.auth_failures
    }

    // ----- mutators -----

    /// Starts (or restarts) registering, forgetting earlier failures.
    pub fn start(&mut self, now: Instant) {
        self.auth_failures = 0;
        self.backoff = self.cfg.reconnect_min;
        self.retry_at = None;
        self.set_state(RegistrationState::Registering);
        self.send(now, false);
    }

    /// New credentials: the next attempt starts a fresh count of failures.
    pub fn set_password(&mut self, password: &str) {
        self.password = Zeroizing::new(password.to_owned());
        self.auth_failures = 0;
    }

    /// Registers `address` (`host:port`, as the server sees us) as our
    /// contact from now on, at once when a binding exists.
    pub fn use_address(&mut self, now: Instant, address: &str) {
        if address == self.cfg.local || self.removing {
            return;
        }
        self.cfg.local = address.to_owned();
        self.out.push_back(RegistrationOutput::AddressChanged(address.to_owned()));
        if matches!(self.state, RegistrationState::Registered { .. }) && self.txn.is_none() {
            self.refresh_at = None;
            self.send(now, false);
        }
    }

    /// Removes the binding (REGISTER with Expires: 0) when there is one;
    /// otherwise just stops.
    pub fn stop(&mut self, now: Instant) {
        self.refresh_at = None;
        self.retry_at = None;
        if matches!(self.state, RegistrationState::Registered { .. }) {
            self.set_state(RegistrationState::Unregistering);
            self.send(now, true);
        } else {
            self.txn = None;
            self.set_state(RegistrationState::Unregistered);
        }
    }

    // ----- inputs -----

    /// A response from the network; `false` when it is not ours.
    pub fn handle_response(&mut self, now: Instant, response: Response) -> bool {
        let Ok(key) = TransactionKey::for_response(&response) else { return false };
        match &mut self.txn {
            Some((k, txn)) if *k == key => txn.handle_response(now, response),
            _ => return false,
        }
        self.drain_transaction(now);
        true
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((_, txn)) = &mut self.txn
            && txn.poll_timeout().is_some_and(|t| t <= now)
        {
            txn.handle_timeout(now);
            self.drain_transaction(now);
        }
        if self.refresh_at.is_some_and(|t| t <= now) {
            self.refresh_at = None;
            self.send(now, false);
        }
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
            self.set_state(RegistrationState::Registering);
            self.send(now, false);
        }
    }

    // ----- outputs -----

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let txn = self.txn.as_ref().and_then(|(_, t)| t.poll_timeout());
        [txn, self.refresh_at, self.retry_at].into_iter().flatten().min()
    }

    #[must_use]
    pub fn poll_output(&mut self) -> Option<RegistrationOutput> {
        self.out.pop_front()
    }

    // ----- internals -----

    fn set_state(&mut self, state: RegistrationState) {
        if self.state != state {
            self.state = state.clone();
            self.out.push_back(RegistrationOutput::StateChanged(state));
        }
    }

    fn drain_transaction(&mut self, now: Instant) {
        let Some((_, txn)) = &mut self.txn else { return };
        let mut finals = Vec::new();
        while let Some(o) = txn.poll_output() {
            match o {
                ClientOutput::Transmit(m) => self.out.push_back(RegistrationOutput::Transmit(m)),
                ClientOutput::Response(r) if r.status_code.code() >= 200 => finals.push(Ok(r)),
                ClientOutput::Response(_) => {}
                ClientOutput::Timeout => finals.push(Err(())),
            }
        }
        if self.txn.as_ref().is_some_and(|(_, t)| t.is_terminated()) {
            self.txn = None;
        }
        for f in finals {
            match f {
                Ok(r) => self.on_final(now, r),
                Err(()) => self.on_failure(now, Failure::Timeout),
            }
        }
    }

    fn on_final(&mut self, now: Instant, r: Response) {
        let code = r.status_code.code();
        match code {
            200..=299 if self.removing => self.set_state(RegistrationState::Unregistered),
            200..=299 => {
                // Behind a NAT the registrar saw another address than ours
                // (RFC 3581): register that one, or calls could not reach us.
                if let Some(seen) = crate::keepalive::observed_address(&r)
                    && seen != self.cfg.local
                {
                    self.cfg.local = seen.clone();
                    self.out.push_back(RegistrationOutput::AddressChanged(seen));
                    self.send(now, false);
                    return;
                }
                let granted = self.granted_expiry(&r).unwrap_or(self.expires);
                self.auth_failures = 0;
                self.backoff = self.cfg.reconnect_min;
                // Refresh early: half the binding, at most 30 s before it ends.
                let early = (granted / 2).min(30);
                self.refresh_at = Some(now + Duration::from_secs(u64::from(granted - early)));
                self.set_state(RegistrationState::Registered { expires: granted });
            }
            401 | 407 => {
                let (challenge, proxy) = match Challenge::from_response(&r) {
                    Ok(c) => c,
                    Err(e) => return self.on_failure(now, Failure::Rejected { code, reason: e.to_string() }),
                };
                if self.sent_with_auth && !challenge.stale {
                    self.auth_failures += 1;
                }
                if self.auth_failures >= MAX_AUTH_FAILURES {
                    self.challenge = None;
                    self.refresh_at = None;
                    self.retry_at = None;
                    // Never retried with these credentials.
                    self.set_state(RegistrationState::Failed(Failure::AuthFailed));
                    return;
                }
                self.challenge = Some((challenge, proxy));
                self.nc = 0;
                let removing = self.removing;
                self.send(now, removing);
            }
            423 => {
                let min = r.headers.iter().find_map(|h| match h {
                    Header::MinExpires(m) => m.value().trim().parse::<u32>().ok(),
                    _ => None,
                });
                match min {
                    Some(m) if m > self.expires && m <= 86_400 => {
                        self.expires = m;
                        self.send(now, false);
                    }
                    _ => self.on_failure(now, Failure::Rejected { code, reason: "Interval Too Brief".into() }),
                }
            }
            _ => {
                let reason = r.status_code.to_string();
                self.on_failure(now, Failure::Rejected { code, reason });
            }
        }
    }

    fn on_failure(&mut self, now: Instant, failure: Failure) {
        if self.removing {
            // Nothing to retry: the binding expires on its own.
            self.set_state(RegistrationState::Unregistered);
            return;
        }
        self.refresh_at = None;
        self.retry_at = Some(now + self.backoff);
        self.backoff = (self.backoff * 2).min(self.cfg.reconnect_max);
        self.set_state(RegistrationState::Failed(failure));
    }

    /// The expiry the registrar granted our contact: its `expires` parameter,
    /// else the Expires header.
    fn granted_expiry(&self, r: &Response) -> Option<u32> {
        let ours = format!("@{}", self.cfg.local);
        for h in r.headers.iter() {
            if let Header::Contact(c) = h {
                for contact in c.value().split(',') {
                    if !contact.contains(&ours) {
                        continue;
                    }
                    let expires = contact.split(';').find_map(|p| p.trim().strip_prefix("expires="));
                    if let Some(v) = expires.and_then(|v| v.trim().parse().ok()) {
                        return Some(v);
                    }
                }
            }
        }
        r.headers.iter().find_map(|h| match h {
            Header::Expires(e) => e.value().trim().parse().ok(),
            _ => None,
        })
    }

    fn send(&mut self, now: Instant, removing: bool) {
        self.removing = removing;
        self.cseq += 1;
        let c = &self.cfg;
        let user = escape_user(&c.username);
        let request_uri = format!("sip:{}", c.domain);
        let aor = format!("sip:{user}@{}", c.domain);
        let expires = if removing { 0 } else { self.expires };
        let branch = format!("{}{}", crate::message::BRANCH_COOKIE, self.ids.token());
        let mut text = format!(
            "REGISTER {request_uri} SIP/2.0\r\n\
             Via: SIP/2.0/{} {};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <{aor}>;tag={}\r\n\
             To: <{aor}>\r\n\
             Call-ID: {}\r\n\
             CSeq: {} REGISTER\r\n\
             Contact: <sip:{user}@{};transport={}>;expires={expires}\r\n\
             Expires: {expires}\r\n\
             Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY\r\n\
             User-Agent: {}\r\n",
            c.transport.via_name(),
            c.local,
            self.from_tag,
            self.call_id,
            self.cseq,
            c.local,
            c.transport.param(),
            c.user_agent,
        );
        self.sent_with_auth = false;
        if let Some((challenge, proxy)) = &self.challenge {
            self.nc += 1;
            let cnonce = self.ids.token();
            let value =
                challenge.authorization(&c.username, &self.password, "REGISTER", &request_uri, &cnonce, self.nc);
            let name = if *proxy { "Proxy-Authorization" } else { "Authorization" };
            text.push_str(&format!("{name}: {value}\r\n"));
            self.sent_with_auth = true;
        }
        for (name, value) in &c.extra_headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("Content-Length: 0\r\n\r\n");

        let built = Request::try_from(text.as_str()).map_err(|e| e.to_string()).and_then(|req| {
            ClientTransaction::new(now, req, c.transport.reliable(), c.timers).map_err(|e| e.to_string())
        });
        match built.and_then(|t| TransactionKey::for_client(t.request()).map(|k| (k, t)).map_err(|e| e.to_string())) {
            Ok(pair) => {
                self.txn = Some(pair);
                self.drain_transaction(now);
            }
            // Only a configuration the validator let through could do this.
            Err(e) => {
                self.on_failure(now, Failure::Rejected { code: 0, reason: format!("cannot build REGISTER: {e}") })
            }
        }
    }
}

/// RFC 3261 `user`: unreserved and user-unreserved characters as they are,
/// everything else percent-encoded (an email-style login becomes `a%40b.c`).
pub fn escape_user(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for b in user.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
