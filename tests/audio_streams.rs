//! The call streams on a real (private) PulseAudio server: each says when
//! audio moved, so a call tops up its speaker right after the sound card
//! took some and sends a microphone frame as soon as it is whole, instead
//! of on a timer of its own (docs/decisions.md, "Streams that say when").
#![cfg(target_os = "linux")]

mod support;

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use support::pulse::Pulse;

/// Waits for the stream's next signal (a one-byte datagram), at most `within`.
fn signal(socket: &UnixDatagram, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut byte = [0u8; 1];
    loop {
        match socket.recv(&mut byte) {
            Ok(_) => return true,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                socket.set_nonblocking(false).unwrap();
                socket.set_read_timeout(Some((deadline - Instant::now()).max(Duration::from_millis(1)))).unwrap();
            }
            Err(_) => return false,
        }
    }
}

#[test]
fn speaker_and_microphone_signal_each_time_audio_moves() {
    let pulse = Pulse::start();
    // SAFETY: the only test in this binary, and no libpulse or cpal code has
    // run yet: nothing reads the environment concurrently.
    unsafe { std::env::set_var("PULSE_SERVER", &pulse.server) };

    let mut speaker = agent_helper_audio::open_playback(Some("pulseaudio:speaker2"), 8000, false).expect("speaker");
    let served = speaker.served.take().expect("a libpulse stream signals");
    // Half a second of a tone: the card takes it 10 ms at a time.
    let tone: Vec<i16> = (0..4000).map(|i| ((i as f32 * 0.3).sin() * 8000.0) as i16).collect();
    for s in &tone {
        speaker.samples.push(*s).unwrap();
    }
    let queued = || speaker.samples.buffer().capacity() - speaker.samples.slots();
    let before = queued();
    for _ in 0..5 {
        assert!(signal(&served, Duration::from_secs(5)), "the speaker signals each time the card takes audio");
    }
    // Each signal meant audio left the ring (nothing is pushed meanwhile).
    assert!(queued() < before, "{} of {before} samples still queued", queued());

    let mut mic = agent_helper_audio::open_capture(Some("pulseaudio:headset_mic"), 8000, false).expect("microphone");
    let captured = mic.captured.take().expect("a libpulse stream signals");
    // The rig's microphone hears its feed's silence: pieces still arrive.
    let mut heard = 0;
    for _ in 0..3 {
        assert!(signal(&captured, Duration::from_secs(5)), "the microphone signals each piece");
        heard += mic
            .samples
            .read_chunk(mic.samples.slots())
            .map(|c| {
                let n = c.len();
                c.commit_all();
                n
            })
            .unwrap_or(0);
    }
    // 20 ms pieces at 8 kHz: each signal came with audio in the ring.
    assert!(heard >= 3 * 160, "{heard} samples after three signals");
}
