//! Packet loss concealment for codecs that have none of their own (G.711,
//! G.722), after the method of ITU-T G.711 Appendix I: the last pitch period
//! of the good signal is repeated, faded out the longer the loss lasts, and
//! the first good frame after a loss is cross-faded into the concealment.

/// History kept, in ms: enough for the longest pitch period we look for
/// plus the window it is matched over.
const HISTORY_MS: usize = 48;
/// Pitch search range (66–200 Hz fundamentals cover adult speech).
const MIN_PITCH_MS_X10: usize = 50;
const MAX_PITCH_MS_X10: usize = 150;
/// Concealment fades out after this long (G.711 I: 20 % per 10 ms after 10 ms).
const FADE_START_MS: usize = 10;
const SILENT_AFTER_MS: usize = 60;

pub struct Concealer {
    rate: usize,
    history: Vec<i16>,
    /// Samples of concealment produced in the current loss.
    concealed: usize,
    pitch: usize,
    /// Position in the repeated pitch period.
    phase: usize,
    /// The tail of the last concealment, for the cross-fade into good audio.
    tail: Vec<i16>,
}

impl Concealer {
    /// `rate` in Hz (8000 for G.711, 16000 for G.722).
    pub fn new(rate: u32) -> Concealer {
        let rate = rate as usize;
        Concealer {
            rate,
            history: Vec::with_capacity(rate * HISTORY_MS / 1000),
            concealed: 0,
            pitch: 0,
            phase: 0,
            tail: Vec::new(),
        }
    }

    fn ms(&self, ms_x10: usize) -> usize {
        self.rate * ms_x10 / 10_000
    }

    /// A good frame: remember it, and blend it with the concealment that
    /// preceded it.
    pub fn good(&mut self, frame: &mut [i16]) {
        if self.concealed > 0 && !self.tail.is_empty() {
            let n = self.tail.len().min(frame.len());
            for (i, s) in frame.iter_mut().take(n).enumerate() {
                let w = (i + 1) as f32 / (n + 1) as f32;
                *s = (f32::from(*s) * w + f32::from(self.tail[i]) * (1.0 - w)) as i16;
            }
        }
        self.concealed = 0;
        self.tail.clear();
        let cap = self.rate * HISTORY_MS / 1000;
        self.history.extend_from_slice(frame);
        if self.history.len() > cap {
            let excess = self.history.len() - cap;
            self.history.drain(..excess);
        }
    }

    /// A lost frame of `out.len()` samples: filled with concealment.
    pub fn conceal(&mut self, out: &mut [i16]) {
        if self.concealed == 0 {
            self.pitch = self.find_pitch();
            self.phase = 0;
        }
        let fade_start = self.rate * FADE_START_MS / 1000;
        let silent_after = self.rate * SILENT_AFTER_MS / 1000;
        let period_start = self.history.len().saturating_sub(self.pitch);
        for s in out.iter_mut() {
            let t = self.concealed;
            let gain = if t < fade_start {
                1.0
            } else if t >= silent_after {
                0.0
            } else {
                1.0 - (t - fade_start) as f32 / (silent_after - fade_start) as f32
            };
            let v = if self.pitch == 0 { 0 } else { self.history[period_start + self.phase] };
            *s = (f32::from(v) * gain) as i16;
            if self.pitch > 0 {
                self.phase = (self.phase + 1) % self.pitch;
            }
            self.concealed += 1;
        }
        // What the next good frame fades in from: a quarter period more.
        let n = (self.pitch / 4).max(1);
        self.tail.clear();
        for i in 0..n {
            let v = if self.pitch == 0 { 0 } else { self.history[period_start + (self.phase + i) % self.pitch] };
            self.tail.push(v);
        }
    }

    /// The lag (in samples) at which the recent signal best matches itself:
    /// normalised cross-correlation over the pitch range; 0 with no history.
    fn find_pitch(&self) -> usize {
        let (lo, hi) = (self.ms(MIN_PITCH_MS_X10), self.ms(MAX_PITCH_MS_X10));
        let window = hi;
        let h = &self.history;
        if h.len() < hi + window {
            return if h.len() >= lo { h.len().min(hi) } else { 0 };
        }
        let end = h.len();
        let target = &h[end - window..];
        let mut best = (lo, f64::MIN);
        for lag in lo..=hi {
            let cand = &h[end - window - lag..end - lag];
            let (mut xy, mut yy) = (0f64, 0f64);
            for (x, y) in target.iter().zip(cand) {
                xy += f64::from(*x) * f64::from(*y);
                yy += f64::from(*y) * f64::from(*y);
            }
            let score = if yy > 0.0 { xy / yy.sqrt() } else { 0.0 };
            if score > best.1 {
                best = (lag, score);
            }
        }
        best.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: usize, hz: f64, n: usize, start: usize) -> Vec<i16> {
        (start..start + n)
            .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64).sin()) as i16)
            .collect()
    }

    #[test]
    fn a_lost_frame_of_a_periodic_signal_is_close_to_the_real_one() {
        let mut plc = Concealer::new(8000);
        for k in 0..5 {
            let mut f = tone(8000, 200.0, 160, k * 160);
            plc.good(&mut f);
        }
        let mut lost = vec![0i16; 160];
        plc.conceal(&mut lost);
        let real = tone(8000, 200.0, 160, 5 * 160);
        let err: f64 =
            lost.iter().zip(&real).map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2)).sum::<f64>() / 160.0;
        let power: f64 = real.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>() / 160.0;
        assert!(err < power * 0.05, "concealment error {err} vs signal {power}");
    }

    #[test]
    fn long_losses_fade_to_silence_and_recovery_is_smooth() {
        let mut plc = Concealer::new(8000);
        for k in 0..5 {
            let mut f = tone(8000, 200.0, 160, k * 160);
            plc.good(&mut f);
        }
        let mut frames = vec![vec![0i16; 160]; 4];
        for f in &mut frames {
            plc.conceal(f);
        }
        assert!(frames[3].iter().all(|s| *s == 0), "silent after 60 ms");
        let peak = |f: &[i16]| f.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak(&frames[1]) < peak(&frames[0]), "fading");
        let mut good = tone(8000, 200.0, 160, 9 * 160);
        let first = good[0];
        plc.good(&mut good);
        assert!(good[0].abs() <= first.abs(), "the first sample fades in from the concealment");
    }

    #[test]
    fn no_history_conceals_with_silence() {
        let mut plc = Concealer::new(16000);
        let mut f = vec![1i16; 320];
        plc.conceal(&mut f);
        assert!(f.iter().all(|s| *s == 0));
    }
}
