//! The native-messaging bridge run as a browser runs it (stdin/stdout frames),
//! against the real helper.

mod support;

use serde_json::{Value, json};
use support::bridge::Bridge;
use support::{Conn, Helper, OTHER_USER, Started, helper_open_to_other_users, wait_until};

fn pid_of(status: &Value) -> u32 {
    status["result"]["pid"].as_u64().expect("getStatus has the pid") as u32
}

#[test]
fn starts_the_helper_when_none_runs_and_leaves_it_running_when_the_browser_goes() {
    let dir = tempfile::tempdir().unwrap();
    let mut bridge = Bridge::start(dir.path(), &[]);
    let hello = bridge.conn.request("hello", json!({"sdkVersion":"test","client":"bridge test"}));
    assert_eq!(hello["result"]["helperVersion"], env!("CARGO_PKG_VERSION"), "{hello}");
    let status = bridge.conn.request("getStatus", json!({}));
    let helper = Started(pid_of(&status));
    assert_ne!(helper.0, bridge.child.id());

    bridge.close_stdin();
    assert!(bridge.wait().success(), "a clean exit on EOF");
    // The helper owns the calls: it outlives the page and the bridge.
    let mut direct = Conn::open(&dir.path().join("agent-helper.sock"));
    assert_eq!(pid_of(&direct.request("getStatus", json!({}))), helper.0);

    // A second bridge finds the running helper instead of starting another.
    let mut again = Bridge::start(dir.path(), &[]);
    assert_eq!(pid_of(&again.conn.request("getStatus", json!({}))), helper.0);

    // Each bridge left its story beside BPClient.log.
    let log = std::fs::read_to_string(dir.path().join("logs/bridge.log")).unwrap();
    assert_eq!(log.matches("caller [\"chrome-extension://test/\"]").count(), 2, "{log}");
    assert_eq!(log.matches(&format!("(pid {})", helper.0)).count(), 1, "one helper started: {log}");
    assert!(log.contains("the browser closed the connection"), "{log}");
}

#[test]
fn relays_events_and_answers_hostile_input_without_dying() {
    let dir = tempfile::tempdir().unwrap();
    let helper = Helper::start(dir.path());
    let mut bridge = Bridge::start(dir.path(), &[]);

    // Events pushed by the helper reach the browser side.
    let r = bridge.conn.request("setLogLevel", json!({"level":"debug"}));
    assert!(r.get("result").is_some(), "{r}");
    assert_eq!(bridge.conn.event("log-level-changed")["level"], "debug");

    // More than the browsers' 1 MiB cap: refused by the bridge, which goes on.
    let declared = agent_helper_protocol::MAX_FRAME_LEN as u32 + 1;
    let mut big = declared.to_le_bytes().to_vec();
    big.resize(4 + declared as usize, b' ');
    bridge.conn.write_all(&big);
    let r = bridge.conn.response();
    assert_eq!((r["id"].clone(), r["error"]["code"].clone()), (Value::Null, json!("frame-too-large")), "{r}");

    bridge.conn.send_raw(b"{not json");
    assert_eq!(bridge.conn.response()["error"]["code"], "invalid-json");
    let r = bridge.conn.request("noSuchMethod", json!({}));
    assert_eq!(r["error"]["code"], "unknown-method", "{r}");
    let r = bridge.conn.request("setLogLevel", json!({"level": 7}));
    assert_eq!(r["error"]["code"], "invalid-params", "{r}");

    let status = bridge.conn.request("getStatus", json!({}));
    assert_eq!(pid_of(&status), helper.pid(), "the same helper still answers: {status}");
    assert!(bridge.child.try_wait().unwrap().is_none(), "the bridge still runs");
}

#[test]
fn exits_when_the_helper_stops_so_the_extension_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let helper = Helper::start(dir.path());
    let mut bridge = Bridge::start(dir.path(), &[]);
    assert!(bridge.conn.request("getStatus", json!({})).get("result").is_some());
    assert!(helper.stop().success());
    let rest = bridge.rest_of_stdout();
    assert!(bridge.wait().success());
    // Whatever came after the last answer is whole frames of JSON, nothing else.
    let mut r = &rest[..];
    while let Some(frame) = agent_helper_protocol::frame::read_frame(&mut r).expect("only frames on stdout") {
        let agent_helper_protocol::Frame::Payload(p) = frame else { panic!("oversize frame") };
        serde_json::from_slice::<Value>(&p).expect("JSON");
    }
}

#[test]
fn a_missing_helper_is_one_clear_frame_and_an_exit() {
    let dir = tempfile::tempdir().unwrap();
    let mut bridge = Bridge::start(dir.path(), &[("AGENT_HELPER_BIN", "/nonexistent/agent-helper")]);
    let out = bridge.rest_of_stdout();
    assert!(!bridge.wait().success());
    let mut r = &out[..];
    let Some(agent_helper_protocol::Frame::Payload(p)) = agent_helper_protocol::frame::read_frame(&mut r).unwrap()
    else {
        panic!("one frame expected, got {out:?}")
    };
    assert!(r.is_empty(), "nothing but that frame");
    let v: Value = serde_json::from_slice(&p).unwrap();
    assert_eq!(v["error"]["code"], "helper-unavailable", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("/nonexistent/agent-helper"), "{v}");
}

#[test]
fn a_helper_that_cannot_start_is_reported_not_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), "this is = not toml [").unwrap();
    let mut bridge = Bridge::start(dir.path(), &[]);
    let out = bridge.rest_of_stdout();
    assert!(!bridge.wait().success());
    let v: Value = serde_json::from_slice(&out[4..]).unwrap();
    assert_eq!(v["error"]["code"], "helper-unavailable", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("exited at start"), "{v}");
    wait_until("no socket left behind", || !dir.path().join("agent-helper.sock").exists());
    let log = std::fs::read_to_string(dir.path().join("logs/bridge.log")).unwrap();
    assert!(log.contains("exited at start") && log.contains("run `agent-helper check-config`"), "{log}");
}

#[test]
fn another_users_bridge_cannot_reach_the_helper_and_starts_none() {
    let Some((dir, helper)) = helper_open_to_other_users() else { return };
    let mut bridge = Bridge::start_as(OTHER_USER, dir.path(), &[]);
    let out = bridge.rest_of_stdout();
    assert!(!bridge.wait().success());
    let v: Value = serde_json::from_slice(out.get(4..).unwrap_or_default()).unwrap();
    assert_eq!(v["error"]["code"], "helper-unavailable", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("ermission denied") && message.contains("another user"), "{v}");
    // Nothing was started in its place: the same helper still answers on its socket.
    assert_eq!(helper.call("getStatus", json!({}))["pid"], helper.pid());
}
