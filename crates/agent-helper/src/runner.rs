//! Starting and stopping the helper, shared by the headless binary and the
//! desktop app so both run exactly the same engine.
//!
//! Order matters: the configuration is read first (nothing starts on a bad
//! one, exit 2), then the profile lock (one helper per profile, exit 3), the
//! log, the engine and last the socket, so a client that can connect finds a
//! helper that is fully up.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use agent_helper_config::LoadedConfig;
use agent_helper_credentials::KeyringStore;
use agent_helper_diagnostics::{LogSettings, Logging};
use agent_helper_engine::{Engine, EngineHandle, EngineSetup};
use agent_helper_protocol::{HELPER_VERSION, Profile, SocketAddress};

pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;
pub const EXIT_UNAVAILABLE: u8 = 3;

/// Why the helper did not start, and the exit code that says so.
#[derive(Debug)]
pub struct StartError {
    pub exit_code: u8,
    pub message: String,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn fail(exit_code: u8, message: impl Into<String>) -> StartError {
    StartError { exit_code, message: message.into() }
}

/// The profile and the configuration in force, before anything starts.
pub struct Loaded {
    pub profile: Profile,
    pub config: LoadedConfig,
    /// Start-up notes besides the configuration's own warnings.
    pub warnings: Vec<String>,
}

/// Reads the configuration and the policy file. Touches nothing else.
pub fn load(profile_dir: Option<&Path>) -> Result<Loaded, StartError> {
    let profile = Profile::resolve(profile_dir).map_err(|e| fail(EXIT_CONFIG, e.to_string()))?;
    let (policy, policy_warning) = agent_helper_config::policy_file();
    let config = agent_helper_config::load(&profile.config_file, policy.as_deref())
        .map_err(|e| fail(EXIT_CONFIG, e.to_string()))?;
    Ok(Loaded { profile, config, warnings: policy_warning.into_iter().collect() })
}

/// A helper whose profile is locked and whose log is open, not yet serving.
pub struct Prepared {
    loaded: Loaded,
    logging: Arc<Logging>,
    lock: std::fs::File,
    started: Instant,
}

/// Loads the configuration, creates the profile folders, takes the profile
/// lock and opens BPClient.log (installing the process-wide logger).
pub fn prepare(profile_dir: Option<&Path>) -> Result<Prepared, StartError> {
    let started = Instant::now();
    let loaded = load(profile_dir)?;
    let profile = &loaded.profile;
    profile.create_dirs().map_err(|e| {
        fail(EXIT_FAILURE, format!("cannot create the profile folders under {}: {e}", profile.display_dir().display()))
    })?;
    let lock = lock_profile(&profile.lock_file).map_err(|e| match e {
        LockError::Held(pid) => fail(
            EXIT_UNAVAILABLE,
            format!("another helper already runs with profile {} (pid {pid})", profile.display_dir().display()),
        ),
        LockError::Io(e) => fail(EXIT_FAILURE, format!("cannot lock {}: {e}", profile.lock_file.display())),
    })?;
    let log = &loaded.config.effective.log;
    let logging = agent_helper_diagnostics::init(&LogSettings {
        dir: profile.log_dir.clone(),
        level: log.level,
        max_file_bytes: log.max_file_bytes,
        max_files: log.max_files,
    })
    .map_err(|e| fail(EXIT_FAILURE, e.to_string()))?;
    tracing::info!(version = HELPER_VERSION, pid = std::process::id(), profile = %profile.display_dir().display(), "starting");
    for w in loaded.warnings.iter().chain(&loaded.config.warnings) {
        tracing::warn!("{w}");
    }
    Ok(Prepared { loaded, logging: Arc::new(logging), lock, started })
}

/// A helper serving its socket.
pub struct Running {
    pub handle: EngineHandle,
    pub socket: SocketAddress,
    listener: interprocess::local_socket::tokio::Listener,
    engine_task: tokio::task::JoinHandle<()>,
    logging: Arc<Logging>,
    _lock: std::fs::File,
}

impl Prepared {
    /// Starts the engine and binds the socket. Call inside a tokio runtime.
    pub fn start(self) -> Result<Running, StartError> {
        let Prepared { loaded, logging, lock, started } = self;
        let Loaded { profile, config, warnings } = loaded;
        let secrets = Arc::new(KeyringStore::new(profile.keyring_service.clone()));
        let socket = profile.socket.clone();
        let setup = EngineSetup { profile, config, logging: logging.clone(), secrets, warnings };
        let (engine, startup_job) = Engine::new(setup, Instant::now());
        let (handle, engine_task) = agent_helper_engine::spawn(engine, startup_job);
        let listener = agent_helper_local_api::bind(&socket).map_err(|e| {
            tracing::error!("{e}");
            fail(EXIT_FAILURE, e.to_string())
        })?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(socket = %socket, startup_ms = format!("{ms:.1}"), "ready");
        Ok(Running { handle, socket, listener, engine_task, logging, _lock: lock })
    }
}

impl Running {
    /// Serves until `shutdown` resolves, then stops the engine, removes the
    /// socket and flushes the log.
    pub async fn serve_until(self, shutdown: impl std::future::Future<Output = ()>) {
        let Running { handle, listener, engine_task, logging, _lock, .. } = self;
        agent_helper_local_api::serve(listener, handle.clone(), shutdown).await;
        tracing::info!("stopping");
        handle.shutdown().await;
        let _ = engine_task.await;
        tracing::info!("stopped");
        // The last reference: dropping it flushes BPClient.log.
        drop(logging);
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

/// A future that resolves on Ctrl+C or (Unix) SIGTERM. The handlers are
/// installed when this is called, not when the future is first polled, so a
/// signal sent right after the ready line is never lost to the default action.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (term, interrupt) {
                (Ok(mut term), Ok(mut interrupt)) => tokio::select! {
                    _ = interrupt.recv() => tracing::info!("interrupted"),
                    _ = term.recv() => tracing::info!("terminated"),
                },
                _ => {
                    tracing::warn!("cannot install signal handlers; stop the helper with SIGKILL");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("interrupted");
    }
}
