//! The desktop app: the same engine as `agent-helper --headless`, plus a tray
//! icon and the windows (softphone, inbound-call popup, settings,
//! diagnostics) whose pages are built from `ui/`.

mod commands;
mod shell;
mod tray;
mod windows;

use std::path::PathBuf;
use std::process::ExitCode;

use agent_helper::runner;

fn main() -> ExitCode {
    let (profile, minimized) = match args() {
        Ok(p) => p,
        Err(message) => {
            eprintln!("agent-helper-desktop: {message}");
            return ExitCode::from(runner::EXIT_CONFIG);
        }
    };
    // Configuration, profile lock and log come first: a bad config or a second
    // instance stops here, before any window system is touched.
    let single_instance = profile.is_none();
    let prepared = match runner::prepare(profile.as_deref()) {
        Ok(p) => p,
        Err(e) if e.exit_code == runner::EXIT_UNAVAILABLE && single_instance => {
            // Another instance holds the profile: show its softphone instead.
            shell::hand_over();
            eprintln!("agent-helper-desktop: {e}");
            return ExitCode::from(e.exit_code);
        }
        Err(e) => {
            eprintln!("agent-helper-desktop: {e}");
            return ExitCode::from(e.exit_code);
        }
    };
    match shell::run(prepared, shell::Launch { minimized, single_instance }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("desktop shell failed: {e}");
            eprintln!("agent-helper-desktop: {e}");
            ExitCode::from(runner::EXIT_FAILURE)
        }
    }
}

/// `--profile DIR` / `AGENT_HELPER_PROFILE`, as for `agent-helper`;
/// `--minimized` starts in the tray only; `--headless` is accepted (and
/// ignored) because `agent-helper` passes its arguments on.
fn args() -> Result<(Option<PathBuf>, bool), String> {
    let mut minimized = false;
    let mut args = std::env::args_os().skip(1);
    let mut profile = std::env::var_os("AGENT_HELPER_PROFILE").filter(|v| !v.is_empty()).map(PathBuf::from);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--profile") => profile = Some(args.next().ok_or("--profile needs a folder")?.into()),
            Some(s) if s.starts_with("--profile=") => profile = Some(PathBuf::from(&s["--profile=".len()..])),
            Some("--headless") => {}
            Some("--minimized") => minimized = true,
            _ => {
                return Err(format!(
                    "unknown argument {arg:?}; usage: agent-helper-desktop [--profile DIR] [--minimized]"
                ));
            }
        }
    }
    Ok((profile, minimized))
}
