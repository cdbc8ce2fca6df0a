//! Native-messaging host registration: where each browser looks for the
//! manifest that lets the Agent Helper extension start `agent-helper-bridge`.
//!
//! | | Linux | macOS | Windows |
//! |---|---|---|---|
//! | Chromium family | `NativeMessagingHosts/` in the profile root (user) or `/etc/…` (system) | `~/Library/Application Support/<browser>/NativeMessagingHosts` or `/Library/…` | a manifest file plus a registry key under HKCU / HKLM |
//! | Firefox | `~/.mozilla/native-messaging-hosts` or `/usr/lib/mozilla/native-messaging-hosts` | `~/Library/Application Support/Mozilla/NativeMessagingHosts` or `/Library/…` | as above, `Software\Mozilla\NativeMessagingHosts` |
//!
//! Chromium browsers admit extensions by exact origin (`allowed_origins`),
//! Firefox by add-on id (`allowed_extensions`); no wildcard is ever written.

mod locations;

use std::path::{Path, PathBuf};

pub use locations::{Os, Place, Scope, place};
use serde::Serialize;

/// The host's name as extensions call it (`connectNative`).
pub const HOST_NAME: &str = "org.agent_helper.bridge";
/// The Chromium extension's id, fixed by the `key` in its manifest.json.
pub const CHROMIUM_EXTENSION_ID: &str = "bdamlehccolipaaiaaekgphkdnhdjplg";
/// The Firefox add-on's id (`browser_specific_settings.gecko.id`).
pub const FIREFOX_EXTENSION_ID: &str = "agent-helper@agent-helper.org";

/// Every browser we register with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Browser {
    Chrome,
    Chromium,
    Edge,
    Brave,
    Vivaldi,
    Firefox,
}

impl Browser {
    pub const ALL: [Browser; 6] =
        [Browser::Chrome, Browser::Chromium, Browser::Edge, Browser::Brave, Browser::Vivaldi, Browser::Firefox];

    pub fn name(self) -> &'static str {
        match self {
            Browser::Chrome => "chrome",
            Browser::Chromium => "chromium",
            Browser::Edge => "edge",
            Browser::Brave => "brave",
            Browser::Vivaldi => "vivaldi",
            Browser::Firefox => "firefox",
        }
    }

    pub fn parse(name: &str) -> Result<Browser, Error> {
        Browser::ALL
            .into_iter()
            .find(|b| b.name() == name.to_ascii_lowercase())
            .ok_or_else(|| Error::UnknownBrowser(name.to_owned()))
    }

    fn is_firefox(self) -> bool {
        self == Browser::Firefox
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown browser {0:?} (chrome, chromium, edge, brave, vivaldi, firefox)")]
    UnknownBrowser(String),
    #[error("--dir needs exactly one --browser: Chromium and Firefox manifests differ but share a file name")]
    DirNeedsOneBrowser,
    #[error("the bridge {0} does not exist")]
    NoBridge(PathBuf),
    #[error("the bridge path must be absolute: {0}")]
    RelativeBridge(PathBuf),
    #[error("extension id {0:?} is not valid for {1} (Chromium: 32 letters a–p; Firefox: an add-on id)")]
    BadExtensionId(String, &'static str),
    #[error("cannot find the user's home directory")]
    NoHome,
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("registry: {0}")]
    Registry(String),
}

/// What to register and where.
#[derive(Debug, Clone)]
pub struct Request {
    /// Browsers to (un)register; empty = all.
    pub browsers: Vec<Browser>,
    pub scope: Scope,
    /// Write the manifest into this folder instead (a test browser profile).
    pub dir: Option<PathBuf>,
    /// Absolute path of `agent-helper-bridge`.
    pub bridge: PathBuf,
    /// Further extension ids allowed besides ours (an organisation's own build).
    pub extra_chromium_ids: Vec<String>,
    pub extra_firefox_ids: Vec<String>,
}

/// One manifest written or removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Done {
    pub browser: Browser,
    pub manifest: PathBuf,
    /// The registry key pointing at it (Windows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_key: Option<String>,
}

/// The manifest for one browser, as JSON text.
pub fn manifest(browser: Browser, bridge: &Path, extra_ids: &[String]) -> String {
    let mut m = serde_json::json!({
        "name": HOST_NAME,
        "description": "Agent Helper: softphone and desktop companion of the web Agent Desktop",
        "path": bridge,
        "type": "stdio",
    });
    if browser.is_firefox() {
        let ids: Vec<&str> =
            std::iter::once(FIREFOX_EXTENSION_ID).chain(extra_ids.iter().map(String::as_str)).collect();
        m["allowed_extensions"] = serde_json::json!(ids);
    } else {
        let origins: Vec<String> = std::iter::once(CHROMIUM_EXTENSION_ID)
            .chain(extra_ids.iter().map(String::as_str))
            .map(|id| format!("chrome-extension://{id}/"))
            .collect();
        m["allowed_origins"] = serde_json::json!(origins);
    }
    // A json! value of strings always serializes.
    serde_json::to_string_pretty(&m).unwrap_or_default() + "\n"
}

fn check_ids(req: &Request) -> Result<(), Error> {
    for id in &req.extra_chromium_ids {
        if id.len() != 32 || !id.bytes().all(|b| (b'a'..=b'p').contains(&b)) {
            return Err(Error::BadExtensionId(id.clone(), "Chromium"));
        }
    }
    for id in &req.extra_firefox_ids {
        let ok =
            !id.is_empty() && id.len() <= 80 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"@.-_{}".contains(&b));
        if !ok {
            return Err(Error::BadExtensionId(id.clone(), "Firefox"));
        }
    }
    Ok(())
}

fn selected(req: &Request) -> Result<Vec<Browser>, Error> {
    let browsers = if req.browsers.is_empty() { Browser::ALL.to_vec() } else { req.browsers.clone() };
    if req.dir.is_some() && browsers.len() != 1 {
        return Err(Error::DirNeedsOneBrowser);
    }
    Ok(browsers)
}

fn places(req: &Request, browsers: &[Browser]) -> Result<Vec<(Browser, Place)>, Error> {
    let home = directories::BaseDirs::new().map(|b| b.home_dir().to_owned());
    browsers
        .iter()
        .map(|&b| {
            let place = match &req.dir {
                Some(dir) => Place { dir: dir.clone(), registry_key: None },
                None => place(Os::current(), b, req.scope, home.as_deref().ok_or(Error::NoHome)?)?,
            };
            Ok((b, place))
        })
        .collect()
}

/// Writes the manifests (atomically: a temporary file renamed over the old
/// one) and, on Windows, the registry keys.
pub fn install(req: &Request) -> Result<Vec<Done>, Error> {
    if !req.bridge.is_absolute() {
        return Err(Error::RelativeBridge(req.bridge.clone()));
    }
    if !req.bridge.is_file() {
        return Err(Error::NoBridge(req.bridge.clone()));
    }
    check_ids(req)?;
    let browsers = selected(req)?;
    let mut done = Vec::new();
    for (browser, place) in places(req, &browsers)? {
        let extra = if browser.is_firefox() { &req.extra_firefox_ids } else { &req.extra_chromium_ids };
        let path = place.dir.join(format!("{HOST_NAME}.json"));
        std::fs::create_dir_all(&place.dir).map_err(|e| Error::Io(place.dir.clone(), e))?;
        write_atomically(&path, manifest(browser, &req.bridge, extra).as_bytes())?;
        if let Some(key) = &place.registry_key {
            registry::set(req.scope, key, &path)?;
        }
        done.push(Done { browser, manifest: path, registry_key: place.registry_key });
    }
    Ok(done)
}

/// Removes our manifests and registry keys; what is already gone is fine.
pub fn uninstall(req: &Request) -> Result<Vec<Done>, Error> {
    let browsers = selected(req)?;
    let mut done = Vec::new();
    for (browser, place) in places(req, &browsers)? {
        let path = place.dir.join(format!("{HOST_NAME}.json"));
        let removed = match std::fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(Error::Io(path, e)),
        };
        let key_removed = match &place.registry_key {
            Some(key) => registry::delete(req.scope, key)?,
            None => false,
        };
        if removed || key_removed {
            done.push(Done { browser, manifest: path, registry_key: place.registry_key });
        }
    }
    Ok(done)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::Io(tmp.clone(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::Io(path.to_owned(), e))
}

/// Windows registry keys through `reg.exe`, which every Windows has: no
/// platform-only dependency, and the same code builds everywhere.
mod registry {
    use super::{Error, Scope};
    use std::path::Path;
    use std::process::Command;

    fn root(scope: Scope) -> &'static str {
        match scope {
            Scope::User => "HKCU",
            Scope::System => "HKLM",
        }
    }

    pub fn set(scope: Scope, key: &str, manifest: &Path) -> Result<(), Error> {
        let full = format!(r"{}\{key}", root(scope));
        let out = Command::new("reg")
            .args(["add", &full, "/ve", "/t", "REG_SZ", "/d"])
            .arg(manifest)
            .arg("/f")
            .output()
            .map_err(|e| Error::Registry(format!("reg add {full}: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Registry(format!("reg add {full}: {}", String::from_utf8_lossy(&out.stderr).trim())))
        }
    }

    /// `Ok(true)` when a key was removed, `Ok(false)` when there was none.
    pub fn delete(scope: Scope, key: &str) -> Result<bool, Error> {
        let full = format!(r"{}\{key}", root(scope));
        let exists = Command::new("reg").args(["query", &full]).output().is_ok_and(|o| o.status.success());
        if !exists {
            return Ok(false);
        }
        let out = Command::new("reg")
            .args(["delete", &full, "/f"])
            .output()
            .map_err(|e| Error::Registry(format!("reg delete {full}: {e}")))?;
        if out.status.success() {
            Ok(true)
        } else {
            Err(Error::Registry(format!("reg delete {full}: {}", String::from_utf8_lossy(&out.stderr).trim())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use sha2::Digest;

    /// The id Chromium derives from the extension's public key: the first 128
    /// bits of its SHA-256, each hex digit written as a letter a–p.
    fn chromium_id(key_base64: &str) -> String {
        let der = base64::engine::general_purpose::STANDARD.decode(key_base64).unwrap();
        let hash = sha2::Sha256::digest(&der);
        hash[..16].iter().flat_map(|b| [b >> 4, b & 15]).map(|n| (b'a' + n) as char).collect()
    }

    #[test]
    fn the_extension_id_matches_the_key_in_the_shipped_manifest() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../browser-extensions/src/manifest.base.json");
        let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let key = manifest["chromium"]["key"].as_str().expect("chromium.key");
        assert_eq!(chromium_id(key), CHROMIUM_EXTENSION_ID);
        assert_eq!(manifest["firefox"]["browser_specific_settings"]["gecko"]["id"], FIREFOX_EXTENSION_ID);
    }

    #[test]
    fn manifests_allow_exact_ids_only() {
        let bridge = Path::new("/opt/agent-helper/agent-helper-bridge");
        let chrome: serde_json::Value = serde_json::from_str(&manifest(Browser::Chrome, bridge, &[])).unwrap();
        assert_eq!(chrome["name"], HOST_NAME);
        assert_eq!(chrome["type"], "stdio");
        assert_eq!(chrome["path"], "/opt/agent-helper/agent-helper-bridge");
        assert_eq!(
            chrome["allowed_origins"],
            serde_json::json!([format!("chrome-extension://{CHROMIUM_EXTENSION_ID}/")])
        );
        assert!(chrome.get("allowed_extensions").is_none());
        let firefox: serde_json::Value =
            serde_json::from_str(&manifest(Browser::Firefox, bridge, &["corp@example.com".into()])).unwrap();
        assert_eq!(firefox["allowed_extensions"], serde_json::json!([FIREFOX_EXTENSION_ID, "corp@example.com"]));
    }

    #[test]
    fn install_and_uninstall_in_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let bridge = dir.path().join("agent-helper-bridge");
        std::fs::write(&bridge, b"").unwrap();
        let req = Request {
            browsers: vec![Browser::Chromium],
            scope: Scope::User,
            dir: Some(dir.path().join("NativeMessagingHosts")),
            bridge: bridge.clone(),
            extra_chromium_ids: vec!["a".repeat(32)],
            extra_firefox_ids: vec![],
        };
        let done = install(&req).unwrap();
        assert_eq!(done.len(), 1);
        let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&done[0].manifest).unwrap()).unwrap();
        assert_eq!(written["allowed_origins"][1], format!("chrome-extension://{}/", "a".repeat(32)));
        assert_eq!(uninstall(&req).unwrap(), done);
        assert!(!done[0].manifest.exists());
        assert!(uninstall(&req).unwrap().is_empty(), "nothing left to remove");
    }

    #[test]
    fn refuses_what_would_register_something_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let bridge = dir.path().join("agent-helper-bridge");
        std::fs::write(&bridge, b"").unwrap();
        let base = Request {
            browsers: vec![Browser::Firefox],
            scope: Scope::User,
            dir: Some(dir.path().to_owned()),
            bridge: bridge.clone(),
            extra_chromium_ids: vec![],
            extra_firefox_ids: vec![],
        };
        let wildcard = Request { extra_chromium_ids: vec!["*".into()], ..base.clone() };
        assert!(matches!(install(&wildcard), Err(Error::BadExtensionId(..))));
        let relative = Request { bridge: "agent-helper-bridge".into(), ..base.clone() };
        assert!(matches!(install(&relative), Err(Error::RelativeBridge(_))));
        let missing = Request { bridge: dir.path().join("nope"), ..base.clone() };
        assert!(matches!(install(&missing), Err(Error::NoBridge(_))));
        let two = Request { browsers: vec![Browser::Firefox, Browser::Chrome], ..base.clone() };
        assert!(matches!(install(&two), Err(Error::DirNeedsOneBrowser)));
        assert_eq!(Browser::parse("Edge").unwrap(), Browser::Edge);
        assert!(Browser::parse("safari").is_err());
    }
}
