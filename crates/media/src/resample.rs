//! Sample-rate conversion between a codec's rate and a sound card's, for a
//! device opened at its own rate (`audio.device_rate = "native"`; a Windows
//! or macOS shared-mode device takes only its mix rate). rubato's FFT
//! resampler: a fixed ratio, high quality, cheap. Samples go in and come out
//! in any amounts (buffered here up to one 20 ms chunk); nothing is
//! allocated after construction as long as the caller's output has room.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};

pub struct Resampler {
    fft: Fft<f32>,
    /// Input waiting for a whole chunk, and how much of it there is.
    input: Vec<f32>,
    filled: usize,
    output: Vec<f32>,
    from: u32,
    to: u32,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Resampler({} Hz → {} Hz)", self.from, self.to)
    }
}

impl Resampler {
    /// A mono converter from `from` Hz to `to` Hz, in 20 ms chunks.
    pub fn new(from: u32, to: u32) -> Result<Resampler, String> {
        if from == 0 || to == 0 || from > 384_000 || to > 384_000 {
            return Err(format!("no resampling from {from} Hz to {to} Hz"));
        }
        let chunk = (from / 50).max(1) as usize;
        let fft = Fft::<f32>::new(from as usize, to as usize, chunk, 1, FixedSync::Both).map_err(|e| e.to_string())?;
        let input = vec![0.0; fft.input_frames_max()];
        let output = vec![0.0; fft.output_frames_max()];
        Ok(Resampler { fft, input, filled: 0, output, from, to })
    }

    /// The delay the conversion adds, in output samples.
    pub fn delay(&self) -> usize {
        self.fft.output_delay()
    }

    /// Input samples still wanted before the next chunk comes out.
    pub fn wanted(&self) -> usize {
        self.fft.input_frames_next().saturating_sub(self.filled).max(1)
    }

    /// Converts `samples`, appending what comes out to `out`.
    pub fn process(&mut self, samples: &[i16], out: &mut Vec<i16>) {
        for &s in samples {
            self.input[self.filled] = f32::from(s) / 32768.0;
            self.filled += 1;
            if self.filled < self.fft.input_frames_next() {
                continue;
            }
            let (n, m) = (self.filled, self.fft.output_frames_next());
            self.filled = 0;
            let (Ok(input), Ok(mut output)) =
                (InterleavedSlice::new(&self.input[..n], 1, n), InterleavedSlice::new_mut(&mut self.output[..m], 1, m))
            else {
                continue;
            };
            if let Ok((_, written)) = self.fft.process_into_buffer(&input, &mut output, None) {
                out.extend(
                    self.output[..written].iter().map(|v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f64, seconds: f64) -> Vec<i16> {
        let n = (f64::from(rate) * seconds) as usize;
        (0..n).map(|i| (8000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin()) as i16).collect()
    }

    /// The tone's amplitude at `hz` (a single DFT bin), skipping the start.
    fn level_at(samples: &[i16], rate: u32, hz: f64) -> f64 {
        let s = &samples[samples.len() / 4..];
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &v) in s.iter().enumerate() {
            let phase = 2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate);
            re += f64::from(v) * phase.cos();
            im += f64::from(v) * phase.sin();
        }
        2.0 * (re * re + im * im).sqrt() / s.len() as f64
    }

    #[test]
    fn a_tone_keeps_its_pitch_level_and_length_across_rates() {
        for (from, to) in [(8000, 44_100), (44_100, 8000), (16_000, 48_000), (48_000, 44_100)] {
            let mut r = Resampler::new(from, to).unwrap();
            let input = tone(from, 1000.0, 1.0);
            let mut out = Vec::new();
            // Pieces of odd sizes, as a sound card hands them over.
            for piece in input.chunks(137) {
                r.process(piece, &mut out);
            }
            let expected = f64::from(to);
            assert!((out.len() as f64 - expected).abs() <= expected / 50.0 + 1.0, "{from}→{to}: {} samples", out.len());
            let level = level_at(&out, to, 1000.0);
            assert!((level - 8000.0).abs() < 400.0, "{from}→{to}: 1 kHz at {level}");
            // Nothing much anywhere else: no imaging or aliasing of note.
            let stray = level_at(&out, to, 1500.0);
            assert!(stray < 100.0, "{from}→{to}: {stray} at 1.5 kHz");
        }
    }

    #[test]
    fn what_it_still_wants_is_what_brings_out_the_next_chunk() {
        let mut r = Resampler::new(44_100, 8000).unwrap();
        let mut out = Vec::new();
        r.process(&tone(44_100, 1000.0, 0.005), &mut out);
        let wanted = r.wanted();
        assert!(out.is_empty() && wanted > 0);
        r.process(&vec![0; wanted - 1], &mut out);
        assert!(out.is_empty(), "one short of the chunk: nothing yet");
        assert_eq!(r.wanted(), 1);
        r.process(&[0], &mut out);
        assert_eq!(out.len(), 160, "a 20 ms chunk at 8 kHz");
        assert_eq!(r.wanted(), 882, "a whole chunk at 44.1 kHz again");
    }

    #[test]
    fn impossible_rates_are_an_error() {
        assert!(Resampler::new(0, 8000).is_err());
        assert!(Resampler::new(8000, 10_000_000).is_err());
    }
}
