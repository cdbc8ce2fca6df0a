//! Configuration files and the administrator's policy, through the real binary.
#![cfg(unix)]

mod support;

use serde_json::json;
use support::*;

fn write_config(dir: &std::path::Path, text: &str) {
    std::fs::write(dir.join("config.toml"), text).unwrap();
}

#[test]
fn a_bad_config_stops_the_start_with_exit_2_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "[calls]\nauto_answer = true\nno_answer_timeout = -5\n");
    let (code, stderr) = Start::new(dir.path()).spawn().err().expect("must not start");
    assert_eq!(code, Some(2));
    let file = dir.path().join("config.toml");
    assert!(stderr.contains(&format!("{}:3: key `calls.no_answer_timeout`", file.display())), "{stderr}");
    assert!(!dir.path().join("agent-helper.sock").exists(), "never half-started");
    assert!(!dir.path().join("logs").exists(), "nothing was started before the config was read");

    // Syntax errors and range errors alike.
    write_config(dir.path(), "[log]\nmax_files = 0\n");
    let (code, stderr) = Start::new(dir.path()).spawn().err().unwrap();
    assert_eq!(code, Some(2));
    assert!(stderr.contains(":2: key `log.max_files`: must be 1–100"), "{stderr}");
    write_config(dir.path(), "[sip\n");
    let (code, stderr) = Start::new(dir.path()).spawn().err().unwrap();
    assert_eq!(code, Some(2));
    assert!(stderr.contains("config.toml:1"), "{stderr}");

    // check-config says the same without starting anything.
    let out = command().args(["check-config", "--profile"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unknown_keys_are_warned_about_not_dropped_silently() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "[sip]\ntransport = \"tcp\"\nregistrar_typo = \"pbx\"\n");
    let helper = Helper::start(dir.path());
    let status = helper.call("getStatus", json!({}));
    let warnings = status["configWarnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].as_str().unwrap().ends_with("config.toml:3: unknown key `sip.registrar_typo` ignored"),
        "{warnings:?}"
    );
    let log = std::fs::read_to_string(dir.path().join("logs/BPClient.log")).unwrap();
    assert!(log.contains("WARN") && log.contains("sip.registrar_typo"), "{log}");
    assert_eq!(helper.call("getConfig", json!({}))["config"]["sip"]["transport"], "tcp");
}

#[test]
fn policy_overrides_locks_and_is_shown_in_status() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "[sip]\ntransport = \"tls\"\n[log]\nlevel = \"debug\"\n[recording]\nallowed = false\n")
        .unwrap();
    write_config(dir.path(), "[sip]\ntransport = \"udp\"\n");
    let helper = Start::new(dir.path()).env("AGENT_HELPER_POLICY", policy.to_str().unwrap()).spawn().unwrap();

    let status = helper.call("getStatus", json!({}));
    assert_eq!(status["policyFile"], policy.to_str().unwrap());
    assert_eq!(status["lockedKeys"], json!(["log.level", "recording.allowed", "sip.transport"]));
    assert_eq!(status["logLevel"], "debug");
    assert!(status["configWarnings"][0].as_str().unwrap().contains("`sip.transport` is locked"), "{status}");
    assert_eq!(helper.call("getConfig", json!({}))["config"]["sip"]["transport"], "tls");

    let before = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    for (method, params) in [
        ("setConfig", json!({"key": "sip.transport", "value": "udp"})),
        ("setConfig", json!({"key": "recording.allowed", "value": true})),
        ("setLogLevel", json!({"level": "error", "persist": true})),
    ] {
        let (code, out) = helper.ctl(method, params);
        assert_eq!(code, 1, "{out}");
        assert_eq!(out["error"]["code"], "policy-locked", "{out}");
        assert!(out["error"]["message"].as_str().unwrap().contains(policy.to_str().unwrap()), "{out}");
    }
    assert_eq!(std::fs::read_to_string(dir.path().join("config.toml")).unwrap(), before);

    // Unlocked keys still change, and the change lands in config.toml.
    helper.call("setConfig", json!({"key": "sip.register_expiry", "value": 900}));
    let text = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    assert!(text.contains("register_expiry = 900") && text.contains("transport = \"udp\""), "{text}");
}

#[test]
fn api_changes_are_written_atomically_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "# written by the installer\n[codecs]\nallow = [\"pcmu\"]\n");
    let helper = Helper::start(dir.path());
    let out = helper.call("setConfig", json!({"key": "codecs.allow", "value": ["opus", "pcma"]}));
    assert_eq!(out["value"], json!(["opus", "pcma"]));
    helper.call("setConfig", json!({"key": "browser.allowed_origins", "value": ["https://desk.example.com"]}));
    helper.call("setLogLevel", json!({"level": "warn", "persist": true}));
    let (code, out) =
        helper.ctl("setConfig", json!({"key": "browser.allowed_origins", "value": ["https://*.example.com"]}));
    assert_eq!((code, out["error"]["code"].as_str()), (1, Some("invalid-config-value")));

    let names: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(!names.iter().any(|n| n.starts_with(".tmp")), "temp files left: {names:?}");
    let text = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    assert!(text.starts_with("# written by the installer\n"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("config.toml")).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "config.toml written through the API is private: {mode:o}");

    assert!(helper.stop().success());
    let helper = Helper::start(dir.path());
    let cfg = helper.call("getConfig", json!({}));
    assert_eq!(cfg["config"]["codecs"]["allow"], json!(["opus", "pcma"]));
    assert_eq!(cfg["config"]["browser"]["allowed_origins"], json!(["https://desk.example.com"]));
    assert_eq!(helper.call("getStatus", json!({}))["logLevel"], "warn");
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "[dtmf]\nmode = \"info\"\n");
    let out = command().args(["check-config", "--profile"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success());
    let v = parse_stdout(&out);
    assert_eq!(v["config"]["dtmf"]["mode"], "info");
    assert_eq!(v["config"]["dtmf"]["duration_ms"], 100);
}
