//! The native-messaging bridge as a browser runs it: a child process whose
//! stdin and stdout carry frames.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};

use super::{Conn, TIMEOUT};

/// `agent-helper-bridge`, built beside `agent-helper` (the bridge starts the
/// helper it finds next to itself). Cargo builds only this package's binaries
/// for its tests, so the bridge is built here, once per test binary.
pub fn exe() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-q", "-p", "agent-helper-bridge"])
                .status()
                .expect("run cargo build");
            assert!(status.success(), "building agent-helper-bridge failed");
            let exe = Path::new(super::bin()).with_file_name("agent-helper-bridge");
            assert!(exe.exists(), "{} missing after the build", exe.display());
            exe
        })
        .clone()
}

/// A running bridge: talk to it with `conn`, read what it wrote to stderr.
pub struct Bridge {
    pub child: Child,
    pub conn: Conn<Pipes>,
}

/// The bridge's stdin and stdout as one stream. Reads give up at the test
/// deadline instead of hanging the test.
pub struct Pipes {
    stdin: Option<ChildStdin>,
    chunks: Receiver<Vec<u8>>,
    pending: Vec<u8>,
}

impl Bridge {
    /// Starts the bridge for `profile` with the browser's arguments and extra
    /// environment.
    pub fn start(profile: &Path, env: &[(&str, &str)]) -> Bridge {
        Bridge::spawn(Command::new(exe()), profile, env)
    }

    /// The same, run as local user `user` (root only).
    pub fn start_as(user: &str, profile: &Path, env: &[(&str, &str)]) -> Bridge {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", user, "--"]).arg(exe());
        Bridge::spawn(cmd, profile, env)
    }

    fn spawn(mut cmd: Command, profile: &Path, env: &[(&str, &str)]) -> Bridge {
        cmd.arg("chrome-extension://test/")
            .env("AGENT_HELPER_PROFILE", profile)
            .env_remove("AGENT_HELPER_BIN")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn the bridge");
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().expect("piped");
        let (tx, chunks) = channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Bridge { child, conn: Conn::over(Pipes { stdin, chunks, pending: Vec::new() }) }
    }

    /// Closes stdin as a browser does when the extension disconnects.
    pub fn close_stdin(&mut self) {
        self.conn.stream.stdin = None;
    }

    /// Every byte the bridge writes from now until it exits.
    pub fn rest_of_stdout(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.conn.stream.pending);
        while let Ok(chunk) = self.conn.stream.chunks.recv_timeout(TIMEOUT) {
            out.extend(chunk);
        }
        out
    }

    pub fn wait(&mut self) -> ExitStatus {
        super::wait_with_deadline(&mut self.child)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Read for Pipes {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pending.is_empty() {
            match self.chunks.recv_timeout(TIMEOUT) {
                Ok(chunk) => self.pending = chunk,
                Err(RecvTimeoutError::Disconnected) => return Ok(0),
                Err(RecvTimeoutError::Timeout) => return Err(std::io::ErrorKind::TimedOut.into()),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

impl Write for Pipes {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.stdin {
            Some(s) => s.write(buf),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stdin.as_mut().map_or(Ok(()), |s| s.flush())
    }
}
