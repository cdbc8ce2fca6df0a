//! The local API transport: a per-user socket (Unix) or named pipe (Windows)
//! carrying the frames of `agent-helper-protocol`.
//!
//! - [`server`]: accepts connections, refuses other users, relays requests to
//!   the engine and pushes every event to every client.
//! - [`client`]: what `agent-helper ctl`, desktop programs and tests use.

pub mod client;
pub mod server;

pub use client::{Client, ClientError};
pub use server::{BindError, bind, serve};

use agent_helper_protocol::SocketAddress;
use interprocess::local_socket::Name;

/// The interprocess name of a socket address.
pub(crate) fn socket_name(addr: &SocketAddress) -> std::io::Result<Name<'_>> {
    use interprocess::local_socket::prelude::*;
    match addr {
        SocketAddress::UnixPath(p) => p.as_path().to_fs_name::<interprocess::local_socket::GenericFilePath>(),
        SocketAddress::NamedPipe(n) => n.as_str().to_ns_name::<interprocess::local_socket::GenericNamespaced>(),
    }
}
