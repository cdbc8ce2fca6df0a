//! Client transactions (RFC 3261 §17.1, RFC 6026 §7.2).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rsip::{Method, Request, Response, SipMessage};

use super::{Timers, TransactionError};
use crate::message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// INVITE sent, nothing heard yet.
    Calling,
    /// Non-INVITE sent, nothing heard yet.
    Trying,
    Proceeding,
    /// Final non-2xx received; absorbing its retransmissions.
    Completed,
    /// 2xx to INVITE received; passing 2xx retransmissions to the TU (RFC 6026).
    Accepted,
    Terminated,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientOutput {
    /// Send on the transaction's transport: the request, a retransmission, or
    /// the ACK of a non-2xx final response.
    Transmit(SipMessage),
    /// For the transaction user: a provisional or final response (and, in
    /// Accepted, each 2xx retransmission, which the TU ACKs).
    Response(Response),
    /// Timer B or F fired without a final response: report 408 to the TU.
    Timeout,
}

pub struct ClientTransaction {
    invite: bool,
    state: ClientState,
    request: Request,
    reliable: bool,
    timers: Timers,
    /// Timer A (INVITE) or E (non-INVITE).
    retransmit_at: Option<Instant>,
    retransmit_interval: Duration,
    /// Timer B or F.
    timeout_at: Option<Instant>,
    /// Timer D, K or M: end of absorbing retransmissions.
    end_at: Option<Instant>,
    ack: Option<Request>,
    out: VecDeque<ClientOutput>,
}

impl ClientTransaction {
    /// Starts the transaction: the request is queued for transmission.
    /// Use a separate transaction for the ACK of a 2xx and for CANCEL.
    pub fn new(now: Instant, request: Request, reliable: bool, timers: Timers) -> Result<Self, TransactionError> {
        // The key must be readable now: every later response is matched by it.
        message::branch(&request)?;
        message::cseq(&request)?;
        let invite = request.method == Method::Invite;
        let mut t = ClientTransaction {
            invite,
            state: if invite { ClientState::Calling } else { ClientState::Trying },
            request,
            reliable,
            timers,
            retransmit_at: (!reliable).then(|| now + timers.t1),
            retransmit_interval: timers.t1,
            timeout_at: Some(now + timers.sixty_four_t1()),
            end_at: None,
            ack: None,
            out: VecDeque::new(),
        };
        t.out.push_back(ClientOutput::Transmit(SipMessage::Request(t.request.clone())));
        Ok(t)
    }

    // ----- getters -----

    pub fn state(&self) -> ClientState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientState::Terminated
    }

    pub fn request(&self) -> &Request {
        &self.request
    }

    // ----- inputs -----

    /// A response whose key matched this transaction.
    pub fn handle_response(&mut self, now: Instant, response: Response) {
        let code = response.status_code.code();
        match (self.invite, self.state) {
            (true, ClientState::Calling | ClientState::Proceeding) => match code {
                100..=199 => {
                    self.state = ClientState::Proceeding;
                    self.retransmit_at = None;
                    self.out.push_back(ClientOutput::Response(response));
                }
                200..=299 => {
                    self.state = ClientState::Accepted;
                    self.retransmit_at = None;
                    self.timeout_at = None;
                    self.end_at = Some(now + self.timers.sixty_four_t1()); // Timer M
                    self.out.push_back(ClientOutput::Response(response));
                }
                _ => {
                    // A final response we cannot ACK is no final response: keep waiting (Timer B).
                    if let Ok(ack) = message::ack_for(&self.request, &response) {
                        self.out.push_back(ClientOutput::Transmit(SipMessage::Request(ack.clone())));
                        self.ack = Some(ack);
                        self.out.push_back(ClientOutput::Response(response));
                        self.retransmit_at = None;
                        self.timeout_at = None;
                        let wait = if self.reliable { Duration::ZERO } else { Duration::from_secs(32) }; // Timer D
                        self.finish_after(now, wait, ClientState::Completed);
                    }
                }
            },
            (true, ClientState::Completed) if code >= 300 => {
                if let Some(ack) = &self.ack {
                    self.out.push_back(ClientOutput::Transmit(SipMessage::Request(ack.clone())));
                }
            }
            (true, ClientState::Accepted) if (200..=299).contains(&code) => {
                self.out.push_back(ClientOutput::Response(response));
            }
            (false, ClientState::Trying | ClientState::Proceeding) => {
                if code < 200 {
                    self.state = ClientState::Proceeding;
                } else {
                    self.retransmit_at = None;
                    self.timeout_at = None;
                    let wait = if self.reliable { Duration::ZERO } else { self.timers.t4 }; // Timer K
                    self.finish_after(now, wait, ClientState::Completed);
                }
                self.out.push_back(ClientOutput::Response(response));
            }
            // Late or stray responses are absorbed.
            _ => {}
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timeout_at.is_some_and(|t| t <= now) {
            self.state = ClientState::Terminated;
            self.clear_timers();
            self.out.push_back(ClientOutput::Timeout);
            return;
        }
        if let Some(at) = self.retransmit_at.filter(|t| *t <= now) {
            self.out.push_back(ClientOutput::Transmit(SipMessage::Request(self.request.clone())));
            self.retransmit_interval = match (self.invite, self.state) {
                (true, _) => self.retransmit_interval * 2,
                (false, ClientState::Proceeding) => self.timers.t2,
                (false, _) => (self.retransmit_interval * 2).min(self.timers.t2),
            };
            // From the deadline, not from `now`, so a late wake-up does not stretch the schedule.
            self.retransmit_at = Some(at + self.retransmit_interval);
        }
        if self.end_at.is_some_and(|t| t <= now) {
            self.state = ClientState::Terminated;
            self.clear_timers();
        }
    }

    // ----- outputs -----

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.retransmit_at, self.timeout_at, self.end_at].into_iter().flatten().min()
    }

    #[must_use]
    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.out.pop_front()
    }

    fn finish_after(&mut self, now: Instant, wait: Duration, state: ClientState) {
        if wait.is_zero() {
            self.state = ClientState::Terminated;
            self.clear_timers();
        } else {
            self.state = state;
            self.end_at = Some(now + wait);
        }
    }

    fn clear_timers(&mut self) {
        self.retransmit_at = None;
        self.timeout_at = None;
        self.end_at = None;
    }
}
