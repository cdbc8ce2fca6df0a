//! The tray icon: a status line that follows engine events (no polling),
//! collect diagnostics, open the log folder, quit.

use std::io::Write;

use agent_helper::runner::{self, Prepared};
use agent_helper_engine::EngineHandle;
use agent_helper_protocol::{Request, RequestId};
use serde_json::{Value, json};
use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Manager, RunEvent};
use tokio::sync::{Mutex, oneshot};

const TRAY_OFFLINE: &[u8] = include_bytes!("../icons/tray-offline.png");

/// What the shell keeps between events.
struct Shell {
    engine: EngineHandle,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    stopped: Mutex<Option<tauri::async_runtime::JoinHandle<()>>>,
}

pub fn run(prepared: Prepared) -> tauri::Result<()> {
    let app = tauri::Builder::default()
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
            app.manage(Shell {
                engine: engine.clone(),
                stop: Mutex::new(Some(stop_tx)),
                stopped: Mutex::new(Some(stopped)),
            });
            build_tray(app.handle(), engine)?;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "agent-helper ready: socket={socket} pid={} shell=desktop", std::process::id());
            let _ = out.flush();
            Ok(())
        })
        .build(tauri::generate_context!())?;
    app.run(|app, event| {
        // Closing windows must not end the helper; only Quit (or a signal) does.
        if let RunEvent::ExitRequested { code: None, api, .. } = event {
            api.prevent_exit();
            let _ = app;
        }
    });
    Ok(())
}

fn build_tray(app: &AppHandle, engine: EngineHandle) -> tauri::Result<()> {
    let status = MenuItem::with_id(app, "status", status_line(None), false, None::<&str>)?;
    let diagnostics = MenuItem::with_id(app, "diagnostics", "Collect diagnostics", true, None::<&str>)?;
    let logs = MenuItem::with_id(app, "logs", "Open log folder", true, None::<&str>)?;
    let quit_item = MenuItem::with_id(app, "quit", "Quit Agent Helper", true, None::<&str>)?;
    let separator = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(app, &[&status, &separator, &diagnostics, &logs, &separator, &quit_item])?;
    TrayIconBuilder::with_id("main")
        .icon(Image::from_bytes(TRAY_OFFLINE)?)
        .tooltip("Agent Helper")
        .menu(&menu)
        .show_menu_on_left_click(true)
        .on_menu_event(|app, event| {
            let app = app.clone();
            match event.id.as_ref() {
                "diagnostics" => {
                    tauri::async_runtime::spawn(async move { collect_diagnostics(&app).await });
                }
                "logs" => {
                    tauri::async_runtime::spawn(async move { open_log_folder(&app).await });
                }
                "quit" => {
                    tauri::async_runtime::spawn(async move { quit(&app).await });
                }
                _ => {}
            }
        })
        .build(app)?;

    // Follow the engine: the account line changes on account-changed.
    let (client, mut events) = tauri::async_runtime::block_on(engine.connect());
    tauri::async_runtime::spawn(async move {
        let status_now = ask(&engine, client, "getStatus", json!({})).await.ok();
        let _ = status.set_text(status_line(status_now.as_ref()));
        while let Ok(event) = events.recv().await {
            if event.event == agent_helper_protocol::events::ACCOUNT_CHANGED {
                if let Ok(s) = ask(&engine, client, "getStatus", json!({})).await {
                    let _ = status.set_text(status_line(Some(&s)));
                }
            }
        }
    });
    Ok(())
}

fn status_line(status: Option<&Value>) -> String {
    let version = agent_helper_protocol::HELPER_VERSION;
    let account = status
        .and_then(|s| s["account"]["username"].as_str())
        .map(|u| format!("account {u}"))
        .unwrap_or_else(|| "not logged in".into());
    format!("Agent Helper {version} — phone not configured — {account}")
}

async fn ask(engine: &EngineHandle, client: u64, method: &str, params: Value) -> Result<Value, String> {
    engine
        .request(client, Request::new(RequestId::Text(format!("tray-{method}")), method, params))
        .await
        .into_result()
        .map_err(|e| e.to_string())
}

async fn collect_diagnostics(app: &AppHandle) {
    let shell = app.state::<Shell>();
    match ask(&shell.engine, 0, "collectDiagnostics", json!({})).await {
        Ok(r) => {
            if let Some(path) = r["path"].as_str() {
                reveal(std::path::Path::new(path).parent().unwrap_or(std::path::Path::new(path)));
            }
        }
        Err(e) => tracing::error!("tray: collect diagnostics failed: {e}"),
    }
}

async fn open_log_folder(app: &AppHandle) {
    let shell = app.state::<Shell>();
    if let Ok(s) = ask(&shell.engine, 0, "getStatus", json!({})).await {
        if let Some(dir) = s["logFile"].as_str().and_then(|f| std::path::Path::new(f).parent()) {
            reveal(dir);
        }
    }
}

/// Opens a folder in the desktop's file manager.
fn reveal(dir: &std::path::Path) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(opener).arg(dir).spawn() {
        tracing::warn!("cannot open {}: {e}", dir.display());
    }
}

/// Stops the engine (flushing BPClient.log) before the process exits.
async fn quit(app: &AppHandle) {
    let shell = app.state::<Shell>();
    if let Some(stop) = shell.stop.lock().await.take() {
        let _ = stop.send(());
    }
    if let Some(stopped) = shell.stopped.lock().await.take() {
        let _ = stopped.await;
    }
    app.exit(0);
}
