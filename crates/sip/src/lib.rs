//! The SIP core of Agent Helper, sans-IO: no sockets, no clock, no threads.
//! Inputs come in through `handle_*(now, …)`, outputs leave through
//! `poll_*()`, so every rule can be tested on a virtual clock with peers in
//! memory; the engine's driver owns the sockets and the timers.
//!
//! - [`message`]: reading the headers transactions need from rsip messages,
//!   building responses and ACKs.
//! - [`transaction`]: RFC 3261 §17 client and server transactions, INVITE and
//!   non-INVITE, with timers A–M (RFC 6026's Accepted state included).

pub mod auth;
pub mod message;
pub mod transaction;

pub use message::MessageError;
pub use transaction::{
    ClientOutput, ClientState, ClientTransaction, ServerOutput, ServerState, ServerTransaction, Timers,
    TransactionError, TransactionKey,
};
