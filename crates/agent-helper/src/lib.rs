//! The helper's start-up sequence as a library: the `agent-helper` binary runs
//! it headless, the desktop app (`src-tauri`) runs the very same engine inside
//! its window process.

pub mod runner;
