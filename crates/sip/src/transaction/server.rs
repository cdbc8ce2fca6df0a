//! Server transactions (RFC 3261 §17.2, RFC 6026 §7.1).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rsip::{Method, Request, Response, SipMessage, StatusCode};

use super::{Timers, TransactionError};
use crate::message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Non-INVITE received, no response yet.
    Trying,
    Proceeding,
    /// Final response sent (non-2xx for INVITE); retransmitting it / absorbing requests.
    Completed,
    /// INVITE only: the ACK for our non-2xx arrived.
    Confirmed,
    /// INVITE only: 2xx sent (RFC 6026); the TU retransmits 2xx until ACKed.
    Accepted,
    Terminated,
}

impl ServerState {
    fn name(self) -> &'static str {
        match self {
            ServerState::Trying => "Trying",
            ServerState::Proceeding => "Proceeding",
            ServerState::Completed => "Completed",
            ServerState::Confirmed => "Confirmed",
            ServerState::Accepted => "Accepted",
            ServerState::Terminated => "Terminated",
        }
    }
}

// Outputs are moved out once per message; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ServerOutput {
    /// Send to the request's source (per Via: received/rport, or the same connection).
    Transmit(SipMessage),
    /// Timer H fired: our non-2xx final response to INVITE was never ACKed.
    AckTimeout,
}

pub struct ServerTransaction {
    invite: bool,
    state: ServerState,
    request: Request,
    reliable: bool,
    timers: Timers,
    last_response: Option<Response>,
    /// Timer G.
    retransmit_at: Option<Instant>,
    retransmit_interval: Duration,
    /// Timer H.
    timeout_at: Option<Instant>,
    /// Timer I, J or L.
    end_at: Option<Instant>,
    out: VecDeque<ServerOutput>,
}

impl ServerTransaction {
    /// Starts a transaction for a new request. For INVITE, `100 Trying` is
    /// queued at once (§17.2.1 allows it, and it stops the client's Timer A).
    pub fn new(_now: Instant, request: Request, reliable: bool, timers: Timers) -> Result<Self, TransactionError> {
        message::branch(&request)?;
        message::cseq(&request)?;
        if request.method == Method::Ack {
            // An ACK never creates a transaction (§17.2.3): it goes to the TU.
            return Err(TransactionError::WrongState { action: "start a transaction for ACK", state: "none" });
        }
        let invite = request.method == Method::Invite;
        let mut t = ServerTransaction {
            invite,
            state: if invite { ServerState::Proceeding } else { ServerState::Trying },
            request,
            reliable,
            timers,
            last_response: None,
            retransmit_at: None,
            retransmit_interval: timers.t1,
            timeout_at: None,
            end_at: None,
            out: VecDeque::new(),
        };
        if invite {
            let trying = message::response_to(&t.request, StatusCode::Trying, None)?;
            t.transmit(trying);
        }
        Ok(t)
    }

    // ----- getters -----

    pub fn state(&self) -> ServerState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerState::Terminated
    }

    pub fn request(&self) -> &Request {
        &self.request
    }

    // ----- inputs -----

    /// The transaction user answers.
    pub fn send_response(&mut self, now: Instant, response: Response) -> Result<(), TransactionError> {
        let code = response.status_code.code();
        match (self.invite, self.state) {
            (true, ServerState::Proceeding) => {
                if code < 200 {
                    self.transmit(response);
                } else if code < 300 {
                    self.transmit(response);
                    self.state = ServerState::Accepted;
                    self.end_at = Some(now + self.timers.sixty_four_t1()); // Timer L
                } else {
                    self.transmit(response);
                    self.state = ServerState::Completed;
                    if !self.reliable {
                        self.retransmit_at = Some(now + self.timers.t1); // Timer G
                        self.retransmit_interval = self.timers.t1;
                    }
                    self.timeout_at = Some(now + self.timers.sixty_four_t1()); // Timer H
                }
                Ok(())
            }
            // RFC 6026: 2xx retransmissions from the TU go out while Accepted.
            (true, ServerState::Accepted) if (200..300).contains(&code) => {
                self.transmit(response);
                Ok(())
            }
            (false, ServerState::Trying | ServerState::Proceeding) => {
                self.transmit(response);
                if code < 200 {
                    self.state = ServerState::Proceeding;
                } else if self.reliable {
                    self.state = ServerState::Terminated; // Timer J = 0
                } else {
                    self.state = ServerState::Completed;
                    self.end_at = Some(now + self.timers.sixty_four_t1()); // Timer J
                }
                Ok(())
            }
            (_, state) => Err(TransactionError::WrongState { action: "send a response", state: state.name() }),
        }
    }

    /// A request matching this transaction: a retransmission, or the ACK of
    /// our non-2xx final response.
    pub fn handle_request(&mut self, now: Instant, request: Request) {
        let is_ack = request.method == Method::Ack;
        match (self.invite, self.state, is_ack) {
            (true, ServerState::Completed, true) => {
                self.retransmit_at = None;
                self.timeout_at = None;
                if self.reliable {
                    self.state = ServerState::Terminated; // Timer I = 0
                } else {
                    self.state = ServerState::Confirmed;
                    self.end_at = Some(now + self.timers.t4); // Timer I
                }
            }
            (true, ServerState::Proceeding | ServerState::Completed, false)
            | (false, ServerState::Proceeding | ServerState::Completed, false) => {
                if let Some(r) = self.last_response.clone() {
                    self.out.push_back(ServerOutput::Transmit(SipMessage::Response(r)));
                }
            }
            // Trying, Confirmed, Accepted: absorbed.
            _ => {}
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timeout_at.is_some_and(|t| t <= now) {
            self.state = ServerState::Terminated;
            self.clear_timers();
            self.out.push_back(ServerOutput::AckTimeout);
            return;
        }
        if let Some(at) = self.retransmit_at.filter(|t| *t <= now) {
            if let Some(r) = self.last_response.clone() {
                self.out.push_back(ServerOutput::Transmit(SipMessage::Response(r)));
            }
            self.retransmit_interval = (self.retransmit_interval * 2).min(self.timers.t2);
            self.retransmit_at = Some(at + self.retransmit_interval);
        }
        if self.end_at.is_some_and(|t| t <= now) {
            self.state = ServerState::Terminated;
            self.clear_timers();
        }
    }

    // ----- outputs -----

    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.retransmit_at, self.timeout_at, self.end_at].into_iter().flatten().min()
    }

    #[must_use]
    pub fn poll_output(&mut self) -> Option<ServerOutput> {
        self.out.pop_front()
    }

    fn transmit(&mut self, response: Response) {
        self.out.push_back(ServerOutput::Transmit(SipMessage::Response(response.clone())));
        self.last_response = Some(response);
    }

    fn clear_timers(&mut self) {
        self.retransmit_at = None;
        self.timeout_at = None;
        self.end_at = None;
    }
}
