//! Registration against an in-memory registrar that checks digest responses
//! for real, on a virtual clock.

use std::time::{Duration, Instant};

use agent_helper_sip::auth::Challenge;
use agent_helper_sip::ids::SequentialIds;
use agent_helper_sip::message::response_to;
use agent_helper_sip::registration::*;
use agent_helper_sip::transaction::Timers;
use rsip::prelude::UntypedHeader;
use rsip::{Header, Request, Response, SipMessage, StatusCode};

struct Registrar {
    password: String,
    nonces: u32,
    grant: u32,
    /// Answer the next authenticated request with `stale=true`.
    stale_once: bool,
    min_expires: Option<u32>,
    reject_with: Option<u16>,
    silent: bool,
    /// Where a NAT makes our requests appear to come from (`received`, `rport`).
    nat: Option<(&'static str, u16)>,
    seen: Vec<Request>,
}

impl Registrar {
    fn new(password: &str) -> Self {
        Registrar {
            password: password.into(),
            nonces: 0,
            grant: 120,
            stale_once: false,
            min_expires: None,
            reject_with: None,
            silent: false,
            nat: None,
            seen: vec![],
        }
    }

    fn challenge(&mut self, req: &Request, stale: bool) -> Response {
        self.nonces += 1;
        let mut r = response_to(req, StatusCode::Unauthorized, Some("reg")).unwrap();
        let stale = if stale { ", stale=true" } else { "" };
        let v = format!(r#"Digest realm="pbx", nonce="n{}", qop="auth", algorithm=MD5{stale}"#, self.nonces);
        r.headers.push(Header::WwwAuthenticate(rsip::headers::WwwAuthenticate::new(v)));
        r
    }

    fn answer(&mut self, req: Request) -> Option<Response> {
        let r = self.answer_directly(req)?;
        Some(match self.nat {
            Some((ip, port)) => behind_nat(r, ip, port),
            None => r,
        })
    }

    fn answer_directly(&mut self, req: Request) -> Option<Response> {
        self.seen.push(req.clone());
        if self.silent {
            return None;
        }
        if let Some(code) = self.reject_with {
            return Some(response_to(&req, StatusCode::from(code), Some("reg")).unwrap());
        }
        let Some(auth) = header(&req, "Authorization") else { return Some(self.challenge(&req, false)) };
        let p = |name: &str| {
            auth.split(", ")
                .find_map(|kv| kv.trim_start_matches("Digest ").strip_prefix(&format!("{name}=")))
                .map(|v| v.trim_matches('"').to_owned())
                .unwrap()
        };
        let ch = Challenge::parse(&format!(r#"Digest realm="pbx", nonce="{}", qop="auth""#, p("nonce"))).unwrap();
        let nc = u32::from_str_radix(&p("nc"), 16).unwrap();
        let expected = ch.response(&p("username"), &self.password, "REGISTER", &p("uri"), &p("cnonce"), nc);
        if expected != p("response") {
            return Some(self.challenge(&req, false));
        }
        if std::mem::take(&mut self.stale_once) {
            return Some(self.challenge(&req, true));
        }
        let expires: u32 = header(&req, "Expires").unwrap().parse().unwrap();
        if let Some(min) = self.min_expires.filter(|m| expires != 0 && expires < *m) {
            let mut r = response_to(&req, StatusCode::from(423), Some("reg")).unwrap();
            r.headers.push(Header::MinExpires(rsip::headers::MinExpires::new(min.to_string())));
            return Some(r);
        }
        let mut r = response_to(&req, StatusCode::OK, Some("reg")).unwrap();
        let contact = header(&req, "Contact").unwrap();
        // "<sip:alice@10.0.0.5:5070;transport=udp>;expires=300" → same URI, granted expiry.
        let uri = contact.split(';').next().unwrap().to_owned() + ";transport=udp>";
        let granted = if expires == 0 { 0 } else { self.grant.min(expires) };
        r.headers.push(Header::Contact(rsip::headers::Contact::new(format!("{uri};expires={granted}"))));
        Some(r)
    }

    fn authenticated(&self) -> usize {
        self.seen.iter().filter(|r| header(r, "Authorization").is_some()).count()
    }
}

/// The registrar's view of a request that crossed a NAT: the top Via gets
/// the address it really came from (RFC 3581).
fn behind_nat(mut r: Response, ip: &str, port: u16) -> Response {
    let text = r.to_string();
    let via = text.lines().find(|l| l.starts_with("Via: ")).unwrap().to_owned();
    let marked = via.replace(";rport", &format!(";received={ip};rport={port}"));
    r = Response::try_from(text.replacen(&via, &marked, 1).as_str()).unwrap();
    r
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.to_string().lines().find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
}

fn config() -> RegistrationConfig {
    RegistrationConfig {
        username: "alice".into(),
        domain: "pbx.example.com".into(),
        transport: Transport::Udp,
        local: "10.0.0.5:5070".into(),
        expires: 300,
        user_agent: "AgentHelper/test".into(),
        extra_headers: vec![("X-Site".into(), "helsinki".into())],
        reconnect_min: Duration::from_secs(2),
        reconnect_max: Duration::from_secs(8),
        timers: Timers::default(),
    }
}

/// Delivers everything the registration sends to the registrar and its
/// answers back, at `now`; returns the state changes seen.
fn pump(reg: &mut Registration, registrar: &mut Registrar, now: Instant) -> Vec<RegistrationState> {
    let mut states = vec![];
    while let Some(out) = reg.poll_output() {
        match out {
            RegistrationOutput::Transmit(SipMessage::Request(req)) => {
                if let Some(resp) = registrar.answer(req) {
                    assert!(reg.handle_response(now, resp));
                }
            }
            RegistrationOutput::Transmit(other) => panic!("unexpected {other}"),
            RegistrationOutput::StateChanged(s) => states.push(s),
            RegistrationOutput::AddressChanged(_) => {}
        }
    }
    states
}

fn advance(reg: &mut Registration, registrar: &mut Registrar, until: Instant) -> Vec<(Instant, RegistrationState)> {
    let mut seen = vec![];
    while let Some(at) = reg.poll_timeout().filter(|t| *t <= until) {
        reg.handle_timeout(at);
        seen.extend(pump(reg, registrar, at).into_iter().map(|s| (at, s)));
    }
    seen
}

#[test]
fn registers_through_a_digest_challenge_and_refreshes_before_expiry() {
    let t0 = Instant::now();
    let mut registrar = Registrar::new("right");
    let mut reg = Registration::new(config(), "right", Box::new(SequentialIds::default()));
    reg.start(t0);
    let states = pump(&mut reg, &mut registrar, t0);
    assert_eq!(states, [RegistrationState::Registering, RegistrationState::Registered { expires: 120 }]);
    assert_eq!(registrar.seen.len(), 2, "REGISTER, 401, REGISTER with credentials, 200");

    let first = registrar.seen[0].to_string();
    for needle in [
        "REGISTER sip:pbx.example.com SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK",
        ";rport",
        "From: <sip:alice@pbx.example.com>;tag=",
        "Contact: <sip:alice@10.0.0.5:5070;transport=udp>;expires=300",
        "Expires: 300",
        "X-Site: helsinki",
        "User-Agent: AgentHelper/test",
    ] {
        assert!(first.contains(needle), "{needle} missing in\n{first}");
    }

    // Refresh: granted 120 s, refreshed 30 s early, with the known nonce (one round trip).
    let seen = advance(&mut reg, &mut registrar, t0 + Duration::from_millis(89_999));
    assert_eq!(registrar.seen.len(), 2, "no refresh before 90 s");
    let seen2 = advance(&mut reg, &mut registrar, t0 + Duration::from_secs(90));
    assert!(seen.is_empty() && seen2.is_empty(), "still registered throughout: {seen:?} {seen2:?}");
    assert_eq!(registrar.seen.len(), 3);
    let refresh = registrar.seen[2].to_string();
    assert!(refresh.contains("nc=00000002") && refresh.contains("CSeq: 3 REGISTER"), "{refresh}");
    let call_ids: Vec<_> = registrar.seen.iter().map(|r| header(r, "Call-ID")).collect();
    assert!(call_ids.windows(2).all(|w| w[0] == w[1]), "one Call-ID per binding");
}

#[test]
fn a_wrong_password_stops_after_exactly_three_authenticated_attempts() {
    let t0 = Instant::now();
    let mut registrar = Registrar::new("right");
    let mut reg = Registration::new(config(), "wrong", Box::new(SequentialIds::default()));
    reg.start(t0);
    let states = pump(&mut reg, &mut registrar, t0);
    assert_eq!(states, [RegistrationState::Registering, RegistrationState::Failed(Failure::AuthFailed)]);
    assert_eq!(registrar.authenticated(), 3);
    assert_eq!(registrar.seen.len(), 4);
    // Never retried on its own, however long we wait.
    assert_eq!(advance(&mut reg, &mut registrar, t0 + Duration::from_secs(3600)), vec![]);
    assert_eq!(registrar.seen.len(), 4);

    // New credentials start over.
    reg.set_password("right");
    reg.start(t0 + Duration::from_secs(3600));
    let states = pump(&mut reg, &mut registrar, t0 + Duration::from_secs(3600));
    assert_eq!(states.last(), Some(&RegistrationState::Registered { expires: 120 }));
}

#[test]
fn a_stale_nonce_is_retried_without_counting_as_a_failure() {
    let t0 = Instant::now();
    let mut registrar = Registrar::new("right");
    registrar.stale_once = true;
    let mut reg = Registration::new(config(), "right", Box::new(SequentialIds::default()));
    reg.start(t0);
    let states = pump(&mut reg, &mut registrar, t0);
    assert_eq!(states.last(), Some(&RegistrationState::Registered { expires: 120 }));
    assert_eq!(reg.auth_failures(), 0);
    assert_eq!(registrar.seen.len(), 3);
}

#[test]
fn no_answer_fails_after_timer_f_and_retries_with_doubling_back_off() {
    let t0 = Instant::now();
    let mut registrar = Registrar::new("right");
    registrar.silent = true;
    let mut reg = Registration::new(config(), "right", Box::new(SequentialIds::default()));
    reg.start(t0);
    pump(&mut reg, &mut registrar, t0);
    let seen = advance(&mut reg, &mut registrar, t0 + Duration::from_secs(160));
    let retries: Vec<u64> =
        seen.iter().filter(|(_, s)| *s == RegistrationState::Registering).map(|(at, _)| (*at - t0).as_secs()).collect();
    // Timer F = 32 s each time; back-off 2, 4, 8, then capped at 8.
    assert_eq!(retries, [34, 70, 110, 150]);
    assert!(seen.iter().any(|(_, s)| *s == RegistrationState::Failed(Failure::Timeout)));
}

#[test]
fn interval_too_brief_raises_the_expiry() {
    let t0 = Instant::now();
    let mut registrar = Registrar::new("right");
    registrar.min_expires = Some(600);
    registrar.grant = 600;
    let mut reg = Registration::new(config(), "right", Box::new(SequentialIds::default()));
    reg.start(t0);
    let states = pump(&mut reg, &mut registrar, t0);
    assert_eq!(states.last(), Some(&RegistrationState::Registered { expires: 600 }));
    assert_eq!(header(registrar.seen.last().unwrap(), "Expires").as_deref(), Some("600"));
}

#[test]
fn rejection_is_reported_and_retried_later() {
    let t0 = Instant::now();
    let mut registrar = Registrar::new("right");
    registrar.reject_with = Some(403);
    let mut reg = Registration::new(config(), "right", Box::new(SequentialIds::default()));
    reg.start(t0);
    let states = pump(&mut reg, &mut registrar, t0);
    assert!(
        matches!(states.last(), Some(RegistrationState::Failed(Failure::Rejected { code: 403, .. }))),
        "{states:?}"
    );
    let seen = advance(&mut reg, &mut registrar, t0 + Duration::from_secs(2));
    assert_eq!(
        seen.first(),
        Some(&(t0 + Duration::from_secs(2), RegistrationState::Registering)),
        "retried after reconnect_min"
    );
}

#[test]
fn stop_removes_the_binding() {
    let t0 = Instant::now();
    let mut registrar = Registrar::new("right");
    let mut reg = Registration::new(config(), "right", Box::new(SequentialIds::default()));
    reg.start(t0);
    pump(&mut reg, &mut registrar, t0);
    reg.stop(t0 + Duration::from_secs(5));
    let states = pump(&mut reg, &mut registrar, t0 + Duration::from_secs(5));
    assert_eq!(states, [RegistrationState::Unregistering, RegistrationState::Unregistered]);
    let last = registrar.seen.last().unwrap().to_string();
    assert!(last.contains("Expires: 0") && last.contains(";expires=0") && last.contains("Authorization:"), "{last}");
    assert_eq!(advance(&mut reg, &mut registrar, t0 + Duration::from_secs(3600)), vec![]);
    assert_eq!(registrar.seen.len(), 3, "no refresh after unregistering");
}

#[test]
fn login_names_with_reserved_characters_are_escaped() {
    let t0 = Instant::now();
    let mut registrar = Registrar::new("right");
    let mut cfg = config();
    cfg.username = "agent@site one".into();
    let mut reg = Registration::new(cfg, "right", Box::new(SequentialIds::default()));
    reg.start(t0);
    let states = pump(&mut reg, &mut registrar, t0);
    assert_eq!(states.last(), Some(&RegistrationState::Registered { expires: 120 }));
    let first = registrar.seen[0].to_string();
    assert!(first.contains("From: <sip:agent%40site%20one@pbx.example.com>"), "{first}");
    // The digest username is the login as typed.
    assert!(registrar.seen[1].to_string().contains(r#"username="agent@site one""#));
}

#[test]
fn behind_a_nat_the_address_the_registrar_sees_is_registered() {
    let t0 = Instant::now();
    let mut registrar = Registrar::new("right");
    registrar.nat = Some(("203.0.113.7", 40001));
    let mut reg = Registration::new(config(), "right", Box::new(SequentialIds::default()));
    reg.start(t0);
    let mut changed = vec![];
    let mut states = vec![];
    // Pump by hand to see the address change among the outputs.
    while let Some(out) = reg.poll_output() {
        match out {
            RegistrationOutput::Transmit(SipMessage::Request(req)) => {
                if let Some(resp) = registrar.answer(req) {
                    assert!(reg.handle_response(t0, resp));
                }
            }
            RegistrationOutput::Transmit(other) => panic!("unexpected {other}"),
            RegistrationOutput::StateChanged(s) => states.push(s),
            RegistrationOutput::AddressChanged(a) => changed.push(a),
        }
    }
    assert_eq!(changed, ["203.0.113.7:40001"]);
    assert_eq!(states, [RegistrationState::Registering, RegistrationState::Registered { expires: 120 }]);
    let last = registrar.seen.last().unwrap().to_string();
    assert!(last.contains("Contact: <sip:alice@203.0.113.7:40001;transport=udp>"), "{last}");
    assert!(last.contains("Via: SIP/2.0/UDP 203.0.113.7:40001;"), "{last}");
    assert_eq!(registrar.seen.len(), 3, "REGISTER, REGISTER with credentials, REGISTER with the public contact");

    // The refresh keeps the public address and does not register again.
    advance(&mut reg, &mut registrar, t0 + Duration::from_secs(90));
    assert_eq!(registrar.seen.len(), 4);
    assert!(registrar.seen[3].to_string().contains("@203.0.113.7:40001"));
}
