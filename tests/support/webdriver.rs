//! Just enough W3C WebDriver to drive a browser from a test: sessions,
//! navigation, scripts. chromedriver and geckodriver both speak it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::TIMEOUT;

/// A driver process (chromedriver, geckodriver) and one browser session.
pub struct Session {
    driver: Child,
    port: u16,
    id: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One HTTP/1.1 exchange with the driver; the answer's `value`.
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    // Drivers keep the connection open whatever we ask: read by Content-Length.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let (head_len, body_len) = loop {
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the driver closed the connection".into());
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or("no Content-Length")?;
            break (end + 4, len);
        }
    };
    while raw.len() < head_len + body_len {
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the driver closed the connection mid-answer".into());
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let payload = String::from_utf8_lossy(&raw[head_len..head_len + body_len]).into_owned();
    let v: Value = serde_json::from_str(&payload).map_err(|e| format!("{e}: {payload}"))?;
    if let Some(err) = v["value"].get("error") {
        return Err(format!("{err}: {}", v["value"]["message"]));
    }
    Ok(v["value"].clone())
}

impl Session {
    /// Starts `driver` (with `env`) and opens a session with `capabilities`.
    pub fn start(driver: &str, args: &[String], env: &[(&str, String)], capabilities: Value) -> Session {
        Session::try_start(driver, args, env, capabilities).unwrap_or_else(|e| panic!("new session: {e}"))
    }

    /// As [`Session::start`]; a session that cannot be opened is an error,
    /// and the driver is stopped.
    pub fn try_start(
        driver: &str,
        args: &[String],
        env: &[(&str, String)],
        capabilities: Value,
    ) -> Result<Session, String> {
        let port = free_port();
        let mut cmd = Command::new(driver);
        cmd.arg(format!("--port={port}")).args(args).envs(env.iter().map(|(k, v)| (k, v)));
        // WEBDRIVER_LOG=1 shows the driver's own log when a session misbehaves.
        cmd.stdout(Stdio::null()).stderr(if std::env::var_os("WEBDRIVER_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
        // Its own process group: the driver's children (WebKitWebDriver, the
        // browser or app) go with it.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let driver = cmd.spawn().unwrap_or_else(|e| panic!("start {}: {e}", cmd.get_program().display()));
        let mut session = Session { driver, port, id: String::new() };
        let deadline = Instant::now() + TIMEOUT;
        while !http(port, "GET", "/status", None).is_ok_and(|v| v["ready"] == true) {
            if Instant::now() > deadline || session.driver.try_wait().unwrap().is_some() {
                return Err("the WebDriver server did not become ready".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let created =
            http(port, "POST", "/session", Some(&json!({ "capabilities": { "alwaysMatch": capabilities } })))?;
        session.id = created["sessionId"].as_str().ok_or("no sessionId")?.to_owned();
        Ok(session)
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        http(self.port, method, &format!("/session/{}{path}", self.id), body.as_ref())
    }

    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url }))).unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    pub fn refresh(&self) {
        self.command("POST", "/refresh", Some(json!({}))).expect("refresh");
    }

    /// Runs `body` as an async function of `args` in the page and returns what
    /// it resolves to (rejections come back as `Err`).
    pub fn run(&self, body: &str, args: Value) -> Result<Value, String> {
        let script = format!(
            "const done = arguments[arguments.length - 1]; \
             (async (...args) => {{ {body} }})(...Array.prototype.slice.call(arguments, 0, -1))\
               .then((v) => done({{ ok: v === undefined ? null : v }}), (e) => done({{ err: String(e && (e.code ? e.code + ': ' + e.message : e.message || e)) }}));"
        );
        let v = self.command("POST", "/execute/async", Some(json!({ "script": script, "args": args })))?;
        match v.get("err") {
            Some(e) => Err(e.as_str().unwrap_or_default().to_owned()),
            None => Ok(v["ok"].clone()),
        }
    }

    /// Sets how long async scripts may run.
    pub fn script_timeout(&self, timeout: Duration) {
        self.try_script_timeout(timeout).expect("timeouts");
    }

    pub fn try_script_timeout(&self, timeout: Duration) -> Result<(), String> {
        self.command("POST", "/timeouts", Some(json!({ "script": timeout.as_millis() as u64 }))).map(drop)
    }

    /// The handles of the session's windows (top-level browsing contexts).
    pub fn window_handles(&self) -> Vec<String> {
        let v = self.command("GET", "/window/handles", None).unwrap_or(Value::Null);
        v.as_array().map(|a| a.iter().filter_map(|h| h.as_str().map(str::to_owned)).collect()).unwrap_or_default()
    }

    /// Makes `handle` the window later commands act on.
    pub fn switch_to(&self, handle: &str) -> Result<(), String> {
        self.command("POST", "/window", Some(json!({ "handle": handle }))).map(|_| ())
    }

    /// The current window's place and size (`x`, `y`, `width`, `height`).
    pub fn window_rect(&self) -> Result<Value, String> {
        self.command("GET", "/window/rect", None)
    }

    pub fn set_window_rect(&self, rect: Value) -> Result<Value, String> {
        self.command("POST", "/window/rect", Some(rect))
    }

    pub fn title(&self) -> Result<String, String> {
        self.command("GET", "/title", None).map(|v| v.as_str().unwrap_or_default().to_owned())
    }

    /// Firefox: installs an add-on from a folder or .xpi for this session.
    pub fn install_temporary_addon(&self, path: &std::path::Path) {
        self.command("POST", "/moz/addon/install", Some(json!({ "path": path, "temporary": true })))
            .unwrap_or_else(|e| panic!("install add-on: {e}"));
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.id.is_empty() {
            let _ = self.command("DELETE", "", None);
        }
        // SAFETY: kill(2) on the process group this session started.
        unsafe { libc::kill(-(self.driver.id() as i32), libc::SIGKILL) };
        let _ = self.driver.wait();
    }
}
