//! The local socket under hostile input and from other users.
#![cfg(unix)]

mod support;

use std::io::Write;
use std::process::Command;

use agent_helper_protocol::MAX_FRAME_LEN;
use serde_json::json;
use support::*;

#[test]
fn oversize_frame_gets_an_error_and_the_same_connection_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let helper = Helper::start(dir.path());
    let mut conn = helper.connect();
    let declared = MAX_FRAME_LEN as u32 + 1;
    conn.write_all(&declared.to_le_bytes());
    conn.write_all(&vec![b'x'; declared as usize]);
    let err = conn.response();
    assert_eq!(err["id"], serde_json::Value::Null);
    assert_eq!(err["error"]["code"], "frame-too-large");
    let ok = conn.request("getStatus", json!({}));
    assert_eq!(ok["result"]["pid"], helper.pid());
}

#[test]
fn malformed_json_unknown_methods_and_wrong_types_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let helper = Helper::start(dir.path());
    let mut conn = helper.connect();

    conn.send_raw(b"{\"id\":1,\"method\":");
    assert_eq!(conn.response()["error"]["code"], "invalid-json");
    conn.send_raw(&[0xff, 0xfe, 0x00]);
    assert_eq!(conn.response()["error"]["code"], "invalid-json");
    conn.send_raw(b"[]");
    assert_eq!(conn.response()["error"]["code"], "invalid-request");
    conn.send_raw(br#"{"id":"x7","params":{}}"#);
    let r = conn.response();
    assert_eq!((r["id"].as_str(), r["error"]["code"].as_str()), (Some("x7"), Some("invalid-request")));

    let r = conn.request("formatHardDisk", json!({}));
    assert_eq!(r["error"]["code"], "unknown-method");
    let r = conn.request("login", json!({"username": ["a"], "password": "x"}));
    assert_eq!(r["error"]["code"], "invalid-params");
    assert!(r["error"]["message"].as_str().unwrap().contains("username"), "{r}");
    let r = conn.request("setLogLevel", json!({"level": "debug", "extra": true}));
    assert_eq!(r["error"]["code"], "invalid-params");
    let r = conn.request("setConfig", json!({"key": "calls.no_answer_timeout", "value": "sixty"}));
    assert_eq!(r["error"]["code"], "invalid-config-value");

    // Still serving, this connection and new ones.
    assert_eq!(conn.request("getStatus", json!({}))["result"]["pid"], helper.pid());
    helper.call("getStatus", json!({}));
}

#[test]
fn a_client_killed_mid_frame_harms_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let helper = Helper::start(dir.path());
    let mut other = helper.connect();
    {
        let mut dying = helper.connect();
        dying.write_all(&100u32.to_le_bytes());
        dying.write_all(br#"{"id":1,"meth"#);
        // Dropped here: the socket closes with a partial frame in flight.
    }
    {
        // And one that dies inside the header.
        let mut dying = helper.connect();
        dying.write_all(&[7, 0]);
    }
    // A real process killed mid-request too.
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import socket,os,struct; s=socket.socket(socket.AF_UNIX); s.connect({:?}); s.sendall(struct.pack('<I',50)+b'{{\"id\"'); os.kill(os.getpid(),9)",
            helper.socket.to_str().unwrap()
        ))
        .spawn()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the python client was killed");
    assert_eq!(other.request("getStatus", json!({}))["result"]["pid"], helper.pid());
    helper.call("getStatus", json!({}));
}

#[test]
fn events_reach_every_connected_client() {
    let dir = tempfile::tempdir().unwrap();
    let helper = Helper::start(dir.path());
    let mut a = helper.connect();
    let mut b = helper.connect();
    // Make sure both are registered before the change: a request round trip each.
    a.request("hello", json!({"client": "a"}));
    b.request("hello", json!({"client": "b"}));
    let r = a.request("setConfig", json!({"key": "calls.auto_answer", "value": true}));
    assert_eq!(r["result"]["value"], true);
    for conn in [&mut a, &mut b] {
        assert_eq!(conn.event("config-changed"), json!({"key": "calls.auto_answer", "value": true}));
    }
    assert_eq!(helper.call("getStatus", json!({}))["clients"], 3);
}

#[test]
fn many_clients_at_once_each_get_their_own_answers() {
    let dir = tempfile::tempdir().unwrap();
    let helper = Helper::start(dir.path());
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let socket = helper.socket.clone();
            std::thread::spawn(move || {
                let mut c = Conn::open(&socket);
                for _ in 0..50 {
                    assert!(c.request("getStatus", json!({}))["result"]["pid"].is_u64());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn another_local_user_cannot_use_the_socket() {
    let Some((dir, helper)) = helper_open_to_other_users() else { return };
    let out = Command::new("runuser")
        .args(["-u", OTHER_USER, "--", bin(), "ctl", "--profile"])
        .arg(dir.path())
        .arg("getStatus")
        .output()
        .unwrap();
    let answer = parse_stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{answer}");
    assert_eq!(answer["error"]["code"], "helper-not-running");
    assert!(answer["error"]["message"].as_str().unwrap().contains("ermission denied"), "{answer}");
    helper.call("getStatus", json!({}));
}

#[test]
fn the_helper_refuses_peers_of_another_uid_even_root() {
    if !is_root() {
        eprintln!("not root: cannot run the helper as another user; this test runs in CI");
        return;
    }
    ensure_other_user();
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("chown").arg(format!("{OTHER_USER}:")).arg(dir.path()).status().unwrap();
    assert!(status.success());
    let mut start = Start::new(dir.path());
    start.user = Some(OTHER_USER);
    let helper = start.spawn().unwrap_or_else(|(c, e)| panic!("helper as {OTHER_USER} did not start ({c:?}): {e}"));
    // Root passes the file mode; the peer-credential check must still refuse it.
    let mut conn = helper.connect();
    let answer = conn.read();
    assert_eq!(answer["error"]["code"], "peer-not-allowed", "{answer}");
    let mut buf = [0u8; 1];
    use std::io::Read;
    assert_eq!(conn.stream.read(&mut buf).unwrap(), 0, "connection closed after the refusal");
    let _ = conn.stream.flush();
}

#[test]
fn control_characters_from_clients_cannot_forge_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let helper = Helper::start(dir.path());
    let mut conn = helper.connect();
    conn.request("setLogLevel", json!({"level": "debug"}));
    let r = conn.request("getStatus\n2026-01-01T00:00:00.000+00:00  INFO forged", json!({}));
    assert_eq!(r["error"]["code"], "invalid-request");
    conn.request("hello", json!({"client": "page\nERROR forged", "sdkVersion": "1\r\nWARN forged"}));
    assert!(helper.stop().success());
    let log = std::fs::read_to_string(dir.path().join("logs/BPClient.log")).unwrap();
    assert!(log.lines().all(|l| !l.contains("forged") || l.contains("hello")), "{log}");
    assert!(log.contains(r#"name=Some("page\nERROR forged")"#), "{log}");
}

/// The Python client library and example from crates/client/python, against
/// the real helper.
#[test]
fn the_python_client_talks_to_the_helper() {
    let dir = tempfile::tempdir().unwrap();
    let _helper = Helper::start(dir.path());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../client/python/agent_helper_client.py");
    let out = std::process::Command::new("python3").arg(script).arg(dir.path()).output().expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("helper {} registration not-configured", env!("CARGO_PKG_VERSION")));
    assert_eq!(lines[1], "error unknown-method");
    assert_eq!(lines[2], r#"event log-level-changed {'level': 'info', 'persisted': False}"#);
}

/// The Rust example `watch` of agent-helper-client, against the real helper.
#[test]
fn the_rust_client_example_talks_to_the_helper() {
    let dir = tempfile::tempdir().unwrap();
    let _helper = Helper::start(dir.path());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["run", "-q", "-p", "agent-helper-client", "--example", "watch", "--"])
        .arg(dir.path())
        .arg("--once")
        .output()
        .expect("cargo run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with(&format!("helper \"{}\" (protocol 1)\n", env!("CARGO_PKG_VERSION"))), "{text}");
    assert!(text.contains("registration: \"not-configured\""), "{text}");
    assert!(text.trim_end().ends_with(r#"log-level-changed {"level":"info","persisted":false}"#), "{text}");
}
