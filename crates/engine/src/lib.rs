//! The helper's engine: one owner for all state, whatever client asks.
//!
//! [`Engine`] is synchronous and holds the state: the account, the
//! configuration, connected clients. It answers a request at once, or hands
//! back a [`BlockingJob`] (keyring, zip) whose [`Completion`] it applies later;
//! events wait in a queue for [`Engine::poll_event`]. [`driver`] is the one
//! tokio task that feeds it, runs the jobs on blocking threads and fans events
//! out, so a keyring prompt never stalls the other clients.
//!
//! Softphone, audio and screen subsystems plug in here as they arrive.

mod account;
mod devices;
pub mod driver;
mod engine;
pub mod phone;
mod system;

pub use driver::{EngineHandle, spawn};
pub use engine::{BlockingJob, ClientId, Completion, Engine, EngineSetup, Handled};
