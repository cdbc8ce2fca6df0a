//! Running the helper: configuration first (nothing starts on a bad one), then
//! the profile lock, the log, the engine and the socket.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use agent_helper_config::LoadedConfig;
use agent_helper_credentials::KeyringStore;
use agent_helper_diagnostics::{LogSettings, Logging};
use agent_helper_engine::{Engine, EngineSetup};
use agent_helper_protocol::{Profile, HELPER_VERSION};
use anyhow::Context;

use crate::{EXIT_CONFIG, EXIT_FAILURE, EXIT_UNAVAILABLE};

/// Line printed on stdout once the socket accepts connections; scripts and
/// tests wait for it instead of guessing how long start-up takes.
pub const READY_PREFIX: &str = "agent-helper ready:";

struct Loaded {
    profile: Profile,
    config: LoadedConfig,
    warnings: Vec<String>,
}

fn load(profile_dir: Option<&Path>) -> Result<Loaded, (u8, String)> {
    let profile = Profile::resolve(profile_dir).map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    let (policy, policy_warning) = agent_helper_config::policy_file();
    let config = agent_helper_config::load(&profile.config_file, policy.as_deref())
        .map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    Ok(Loaded { profile, config, warnings: policy_warning.into_iter().collect() })
}

pub fn check_config(profile_dir: Option<&Path>) -> ExitCode {
    match load(profile_dir) {
        Err((code, message)) => {
            eprintln!("agent-helper: {message}");
            ExitCode::from(code)
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

pub fn run(profile_dir: Option<&Path>) -> ExitCode {
    let started = Instant::now();
    let Loaded { profile, config, warnings } = match load(profile_dir) {
        Ok(l) => l,
        Err((code, message)) => {
            eprintln!("agent-helper: {message}");
            return ExitCode::from(code);
        }
    };
    if let Err(e) = profile.create_dirs() {
        eprintln!("agent-helper: cannot create the profile folders under {}: {e}", profile.display_dir().display());
        return ExitCode::from(EXIT_FAILURE);
    }
    let _lock = match lock_profile(&profile.lock_file) {
        Ok(lock) => lock,
        Err(LockError::Held(pid)) => {
            eprintln!("agent-helper: another helper already runs with profile {} (pid {pid})", profile.display_dir().display());
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
        Err(LockError::Io(e)) => {
            eprintln!("agent-helper: cannot lock {}: {e}", profile.lock_file.display());
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let log = &config.effective.log;
    let logging = match agent_helper_diagnostics::init(&LogSettings {
        dir: profile.log_dir.clone(),
        level: log.level,
        max_file_bytes: log.max_file_bytes,
        max_files: log.max_files,
    }) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            eprintln!("agent-helper: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    tracing::info!(version = HELPER_VERSION, pid = std::process::id(), profile = %profile.display_dir().display(), "starting");
    for w in warnings.iter().chain(&config.warnings) {
        tracing::warn!("{w}");
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("engine").enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(serve(profile, config, warnings, logging.clone(), started));
    drop(runtime);
    let code = match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("agent-helper: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    };
    // Last: flushes BPClient.log, including the lines above.
    drop(logging);
    code
}

async fn serve(
    profile: Profile,
    config: LoadedConfig,
    warnings: Vec<String>,
    logging: Arc<Logging>,
    started: Instant,
) -> anyhow::Result<()> {
    let secrets = Arc::new(KeyringStore::new(profile.keyring_service.clone()));
    let socket = profile.socket.clone();
    let setup = EngineSetup { profile, config, logging, secrets, warnings };
    let (engine, startup_job) = Engine::new(setup, Instant::now());
    let (handle, engine_task) = agent_helper_engine::spawn(engine, startup_job);
    let listener = agent_helper_local_api::bind(&socket).context("local API")?;

    let ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(socket = %socket, startup_ms = format!("{ms:.1}"), "ready");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{READY_PREFIX} socket={socket} pid={}", std::process::id());
    let _ = out.flush();
    drop(out);

    agent_helper_local_api::serve(listener, handle.clone(), shutdown_signal()).await;
    tracing::info!("stopping");
    handle.shutdown().await;
    let _ = engine_task.await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
                    _ = term.recv() => tracing::info!("terminated"),
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

enum LockError {
    Held(String),
    Io(std::io::Error),
}

/// One helper per profile: an OS file lock, released by the OS when the
/// process ends however it ends. The file holds the owner's pid for messages.
fn lock_profile(path: &Path) -> Result<std::fs::File, LockError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(LockError::Io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(path).unwrap_or_default();
            return Err(LockError::Held(pid.trim().to_owned()));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(LockError::Io(e)),
    }
    file.set_len(0).map_err(LockError::Io)?;
    write!(file, "{}", std::process::id()).map_err(LockError::Io)?;
    Ok(file)
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
