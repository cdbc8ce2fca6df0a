//! Audio devices and call audio with a real PulseAudio server (null sinks
//! as headset, ringer and a second speaker; a microphone fed by `paplay`),
//! driven through the local API.
#![cfg(unix)]

mod support;

use serde_json::json;
use support::pulse::Pulse;
use support::*;

fn helper_with_pulse(pulse: &Pulse, dir: &std::path::Path, config: &str) -> Helper {
    std::fs::write(dir.join("config.toml"), config).unwrap();
    Start::new(dir).env("PULSE_SERVER", pulse.server.clone()).spawn().expect("helper starts")
}

#[test]
fn list_devices_shows_every_device_with_a_stable_id_and_the_defaults() {
    let pulse = Pulse::start();
    let dir = tempfile::tempdir().unwrap();
    let helper = helper_with_pulse(&pulse, dir.path(), "");
    let mut conn = helper.connect();
    let out = conn.request("listDevices", json!({}));
    let devices = out["result"]["devices"].as_array().unwrap_or_else(|| panic!("{out}")).clone();
    let find =
        |id: &str| devices.iter().find(|d| d["id"] == id).cloned().unwrap_or_else(|| panic!("{id} in {devices:?}"));
    let headset = find("pulseaudio:headset");
    assert_eq!((headset["name"].as_str(), headset["direction"].as_str()), (Some("Test_Headset"), Some("output")));
    assert_eq!(headset["default"], true);
    assert_eq!(find("pulseaudio:ringer")["default"], false);
    let mic = find("pulseaudio:headset_mic");
    assert_eq!((mic["direction"].as_str(), mic["default"].as_bool()), (Some("input"), Some(true)));
    assert!(devices.iter().all(|d| !d["id"].as_str().unwrap().ends_with(".monitor")), "monitors are not microphones");

    // A newly plugged device appears under its own id.
    pulse.plug_sink("usb_headset");
    let out = conn.request("listDevices", json!({}));
    assert!(out["result"]["devices"].as_array().unwrap().iter().any(|d| d["id"] == "pulseaudio:usb_headset"), "{out}");
}

#[test]
fn without_an_audio_system_list_devices_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), "").unwrap();
    let helper = Start::new(dir.path())
        .env("PULSE_SERVER", "unix:/nonexistent/native")
        .env("XDG_RUNTIME_DIR", dir.path().display().to_string())
        .spawn()
        .expect("helper starts");
    let mut conn = helper.connect();
    let out = conn.request("listDevices", json!({}));
    // ALSA may still list its "default" device on a machine without a sound
    // server; either way the answer is well-formed, never a hang or a crash.
    match out.get("error") {
        Some(e) => assert_eq!(e["code"], "audio-unavailable", "{out}"),
        None => assert!(out["result"]["devices"].is_array(), "{out}"),
    }
}
