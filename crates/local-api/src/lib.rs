//! The local API transport: a per-user socket (Unix) or named pipe (Windows)
//! carrying the frames of `agent-helper-protocol`.
//!
//! - [`server`]: accepts connections, refuses other users, relays requests to
//!   the engine and pushes every event to every client.
//!
//! The client side is the `agent-helper-client` crate (no engine inside).

pub mod server;

pub use server::{BindError, bind, serve};
