//! The engine state machine: requests in, answers, jobs and events out.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use agent_helper_config::{ConfigError, LoadedConfig};
use agent_helper_credentials::{CredentialError, SecretStore};
use agent_helper_diagnostics::{BundleEntry, BundleError, BundleInfo, Logging, bundle, redact};
use agent_helper_protocol::methods::{self as m, LogLevel};
use agent_helper_protocol::{ApiError, ErrorCode, Event, Password, Profile, Request, events as ev};
use serde::Serialize;
use serde_json::{Value, json};

use crate::account::{Account, RememberedAccount, StateFile, valid_password, valid_username};
use crate::phone::{CallUpdate, PhoneCommand, PhoneEvent};
use agent_helper_sip::registration::{Failure, RegistrationState};

/// A connection to the local API, numbered by the driver.
pub type ClientId = u64;

/// Everything the engine is built from.
pub struct EngineSetup {
    pub profile: Profile,
    pub config: LoadedConfig,
    pub logging: Arc<Logging>,
    pub secrets: Arc<dyn SecretStore>,
    /// Problems found at start that did not stop it (shown in `getStatus`).
    pub warnings: Vec<String>,
}

/// What [`Engine::handle_request`] decided.
pub enum Handled {
    /// The answer is ready.
    Reply(Result<Value, ApiError>),
    /// Run this job on a blocking thread, give its [`Completion`] to
    /// [`Engine::complete`]; that returns the answer.
    Blocking(BlockingJob),
}

/// Work that may block (keyring, disk): no engine state inside, only owned data.
pub struct BlockingJob(Box<dyn FnOnce() -> Completion + Send>);

impl BlockingJob {
    fn new(f: impl FnOnce() -> Completion + Send + 'static) -> Self {
        Self(Box::new(f))
    }

    pub fn run(self) -> Completion {
        (self.0)()
    }
}

/// The result of a [`BlockingJob`], to be applied by the engine.
pub struct Completion(Done);

enum Done {
    Login { username: String, password: Password, remember: bool, result: Result<(), CredentialError> },
    Logout { result: Result<(), CredentialError> },
    RememberedLoaded { username: String, result: Result<Option<Password>, CredentialError> },
    Diagnostics(Result<BundleInfo, BundleError>),
    Devices(Result<Vec<m::AudioDevice>, String>),
}

struct ClientInfo {
    name: Option<String>,
}

pub struct Engine {
    profile: Profile,
    config: LoadedConfig,
    logging: Arc<Logging>,
    secrets: Arc<dyn SecretStore>,
    warnings: Vec<String>,
    started: Instant,
    started_at: chrono::DateTime<chrono::Local>,
    account: Option<Account>,
    clients: BTreeMap<ClientId, ClientInfo>,
    events: VecDeque<Event>,
    registration: m::RegistrationStatus,
    /// A `connection-lost`/`connection-failed` was reported and the phone has
    /// not registered since: the next registration is a `connection-restored`.
    connection_down: bool,
    /// Consulted transfers under way: (call to transfer, consultation call).
    consultations: Vec<(String, String)>,
    /// The latest voice-quality report of each call.
    call_stats: BTreeMap<String, m::CallStats>,
    phone: VecDeque<PhoneCommand>,
    /// Calls in progress, in the order they started.
    calls: Vec<m::CallStatus>,
    next_call: u64,
    /// The device list clients know, shared with the device watcher.
    known_devices: crate::devices::Known,
}

impl Engine {
    /// Builds the engine. The returned job, when there is one, reads the
    /// remembered password from the keyring; run it like any other job.
    pub fn new(setup: EngineSetup, now: Instant) -> (Engine, Option<BlockingJob>) {
        let mut warnings = setup.warnings;
        warnings.extend(setup.config.warnings.iter().cloned());
        let (state, state_warning) = StateFile::read(&setup.profile.state_file);
        warnings.extend(state_warning);
        let mut engine = Engine {
            profile: setup.profile,
            config: setup.config,
            logging: setup.logging,
            secrets: setup.secrets,
            warnings,
            started: now,
            started_at: chrono::Local::now(),
            account: None,
            clients: BTreeMap::new(),
            events: VecDeque::new(),
            registration: m::RegistrationStatus { state: "not-configured".into(), ..Default::default() },
            connection_down: false,
            consultations: Vec::new(),
            call_stats: BTreeMap::new(),
            phone: VecDeque::new(),
            calls: Vec::new(),
            next_call: 1,
            known_devices: crate::devices::Known::default(),
        };
        engine.apply_streams();
        let job = state.account.filter(|a| a.remembered).map(|a| {
            engine.account = Some(Account { username: a.username.clone(), password: None, remembered: true });
            let secrets = engine.secrets.clone();
            BlockingJob::new(move || {
                let result = secrets.load(&a.username);
                Completion(Done::RememberedLoaded { username: a.username, result })
            })
        });
        (engine, job)
    }

    /// For the device watcher: changes are announced against what clients saw.
    pub fn known_devices(&self) -> crate::devices::Known {
        self.known_devices.clone()
    }

    // ----- clients -----

    pub fn client_connected(&mut self, id: ClientId) {
        self.clients.insert(id, ClientInfo { name: None });
        tracing::debug!(client = id, "client connected");
    }

    pub fn client_disconnected(&mut self, id: ClientId) {
        if let Some(c) = self.clients.remove(&id) {
            tracing::debug!(client = id, name = c.name.as_deref().unwrap_or("-"), "client disconnected");
        }
    }

    // ----- requests -----

    pub fn handle_request(&mut self, now: Instant, client: ClientId, req: Request) -> Handled {
        tracing::debug!(client, id = %req.id, method = %req.method, "request");
        let Request { method, params, .. } = req;
        let reply = match method.as_str() {
            m::HELLO => self.hello(now, client, params),
            m::GET_STATUS => to_value(self.status(now)),
            m::LOGIN => return self.login(params),
            m::LOGOUT => return self.logout(),
            m::SET_LOG_LEVEL => self.set_log_level(params),
            m::GET_CONFIG => to_value(self.config_view()),
            m::SET_CONFIG => self.set_config(params),
            m::COLLECT_DIAGNOSTICS => return self.collect_diagnostics(now),
            m::LIST_DEVICES => {
                // Asking the audio system blocks (PulseAudio round trips).
                let known = self.known_devices.clone();
                return Handled::Blocking(BlockingJob::new(move || Completion(Done::Devices(known.list_for_client()))));
            }
            m::CALL => self.call(params),
            m::ANSWER_CALL => {
                self.call_command(m::ANSWER_CALL, params, "incoming", |call_id| PhoneCommand::Answer { call_id })
            }
            m::END_CALL => self.call_command(m::END_CALL, params, "", |call_id| PhoneCommand::Hangup { call_id }),
            m::REJECT_CALL => self.reject_call(params),
            m::SEND_DTMF => self.send_dtmf(params),
            m::HOLD_CALL => self.hold_call(m::HOLD_CALL, params, true),
            m::RESUME_CALL => self.hold_call(m::RESUME_CALL, params, false),
            m::TRANSFER_CALL => self.transfer_call(params),
            m::CONFIRM_TRANSFER => self.confirm_transfer(params),
            m::MUTE_CALL => self.mute_call(m::MUTE_CALL, params, true),
            m::GET_CALL_STATS => self.get_call_stats(params),
            m::SET_DEVICES => self.set_devices(params),
            m::UNMUTE_CALL => self.mute_call(m::UNMUTE_CALL, params, false),
            other => Err(ApiError::new(
                ErrorCode::UnknownMethod,
                format!("unknown method {other:?}; `hello` lists the methods this helper offers"),
            )),
        };
        Handled::Reply(reply)
    }

    fn hello(&mut self, now: Instant, client: ClientId, params: Value) -> Result<Value, ApiError> {
        let p: m::HelloParams = m::parse_params(m::HELLO, params)?;
        if let Some(c) = self.clients.get_mut(&client) {
            c.name = p.client.clone().map(|n| n.chars().take(64).collect());
        }
        // Caller-supplied strings are logged escaped (`?`): a newline in them
        // must not forge a BPClient.log line.
        tracing::info!(client, name = ?p.client, sdk = ?p.sdk_version, min_helper = ?p.min_helper_version, "hello");
        if let Some(required) = &p.min_helper_version {
            let wanted = semver::Version::parse(required.trim_start_matches('v')).map_err(|e| {
                ApiError::new(ErrorCode::InvalidParams, format!("hello: minHelperVersion {required:?}: {e}"))
            })?;
            let installed = semver::Version::parse(agent_helper_protocol::HELPER_VERSION)
                .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
            if installed < wanted {
                return Err(ApiError::new(
                    ErrorCode::HelperOutdated,
                    format!("this page needs Agent Helper {wanted} or newer; {installed} is installed"),
                )
                .with_data(json!({ "required": wanted.to_string(), "installed": installed.to_string() })));
            }
        }
        to_value(m::HelloResult {
            helper_version: agent_helper_protocol::HELPER_VERSION.into(),
            protocol_version: agent_helper_protocol::PROTOCOL_VERSION,
            methods: m::ALL.iter().map(|s| s.to_string()).collect(),
            events: ev::ALL.iter().map(|s| s.to_string()).collect(),
            status: self.status(now),
        })
    }

    pub fn status(&self, now: Instant) -> m::Status {
        m::Status {
            helper_version: agent_helper_protocol::HELPER_VERSION.into(),
            pid: std::process::id(),
            started_at: self.started_at.to_rfc3339(),
            uptime_ms: u64::try_from(now.saturating_duration_since(self.started).as_millis()).unwrap_or(u64::MAX),
            profile_dir: self.profile.display_dir().display().to_string(),
            config_file: self.config.user_file.display().to_string(),
            policy_file: self.config.policy_file.as_ref().map(|p| p.display().to_string()),
            locked_keys: self.config.locked.iter().cloned().collect(),
            config_warnings: self.warnings.clone(),
            log_file: self.logging.file().display().to_string(),
            log_level: self.logging.level(),
            account: self.account.as_ref().map(Account::status),
            registration: self.registration.clone(),
            calls: self.calls.clone(),
            clients: self.clients.len(),
        }
    }

    fn login(&mut self, params: Value) -> Handled {
        let p: m::LoginParams = match m::parse_params(m::LOGIN, params) {
            Ok(p) => p,
            Err(e) => return Handled::Reply(Err(e)),
        };
        if let Err(msg) = valid_username(&p.username).and_then(|()| valid_password(&p.password)) {
            return Handled::Reply(Err(ApiError::new(ErrorCode::InvalidParams, format!("login: {msg}"))));
        }
        // Registered before anything else can log it.
        redact::register_secret(p.password.expose());
        let previous = self.account.as_ref().filter(|a| a.remembered).map(|a| a.username.clone());
        let secrets = self.secrets.clone();
        Handled::Blocking(BlockingJob::new(move || {
            let result = (|| {
                if p.remember {
                    secrets.save(&p.username, &p.password)?;
                }
                // A remembered password of another account, or of this one when it
                // is no longer to be remembered, leaves the keyring.
                match previous {
                    Some(old) if old != p.username || !p.remember => secrets.delete(&old),
                    _ => Ok(()),
                }
            })();
            Completion(Done::Login { username: p.username, password: p.password, remember: p.remember, result })
        }))
    }

    fn logout(&mut self) -> Handled {
        let Some(account) = self.account.take() else {
            return Handled::Reply(Err(ApiError::new(ErrorCode::NotLoggedIn, "logout: no account is logged in")));
        };
        if let Some(p) = &account.password {
            redact::forget_secret(p.expose());
        }
        tracing::info!(username = %account.username, "logout");
        self.connection_down = false;
        self.phone.push_back(PhoneCommand::Unregister);
        self.write_state(None);
        self.emit(ev::ACCOUNT_CHANGED, ev::AccountChanged { account: None });
        if !account.remembered {
            return Handled::Reply(to_value(m::Empty {}));
        }
        let secrets = self.secrets.clone();
        Handled::Blocking(BlockingJob::new(move || {
            Completion(Done::Logout { result: secrets.delete(&account.username) })
        }))
    }

    fn set_log_level(&mut self, params: Value) -> Result<Value, ApiError> {
        let p: m::SetLogLevelParams = m::parse_params(m::SET_LOG_LEVEL, params)?;
        if self.config.is_locked("log.level") {
            return Err(config_error(ConfigError::Locked {
                key: "log.level".into(),
                policy: self.config.policy_file.clone().unwrap_or_default(),
            }));
        }
        if p.persist {
            self.config = agent_helper_config::set_key(&self.config, "log.level", &json!(p.level.as_str()))
                .map_err(config_error)?;
        }
        self.apply_log_level(p.level, p.persist);
        to_value(ev::LogLevelChanged { level: p.level, persisted: p.persist })
    }

    fn apply_log_level(&mut self, level: LogLevel, persisted: bool) {
        if self.logging.level() != level {
            tracing::info!(level = level.as_str(), persisted, "log level changed");
        }
        self.logging.set_level(level);
        self.emit(ev::LOG_LEVEL_CHANGED, ev::LogLevelChanged { level, persisted });
    }

    fn config_view(&self) -> m::ConfigView {
        m::ConfigView {
            config: serde_json::to_value(&self.config.effective).unwrap_or(Value::Null),
            locked_keys: self.config.locked.iter().cloned().collect(),
            config_file: self.config.user_file.display().to_string(),
            policy_file: self.config.policy_file.as_ref().map(|p| p.display().to_string()),
        }
    }

    fn set_config(&mut self, params: Value) -> Result<Value, ApiError> {
        let p: m::SetConfigParams = m::parse_params(m::SET_CONFIG, params)?;
        self.config = agent_helper_config::set_key(&self.config, &p.key, &p.value).map_err(config_error)?;
        let value = self.effective_value(&p.key);
        tracing::info!(key = %p.key, "configuration changed through the API");
        if p.key == "log.level" {
            self.apply_log_level(self.config.effective.log.level, true);
        }
        if p.key == "audio.streams" {
            self.apply_streams();
        }
        if p.key.starts_with("sip.") {
            self.register();
        } else if ["audio.", "calls.", "codecs.", "dtmf."].iter().any(|s| p.key.starts_with(s)) {
            self.phone.push_back(PhoneCommand::Reconfigure(Box::new(self.config.effective.clone())));
        }
        self.emit(ev::CONFIG_CHANGED, ev::ConfigChanged { key: p.key.clone(), value: value.clone() });
        // Log file size and count are fixed when BPClient.log is opened.
        let restart_required = matches!(p.key.as_str(), "log.max_file_bytes" | "log.max_files");
        to_value(m::SetConfigResult { key: p.key, value, restart_required })
    }

    /// Streams opened from now on go through the API `audio.streams` names.
    fn apply_streams(&self) {
        agent_helper_audio::set_streams(match self.config.effective.audio.streams {
            agent_helper_config::AudioStreams::Auto => agent_helper_audio::Streams::Auto,
            agent_helper_config::AudioStreams::Cpal => agent_helper_audio::Streams::Cpal,
        });
    }

    fn effective_value(&self, key: &str) -> Value {
        let all = serde_json::to_value(&self.config.effective).unwrap_or(Value::Null);
        key.split_once('.').and_then(|(s, k)| all.get(s)?.get(k).cloned()).unwrap_or(Value::Null)
    }

    fn collect_diagnostics(&mut self, now: Instant) -> Handled {
        let entry = |name: &str, value: Value| BundleEntry {
            name: name.into(),
            bytes: serde_json::to_vec_pretty(&value).unwrap_or_default(),
        };
        let entries = vec![
            entry("versions.json", crate::system::versions()),
            entry("system.json", crate::system::system()),
            entry("status.json", serde_json::to_value(self.status(now)).unwrap_or(Value::Null)),
            entry("effective-config.json", serde_json::to_value(self.config_view()).unwrap_or(Value::Null)),
        ];
        let out_dir = self.profile.diagnostics_dir.clone();
        let log_dir = self.profile.log_dir.clone();
        let config_file = self.config.user_file.clone();
        let policy_file = self.config.policy_file.clone();
        tracing::info!("collecting diagnostics");
        Handled::Blocking(BlockingJob::new(move || {
            let devices = match crate::devices::list() {
                Ok(d) => json!({ "available": true, "devices": d }),
                Err(e) => json!({ "available": false, "error": e }),
            };
            let mut entries = entries;
            entries.push(BundleEntry {
                name: "devices.json".into(),
                bytes: serde_json::to_vec_pretty(&devices).unwrap_or_default(),
            });
            let mut configs = vec![("config.toml", config_file.as_path())];
            if let Some(p) = &policy_file {
                configs.push(("policy.toml", p.as_path()));
            }
            Completion(Done::Diagnostics(bundle::collect(&out_dir, &log_dir, &configs, entries)))
        }))
    }

    // ----- completions -----

    /// Applies a finished job; returns the answer for the request that started
    /// it (`None` for jobs the engine started itself).
    pub fn complete(&mut self, completion: Completion) -> Option<Result<Value, ApiError>> {
        match completion.0 {
            Done::Login { username, password, remember, result } => Some(match result {
                Err(e) => {
                    redact::forget_secret(password.expose());
                    tracing::warn!(%username, error = %e, "login: keyring failed; not logged in");
                    Err(credential_error(e))
                }
                Ok(()) => {
                    if let Some(old) = self.account.take().and_then(|a| a.password)
                        && old.expose() != password.expose()
                    {
                        redact::forget_secret(old.expose());
                    }
                    tracing::info!(%username, remember, "login");
                    let account = Account { username, password: Some(password), remembered: remember };
                    let status = account.status();
                    self.write_state(
                        remember.then(|| RememberedAccount { username: status.username.clone(), remembered: true }),
                    );
                    self.account = Some(account);
                    self.emit(ev::ACCOUNT_CHANGED, ev::AccountChanged { account: Some(status.clone()) });
                    self.register();
                    to_value(m::LoginResult { account: status })
                }
            }),
            Done::Logout { result } => Some(match result {
                Ok(()) => to_value(m::Empty {}),
                Err(e) => {
                    tracing::warn!(error = %e, "logout: the remembered password could not be removed from the keyring");
                    Err(credential_error(e))
                }
            }),
            Done::RememberedLoaded { username, result } => {
                let Some(account) = self.account.as_mut().filter(|a| a.username == username && a.password.is_none())
                else {
                    return None; // a login or logout came first
                };
                match result {
                    Ok(Some(p)) => {
                        redact::register_secret(p.expose());
                        account.password = Some(p);
                        tracing::info!(%username, "remembered account loaded from the keyring");
                    }
                    Ok(None) => tracing::warn!(%username, "remembered account has no password in the keyring"),
                    Err(e) => tracing::warn!(%username, error = %e, "cannot read the remembered password"),
                }
                let status = account.status();
                self.emit(ev::ACCOUNT_CHANGED, ev::AccountChanged { account: Some(status) });
                self.register();
                None
            }
            Done::Devices(result) => Some(match result {
                Ok(devices) => to_value(m::DeviceList { devices }),
                Err(e) => Err(ApiError::new(ErrorCode::AudioUnavailable, e)),
            }),
            Done::Diagnostics(result) => Some(match result {
                Ok(info) => {
                    tracing::info!(path = %info.path.display(), bytes = info.bytes, "diagnostics bundle written");
                    to_value(m::DiagnosticsBundle {
                        path: info.path.display().to_string(),
                        bytes: info.bytes,
                        files: info.files,
                    })
                }
                Err(e) => {
                    tracing::error!(error = %e, "diagnostics bundle failed");
                    Err(ApiError::new(ErrorCode::Io, e.to_string()))
                }
            }),
        }
    }

    // ----- phone -----

    /// (Re)registers the account with the configured servers, when there are both.
    fn register(&mut self) {
        let Some(Account { username, password: Some(password), .. }) = &self.account else { return };
        if self.config.effective.sip.servers.is_empty() {
            tracing::info!("no SIP server configured (sip.servers); the phone stays unregistered");
            return;
        }
        self.phone.push_back(PhoneCommand::Register {
            username: username.clone(),
            password: password.clone(),
            config: Box::new(self.config.effective.clone()),
        });
    }

    /// The next command for the phone driver.
    #[must_use]
    pub fn poll_phone_command(&mut self) -> Option<PhoneCommand> {
        self.phone.pop_front()
    }

    pub fn handle_phone_event(&mut self, event: PhoneEvent) {
        let was = self.registration.clone();
        let mut next = m::RegistrationStatus { backup: was.backup.clone(), ..Default::default() };
        let mut error: Option<(&str, String, Option<u16>)> = None;
        match event {
            PhoneEvent::Registration { state, server, transport } => {
                next.server = Some(server);
                next.transport = Some(transport.param().into());
                next.state = state_name(&state).into();
                match state {
                    RegistrationState::Registered { expires } => {
                        next.expires = Some(expires);
                        if std::mem::take(&mut self.connection_down) {
                            error = Some(("connection-restored", "registered again".into(), None));
                        }
                    }
                    RegistrationState::Failed(Failure::AuthFailed) => {
                        next.error = Some("auth-failed".into());
                        error = Some((
                            "auth-failed",
                            "the registrar rejected the credentials 3 times; log in again".into(),
                            None,
                        ));
                    }
                    RegistrationState::Failed(Failure::Timeout) => {
                        next.error = Some("timeout".into());
                        error = Some((lost_or_failed(&was), "no answer from the registrar".into(), None));
                    }
                    RegistrationState::Failed(Failure::Rejected { code, reason }) => {
                        next.error = Some("rejected".into());
                        next.sip_code = Some(code);
                        error =
                            Some((lost_or_failed(&was), format!("registration rejected: {code} {reason}"), Some(code)));
                    }
                    _ => {}
                }
            }
            PhoneEvent::Call { call_id, update } => return self.on_call_update(call_id, update),
            PhoneEvent::DevicesChanged { devices } => {
                self.emit(ev::DEVICES_CHANGED, m::DeviceList { devices });
                return;
            }
            PhoneEvent::BackupRegistration { state, server } => {
                let mut next = was.clone();
                next.backup = Some(m::BackupRegistrationStatus { server, state: state_name(&state).into() });
                if next != was {
                    tracing::info!(backup = ?next.backup, "backup registration");
                    self.registration = next.clone();
                    self.emit(ev::REGISTRATION_CHANGED, next);
                }
                return;
            }
            PhoneEvent::Unreachable { server, message } => {
                next.state = "failed".into();
                next.server = Some(server);
                next.error = Some("unreachable".into());
                error = Some((lost_or_failed(&was), message, None));
            }
        }
        if next != was {
            self.registration = next.clone();
            self.emit(ev::REGISTRATION_CHANGED, next);
        }
        if let Some((kind, message, sip_code)) = error {
            // Repeated failures of the same kind are one error for the Agent Desktop.
            if !(was.state == "failed" && kind != "connection-restored" && was.error == self.registration.error) {
                if matches!(kind, "connection-lost" | "connection-failed") {
                    self.connection_down = true;
                }
                tracing::warn!(error = kind, %message, "phone");
                self.emit(ev::PHONE_ERROR, ev::PhoneError { error: kind.into(), message, sip_code, call_id: None });
            }
        }
    }

    // ----- calls -----

    fn call(&mut self, params: Value) -> Result<Value, ApiError> {
        let p: m::CallParams = m::parse_params(m::CALL, params)?;
        let target = p.target.trim();
        let valid = !target.is_empty()
            && target.len() <= 256
            && !target.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | '"'));
        if !valid {
            return Err(ApiError::new(
                ErrorCode::InvalidParams,
                format!("call: target {target:?} is not a SIP URI, user or number"),
            ));
        }
        if p.headers.len() > 32 {
            return Err(ApiError::new(ErrorCode::InvalidParams, "call: at most 32 headers"));
        }
        for (name, value) in &p.headers {
            agent_helper_config::check_header(name, value)
                .map_err(|e| ApiError::new(ErrorCode::InvalidParams, format!("call: headers: {e}")))?;
        }
        if self.registration.state != "registered" {
            return Err(ApiError::new(
                ErrorCode::NotRegistered,
                format!("call: the phone is not registered (registration is {})", self.registration.state),
            ));
        }
        let call_id = format!("o-{}", self.next_call);
        self.next_call += 1;
        tracing::info!(call_id, target, "call");
        self.calls.push(m::CallStatus::new(call_id.clone(), "outbound", "calling", target.to_owned()));
        self.phone.push_back(PhoneCommand::Dial {
            call_id: call_id.clone(),
            target: target.to_owned(),
            headers: p.headers.into_iter().collect(),
        });
        to_value(m::CallRef { call_id })
    }

    /// The call named by `callId`, or the only call in `state` (any state when empty).
    fn pick_call(&self, method: &str, call_id: Option<String>, state: &str) -> Result<String, ApiError> {
        match call_id {
            Some(id) if self.calls.iter().any(|c| c.call_id == id) => Ok(id),
            Some(id) => Err(ApiError::new(ErrorCode::NoSuchCall, format!("{method}: no call {id:?}"))),
            None => {
                let mut fitting = self.calls.iter().filter(|c| state.is_empty() || c.state == state);
                match (fitting.next(), fitting.next()) {
                    (Some(c), None) => Ok(c.call_id.clone()),
                    (None, _) => Err(ApiError::new(ErrorCode::NoSuchCall, format!("{method}: no call to act on"))),
                    (Some(_), Some(_)) => {
                        Err(ApiError::new(ErrorCode::InvalidParams, format!("{method}: several calls; give callId")))
                    }
                }
            }
        }
    }

    fn call_command(
        &mut self,
        method: &str,
        params: Value,
        state: &str,
        command: impl FnOnce(String) -> PhoneCommand,
    ) -> Result<Value, ApiError> {
        let p: m::CallIdParams = m::parse_params(method, params)?;
        let call_id = self.pick_call(method, p.call_id, state)?;
        if !state.is_empty() && self.calls.iter().any(|c| c.call_id == call_id && c.state != state) {
            return Err(ApiError::new(ErrorCode::InvalidParams, format!("{method}: call {call_id} is not {state}")));
        }
        self.phone.push_back(command(call_id.clone()));
        to_value(m::CallRef { call_id })
    }

    fn reject_call(&mut self, params: Value) -> Result<Value, ApiError> {
        let p: m::RejectCallParams = m::parse_params(m::REJECT_CALL, params)?;
        let code = p.code.unwrap_or(486);
        if !(400..700).contains(&code) {
            return Err(ApiError::new(ErrorCode::InvalidParams, "rejectCall: code must be 400–699"));
        }
        let call_id = self.pick_call(m::REJECT_CALL, p.call_id, "incoming")?;
        self.phone.push_back(PhoneCommand::Reject { call_id: call_id.clone(), code });
        to_value(m::CallRef { call_id })
    }

    fn hold_call(&mut self, method: &str, params: Value, hold: bool) -> Result<Value, ApiError> {
        let p: m::CallIdParams = m::parse_params(method, params)?;
        let call_id = self.pick_call(method, p.call_id, "connected")?;
        if self.calls.iter().any(|c| c.call_id == call_id && c.state != "connected") {
            return Err(ApiError::new(ErrorCode::InvalidParams, format!("{method}: call {call_id} is not connected")));
        }
        let held_by_peer = self.calls.iter().any(|c| c.call_id == call_id && c.hold.as_deref() == Some("remote"));
        if hold && held_by_peer && self.config.effective.calls.avoid_two_way_hold {
            return Err(ApiError::new(
                ErrorCode::InvalidParams,
                format!(
                    "{method}: the other party holds call {call_id}; a two-way hold is avoided (calls.avoid_two_way_hold)"
                ),
            ));
        }
        self.phone.push_back(PhoneCommand::Hold { call_id: call_id.clone(), hold });
        to_value(m::CallRef { call_id })
    }

    fn transfer_call(&mut self, params: Value) -> Result<Value, ApiError> {
        let p: m::TransferCallParams = m::parse_params(m::TRANSFER_CALL, params)?;
        let bad = |m: String| ApiError::new(ErrorCode::InvalidParams, format!("transferCall: {m}"));
        let consulted = match p.kind.as_str() {
            "direct" => false,
            "consulted" => true,
            other => return Err(bad(format!("type {other:?} is not direct or consulted"))),
        };
        let target = p.target.trim();
        if target.is_empty()
            || target.len() > 256
            || target.chars().any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | '"'))
        {
            return Err(bad(format!("target {target:?} is not a SIP URI, user or number")));
        }
        let call_id = self.pick_call(m::TRANSFER_CALL, p.call_id, "connected")?;
        if self.calls.iter().any(|c| c.call_id == call_id && c.state != "connected") {
            return Err(bad(format!("call {call_id} is not connected")));
        }
        if self.consultations.iter().any(|(t, c)| *t == call_id || *c == call_id) {
            return Err(bad(format!("call {call_id} is already part of a consulted transfer")));
        }
        if !consulted {
            self.phone.push_back(PhoneCommand::Transfer { call_id: call_id.clone(), target: target.to_owned() });
            return to_value(m::CallRef { call_id });
        }
        // Hold the call, consult the target on a call of its own; confirmTransfer joins them.
        let consult_call_id = format!("o-{}", self.next_call);
        self.next_call += 1;
        tracing::info!(call_id, consult_call_id, target, "consulted transfer: consultation call");
        self.calls.push(m::CallStatus::new(consult_call_id.clone(), "outbound", "calling", target.to_owned()));
        self.consultations.push((call_id.clone(), consult_call_id.clone()));
        self.phone.push_back(PhoneCommand::Consult {
            call_id: call_id.clone(),
            consult_call_id: consult_call_id.clone(),
            target: target.to_owned(),
        });
        to_value(m::TransferResult { call_id, consult_call_id: Some(consult_call_id) })
    }

    /// Completes a consulted transfer: the held call's party is asked to take
    /// over the consultation call (REFER with Replaces). `callId` may name
    /// either call; without it, the only consultation.
    fn confirm_transfer(&mut self, params: Value) -> Result<Value, ApiError> {
        let p: m::CallIdParams = m::parse_params(m::CONFIRM_TRANSFER, params)?;
        let bad = |code, m: String| ApiError::new(code, format!("confirmTransfer: {m}"));
        let found = match &p.call_id {
            Some(id) => self.consultations.iter().find(|(t, c)| t == id || c == id),
            None if self.consultations.len() > 1 => {
                return Err(bad(ErrorCode::InvalidParams, "several consulted transfers; give callId".into()));
            }
            None => self.consultations.first(),
        };
        let Some((call_id, consult_call_id)) = found.cloned() else {
            return Err(bad(
                ErrorCode::NoSuchCall,
                "no consulted transfer in progress; start one with transferCall".into(),
            ));
        };
        let connected = |id: &str| self.calls.iter().any(|c| c.call_id == id && c.state == "connected");
        if !connected(&consult_call_id) {
            return Err(bad(
                ErrorCode::InvalidParams,
                format!("the consultation call {consult_call_id} is not connected"),
            ));
        }
        if !connected(&call_id) {
            return Err(bad(ErrorCode::InvalidParams, format!("call {call_id} is not connected")));
        }
        self.phone.push_back(PhoneCommand::ConfirmTransfer {
            call_id: call_id.clone(),
            consult_call_id: consult_call_id.clone(),
        });
        to_value(m::TransferResult { call_id, consult_call_id: Some(consult_call_id) })
    }

    /// Chooses the audio devices, stored by stable id in config.toml (so a
    /// headset unplugged now is used again when it is back); calls in
    /// progress move to them at once.
    fn set_devices(&mut self, params: Value) -> Result<Value, ApiError> {
        let p: m::SetDevicesParams = m::parse_params(m::SET_DEVICES, params)?;
        let bad = |m: String| ApiError::new(ErrorCode::InvalidParams, format!("setDevices: {m}"));
        let valid = |id: &str| id.len() <= 512 && !id.chars().any(char::is_control);
        let mut changes: Vec<(&str, Value)> = Vec::new();
        for (key, value) in [("audio.microphone", &p.microphone), ("audio.speaker", &p.speaker)] {
            if let Some(id) = value {
                if !valid(id) {
                    return Err(bad(format!("{key}: not a device id")));
                }
                changes.push((key, json!(id)));
            }
        }
        if let Some(ringers) = &p.ringer {
            if ringers.len() > 16 || !ringers.iter().all(|r| valid(r) && !r.is_empty()) {
                return Err(bad("ringer: at most 16 device ids".into()));
            }
            changes.push(("audio.ringer", json!(ringers)));
        }
        if let Some(all) = p.ring_on_all_devices {
            changes.push(("audio.ring_on_all_devices", json!(all)));
        }
        for (key, value) in &changes {
            self.config = agent_helper_config::set_key(&self.config, key, value).map_err(config_error)?;
            let value = self.effective_value(key);
            self.emit(ev::CONFIG_CHANGED, ev::ConfigChanged { key: (*key).to_owned(), value });
        }
        tracing::info!(keys = ?changes.iter().map(|(k, _)| *k).collect::<Vec<_>>(), "audio devices chosen");
        self.phone.push_back(PhoneCommand::Reconfigure(Box::new(self.config.effective.clone())));
        let audio = &self.config.effective.audio;
        to_value(m::ChosenDevices {
            microphone: audio.microphone.clone().unwrap_or_default(),
            speaker: audio.speaker.clone().unwrap_or_default(),
            ringer: audio.ringer.clone(),
            ring_on_all_devices: audio.ring_on_all_devices,
        })
    }

    /// The latest voice-quality figures of a call (zeros until its first report).
    fn get_call_stats(&mut self, params: Value) -> Result<Value, ApiError> {
        let p: m::CallIdParams = m::parse_params(m::GET_CALL_STATS, params)?;
        let call_id = self.pick_call(m::GET_CALL_STATS, p.call_id, "")?;
        if !self.calls.iter().any(|c| c.call_id == call_id) {
            return Err(ApiError::new(ErrorCode::NoSuchCall, format!("getCallStats: no call {call_id}")));
        }
        let stats =
            self.call_stats.get(&call_id).cloned().unwrap_or_else(|| m::CallStats { call_id, ..Default::default() });
        to_value(stats)
    }

    /// Mutes or unmutes the agent's microphone on a call: the call goes on
    /// sending (silence), so the far end sees no change in the stream.
    fn mute_call(&mut self, method: &str, params: Value, muted: bool) -> Result<Value, ApiError> {
        let p: m::CallIdParams = m::parse_params(method, params)?;
        let call_id = self.pick_call(method, p.call_id, "")?;
        let Some(call) = self.calls.iter_mut().find(|c| c.call_id == call_id) else {
            return Err(ApiError::new(ErrorCode::NoSuchCall, format!("{method}: no call {call_id}")));
        };
        if call.muted != muted {
            call.muted = muted;
            self.phone.push_back(PhoneCommand::Mute { call_id: call_id.clone(), muted });
            self.emit(
                if muted { ev::CALL_MUTED } else { ev::CALL_UNMUTED },
                ev::CallEvent { call_id: call_id.clone() },
            );
        }
        to_value(m::MuteResult { call_id, muted })
    }

    fn send_dtmf(&mut self, params: Value) -> Result<Value, ApiError> {
        let p: m::SendDtmfParams = m::parse_params(m::SEND_DTMF, params)?;
        let bad = |m: String| ApiError::new(ErrorCode::InvalidParams, format!("sendDtmf: {m}"));
        let tones = p.tones.to_ascii_uppercase();
        if tones.is_empty()
            || tones.len() > 64
            || !tones.chars().all(|c| c.is_ascii_digit() || matches!(c, 'A'..='D' | '*' | '#' | ','))
        {
            return Err(bad("tones must be 1–64 of 0-9 A-D * # ,".into()));
        }
        let dtmf = &self.config.effective.dtmf;
        let duration = p.duration.unwrap_or(dtmf.duration_ms);
        let gap = p.inter_tone_gap.unwrap_or(dtmf.gap_ms);
        if !(40..=6000).contains(&duration) {
            return Err(bad(format!("duration must be 40–6000 ms (got {duration})")));
        }
        if !(30..=6000).contains(&gap) {
            return Err(bad(format!("interToneGap must be 30–6000 ms (got {gap})")));
        }
        let call_id = self.pick_call(m::SEND_DTMF, p.call_id, "connected")?;
        if self.calls.iter().any(|c| c.call_id == call_id && c.state != "connected") {
            return Err(bad(format!("call {call_id} is not connected")));
        }
        let rfc4733 = dtmf.mode == agent_helper_config::DtmfMode::Rfc4733;
        self.phone.push_back(PhoneCommand::Dtmf {
            call_id: call_id.clone(),
            tones,
            duration: std::time::Duration::from_millis(u64::from(duration)),
            gap: std::time::Duration::from_millis(u64::from(gap)),
            rfc4733,
        });
        // RFC 4733 needs the peer's telephone-event; without it the phone falls back to INFO.
        to_value(m::SendDtmfResult { call_id, method: if rfc4733 { "rfc4733" } else { "info" }.into() })
    }

    fn on_call_update(&mut self, call_id: String, update: CallUpdate) {
        let set_state = |calls: &mut Vec<m::CallStatus>, state: &str| {
            if let Some(c) = calls.iter_mut().find(|c| c.call_id == call_id) {
                c.state = state.into();
            }
        };
        match update {
            CallUpdate::Incoming(info) => {
                self.calls.push(m::CallStatus::new(call_id.clone(), "inbound", "incoming", info.from.clone()));
                self.emit(ev::CALL_INCOMING, *info);
            }
            CallUpdate::Started { remote } => {
                self.emit(ev::CALL_STARTED, ev::CallStarted { call_id, direction: "outbound".into(), remote });
            }
            CallUpdate::Progress { code } => {
                set_state(&mut self.calls, "ringing");
                self.emit(ev::CALL_IN_PROGRESS, ev::CallInProgress { call_id, sip_code: code });
            }
            CallUpdate::Answered { codec } => {
                if let Some(c) = self.calls.iter_mut().find(|c| c.call_id == call_id) {
                    c.codec = codec.clone();
                    c.state = "connecting".into();
                }
                self.emit(ev::CALL_ANSWERED, ev::CallAnswered { call_id, codec });
            }
            CallUpdate::Confirmed => {
                set_state(&mut self.calls, "connected");
                self.emit(ev::CALL_CONFIRMED, ev::CallEvent { call_id });
            }
            CallUpdate::Hold { local, held, peer_direction } => {
                if let Some(c) = self.calls.iter_mut().find(|c| c.call_id == call_id) {
                    let (mut l, mut r) = match c.hold.as_deref() {
                        Some("local") => (true, false),
                        Some("remote") => (false, true),
                        Some("both") => (true, true),
                        _ => (false, false),
                    };
                    if local {
                        l = held
                    } else {
                        r = held
                    }
                    c.hold = match (l, r) {
                        (true, true) => Some("both".into()),
                        (true, false) => Some("local".into()),
                        (false, true) => Some("remote".into()),
                        (false, false) => None,
                    };
                }
                let name = if held { ev::CALL_HELD } else { ev::CALL_RESUMED };
                let by = if local { "local" } else { "remote" };
                self.emit(name, ev::CallHeld { call_id, by: by.into(), peer_direction });
            }
            CallUpdate::HoldFailed { code } => {
                self.emit(
                    ev::PHONE_ERROR,
                    ev::PhoneError {
                        error: "hold-failed".into(),
                        message: format!("hold or resume refused with {code}"),
                        sip_code: Some(code),
                        call_id: Some(call_id),
                    },
                );
            }
            CallUpdate::Transferred { new_call_id, target } => {
                self.calls.push(m::CallStatus::new(new_call_id.clone(), "outbound", "calling", target.clone()));
                self.emit(ev::CALL_TRANSFERRED, ev::CallTransferred { call_id, new_call_id, target });
            }
            CallUpdate::TransferStarted => self.emit(ev::CALL_TRANSFER_STARTED, ev::CallEvent { call_id }),
            CallUpdate::TransferSucceeded => self.emit(ev::CALL_TRANSFER_SUCCESS, ev::CallEvent { call_id }),
            CallUpdate::TransferFailed { code } => {
                self.emit(ev::CALL_TRANSFER_CANCEL, ev::CallTransferCancel { call_id, sip_code: code });
            }
            CallUpdate::AudioDevice { direction, device, reason } => {
                self.emit(
                    ev::CALL_AUDIO_DEVICE_CHANGED,
                    ev::CallAudioDeviceChanged { call_id, direction: direction.into(), device, reason: reason.into() },
                );
            }
            CallUpdate::Quality(stats) => {
                if self.calls.iter().any(|c| c.call_id == call_id) {
                    self.emit(ev::QUALITY_REPORT, &*stats);
                    self.call_stats.insert(call_id, *stats);
                }
            }
            CallUpdate::Dtmf { digit, method } => {
                self.emit(ev::CALL_DTMF, ev::CallDtmf { call_id, digit: digit.to_string(), method: method.into() });
            }
            CallUpdate::Ended { reason, sip_code, message } => {
                self.calls.retain(|c| c.call_id != call_id);
                if let Some(last) = self.call_stats.remove(&call_id) {
                    tracing::info!(
                        call_id,
                        codec = %last.codec,
                        received = last.packets_received,
                        lost = last.packets_lost,
                        jitter_ms = format!("{:.1}", last.jitter_ms),
                        mos = last.mos,
                        "call quality summary"
                    );
                }
                self.consultations.retain(|(t, c)| *t != call_id && *c != call_id);
                self.emit(ev::CALL_ENDED, ev::CallEnded { call_id, reason, sip_code, message });
            }
        }
    }

    // ----- events -----

    /// The next event for every client, oldest first.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn emit(&mut self, name: &str, data: impl Serialize) {
        self.events.push_back(Event::new(name, data));
    }

    fn write_state(&mut self, account: Option<RememberedAccount>) {
        if let Err(e) = (StateFile { account }).write(&self.profile.state_file) {
            tracing::error!(file = %self.profile.state_file.display(), error = %e, "cannot write the state file");
        }
    }
}

fn state_name(state: &RegistrationState) -> &'static str {
    match state {
        RegistrationState::Unregistered => "unregistered",
        RegistrationState::Registering => "registering",
        RegistrationState::Registered { .. } => "registered",
        RegistrationState::Unregistering => "unregistering",
        RegistrationState::Failed(_) => "failed",
    }
}

fn lost_or_failed(was: &m::RegistrationStatus) -> &'static str {
    if was.state == "registered" { "connection-lost" } else { "connection-failed" }
}

fn to_value(v: impl Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))
}

fn config_error(e: ConfigError) -> ApiError {
    let code = match &e {
        ConfigError::Locked { .. } => ErrorCode::PolicyLocked,
        ConfigError::UnknownKey { .. } => ErrorCode::UnknownConfigKey,
        ConfigError::InvalidValue { .. } | ConfigError::Invalid(_) => ErrorCode::InvalidConfigValue,
        ConfigError::Read { .. } | ConfigError::Write { .. } => ErrorCode::Io,
    };
    let data = match &e {
        ConfigError::Locked { key, .. } | ConfigError::UnknownKey { key } | ConfigError::InvalidValue { key, .. } => {
            Some(json!({ "key": key }))
        }
        _ => None,
    };
    let err = ApiError::new(code, e.to_string());
    match data {
        Some(d) => err.with_data(d),
        None => err,
    }
}

fn credential_error(e: CredentialError) -> ApiError {
    ApiError::new(ErrorCode::KeyringUnavailable, e.to_string())
}
