use agent_helper_config::{ConfigError, Transport, load, set_key};
use serde_json::json;
use std::path::PathBuf;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn problem(e: ConfigError) -> agent_helper_config::Problem {
    match e {
        ConfigError::Invalid(p) => p,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn missing_user_file_means_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let c = load(&dir.path().join("config.toml"), None).unwrap();
    assert_eq!(c.effective, agent_helper_config::Config::default());
    assert!(c.locked.is_empty() && c.warnings.is_empty());
}

#[test]
fn wrong_type_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "config.toml", "[log]\nlevel = \"info\"\n\n[sip]\nregister_expiry = \"soon\"\n");
    let p = problem(load(&f, None).unwrap_err());
    assert_eq!((p.file, p.line, p.key.as_deref()), (f, Some(5), Some("sip.register_expiry")));
    assert!(p.message.contains("string"), "{}", p.message);
}

#[test]
fn out_of_range_value_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "config.toml", "[dtmf]\nmode = \"info\"\nduration_ms = 5\n");
    let p = problem(load(&f, None).unwrap_err());
    assert_eq!((p.line, p.key.as_deref()), (Some(3), Some("dtmf.duration_ms")));
    let shown = ConfigError::Invalid(p).to_string();
    assert!(shown.contains("config.toml:3: key `dtmf.duration_ms`: must be 40–6000 ms"), "{shown}");
}

#[test]
fn syntax_error_has_a_line_and_nothing_is_half_read() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "config.toml", "[log]\nlevel = \"debug\"\n[sip\nservers = []\n");
    let p = problem(load(&f, None).unwrap_err());
    assert_eq!(p.line, Some(3));
}

#[test]
fn nested_errors_point_into_arrays_of_servers() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "config.toml",
        "[sip]\nservers = [\n { host = \"pbx1\" },\n { host = \"pbx2\", transport = \"carrier-pigeon\" },\n]\n",
    );
    let p = problem(load(&f, None).unwrap_err());
    assert_eq!(p.key.as_deref(), Some("sip.servers[1].transport"));
    assert_eq!(p.line, Some(4));
}

#[test]
fn unknown_keys_are_warned_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "config.toml", "[sip]\ntransport = \"tcp\"\nregistar = \"x\"\n[colour]\nx = 1\n");
    let c = load(&f, None).unwrap();
    assert_eq!(c.effective.sip.transport, Transport::Tcp);
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(c.warnings[0].ends_with("config.toml:3: unknown key `sip.registar` ignored"), "{:?}", c.warnings);
    assert!(c.warnings[1].contains("colour"), "{:?}", c.warnings);
}

#[test]
fn policy_overrides_and_locks_keys() {
    let dir = tempfile::tempdir().unwrap();
    let user = write(&dir, "config.toml", "[sip]\ntransport = \"udp\"\nregister_expiry = 600\n");
    let policy = write(&dir, "policy.toml", "[sip]\ntransport = \"tls\"\n[recording]\nallowed = true\n");
    let c = load(&user, Some(&policy)).unwrap();
    assert_eq!(c.effective.sip.transport, Transport::Tls);
    assert_eq!(c.effective.sip.register_expiry, 600);
    assert!(c.effective.recording.allowed);
    assert_eq!(c.locked.iter().cloned().collect::<Vec<_>>(), ["recording.allowed", "sip.transport"]);
    assert!(c.warnings.iter().any(|w| w.contains("`sip.transport` is locked")), "{:?}", c.warnings);

    let before = std::fs::read_to_string(&user).unwrap();
    match set_key(&c, "sip.transport", &json!("udp")).unwrap_err() {
        ConfigError::Locked { key, policy: p } => assert_eq!((key.as_str(), p), ("sip.transport", policy)),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&user).unwrap(), before);
}

#[test]
fn bad_policy_file_is_an_error_naming_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let user = write(&dir, "config.toml", "");
    let policy = write(&dir, "policy.toml", "[log]\nmax_files = 0\n");
    let p = problem(load(&user, Some(&policy)).unwrap_err());
    assert_eq!((p.file, p.line, p.key.as_deref()), (policy, Some(2), Some("log.max_files")));
}

#[test]
fn rules_across_files_are_checked_after_merging() {
    let dir = tempfile::tempdir().unwrap();
    let user = write(&dir, "config.toml", "[sip]\nreconnect_min = 30\n");
    let policy = write(&dir, "policy.toml", "[sip]\nreconnect_max = 10\n");
    let p = problem(load(&user, Some(&policy)).unwrap_err());
    assert_eq!(p.key.as_deref(), Some("sip.reconnect_max"));
    assert_eq!(p.file, policy);
}

#[test]
fn set_key_keeps_comments_validates_and_writes_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let user = write(&dir, "config.toml", "# agent's settings\n[calls]\nauto_answer = false # off for now\n");
    let c = load(&user, None).unwrap();

    let c = set_key(&c, "calls.auto_answer", &json!(true)).unwrap();
    assert!(c.effective.calls.auto_answer);
    let c = set_key(&c, "sip.custom_headers", &json!({"X-Site": "helsinki"})).unwrap();
    assert_eq!(c.effective.sip.custom_headers["X-Site"], "helsinki");
    let text = std::fs::read_to_string(&user).unwrap();
    assert!(text.starts_with("# agent's settings\n"), "{text}");
    assert!(text.contains("custom_headers = { X-Site = \"helsinki\" }"), "{text}");

    // Invalid values leave the file untouched.
    for (key, value) in
        [("dtmf.gap_ms", json!(1)), ("calls.auto_answer", json!("yes")), ("sip.custom_headers", json!({"Via": "x"}))]
    {
        match set_key(&c, key, &value).unwrap_err() {
            ConfigError::InvalidValue { key: k, .. } => assert_eq!(k, key),
            other => panic!("{key}: {other:?}"),
        }
    }
    assert!(matches!(set_key(&c, "sip.nope", &json!(1)), Err(ConfigError::UnknownKey { .. })));
    assert_eq!(std::fs::read_to_string(&user).unwrap(), text);

    // null removes the key: back to the default.
    let c = set_key(&c, "calls.auto_answer", &json!(null)).unwrap();
    assert!(!c.effective.calls.auto_answer);
    // No temp files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["config.toml"]);
}

#[test]
fn oversized_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "config.toml", &"#".repeat(2 * 1024 * 1024));
    assert!(matches!(load(&f, None), Err(ConfigError::Read { .. })));
}
