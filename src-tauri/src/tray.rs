//! The tray icon: its look follows the phone (not registered, registered,
//! ringing, in a call, muted), its menu opens the windows.

use agent_helper_protocol::methods::Status;
use agent_helper_shell::look::Look;
use serde_json::json;
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Manager, Wry};

use crate::shell::{self, Shell};
use crate::windows;

const TRAY_ID: &str = "main";

fn icon(look: Look) -> &'static [u8] {
    match look {
        Look::NotRegistered => include_bytes!("../icons/tray-offline.png"),
        Look::Registered => include_bytes!("../icons/tray-registered.png"),
        Look::InCall => include_bytes!("../icons/tray-in-call.png"),
        Look::Muted => include_bytes!("../icons/tray-muted.png"),
        Look::Ringing => include_bytes!("../icons/tray-ringing.png"),
    }
}

/// The menu's status line, kept to change its text.
struct StatusLine(MenuItem<Wry>);

pub fn build(app: &AppHandle) -> tauri::Result<()> {
    let status = MenuItem::with_id(app, "status", "Agent Helper — starting", false, None::<&str>)?;
    let softphone = MenuItem::with_id(app, "softphone", "Open softphone", true, None::<&str>)?;
    let settings = MenuItem::with_id(app, "settings", "Settings and audio devices", true, None::<&str>)?;
    let dnd = CheckMenuItem::with_id(app, "dnd", "Do not disturb", true, false, None::<&str>)?;
    let diagnostics = MenuItem::with_id(app, "diagnostics", "Diagnostics", true, None::<&str>)?;
    let collect = MenuItem::with_id(app, "collect", "Collect diagnostics", true, None::<&str>)?;
    let logs = MenuItem::with_id(app, "logs", "Open log folder", true, None::<&str>)?;
    let quit_item = MenuItem::with_id(app, "quit", "Quit Agent Helper", true, None::<&str>)?;
    let sep = || PredefinedMenuItem::separator(app);
    let menu = Menu::with_items(
        app,
        &[&status, &sep()?, &softphone, &settings, &dnd, &sep()?, &diagnostics, &collect, &logs, &sep()?, &quit_item],
    )?;
    app.manage(StatusLine(status));
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(Image::from_bytes(icon(Look::NotRegistered))?)
        .tooltip("Agent Helper")
        .menu(&menu)
        .show_menu_on_left_click(true)
        .on_menu_event(move |app, event| {
            let app = app.clone();
            match event.id.as_ref() {
                "softphone" => windows::show(&app, windows::SOFTPHONE),
                "settings" => windows::show(&app, windows::SETTINGS),
                "diagnostics" => windows::show(&app, windows::DIAGNOSTICS),
                "dnd" => {
                    let on = dnd.is_checked().unwrap_or(false);
                    app.state::<Shell>().state().do_not_disturb = on;
                    tracing::info!(on, "do not disturb");
                }
                "collect" => {
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
    Ok(())
}

/// Sets the icon, tooltip and status line for `look`.
pub fn show(app: &AppHandle, look: Look, status: &Status) {
    let line = status_line(look, status);
    if let Some(tray) = app.tray_by_id(TRAY_ID) {
        if let Ok(image) = Image::from_bytes(icon(look)) {
            let _ = tray.set_icon(Some(image));
        }
        let _ = tray.set_tooltip(Some(&line));
    }
    if let Some(item) = app.try_state::<StatusLine>() {
        let _ = item.0.set_text(&line);
    }
}

fn status_line(look: Look, status: &Status) -> String {
    let account = status.account.as_ref().map(|a| a.username.as_str()).unwrap_or("not logged in");
    let phone = match look {
        Look::NotRegistered => "phone offline",
        Look::Registered => "phone ready",
        Look::InCall => "in a call",
        Look::Muted => "in a call, muted",
        Look::Ringing => "incoming call",
    };
    format!("Agent Helper {} — {phone} — {account}", status.helper_version)
}

async fn collect_diagnostics(app: &AppHandle) {
    let shell = app.state::<Shell>();
    match shell.ask("collectDiagnostics", json!({})).await {
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
    if let Ok(s) = shell.ask("getStatus", json!({})).await
        && let Some(dir) = s["logFile"].as_str().and_then(|f| std::path::Path::new(f).parent())
    {
        reveal(dir);
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

/// Quit warns first when calls are up: the softphone window asks the agent.
async fn quit(app: &AppHandle) {
    let calls = app.state::<Shell>().state().calls_up;
    if calls > 0 {
        use tauri::Emitter;
        windows::show(app, windows::SOFTPHONE);
        let _ = app.emit_to(windows::SOFTPHONE, "confirm-quit", calls);
        return;
    }
    shell::quit(app).await;
}
