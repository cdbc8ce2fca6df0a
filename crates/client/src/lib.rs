//! A Rust client of the Agent Helper local API, for desktop programs of the
//! agent's own user: the same methods and events as the browser SDK, over the
//! helper's per-user socket (Unix) or named pipe (Windows). `agent-helper ctl`
//! and the native-messaging bridge use it too.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use agent_helper_protocol::Profile;
//! let profile = Profile::resolve(None)?;
//! let mut client = agent_helper_client::Client::connect(&profile.socket).await?;
//! // The outer `?` is the transport, the inner one the helper's answer.
//! let status = client.request("getStatus", serde_json::json!({})).await??;
//! println!("{status}");
//! let event = client.next_event().await?;
//! println!("{} {}", event.event, event.data);
//! # Ok(()) }
//! ```

use std::collections::VecDeque;

use agent_helper_protocol::frame::{Frame, read_frame_async, write_frame_async};
use agent_helper_protocol::{ApiError, Event, FrameError, Request, RequestId, Response, ServerMessage, SocketAddress};
use interprocess::local_socket::tokio::{Stream, prelude::*};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the address: the helper is not running (or is another user's).
    #[error("cannot connect to the helper at {address}: {source}")]
    Connect { address: String, source: std::io::Error },
    /// The helper closed the connection.
    #[error("the helper closed the connection")]
    Closed,
    #[error("connection to the helper failed: {0}")]
    Io(#[from] FrameError),
    /// The helper sent something that is not a protocol message (a bug on one side).
    #[error("unreadable message from the helper: {0}")]
    Protocol(String),
}

pub struct Client {
    stream: Stream,
    next_id: u64,
    /// Events that arrived while waiting for a response.
    events: VecDeque<Event>,
}

impl Client {
    pub async fn connect(address: &SocketAddress) -> Result<Client, ClientError> {
        let stream = connect_stream(address).await?;
        Ok(Client { stream, next_id: 1, events: VecDeque::new() })
    }

    /// Sends one request and waits for its response; events arriving meanwhile
    /// are kept for [`Client::next_event`]. The outer error is the transport's,
    /// the inner one the helper's answer.
    pub async fn request(&mut self, method: &str, params: Value) -> Result<Result<Value, ApiError>, ClientError> {
        let id = RequestId::Number(self.next_id);
        self.next_id += 1;
        let request = Request::new(id.clone(), method, params);
        write_frame_async(&mut &self.stream, &request.to_json()).await?;
        loop {
            match self.read_message().await? {
                ServerMessage::Event(e) => self.events.push_back(e),
                ServerMessage::Response(r) if r.id.as_ref() == Some(&id) => return Ok(r.into_result()),
                // An error about a frame the helper could not attribute (id null).
                ServerMessage::Response(r @ Response { id: None, .. }) => return Ok(r.into_result()),
                ServerMessage::Response(_) => {}
            }
        }
    }

    /// The next event, waiting for one if none is buffered.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(e);
        }
        loop {
            if let ServerMessage::Event(e) = self.read_message().await? {
                return Ok(e);
            }
        }
    }

    async fn read_message(&mut self) -> Result<ServerMessage, ClientError> {
        match read_frame_async(&mut &self.stream).await? {
            None => Err(ClientError::Closed),
            Some(Frame::Oversize { declared }) => {
                Err(ClientError::Protocol(format!("oversize frame of {declared} bytes")))
            }
            Some(Frame::Payload(p)) => ServerMessage::parse(&p).map_err(|e| ClientError::Protocol(e.to_string())),
        }
    }
}

/// A raw connection, for programs that speak frames themselves (the
/// native-messaging bridge relays them unchanged).
pub async fn connect_stream(address: &SocketAddress) -> Result<Stream, ClientError> {
    let fail = |source| ClientError::Connect { address: address.to_string(), source };
    let name = socket_name(address).map_err(fail)?;
    Stream::connect(name).await.map_err(fail)
}

/// The interprocess name of a socket address.
pub fn socket_name(addr: &SocketAddress) -> std::io::Result<interprocess::local_socket::Name<'_>> {
    match addr {
        SocketAddress::UnixPath(p) => p.as_path().to_fs_name::<interprocess::local_socket::GenericFilePath>(),
        SocketAddress::NamedPipe(n) => n.as_str().to_ns_name::<interprocess::local_socket::GenericNamespaced>(),
    }
}
