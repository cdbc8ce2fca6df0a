//! Calls between the helper and a real baresip through kamailio, driven
//! through the local API as the Agent Desktop would.
#![cfg(unix)]

mod support;

use serde_json::json;
use support::baresip::Baresip;
use support::kamailio::Kamailio;
use support::*;

const PASSWORD: &str = "kam-secret-7";

struct Rig {
    k: Kamailio,
    helper: Helper,
    conn: Conn,
    _dir: tempfile::TempDir,
}

fn rig() -> Rig {
    rig_with("")
}

/// A helper registered as agent1; `extra` is appended to its config.toml.
fn rig_with(extra: &str) -> Rig {
    rig_as("agent1", extra)
}

/// A helper registered as `user`; `extra` is appended to its config.toml.
fn rig_as(user: &str, extra: &str) -> Rig {
    let k = Kamailio::start(PASSWORD);
    let (helper, conn, dir) = helper_on(&k, user, extra);
    Rig { k, helper, conn, _dir: dir }
}

/// Another helper, registered as `user` with the same kamailio.
fn helper_on(k: &Kamailio, user: &str, extra: &str) -> (Helper, Conn, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            "[sip]\ndomain = \"127.0.0.1\"\nservers = [{{ host = \"127.0.0.1\", port = {}, transport = \"udp\" }}]\n\n[codecs]\nallow = [\"pcmu\", \"pcma\"]\n{extra}",
            k.port
        ),
    )
    .unwrap();
    let helper = Helper::start(dir.path());
    let mut conn = helper.connect();
    conn.request("hello", json!({"client": "calls-test"}));
    conn.request("login", json!({"username": user, "password": PASSWORD}));
    loop {
        if conn.event("registration-changed")["state"] == "registered" {
            break;
        }
    }
    (helper, conn, dir)
}

#[test]
fn helper_calls_baresip_which_answers_then_the_helper_hangs_up() {
    let mut r = rig();
    let mut bob = Baresip::start("bob", r.k.port, PASSWORD, true);
    let out = r.conn.request("call", json!({"target": "bob", "headers": {"X-Campaign": "spring"}}));
    let call_id = out["result"]["callId"].as_str().unwrap().to_owned();
    let started = r.conn.event("call-started");
    assert_eq!(started["callId"], call_id.as_str());
    let answered = r.conn.event("call-answered");
    assert_eq!(answered["codec"], "PCMU/8000");
    r.conn.event("call-confirmed");
    let established = bob.wait_event("CALL_ESTABLISHED");
    assert!(established["peeruri"].as_str().unwrap().contains("agent1"), "{established}");
    let status = r.conn.request("getStatus", json!({}));
    assert_eq!(status["result"]["calls"][0]["state"], "connected", "{status}");

    r.conn.request("endCall", json!({"callId": call_id}));
    let ended = r.conn.event("call-ended");
    assert_eq!(ended["reason"], "local-hangup");
    bob.wait_event("CALL_CLOSED");
    assert!(r.k.registers().len() >= 2);
    let _ = &r.helper;
}

#[test]
fn baresip_calls_the_helper_which_answers_and_baresip_hangs_up() {
    let mut r = rig();
    let mut bob = Baresip::start("bob", r.k.port, PASSWORD, false);
    bob.command("dial", &format!("sip:agent1@127.0.0.1:{}", r.k.port));
    let incoming = r.conn.event("call-incoming");
    assert!(incoming["from"].as_str().unwrap().starts_with("sip:bob@"), "{incoming}");
    let call_id = incoming["callId"].as_str().unwrap().to_owned();
    r.conn.request("answerCall", json!({}));
    r.conn.event("call-confirmed");
    bob.wait_event("CALL_ESTABLISHED");

    bob.command("hangup", "");
    let ended = r.conn.event("call-ended");
    assert_eq!((ended["callId"].as_str(), ended["reason"].as_str()), (Some(call_id.as_str()), Some("remote-hangup")));
    let status = r.conn.request("getStatus", json!({}));
    assert_eq!(status["result"]["calls"], json!([]));
}

#[test]
fn the_helper_rejects_an_inbound_call_and_baresip_sees_busy() {
    let mut r = rig();
    let mut bob = Baresip::start("bob", r.k.port, PASSWORD, false);
    bob.command("dial", &format!("sip:agent1@127.0.0.1:{}", r.k.port));
    r.conn.event("call-incoming");
    r.conn.request("rejectCall", json!({"code": 486}));
    let ended = r.conn.event("call-ended");
    assert_eq!((ended["reason"].as_str(), ended["sipCode"].as_u64()), (Some("rejected"), Some(486)));
    let closed = bob.wait_event("CALL_CLOSED");
    assert!(closed["param"].as_str().unwrap_or_default().contains("486"), "{closed}");
}

#[test]
fn calling_someone_who_is_not_registered_ends_with_404() {
    let mut r = rig();
    r.conn.request("call", json!({"target": "nobody"}));
    let ended = r.conn.event("call-ended");
    assert_eq!((ended["reason"].as_str(), ended["sipCode"].as_u64()), (Some("rejected"), Some(404)));
}

#[test]
fn bad_call_requests_are_clear_errors() {
    let mut r = rig();
    for (params, code) in [
        (json!({"target": "bob smith"}), "invalid-params"),
        (json!({"target": "bob", "headers": {"Via": "x"}}), "invalid-params"),
        (json!({"target": "bob", "headers": {"X-A": "1\r\nVia: evil"}}), "invalid-params"),
    ] {
        let r2 = r.conn.request("call", params.clone());
        assert_eq!(r2["error"]["code"], code, "{params}: {r2}");
    }
    assert_eq!(r.conn.request("answerCall", json!({}))["error"]["code"], "no-such-call");
    assert_eq!(r.conn.request("endCall", json!({"callId": "o-99"}))["error"]["code"], "no-such-call");
}

#[test]
fn auto_answer_from_config_answers_an_inbound_call_by_itself() {
    let mut r = rig_with("\n[calls]\nauto_answer = true\nauto_answer_delay = 0\n");
    let mut bob = Baresip::start("bob", r.k.port, PASSWORD, false);
    bob.command("dial", &format!("sip:agent1@127.0.0.1:{}", r.k.port));
    r.conn.event("call-incoming");
    r.conn.event("call-confirmed");
    bob.wait_event("CALL_ESTABLISHED");
}

#[test]
fn dtmf_sent_by_sip_info_reaches_baresip() {
    let mut r = rig_with("[dtmf]\nmode = \"info\"\n");
    let mut bob = Baresip::start("bob", r.k.port, PASSWORD, true);
    let call_id = r.conn.request("call", json!({"target": "bob"}))["result"]["callId"].as_str().unwrap().to_owned();
    r.conn.event("call-confirmed");
    bob.wait_event("CALL_ESTABLISHED");
    let sent =
        r.conn.request("sendDtmf", json!({"callId": call_id, "tones": "19#", "duration": 60, "interToneGap": 40}));
    assert_eq!(sent["result"]["method"], "info", "{sent}");
    let mut digits = String::new();
    while digits.len() < 3 {
        digits.push_str(bob.wait_event("CALL_DTMF_START")["param"].as_str().unwrap());
    }
    assert_eq!(digits, "19#");
    for (params, what) in [
        (json!({"tones": "12x"}), "bad digit"),
        (json!({"tones": "1", "duration": 10}), "short tone"),
        (json!({"tones": "1", "interToneGap": 5}), "short gap"),
        (json!({"tones": ""}), "empty"),
    ] {
        assert_eq!(r.conn.request("sendDtmf", params)["error"]["code"], "invalid-params", "{what}");
    }
}

#[test]
fn hold_and_resume_with_baresip_in_both_directions() {
    let mut r = rig();
    let mut bob = Baresip::start("bob", r.k.port, PASSWORD, true);
    let call_id = r.conn.request("call", json!({"target": "bob"}))["result"]["callId"].as_str().unwrap().to_owned();
    r.conn.event("call-confirmed");
    bob.wait_event("CALL_ESTABLISHED");

    r.conn.request("holdCall", json!({"callId": call_id}));
    let held = r.conn.event("call-held");
    assert_eq!((held["by"].as_str(), held["peerDirection"].as_str()), (Some("local"), Some("recvonly")), "{held}");
    assert_eq!(bob.wait_event("CALL_REMOTE_SDP")["param"], "offer");
    let status = r.conn.request("getStatus", json!({}));
    assert_eq!(status["result"]["calls"][0]["hold"], "local");
    r.conn.request("resumeCall", json!({}));
    let resumed = r.conn.event("call-resumed");
    assert_eq!((resumed["by"].as_str(), resumed["peerDirection"].as_str()), (Some("local"), Some("sendrecv")));

    // baresip holds the helper, then resumes.
    bob.command("hold", "");
    assert_eq!(r.conn.event("call-held")["by"], "remote");
    bob.command("resume", "");
    assert_eq!(r.conn.event("call-resumed")["by"], "remote");
    let status = r.conn.request("getStatus", json!({}));
    assert!(status["result"]["calls"][0].get("hold").is_none(), "{status}");

    // calls.avoid_two_way_hold (on by default): held by baresip, the agent
    // cannot hold back; holding baresip when it holds us releases our hold.
    bob.command("hold", "");
    assert_eq!(r.conn.event("call-held")["by"], "remote");
    let refused = r.conn.request("holdCall", json!({}));
    assert_eq!(refused["error"]["code"], "invalid-params", "{refused}");
    bob.command("resume", "");
    assert_eq!(r.conn.event("call-resumed")["by"], "remote");
    r.conn.request("holdCall", json!({}));
    assert_eq!(r.conn.event("call-held")["by"], "local");
    bob.command("hold", "");
    let (mut released, mut held_by_bob) = (false, false);
    while !(released && held_by_bob) {
        match r.conn.next_event() {
            (name, data) if name == "call-resumed" && data["by"] == "local" => released = true,
            (name, data) if name == "call-held" && data["by"] == "remote" => held_by_bob = true,
            _ => {}
        }
    }
    let status = r.conn.request("getStatus", json!({}));
    assert_eq!(status["result"]["calls"][0]["hold"], "remote", "{status}");
}

#[test]
fn blind_transfer_of_baresip_to_a_second_baresip() {
    let mut r = rig();
    let mut bob = Baresip::start("bob", r.k.port, PASSWORD, true);
    let mut carol = Baresip::start("carol", r.k.port, PASSWORD, true);
    let call_id = r.conn.request("call", json!({"target": "bob"}))["result"]["callId"].as_str().unwrap().to_owned();
    r.conn.event("call-confirmed");
    bob.wait_event("CALL_ESTABLISHED");

    let t = r.conn.request("transferCall", json!({"callId": call_id, "type": "direct", "target": "carol"}));
    assert!(t.get("result").is_some(), "{t}");
    r.conn.event("call-transfer-started");
    let established = carol.wait_event("CALL_ESTABLISHED");
    assert!(established["peeruri"].as_str().unwrap().contains("bob"), "carol talks to bob: {established}");
    r.conn.event("call-transfer-success");
    let ended = r.conn.event("call-ended");
    assert_eq!(ended["reason"], "transferred");
    let confirm = r.conn.request("confirmTransfer", json!({}));
    assert_eq!(confirm["error"]["code"], "no-such-call", "no consultation under way: {confirm}");
}

/// Sends one request through kamailio to the helper and returns the final response's first line and text.
fn ask_through_proxy(k: &Kamailio, method: &str, extra: &str, body: &str) -> String {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let me = sock.local_addr().unwrap();
    let msg = format!(
        "{method} sip:agent1@127.0.0.1:{p} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKprobe{n}\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@127.0.0.1>;tag=pr\r\nTo: <sip:agent1@127.0.0.1>\r\nCall-ID: probe-{n}@test\r\nCSeq: 1 {method}\r\n\
         Contact: <sip:probe@{me}>\r\n{extra}Content-Length: {len}\r\n\r\n{body}",
        p = k.port,
        n = extra.len() + body.len(),
        len = body.len()
    );
    sock.send_to(msg.as_bytes(), ("127.0.0.1", k.port)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 1") {
            return text;
        }
    }
}

#[test]
fn requests_the_helper_cannot_honour_get_rfc_answers() {
    let r = rig();
    let t = ask_through_proxy(&r.k, "INVITE", "Require: foo\r\n", "");
    assert!(t.starts_with("SIP/2.0 420") && t.contains("Unsupported: foo"), "{t}");
    let t = ask_through_proxy(&r.k, "INVITE", "Content-Type: text/plain\r\n", "hello");
    assert!(t.starts_with("SIP/2.0 415") && t.contains("Accept: application/sdp"), "{t}");
    let t = ask_through_proxy(&r.k, "OPTIONS", "", "");
    assert!(t.starts_with("SIP/2.0 200"), "{t}");
    let t = ask_through_proxy(&r.k, "MESSAGE", "", "");
    assert!(t.starts_with("SIP/2.0 501"), "{t}");
    // An INVITE with an SDP offer we have no codec for.
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 18\r\n";
    let t = ask_through_proxy(&r.k, "INVITE", "Content-Type: application/sdp\r\n", sdp);
    assert!(t.starts_with("SIP/2.0 488"), "{t}");
    // The helper is still fine.
    let mut conn = r.helper.connect();
    assert_eq!(conn.request("getStatus", json!({}))["result"]["registration"]["state"], "registered");
}

#[test]
fn baresip_transfers_the_helper_to_carol() {
    let mut r = rig();
    let mut bob = Baresip::start("bob", r.k.port, PASSWORD, false);
    let mut carol = Baresip::start("carol", r.k.port, PASSWORD, true);
    bob.command("dial", "sip:agent1@127.0.0.1");
    let first = r.conn.event("call-incoming")["callId"].as_str().unwrap().to_owned();
    r.conn.request("answerCall", json!({}));
    r.conn.event("call-confirmed");
    bob.wait_event("CALL_ESTABLISHED");

    bob.command("transfer", "sip:carol@127.0.0.1");
    let transferred = r.conn.event("call-transferred");
    assert_eq!(transferred["callId"], first.as_str());
    assert_eq!(transferred["target"], "sip:carol@127.0.0.1");
    let second = transferred["newCallId"].as_str().unwrap().to_owned();
    let confirmed = r.conn.event("call-confirmed");
    assert_eq!(confirmed["callId"], second.as_str());
    assert!(carol.wait_event("CALL_ESTABLISHED")["peeruri"].as_str().unwrap().contains("agent1"));
    // bob learns of the success from our NOTIFY and leaves the first call.
    let ended = r.conn.event("call-ended");
    assert_eq!((ended["callId"].as_str(), ended["reason"].as_str()), (Some(first.as_str()), Some("remote-hangup")));
    let status = r.conn.request("getStatus", json!({}));
    let calls = status["result"]["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{status}");
    assert_eq!((calls[0]["callId"].as_str(), calls[0]["state"].as_str()), (Some(second.as_str()), Some("connected")));
}

#[test]
fn a_proxy_challenge_to_our_invite_is_answered_with_credentials() {
    let mut r = rig_as("auth-agent", "");
    let mut bob = Baresip::start("bob", r.k.port, PASSWORD, true);
    r.conn.request("call", json!({"target": "bob"}));
    r.conn.event("call-confirmed");
    bob.wait_event("CALL_ESTABLISHED");
    let log = std::fs::read_to_string(&r.k.log).unwrap();
    assert_eq!(log.matches("AH-CHALLENGE INVITE from=auth-agent").count(), 1, "challenged once");
    assert_eq!(log.matches("AH-CALL INVITE from=auth-agent").count(), 1, "then let through");
}

/// The next `call-ended` events for each of `ids`, whatever their order.
fn ended(conn: &mut Conn, ids: &[&str]) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < ids.len() {
        let e = conn.event("call-ended");
        let id = e["callId"].as_str().unwrap().to_owned();
        if ids.contains(&id.as_str()) {
            seen.insert(id, e);
        }
    }
    seen
}

#[test]
fn consulted_transfer_among_three_helpers_replaces_the_consultation() {
    // alice (agent1) talks to bob (agent2), consults carol (agent3), then
    // hands bob over: bob calls carol with Replaces, carol swaps the calls.
    let mut alice = rig_as("agent1", "");
    let (_bob_helper, mut bob, _bob_dir) = helper_on(&alice.k, "agent2", "");
    let (_carol_helper, mut carol, _carol_dir) = helper_on(&alice.k, "agent3", "");

    let a_bob =
        alice.conn.request("call", json!({"target": "agent2"}))["result"]["callId"].as_str().unwrap().to_owned();
    let b_alice = bob.event("call-incoming")["callId"].as_str().unwrap().to_owned();
    bob.request("answerCall", json!({}));
    alice.conn.event("call-confirmed");

    let out = alice.conn.request("transferCall", json!({"callId": a_bob, "type": "consulted", "target": "agent3"}));
    let a_carol = out["result"]["consultCallId"].as_str().expect("consultCallId").to_owned();
    let held = alice.conn.event("call-held");
    assert_eq!((held["callId"].as_str(), held["by"].as_str()), (Some(a_bob.as_str()), Some("local")));
    let c_alice = carol.event("call-incoming")["callId"].as_str().unwrap().to_owned();
    carol.request("answerCall", json!({}));
    loop {
        if alice.conn.event("call-confirmed")["callId"] == a_carol.as_str() {
            break;
        }
    }
    assert_eq!(bob.event("call-held")["by"], "remote");

    let out = alice.conn.request("confirmTransfer", json!({}));
    assert_eq!(out["result"]["consultCallId"], a_carol.as_str(), "{out}");
    // Success, and both of alice's calls end (carol may end hers first).
    let (mut success, mut gone) = (None, std::collections::BTreeMap::new());
    while success.is_none() || gone.len() < 2 {
        match alice.conn.next_event() {
            (name, data) if name == "call-transfer-success" => success = Some(data),
            (name, data) if name == "call-ended" => {
                gone.insert(data["callId"].as_str().unwrap().to_owned(), data);
            }
            _ => {}
        }
    }
    assert_eq!(success.unwrap()["callId"], a_bob.as_str());
    assert_eq!(gone[&a_bob]["reason"], "transferred");
    assert!(gone.contains_key(&a_carol), "{gone:?}");

    // bob was asked to call carol in alice's place …
    let moved = bob.event("call-transferred");
    assert_eq!(moved["callId"], b_alice.as_str());
    let b_carol = moved["newCallId"].as_str().unwrap().to_owned();
    // … and carol's new call took the consultation's place, answered at once.
    let incoming = carol.event("call-incoming");
    assert_eq!(incoming["replacesCallId"], c_alice.as_str(), "{incoming}");
    let c_bob = incoming["callId"].as_str().unwrap().to_owned();
    assert_eq!(ended(&mut carol, &[&c_alice])[&c_alice]["reason"], "replaced");
    loop {
        if carol.event("call-confirmed")["callId"] == c_bob.as_str() {
            break;
        }
    }
    loop {
        if bob.event("call-confirmed")["callId"] == b_carol.as_str() {
            break;
        }
    }
    assert_eq!(ended(&mut bob, &[&b_alice])[&b_alice]["reason"], "remote-hangup");

    for (conn, id) in [(&mut bob, &b_carol), (&mut carol, &c_bob)] {
        let status = conn.request("getStatus", json!({}));
        let calls = status["result"]["calls"].as_array().unwrap();
        assert_eq!(calls.len(), 1, "{status}");
        assert_eq!((calls[0]["callId"].as_str(), calls[0]["state"].as_str()), (Some(id.as_str()), Some("connected")));
    }
    bob.request("endCall", json!({}));
    assert_eq!(ended(&mut carol, &[&c_bob])[&c_bob]["reason"], "remote-hangup");
}

#[test]
fn consulted_transfer_of_baresip_to_a_second_baresip() {
    // The helper talks to baresip bob, consults baresip carol and hands bob
    // over. baresip 1.0 does not do Replaces (it puts the Refer-To headers in
    // its To and sends no Replaces header), so carol gets bob as a new call;
    // the helper then ends its consultation with carol itself (RFC 5589 §7.2).
    let mut r = rig();
    let mut bob = Baresip::start("bob", r.k.port, PASSWORD, true);
    let mut carol = Baresip::start("carol", r.k.port, PASSWORD, true);
    let a_bob = r.conn.request("call", json!({"target": "bob"}))["result"]["callId"].as_str().unwrap().to_owned();
    r.conn.event("call-confirmed");
    bob.wait_event("CALL_ESTABLISHED");

    let out = r.conn.request("transferCall", json!({"callId": a_bob, "type": "consulted", "target": "carol"}));
    let a_carol = out["result"]["consultCallId"].as_str().expect("consultCallId").to_owned();
    // bob's hold and carol's answer race each other (carol answers by herself).
    let (mut held, mut consulting) = (false, false);
    while !(held && consulting) {
        match r.conn.next_event() {
            (name, data) if name == "call-held" => held |= data["callId"] == a_bob.as_str(),
            (name, data) if name == "call-confirmed" => consulting |= data["callId"] == a_carol.as_str(),
            _ => {}
        }
    }
    let first = carol.wait_event("CALL_ESTABLISHED");
    assert!(first["peeruri"].as_str().unwrap().contains("agent1"), "{first}");

    r.conn.request("confirmTransfer", json!({}));
    let established = carol.wait_event("CALL_ESTABLISHED");
    assert!(established["peeruri"].as_str().unwrap().contains("bob"), "carol talks to bob: {established}");
    let (mut success, mut gone) = (false, std::collections::BTreeMap::new());
    while !success || gone.len() < 2 {
        match r.conn.next_event() {
            (name, _) if name == "call-transfer-success" => success = true,
            (name, data) if name == "call-ended" => {
                gone.insert(data["callId"].as_str().unwrap().to_owned(), data);
            }
            _ => {}
        }
    }
    assert_eq!(gone[&a_bob]["reason"], "transferred");
    assert_eq!(gone[&a_carol]["reason"], "local-hangup", "the helper ends the consultation: {gone:?}");
    // Carol's call with bob may close first (its tone source can run out):
    // what matters is that her call with the helper closes.
    loop {
        let closed = carol.wait_event("CALL_CLOSED");
        if closed["peeruri"].as_str().unwrap_or_default().contains("agent1") {
            break;
        }
    }
}

#[test]
fn rfc_4733_digits_reach_baresip_and_baresip_digits_arrive_as_events() {
    // dtmf.mode is "rfc4733" by default: telephone-events in the RTP stream.
    let mut r = rig();
    let mut bob = Baresip::start("bob", r.k.port, PASSWORD, true);
    let call_id = r.conn.request("call", json!({"target": "bob"}))["result"]["callId"].as_str().unwrap().to_owned();
    r.conn.event("call-confirmed");
    bob.wait_event("CALL_ESTABLISHED");
    let sent =
        r.conn.request("sendDtmf", json!({"callId": call_id, "tones": "19#", "duration": 100, "interToneGap": 70}));
    assert_eq!(sent["result"]["method"], "rfc4733", "{sent}");
    let mut digits = String::new();
    while digits.len() < 3 {
        digits.push_str(bob.wait_event("CALL_DTMF_START")["param"].as_str().unwrap());
    }
    assert_eq!(digits, "19#");

    // baresip sends RFC 4733 too (its `sndcode` command); each digit arrives once.
    for d in ["5", "*"] {
        bob.command("sndcode", d);
        let got = r.conn.event("call-dtmf");
        assert_eq!((got["digit"].as_str(), got["method"].as_str()), (Some(d), Some("rfc4733")), "{got}");
    }
}
