//! The desktop app under test: built once (ui pages, then the Tauri shell),
//! run on its own Xvfb display and driven through tauri-driver and
//! WebKitWebDriver, window by window.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::webdriver::Session;
use super::{TIMEOUT, wait_until};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds ui/dist and the desktop binary once per test binary (a debug
/// build, or a release build with `DESKTOP_BUILD=release`); returns the binary.
pub fn built() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let ui = root().join("ui");
            if !ui.join("node_modules").exists() {
                let ok = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&ui).status();
                assert!(ok.is_ok_and(|s| s.success()), "npm ci in ui/");
            }
            let ok = Command::new("node").arg("build.mjs").current_dir(&ui).status();
            assert!(ok.is_ok_and(|s| s.success()), "building ui/");
            // DESKTOP_BUILD=release: the benchmark's figures for what agents run.
            let release = std::env::var("DESKTOP_BUILD").is_ok_and(|b| b == "release");
            let mut build = Command::new("cargo");
            build.args(["build", "--locked"]).current_dir(root().join("src-tauri"));
            if release {
                build.arg("--release");
            }
            let ok = build.status();
            assert!(ok.is_ok_and(|s| s.success()), "building src-tauri (needs scripts/system-deps.sh test)");
            root().join(if release { "target/release" } else { "target/debug" }).join("agent-helper-desktop")
        })
        .clone()
}

/// An X server of our own (Xvfb picks a free display number), with a system
/// tray (trayer, top right) when asked for.
pub struct Display {
    child: Child,
    tray: Option<Child>,
    pub name: String,
}

/// Where trayer puts the app's icon: the screen's top-right 32 × 32 corner.
pub const TRAY_ICON: (u32, u32) = (1280 - 16, 16);

impl Display {
    pub fn start(with_tray: bool) -> Display {
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb (scripts/system-deps.sh test installs it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("Xvfb's display number");
        let name = format!(":{}", line.trim());
        let tray = with_tray.then(|| {
            Command::new("trayer")
                .args(["--edge", "top", "--align", "right", "--widthtype", "request", "--height", "32"])
                .env("DISPLAY", &name)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("trayer (scripts/system-deps.sh test installs it)")
        });
        Display { child, tray, name }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        for c in self.tray.iter_mut().chain(std::iter::once(&mut self.child)) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The app, started by tauri-driver on its own display.
pub struct Desktop {
    pub session: Session,
    /// The app's profile folder (config.toml, call-history.json).
    pub profile: PathBuf,
    /// The app's config home (its autostart entry, window places).
    pub xdg_config: PathBuf,
    log_file: PathBuf,
    /// What the app was started with, for launching it a second time.
    pub env: Vec<(String, String)>,
    display: Display,
}

/// Which profile the app runs on.
pub enum On<'a> {
    /// `AGENT_HELPER_PROFILE=DIR`, HOME in DIR/home (autostart entries and
    /// window places land there, not in the real home).
    Profile(&'a Path),
    /// The per-user default profile, with HOME and the XDG folders in this
    /// throwaway folder.
    Home(&'a Path),
}

impl Desktop {
    /// `env`: extra variables for the app (PULSE_SERVER …).
    pub fn start(profile: &Path, env: &[(&str, String)]) -> Desktop {
        Desktop::start_on(On::Profile(profile), env, false)
    }

    /// `with_tray`: a system tray on the display for the app's icon.
    pub fn start_on(on: On, env: &[(&str, String)], with_tray: bool) -> Desktop {
        let binary = built();
        let display = Display::start(with_tray);
        let native_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut vars: Vec<(String, String)> = vec![
            ("DISPLAY".into(), display.name.clone()),
            ("WEBKIT_DISABLE_COMPOSITING_MODE".into(), "1".into()),
            ("WEBKIT_DISABLE_DMABUF_RENDERER".into(), "1".into()),
        ];
        let (profile, xdg_config, log_file) = match on {
            On::Profile(dir) => {
                vars.push(("AGENT_HELPER_PROFILE".into(), dir.display().to_string()));
                let home = dir.join("home");
                vars.push(("HOME".into(), home.display().to_string()));
                vars.push(("XDG_CONFIG_HOME".into(), home.join(".config").display().to_string()));
                (dir.to_owned(), home.join(".config"), dir.join("logs/BPClient.log"))
            }
            On::Home(home) => {
                let runtime = home.join("run");
                std::fs::create_dir_all(&runtime).unwrap();
                for (k, sub) in [("XDG_CONFIG_HOME", ".config"), ("XDG_STATE_HOME", "state"), ("XDG_DATA_HOME", "data")]
                {
                    vars.push((k.into(), home.join(sub).display().to_string()));
                }
                vars.push(("HOME".into(), home.display().to_string()));
                vars.push(("XDG_RUNTIME_DIR".into(), runtime.display().to_string()));
                let profile = home.join(".config/agent-helper");
                (profile, home.join(".config"), home.join("state/agent-helper/logs/BPClient.log"))
            }
        };
        vars.extend(env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let driver = std::env::var("TAURI_DRIVER").unwrap_or_else(|_| "tauri-driver".into());
        let pairs: Vec<(&str, String)> = vars.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let capabilities = json!({ "tauri:options": { "application": binary } });
        // WebKitWebDriver now and then drops the connection while it starts
        // the app or just after (its log shows no cause); a second start is a
        // fresh driver and a fresh app on the same display and profile.
        let start = || {
            let session =
                Session::try_start(&driver, &[format!("--native-port={native_port}")], &pairs, capabilities.clone())?;
            session.try_script_timeout(TIMEOUT)?;
            Ok::<_, String>(session)
        };
        let session = start()
            .or_else(|e| {
                eprintln!("new session failed ({e}); starting the driver and the app again");
                stop_app(&log_file);
                start()
            })
            .unwrap_or_else(|e| panic!("new session: {e}"));
        Desktop { session, profile, xdg_config, log_file, env: vars, display }
    }

    /// Switches to the window whose title starts with `title`, waiting for it to appear.
    pub fn window(&self, title: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            for handle in self.session.window_handles() {
                if self.session.switch_to(&handle).is_ok() && self.session.title().is_ok_and(|t| t.starts_with(title)) {
                    return handle;
                }
            }
            assert!(Instant::now() < deadline, "no window titled {title:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether a window with this handle is still open.
    pub fn is_open(&self, handle: &str) -> bool {
        self.session.window_handles().iter().any(|h| h == handle)
    }

    /// Runs `body` (an async function body) in the current window.
    pub fn run(&self, body: &str) -> Value {
        self.script(body).unwrap_or_else(|e| panic!("script failed: {e}\n{body}"))
    }

    /// WebKitWebDriver now and then drops the connection of a script sent
    /// while the page is still settling (seen about one run in three here);
    /// the scripts these tests send can be sent again.
    fn script(&self, body: &str) -> Result<Value, String> {
        resent(|| self.session.run(body, json!([])))
    }

    /// Waits until `expression` is truthy in the current window; returns its value.
    pub fn until(&self, what: &str, expression: &str) -> Value {
        let body = format!(
            "const end = Date.now() + {}; for (;;) {{ const v = ({expression}); if (v) return v; \
             if (Date.now() > end) throw new Error('timed out'); await new Promise(r => setTimeout(r, 50)); }}",
            TIMEOUT.as_millis() - 2000
        );
        self.script(&body).unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
    }

    /// Clicks the element matched by `selector` in the current window.
    pub fn click(&self, selector: &str) {
        self.until(
            &format!("{selector} to be enabled"),
            &format!("(e => e && !e.disabled)(document.querySelector({selector:?}))"),
        );
        self.run(&format!("document.querySelector({selector:?}).click()"));
    }

    /// Types `value` into the input matched by `selector`.
    pub fn fill(&self, selector: &str, value: &str) {
        self.run(&format!(
            "const e = document.querySelector({selector:?}); e.focus(); e.value = {value:?}; \
             e.dispatchEvent(new Event('input', {{ bubbles: true }}));"
        ));
    }

    /// Saves a screenshot of the whole display (every window, as the agent
    /// sees it) as an artifact: `target/desktop-screenshots/NAME.png`, not
    /// committed. Taken from the X server with ImageMagick's `import`:
    /// WebDriver's own screenshot waits for a paint that a covered window, or
    /// one opened without focus like the call popup, does not get under Xvfb.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let dir = root().join("target/desktop-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        let ok = Command::new("import")
            .args(["-display", &self.display.name, "-window", "root"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "import (imagemagick) could not shoot the display");
        let png = std::fs::read(&path).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        path
    }

    /// Moves the current window so its left edge is at `x` (the tests put
    /// the settings beside the softphone: with no window manager, a window
    /// once covered is not drawn again when uncovered).
    /// Its commands are sent again when the driver drops them, as scripts are.
    pub fn move_to(&self, x: u32) {
        let moved = resent(|| {
            let rect = self.session.window_rect()?;
            self.session.set_window_rect(json!({ "x": x, "y": rect["y"] }))
        });
        assert!(moved.is_ok(), "moving the window: {moved:?}");
    }

    /// Runs xdotool on the app's display (`mousemove X Y click 1`, `key Down` …).
    pub fn xdotool(&self, args: &[&str]) {
        let ok = Command::new("xdotool").args(args).env("DISPLAY", &self.display.name).status();
        assert!(ok.is_ok_and(|s| s.success()), "xdotool {args:?}");
    }

    /// The colour of one pixel of the display, as the agent sees it.
    pub fn pixel(&self, x: u32, y: u32) -> (u8, u8, u8) {
        let out = Command::new("import")
            .args([
                "-display",
                &self.display.name,
                "-window",
                "root",
                "-crop",
                &format!("1x1+{x}+{y}"),
                "-depth",
                "8",
                "rgb:-",
            ])
            .output()
            .expect("import");
        match out.stdout[..] {
            [r, g, b, ..] => (r, g, b),
            _ => panic!("no pixel from import: {}", String::from_utf8_lossy(&out.stderr)),
        }
    }

    /// The app's pid, from BPClient.log's start line.
    pub fn pid(&self) -> i32 {
        app_pid(&self.log()).expect("the app's pid in BPClient.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    pub fn wait_log(&self, needle: &str) {
        wait_until(needle, || self.log().contains(needle));
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        // The app outlives its windows (it is a tray app): stop it as the
        // system would, by signal.
        stop_app(&self.log_file);
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- BPClient.log (last lines) ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Stops the app whose BPClient.log this is (pid from its latest start
/// line) and waits for it to be gone (it releases the profile then).
fn stop_app(log_file: &Path) {
    if let Some(pid) = app_pid(&std::fs::read_to_string(log_file).unwrap_or_default()) {
        // SAFETY: kill(2) on the app this test started; signal 0 only asks whether it lives.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let gone = || unsafe { libc::kill(pid, 0) } != 0;
        let deadline = std::time::Instant::now() + TIMEOUT;
        while !gone() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn app_pid(log: &str) -> Option<i32> {
    let line = log.lines().rev().find(|l| l.contains("starting version="))?;
    line.split(" pid=").nth(1)?.split_whitespace().next()?.parse().ok()
}

/// A process and its descendants (the app and its WebKit processes), read
/// from /proc.
pub struct Tree {
    /// (pid, rss KiB, utime + stime ticks, pss KiB, command)
    procs: Vec<(i32, u64, u64, u64, String)>,
}

impl Tree {
    pub fn of(root: i32) -> Tree {
        let mut pids = vec![root];
        let mut i = 0;
        while i < pids.len() {
            let parent = pids[i];
            let children =
                std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).unwrap_or_default();
            pids.extend(children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()));
            i += 1;
        }
        let procs = pids
            .into_iter()
            .filter_map(|pid| {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                let rss = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0);
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                // Fields after the command name (which may hold spaces): utime is 14th, stime 15th.
                let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
                let ticks = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
                // Shared pages counted once across the processes (RSS counts them in each).
                let pss = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
                    .ok()
                    .and_then(|r| {
                        r.lines().find_map(|l| l.strip_prefix("Pss:"))?.split_whitespace().next()?.parse().ok()
                    })
                    .unwrap_or(0);
                let name = stat.split_once('(').and_then(|(_, r)| r.rsplit_once(')')).map_or("", |(n, _)| n).to_owned();
                Some((pid, rss, ticks, pss, name))
            })
            .collect();
        Tree { procs }
    }

    pub fn rss_kib(&self) -> u64 {
        self.procs.iter().map(|p| p.1).sum()
    }

    /// Proportional set size: each shared page split among its users.
    pub fn pss_kib(&self) -> u64 {
        self.procs.iter().map(|p| p.3).sum()
    }

    /// `name pss MiB` per process, for the report.
    pub fn breakdown(&self) -> String {
        let parts: Vec<String> = self.procs.iter().map(|p| format!("{} {:.0}", p.4, p.3 as f64 / 1024.0)).collect();
        parts.join(", ")
    }

    /// CPU ticks spent since `before` by the processes alive in both.
    pub fn cpu_ticks_since(&self, before: &Tree) -> u64 {
        self.procs
            .iter()
            .map(|(pid, _, t, _, _)| before.procs.iter().find(|b| b.0 == *pid).map_or(*t, |b| t.saturating_sub(b.2)))
            .sum()
    }
}

pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// Sends a WebDriver command again (up to three times) when the driver
/// dropped its connection: WebKitWebDriver does now and then, and the
/// commands these tests send can be repeated.
fn resent<T>(send: impl Fn() -> Result<T, String>) -> Result<T, String> {
    let mut tries = 0;
    loop {
        match send() {
            Err(e) if e.contains("closed the connection") && tries < 3 => tries += 1,
            other => return other,
        }
    }
}
