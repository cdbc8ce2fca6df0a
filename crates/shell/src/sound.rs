//! The settings window's sound checks: a test tone on one output device, and
//! the microphone's level for the meter. Both block; the shell runs them on a
//! blocking thread.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_helper_audio::{AudioError, Capture, open_capture, open_playback};

const RATE: u32 = 16_000;
pub const TONE_MS: u32 = 1000;

/// Plays a 1 kHz beep-beep (two 400 ms tones) on `device` and returns once
/// the card has taken it.
pub fn play_test_tone(device: &str) -> Result<String, AudioError> {
    let mut out = open_playback(Some(device), RATE, false)?;
    let rate = out.speaker.rate as usize;
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
        if out.speaker.failed() || Instant::now() > deadline {
            return Err(AudioError::Device {
                device: out.speaker.device.clone(),
                message: "stopped taking audio".into(),
            });
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
    while out.samples.slots() < out.samples.buffer().capacity() && !out.speaker.failed() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(out.speaker.device.clone())
}

/// The settings window's microphone meter: one capture stream kept open
/// while the meter is read (ten times a second), closed once nobody has
/// read it for [`METER_IDLE`] or another microphone is asked for. Opening a
/// stream per reading cost a server connection and a thread every 100 ms.
#[derive(Clone, Default)]
pub struct MicMeter {
    state: Arc<Mutex<Meter>>,
}

/// The meter's stream closes after this long without a reading.
pub const METER_IDLE: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Meter {
    open: Option<Metering>,
    /// A thread is watching for the stream to go unread.
    watched: bool,
}

struct Metering {
    /// The device asked for (`None` = the default microphone).
    asked: Option<String>,
    capture: Capture,
    last_read: Instant,
}

impl MicMeter {
    /// Peak level of `device` (`None` = the default microphone) over the
    /// next `window`, in dBFS (−100 for silence).
    pub fn peak(&self, device: Option<&str>, window: Duration) -> Result<f32, AudioError> {
        let mut meter = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let reuse = meter.open.as_ref().is_some_and(|m| m.asked.as_deref() == device && !m.capture.failed());
        if !reuse {
            // The old stream closes before a new one takes the device.
            meter.open = None;
            let capture = open_capture(device, RATE, false)?;
            meter.open = Some(Metering { asked: device.map(str::to_owned), capture, last_read: Instant::now() });
            if !meter.watched {
                meter.watched = self.watch();
            }
        }
        let metering = meter.open.as_mut().expect("opened above");
        // What came in since the last reading is older than the window: drop it.
        let stale = metering.capture.samples.slots();
        if let Ok(chunk) = metering.capture.samples.read_chunk(stale) {
            chunk.commit_all();
        }
        let until = Instant::now() + window;
        let mut peak = 0u16;
        while Instant::now() < until {
            while let Ok(s) = metering.capture.samples.pop() {
                peak = peak.max(s.unsigned_abs());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        metering.last_read = Instant::now();
        Ok(if peak == 0 { -100.0 } else { 20.0 * (f32::from(peak) / 32768.0).log10() })
    }

    /// Starts a thread that closes the stream once it has gone unread for
    /// [`METER_IDLE`], and then ends. False when no thread could start (the
    /// stream then closes only when another device is asked for).
    fn watch(&self) -> bool {
        let state = Arc::downgrade(&self.state);
        std::thread::Builder::new()
            .name("mic-meter".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(METER_IDLE / 4);
                    let Some(state) = state.upgrade() else { return };
                    let mut meter = state.lock().unwrap_or_else(|e| e.into_inner());
                    if meter.open.as_ref().is_some_and(|m| m.last_read.elapsed() < METER_IDLE) {
                        continue;
                    }
                    meter.open = None;
                    meter.watched = false;
                    return;
                }
            })
            .map_err(|e| tracing::warn!(error = %e, "no microphone meter watcher"))
            .is_ok()
    }
}
