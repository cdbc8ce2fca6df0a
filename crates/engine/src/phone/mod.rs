//! The softphone driver: the one task that owns the SIP transport and timers.
//! It feeds the sans-IO [`Registration`] and [`Call`]s and reports to the
//! engine; its own decisions are which server to use and when to move on.
//!
//! - `mod.rs`: commands in, events out, the loop, routing of incoming messages,
//!   failover across `sip.servers` (priority or random order).
//! - [`link`]: UDP, TCP and TLS ("secure phone": rustls, the system roots plus
//!   `sip.tls_ca_file`, the server's name or IP checked against its certificate);
//!   a [`link::Binding`] per server (the active one and `sip.backup_server`).
//! - [`calls`]: our side of the SDP, dialling, taking an inbound INVITE.
//! - [`media`]: a task per call playing and recording its audio.
//!
//! Requests that belong to nothing are answered statelessly: OPTIONS 200,
//! BYE/CANCEL 481, others 501; requests that fail the RFC 3261 §8.2 checks get
//! their error code first.

use std::time::{Duration, Instant};

use agent_helper_config::Config;
use agent_helper_protocol::Password;
use agent_helper_sip::call::{Call, CallEvent, CallOutput, CallState};
use agent_helper_sip::ids::RandomIds;
use agent_helper_sip::keepalive::{KeepAlive, KeepAliveOutput, PING};
use agent_helper_sip::registration::{Failure, RegistrationOutput, RegistrationState, Transport};
use agent_helper_sip::replaces::Replaces;
use rsip::prelude::*;
use rsip::{Header, SipMessage, StatusCode};
use tokio::sync::{mpsc, oneshot};

mod calls;
mod link;
mod media;
mod playout;
mod ringer;

use calls::{dial, new_inbound_call, target_uri};
use link::{Binding, Link, Received, bind, connect};

/// How long an exiting helper waits for its unregistration to be answered.
const UNREGISTER_GRACE: Duration = Duration::from_secs(3);

/// Most `X-` headers of an inbound INVITE passed on to the Agent Desktop.
const MAX_CALL_HEADERS: usize = 32;
const MAX_CUSTOMER_INFO: usize = 8 * 1024;

pub enum PhoneCommand {
    Register {
        username: String,
        password: Password,
        config: Box<Config>,
    },
    Unregister,
    Dial {
        call_id: String,
        target: String,
        headers: Vec<(String, String)>,
    },
    Answer {
        call_id: String,
    },
    Reject {
        call_id: String,
        code: u16,
    },
    Hangup {
        call_id: String,
    },
    Dtmf {
        call_id: String,
        tones: String,
        duration: Duration,
        gap: Duration,
        /// In the media stream (RFC 4733) when the peer takes telephone-events.
        rfc4733: bool,
    },
    Hold {
        call_id: String,
        hold: bool,
    },
    Transfer {
        call_id: String,
        target: String,
    },
    /// Settings that apply without registering again (audio devices, calls):
    /// the next calls use them, and calls in progress move to new devices.
    Reconfigure(Box<Config>),
    /// The agent's microphone on a call: muted (silence is sent) or not.
    Mute {
        call_id: String,
        muted: bool,
    },
    /// Consulted transfer, first step: hold `call_id`, call `target` as `consult_call_id`.
    Consult {
        call_id: String,
        consult_call_id: String,
        target: String,
    },
    /// Consulted transfer, last step: the peer of `call_id` takes over `consult_call_id`.
    ConfirmTransfer {
        call_id: String,
        consult_call_id: String,
    },
    Shutdown(oneshot::Sender<()>),
}

#[derive(Debug, Clone)]
pub enum PhoneEvent {
    Registration {
        state: RegistrationState,
        server: String,
        transport: Transport,
    },
    /// The backup server's registration changed (`sip.backup_server`).
    BackupRegistration {
        state: RegistrationState,
        server: String,
    },
    /// The audio devices changed (plugged, unplugged, a new default).
    DevicesChanged {
        devices: Vec<agent_helper_protocol::methods::AudioDevice>,
    },
    /// The server could not be reached at all (DNS, connection refused).
    Unreachable {
        server: String,
        message: String,
    },
    Call {
        call_id: String,
        update: CallUpdate,
    },
}

#[derive(Debug, Clone)]
pub enum CallUpdate {
    Incoming(Box<agent_helper_protocol::events::CallIncoming>),
    Started {
        remote: String,
    },
    Progress {
        code: u16,
    },
    Answered {
        codec: Option<String>,
    },
    Confirmed,
    Ended {
        reason: String,
        sip_code: Option<u16>,
        message: Option<String>,
    },
    Dtmf {
        digit: char,
        /// `info` or `rfc4733`.
        method: &'static str,
    },
    /// Voice quality, every few seconds while audio flows.
    Quality(Box<agent_helper_protocol::methods::CallStats>),
    /// The call's speaker or microphone changed (`lost` → default, `restored`).
    AudioDevice {
        direction: &'static str,
        device: String,
        reason: &'static str,
    },
    /// Hold changed: `local` when we asked for it.
    Hold {
        local: bool,
        held: bool,
        peer_direction: Option<String>,
    },
    HoldFailed {
        code: u16,
    },
    TransferStarted,
    TransferSucceeded,
    TransferFailed {
        code: u16,
    },
    /// The other party transferred us: `new_call_id` calls `target` for it.
    Transferred {
        new_call_id: String,
        target: String,
    },
}

pub fn spawn(events: mpsc::Sender<PhoneEvent>, known: crate::devices::Known) -> mpsc::Sender<PhoneCommand> {
    let (tx, rx) = mpsc::channel(16);
    let (present_tx, present) = tokio::sync::watch::channel(std::sync::Arc::new(Vec::new()));
    tokio::spawn(watch_devices(events.clone(), present_tx, known));
    tokio::spawn(run(rx, events, present));
    tx
}

/// How often the device list is compared where the audio system does not
/// tell of changes (plug and unplug show within this).
const DEVICE_POLL: Duration = Duration::from_millis(1500);
/// A device plugged in comes as several server events (the sink, its
/// monitor, the new default): those within this are one change.
const DEVICE_SETTLE: Duration = Duration::from_millis(50);

/// Notices plugged and unplugged audio devices: when the sound server says
/// its devices changed, or by comparing the list every [`DEVICE_POLL`]
/// where it cannot say (cpal has no device events); not at all where
/// listing is costly (bare ALSA probes every card).
async fn watch_devices(
    events: mpsc::Sender<PhoneEvent>,
    present: tokio::sync::watch::Sender<std::sync::Arc<Vec<String>>>,
    known: crate::devices::Known,
) {
    let watchable = tokio::task::spawn_blocking(agent_helper_audio::can_watch).await.unwrap_or(false);
    if !watchable {
        tracing::info!("no sound server: audio devices are not watched for changes");
        return;
    }
    // One pending notice is enough: the list is read whole after it.
    let (notice, mut notices) = mpsc::channel::<()>(1);
    let subscribe = move || {
        agent_helper_audio::watch_device_changes(move || {
            !matches!(notice.try_send(()), Err(mpsc::error::TrySendError::Closed(())))
        })
    };
    let told = match tokio::task::spawn_blocking(subscribe).await {
        Ok(Ok(())) => {
            tracing::info!("audio devices watched through the sound server's events");
            true
        }
        Ok(Err(e)) => {
            tracing::info!(error = %e, every_ms = DEVICE_POLL.as_millis() as u64, "audio devices compared on a timer");
            false
        }
        Err(_) => false,
    };
    let mut tick = tokio::time::interval(DEVICE_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first list is the one changes are told against (the timer's first
    // tick comes at once): without it the first change would only set it,
    // and a call would not hear that its device went.
    let mut baseline = false;
    loop {
        if told {
            if std::mem::replace(&mut baseline, true) {
                if notices.recv().await.is_none() {
                    return;
                }
                tokio::time::sleep(DEVICE_SETTLE).await;
                while notices.try_recv().is_ok() {}
            }
        } else {
            tick.tick().await;
        }
        let Ok(Ok(now)) = tokio::task::spawn_blocking(crate::devices::list).await else { continue };
        if known.changed_to(&now) {
            tracing::info!(devices = now.len(), "audio devices changed");
            // Calls on a device that went away move to the default at once.
            present.send_replace(std::sync::Arc::new(now.iter().map(|d| d.id.clone()).collect()));
            if events.send(PhoneEvent::DevicesChanged { devices: now.clone() }).await.is_err() {
                return;
            }
        }
    }
}

struct Active {
    /// The active server (from `sip.servers`): calls go out through it.
    primary: Binding,
    /// `sip.backup_server`, registered at the same time; calls it brings in
    /// are answered through it.
    backup: Option<Binding>,
    /// When to (re)connect the backup server.
    backup_retry_at: Option<Instant>,
    /// Stop once the binding is removed (logout, shutdown).
    stopping: bool,
    config: Box<Config>,
    calls: Vec<ActiveCall>,
    /// Inbound calls announced by the next flush.
    pending_incoming: Vec<agent_helper_protocol::events::CallIncoming>,
    /// Calls made for a REFER: (new call, the call that asked for it).
    referred: Vec<(String, String)>,
    /// Consulted transfers confirmed: (transferred call, consultation call).
    /// The consultation ends with the transfer's success.
    consultations: Vec<(String, String)>,
    /// The server stopped answering or refuses service: move to the next one.
    needs_failover: bool,
    /// For INVITEs the proxy challenges.
    password: Password,
    /// Rings while an inbound call waits for an answer.
    ringer: Option<ringer::Ringer>,
    /// Given to each call's media task.
    media_links: media::MediaLinks,
}

struct ActiveCall {
    id: String,
    call: Call,
    /// It came in through the backup server; everything for it goes back there.
    via_backup: bool,
    /// The agent's microphone is muted (silence is sent).
    muted: bool,
    /// `call-started` not yet reported (outbound).
    announce_started: bool,
    /// The call's audio; ends with the call (its Drop stops the task).
    rtp: media::MediaHandle,
}

impl Active {
    /// The binding a call or message belongs to.
    fn binding(&mut self, via_backup: bool) -> &mut Binding {
        match (&mut self.backup, via_backup) {
            (Some(b), true) => b,
            _ => &mut self.primary,
        }
    }

    /// The next message from either server: (from the backup, what came).
    async fn recv(&mut self) -> (bool, Option<Received>) {
        match &mut self.backup {
            Some(b) => tokio::select! {
                r = self.primary.link.recv() => (false, r),
                r = b.link.recv() => (true, r),
            },
            None => (false, self.primary.link.recv().await),
        }
    }
}

struct Target {
    username: String,
    password: Password,
    config: Box<Config>,
    /// Indexes into `sip.servers` in the order to try them (shuffled for `failover = "random"`).
    order: Vec<usize>,
    /// Position in `order` of the server in use or to try next.
    next: usize,
    /// Where call media tasks report to the phone, and what they watch.
    media_links: media::MediaLinks,
}

impl Target {
    fn new(username: String, password: Password, config: Box<Config>, media_links: media::MediaLinks) -> Target {
        let mut order: Vec<usize> = (0..config.sip.servers.len()).collect();
        if config.sip.failover == agent_helper_config::FailoverMode::Random {
            let mut ids = RandomIds;
            let mut seed = u64::from_str_radix(&agent_helper_sip::ids::Ids::token(&mut ids)[..16], 16).unwrap_or(1);
            // Fisher–Yates with an xorshift from a random seed: spread agents over the servers.
            for i in (1..order.len()).rev() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                order.swap(i, (seed % (i as u64 + 1)) as usize);
            }
        }
        Target { username, password, config, order, next: 0, media_links }
    }

    fn server(&self) -> Option<&agent_helper_config::SipServer> {
        let idx = *self.order.get(self.next % self.order.len().max(1))?;
        self.config.sip.servers.get(idx)
    }

    /// Moves to the next server; `true` when a whole round has failed.
    fn fail_over(&mut self) -> bool {
        self.next += 1;
        self.next.is_multiple_of(self.order.len().max(1))
    }
}

async fn run(
    mut commands: mpsc::Receiver<PhoneCommand>,
    events: mpsc::Sender<PhoneEvent>,
    present: tokio::sync::watch::Receiver<std::sync::Arc<Vec<String>>>,
) {
    // What call media tasks report (DTMF they received).
    let (media_events_tx, mut media_events) = mpsc::channel(64);
    let media_links = media::MediaLinks { events: media_events_tx, present };
    let mut active: Option<Active> = None;
    let mut target: Option<Target> = None;
    let mut reconnect_at: Option<Instant> = None;
    let mut backoff = Duration::ZERO;
    loop {
        let deadline = [active.as_ref().and_then(next_deadline), reconnect_at].into_iter().flatten().min();
        tokio::select! {
            cmd = commands.recv() => match cmd {
                None => break,
                Some(PhoneCommand::Register { username, password, config }) => {
                    active = None;
                    backoff = Duration::from_secs(u64::from(config.sip.reconnect_min));
                    target = Some(Target::new(username, password, config, media_links.clone()));
                    reconnect_at = Some(Instant::now());
                }
                Some(PhoneCommand::Dial { call_id, target: to, headers }) => {
                    dial_or_fail(&mut active, &events, call_id, &to, &headers).await
                }
                Some(PhoneCommand::Answer { call_id }) => with_call(&mut active, &events, &call_id, |c, now| c.answer(now).map_err(|e| e.to_string())).await,
                Some(PhoneCommand::Reject { call_id, code }) => with_call(&mut active, &events, &call_id, |c, now| c.reject(now, code).map_err(|e| e.to_string())).await,
                Some(PhoneCommand::Hangup { call_id }) => with_call(&mut active, &events, &call_id, |c, now| { c.hangup(now); Ok(()) }).await,
                Some(PhoneCommand::Transfer { call_id, target: to }) => {
                    let domain = active.as_ref().map(|a| a.primary.endpoint.domain.clone()).unwrap_or_default();
                    let uri = target_uri(&to, &domain);
                    with_call(&mut active, &events, &call_id, |c, now| c.transfer(now, &uri).map_err(|e| e.to_string())).await
                }
                Some(PhoneCommand::Reconfigure(config)) => {
                    if let Some(t) = &mut target {
                        t.config = config.clone();
                    }
                    if let Some(a) = active.as_mut() {
                        a.config = config;
                        if flush(a, &events).await {
                            active = None;
                        }
                    }
                }
                Some(PhoneCommand::Mute { call_id, muted }) => {
                    if let Some(a) = active.as_mut() {
                        if let Some(c) = a.calls.iter_mut().find(|c| c.id == call_id) {
                            c.muted = muted;
                        }
                        if flush(a, &events).await {
                            active = None;
                        }
                    }
                }
                Some(PhoneCommand::Consult { call_id, consult_call_id, target: to }) => {
                    if let Some(a) = active.as_mut()
                        && let Some(c) = a.calls.iter_mut().find(|c| c.id == call_id)
                        && c.call.state() == CallState::Confirmed
                        && !c.call.hold_state().0
                        && let Err(e) = c.call.set_hold(Instant::now(), true)
                    {
                        tracing::warn!(call_id, error = %e, "cannot hold the call for a consultation");
                    }
                    dial_or_fail(&mut active, &events, consult_call_id, &to, &[]).await
                }
                Some(PhoneCommand::ConfirmTransfer { call_id, consult_call_id }) => {
                    let consult = active.as_ref().and_then(|a| a.calls.iter().find(|c| c.id == consult_call_id));
                    let named = consult.and_then(|c| Some((c.call.remote_uri().to_owned(), c.call.replaces()?)));
                    match named {
                        Some((target, replaces)) => {
                            if let Some(a) = active.as_mut() {
                                a.consultations.push((call_id.clone(), consult_call_id));
                            }
                            with_call(&mut active, &events, &call_id, |c, now| {
                                c.transfer_replacing(now, &target, Some(&replaces)).map_err(|e| e.to_string())
                            })
                            .await
                        }
                        None => tracing::warn!(call_id, consult_call_id, "no answered consultation call to transfer to"),
                    }
                }
                Some(PhoneCommand::Hold { call_id, hold }) => {
                    with_call(&mut active, &events, &call_id, |c, now| c.set_hold(now, hold).map_err(|e| e.to_string())).await
                }
                Some(PhoneCommand::Dtmf { call_id, tones, duration, gap, rfc4733 }) => {
                    let in_media = rfc4733
                        && active.as_ref().and_then(|a| a.calls.iter().find(|c| c.id == call_id)).is_some_and(|c| {
                            // Our telephone-event runs at 8 kHz: only with 8 kHz codecs.
                            c.call.negotiated().is_some_and(|n| n.telephone_event.is_some() && n.codec.clock_rate == 8000)
                        });
                    if in_media {
                        if let Some(c) = active.as_ref().and_then(|a| a.calls.iter().find(|c| c.id == call_id)) {
                            let _ = c.rtp.dtmf.try_send(media::Tones { tones, duration, gap });
                        }
                    } else {
                        if rfc4733 {
                            tracing::info!(call_id, "the peer takes no telephone-events: DTMF by SIP INFO");
                        }
                        with_call(&mut active, &events, &call_id, |c, now| c.send_dtmf_info(now, &tones, duration, gap).map_err(|e| e.to_string())).await
                    }
                }
                Some(PhoneCommand::Unregister) => {
                    target = None;
                    reconnect_at = None;
                    if let Some(a) = &mut active {
                        hang_up_all(a);
                        a.stopping = true;
                        a.primary.reg.stop(Instant::now());
                        if let Some(b) = &mut a.backup {
                            b.reg.stop(Instant::now());
                        }
                        if flush(a, &events).await {
                            active = None;
                        }
                    }
                }
                Some(PhoneCommand::Shutdown(done)) => {
                    if let Some(mut a) = active.take() {
                        hang_up_all(&mut a);
                        a.stopping = true;
                        a.primary.reg.stop(Instant::now());
                        if let Some(b) = &mut a.backup {
                            b.reg.stop(Instant::now());
                        }
                        let _ = tokio::time::timeout(UNREGISTER_GRACE, finish(&mut a, &events)).await;
                    }
                    let _ = done.send(());
                    break;
                }
            },
            Some(event) = media_events.recv() => match event {
                media::MediaEvent::Dtmf { call_id, digit } => {
                    let update = CallUpdate::Dtmf { digit, method: "rfc4733" };
                    tracing::info!(call_id, ?update, "call");
                    let _ = events.send(PhoneEvent::Call { call_id, update }).await;
                }
                media::MediaEvent::DeviceChanged { call_id, direction, device, reason } => {
                    let update = CallUpdate::AudioDevice { direction, device, reason };
                    tracing::info!(call_id, ?update, "call");
                    let _ = events.send(PhoneEvent::Call { call_id, update }).await;
                }
                media::MediaEvent::Quality(stats) => {
                    let call_id = stats.call_id.clone();
                    let _ = events.send(PhoneEvent::Call { call_id, update: CallUpdate::Quality(Box::new(stats)) }).await;
                }
            },
            (via_backup, incoming) = async { active.as_mut().expect("guarded").recv().await }, if active.is_some() => {
                let Some(a) = active.as_mut() else { continue };
                let b = a.binding(via_backup);
                match (&incoming, &mut b.keepalive) {
                    (Some(Received::Pong), Some(k)) => {
                        tracing::trace!(server = %b.server, "keep-alive pong");
                        k.handle_pong();
                    }
                    (Some(Received::Message(_)), Some(k)) => k.handle_traffic(),
                    _ => {}
                }
                match incoming {
                    Some(Received::Pong) => {}
                    Some(Received::Message(bytes)) => {
                        handle_incoming(a, &bytes, via_backup).await;
                        if flush(a, &events).await {
                            active = None;
                        }
                    }
                    None if via_backup => backup_lost(a, "connection lost"),
                    None => {
                        tracing::warn!(server = %a.primary.server, "SIP connection lost");
                        let _ = events.send(PhoneEvent::Unreachable { server: a.primary.server.clone(), message: "connection lost".into() }).await;
                        a.needs_failover = true;
                    }
                }
            },
            _ = sleep_until(deadline), if deadline.is_some() => {
                let now = Instant::now();
                let mut failover_pending = false;
                if reconnect_at.is_some_and(|t| t <= now) {
                    reconnect_at = None;
                    if let Some(t) = &target {
                        match connect(t).await {
                            Ok(mut a) => {
                                a.primary.reg.start(Instant::now());
                                a.backup_retry_at = t.config.sip.backup_server.is_some().then(Instant::now);
                                backoff = Duration::from_secs(u64::from(t.config.sip.reconnect_min));
                                if !flush(&mut a, &events).await {
                                    active = Some(a);
                                }
                            }
                            Err((server, message)) => {
                                tracing::warn!(%server, %message, "cannot reach the SIP server");
                                let _ = events.send(PhoneEvent::Unreachable { server, message }).await;
                                reconnect_at = Some(now);
                                failover_pending = true;
                            }
                        }
                    }
                }
                if let Some(a) = active.as_mut() {
                    if a.backup_retry_at.is_some_and(|t| t <= now)
                        && let Some(t) = &target
                    {
                        connect_backup(a, t).await;
                    }
                    for b in std::iter::once(&mut a.primary).chain(a.backup.as_mut()) {
                        if b.reg.poll_timeout().is_some_and(|t| t <= now) {
                            b.reg.handle_timeout(now);
                        }
                        if let Some(k) = &mut b.keepalive
                            && k.poll_timeout().is_some_and(|t| t <= now)
                        {
                            k.handle_timeout(now);
                        }
                    }
                    for c in &mut a.calls {
                        if c.call.poll_timeout().is_some_and(|t| t <= now) {
                            c.call.handle_timeout(now);
                        }
                    }
                    if flush(a, &events).await {
                        active = None;
                    }
                }
                if failover_pending
                    && let Some(t) = &mut target
                    && t.fail_over()
                {
                    reconnect_at = Some(now + backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(u64::from(t.config.sip.reconnect_max)));
                }
            }
        }
        // The server in use is lost or failing: end its calls and try the next one.
        if active.as_ref().is_some_and(|a| a.needs_failover) {
            if let Some(mut a) = active.take() {
                for c in a.calls.drain(..) {
                    let update = CallUpdate::Ended {
                        reason: "failed".into(),
                        sip_code: None,
                        message: Some(format!("lost the connection to {}", a.primary.server)),
                    };
                    let _ = events.send(PhoneEvent::Call { call_id: c.id.clone(), update }).await;
                }
            }
            if let Some(t) = &mut target {
                let now = Instant::now();
                if t.fail_over() {
                    reconnect_at = Some(now + backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(u64::from(t.config.sip.reconnect_max)));
                } else {
                    reconnect_at = Some(now);
                }
            }
        }
    }
}

/// Places a call and sends what it queued; a call that cannot be placed (no
/// server, no RTP port, a bad target) ends at once as `failed`, saying why.
async fn dial_or_fail(
    active: &mut Option<Active>,
    events: &mpsc::Sender<PhoneEvent>,
    call_id: String,
    target: &str,
    headers: &[(String, String)],
) {
    let ended = match active.as_mut() {
        Some(a) => dial(a, &call_id, target, headers).await.err(),
        None => Some("the phone is not connected to a SIP server".to_owned()),
    };
    if let Some(message) = ended {
        let update = CallUpdate::Ended { reason: "failed".into(), sip_code: None, message: Some(message) };
        let _ = events.send(PhoneEvent::Call { call_id, update }).await;
    }
    if let Some(a) = active.as_mut()
        && flush(a, events).await
    {
        *active = None;
    }
}

fn next_deadline(a: &Active) -> Option<Instant> {
    let bindings = std::iter::once(&a.primary).chain(a.backup.as_ref());
    let servers = bindings.flat_map(|b| [b.reg.poll_timeout(), b.keepalive.as_ref().and_then(KeepAlive::poll_timeout)]);
    a.calls.iter().map(|c| c.call.poll_timeout()).chain(servers).chain([a.backup_retry_at]).flatten().min()
}

/// Connects and registers the backup server; on failure, tries again later.
async fn connect_backup(a: &mut Active, t: &Target) {
    a.backup_retry_at = None;
    let Some(server) = &t.config.sip.backup_server else { return };
    match bind(t, server).await {
        Ok(mut b) if b.server != a.primary.server => {
            b.reg.start(Instant::now());
            a.backup = Some(b);
        }
        // The backup is the server in use (after a failover): nothing to add.
        Ok(_) => {}
        Err((server, message)) => {
            tracing::warn!(%server, %message, "cannot reach the backup SIP server");
            a.backup_retry_at = Some(Instant::now() + Duration::from_secs(u64::from(t.config.sip.reconnect_max)));
        }
    }
}

/// The backup server is gone: drop it and try again after `reconnect_max`.
fn backup_lost(a: &mut Active, why: &str) {
    if let Some(b) = a.backup.take() {
        tracing::warn!(server = %b.server, why, "backup SIP server lost");
        // Calls through it cannot continue without their transport.
        for c in a.calls.iter_mut().filter(|c| c.via_backup) {
            c.call.hangup(Instant::now());
        }
        a.backup_retry_at = Some(Instant::now() + Duration::from_secs(u64::from(a.config.sip.reconnect_max)));
    }
}

fn hang_up_all(a: &mut Active) {
    let now = Instant::now();
    for c in &mut a.calls {
        c.call.hangup(now);
    }
}

/// Runs a command on one call and sends what it produced. An unknown call or a
/// command the call's state refuses is logged; the engine already checked both.
async fn with_call(
    active: &mut Option<Active>,
    events: &mpsc::Sender<PhoneEvent>,
    call_id: &str,
    f: impl FnOnce(&mut Call, Instant) -> Result<(), String>,
) {
    let Some(a) = active.as_mut() else { return };
    let Some(c) = a.calls.iter_mut().find(|c| c.id == call_id) else {
        tracing::warn!(call_id, "no such call");
        return;
    };
    if let Err(e) = f(&mut c.call, Instant::now()) {
        tracing::warn!(call_id, error = %e, "call command refused");
    }
    if flush(a, events).await {
        *active = None;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d.into()).await;
    }
}

/// Waits for the binding to be removed (or the transaction to give up).
async fn finish(a: &mut Active, events: &mpsc::Sender<PhoneEvent>) {
    if flush(a, events).await {
        return;
    }
    loop {
        let deadline = [a.primary.reg.poll_timeout(), a.backup.as_ref().and_then(|b| b.reg.poll_timeout())]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            (via_backup, bytes) = a.recv() => match bytes {
                Some(Received::Message(b)) => handle_incoming(a, &b, via_backup).await,
                Some(Received::Pong) => {}
                None if via_backup => a.backup = None,
                None => return,
            },
            _ = sleep_until(deadline), if deadline.is_some() => {
                let now = Instant::now();
                a.primary.reg.handle_timeout(now);
                if let Some(b) = &mut a.backup {
                    b.reg.handle_timeout(now);
                }
            }
        }
        if flush(a, events).await {
            return;
        }
    }
}

/// Sends what the registration queued and reports state changes; `true` when
/// a stopping registration has finished.
async fn flush(a: &mut Active, events: &mpsc::Sender<PhoneEvent>) -> bool {
    let stopping = a.stopping;
    if flush_binding(&mut a.primary, false, stopping, events).await {
        a.needs_failover = !stopping;
    }
    if let Some(b) = &mut a.backup
        && flush_binding(b, true, stopping, events).await
    {
        backup_lost(a, "registration failed");
    }
    for info in std::mem::take(&mut a.pending_incoming) {
        let call_id = info.call_id.clone();
        tracing::info!(call_id, from = %info.from, "incoming call");
        let _ = events.send(PhoneEvent::Call { call_id, update: CallUpdate::Incoming(Box::new(info)) }).await;
    }
    // Call outputs go out in passes: what a pass asks for (NOTIFYs to a
    // referrer, a call to a transfer target) queues more output, which the next
    // pass sends the same way. A pass that asks for nothing ends it.
    loop {
        let mut transfer_requests: Vec<(String, String, Option<Replaces>)> = Vec::new();
        let mut consultations_done: Vec<String> = Vec::new();
        let mut refer_progress: Vec<(String, u16)> = Vec::new();
        for i in 0..a.calls.len() {
            if a.calls[i].call.is_outbound() && a.calls[i].announce_started {
                a.calls[i].announce_started = false;
                let update = CallUpdate::Started { remote: a.calls[i].call.remote_uri().to_owned() };
                let _ = events.send(PhoneEvent::Call { call_id: a.calls[i].id.clone(), update }).await;
            }
            while let Some(out) = a.calls[i].call.poll_output() {
                let call_id = a.calls[i].id.clone();
                let update = match out {
                    CallOutput::Transmit(m) => {
                        let via_backup = a.calls[i].via_backup;
                        let b = match (&mut a.backup, via_backup) {
                            (Some(b), true) => b,
                            _ => &mut a.primary,
                        };
                        send(&mut b.link, &b.server, &m).await;
                        continue;
                    }
                    CallOutput::Event(CallEvent::Progress { code }) => CallUpdate::Progress { code },
                    CallOutput::Event(CallEvent::Answered) => {
                        let codec =
                            a.calls[i].call.negotiated().map(|n| format!("{}/{}", n.codec.name, n.codec.clock_rate));
                        CallUpdate::Answered { codec }
                    }
                    CallOutput::Event(CallEvent::Confirmed) => CallUpdate::Confirmed,
                    CallOutput::Event(CallEvent::Ended { reason, sip_code }) => {
                        CallUpdate::Ended { reason: reason.into(), sip_code, message: None }
                    }
                    CallOutput::Event(CallEvent::Dtmf { digit }) => CallUpdate::Dtmf { digit, method: "info" },
                    CallOutput::Event(CallEvent::LocalHold { held, peer }) => {
                        CallUpdate::Hold { local: true, held, peer_direction: Some(format!("{peer:?}").to_lowercase()) }
                    }
                    CallOutput::Event(CallEvent::RemoteHold { held }) => {
                        CallUpdate::Hold { local: false, held, peer_direction: None }
                    }
                    CallOutput::Event(CallEvent::HoldFailed { code }) => CallUpdate::HoldFailed { code },
                    CallOutput::Event(CallEvent::TransferAccepted) => CallUpdate::TransferStarted,
                    CallOutput::Event(CallEvent::TransferSucceeded) => {
                        consultations_done.push(call_id.clone());
                        CallUpdate::TransferSucceeded
                    }
                    CallOutput::Event(CallEvent::TransferFailed { code }) => CallUpdate::TransferFailed { code },
                    CallOutput::Event(CallEvent::TransferRequested { target, replaces }) => {
                        transfer_requests.push((call_id, target, replaces));
                        continue;
                    }
                };
                // A call made for a REFER reports back to the call that asked for it.
                if let Some((_, referrer)) = a.referred.iter().find(|(new, _)| *new == call_id) {
                    let code = match &update {
                        CallUpdate::Progress { code } => Some(*code),
                        CallUpdate::Confirmed => Some(200),
                        CallUpdate::Ended { sip_code, .. } => Some(sip_code.filter(|c| *c >= 300).unwrap_or(487)),
                        _ => None,
                    };
                    if let Some(code) = code {
                        refer_progress.push((referrer.clone(), code));
                    }
                }
                tracing::info!(call_id, ?update, "call");
                let _ = events.send(PhoneEvent::Call { call_id, update }).await;
            }
        }
        if transfer_requests.is_empty() && refer_progress.is_empty() && consultations_done.is_empty() {
            break;
        }
        let now = Instant::now();
        // The transferee talks to the target now. A target that knows Replaces
        // has ended our consultation already; one that does not is told by BYE.
        for transferred in consultations_done {
            let consults: Vec<String> =
                a.consultations.iter().filter(|(t, _)| *t == transferred).map(|(_, c)| c.clone()).collect();
            a.consultations.retain(|(t, _)| *t != transferred);
            for consult in consults {
                if let Some(c) = a.calls.iter_mut().find(|c| c.id == consult) {
                    c.call.hangup(now);
                }
            }
        }
        for (referrer, code) in refer_progress {
            if let Some(c) = a.calls.iter_mut().find(|c| c.id == referrer) {
                c.call.notify_refer_progress(now, code);
            }
            if code >= 200 {
                a.referred.retain(|(_, r)| *r != referrer);
            }
        }
        for (referrer, target, replaces) in transfer_requests {
            let mut ids = RandomIds;
            let new_call_id = format!("t-{}", agent_helper_sip::ids::Ids::token(&mut ids));
            tracing::info!(
                call_id = referrer,
                new_call_id,
                target,
                consulted = replaces.is_some(),
                "transferred by the other party"
            );
            let headers: Vec<(String, String)> =
                replaces.iter().map(|r| ("Replaces".to_owned(), r.to_header_value())).collect();
            match dial(a, &new_call_id, &target, &headers).await {
                Ok(()) => {
                    a.referred.push((new_call_id.clone(), referrer.clone()));
                    let update = CallUpdate::Transferred { new_call_id, target };
                    let _ = events.send(PhoneEvent::Call { call_id: referrer, update }).await;
                }
                Err(e) => {
                    tracing::warn!(call_id = referrer, error = %e, "cannot call the transfer target");
                    if let Some(c) = a.calls.iter_mut().find(|c| c.id == referrer) {
                        c.call.notify_refer_progress(now, 503);
                    }
                }
            }
        }
    }
    // Each call's media follows its SDP and hold state.
    for c in &mut a.calls {
        let wanted = calls::media_control(&c.call, &a.config, c.muted);
        c.rtp.control.send_if_modified(|current| {
            let changed = *current != wanted;
            if changed {
                *current = wanted.clone();
            }
            changed
        });
    }
    // Ring while an inbound call waits; stop when none does.
    let ringing = a.calls.iter().any(|c| c.call.state() == CallState::Incoming);
    if ringing && a.ringer.is_none() {
        a.ringer = Some(ringer::start(&a.config));
    } else if !ringing {
        a.ringer = None;
    }
    // Finished calls go, their media task with them (Drop for MediaHandle).
    a.calls.retain(|c| !c.call.is_finished());
    a.stopping
        && matches!(a.primary.reg.state(), RegistrationState::Unregistered)
        && a.backup.as_ref().is_none_or(|b| matches!(b.reg.state(), RegistrationState::Unregistered))
}

/// Sends what a server's keep-alive and registration queued and reports
/// state changes; `true` when the server failed and should be given up.
async fn flush_binding(b: &mut Binding, is_backup: bool, stopping: bool, events: &mpsc::Sender<PhoneEvent>) -> bool {
    let mut failed = false;
    // Keep-alives first: an address they learn changes the next REGISTER.
    while let Some(out) = b.keepalive.as_mut().and_then(KeepAlive::poll_output) {
        match out {
            KeepAliveOutput::Ping => {
                tracing::trace!(server = %b.server, "keep-alive ping");
                if let Err(e) = b.link.send(PING).await {
                    tracing::warn!(server = %b.server, error = %e, "keep-alive send failed");
                }
            }
            KeepAliveOutput::Transmit(m) => send(&mut b.link, &b.server, &m).await,
            KeepAliveOutput::Dead => {
                tracing::warn!(server = %b.server, "the SIP server stopped answering keep-alives");
                if !is_backup {
                    let message = "no answer to keep-alives".to_owned();
                    let _ = events.send(PhoneEvent::Unreachable { server: b.server.clone(), message }).await;
                }
                failed = true;
            }
            KeepAliveOutput::Observed(address) => {
                tracing::info!(server = %b.server, %address, "the server sees us at another address (NAT)");
                b.reg.use_address(Instant::now(), &address);
            }
        }
    }
    while let Some(out) = b.reg.poll_output() {
        match out {
            RegistrationOutput::Transmit(m) => send(&mut b.link, &b.server, &m).await,
            RegistrationOutput::AddressChanged(address) => {
                // New calls and keep-alives use the address the server sees.
                b.endpoint.local = address.clone();
                if let Some(k) = &mut b.keepalive {
                    k.set_local(&address);
                }
            }
            RegistrationOutput::StateChanged(state) => {
                tracing::info!(server = %b.server, transport = b.transport.param(), backup = is_backup, ?state, "registration");
                // No answer or a server error: another server may do better. A
                // refusal of the account (403, 404, auth) would be the same anywhere.
                match &state {
                    RegistrationState::Failed(Failure::Timeout) => failed = true,
                    RegistrationState::Failed(Failure::Rejected { code, .. }) => {
                        failed |= *code >= 500 || *code == 408 || *code == 0;
                    }
                    _ => {}
                }
                let server = b.server.clone();
                let event = if is_backup {
                    PhoneEvent::BackupRegistration { state, server }
                } else {
                    PhoneEvent::Registration { state, server, transport: b.transport }
                };
                let _ = events.send(event).await;
            }
        }
    }
    failed && !stopping
}

/// Sends one SIP message on a link; a failure is logged (timers handle the rest).
async fn send(link: &mut Link, server: &str, m: &SipMessage) {
    let bytes = m.to_string().into_bytes();
    tracing::trace!(server, "SIP out:\n{}", String::from_utf8_lossy(&bytes));
    if let Err(e) = link.send(&bytes).await {
        tracing::warn!(server, error = %e, "SIP send failed");
    }
}

async fn handle_incoming(a: &mut Active, bytes: &[u8], via_backup: bool) {
    let server = a.binding(via_backup).server.clone();
    tracing::trace!(server, "SIP in:\n{}", String::from_utf8_lossy(bytes));
    // The parser has not panicked on our mutation tests (crates/sip/tests/hostile_input.rs);
    // should it ever, one bad datagram must not take the phone down with it.
    let parsed = std::panic::catch_unwind(|| SipMessage::try_from(bytes))
        .unwrap_or_else(|_| Err(rsip::Error::Unexpected("the SIP parser panicked".into())));
    let message = match parsed {
        Ok(m) => m,
        Err(e) => {
            // Malformed input from the network is dropped (and counted in the log).
            tracing::debug!(server, error = %e, "dropped an unparsable SIP message");
            return;
        }
    };
    let now = Instant::now();
    match message {
        SipMessage::Response(r) => {
            if let Some(c) = a.calls.iter_mut().find(|c| c.call.owns_response(&r)) {
                c.call.handle_response(now, r);
            } else {
                let b = a.binding(via_backup);
                if let Some(k) = b.keepalive.as_mut().filter(|k| k.owns_response(&r)) {
                    k.handle_response(now, r);
                } else if !b.reg.handle_response(now, r) {
                    tracing::debug!(server, "dropped a response matching no transaction");
                }
            }
        }
        SipMessage::Request(req) => {
            if let Err(refusal) = agent_helper_sip::checks::check_request(&req) {
                tracing::debug!(code = refusal.code, reason = refusal.reason, "refused a request");
                if req.method != rsip::Method::Ack
                    && let Ok(mut resp) = agent_helper_sip::message::response_to(
                        &req,
                        agent_helper_sip::message::status(refusal.code),
                        Some("ah"),
                    )
                {
                    if let Some((name, value)) = refusal.header {
                        resp.headers.push(Header::Other(name, value));
                    }
                    send(&mut a.binding(via_backup).link, &server, &SipMessage::Response(resp)).await;
                }
                return;
            }
            if let Some(c) = a.calls.iter_mut().find(|c| c.call.owns_request(&req)) {
                c.call.handle_request(now, req);
                return;
            }
            let to_tag = req.to_header().ok().is_some_and(|t| t.value().contains(";tag="));
            let status = match req.method {
                rsip::Method::Ack => return,
                rsip::Method::Invite if !to_tag => return new_inbound_call(a, req, via_backup).await,
                rsip::Method::Options => StatusCode::OK,
                rsip::Method::Bye | rsip::Method::Cancel | rsip::Method::Invite => {
                    StatusCode::CallTransactionDoesNotExist
                }
                _ => StatusCode::NotImplemented,
            };
            if let Ok(resp) = agent_helper_sip::message::response_to(&req, status, Some("ah")) {
                send(&mut a.binding(via_backup).link, &server, &SipMessage::Response(resp)).await;
            }
        }
    }
}
