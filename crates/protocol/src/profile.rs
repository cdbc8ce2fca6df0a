//! Where a helper instance keeps its files.
//!
//! With `--profile DIR` (or `AGENT_HELPER_PROFILE`) everything lives under DIR,
//! so several helpers (an agent and a supervisor in a test) run side by side:
//!
//! ```text
//! DIR/config.toml          user configuration
//! DIR/state.json           remembered account name (never the password)
//! DIR/logs/BPClient.log    diagnostics log and its rotated files
//! DIR/diagnostics/         bundles made by collectDiagnostics
//! DIR/recordings/          screen recordings
//! DIR/agent-helper.sock    local API socket (Unix), mode 0600
//! DIR/agent-helper.lock    held while the helper runs (one helper per profile)
//! ```
//!
//! Without it the OS-standard per-user places are used: XDG directories on Linux,
//! `~/Library/Application Support` and `~/Library/Logs` on macOS, `%LOCALAPPDATA%`
//! on Windows (where the socket is a named pipe).

use std::io;
use std::path::{Path, PathBuf};

const APP_DIR_UNIX: &str = "agent-helper";
const APP_DIR_DESKTOP: &str = "Agent Helper";
const SOCKET_FILE: &str = "agent-helper.sock";
const LOCK_FILE: &str = "agent-helper.lock";
/// Keyring service name of the default profile.
const KEYRING_SERVICE: &str = "agent-helper";
/// `sun_path` is 104 bytes on macOS and 108 on Linux; stay under both.
const MAX_SOCKET_PATH: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketAddress {
    /// A Unix domain socket file.
    UnixPath(PathBuf),
    /// A Windows named pipe name (without the `\\.\pipe\` prefix).
    NamedPipe(String),
}

impl std::fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocketAddress::UnixPath(p) => write!(f, "{}", p.display()),
            SocketAddress::NamedPipe(n) => write!(f, r"\\.\pipe\{n}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot find the user's home directory; pass --profile DIR")]
    NoHome,
    #[error("profile directory {0:?} cannot be used: {1}")]
    BadDir(PathBuf, io::Error),
}

#[derive(Debug, Clone)]
pub struct Profile {
    /// The `--profile` directory, or `None` for the OS-standard places.
    pub explicit_dir: Option<PathBuf>,
    pub config_file: PathBuf,
    pub state_file: PathBuf,
    pub log_dir: PathBuf,
    pub diagnostics_dir: PathBuf,
    pub recordings_dir: PathBuf,
    pub lock_file: PathBuf,
    pub socket: SocketAddress,
    /// Keyring "service" under which this profile's passwords are stored.
    pub keyring_service: String,
}

impl Profile {
    /// Resolves the layout for `--profile DIR`, or the per-user defaults.
    /// Touches nothing on disk except to make DIR absolute.
    pub fn resolve(explicit: Option<&Path>) -> Result<Profile, ProfileError> {
        match explicit {
            Some(dir) => Self::in_dir(dir),
            None => Self::per_user(),
        }
    }

    fn in_dir(dir: &Path) -> Result<Profile, ProfileError> {
        let dir = std::path::absolute(dir).map_err(|e| ProfileError::BadDir(dir.to_owned(), e))?;
        Ok(Profile {
            config_file: dir.join("config.toml"),
            state_file: dir.join("state.json"),
            log_dir: dir.join("logs"),
            diagnostics_dir: dir.join("diagnostics"),
            recordings_dir: dir.join("recordings"),
            lock_file: dir.join(LOCK_FILE),
            socket: socket_in(&dir),
            keyring_service: format!("{KEYRING_SERVICE}:{}", dir.display()),
            explicit_dir: Some(dir),
        })
    }

    fn per_user() -> Result<Profile, ProfileError> {
        let base = directories::BaseDirs::new().ok_or(ProfileError::NoHome)?;
        let (config, state, data, logs, runtime);
        if cfg!(target_os = "macos") {
            config = base.config_dir().join(APP_DIR_DESKTOP);
            state = config.clone();
            data = config.clone();
            logs = base.home_dir().join("Library/Logs").join(APP_DIR_DESKTOP);
            runtime = config.clone();
        } else if cfg!(windows) {
            config = base.data_local_dir().join(APP_DIR_DESKTOP);
            state = config.clone();
            data = config.clone();
            logs = config.join("logs");
            runtime = config.clone();
        } else {
            config = base.config_dir().join(APP_DIR_UNIX);
            state = base.state_dir().unwrap_or(base.data_local_dir()).join(APP_DIR_UNIX);
            data = base.data_local_dir().join(APP_DIR_UNIX);
            logs = state.join("logs");
            runtime = base.runtime_dir().map(|r| r.join(APP_DIR_UNIX)).unwrap_or_else(|| state.clone());
        }
        Ok(Profile {
            explicit_dir: None,
            config_file: config.join("config.toml"),
            state_file: state.join("state.json"),
            log_dir: logs,
            diagnostics_dir: state.join("diagnostics"),
            recordings_dir: data.join("recordings"),
            lock_file: runtime.join(LOCK_FILE),
            socket: socket_in(&runtime),
            keyring_service: KEYRING_SERVICE.to_owned(),
        })
    }

    /// The directory shown to people as "the profile".
    pub fn display_dir(&self) -> PathBuf {
        match &self.explicit_dir {
            Some(d) => d.clone(),
            None => self.config_file.parent().map(Path::to_owned).unwrap_or_default(),
        }
    }

    /// Creates every directory of the profile, readable by its user only.
    pub fn create_dirs(&self) -> io::Result<()> {
        let mut dirs: Vec<&Path> = vec![&self.log_dir, &self.diagnostics_dir, &self.recordings_dir];
        dirs.extend(self.config_file.parent());
        dirs.extend(self.state_file.parent());
        dirs.extend(self.lock_file.parent());
        if let SocketAddress::UnixPath(p) = &self.socket {
            dirs.extend(p.parent());
        }
        for d in dirs {
            create_private_dir(d)?;
        }
        Ok(())
    }
}

fn socket_in(dir: &Path) -> SocketAddress {
    if cfg!(windows) {
        let user = std::env::var("USERNAME").unwrap_or_default();
        let tag = format!("{:016x}", fnv1a(dir.to_string_lossy().as_bytes()));
        return SocketAddress::NamedPipe(format!("agent-helper-{user}-{tag}"));
    }
    let path = dir.join(SOCKET_FILE);
    if path.as_os_str().len() <= MAX_SOCKET_PATH {
        return SocketAddress::UnixPath(path);
    }
    // Too long for sun_path: keep a short, profile-specific name in the user's
    // private runtime directory (or the temp dir; the socket itself is 0600).
    let short_dir = directories::BaseDirs::new()
        .and_then(|b| b.runtime_dir().map(Path::to_owned))
        .unwrap_or_else(std::env::temp_dir);
    let tag = fnv1a(dir.to_string_lossy().as_bytes());
    SocketAddress::UnixPath(short_dir.join(format!("agent-helper-{tag:016x}.sock")))
}

/// A stable, dependency-free 64-bit hash for names derived from paths.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Missing directories are created 0700. An existing directory keeps its mode:
/// `--profile` may point at a folder the user chose, and the files that matter
/// (socket, config, state) carry their own 0600 mode anyway.
#[cfg(unix)]
fn create_private_dir(d: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !d.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(d)?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn create_private_dir(d: &Path) -> io::Result<()> {
    std::fs::create_dir_all(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_profile_puts_everything_under_the_dir() {
        let p = Profile::resolve(Some(Path::new("/tmp/ah-prof"))).unwrap();
        for f in [&p.config_file, &p.state_file, &p.log_dir, &p.diagnostics_dir, &p.recordings_dir, &p.lock_file] {
            assert!(f.starts_with("/tmp/ah-prof"), "{f:?}");
        }
        if cfg!(unix) {
            assert_eq!(p.socket, SocketAddress::UnixPath("/tmp/ah-prof/agent-helper.sock".into()));
        }
        assert_eq!(p.keyring_service, "agent-helper:/tmp/ah-prof");
    }

    #[cfg(unix)]
    #[test]
    fn long_profile_paths_get_a_short_socket_name() {
        let long = format!("/tmp/{}", "d".repeat(120));
        let p = Profile::resolve(Some(Path::new(&long))).unwrap();
        let SocketAddress::UnixPath(s) = &p.socket else { panic!("unix") };
        assert!(s.as_os_str().len() <= MAX_SOCKET_PATH + 40, "{s:?}");
        let again = Profile::resolve(Some(Path::new(&long))).unwrap();
        assert_eq!(p.socket, again.socket, "stable across runs");
    }
}
