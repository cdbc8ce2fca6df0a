//! The engine driven directly, jobs run inline, with an in-memory keyring.

use std::sync::Arc;
use std::time::Instant;

use agent_helper_credentials::{CredentialError, MemoryStore, SecretStore};
use agent_helper_diagnostics::logging::{LogSettings, build};
use agent_helper_engine::{Engine, EngineSetup, Handled};
use agent_helper_protocol::methods::LogLevel;
use agent_helper_protocol::{ErrorCode, Password, Profile, Request, RequestId};
use serde_json::{Value, json};

struct Rig {
    engine: Engine,
    store: Arc<dyn SecretStore>,
    profile: Profile,
    _dir: tempfile::TempDir,
}

fn rig_with(
    store: Arc<dyn SecretStore>,
    policy: Option<&str>,
    state: Option<&str>,
) -> (Rig, Option<agent_helper_engine::BlockingJob>) {
    let dir = tempfile::tempdir().unwrap();
    let profile = Profile::resolve(Some(dir.path())).unwrap();
    profile.create_dirs().unwrap();
    if let Some(s) = state {
        std::fs::write(&profile.state_file, s).unwrap();
    }
    let policy_file = policy.map(|text| {
        let p = dir.path().join("policy.toml");
        std::fs::write(&p, text).unwrap();
        p
    });
    let config = agent_helper_config::load(&profile.config_file, policy_file.as_deref()).unwrap();
    let (_subscriber, logging) = build(&LogSettings {
        dir: profile.log_dir.clone(),
        level: LogLevel::Info,
        max_file_bytes: 1 << 20,
        max_files: 2,
    })
    .unwrap();
    let setup = EngineSetup {
        profile: profile.clone(),
        config,
        logging: Arc::new(logging),
        secrets: store.clone(),
        warnings: vec![],
    };
    let (engine, job) = Engine::new(setup, Instant::now());
    (Rig { engine, store, profile, _dir: dir }, job)
}

fn rig() -> Rig {
    rig_with(Arc::new(MemoryStore::default()), None, None).0
}

impl Rig {
    fn call(&mut self, method: &str, params: Value) -> Result<Value, agent_helper_protocol::ApiError> {
        let req = Request::new(RequestId::Number(1), method, params);
        match self.engine.handle_request(Instant::now(), 1, req) {
            Handled::Reply(r) => r,
            Handled::Blocking(job) => self.engine.complete(job.run()).expect("a request's job answers it"),
        }
    }

    fn events(&mut self) -> Vec<(String, Value)> {
        std::iter::from_fn(|| self.engine.poll_event()).map(|e| (e.event, e.data)).collect()
    }
}

#[test]
fn unknown_method_and_bad_params_are_clear_errors() {
    let mut r = rig();
    assert_eq!(r.call("dial", json!({})).unwrap_err().code, ErrorCode::UnknownMethod);
    assert_eq!(r.call("login", json!({"username": 5})).unwrap_err().code, ErrorCode::InvalidParams);
    assert_eq!(r.call("login", json!({"username": "", "password": "x"})).unwrap_err().code, ErrorCode::InvalidParams);
    assert_eq!(r.call("setLogLevel", json!({"level": "verbose"})).unwrap_err().code, ErrorCode::InvalidParams);
    assert_eq!(
        r.call("hello", json!({"minHelperVersion": "not-a-version"})).unwrap_err().code,
        ErrorCode::InvalidParams
    );
}

#[test]
fn hello_refuses_callers_that_need_a_newer_helper() {
    let mut r = rig();
    let e = r.call("hello", json!({"minHelperVersion": "99.0.0"})).unwrap_err();
    assert_eq!(e.code, ErrorCode::HelperOutdated);
    assert_eq!(e.data.unwrap(), json!({"required": "99.0.0", "installed": agent_helper_protocol::HELPER_VERSION}));
    let ok = r.call("hello", json!({"minHelperVersion": "0.1.0", "sdkVersion": "1.0.0"})).unwrap();
    assert_eq!(ok["helperVersion"], agent_helper_protocol::HELPER_VERSION);
    assert!(ok["methods"].as_array().unwrap().contains(&json!("collectDiagnostics")));
    assert_eq!(ok["status"]["registration"]["state"], "not-configured");
}

#[test]
fn remembered_login_goes_to_the_store_and_only_the_username_to_disk() {
    let mut r = rig();
    let out = r.call("login", json!({"username": "alice", "password": "pa55-word!", "remember": true})).unwrap();
    assert_eq!(out["account"], json!({"username": "alice", "remembered": true, "passwordAvailable": true}));
    assert_eq!(r.store.load("alice").unwrap().unwrap().expose(), "pa55-word!");
    let state = std::fs::read_to_string(&r.profile.state_file).unwrap();
    assert!(state.contains("alice") && !state.contains("pa55-word!"), "{state}");
    assert_eq!(r.events()[0].0, "account-changed");

    // Logging in again without remember removes the stored password.
    r.call("login", json!({"username": "alice", "password": "other-pass", "remember": false})).unwrap();
    assert!(r.store.load("alice").unwrap().is_none());
    assert!(!std::fs::read_to_string(&r.profile.state_file).unwrap().contains("alice"));

    r.call("logout", json!({})).unwrap();
    assert!(r.call("getStatus", json!({})).unwrap()["account"].is_null());
    assert_eq!(r.call("logout", json!({})).unwrap_err().code, ErrorCode::NotLoggedIn);
}

#[test]
fn a_restart_loads_the_remembered_password_in_the_background() {
    let store: Arc<dyn SecretStore> = Arc::new(MemoryStore::default());
    store.save("bob", &Password::new("from-keyring".into())).unwrap();
    let (mut r, job) = rig_with(store, None, Some(r#"{"account":{"username":"bob","remembered":true}}"#));
    let status = r.call("getStatus", json!({})).unwrap();
    assert_eq!(status["account"]["passwordAvailable"], false, "not loaded yet");
    assert!(r.engine.complete(job.expect("start-up job").run()).is_none());
    let status = r.call("getStatus", json!({})).unwrap();
    assert_eq!(status["account"], json!({"username": "bob", "remembered": true, "passwordAvailable": true}));
}

struct BrokenKeyring;
impl SecretStore for BrokenKeyring {
    fn save(&self, _: &str, _: &Password) -> Result<(), CredentialError> {
        Err(CredentialError::Unavailable("no Secret Service".into()))
    }
    fn load(&self, _: &str) -> Result<Option<Password>, CredentialError> {
        Err(CredentialError::Unavailable("no Secret Service".into()))
    }
    fn delete(&self, _: &str) -> Result<(), CredentialError> {
        Err(CredentialError::Unavailable("no Secret Service".into()))
    }
}

#[test]
fn keyring_failure_is_reported_and_leaves_no_half_login() {
    let (mut r, _) = rig_with(Arc::new(BrokenKeyring), None, None);
    let e = r.call("login", json!({"username": "carol", "password": "secret-1", "remember": true})).unwrap_err();
    assert_eq!(e.code, ErrorCode::KeyringUnavailable);
    assert!(r.call("getStatus", json!({})).unwrap()["account"].is_null());
    // Without remember the keyring is not needed.
    r.call("login", json!({"username": "carol", "password": "secret-1"})).unwrap();
}

#[test]
fn policy_locked_keys_cannot_be_changed_through_the_api() {
    let (mut r, _) = rig_with(
        Arc::new(MemoryStore::default()),
        Some("[log]\nlevel = \"debug\"\n[calls]\nauto_answer = true\n"),
        None,
    );
    let status = r.call("getStatus", json!({})).unwrap();
    assert_eq!(status["lockedKeys"], json!(["calls.auto_answer", "log.level"]));
    for (method, params) in
        [("setLogLevel", json!({"level": "error"})), ("setConfig", json!({"key": "calls.auto_answer", "value": false}))]
    {
        let e = r.call(method, params).unwrap_err();
        assert_eq!(e.code, ErrorCode::PolicyLocked, "{method}");
        assert!(e.message.contains("locked by the administrator"), "{}", e.message);
    }
    let cfg = r.call("getConfig", json!({})).unwrap();
    assert_eq!(cfg["config"]["calls"]["auto_answer"], true);
    // An unlocked key still changes, and everyone hears about it.
    let out = r.call("setConfig", json!({"key": "calls.no_answer_timeout", "value": 30})).unwrap();
    assert_eq!(out["value"], 30);
    assert_eq!(
        r.events().last().unwrap(),
        &("config-changed".to_string(), json!({"key": "calls.no_answer_timeout", "value": 30}))
    );
    assert_eq!(
        r.call("setConfig", json!({"key": "calls.nope", "value": 1})).unwrap_err().code,
        ErrorCode::UnknownConfigKey
    );
    assert_eq!(
        r.call("setConfig", json!({"key": "dtmf.gap_ms", "value": 1})).unwrap_err().code,
        ErrorCode::InvalidConfigValue
    );
}

#[test]
fn diagnostics_bundle_is_written_to_the_profile() {
    let mut r = rig();
    let out = r.call("collectDiagnostics", json!({})).unwrap();
    let path = std::path::PathBuf::from(out["path"].as_str().unwrap());
    assert!(path.starts_with(&r.profile.diagnostics_dir) && path.exists());
    let files: Vec<&str> = out["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    for f in
        ["logs/BPClient.log", "versions.json", "system.json", "status.json", "effective-config.json", "devices.json"]
    {
        assert!(files.contains(&f), "{f} missing from {files:?}");
    }
}
