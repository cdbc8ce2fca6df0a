//! Real browsers with the Agent Helper extension, driven over WebDriver:
//! Chromium through chromedriver (`--load-extension`, host manifest in the
//! test's user-data-dir) and Firefox ESR through geckodriver (temporary
//! add-on, host manifest under a private HOME).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};

use super::webdriver::Session;

pub const CHROMIUM_EXTENSION_ID: &str = "bdamlehccolipaaiaaekgphkdnhdjplg";

fn extensions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../browser-extensions")
}

/// Builds the extensions and the SDK once per test binary (`npm ci` first
/// when node_modules is missing).
pub fn built() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = extensions_dir();
            if !dir.join("node_modules").exists() {
                let ok = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir).status();
                assert!(ok.is_ok_and(|s| s.success()), "npm ci in {}", dir.display());
            }
            let ok = Command::new("node").arg("build.mjs").current_dir(&dir).status();
            assert!(ok.is_ok_and(|s| s.success()), "node build.mjs");
            dir.join("dist")
        })
        .clone()
}

/// Registers the host for one browser in `dir` through the real CLI.
pub fn install_host(browser: &str, dir: &Path) {
    super::bridge::exe();
    let out = super::command()
        .args(["install-browser-hosts", "--browser", browser, "--dir"])
        .arg(dir)
        .output()
        .expect("run install-browser-hosts");
    assert!(out.status.success(), "install-browser-hosts: {}", String::from_utf8_lossy(&out.stdout));
}

pub const FIREFOX_EXTENSION_ID: &str = "agent-helper@agent-helper.org";

/// The browsers the suite drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Chromium,
    Firefox,
}

pub struct Browser {
    pub session: Session,
    /// The browser's profile (and for Firefox its HOME).
    pub data: tempfile::TempDir,
}

/// What the browser gets: the extension, the native host registration, and
/// the Agent Desktop origin allowed to use them.
#[derive(Clone, Copy)]
pub struct Setup<'a> {
    pub extension: bool,
    pub host: bool,
    pub allow: Option<&'a str>,
}

impl Browser {
    /// A headless browser of `kind`; the bridge it starts uses helper `profile`.
    pub fn start(kind: Kind, profile: &Path, setup: Setup) -> Browser {
        match kind {
            Kind::Chromium => Browser::chromium(profile, setup),
            Kind::Firefox => Browser::firefox(profile, setup),
        }
    }

    /// Chromium headless (`--load-extension`, host manifest in the
    /// user-data-dir); the origin is allowed the way a user does it, on the
    /// extension's options page.
    pub fn chromium(profile: &Path, setup: Setup) -> Browser {
        let dist = built();
        let data = tempfile::tempdir().unwrap();
        if setup.host {
            install_host("chromium", &data.path().join("NativeMessagingHosts"));
        }
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            format!("--user-data-dir={}", data.path().display()),
        ];
        if setup.extension {
            args.push(format!("--load-extension={}", dist.join("chromium").display()));
        }
        let binary = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("chromium is installed (scripts/system-deps.sh test)");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": binary, "args": args },
        });
        let env = [("AGENT_HELPER_PROFILE", profile.display().to_string())];
        let session = Session::start("chromedriver", &[], &env, capabilities);
        session.script_timeout(Duration::from_secs(60));
        let browser = Browser { session, data };
        // Without the extension there is no options page to visit.
        if let (Some(origin), true) = (setup.allow, setup.extension) {
            browser.allow_origin_in_options(origin);
        }
        browser
    }

    /// Firefox ESR headless through geckodriver, the add-on installed as a
    /// temporary one; under a private HOME holding the host manifest and the
    /// allowed origin as an administrator's managed storage
    /// (`~/.mozilla/managed-storage/`, what enterprise deployment writes).
    pub fn firefox(profile: &Path, setup: Setup) -> Browser {
        let dist = built();
        let data = tempfile::tempdir().unwrap();
        let mozilla = data.path().join(".mozilla");
        if setup.host {
            install_host("firefox", &mozilla.join("native-messaging-hosts"));
        }
        if let Some(origin) = setup.allow {
            let managed = mozilla.join("managed-storage");
            std::fs::create_dir_all(&managed).unwrap();
            let policy = json!({
                "name": FIREFOX_EXTENSION_ID,
                "description": "Agent Desktop origins",
                "type": "storage",
                "data": { "allowedOrigins": [origin] },
            });
            std::fs::write(managed.join(format!("{FIREFOX_EXTENSION_ID}.json")), policy.to_string()).unwrap();
        }
        let home = data.path().display().to_string();
        let env = [("HOME", home.clone()), ("AGENT_HELPER_PROFILE", profile.display().to_string())];
        let capabilities = json!({
            "browserName": "firefox",
            "moz:firefoxOptions": {
                "binary": firefox_binary(),
                "args": ["-headless"],
                "env": { "HOME": home, "AGENT_HELPER_PROFILE": profile.display().to_string() },
                "prefs": {
                    "app.update.enabled": false,
                    "browser.shell.checkDefaultBrowser": false,
                    "datareporting.policy.dataSubmissionEnabled": false,
                    "extensions.update.enabled": false,
                },
            },
        });
        let session = Session::start(&geckodriver(), &[], &env, capabilities);
        session.script_timeout(Duration::from_secs(60));
        if setup.extension {
            session.install_temporary_addon(&dist.join("firefox"));
        }
        Browser { session, data }
    }

    /// Allows `origin` the way a user does: on the extension's options page.
    fn allow_origin_in_options(&self, origin: &str) {
        self.session.goto(&format!("chrome-extension://{CHROMIUM_EXTENSION_ID}/options.html"));
        let shown = self
            .session
            .run(
                r#"const [origin] = args;
                   for (let i = 0; !document.getElementById("add"); i++) await new Promise((r) => setTimeout(r, 20));
                   document.getElementById("origin").value = origin;
                   document.getElementById("add").requestSubmit();
                   while (!document.getElementById("user").textContent.includes(origin)) await new Promise((r) => setTimeout(r, 20));
                   return document.getElementById("user").textContent;"#,
                json!([origin]),
            )
            .expect("options page");
        assert!(shown.as_str().unwrap().contains(origin));
    }

    /// Opens the demo page and waits for the SDK's first settled status.
    pub fn open_demo(&self, url: &str) -> Value {
        self.session.goto(url);
        self.settled_status(0)
    }

    /// The first status after entry `from` of the page's log that is not `connecting`.
    pub fn settled_status(&self, from: usize) -> Value {
        self.session
            .run(
                r#"const [from] = args;
                   while (!window.demo) await new Promise((r) => setTimeout(r, 20));
                   const e = await demo.waitFor((e) => e.kind === "status" && e.name !== "connecting", 30000, from);
                   return e.data;"#,
                json!([from]),
            )
            .expect("a status on the page")
    }

    /// How many entries the page has logged so far.
    pub fn log_len(&self) -> usize {
        self.session.run("return demo.seen.length;", json!([])).unwrap().as_u64().unwrap() as usize
    }

    /// Waits for the page's next event `name` after entry `from`; its data.
    pub fn event(&self, name: &str, from: usize) -> Value {
        self.session
            .run(
                r#"const [name, from] = args;
                   return (await demo.waitFor((e) => e.kind === "event" && e.name === name, 30000, from)).data;"#,
                json!([name, from]),
            )
            .unwrap_or_else(|e| panic!("event {name} on the page: {e}"))
    }

    /// Calls an SDK method from the page: `Ok(result)` or `Err("code: message")`.
    pub fn request(&self, method: &str, params: Value) -> Result<Value, String> {
        self.session.run("const [m, p] = args; return await demo.helper.request(m, p);", json!([method, params]))
    }
}

fn firefox_binary() -> &'static str {
    ["/usr/bin/firefox-esr", "/usr/bin/firefox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("firefox-esr is installed (scripts/system-deps.sh test)")
}

/// geckodriver from PATH or cargo's bin folder (`cargo install geckodriver`).
fn geckodriver() -> String {
    let in_cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|d| d.join("bin/geckodriver"))
        .filter(|p| p.exists());
    in_cargo_home.map(|p| p.display().to_string()).unwrap_or_else(|| "geckodriver".into())
}
