//! The SIP core of Agent Helper, sans-IO: no sockets, no clock, no threads.
//! Inputs come in through `handle_*(now, …)`, outputs leave through
//! `poll_*()`, so every rule can be tested on a virtual clock with peers in
//! memory; the engine's driver owns the sockets and the timers.
//!
//! - [`message`]: reading the headers transactions need from rsip messages,
//!   building responses and ACKs.
//! - [`transaction`]: RFC 3261 §17 client and server transactions, INVITE and
//!   non-INVITE, with timers A–M (RFC 6026's Accepted state included).
//! - [`auth`]: digest authentication (MD5, SHA-256, qop=auth).
//! - [`registration`]: one binding with one registrar: challenges, refresh,
//!   back-off, and a hard stop after three rejected credentials.
//! - [`keepalive`]: CRLF pings (TCP, TLS) or OPTIONS (UDP) to notice a dead
//!   server, and the address the server sees us at (RFC 3581).
//! - [`replaces`]: the Replaces header of consulted transfer (RFC 3891).
//! - [`ids`]: branches, tags and nonces from a source the caller chooses.

pub mod auth;
pub mod call;
pub mod checks;
pub mod framing;
pub mod ids;
pub mod keepalive;
pub mod message;
pub mod registration;
pub mod replaces;
pub mod sdp;
pub mod session_timer;
pub mod transaction;

pub use message::MessageError;
pub use transaction::{
    ClientOutput, ClientState, ClientTransaction, ServerOutput, ServerState, ServerTransaction, Timers,
    TransactionError, TransactionKey,
};
