//! The bridge's own diagnostics: each line goes to stderr (which browsers
//! keep, or not) and to `bridge.log` in the profile's log folder beside
//! BPClient.log, where an administrator looking into "helper missing" on an
//! agent's page finds why. The file is kept under 1 MiB by moving it to
//! `bridge.log.1` when it grows past that.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use agent_helper_protocol::Profile;

/// Past this the log starts over (the previous one kept as `bridge.log.1`).
const MAX_LOG_BYTES: u64 = 1024 * 1024;

pub struct Diag {
    file: Option<File>,
}

impl Diag {
    /// Opens the profile's `bridge.log`; stderr only when it cannot be (a
    /// profile of another user, a read-only disk).
    pub fn open(profile: &Profile) -> Diag {
        let file = profile.create_dirs().ok().and_then(|()| open_log(&profile.log_dir.join("bridge.log")));
        Diag { file }
    }

    /// Only stderr: before a profile is known.
    pub fn stderr_only() -> Diag {
        Diag { file: None }
    }

    pub fn say(&mut self, message: &str) {
        eprintln!("agent-helper-bridge: {message}");
        if let Some(f) = &mut self.file {
            let stamp = chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%.3f%:z");
            // One line per message, whatever it holds.
            let line = message.replace(['\r', '\n'], " ");
            let _ = writeln!(f, "{stamp} pid {} {line}", std::process::id());
        }
    }
}

fn open_log(path: &Path) -> Option<File> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_LOG_BYTES) {
        let _ = std::fs::rename(path, path.with_extension("log.1"));
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_go_to_the_profiles_log_and_a_full_log_moves_aside() {
        let dir = tempfile::tempdir().unwrap();
        let profile = Profile::resolve(Some(dir.path())).unwrap();
        let mut diag = Diag::open(&profile);
        diag.say("first\nforged line");
        let log = profile.log_dir.join("bridge.log");
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("first forged line"), "{text}");

        std::fs::write(&log, vec![b'x'; MAX_LOG_BYTES as usize + 1]).unwrap();
        Diag::open(&profile).say("second");
        assert!(std::fs::read_to_string(&log).unwrap().ends_with("second\n"));
        assert_eq!(std::fs::metadata(log.with_extension("log.1")).unwrap().len(), MAX_LOG_BYTES + 1);
    }
}
