//! G.729 (builds with the `g729` feature, libbcg729): helper → helper through
//! kamailio, speech into one agent's microphone scored with PESQ-NB where the
//! other agent's headset plays it. baresip 1.0 in Debian has no G.729.
//! `cargo test -p agent-helper --features g729 --test g729` (scripts/test.sh does).
#![cfg(all(unix, feature = "g729"))]

mod support;

use serde_json::json;
use support::pulse::Pulse;
use support::*;

use support::agent::PASSWORD;

fn registered(
    pulse: &Pulse,
    k: &support::kamailio::Kamailio,
    dir: &std::path::Path,
    user: &str,
    rest: &str,
) -> (Helper, Conn) {
    support::agent::registered(pulse, k, dir, user, "g729", "", rest)
}

/// G.729 (8 kbit/s CELP) does poorly on espeak's buzzy synthetic voice:
/// encoded and decoded offline with the same library, this speech scores
/// PESQ-NB 2.62 (`crates/media/examples/conceal.rs` at 0 % loss). The call
/// must not take anything measurable off that.
#[test]
fn g729_speech_helper_to_helper_scores_what_the_codec_does_offline() {
    let pulse = Pulse::start();
    let k = support::kamailio::Kamailio::start(PASSWORD);
    let speech = support::speech::Speech::make();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = "[audio]\nspeaker = \"pulseaudio:speaker2\"\nmicrophone = \"pulseaudio:headset_mic\"\n";
    let two = "[calls]\nauto_answer = true\n[audio]\nspeaker = \"pulseaudio:headset\"\nmicrophone = \"pulseaudio:headset_mic\"\n";
    let (_h1, mut c1) = registered(&pulse, &k, d1.path(), "agent1", one);
    let (_h2, mut c2) = registered(&pulse, &k, d2.path(), "agent2", two);
    let heard = d2.path().join("heard.wav");
    let recorder = pulse.record("headset.monitor", 8000, &heard);
    c1.request("call", json!({"target": "agent2"}));
    c1.event("call-confirmed");
    c2.event("call-confirmed");
    let report = c2.event("quality-report");
    assert_eq!(report["codec"], "G729/8000", "{report}");
    let mut talk = pulse.play(&speech.spoken8, "micfeed");
    wait_until("agent 1 finished speaking", || talk.try_wait().ok().flatten().is_some());
    c1.request("endCall", json!({}));
    c2.event("call-ended");
    let heard = recorder.stop();
    let score = support::speech::pesq(&speech.reference8, &heard, "nb");
    eprintln!("G.729 helper → helper: PESQ-NB {score:.3}");
    assert!(score >= 2.5, "PESQ-NB {score:.3} (the codec alone: 2.62)");
}
