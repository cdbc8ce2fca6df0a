//! `login` against a real Secret Service (gnome-keyring inside
//! dbus-run-session, set up by scripts/test.sh), checked from outside with
//! `secret-tool`, and a grep of the whole profile for the password.
#![cfg(unix)]

mod support;

use std::io::Read;
use std::process::Command;

use serde_json::json;
use support::*;

const PASSWORD: &str = "Kx9-unique-Pa55word-4711";

fn keyring_ready() -> bool {
    if std::env::var_os("AGENT_HELPER_NO_KEYRING").is_some() {
        eprintln!("AGENT_HELPER_NO_KEYRING set: keyring tests not run");
        return false;
    }
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "no D-Bus session: run the suite through scripts/test.sh (dbus-run-session + gnome-keyring)"
    );
    true
}

/// The password as the Secret Service holds it, read with libsecret's CLI.
fn secret_tool_lookup(service: &str, username: &str) -> Option<String> {
    let out = Command::new("secret-tool").args(["lookup", "service", service, "username", username]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn assert_no_file_contains_password(dir: &std::path::Path) {
    let files = files_under(dir);
    assert!(files.iter().any(|f| f.ends_with("BPClient.log")), "{files:?}");
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(PASSWORD), "{} contains the password", f.display());
        if f.extension().is_some_and(|e| e == "zip") {
            let mut zip = zip::ZipArchive::new(std::fs::File::open(&f).unwrap()).unwrap();
            for i in 0..zip.len() {
                let mut entry = zip.by_index(i).unwrap();
                let mut text = String::new();
                let _ = entry.read_to_string(&mut text);
                assert!(!text.contains(PASSWORD), "{} in {} contains the password", entry.name().unwrap(), f.display());
            }
        }
    }
}

#[test]
fn remembered_login_lives_in_the_keyring_only_and_survives_a_restart() {
    if !keyring_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let service = format!("agent-helper:{}", dir.path().display());
    let helper = Helper::start(dir.path());
    // Most verbose logging, so that any leak would be written.
    helper.call("setLogLevel", json!({"level": "trace"}));

    let out = helper.call("login", json!({"username": "agent007", "password": PASSWORD, "remember": true}));
    assert_eq!(out["account"], json!({"username": "agent007", "remembered": true, "passwordAvailable": true}));
    assert_eq!(secret_tool_lookup(&service, "agent007").as_deref(), Some(PASSWORD));

    // Bad logins carrying the password must not leak it either.
    let (code, _) = helper.ctl("login", json!({"username": "", "password": PASSWORD}));
    assert_eq!(code, 1);
    let (code, _) = helper.ctl("login", json!({"username": "x", "password": PASSWORD, "bogus": 1}));
    assert_eq!(code, 1);

    let bundle = helper.call("collectDiagnostics", json!({}));
    assert!(std::path::Path::new(bundle["path"].as_str().unwrap()).exists());
    assert!(helper.stop().success());
    assert_no_file_contains_password(dir.path());
    let state = std::fs::read_to_string(dir.path().join("state.json")).unwrap();
    assert!(state.contains("agent007"), "{state}");

    // After a restart the account is back, its password read from the keyring.
    let helper = Helper::start(dir.path());
    wait_until("the remembered password to load", || {
        helper.call("getStatus", json!({}))["account"]["passwordAvailable"] == true
    });

    // Logout takes it out of the keyring.
    helper.call("logout", json!({}));
    assert_eq!(secret_tool_lookup(&service, "agent007"), None);
    assert!(helper.stop().success());
    let helper = Helper::start(dir.path());
    assert!(helper.call("getStatus", json!({}))["account"].is_null());
    assert!(helper.stop().success());
    assert_no_file_contains_password(dir.path());
}

#[test]
fn login_without_remember_stays_in_memory() {
    if !keyring_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let service = format!("agent-helper:{}", dir.path().display());
    let helper = Helper::start(dir.path());
    let out = helper.call("login", json!({"username": "agent008", "password": PASSWORD}));
    assert_eq!(out["account"]["remembered"], false);
    assert_eq!(secret_tool_lookup(&service, "agent008"), None);
    assert!(helper.stop().success());
    assert_no_file_contains_password(dir.path());
    let helper = Helper::start(dir.path());
    assert!(helper.call("getStatus", json!({}))["account"].is_null(), "nothing remembered");
}
