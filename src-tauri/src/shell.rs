//! The app: the engine (as `agent-helper --headless` runs it), the tray, the
//! windows, and the one task that follows engine events for all of them.

use std::sync::Mutex;

use agent_helper::runner::{self, Prepared};
use agent_helper_config::CustomerField;
use agent_helper_engine::EngineHandle;
use agent_helper_protocol::events::{self as ev, CallIncoming};
use agent_helper_protocol::methods::Status;
use agent_helper_protocol::{ApiError, Request, RequestId};
use agent_helper_shell::history::History;
use agent_helper_shell::look::Look;
use agent_helper_shell::popup::IncomingCallView;
use serde_json::{Value, json};
use tauri::{AppHandle, Emitter, Manager, RunEvent};
use tokio::sync::oneshot;

use crate::{commands, tray, windows};

/// What the shell keeps between events.
pub struct Shell {
    pub engine: EngineHandle,
    /// The shell's own engine client (events and requests).
    pub client: u64,
    pub state: Mutex<State>,
    /// The settings window's microphone meter (one stream while it is read).
    pub meter: agent_helper_shell::sound::MicMeter,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    stopped: tokio::sync::Mutex<Option<tauri::async_runtime::JoinHandle<()>>>,
}

pub struct State {
    pub look: Look,
    pub language: String,
    pub call_popup: bool,
    pub do_not_disturb: bool,
    pub customer_fields: Vec<CustomerField>,
    /// Open popups: window label → the call it shows.
    pub popups: Vec<(String, IncomingCallView)>,
    pub next_popup: u64,
    pub calls_up: usize,
    pub history: Option<History>,
}

impl Shell {
    /// Asks the engine as the shell's own client.
    pub async fn ask(&self, method: &str, params: Value) -> Result<Value, ApiError> {
        self.engine
            .request(self.client, Request::new(RequestId::Text(format!("shell-{method}")), method, params))
            .await
            .into_result()
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How the app starts.
pub struct Launch {
    /// Start in the tray only (autostart at login); otherwise the softphone opens.
    pub minimized: bool,
    /// On the default profile one app runs per user: a second launch shows
    /// the first one's softphone and exits. With `--profile` (tests, several
    /// agents on one login) each profile's lock keeps them apart instead.
    pub single_instance: bool,
}

pub fn run(prepared: Prepared, launch: Launch) -> tauri::Result<()> {
    let mut builder = tauri::Builder::default();
    if launch.single_instance {
        builder = builder.plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            tracing::info!("launched again: showing the softphone");
            windows::show(app, windows::SOFTPHONE);
        }));
    }
    let minimized = launch.minimized;
    let app = builder
        // Window places and sizes survive a restart; popups place themselves.
        .plugin(tauri_plugin_window_state::Builder::default().with_filter(|label| !label.starts_with("popup-")).build())
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            Some(vec!["--minimized"]),
        ))
        .invoke_handler(tauri::generate_handler![
            commands::engine,
            commands::window_info,
            commands::incoming_call,
            commands::call_history,
            commands::test_tone,
            commands::mic_level,
            commands::open_window,
        ])
        .setup(move |app| {
            // `start` binds the socket and must run inside the tokio runtime Tauri owns.
            let running = tauri::async_runtime::block_on(async move { prepared.start() })
                .map_err(|e| Box::new(std::io::Error::other(e.message)) as Box<dyn std::error::Error>)?;
            let engine = running.handle.clone();
            let socket = running.socket.to_string();
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let app_handle = app.handle().clone();
            let stopped = tauri::async_runtime::spawn(async move {
                let shutdown = runner::shutdown_signal();
                running
                    .serve_until(async move {
                        tokio::select! {
                            _ = shutdown => {}
                            _ = stop_rx => {}
                        }
                    })
                    .await;
                app_handle.exit(0);
            });
            let (client, events) = tauri::async_runtime::block_on(engine.connect());
            app.manage(Shell {
                engine,
                client,
                state: Mutex::new(State {
                    look: Look::NotRegistered,
                    language: "en".into(),
                    call_popup: true,
                    do_not_disturb: false,
                    customer_fields: Vec::new(),
                    popups: Vec::new(),
                    next_popup: 1,
                    calls_up: 0,
                    history: None,
                }),
                meter: Default::default(),
                stop: Mutex::new(Some(stop_tx)),
                stopped: tokio::sync::Mutex::new(Some(stopped)),
            });
            tray::build(app.handle())?;
            if !minimized {
                windows::show(app.handle(), windows::SOFTPHONE);
            }
            let app_handle = app.handle().clone();
            tauri::async_runtime::spawn(async move { follow(app_handle, events).await });
            let mut out = std::io::stdout().lock();
            use std::io::Write;
            let _ = writeln!(out, "agent-helper ready: socket={socket} pid={} shell=desktop", std::process::id());
            let _ = out.flush();
            Ok(())
        })
        .build(tauri::generate_context!())?;
    app.run(|app, event| match event {
        // Closing windows must not end the helper; only Quit (or a signal) does.
        RunEvent::ExitRequested { code: None, api, .. } => api.prevent_exit(),
        // The main windows hide (keeping their place); popups close.
        RunEvent::WindowEvent { label, event: tauri::WindowEvent::CloseRequested { api, .. }, .. }
            if !label.starts_with("popup-") =>
        {
            api.prevent_close();
            if let Some(w) = app.get_webview_window(&label) {
                let _ = w.hide();
            }
        }
        _ => {}
    });
    Ok(())
}

/// Follows the engine: tray look, popups, history, and every event passed on
/// to the windows as `engine-event`.
async fn follow(app: AppHandle, mut events: tokio::sync::broadcast::Receiver<agent_helper_protocol::Event>) {
    let shell = app.state::<Shell>();
    if let Ok(status) = shell.ask("getStatus", json!({})).await {
        let profile = status["profileDir"].as_str().map(std::path::PathBuf::from);
        shell.state().history = profile.map(|p| History::load(&p));
    }
    read_desktop_config(&app).await;
    refresh_look(&app).await;
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "desktop shell fell behind the engine's events");
                refresh_look(&app).await;
                continue;
            }
            Err(_) => break,
        };
        let _ = app.emit("engine-event", json!({ "event": event.event, "data": event.data }));
        if let Some(history) = shell.state().history.as_mut() {
            match history.on_event(&event.event, &event.data) {
                Ok(true) => {
                    let _ = app.emit("history-changed", ());
                }
                Ok(false) => {}
                Err(e) => tracing::warn!("cannot save the call history: {e}"),
            }
        }
        match event.event.as_str() {
            ev::CALL_INCOMING => {
                if let Ok(call) = serde_json::from_value::<CallIncoming>(event.data.clone()) {
                    incoming(&app, call).await;
                }
            }
            ev::CALL_ANSWERED | ev::CALL_CONFIRMED | ev::CALL_ENDED => {
                if let Some(id) = event.data["callId"].as_str() {
                    windows::close_popup(&app, id);
                }
            }
            ev::CONFIG_CHANGED if event.data["key"].as_str().is_some_and(|k| k.starts_with("desktop.")) => {
                read_desktop_config(&app).await;
            }
            _ => {}
        }
        if matches!(
            event.event.as_str(),
            ev::REGISTRATION_CHANGED
                | ev::CALL_INCOMING
                | ev::CALL_STARTED
                | ev::CALL_ANSWERED
                | ev::CALL_ENDED
                | ev::CALL_MUTED
                | ev::CALL_UNMUTED
                | ev::ACCOUNT_CHANGED
        ) {
            refresh_look(&app).await;
        }
    }
}

async fn incoming(app: &AppHandle, call: CallIncoming) {
    let shell = app.state::<Shell>();
    let (dnd, popup, fields) = {
        let s = shell.state();
        (s.do_not_disturb, s.call_popup, s.customer_fields.clone())
    };
    if dnd {
        // Do not disturb: the agent's phone is busy.
        tracing::info!(call_id = %call.call_id, "do not disturb: rejecting the call");
        let _ = shell.ask("rejectCall", json!({ "callId": call.call_id, "code": 486 })).await;
        return;
    }
    let view = IncomingCallView::new(&call, &fields);
    notify(app, &view);
    if popup {
        windows::open_popup(app, view);
    }
}

/// A desktop notification besides the popup: a second alert that the
/// desktop's notification centre keeps if the agent was away.
fn notify(app: &AppHandle, view: &IncomingCallView) {
    use tauri_plugin_notification::NotificationExt;
    let body = match &view.queue {
        Some(queue) => format!("{} · {queue}", view.number),
        None => view.number.clone(),
    };
    let title = view.name.clone().unwrap_or_else(|| "Incoming call".into());
    if let Err(e) = app.notification().builder().title(title).body(body).show() {
        // No notification service (a bare X session): the popup still shows.
        tracing::debug!("no desktop notification: {e}");
    }
}

/// Hands over to the app already running on this profile: its softphone is
/// shown and this process exits (0). Reached when the profile is locked;
/// returns when the lock's holder is no desktop app (a headless helper):
/// there is nobody to hand over to, and the caller reports the lock.
pub fn hand_over() {
    let built = tauri::Builder::default()
        .plugin(tauri_plugin_single_instance::init(|_, _, _| {}))
        .setup(|app| {
            // The plugin ends this process when another app owns the name;
            // getting here means none does.
            app.handle().exit(0);
            Ok(())
        })
        .build(tauri::generate_context!());
    if let Ok(app) = built {
        app.run_return(|_, _| {});
    }
}

async fn read_desktop_config(app: &AppHandle) {
    let shell = app.state::<Shell>();
    let Ok(view) = shell.ask("getConfig", json!({})).await else { return };
    let desktop = &view["config"]["desktop"];
    let mut s = shell.state();
    if let Some(lang) = desktop["language"].as_str() {
        s.language = lang.to_owned();
    }
    s.call_popup = desktop["call_popup"].as_bool().unwrap_or(true);
    s.customer_fields = serde_json::from_value(desktop["customer_fields"].clone()).unwrap_or_default();
    drop(s);
    autostart(app, desktop["autostart"].as_bool().unwrap_or(false));
}

/// Starts the app at login (minimized to the tray) or not, as `desktop.autostart` says.
fn autostart(app: &AppHandle, on: bool) {
    use tauri_plugin_autostart::ManagerExt;
    let launcher = app.autolaunch();
    let now = launcher.is_enabled().unwrap_or(false);
    let done = match (on, now) {
        (true, false) => launcher.enable(),
        (false, true) => launcher.disable(),
        _ => return,
    };
    match done {
        Ok(()) => tracing::info!(on, "start at login"),
        Err(e) => tracing::warn!("cannot change start at login: {e}"),
    }
}

/// Sets the tray's icon and status line from the engine's status.
pub async fn refresh_look(app: &AppHandle) {
    let shell = app.state::<Shell>();
    let Ok(status) = shell.ask("getStatus", json!({})).await else { return };
    let Ok(parsed) = serde_json::from_value::<Status>(status.clone()) else { return };
    let look = Look::of(&parsed);
    {
        let mut s = shell.state();
        s.look = look;
        s.calls_up = parsed.calls.len();
    }
    tray::show(app, look, &parsed);
    let _ = app.emit("look-changed", look.name());
}

/// Stops the engine (flushing BPClient.log) before the process exits.
pub async fn quit(app: &AppHandle) {
    let shell = app.state::<Shell>();
    let stop = shell.stop.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(stop) = stop {
        let _ = stop.send(());
    }
    if let Some(stopped) = shell.stopped.lock().await.take() {
        let _ = stopped.await;
    }
    app.exit(0);
}
