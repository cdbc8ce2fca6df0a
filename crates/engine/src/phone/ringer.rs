//! The ring of an inbound call, on its own devices: the configured ringer(s)
//! (`audio.ringer`), every output device (`audio.ring_on_all_devices`), or
//! the speaker. A ring tone file (`audio.ringtone`: WAV, MP3, Ogg Vorbis or FLAC) or the
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
        // Decoding a minute of MP3 takes a while: not on the runtime's threads.
        let file = config.audio.ringtone.clone();
        let tone = match tokio::task::spawn_blocking(move || file.as_deref().map(read_tone)).await {
            Ok(Some(Ok(t))) => t,
            Ok(Some(Err(e))) => {
                tracing::warn!(error = %e, "ring tone file unusable; ringing with the built-in tone");
                built_in_tone()
            }
            _ => built_in_tone(),
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
        tracing::info!(devices = ?outputs.iter().map(|p| p.speaker.device.clone()).collect::<Vec<_>>(), "ringing");
        // A device that would not take the tone's rate plays it converted.
        let tones: Vec<Vec<i16>> = outputs.iter().map(|p| converted(&tone, RATE, p.speaker.rate)).collect();
        // Each device plays the tone in a loop, kept 100 ms ahead of its sound card.
        let mut positions = vec![0usize; outputs.len()];
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            for ((p, pos), tone) in outputs.iter_mut().zip(positions.iter_mut()).zip(&tones) {
                let queued = p.samples.buffer().capacity() - p.samples.slots();
                for _ in queued..p.speaker.rate as usize / 10 {
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

/// `tone` at `from` Hz converted to `to` Hz.
fn converted(tone: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to {
        return tone.to_vec();
    }
    let Ok(mut r) = agent_helper_media::resample::Resampler::new(from, to) else { return tone.to_vec() };
    let mut out = Vec::with_capacity(tone.len() * to as usize / from as usize + to as usize);
    r.process(tone, &mut out);
    // The tail still in the converter, then just the tone's length: it
    // loops, and its cadence stays as long as it was.
    r.process(&vec![0; from as usize / 10], &mut out);
    out.truncate((tone.len() as u64 * u64::from(to) / u64::from(from)) as usize);
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

/// A ring tone from a sound file (WAV, MP3, Ogg Vorbis or FLAC; any rate,
/// the channels mixed), at [`RATE`]; at most a minute of it.
fn read_tone(path: &Path) -> Result<Vec<i16>, String> {
    let sound = agent_helper_media::sound_file::read_mono(path, 60)?;
    Ok(converted(&sound.samples, sound.rate, RATE))
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
    fn wav_tones_are_read_at_the_ringers_rate_and_bad_files_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tone.wav");
        // 8 kHz stereo 16-bit, 0.5 s of 1 kHz on the left and silence on the right.
        let mut wav = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        wav.extend_from_slice(&16u32.to_le_bytes());
        wav.extend_from_slice(&[1, 0, 2, 0]);
        wav.extend_from_slice(&8000u32.to_le_bytes());
        wav.extend_from_slice(&32000u32.to_le_bytes());
        wav.extend_from_slice(&[4, 0, 16, 0]);
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&16000u32.to_le_bytes());
        for i in 0..4000 {
            let left = (16000.0 * (2.0 * std::f64::consts::PI * 1000.0 * f64::from(i) / 8000.0).sin()) as i16;
            wav.extend_from_slice(&left.to_le_bytes());
            wav.extend_from_slice(&0i16.to_le_bytes());
        }
        std::fs::write(&path, &wav).unwrap();
        let tone = read_tone(&path).unwrap();
        assert!((7900..8300).contains(&tone.len()), "0.5 s at 16 kHz: {}", tone.len());
        // The channels mixed: half the left's level (RMS 16000 / √2 / 2).
        let middle = &tone[2000..6000];
        let rms = (middle.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / middle.len() as f64).sqrt();
        assert!((5000.0..6300.0).contains(&rms), "RMS {rms}");
        // Still 1 kHz: 16 samples a period at 16 kHz, two zero crossings each.
        let crossings = middle.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!((490..510).contains(&crossings), "{crossings} crossings in 0.25 s");
        for bad in [&b"not a wav"[..], &wav[..60]] {
            std::fs::write(&path, bad).unwrap();
            assert!(read_tone(&path).is_err(), "{} bytes", bad.len());
        }
        assert!(read_tone(&dir.path().join("missing.wav")).is_err());
    }
}
