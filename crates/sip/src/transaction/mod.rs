//! RFC 3261 §17 transactions.
//!
//! Each transaction is a state machine told the time:
//!
//! 1. create it with the request (`ClientTransaction::new` queues the first
//!    transmission; `ServerTransaction::new` queues `100 Trying` for INVITE);
//! 2. feed it `handle_response` / `handle_request` / `send_response` and
//!    `handle_timeout(now)` when [`poll_timeout`](ClientTransaction::poll_timeout) is due;
//! 3. drain `poll_output` after every call;
//! 4. drop it once `is_terminated`.
//!
//! Over a reliable transport (TCP, TLS) nothing is retransmitted and the
//! wait-for-retransmissions timers (D, I, J, K) are zero, as §17 says.
//! A 2xx to INVITE moves both sides to RFC 6026's `Accepted` state, which
//! absorbs retransmissions for 64·T1 instead of ending at once.

mod client;
mod server;

use std::time::Duration;

pub use client::{ClientOutput, ClientState, ClientTransaction};
pub use server::{ServerOutput, ServerState, ServerTransaction};

use crate::message::{self, MessageError};

/// RFC 3261 timer values (§17.1.1.1, Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Round-trip estimate (500 ms).
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses (4 s).
    pub t2: Duration,
    /// Longest time a message stays in the network (5 s).
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self { t1: Duration::from_millis(500), t2: Duration::from_secs(4), t4: Duration::from_secs(5) }
    }
}

impl Timers {
    /// Timers B, F, H, L, M and J (unreliable): 64·T1.
    pub fn sixty_four_t1(&self) -> Duration {
        self.t1 * 64
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    #[error(transparent)]
    Message(#[from] MessageError),
    /// Local side: the transaction user asked for something its state forbids.
    #[error("cannot {action} in state {state}")]
    WrongState { action: &'static str, state: &'static str },
}

/// Identifies a transaction (RFC 3261 §17.1.3, §17.2.3): the top Via branch,
/// the CSeq method (ACK counts as INVITE for server matching) and, for server
/// transactions, the sent-by of the top Via.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    pub branch: String,
    /// Upper-case method name (`rsip::Method` is not `Hash`).
    pub method: String,
    pub sent_by: Option<String>,
}

impl TransactionKey {
    /// The key a response is matched to a client transaction by.
    pub fn for_response(response: &rsip::Response) -> Result<Self, MessageError> {
        let (_, method) = message::cseq(response)?;
        Ok(Self { branch: message::branch(response)?, method: method.to_string(), sent_by: None })
    }

    /// The key of a client transaction for `request`.
    pub fn for_client(request: &rsip::Request) -> Result<Self, MessageError> {
        Ok(Self { branch: message::branch(request)?, method: request.method.to_string(), sent_by: None })
    }

    /// The key an incoming request is matched to a server transaction by.
    pub fn for_server(request: &rsip::Request) -> Result<Self, MessageError> {
        let via = message::top_via(request)?;
        let method = match request.method {
            rsip::Method::Ack => rsip::Method::Invite.to_string(),
            ref m => m.to_string(),
        };
        Ok(Self { branch: message::branch(request)?, method, sent_by: Some(via.uri.host_with_port.to_string()) })
    }
}
