//! The socket server.
//!
//! One task per connection reads frames; each request runs as its own task so a
//! slow one (collectDiagnostics) does not hold up a quick one (getStatus);
//! one writer task per connection sends responses and events in order.
//! Whatever a client sends, the worst outcome is an error frame or its own
//! disconnection: the helper and the other clients carry on.

use std::sync::Arc;

use agent_helper_engine::EngineHandle;
use agent_helper_protocol::frame::{Frame, read_frame_async, write_frame_async};
use agent_helper_protocol::{
    ApiError, ErrorCode, Event, MAX_FRAME_LEN, Request, Response, ServerMessage, SocketAddress,
};
use interprocess::local_socket::ListenerOptions;
use interprocess::local_socket::tokio::{Listener, Stream, prelude::*};
use tokio::sync::{Semaphore, broadcast, mpsc};

/// Requests one connection may have in flight; more wait for a slot.
const MAX_IN_FLIGHT: usize = 32;
/// Messages queued for a connection's writer.
const WRITE_QUEUE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot listen on {address}: {source}")]
    Listen { address: String, source: std::io::Error },
}

/// Creates the listener: on Unix a socket file readable and writable by its
/// owner only (mode set before `bind`, so there is no window with a wider mode).
/// The caller holds the profile lock, so an existing socket file is stale.
pub fn bind(address: &SocketAddress) -> Result<Listener, BindError> {
    let fail = |source| BindError::Listen { address: address.to_string(), source };
    let name = agent_helper_client::socket_name(address).map_err(fail)?;
    let options = ListenerOptions::new().name(name).reclaim_name(true);
    #[cfg(unix)]
    let options = {
        use interprocess::os::unix::local_socket::ListenerOptionsExt;
        if let SocketAddress::UnixPath(p) = address {
            match std::fs::remove_file(p) {
                Ok(()) => tracing::info!(path = %p.display(), "removed a stale socket file"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(fail(e)),
            }
        }
        options.mode(0o600)
    };
    options.create_tokio().map_err(fail)
}

/// Serves connections until `shutdown` resolves.
pub async fn serve(listener: Listener, engine: EngineHandle, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(stream) => {
                    tokio::spawn(connection(stream, engine.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the others.
                    tracing::warn!(error = %e, "accept failed");
                }
            }
        }
    }
}

async fn connection(stream: Stream, engine: EngineHandle) {
    if let Err(reason) = check_peer(&stream) {
        tracing::warn!(%reason, "refused a connection from another user");
        let msg = ServerMessage::Response(Response::err(None, ApiError::new(ErrorCode::PeerNotAllowed, reason)));
        let _ = write_frame_async(&mut &stream, &msg.to_json()).await;
        return;
    }
    let (client, events) = engine.connect().await;
    // `&Stream` reads and writes; one reference per direction.
    let stream = Arc::new(stream);
    let mut recv = &*stream;
    let (out_tx, out_rx) = mpsc::channel::<ServerMessage>(WRITE_QUEUE);
    let writer = tokio::spawn(writer(stream.clone(), out_rx));
    let forwarder = tokio::spawn(forward_events(events, out_tx.clone()));
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));

    loop {
        let payload = match read_frame_async(&mut recv).await {
            Ok(Some(Frame::Payload(p))) => p,
            Ok(Some(Frame::Oversize { declared })) => {
                tracing::warn!(client, declared, "oversize frame discarded");
                let e = ApiError::new(
                    ErrorCode::FrameTooLarge,
                    format!("frame of {declared} bytes exceeds the {MAX_FRAME_LEN}-byte limit and was discarded"),
                );
                if out_tx.send(ServerMessage::Response(Response::err(None, e))).await.is_err() {
                    break;
                }
                continue;
            }
            Ok(None) => break,
            Err(e) => {
                // A client killed mid-frame ends here; nothing of it was acted on.
                tracing::debug!(client, error = %e, "connection ended");
                break;
            }
        };
        let request = match Request::parse(&payload) {
            Ok(r) => r,
            Err((id, e)) => {
                tracing::debug!(client, code = %e.code, "bad request");
                if out_tx.send(ServerMessage::Response(Response::err(id, e))).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let Ok(permit) = slots.clone().acquire_owned().await else { break };
        let (engine, out_tx) = (engine.clone(), out_tx.clone());
        tokio::spawn(async move {
            let response = engine.request(client, request).await;
            let _ = out_tx.send(ServerMessage::Response(response)).await;
            drop(permit);
        });
    }

    forwarder.abort();
    drop(out_tx);
    engine.disconnect(client).await;
    // The writer ends once in-flight requests have answered (their senders drop).
    let _ = writer.await;
}

async fn writer(stream: Arc<Stream>, mut rx: mpsc::Receiver<ServerMessage>) {
    let mut send = &*stream;
    while let Some(msg) = rx.recv().await {
        let mut bytes = msg.to_json();
        if bytes.len() > MAX_FRAME_LEN {
            let id = match msg {
                ServerMessage::Response(r) => r.id,
                ServerMessage::Event(e) => {
                    tracing::error!(event = %e.event, bytes = bytes.len(), "event too large to send; dropped");
                    continue;
                }
            };
            let e = ApiError::new(
                ErrorCode::ResponseTooLarge,
                format!("the answer ({} bytes) exceeds the frame limit", bytes.len()),
            );
            bytes = ServerMessage::Response(Response::err(id, e)).to_json();
        }
        if write_frame_async(&mut send, &bytes).await.is_err() {
            break;
        }
    }
}

async fn forward_events(mut events: broadcast::Receiver<Event>, out: mpsc::Sender<ServerMessage>) {
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                // This client reads too slowly; say so rather than silently skip.
                Event::new("events-dropped", serde_json::json!({ "count": missed }))
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        if out.send(ServerMessage::Event(event)).await.is_err() {
            break;
        }
    }
}

/// Only processes of the helper's own user may talk to it. The socket's mode
/// already keeps others out; this also refuses root and anyone handed the fd.
#[cfg(unix)]
fn check_peer(stream: &Stream) -> Result<(), String> {
    let creds = stream.peer_creds().map_err(|e| format!("cannot read peer credentials: {e}"))?;
    // SAFETY: getuid() has no preconditions and cannot fail.
    let ours = unsafe { libc::getuid() };
    match creds.euid() {
        Some(uid) if uid == ours => Ok(()),
        Some(uid) => Err(format!("connections from uid {uid} are not allowed; this helper belongs to uid {ours}")),
        None => Err("peer credentials carry no uid".into()),
    }
}

#[cfg(not(unix))]
fn check_peer(_stream: &Stream) -> Result<(), String> {
    // Windows: the pipe name carries the user's name and the pipe rejects remote
    // clients; a SID-scoped DACL is not built yet (see docs/protocol.md).
    Ok(())
}
