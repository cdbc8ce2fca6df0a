//! The Agent Desktop page → SDK → extension → bridge → helper, in real
//! browsers started by the tests (Chromium headless; Firefox ESR headless),
//! with calls to a real baresip through kamailio.
#![cfg(unix)]

mod support;

use serde_json::json;
use support::baresip::Baresip;
use support::browser::{Browser, Kind, Setup};
use support::kamailio::Kamailio;
use support::web::WebServer;
use support::*;

const PASSWORD: &str = "kam-secret-7";

/// The extension, the host, and the demo page's origin allowed.
fn full(origin: &str) -> Setup<'_> {
    Setup { extension: true, host: true, allow: Some(origin) }
}

fn pid_on_page(browser: &Browser) -> u32 {
    browser.request("getStatus", json!({})).expect("getStatus from the page")["pid"].as_u64().unwrap() as u32
}

#[test]
fn chromium_page_calls_baresip_and_the_call_survives_a_reload() {
    page_calls_baresip_and_the_call_survives_a_reload(Kind::Chromium);
}

#[test]
fn firefox_page_calls_baresip_and_the_call_survives_a_reload() {
    page_calls_baresip_and_the_call_survives_a_reload(Kind::Firefox);
}

fn page_calls_baresip_and_the_call_survives_a_reload(kind: Kind) {
    let k = Kamailio::start(PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let (helper, mut conn) = support::agent::registered_udp(&k, dir.path(), "");
    let mut bob = Baresip::start("bob", k.port, PASSWORD, true);
    let web = WebServer::start();
    let browser = Browser::start(kind, dir.path(), full(&web.origin()));

    let status = browser.open_demo(&web.demo_url(""));
    assert_eq!(status["state"], "ready", "{status}");
    assert_eq!(status["hello"]["helperVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(pid_on_page(&browser), helper.pid(), "the page talks to the running helper");

    let from = browser.log_len();
    let call_id =
        browser.request("call", json!({"target": "bob"})).expect("call")["callId"].as_str().unwrap().to_owned();
    assert_eq!(browser.event("call-started", from)["callId"], call_id.as_str());
    assert_eq!(browser.event("call-confirmed", from)["callId"], call_id.as_str());
    bob.wait_event("CALL_ESTABLISHED");

    // Reloading the page drops nothing: the helper owns the call and the new
    // page learns it from hello.
    browser.session.refresh();
    let status = browser.settled_status(0);
    assert_eq!(status["state"], "ready", "{status}");
    let calls = &status["hello"]["status"]["calls"];
    assert_eq!(calls[0]["callId"], call_id.as_str(), "{status}");
    assert_eq!(calls[0]["state"], "connected", "{status}");
    let shown = browser.session.run("return [...demo.calls.keys()];", json!([])).unwrap();
    assert_eq!(shown, json!([call_id]));
    let direct = conn.request("getStatus", json!({}));
    assert_eq!(direct["result"]["calls"][0]["state"], "connected", "{direct}");

    let from = browser.log_len();
    browser.request("endCall", json!({"callId": call_id})).expect("endCall");
    let ended = browser.event("call-ended", from);
    assert_eq!((ended["callId"].as_str(), ended["reason"].as_str()), (Some(call_id.as_str()), Some("local-hangup")));
    bob.wait_event("CALL_CLOSED");
}

#[test]
fn chromium_starts_the_helper_reconnects_after_a_restart_and_refuses_hostile_requests() {
    starts_the_helper_reconnects_after_a_restart_and_refuses_hostile_requests(Kind::Chromium);
}

#[test]
fn firefox_starts_the_helper_reconnects_after_a_restart_and_refuses_hostile_requests() {
    starts_the_helper_reconnects_after_a_restart_and_refuses_hostile_requests(Kind::Firefox);
}

fn starts_the_helper_reconnects_after_a_restart_and_refuses_hostile_requests(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let web = WebServer::start();
    let browser = Browser::start(kind, dir.path(), full(&web.origin()));

    // No helper runs: the bridge starts one.
    let status = browser.open_demo(&web.demo_url(""));
    assert_eq!(status["state"], "ready", "{status}");
    let first = Started(pid_on_page(&browser));

    // Hostile requests get clear errors; nothing stops.
    let err = browser.request("noSuchMethod", json!({})).unwrap_err();
    assert!(err.starts_with("unknown-method:"), "{err}");
    let err = browser.request("call", json!({"target": 5})).unwrap_err();
    assert!(err.starts_with("invalid-params:") && err.contains("target"), "{err}");
    let err = browser.request("setLogLevel", json!({"level": "x".repeat(2 * 1024 * 1024)})).unwrap_err();
    assert!(err.starts_with("frame-too-large:"), "{err}");
    let err = browser.request("hello", json!({"minHelperVersion": "not a version"})).unwrap_err();
    assert!(err.starts_with("invalid-params:"), "{err}");
    assert_eq!(pid_on_page(&browser), first.0, "the same helper answers after all that");

    // The helper stops: the page sees it go and come back by itself, the
    // extension reconnecting and the bridge starting a new helper.
    let from = browser.log_len();
    drop(first);
    let gone = browser
        .session
        .run(
            r#"const [from] = args;
               return (await demo.waitFor((e) => e.kind === "status" && e.name !== "ready", 30000, from)).name;"#,
            json!([from]),
        )
        .unwrap();
    assert!(gone == "connecting" || gone == "helper-missing", "{gone}");
    let back = browser
        .session
        .run(
            r#"const [from] = args;
               return (await demo.waitFor((e) => e.kind === "status" && e.name === "ready", 30000, from)).data;"#,
            json!([from]),
        )
        .expect("ready again after the helper restarted");
    let second = Started(back["hello"]["status"]["pid"].as_u64().unwrap() as u32);
    assert_ne!(second.0, 0);

    // A page that needs a newer helper says so.
    let status = browser.open_demo(&web.demo_url("?minHelperVersion=99.0.0"));
    assert_eq!(status["state"], "helper-outdated", "{status}");
    assert_eq!(
        (status["required"].as_str(), status["installed"].as_str()),
        (Some("99.0.0"), Some(env!("CARGO_PKG_VERSION")))
    );

    // The same page on an origin nobody allowed gets nothing at all: the
    // extension does not show itself, requests go unanswered.
    let status = browser.open_demo(&format!("{}?extensionTimeoutMs=1500", web.other_origin_url()));
    assert_eq!(status["state"], "extension-missing", "{status}");
    let seen = browser.session.run("return demo.seen.map((e) => e.name);", json!([])).unwrap();
    assert_eq!(seen, json!(["extension-missing"]), "no sign of the extension on a foreign origin");
    let answered = browser
        .session
        .run(
            r#"let answered = false;
               window.addEventListener("message", (e) => { if (e.data?.dir === "from-extension") answered = true; });
               window.postMessage({ channel: "agent-helper", dir: "to-extension", type: "request", id: 1, method: "getStatus", params: {} }, location.origin);
               window.postMessage({ channel: "agent-helper", dir: "to-extension", type: "ping" }, location.origin);
               await new Promise((r) => setTimeout(r, 1000));
               return answered;"#,
            json!([]),
        )
        .unwrap();
    assert_eq!(answered, json!(false));
}

#[test]
fn chromium_without_the_extension_or_without_the_host_says_which() {
    without_the_extension_or_without_the_host_says_which(Kind::Chromium);
}

#[test]
fn firefox_without_the_extension_or_without_the_host_says_which() {
    without_the_extension_or_without_the_host_says_which(Kind::Firefox);
}

fn without_the_extension_or_without_the_host_says_which(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let web = WebServer::start();
    let origin = web.origin();

    let bare = Browser::start(kind, dir.path(), Setup { extension: false, host: true, allow: None });
    let status = bare.open_demo(&web.demo_url("?extensionTimeoutMs=1500"));
    assert_eq!(status["state"], "extension-missing", "{status}");
    drop(bare);

    let no_host = Browser::start(kind, dir.path(), Setup { extension: true, host: false, allow: Some(&origin) });
    let status = no_host.open_demo(&web.demo_url(""));
    assert_eq!(status["state"], "helper-missing", "{status}");
    // The browser's own words: Chromium "Specified native messaging host not
    // found.", Firefox "No such native application …".
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains("not found") || message.contains("No such native application"), "{status}");
    assert!(!dir.path().join("agent-helper.sock").exists(), "no helper was started");
}

/// Benchmark (run by scripts/bench-browser.sh, figures in docs/benchmarks.md):
/// page → SDK → extension → bridge → helper → page round trips for
/// `getStatus`, and events per second delivered to a page.
#[test]
#[ignore = "benchmark: scripts/bench-browser.sh"]
fn benchmark_round_trip_and_event_rate_in_chromium() {
    benchmark_round_trip_and_event_rate(Kind::Chromium);
}

#[test]
#[ignore = "benchmark: scripts/bench-browser.sh"]
fn benchmark_round_trip_and_event_rate_in_firefox() {
    benchmark_round_trip_and_event_rate(Kind::Firefox);
}

fn benchmark_round_trip_and_event_rate(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let _helper = Helper::start(dir.path());
    let web = WebServer::start();
    let browser = Browser::start(kind, dir.path(), full(&web.origin()));
    assert_eq!(browser.open_demo(&web.demo_url(""))["state"], "ready");
    let figures = browser
        .session
        .run(
            r#"const h = demo.helper;
               for (let i = 0; i < 50; i++) await h.getStatus();   // warm-up
               const rtt = [];
               for (let i = 0; i < 1000; i++) {
                 const t = performance.now();
                 await h.getStatus();
                 rtt.push(performance.now() - t);
               }
               rtt.sort((a, b) => a - b);
               const q = (p) => rtt[Math.min(rtt.length - 1, Math.floor(p * rtt.length))];
               // Events: 500 setLogLevel requests in flight at once, each
               // answered by a log-level-changed event to every client.
               const n = 500;
               let got = 0;
               const all = new Promise((resolve) => h.on("log-level-changed", () => { if (++got === n) resolve(); }));
               const t0 = performance.now();
               await Promise.all(Array.from({ length: n }, (_, i) => h.request("setLogLevel", { level: i % 2 ? "info" : "debug" })));
               await all;
               const seconds = (performance.now() - t0) / 1000;
               return { p50: q(0.5), p90: q(0.9), p99: q(0.99), max: rtt[rtt.length - 1], eventsPerSecond: n / seconds };"#,
            json!([]),
        )
        .expect("benchmark");
    println!("BENCH {kind:?} {figures}");
}
