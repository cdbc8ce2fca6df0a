//! The commands the windows call (`invoke`). Tauri's capabilities decide
//! which window may call which command; `engine` additionally checks the
//! API method against the window (`agent_helper_shell::access`).

use std::time::Duration;

use agent_helper_protocol::{ApiError, ErrorCode};
use agent_helper_shell::access;
use agent_helper_shell::history::HistoryEntry;
use agent_helper_shell::popup::IncomingCallView;
use agent_helper_shell::schema::{MicLevel, TestTonePlayed, WindowInfo};
use agent_helper_shell::sound;
use serde_json::Value;
use tauri::{State, WebviewWindow};

use crate::shell::Shell;
use crate::windows;

/// Errors reach the page as `{code, message}`, the API's own shape.
type Answer<T> = Result<T, ApiError>;

fn refused(message: String) -> ApiError {
    ApiError::new(ErrorCode::PeerNotAllowed, message)
}

/// Forwards an API request from a window to the engine.
#[tauri::command]
pub async fn engine(window: WebviewWindow, shell: State<'_, Shell>, method: String, params: Value) -> Answer<Value> {
    if !access::allowed(window.label(), &method) {
        tracing::warn!(window = window.label(), %method, "window asked for a method it may not call");
        return Err(refused(format!("the {} window may not call {method}", window.label())));
    }
    shell.ask(&method, params).await
}

#[tauri::command]
pub fn window_info(window: WebviewWindow, shell: State<'_, Shell>) -> WindowInfo {
    let s = shell.state();
    let methods = access::Window::from_label(window.label()).map(|w| w.methods()).unwrap_or_default();
    WindowInfo {
        label: window.label().to_owned(),
        methods: methods.iter().map(|m| (*m).to_owned()).collect(),
        language: s.language.clone(),
        look: s.look.name().to_owned(),
    }
}

/// The call a popup window shows.
#[tauri::command]
pub fn incoming_call(window: WebviewWindow, shell: State<'_, Shell>) -> Answer<IncomingCallView> {
    let s = shell.state();
    s.popups
        .iter()
        .find(|(label, _)| label == window.label())
        .map(|(_, view)| view.clone())
        .ok_or_else(|| ApiError::new(ErrorCode::NoSuchCall, "this window shows no call"))
}

#[tauri::command]
pub fn call_history(shell: State<'_, Shell>) -> Vec<HistoryEntry> {
    shell.state().history.as_ref().map(|h| h.entries().to_vec()).unwrap_or_default()
}

/// A test tone on one output device (settings: "does my headset work?").
#[tauri::command]
pub async fn test_tone(device: String) -> Answer<TestTonePlayed> {
    if device.len() > 512 {
        return Err(ApiError::new(ErrorCode::InvalidParams, "device id too long"));
    }
    let played = tauri::async_runtime::spawn_blocking(move || sound::play_test_tone(&device))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    match played {
        Ok(device) => {
            tracing::info!(%device, "test tone played");
            Ok(TestTonePlayed { device, millis: sound::TONE_MS })
        }
        Err(e) => Err(ApiError::new(ErrorCode::AudioUnavailable, e.to_string())),
    }
}

/// The microphone's peak over the next 100 ms, for the settings meter; the
/// stream stays open while the meter is read.
#[tauri::command]
pub async fn mic_level(shell: State<'_, Shell>, device: Option<String>) -> Answer<MicLevel> {
    if device.as_ref().is_some_and(|d| d.len() > 512) {
        return Err(ApiError::new(ErrorCode::InvalidParams, "device id too long"));
    }
    let meter = shell.meter.clone();
    let peak = tauri::async_runtime::spawn_blocking(move || meter.peak(device.as_deref(), Duration::from_millis(100)))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    peak.map(|peak_dbfs| MicLevel { peak_dbfs }).map_err(|e| ApiError::new(ErrorCode::AudioUnavailable, e.to_string()))
}

/// Opens one of the main windows (the softphone's settings and diagnostics buttons).
#[tauri::command]
pub fn open_window(app: tauri::AppHandle, name: String) -> Answer<()> {
    match name.as_str() {
        windows::SOFTPHONE | windows::SETTINGS | windows::DIAGNOSTICS => {
            windows::show(&app, &name);
            Ok(())
        }
        _ => Err(ApiError::new(ErrorCode::InvalidParams, "no such window")),
    }
}
