//! The receiving half of a call's audio, pulled by the sound card: packets
//! go in with the time they arrived, and [`Receiver::fill`] gives exactly
//! as many samples as the card asks for, decoding (or concealing) the next
//! frame only when the card reaches its first sample. The jitter buffer's
//! wait is then measured on the card's own clock, with no ring of decoded
//! audio between the decoder and the card (WebRTC's NetEq and PJSIP's
//! conference bridge are driven the same way).
//!
//! Nothing here allocates or frees once built, after the first frames
//! (the decoder's scratch grows to the longest packet once): it runs on
//! the sound card's thread. Payloads the buffer is done with are handed
//! back ([`Receiver::take_spent`]) for the next packets' bytes.

use std::time::{Duration, Instant};

use crate::codec::Codec;
use crate::jitter::{JitterBuffer, JitterStats, Playout};
use crate::resample::Resampler;

/// The jitter buffer's bounds, and what it adds to three times the jitter:
/// the card asks for 10 ms at a time, so a frame must be here up to 10 ms
/// before its first sample plays; the least is that and 5 ms of jitter,
/// before any is measured.
const MIN_DELAY: Duration = Duration::from_millis(15);
const MAX_DELAY: Duration = Duration::from_millis(300);
const LEAD: Duration = Duration::from_millis(10);
/// Every call keeps a frame more in its buffer from its start and for this
/// long after its last missing frame, so that a lost frame's successor is
/// at hand when the loss is concealed: Opus rebuilds the frame from that
/// packet's in-band FEC, G.711 and G.722 bridge into it (which scores
/// better than extrapolating). A frame asked for with its successor not
/// yet here is concealed twice, once while the buffer waits for it.
const LOSS_FLOOR: Duration = Duration::from_millis(40);
const LOSS_HOLD: Duration = Duration::from_secs(10);

/// Quiet frames in a row that make a pause between words or sentences
/// (200 ms: longer than the closure before a plosive), where a spare frame
/// can go unheard.
const PAUSE_FRAMES: u32 = 10;

/// Less spare delay than this is not worth a cut.
const MIN_TRIM: Duration = Duration::from_millis(2);

/// Below −45 dBFS: a pause, where dropping 20 ms is not heard.
const QUIET_RMS: f64 = 184.0;

/// The longest frame decoded at once, at the codec's rate or the card's
/// (100 ms at 48 kHz), so the frame buffers never grow while playing.
const MAX_FRAME: usize = 48_000 / 10;

/// What the receiver has seen, for reports and the call's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    pub stats: JitterStats,
    /// The mean audio held when the card asked, over the last window.
    pub held: Duration,
    /// RFC 3550 interarrival jitter, in RTP timestamp units.
    pub jitter: f64,
    /// Lost frames concealed with the next packet at hand (Opus FEC
    /// rebuilds them from it, G.711 and G.722 bridge into it).
    pub from_next: u64,
    /// Spare frames given back in pauses.
    pub trimmed: u64,
}

pub struct Receiver {
    jitter: JitterBuffer,
    codec: Codec,
    /// The frame being played (at the card's rate), and how much of it is out.
    pcm: Vec<i16>,
    played: usize,
    /// The card runs at another rate than the codec: the frame is converted.
    converter: Option<Resampler>,
    decoded: Vec<i16>,
    /// Play silence instead (the call is on hold), still at the card's pace.
    audible: bool,
    quiet_run: u32,
    from_next: u64,
    trimmed: u64,
}

impl Receiver {
    /// A receiver for `codec` (its decoding half is used), with the jitter
    /// buffer that codec wants.
    pub fn new(codec: Codec) -> Receiver {
        let mut jitter = JitterBuffer::new(codec.rtp_clock(), MIN_DELAY, MAX_DELAY).with_lead(LEAD);
        // G.729 conceals without the next packet, but its concealment is
        // weak and the frame the floor keeps costs only its first 10 s (one
        // CI run of its test scored 2.04 PESQ-NB without it, against
        // 2.60–2.65 here with or without: not shown to be the buffer).
        jitter = jitter.with_loss_floor(LOSS_FLOOR, LOSS_HOLD);
        Receiver {
            jitter,
            codec,
            pcm: Vec::with_capacity(MAX_FRAME),
            played: 0,
            converter: None,
            decoded: Vec::with_capacity(MAX_FRAME),
            audible: true,
            quiet_run: 0,
            from_next: 0,
            trimmed: 0,
        }
    }

    /// The codec's PCM rate.
    pub fn rate(&self) -> u32 {
        self.codec.rate()
    }

    /// The card plays at another rate than the codec (`None`: the same).
    /// What is left of the frame at the old rate is not played.
    pub fn set_converter(&mut self, converter: Option<Resampler>) {
        self.converter = converter;
        self.played = self.pcm.len();
    }

    /// Silence instead of the peer's audio (on hold), at the same pace.
    pub fn set_audible(&mut self, audible: bool) {
        self.audible = audible;
    }

    /// An RTP payload that arrived at `arrived`; one the codec cannot read
    /// is handed back unplayed.
    pub fn push(&mut self, arrived: Instant, timestamp: u32, payload: Vec<u8>) {
        let samples = self.codec.samples_in(&payload).unwrap_or(0);
        self.jitter.push(arrived, timestamp, samples, payload);
    }

    /// Fills `out` with what plays next, at the card's rate (`card_rate`):
    /// the card asked at `now`, for what plays from `now` on in its own
    /// time. Each frame is taken at the time of its first sample in `out`
    /// (it must be here a request's length before that), and playing starts
    /// at the sample the buffer's target falls on, not at the next request.
    pub fn fill(&mut self, now: Instant, card_rate: u32, out: &mut [i16]) {
        let at = |filled: usize| now + Duration::from_micros(filled as u64 * 1_000_000 / u64::from(card_rate.max(1)));
        let mut filled = 0;
        // A converter still filling its first chunk gives nothing for a
        // frame; a few in a row end the loop rather than spin.
        let mut empty = 0;
        while filled < out.len() {
            if self.played >= self.pcm.len() {
                let turn = at(filled);
                if !self.next_frame(turn) {
                    // Filling to the target: silence up to where it is reached.
                    let start = self.jitter.starts_at().filter(|&s| s > turn && s < at(out.len()));
                    let Some(start) = start else {
                        out[filled..].fill(0);
                        return;
                    };
                    let until =
                        (start.duration_since(now).as_micros() as u64 * u64::from(card_rate) / 1_000_000) as usize;
                    let until = until.clamp(filled + 1, out.len());
                    out[filled..until].fill(0);
                    filled = until;
                    continue;
                }
                if self.pcm.is_empty() {
                    empty += 1;
                    if empty > 4 {
                        out[filled..].fill(0);
                        return;
                    }
                    continue;
                }
            }
            let n = (out.len() - filled).min(self.pcm.len() - self.played);
            out[filled..filled + n].copy_from_slice(&self.pcm[self.played..self.played + n]);
            filled += n;
            self.played += n;
        }
    }

    /// The payloads done with, for the next packets' bytes.
    pub fn take_spent(&mut self, back: impl FnMut(Vec<u8>)) {
        self.jitter.take_spent(back);
    }

    pub fn figures(&self) -> Figures {
        Figures {
            stats: self.jitter.stats(),
            held: self.jitter.held(),
            jitter: self.jitter.jitter(),
            from_next: self.from_next,
            trimmed: self.trimmed,
        }
    }

    /// The next frame into `pcm`: a received one, or concealment (from the
    /// next packet when the codec can use it and it is here). `false` while
    /// the buffer is still filling to its target.
    fn next_frame(&mut self, now: Instant) -> bool {
        loop {
            match self.jitter.pop(now) {
                Playout::Frame { payload, .. } => {
                    self.codec.decode(&payload, &mut self.decoded);
                    self.jitter.recycle(payload);
                }
                Playout::Missing { samples } => {
                    let next = self.jitter.peek_next();
                    self.from_next += u64::from(next.is_some());
                    // The buffer counts RTP ticks; the codec, samples.
                    let samples = samples as usize * self.codec.rate() as usize / self.codec.rtp_clock() as usize;
                    self.codec.conceal(next, samples.min(MAX_FRAME), &mut self.decoded);
                }
                Playout::Waiting => return false,
            }
            if !quiet(&self.decoded) {
                self.quiet_run = 0;
                break;
            }
            self.quiet_run += 1;
            // Delay the buffer can spare goes in a pause, not mid-word: as
            // much of this quiet frame as there is to spare, or all of it.
            let excess = self.jitter.excess();
            if self.quiet_run <= PAUSE_FRAMES || excess < MIN_TRIM {
                break;
            }
            self.trimmed += 1;
            self.jitter.give_back();
            let skip = (excess.as_micros() as u64 * u64::from(self.codec.rate()) / 1_000_000) as usize;
            if skip < self.decoded.len() {
                self.decoded.drain(..skip);
                break;
            }
        }
        if !self.audible {
            self.decoded.fill(0);
        }
        self.pcm.clear();
        match &mut self.converter {
            Some(r) => r.process(&self.decoded, &mut self.pcm),
            None => self.pcm.extend_from_slice(&self.decoded),
        }
        self.played = 0;
        true
    }
}

fn quiet(pcm: &[i16]) -> bool {
    let energy: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    !pcm.is_empty() && energy / pcm.len() as f64 <= QUIET_RMS * QUIET_RMS
}
