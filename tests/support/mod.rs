//! Harness for the end-to-end tests: starts the real `agent-helper --headless`
//! binary on a throwaway profile and talks to it through its socket and `ctl`.
//! Waits are for events (the ready line, an answer, a file appearing) with a
//! deadline, never fixed sleeps.
#![allow(dead_code)]

pub mod agent;
pub mod baresip;
pub mod bridge;
pub mod browser;
pub mod desktop;
pub mod kamailio;
pub mod netloss;
pub mod pulse;
pub mod sipp;
pub mod speech;
pub mod steal;
pub mod web;
pub mod webdriver;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use agent_helper_protocol::frame::{Frame, read_frame, write_frame};
use serde_json::{Value, json};

pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A throwaway directory in memory (`/dev/shm`) where there is one, for the
/// files real-time programs write while a call runs: baresip writes what it
/// hears from its audio thread, and a write to disk can block for hundreds
/// of milliseconds when the machine is busy writing (a build beside the
/// tests), which breaks up the very audio being measured.
pub fn ram_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("agent-helper-test")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("a temporary directory")
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_agent-helper")
}

/// A `Command` for the binary with a clean environment for our variables.
pub fn command() -> Command {
    let mut c = Command::new(bin());
    c.env_remove("AGENT_HELPER_PROFILE").env_remove("AGENT_HELPER_POLICY");
    c
}

pub struct Helper {
    pub child: Child,
    pub profile: PathBuf,
    pub socket: PathBuf,
    /// Lines the helper printed after the ready line.
    pub stdout: mpsc::Receiver<String>,
}

pub struct Start<'a> {
    pub profile: &'a Path,
    pub env: Vec<(&'a str, String)>,
    /// Run as another user (through runuser); needs root.
    pub user: Option<&'a str>,
}

impl<'a> Start<'a> {
    pub fn new(profile: &'a Path) -> Self {
        Start { profile, env: Vec::new(), user: None }
    }

    pub fn env(mut self, k: &'a str, v: impl Into<String>) -> Self {
        self.env.push((k, v.into()));
        self
    }

    pub fn spawn(self) -> Result<Helper, (Option<i32>, String)> {
        let mut cmd = match self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", bin()]);
                c
            }
            None => command(),
        };
        cmd.args(["--headless", "--profile"]).arg(self.profile);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = cmd.spawn().expect("spawn agent-helper");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.starts_with("agent-helper ready:") => break,
                Ok(_) => continue,
                Err(_) => {
                    // Exited (bad config …) or hung: report its status and stderr.
                    let _ = child.kill();
                    let status = child.wait().ok().and_then(|s| s.code());
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = e.read_to_string(&mut err);
                    }
                    return Err((status, err));
                }
            }
        }
        let socket = self.profile.join("agent-helper.sock");
        Ok(Helper { child, profile: self.profile.to_owned(), socket, stdout: rx })
    }
}

impl Helper {
    pub fn start(profile: &Path) -> Helper {
        Start::new(profile).spawn().unwrap_or_else(|(code, err)| panic!("helper did not start ({code:?}): {err}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn ctl(&self, method: &str, params: Value) -> (i32, Value) {
        ctl(&self.profile, &[method, &params.to_string()])
    }

    /// `ctl` that must succeed; returns the result.
    pub fn call(&self, method: &str, params: Value) -> Value {
        let (code, out) = self.ctl(method, params);
        assert_eq!(code, 0, "{method} failed: {out}");
        out
    }

    pub fn connect(&self) -> Conn {
        Conn::open(&self.socket)
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(mut self) -> ExitStatus {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        wait_with_deadline(&mut self.child)
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A helper the bridge started (not our child): stopped with SIGTERM when dropped.
pub struct Started(pub u32);

impl Drop for Started {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on a pid the helper reported for itself.
        unsafe { libc::kill(self.0 as i32, libc::SIGTERM) };
    }
}

pub fn wait_with_deadline(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit within {TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `agent-helper ctl --profile DIR ARGS…`; returns the exit code and stdout as JSON.
pub fn ctl(profile: &Path, args: &[&str]) -> (i32, Value) {
    let out = command().arg("ctl").arg("--profile").arg(profile).args(args).output().expect("run ctl");
    (out.status.code().unwrap_or(-1), parse_stdout(&out))
}

pub fn parse_stdout(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text)
        .unwrap_or_else(|_| json!({ "raw": text, "stderr": String::from_utf8_lossy(&out.stderr) }))
}

/// Polls `cond` until it holds or the deadline passes (for state with no event
/// to wait on, such as a file the background log writer produces).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A raw connection speaking frames, for hostile-input tests: to the socket,
/// or to a bridge's stdin/stdout ([`bridge::Pipes`]).
pub struct Conn<S: Read + Write = UnixStream> {
    pub stream: S,
    next_id: u64,
    /// Events read while looking for a response.
    events: std::collections::VecDeque<Value>,
}

impl Conn {
    pub fn open(socket: &Path) -> Conn {
        let stream = UnixStream::connect(socket).expect("connect to helper socket");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        Conn::over(stream)
    }
}

impl<S: Read + Write> Conn<S> {
    /// Frames over any stream whose reads end with an error at a deadline.
    pub fn over(stream: S) -> Conn<S> {
        Conn { stream, next_id: 1, events: Default::default() }
    }

    pub fn send_raw(&mut self, payload: &[u8]) {
        write_frame(&mut self.stream, payload).expect("write frame");
    }

    /// The next message (response or event) as JSON.
    pub fn read(&mut self) -> Value {
        match read_frame(&mut self.stream).expect("read frame") {
            Some(Frame::Payload(p)) => serde_json::from_slice(&p).expect("helper sends JSON"),
            other => panic!("unexpected frame {other:?}"),
        }
    }

    /// The next response; events met on the way are kept for [`Conn::event`].
    pub fn response(&mut self) -> Value {
        loop {
            let v = self.read();
            if v.get("event").is_none() {
                return v;
            }
            self.events.push_back(v);
        }
    }

    /// The next event, whatever its name: (name, data).
    pub fn next_event(&mut self) -> (String, Value) {
        let v = match self.events.pop_front() {
            Some(v) => v,
            None => loop {
                let v = self.read();
                if v.get("event").is_some() {
                    break v;
                }
            },
        };
        (v["event"].as_str().unwrap_or_default().to_owned(), v["data"].clone())
    }

    /// The next event named `name`, skipping other events and responses.
    pub fn event(&mut self, name: &str) -> Value {
        while let Some(v) = self.events.pop_front() {
            if v["event"] == name {
                return v["data"].clone();
            }
        }
        // What went by, for the message when the event never comes.
        let mut seen = Vec::new();
        loop {
            let v = match read_frame(&mut self.stream) {
                Ok(Some(Frame::Payload(p))) => serde_json::from_slice::<Value>(&p).expect("helper sends JSON"),
                other => panic!("waiting for event {name}: {other:?}; meanwhile: {seen:?}"),
            };
            if v["event"] == name {
                return v["data"].clone();
            }
            seen.push(v);
        }
    }

    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send_raw(json!({ "id": id, "method": method, "params": params }).to_string().as_bytes());
        loop {
            let v = self.response();
            if v["id"] == id {
                return v;
            }
        }
    }

    pub fn write_all(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out
}

pub fn is_root() -> bool {
    // SAFETY: geteuid() has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A helper in a profile folder everyone may enter, so that only the socket's
/// own protection stands between it and [`OTHER_USER`]. `None` (and a note)
/// when not root: creating a user needs root, which CI has.
pub fn helper_open_to_other_users() -> Option<(tempfile::TempDir, Helper)> {
    use std::os::unix::fs::PermissionsExt;
    if !is_root() {
        eprintln!("not root: cannot create a throwaway user; this test runs in CI (.ci/run runs as root)");
        return None;
    }
    ensure_other_user();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let helper = Helper::start(dir.path());
    Some((dir, helper))
}

/// A throwaway local user for the tests about other users (created when missing; root only).
pub const OTHER_USER: &str = "ah-test-other";

pub fn ensure_other_user() {
    let exists = Command::new("id").arg(OTHER_USER).output().unwrap().status.success();
    if !exists {
        let ok = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER_USER])
            .status()
            .unwrap()
            .success();
        assert!(ok, "useradd {OTHER_USER}");
    }
}
