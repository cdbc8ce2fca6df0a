//! What the desktop app decides, kept apart from Tauri so it is tested
//! without a window system: the windows' access to the engine, the tray's
//! look, the inbound-call popup's content and the call history. The Tauri
//! shell (`src-tauri/`) only wires these to windows and the tray.

pub mod access;
pub mod history;
pub mod look;
pub mod popup;
pub mod schema;
pub mod sound;
