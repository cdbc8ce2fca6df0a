//! `agent-helper --headless` and `check-config`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use agent_helper::runner::{self, EXIT_FAILURE};

/// Line printed on stdout once the socket accepts connections; scripts and
/// tests wait for it instead of guessing how long start-up takes.
pub const READY_PREFIX: &str = "agent-helper ready:";

pub fn run(profile_dir: Option<&Path>) -> ExitCode {
    let prepared = match runner::prepare(profile_dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("agent-helper: {e}");
            return ExitCode::from(e.exit_code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("engine")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agent-helper: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    runtime.block_on(async {
        let running = match prepared.start() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("agent-helper: {e}");
                return ExitCode::from(e.exit_code);
            }
        };
        let shutdown = runner::shutdown_signal();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{READY_PREFIX} socket={} pid={}", running.socket, std::process::id());
        let _ = out.flush();
        drop(out);
        running.serve_until(shutdown).await;
        ExitCode::SUCCESS
    })
}

pub fn check_config(profile_dir: Option<&Path>) -> ExitCode {
    match runner::load(profile_dir) {
        Err(e) => {
            eprintln!("agent-helper: {e}");
            ExitCode::from(e.exit_code)
        }
        Ok(l) => {
            let out = serde_json::json!({
                "configFile": l.config.user_file,
                "policyFile": l.config.policy_file,
                "lockedKeys": l.config.locked,
                "warnings": l.warnings.iter().chain(&l.config.warnings).collect::<Vec<_>>(),
                "config": l.config.effective,
            });
            println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
            ExitCode::SUCCESS
        }
    }
}

/// Without `--headless`, hand over to the desktop app when it is installed next
/// to this binary and there is a display; otherwise carry on headless.
pub fn exec_desktop_if_available() {
    let has_display = !cfg!(target_os = "linux")
        || ["DISPLAY", "WAYLAND_DISPLAY"].iter().any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    if !has_display {
        return;
    }
    let Ok(me) = std::env::current_exe() else { return };
    let desktop = me.with_file_name(if cfg!(windows) { "agent-helper-desktop.exe" } else { "agent-helper-desktop" });
    if !desktop.exists() {
        eprintln!("agent-helper: the desktop app is not installed; running headless");
        return;
    }
    let mut cmd = std::process::Command::new(&desktop);
    cmd.args(std::env::args_os().skip(1));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let e = cmd.exec();
        eprintln!("agent-helper: cannot start {}: {e}; running headless", desktop.display());
    }
    #[cfg(not(unix))]
    match cmd.status() {
        Ok(status) => std::process::exit(status.code().unwrap_or(1)),
        Err(e) => eprintln!("agent-helper: cannot start {}: {e}; running headless", desktop.display()),
    }
}
