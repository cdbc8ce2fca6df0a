//! A helper on the private PulseAudio server, logged in and registered with
//! kamailio: what the audio, G.729 and benchmark tests start their agents as.
#![allow(dead_code)]

use std::path::Path;

use serde_json::json;

use super::pulse::Pulse;
use super::{Conn, Helper, Start};

/// kamailio's password for every user in the rigs.
pub const PASSWORD: &str = "kam-secret-7";

/// A helper registered as `user`, offering only `codec`; `sip` goes into its
/// `[sip]` section and `rest` after (`[audio]`, `[calls]` … sections).
pub fn registered(
    pulse: &Pulse,
    k: &super::kamailio::Kamailio,
    dir: &Path,
    user: &str,
    codec: &str,
    sip: &str,
    rest: &str,
) -> (Helper, Conn) {
    let config = format!(
        "[sip]\ndomain = \"127.0.0.1\"\nservers = [{{ host = \"127.0.0.1\", port = {} }}]\n{sip}[codecs]\nallow = [\"{codec}\"]\n{rest}",
        k.port
    );
    std::fs::write(dir.join("config.toml"), config).unwrap();
    let helper = Start::new(dir).env("PULSE_SERVER", pulse.server.clone()).spawn().expect("helper starts");
    let mut conn = helper.connect();
    conn.request("login", json!({"username": user, "password": PASSWORD}));
    while conn.event("registration-changed")["state"] != "registered" {}
    (helper, conn)
}

/// A helper without audio devices registered as `agent1` over UDP, offering
/// PCMU; `extra` is appended to its config.toml.
pub fn registered_udp(k: &super::kamailio::Kamailio, dir: &Path, extra: &str) -> (Helper, Conn) {
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[sip]\ndomain = \"127.0.0.1\"\nservers = [{{ host = \"127.0.0.1\", port = {}, transport = \"udp\" }}]\n[codecs]\nallow = [\"pcmu\"]\n{extra}",
            k.port
        ),
    )
    .unwrap();
    let helper = Helper::start(dir);
    let mut conn = helper.connect();
    conn.request("login", json!({"username": "agent1", "password": PASSWORD}));
    while conn.event("registration-changed")["state"] != "registered" {}
    (helper, conn)
}
