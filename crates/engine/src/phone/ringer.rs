//! The ring of an inbound call, on its own devices: the configured ringer(s)
//! (`audio.ringer`), every output device (`audio.ring_on_all_devices`), or
//! the speaker. A ring tone file (`audio.ringtone`, a 16-bit PCM WAV) or the
//! built-in tone: 425 Hz, one second on, three off (ITU-T E.180's common
//! European cadence).

use std::path::Path;
use std::time::Duration;

use agent_helper_config::Config;

/// Rate the ringer plays at (PulseAudio resamples for the device).
const RATE: u32 = 16_000;

/// Rings until dropped.
pub(super) struct Ringer {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Ringer {
    fn drop(&mut self) {
        // The streams live in the task; stopping it closes them.
        self.task.abort();
    }
}

/// The devices that ring, as stream targets (`None` = the system default).
pub(super) fn ringer_devices(config: &Config) -> Vec<Option<String>> {
    let audio = &config.audio;
    if audio.ring_on_all_devices
        && let Ok(all) = agent_helper_audio::list_devices()
    {
        let outputs: Vec<_> = all
            .into_iter()
            .filter(|d| d.direction == agent_helper_audio::Direction::Output)
            .map(|d| Some(d.id))
            .collect();
        if !outputs.is_empty() {
            return outputs;
        }
    }
    if !audio.ringer.is_empty() {
        return audio.ringer.iter().map(|d| Some(d.clone())).collect();
    }
    vec![audio.speaker.clone()]
}

pub(super) fn start(config: &Config) -> Ringer {
    let config = config.clone();
    let task = tokio::spawn(async move {
        let tone = match config.audio.ringtone.as_deref().map(read_tone) {
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "ring tone file unusable; ringing with the built-in tone");
                built_in_tone()
            }
            None => built_in_tone(),
        };
        let opened = tokio::task::spawn_blocking(move || {
            ringer_devices(&config)
                .into_iter()
                .filter_map(|d| match agent_helper_audio::open_playback(d.as_deref(), RATE, false) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::warn!(error = %e, "a ringer device cannot ring");
                        None
                    }
                })
                .collect::<Vec<_>>()
        })
        .await;
        let Ok(mut outputs) = opened else { return };
        tracing::info!(devices = ?outputs.iter().map(|p| p.device.clone()).collect::<Vec<_>>(), "ringing");
        // A device that would not take the tone's rate plays it converted.
        let tones: Vec<Vec<i16>> = outputs.iter().map(|p| at_rate(&tone, p.rate)).collect();
        // Each device plays the tone in a loop, kept 100 ms ahead of its sound card.
        let mut positions = vec![0usize; outputs.len()];
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            for ((p, pos), tone) in outputs.iter_mut().zip(positions.iter_mut()).zip(&tones) {
                let queued = p.samples.buffer().capacity() - p.samples.slots();
                for _ in queued..p.rate as usize / 10 {
                    if p.samples.push(tone[*pos]).is_err() {
                        break;
                    }
                    *pos = (*pos + 1) % tone.len();
                }
            }
        }
    });
    Ringer { task }
}

/// The tone (at [`RATE`]) at `rate`.
fn at_rate(tone: &[i16], rate: u32) -> Vec<i16> {
    if rate == RATE {
        return tone.to_vec();
    }
    let Ok(mut r) = agent_helper_media::resample::Resampler::new(RATE, rate) else { return tone.to_vec() };
    let mut out = Vec::with_capacity(tone.len() * rate as usize / RATE as usize + rate as usize);
    r.process(tone, &mut out);
    // The tail still in the converter (the tone ends in silence anyway).
    r.process(&vec![0; RATE as usize / 10], &mut out);
    out
}

/// One cadence of the built-in ring: 1 s of 425 Hz, 3 s of silence.
fn built_in_tone() -> Vec<i16> {
    let on = RATE as usize;
    let mut t: Vec<i16> = (0..on)
        .map(|i| {
            let fade = (i.min(on - i) as f32 / 160.0).min(1.0); // no clicks
            (9000.0 * fade * (2.0 * std::f32::consts::PI * 425.0 * i as f32 / RATE as f32).sin()) as i16
        })
        .collect();
    t.resize(on * 4, 0);
    t
}

/// A ring tone from a WAV file: 16-bit PCM, any rate (resampled linearly —
/// a ring tone, not speech), the first channel; at most a minute.
fn read_tone(path: &Path) -> Result<Vec<i16>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(16 * 1024 * 1024).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(format!("{}: not a WAV file", path.display()));
    }
    let (mut rate, mut channels, mut bits, mut data) = (0u32, 0u16, 0u16, None);
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]) as usize;
        let body = &bytes[at + 8..(at + 8).saturating_add(len).min(bytes.len())];
        if id == b"fmt " && body.len() >= 16 {
            let format = u16::from_le_bytes([body[0], body[1]]);
            channels = u16::from_le_bytes([body[2], body[3]]);
            rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
            bits = u16::from_le_bytes([body[14], body[15]]);
            if format != 1 {
                return Err(format!("{}: only PCM WAV files can ring", path.display()));
            }
        } else if id == b"data" {
            data = Some(body);
        }
        at += 8 + len + (len & 1);
    }
    let data = data.ok_or_else(|| format!("{}: no audio data", path.display()))?;
    if bits != 16 || channels == 0 || !(4000..=192_000).contains(&rate) {
        return Err(format!("{}: needs 16-bit PCM at 4–192 kHz", path.display()));
    }
    let frame = usize::from(channels) * 2;
    let samples: Vec<i16> =
        data.chunks_exact(frame).map(|f| i16::from_le_bytes([f[0], f[1]])).take(rate as usize * 60).collect();
    if samples.is_empty() {
        return Err(format!("{}: no audio data", path.display()));
    }
    let out_len = (samples.len() as u64 * u64::from(RATE) / u64::from(rate)).max(1) as usize;
    Ok((0..out_len)
        .map(|i| {
            let x = i as f64 * f64::from(rate) / f64::from(RATE);
            let (k, frac) = (x as usize, x.fract());
            let a = f64::from(samples[k.min(samples.len() - 1)]);
            let b = f64::from(samples[(k + 1).min(samples.len() - 1)]);
            (a + (b - a) * frac) as i16
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_tone_rings_one_second_in_four() {
        let t = built_in_tone();
        assert_eq!(t.len(), 4 * RATE as usize);
        let loud = |s: &[i16]| s.iter().any(|x| x.unsigned_abs() > 4000);
        assert!(loud(&t[..RATE as usize]));
        assert!(t[RATE as usize..].iter().all(|x| *x == 0));
    }

    #[test]
    fn wav_tones_are_read_and_bad_files_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tone.wav");
        // 8 kHz mono, 0.5 s of a rising ramp.
        let samples: Vec<i16> = (0..4000).map(|i| i as i16).collect();
        let mut wav = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        wav.extend_from_slice(&16u32.to_le_bytes());
        wav.extend_from_slice(&[1, 0, 1, 0]);
        wav.extend_from_slice(&8000u32.to_le_bytes());
        wav.extend_from_slice(&16000u32.to_le_bytes());
        wav.extend_from_slice(&[2, 0, 16, 0]);
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&8000u32.to_le_bytes());
        for s in &samples {
            wav.extend_from_slice(&s.to_le_bytes());
        }
        std::fs::write(&path, &wav).unwrap();
        let tone = read_tone(&path).unwrap();
        assert_eq!(tone.len(), 8000, "0.5 s at 16 kHz");
        assert!(tone.windows(2).all(|w| w[1] >= w[0]), "still a ramp");
        std::fs::write(&path, b"not a wav").unwrap();
        assert!(read_tone(&path).is_err());
        assert!(read_tone(&dir.path().join("missing.wav")).is_err());
    }
}
