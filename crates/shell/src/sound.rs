//! The settings window's sound checks: a test tone on one output device, and
//! the microphone's level for the meter. Both block; the shell runs them on a
//! blocking thread.

use std::time::{Duration, Instant};

use agent_helper_audio::{AudioError, open_capture, open_playback};

const RATE: u32 = 16_000;
pub const TONE_MS: u32 = 1000;

/// Plays a 1 kHz beep-beep (two 400 ms tones) on `device` and returns once
/// the card has taken it.
pub fn play_test_tone(device: &str) -> Result<String, AudioError> {
    let mut out = open_playback(Some(device), RATE, false)?;
    let rate = out.rate as usize;
    let total = rate * TONE_MS as usize / 1000;
    let (on_len, ramp_len) = (rate * 2 / 5, rate / 200);
    let tone = (0..total).map(move |i| {
        // 400 ms on, 100 ms off, with 5 ms ramps so it does not click.
        let t = i % (rate / 2);
        if t >= on_len {
            return 0;
        }
        let ramp = (t.min(on_len - t) as f32 / ramp_len as f32).min(1.0);
        let s = (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / rate as f32).sin();
        (s * ramp * 8000.0) as i16
    });
    let deadline = Instant::now() + Duration::from_millis(u64::from(TONE_MS) * 3);
    let mut tone = tone.peekable();
    while tone.peek().is_some() {
        if out.failed() || Instant::now() > deadline {
            return Err(AudioError::Device { device: out.device.clone(), message: "stopped taking audio".into() });
        }
        let room = out.samples.slots();
        for _ in 0..room {
            match tone.next() {
                Some(s) => {
                    let _ = out.samples.push(s);
                }
                None => break,
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Let the ring run out before the stream closes.
    while out.samples.slots() < out.samples.buffer().capacity() && !out.failed() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(out.device.clone())
}

/// Peak level of `device` (`None` = default microphone) over `window`, dBFS.
pub fn mic_peak(device: Option<&str>, window: Duration) -> Result<f32, AudioError> {
    let mut input = open_capture(device, RATE, false)?;
    let until = Instant::now() + window;
    let mut peak = 0u16;
    while Instant::now() < until {
        while let Ok(s) = input.samples.pop() {
            peak = peak.max(s.unsigned_abs());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(if peak == 0 { -100.0 } else { 20.0 * (f32::from(peak) / 32768.0).log10() })
}
