//! Opening, showing and closing the app's windows. Each loads its own page
//! from ui/dist; what it may ask the engine is decided by its label
//! (`agent_helper_shell::access`).

use agent_helper_shell::popup::IncomingCallView;
use tauri::{AppHandle, Manager, WebviewUrl, WebviewWindowBuilder};

use crate::shell::Shell;

pub const SOFTPHONE: &str = "softphone";
pub const SETTINGS: &str = "settings";
pub const DIAGNOSTICS: &str = "diagnostics";

const POPUP_SIZE: (f64, f64) = (360.0, 290.0);

/// Shows (creating if needed) one of the main windows and brings it forward.
pub fn show(app: &AppHandle, label: &str) {
    if let Some(w) = app.get_webview_window(label) {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
        return;
    }
    let (title, size) = match label {
        SOFTPHONE => ("Agent Helper — Softphone", (380.0, 600.0)),
        SETTINGS => ("Agent Helper — Settings", (520.0, 640.0)),
        _ => ("Agent Helper — Diagnostics", (520.0, 480.0)),
    };
    let built = WebviewWindowBuilder::new(app, label, WebviewUrl::App(format!("{label}.html").into()))
        .title(title)
        .inner_size(size.0, size.1)
        .min_inner_size(320.0, 400.0)
        .build();
    if let Err(e) = built {
        tracing::error!("cannot open the {label} window: {e}");
    }
}

/// The inbound-call popup: its own always-on-top window in the screen's
/// bottom-right corner that does not take the keyboard from what the agent
/// is typing.
pub fn open_popup(app: &AppHandle, view: IncomingCallView) {
    let shell = app.state::<Shell>();
    let label = {
        let mut s = shell.state();
        let label = format!("popup-{}", s.next_popup);
        s.next_popup += 1;
        s.popups.push((label.clone(), view.clone()));
        label
    };
    let mut builder = WebviewWindowBuilder::new(app, &label, WebviewUrl::App("popup.html".into()))
        .title(view.title())
        .inner_size(POPUP_SIZE.0, POPUP_SIZE.1)
        .resizable(false)
        .always_on_top(true)
        .skip_taskbar(true)
        .focused(false)
        .visible_on_all_workspaces(true);
    if let Ok(Some(monitor)) = app.primary_monitor() {
        let scale = monitor.scale_factor();
        let size = monitor.size().to_logical::<f64>(scale);
        let at = monitor.position().to_logical::<f64>(scale);
        builder = builder.position(at.x + size.width - POPUP_SIZE.0 - 16.0, at.y + size.height - POPUP_SIZE.1 - 48.0);
    }
    match builder.build() {
        Ok(_) => tracing::info!(call_id = %view.call_id, window = %label, "call popup shown"),
        Err(e) => tracing::error!("cannot open the call popup: {e}"),
    }
}

/// Closes the popup of `call_id` (answered here or elsewhere, or gone).
pub fn close_popup(app: &AppHandle, call_id: &str) {
    let shell = app.state::<Shell>();
    let labels: Vec<String> = {
        let mut s = shell.state();
        let (gone, kept): (Vec<_>, Vec<_>) = s.popups.drain(..).partition(|(_, v)| v.call_id == call_id);
        s.popups = kept;
        gone.into_iter().map(|(l, _)| l).collect()
    };
    for label in labels {
        if let Some(w) = app.get_webview_window(&label) {
            let _ = w.destroy();
        }
    }
}
