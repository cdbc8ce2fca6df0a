//! The task that owns the [`Engine`]: requests and job completions arrive on
//! one channel and are applied one at a time; jobs run on tokio's blocking
//! pool; events go out on a broadcast channel every client subscribes to.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use agent_helper_protocol::{ApiError, ErrorCode, Event, Request, RequestId, Response};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::engine::{BlockingJob, ClientId, Completion, Engine, Handled};
use crate::phone::{self, PhoneCommand, PhoneEvent};

/// Events buffered per client before a slow client starts losing them.
const EVENT_BUFFER: usize = 1024;
const INPUT_BUFFER: usize = 256;

type Reply = (RequestId, oneshot::Sender<Response>);

enum Input {
    Request { client: ClientId, request: Request, reply: oneshot::Sender<Response> },
    Completed { completion: Completion, reply: Option<Reply> },
    Connected(ClientId),
    Disconnected(ClientId),
    Phone(PhoneEvent),
    Shutdown(oneshot::Sender<()>),
}

/// A cheap, cloneable way to talk to the engine task.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Input>,
    events: broadcast::Sender<Event>,
    next_client: Arc<AtomicU64>,
}

/// Starts the engine task (and its start-up job) on the current tokio runtime.
pub fn spawn(engine: Engine, startup: Option<BlockingJob>) -> (EngineHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(INPUT_BUFFER);
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    if let Some(job) = startup {
        run_job(job, tx.clone(), None);
    }
    let (phone_events_tx, mut phone_events) = mpsc::channel(64);
    let phone = phone::spawn(phone_events_tx, engine.known_devices());
    let forward = tx.clone();
    tokio::spawn(async move {
        while let Some(e) = phone_events.recv().await {
            if forward.send(Input::Phone(e)).await.is_err() {
                break;
            }
        }
    });
    let task = tokio::spawn(run(engine, rx, tx.clone(), events.clone(), phone));
    (EngineHandle { tx, events, next_client: Arc::new(AtomicU64::new(1)) }, task)
}

impl EngineHandle {
    /// Registers a new client; its receiver gets every event from now on.
    pub async fn connect(&self) -> (ClientId, broadcast::Receiver<Event>) {
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        let events = self.events.subscribe();
        let _ = self.tx.send(Input::Connected(id)).await;
        (id, events)
    }

    pub async fn disconnect(&self, client: ClientId) {
        let _ = self.tx.send(Input::Disconnected(client)).await;
    }

    /// Asks the engine and waits for its answer.
    pub async fn request(&self, client: ClientId, request: Request) -> Response {
        let id = request.id.clone();
        let (reply, answer) = oneshot::channel();
        if self.tx.send(Input::Request { client, request, reply }).await.is_err() {
            return shutting_down(id);
        }
        answer.await.unwrap_or_else(|_| shutting_down(id))
    }

    /// Stops the engine after the inputs already queued; returns when it has.
    pub async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Input::Shutdown(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

fn shutting_down(id: RequestId) -> Response {
    Response::err(Some(id), ApiError::new(ErrorCode::ShuttingDown, "the helper is shutting down"))
}

fn respond(id: RequestId, result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(v) => Response::ok(id, v),
        Err(e) => Response::err(Some(id), e),
    }
}

fn run_job(job: BlockingJob, tx: mpsc::Sender<Input>, reply: Option<Reply>) {
    tokio::task::spawn_blocking(move || {
        let completion = job.run();
        let _ = tx.blocking_send(Input::Completed { completion, reply });
    });
}

async fn run(
    mut engine: Engine,
    mut rx: mpsc::Receiver<Input>,
    tx: mpsc::Sender<Input>,
    events: broadcast::Sender<Event>,
    phone: mpsc::Sender<PhoneCommand>,
) {
    while let Some(input) = rx.recv().await {
        match input {
            Input::Request { client, request, reply } => {
                let id = request.id.clone();
                match engine.handle_request(Instant::now(), client, request) {
                    Handled::Reply(result) => {
                        let _ = reply.send(respond(id, result));
                    }
                    Handled::Blocking(job) => run_job(job, tx.clone(), Some((id, reply))),
                }
            }
            Input::Completed { completion, reply } => {
                let result = engine.complete(completion);
                if let (Some((id, reply)), Some(result)) = (reply, result) {
                    let _ = reply.send(respond(id, result));
                }
            }
            Input::Connected(id) => engine.client_connected(id),
            Input::Disconnected(id) => engine.client_disconnected(id),
            Input::Phone(event) => engine.handle_phone_event(event),
            Input::Shutdown(done) => {
                tracing::info!("engine stopping");
                // Unregister before going (bounded by the phone's own grace period).
                let (phone_done, wait) = oneshot::channel();
                if phone.send(PhoneCommand::Shutdown(phone_done)).await.is_ok() {
                    let _ = wait.await;
                }
                let _ = done.send(());
                break;
            }
        }
        while let Some(command) = engine.poll_phone_command() {
            let _ = phone.send(command).await;
        }
        while let Some(event) = engine.poll_event() {
            tracing::debug!(event = %event.event, "event");
            // No receivers is fine: nobody is connected.
            let _ = events.send(event);
        }
    }
}
