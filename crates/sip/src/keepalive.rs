//! Keeping the path to the SIP server alive and noticing when it is gone,
//! sans-IO.
//!
//! - TCP and TLS: a double-CRLF "ping" every interval; once the server has
//!   answered one with a CRLF "pong", every later pong must come within
//!   [`PONG_TIMEOUT`] (RFC 5626 §4.4.1). A server that has never ponged may
//!   not implement RFC 5626: a missing pong then switches to OPTIONS on the
//!   stream, as for UDP. A server that closes the connection is noticed by
//!   the driver without our help; a half-open one only this way.
//! - UDP: an OPTIONS request to the server every interval; any response at
//!   all proves it alive, no answer by Timer F (32 s) declares it dead. The
//!   traffic also keeps a NAT binding open between registrations.
//!
//! Either way the server's view of our address (`received` / `rport` of the
//! top Via in its answers, RFC 3581) is reported when it differs from ours,
//! so the driver can register the address the server actually sees.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rsip::{Request, Response, SipMessage};

use crate::ids::Ids;
use crate::message::BRANCH_COOKIE;
use crate::registration::Transport;
use crate::transaction::{ClientOutput, ClientTransaction, Timers, TransactionKey};

/// How long a pong may take (RFC 5626 §4.4.1 suggests 10 s).
pub const PONG_TIMEOUT: Duration = Duration::from_secs(10);

/// The double-CRLF ping for TCP and TLS.
pub const PING: &[u8] = b"\r\n\r\n";

#[derive(Debug, Clone)]
pub struct KeepAliveConfig {
    pub transport: Transport,
    pub interval: Duration,
    /// Request-URI of the OPTIONS (`sip:host:port` of the server).
    pub server_uri: String,
    /// `user@domain` of the account, for From and To.
    pub aor: String,
    /// Our `host:port` for Via.
    pub local: String,
    pub user_agent: String,
    pub timers: Timers,
}

#[derive(Debug, Clone, PartialEq)]
pub enum KeepAliveOutput {
    /// Send [`PING`] on the stream.
    Ping,
    Transmit(SipMessage),
    /// The server has stopped answering: move on.
    Dead,
    /// The server sees us at this `host:port`, not at the one we use.
    Observed(String),
}

pub struct KeepAlive {
    cfg: KeepAliveConfig,
    ids: Box<dyn Ids>,
    call_id: String,
    from_tag: String,
    cseq: u32,
    next_at: Instant,
    /// A ping is out; the pong must come by then.
    pong_by: Option<Instant>,
    /// The server has answered a ping: it does RFC 5626 pongs.
    pongs_seen: bool,
    /// Probe with OPTIONS (UDP, or a stream whose server does not pong).
    use_options: bool,
    options: Option<(TransactionKey, ClientTransaction)>,
    dead: bool,
    out: VecDeque<KeepAliveOutput>,
}

impl KeepAlive {
    pub fn new(now: Instant, cfg: KeepAliveConfig, mut ids: Box<dyn Ids>) -> KeepAlive {
        let call_id = ids.token();
        let from_tag = ids.token();
        KeepAlive {
            next_at: now + cfg.interval,
            use_options: !cfg.transport.reliable(),
            cfg,
            ids,
            call_id,
            from_tag,
            cseq: 0,
            pong_by: None,
            pongs_seen: false,
            options: None,
            dead: false,
            out: VecDeque::new(),
        }
    }

    /// Our `host:port` for Via from now on (learned behind a NAT).
    pub fn set_local(&mut self, local: &str) {
        self.cfg.local = local.to_owned();
    }

    // ----- inputs -----

    /// A CRLF pong arrived on the stream.
    pub fn handle_pong(&mut self) {
        self.pongs_seen = true;
        self.pong_by = None;
    }

    /// A message arrived from the server: the path works.
    pub fn handle_traffic(&mut self) {
        self.pong_by = None;
    }

    /// Whether `response` answers our OPTIONS.
    pub fn owns_response(&self, response: &Response) -> bool {
        let Ok(key) = TransactionKey::for_response(response) else { return false };
        self.options.as_ref().is_some_and(|(k, _)| *k == key)
    }

    /// A response from the network; `false` when it is not for our OPTIONS.
    pub fn handle_response(&mut self, now: Instant, response: Response) -> bool {
        let Ok(key) = TransactionKey::for_response(&response) else { return false };
        match &mut self.options {
            Some((k, txn)) if *k == key => txn.handle_response(now, response),
            _ => return false,
        }
        self.drain(now);
        true
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.dead {
            return;
        }
        if let Some((_, txn)) = &mut self.options
            && txn.poll_timeout().is_some_and(|t| t <= now)
        {
            txn.handle_timeout(now);
            self.drain(now);
        }
        if self.pong_by.is_some_and(|t| t <= now) {
            self.pong_by = None;
            if self.pongs_seen {
                self.die();
                return;
            }
            // No RFC 5626 here, it seems: ask with OPTIONS instead, now and from now on.
            self.use_options = true;
            self.next_at = now;
        }
        if self.next_at <= now {
            self.next_at = now + self.cfg.interval;
            if !self.use_options {
                // A ping still waiting for its pong keeps its deadline.
                if self.pong_by.is_none() {
                    self.pong_by = Some(now + PONG_TIMEOUT);
                    self.out.push_back(KeepAliveOutput::Ping);
                }
            } else if self.options.is_none() {
                self.send_options(now);
            }
        }
    }

    // ----- outputs -----

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.dead {
            return None;
        }
        let txn = self.options.as_ref().and_then(|(_, t)| t.poll_timeout());
        [Some(self.next_at), self.pong_by, txn].into_iter().flatten().min()
    }

    #[must_use]
    pub fn poll_output(&mut self) -> Option<KeepAliveOutput> {
        self.out.pop_front()
    }

    // ----- internals -----

    fn die(&mut self) {
        if !self.dead {
            self.dead = true;
            self.out.push_back(KeepAliveOutput::Dead);
        }
    }

    fn send_options(&mut self, now: Instant) {
        self.cseq += 1;
        let c = &self.cfg;
        let branch = format!("{BRANCH_COOKIE}{}", self.ids.token());
        let text = format!(
            "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/{t} {local};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: <sip:{aor}>;tag={tag}\r\nTo: <sip:{aor}>\r\nCall-ID: {cid}\r\nCSeq: {seq} OPTIONS\r\n\
             Accept: application/sdp\r\nUser-Agent: {ua}\r\nContent-Length: 0\r\n\r\n",
            uri = c.server_uri,
            t = c.transport.via_name(),
            local = c.local,
            aor = c.aor,
            tag = self.from_tag,
            cid = self.call_id,
            seq = self.cseq,
            ua = c.user_agent,
        );
        let built = Request::try_from(text.as_str())
            .ok()
            .and_then(|req| ClientTransaction::new(now, req, c.transport.reliable(), c.timers).ok())
            .and_then(|t| TransactionKey::for_client(t.request()).ok().map(|k| (k, t)));
        if let Some(pair) = built {
            self.options = Some(pair);
            self.drain(now);
        }
    }

    fn drain(&mut self, _now: Instant) {
        let Some((_, txn)) = &mut self.options else { return };
        let mut timed_out = false;
        let mut answered = None;
        while let Some(o) = txn.poll_output() {
            match o {
                ClientOutput::Transmit(m) => self.out.push_back(KeepAliveOutput::Transmit(m)),
                ClientOutput::Response(r) => answered = Some(r),
                ClientOutput::Timeout => timed_out = true,
            }
        }
        if txn.is_terminated() || answered.as_ref().is_some_and(|r| r.status_code.code() >= 200) {
            self.options = None;
        }
        if let Some(r) = answered
            && let Some(seen) = observed_address(&r)
            && seen != self.cfg.local
        {
            self.out.push_back(KeepAliveOutput::Observed(seen));
        }
        if timed_out {
            self.die();
        }
    }
}

/// `host:port` the server saw our request come from: `received` and `rport`
/// of the top Via (RFC 3581 §4), when it filled them in.
pub fn observed_address(r: &Response) -> Option<String> {
    let via = crate::message::top_via(r).ok()?;
    let mut received = None;
    let mut rport = None;
    for p in &via.params {
        match p {
            rsip::Param::Received(v) => received = Some(v.value().to_string()),
            rsip::Param::Other(name, Some(v)) if name.value().eq_ignore_ascii_case("rport") => {
                rport = v.value().parse::<u16>().ok();
            }
            _ => {}
        }
    }
    let port = rport.or_else(|| via.uri.host_with_port.port.map(|p| *p.value()))?;
    let host = received.unwrap_or_else(|| via.uri.host_with_port.host.to_string());
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host };
    Some(format!("{host}:{port}"))
}
