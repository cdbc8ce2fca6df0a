//! The Agent Helper local API, shared by every program that talks to the helper:
//! the helper itself, the native-messaging bridge, `agent-helper ctl`, desktop
//! integrations and (through its JSON schema) the browser SDK.
//!
//! - [`frame`]: 4-byte little-endian length + UTF-8 JSON, the framing browsers use
//!   for native messaging, capped at [`MAX_FRAME_LEN`] both ways.
//! - [`message`]: requests with an `id`, responses, and events pushed to every client.
//! - [`error`]: stable error codes.
//! - [`methods`] and [`events`]: typed parameters, results and event payloads.
//! - [`profile`]: where every per-instance file lives (config, socket, logs …).
//!
//! The wire protocol with examples is documented in `docs/protocol.md`.

pub mod error;
pub mod events;
pub mod frame;
pub mod message;
pub mod methods;
pub mod profile;
pub mod schema;

mod password;

pub use error::{ApiError, ErrorCode};
pub use frame::{Frame, FrameError, MAX_FRAME_LEN};
pub use message::{Event, Request, RequestId, Response, ServerMessage};
pub use password::Password;
pub use profile::{Profile, ProfileError, SocketAddress};

/// Version of the helper, shared by every crate of the workspace.
pub const HELPER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Version of this wire protocol. Bumped only on incompatible changes;
/// new methods and events are announced by `hello` instead.
pub const PROTOCOL_VERSION: u32 = 1;
