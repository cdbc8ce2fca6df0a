//! `agent-helper --headless` and `agent-helper ctl` as an administrator or a
//! desktop integrator would use them.
#![cfg(unix)]

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::Stdio;
use std::sync::mpsc;

use serde_json::json;
use support::*;

#[test]
fn version_flag_prints_the_version() {
    let out = command().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("agent-helper {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn starts_headless_and_answers_ctl() {
    let dir = tempfile::tempdir().unwrap();
    let helper = Helper::start(dir.path());

    let meta = std::fs::metadata(&helper.socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "socket must be private to its user");

    let status = helper.call("getStatus", json!({}));
    assert_eq!(status["pid"], helper.pid());
    assert_eq!(status["profileDir"], dir.path().to_str().unwrap());
    assert_eq!(status["logFile"], dir.path().join("logs/BPClient.log").to_str().unwrap());
    assert!(dir.path().join("logs/BPClient.log").exists());

    let hello = helper.call("hello", json!({"sdkVersion": "1.0.0", "minHelperVersion": "0.1.0"}));
    assert_eq!(hello["protocolVersion"], 1);
    assert_eq!(hello["status"]["pid"], helper.pid());

    let (code, out) = helper.ctl("hello", json!({"minHelperVersion": "1000.0.0"}));
    assert_eq!(code, 1);
    assert_eq!(out["error"]["code"], "helper-outdated");
    assert_eq!(out["error"]["data"]["required"], "1000.0.0");

    let (code, out) = helper.ctl("noSuchMethod", json!({}));
    assert_eq!((code, out["error"]["code"].as_str()), (1, Some("unknown-method")));

    let (code, out) = ctl(dir.path(), &["getStatus", "{not json"]);
    assert_eq!((code, out["error"]["code"].as_str()), (2, Some("invalid-json")));
}

#[test]
fn profile_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = command()
        .arg("--headless")
        .env("AGENT_HELPER_PROFILE", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.next().unwrap().unwrap();
    assert!(ready.contains(dir.path().join("agent-helper.sock").to_str().unwrap()), "{ready}");
    let out = command().args(["ctl", "getStatus"]).env("AGENT_HELPER_PROFILE", dir.path()).output().unwrap();
    assert!(out.status.success());
    assert_eq!(parse_stdout(&out)["pid"], child.id());
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn one_helper_per_profile_and_two_profiles_side_by_side() {
    let agent = tempfile::tempdir().unwrap();
    let supervisor = tempfile::tempdir().unwrap();
    let a = Helper::start(agent.path());
    let s = Helper::start(supervisor.path());
    assert_ne!(a.call("getStatus", json!({}))["pid"], s.call("getStatus", json!({}))["pid"]);

    let second = Start::new(agent.path()).spawn();
    let (code, stderr) = second.err().expect("a second helper on the same profile must not start");
    assert_eq!(code, Some(3));
    assert!(stderr.contains("already runs") && stderr.contains(&a.pid().to_string()), "{stderr}");
    // The first one is unharmed.
    a.call("getStatus", json!({}));
}

#[test]
fn sigterm_stops_cleanly_and_removes_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let helper = Helper::start(dir.path());
    let socket = helper.socket.clone();
    let status = helper.stop();
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists());
    let log = std::fs::read_to_string(dir.path().join("logs/BPClient.log")).unwrap();
    assert!(log.contains("stopped"), "{log}");
    // And it starts again on the same profile.
    Helper::start(dir.path()).call("getStatus", json!({}));
}

#[test]
fn a_stale_socket_from_a_crash_does_not_block_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut helper = Helper::start(dir.path());
    helper.child.kill().unwrap(); // SIGKILL: no clean-up
    helper.child.wait().unwrap();
    assert!(helper.socket.exists(), "a killed helper leaves its socket file");
    Helper::start(dir.path()).call("getStatus", json!({}));
}

#[test]
fn ctl_without_a_helper_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = ctl(dir.path(), &["getStatus"]);
    assert_eq!(code, 3);
    assert_eq!(out["error"]["code"], "helper-not-running");
}

#[test]
fn ctl_events_prints_each_event_as_one_json_line() {
    let dir = tempfile::tempdir().unwrap();
    let helper = Helper::start(dir.path());
    let mut events =
        command().args(["ctl", "--profile"]).arg(dir.path()).arg("events").stdout(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let out = events.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The events client may connect after our first change; repeat until it sees one.
    let line = loop {
        helper.call("setLogLevel", json!({"level": "debug"}));
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
            break line;
        }
    };
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event, json!({"event": "log-level-changed", "data": {"level": "debug", "persisted": false}}));

    // The helper going away ends the stream with connection-lost.
    drop(helper);
    let status = wait_with_deadline(&mut events);
    assert_eq!(status.code(), Some(3));
}
