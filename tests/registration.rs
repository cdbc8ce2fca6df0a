//! The helper registers with a real kamailio (digest authentication) over UDP
//! and TCP, driven through the local API as the Agent Desktop would.
#![cfg(unix)]

mod support;

use serde_json::json;
use support::kamailio::Kamailio;
use support::*;

const PASSWORD: &str = "kam-secret-7";

fn helper_for(k: &Kamailio, transport: &str, dir: &std::path::Path) -> Helper {
    let (port, ca) = match (transport, &k.tls) {
        ("tls", Some((port, ca))) => (*port, format!("tls_ca_file = {:?}\n", ca.display().to_string())),
        _ => (k.port, String::new()),
    };
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[sip]\ndomain = \"127.0.0.1\"\nservers = [{{ host = \"127.0.0.1\", port = {port}, transport = \"{transport}\" }}]\nregister_expiry = 300\nreconnect_min = 1\n{ca}"
        ),
    )
    .unwrap();
    Helper::start(dir)
}

/// The next `registration-changed` whose state is `state`.
fn wait_registration(conn: &mut Conn, state: &str) -> serde_json::Value {
    loop {
        let data = conn.event("registration-changed");
        if data["state"] == state {
            return data;
        }
    }
}

fn register_and_unregister(transport: &str) {
    let k = if transport == "tls" { Kamailio::start_with_tls(PASSWORD) } else { Kamailio::start(PASSWORD) };
    let dir = tempfile::tempdir().unwrap();
    let helper = helper_for(&k, transport, dir.path());
    let mut conn = helper.connect();
    conn.request("hello", json!({"client": "test"}));
    let r = conn.request("login", json!({"username": "agent1", "password": PASSWORD}));
    assert!(r.get("result").is_some(), "{r}");

    let reg = wait_registration(&mut conn, "registered");
    let port = if transport == "tls" { k.tls.as_ref().unwrap().0 } else { k.port };
    assert_eq!(reg["server"], format!("127.0.0.1:{port}"));
    assert_eq!(reg["transport"], transport);
    assert_eq!(reg["expires"], 300);
    let status = conn.request("getStatus", json!({}));
    assert_eq!(status["result"]["registration"]["state"], "registered");
    let regs = k.registers();
    assert_eq!(regs.len(), 2, "challenge, then credentials: {regs:?}");
    assert!(regs[0].starts_with("auth=no") && regs[1].starts_with("auth=yes"), "{regs:?}");
    assert!(regs.iter().all(|r| r.contains(&format!("proto={transport}"))), "{regs:?}");

    // Logout removes the binding.
    conn.request("logout", json!({}));
    wait_registration(&mut conn, "unregistered");
    assert!(k.registers().last().unwrap().contains("expires=0"), "{:?}", k.registers());
}

#[test]
fn registers_over_udp_with_digest_auth_and_unregisters_on_logout() {
    register_and_unregister("udp");
}

#[test]
fn registers_over_tcp_with_digest_auth_and_unregisters_on_logout() {
    register_and_unregister("tcp");
}

#[test]
fn registers_over_tls_trusting_the_configured_ca() {
    register_and_unregister("tls");
}

#[test]
fn tls_to_a_server_with_an_untrusted_certificate_is_refused() {
    let k = Kamailio::start_with_tls(PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let (port, _) = k.tls.clone().unwrap();
    // No tls_ca_file: the test CA is not trusted.
    std::fs::write(
        dir.path().join("config.toml"),
        format!("[sip]\ndomain = \"127.0.0.1\"\nservers = [{{ host = \"127.0.0.1\", port = {port}, transport = \"tls\" }}]\nreconnect_min = 60\n"),
    )
    .unwrap();
    let helper = Helper::start(dir.path());
    let mut conn = helper.connect();
    conn.request("login", json!({"username": "agent4", "password": PASSWORD}));
    let err = conn.event("phone-error");
    assert_eq!(err["error"], "connection-failed", "{err}");
    assert!(err["message"].as_str().unwrap().contains("certificate"), "{err}");
    let status = conn.request("getStatus", json!({}));
    assert_eq!(status["result"]["registration"]["error"], "unreachable");
    assert!(k.registers().is_empty(), "nothing was sent over an untrusted connection: {:?}", k.registers());
}

#[test]
fn a_wrong_password_gives_auth_failed_after_exactly_three_attempts() {
    let k = Kamailio::start(PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let helper = helper_for(&k, "udp", dir.path());
    let mut conn = helper.connect();
    conn.request("hello", json!({}));
    conn.request("login", json!({"username": "agent2", "password": "not-the-password"}));
    let err = conn.event("phone-error");
    assert_eq!(err["error"], "auth-failed", "{err}");
    let status = conn.request("getStatus", json!({}));
    assert_eq!(status["result"]["registration"]["state"], "failed");
    assert_eq!(status["result"]["registration"]["error"], "auth-failed");
    let regs = k.registers();
    let with_auth = regs.iter().filter(|r| r.starts_with("auth=yes")).count();
    assert_eq!(with_auth, 3, "exactly three attempts with credentials: {regs:?}");
    assert_eq!(regs.len(), 4, "{regs:?}");

    // Logging in again with the right password recovers.
    conn.request("login", json!({"username": "agent2", "password": PASSWORD}));
    wait_registration(&mut conn, "registered");
}

#[test]
fn the_helper_unregisters_when_it_stops() {
    let k = Kamailio::start(PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let helper = helper_for(&k, "udp", dir.path());
    let mut conn = helper.connect();
    conn.request("login", json!({"username": "agent3", "password": PASSWORD}));
    wait_registration(&mut conn, "registered");
    assert!(helper.stop().success());
    let last = k.registers().last().cloned().unwrap();
    assert!(last.contains("expires=0") && last.starts_with("auth=yes"), "{:?}", k.registers());
}

/// A port nothing listens on (bound and released at once).
fn dead_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn fails_over(transport: &str) {
    let k = Kamailio::start(PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let dead = dead_port();
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            "[sip]\ndomain = \"127.0.0.1\"\nfailover = \"priority\"\nservers = [\n  {{ host = \"127.0.0.1\", port = {dead}, transport = \"{transport}\" }},\n  {{ host = \"127.0.0.1\", port = {}, transport = \"{transport}\" }},\n]\n",
            k.port
        ),
    )
    .unwrap();
    let helper = Helper::start(dir.path());
    let mut conn = helper.connect();
    conn.request("login", json!({"username": "agent5", "password": PASSWORD}));
    let err = conn.event("phone-error");
    assert_eq!(err["error"], "connection-failed", "the first server is down: {err}");
    let reg = wait_registration(&mut conn, "registered");
    assert_eq!(reg["server"], format!("127.0.0.1:{}", k.port), "registered with the second server");
}

#[test]
fn fails_over_to_the_next_server_when_the_first_refuses_tcp() {
    fails_over("tcp");
}

#[test]
fn fails_over_to_the_next_server_when_the_first_is_unreachable_over_udp() {
    fails_over("udp");
}

/// Two kamailios; the helper registers with the first, then `fail` takes it
/// away. The helper must say the connection is lost, register with the second
/// and say it is restored. Returns the seconds from `fail` to registered.
fn fails_over_from_a_running_primary(transport: &str, fail: impl FnOnce(Kamailio) -> Option<Kamailio>) -> f64 {
    let primary = Kamailio::start(PASSWORD);
    let secondary = Kamailio::start(PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            "[sip]\ndomain = \"127.0.0.1\"\nkeepalive_interval = 5\nreconnect_min = 1\nreconnect_max = 10\nservers = [\n  {{ host = \"127.0.0.1\", port = {}, transport = \"{transport}\" }},\n  {{ host = \"127.0.0.1\", port = {}, transport = \"{transport}\" }},\n]\n",
            primary.port, secondary.port
        ),
    )
    .unwrap();
    let helper = Helper::start(dir.path());
    let mut conn = helper.connect();
    conn.request("login", json!({"username": "agent6", "password": PASSWORD}));
    let reg = wait_registration(&mut conn, "registered");
    assert_eq!(reg["server"], format!("127.0.0.1:{}", primary.port));

    let failed_at = std::time::Instant::now();
    let _frozen = fail(primary);
    // Generous bounds for the reads; the measured time is reported below.
    conn.stream.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    let err = conn.event("phone-error");
    assert_eq!(err["error"], "connection-lost", "{err}");
    let reg = wait_registration(&mut conn, "registered");
    let took = failed_at.elapsed().as_secs_f64();
    assert_eq!(reg["server"], format!("127.0.0.1:{}", secondary.port), "registered with the secondary");
    let restored = conn.event("phone-error");
    assert_eq!(restored["error"], "connection-restored", "{restored}");
    assert!(secondary.registers().iter().any(|l| l.contains("user=agent6")));
    eprintln!("{transport}: registered on the secondary {took:.2} s after the primary failed");
    took
}

#[test]
fn a_stopped_primary_fails_over_to_the_secondary_over_udp() {
    // Nothing listens any more: the next keep-alive OPTIONS meets ICMP port unreachable.
    let took = fails_over_from_a_running_primary("udp", |k| {
        drop(k);
        None
    });
    assert!(took <= 5.0 + 10.0, "keep-alive interval + reconnect_max: {took:.2} s");
}

#[test]
fn a_stopped_primary_fails_over_to_the_secondary_over_tcp() {
    // The connection closes with the server.
    let took = fails_over_from_a_running_primary("tcp", |k| {
        drop(k);
        None
    });
    assert!(took <= 10.0, "reconnect_max: {took:.2} s");
}

#[test]
fn a_hung_primary_is_noticed_by_unanswered_keepalives_over_udp() {
    // The server keeps its port but answers nothing: OPTIONS times out (Timer F, 32 s).
    fails_over_from_a_running_primary("udp", |k| {
        k.freeze();
        Some(k)
    });
}

#[test]
fn a_hung_primary_is_noticed_by_missing_pongs_over_tcp() {
    // The connection stays open but the CRLF pongs stop (10 s after a ping).
    fails_over_from_a_running_primary("tcp", |k| {
        k.freeze();
        Some(k)
    });
}

#[test]
fn a_backup_server_is_registered_at_the_same_time_and_carries_calls() {
    let primary = Kamailio::start(PASSWORD);
    let backup = Kamailio::start(PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            "[sip]\ndomain = \"127.0.0.1\"\nservers = [{{ host = \"127.0.0.1\", port = {} }}]\nbackup_server = {{ host = \"127.0.0.1\", port = {}, transport = \"tcp\" }}\n",
            primary.port, backup.port
        ),
    )
    .unwrap();
    let helper = Helper::start(dir.path());
    let mut conn = helper.connect();
    conn.request("login", json!({"username": "agent7", "password": PASSWORD}));
    let backup_name = format!("127.0.0.1:{}", backup.port);
    let (mut main_ok, mut backup_ok) = (false, false);
    while !(main_ok && backup_ok) {
        let reg = conn.event("registration-changed");
        main_ok |= reg["state"] == "registered" && reg["server"] == format!("127.0.0.1:{}", primary.port);
        backup_ok |= reg["backup"] == json!({"server": backup_name, "state": "registered"});
    }
    let status = conn.request("getStatus", json!({}));
    assert_eq!(status["result"]["registration"]["backup"]["state"], "registered", "{status}");
    assert!(backup.registers().iter().any(|l| l.contains("user=agent7") && l.contains("proto=tcp")));

    // A customer whose PBX only knows the backup server still reaches the agent.
    let mut bob = support::baresip::Baresip::start("bob", backup.port, PASSWORD, false);
    bob.command("dial", "sip:agent7@127.0.0.1");
    let incoming = conn.event("call-incoming");
    assert!(incoming["from"].as_str().unwrap().contains("bob"), "{incoming}");
    conn.request("answerCall", json!({}));
    conn.event("call-confirmed");
    bob.wait_event("CALL_ESTABLISHED");
    conn.request("endCall", json!({}));
    bob.wait_event("CALL_CLOSED");

    // Logout removes both bindings (the two un-REGISTERs go out together and
    // may land in either order).
    conn.request("logout", json!({}));
    let removed = |k: &Kamailio| k.registers().iter().any(|l| l.contains("user=agent7") && l.contains("expires=0"));
    wait_until("the backup binding is removed", || removed(&backup));
    wait_until("the primary binding is removed", || removed(&primary));
}

#[test]
fn a_sips_call_between_two_helpers_stays_on_tls_and_needs_it() {
    let k = Kamailio::start_with_tls(PASSWORD);
    let (da, db, dc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b, c) =
        (helper_for(&k, "tls", da.path()), helper_for(&k, "tls", db.path()), helper_for(&k, "udp", dc.path()));
    let mut conns = Vec::new();
    for (helper, user) in [(&a, "agent8"), (&b, "agent9"), (&c, "agent10")] {
        let mut conn = helper.connect();
        conn.request("login", json!({"username": user, "password": PASSWORD}));
        wait_registration(&mut conn, "registered");
        conns.push(conn);
    }
    let [alice, bob, carol] = &mut conns[..] else { unreachable!() };

    alice.request("call", json!({"target": "sips:agent9@127.0.0.1"}));
    let incoming = bob.event("call-incoming");
    assert_eq!(incoming["to"], "sips:agent9@127.0.0.1", "{incoming}");
    assert_eq!(incoming["from"], "sips:agent8@127.0.0.1", "{incoming}");
    bob.request("answerCall", json!({}));
    alice.event("call-confirmed");
    bob.event("call-confirmed");
    alice.request("endCall", json!({}));
    assert_eq!(bob.event("call-ended")["reason"], "remote-hangup");

    // The same target from an account on UDP is refused before anything is sent.
    carol.request("call", json!({"target": "sips:agent9@127.0.0.1"}));
    let ended = carol.event("call-ended");
    assert_eq!(ended["reason"], "failed");
    assert!(ended["message"].as_str().unwrap().contains("TLS"), "{ended}");
}
