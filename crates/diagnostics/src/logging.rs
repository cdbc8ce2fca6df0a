//! `BPClient.log`: the helper's log file.
//!
//! - Fixed active name: the newest lines are always in `BPClient.log`; when it
//!   grows past `max_file_bytes` it becomes `BPClient.log.1` (older files move
//!   up), and at most `max_files` files are kept, the active one included.
//! - Written by a background thread (`tracing-appender` non-blocking), so a
//!   call's thread never waits on the disk.
//! - Each line: local time with milliseconds, level, thread, module, message.
//! - Every line passes through [`redact`](crate::redact) before it is queued.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use agent_helper_protocol::methods::LogLevel;
use file_rotate::{ContentLimit, FileRotate, compression::Compression, suffix::AppendCount};
use tracing::Subscriber;
use tracing_appender::non_blocking::{NonBlocking, WorkerGuard};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::{MakeWriter, time::ChronoLocal};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Registry, reload};

pub const LOG_FILE_NAME: &str = "BPClient.log";

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub dir: PathBuf,
    pub level: LogLevel,
    pub max_file_bytes: u64,
    /// Files kept, the active one included (at least 1).
    pub max_files: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot open the log file {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("a global logger is already installed")]
    AlreadyInstalled,
}

/// The running log. Keep it alive for the whole process: dropping it flushes
/// and stops the writer thread.
pub struct Logging {
    file: PathBuf,
    level: Mutex<LogLevel>,
    reload: reload::Handle<LevelFilter, Registry>,
    _writer: WorkerGuard,
}

impl Logging {
    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn level(&self) -> LogLevel {
        *self.level.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the level at run time; takes effect for the next event logged.
    pub fn set_level(&self, level: LogLevel) {
        // Fails only if the subscriber was dropped, i.e. during shutdown.
        let _ = self.reload.modify(|f| *f = level_filter(level));
        *self.level.lock().unwrap_or_else(|p| p.into_inner()) = level;
    }
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    }
}

/// Opens BPClient.log and installs the process-wide logger, plus a panic hook
/// that logs panics (redacted) before the default hook prints them (redacted too).
pub fn init(settings: &LogSettings) -> Result<Logging, LogError> {
    let (subscriber, logging) = build(settings)?;
    tracing::subscriber::set_global_default(subscriber).map_err(|_| LogError::AlreadyInstalled)?;
    install_panic_hook();
    Ok(logging)
}

/// The subscriber and its handle, without installing it (tests install it per thread).
pub fn build(settings: &LogSettings) -> Result<(impl Subscriber + Send + Sync + 'static, Logging), LogError> {
    let file = settings.dir.join(LOG_FILE_NAME);
    std::fs::create_dir_all(&settings.dir).map_err(|source| LogError::Open { path: file.clone(), source })?;
    // Probe the file first: FileRotate reports an unopenable file only on write.
    private_file_options().open(&file).map_err(|source| LogError::Open { path: file.clone(), source })?;
    let rotated_kept = settings.max_files.saturating_sub(1) as usize;
    let limit = usize::try_from(settings.max_file_bytes).unwrap_or(usize::MAX);
    let rotating = FileRotate::new(
        &file,
        AppendCount::new(rotated_kept),
        ContentLimit::BytesSurpassed(limit),
        Compression::None,
        Some(private_file_options()),
    );
    let (non_blocking, guard) = tracing_appender::non_blocking(rotating);
    let (filter, reload) = reload::Layer::new(level_filter(settings.level));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_timer(ChronoLocal::new("%Y-%m-%dT%H:%M:%S%.3f%:z".to_owned()))
        .with_thread_names(true)
        .with_target(true)
        .with_writer(Redacting(non_blocking));
    let subscriber = Registry::default().with(filter).with(fmt);
    let logging = Logging { file, level: Mutex::new(settings.level), reload, _writer: guard };
    Ok((subscriber, logging))
}

/// Options FileRotate opens each log file with (it requires read, create, append).
fn private_file_options() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    o.read(true).create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o
}

/// Wraps the non-blocking writer: each formatted event arrives as one
/// `write_all` of one whole line, which is redacted before it is queued.
struct Redacting(NonBlocking);

struct RedactingWriter(NonBlocking);

impl<'a> MakeWriter<'a> for Redacting {
    type Writer = RedactingWriter;
    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.clone())
    }
}

impl Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(crate::redact::redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = crate::redact::redact(&info.to_string()).into_owned();
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        tracing::error!(target: "panic", thread = name, "{message}");
        let _ = writeln!(io::stderr(), "agent-helper: thread '{name}' {message}");
    }));
}
