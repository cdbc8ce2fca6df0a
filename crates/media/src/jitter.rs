//! An adaptive jitter buffer. Packets arrive out of order, twice, late or
//! never; the sound card takes one frame every frame period. The buffer
//! holds packets by RTP timestamp and plays them out `target` after they
//! were due, where `target` follows the measured jitter (RFC 3550 §6.4.1)
//! between a configured minimum and maximum.
//!
//! - Reordering: packets are kept sorted; a late one still plays if its
//!   turn has not passed.
//! - Duplicates and packets whose turn has passed are dropped and counted.
//! - A missing packet is reported as [`Playout::Missing`] (the caller
//!   conceals it, from the next packet's FEC when the codec has it).
//! - Clock drift and jitter bursts: when more than `target` plus two frames
//!   are queued a frame is skipped; an empty buffer conceals while it waits
//!   for the frame that is due (a slow sender stretches the playout instead of
//!   making every later packet late). Both are counted.
//! - Room for the next packet where loss is seen ([`JitterBuffer::with_loss_floor`]):
//!   from the start and for a while after each missing frame the target is
//!   at least a higher floor (Opus rebuilds a lost frame from the next
//!   packet's FEC, so that packet must be at hand); a call that has lost
//!   nothing for that while gives the difference back like any spare delay.
//! - Latency: a buffer whose every frame waited at least `target` between
//!   its arrival and its turn for a whole [`TRIM_WINDOW`] (it started deep,
//!   the sound card stalled, jitter that has since calmed filled it, or the
//!   card simply asks a little after each packet lands) has a frame to
//!   spare ([`JitterBuffer::spare`]): each would still wait `target` less
//!   one frame without it. The caller drops one when it is quiet
//!   ([`JitterBuffer::drop_spare`]), so the delay settles within a frame of
//!   the target instead of staying wherever a burst left it, and no word is
//!   cut for it. Time of arrival, not depth: depth counts whole frames, and
//!   a frame landing 2 ms before its turn and one landing 19 ms before look
//!   alike by depth, though the second waits 17 ms the call need not have.
//! - Nothing is allocated or freed after construction: packets are held in
//!   a sorted deque of fixed capacity, and every payload the buffer lets go
//!   of (played, skipped, late, duplicate) is kept for the caller to take
//!   back ([`JitterBuffer::take_spent`]) and reuse, so the buffer can run on
//!   a sound card's thread.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A sender more than this far ahead or behind is treated as a new stream.
const RESYNC: Duration = Duration::from_secs(3);
/// Packets held at most (a hostile sender cannot make us hold more).
const MAX_PACKETS: usize = 256;
/// How long the buffer must hold a spare frame at every turn before one is
/// skipped: long enough that jitter the target covers is not mistaken for
/// excess, short enough that a deep start settles within seconds.
pub const TRIM_WINDOW: Duration = Duration::from_secs(2);
/// A frame is spare only if every frame would still wait this much beyond
/// the target's share without it: the target's jitter term covers the
/// network, not a media tick that comes a few milliseconds late.
const SPARE_MARGIN: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// Not playing yet (filling to the target delay): play silence.
    Waiting,
    /// The next frame: `samples` long at the codec's rate.
    Frame { payload: Vec<u8>, samples: u32 },
    /// The next frame did not arrive: conceal `samples`.
    Missing { samples: u32 },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub received: u64,
    pub duplicates: u64,
    pub late: u64,
    pub concealed: u64,
    pub skipped: u64,
}

pub struct JitterBuffer {
    clock_rate: u32,
    min: Duration,
    max: Duration,
    /// The packets held, sorted by extended (unwrapped) timestamp.
    packets: VecDeque<(u64, Held)>,
    /// Payloads let go of, until the caller takes them back.
    spent: Vec<Vec<u8>>,
    /// The extended timestamp of the next frame to play.
    next: Option<u64>,
    /// The last timestamp seen, for unwrapping.
    last_ts: Option<(u32, u64)>,
    /// Frame length last seen, in samples: what a missing frame lasts.
    frame: u32,
    /// Playing starts at this time (first arrival + target).
    start_at: Option<Instant>,
    /// RFC 3550 interarrival jitter, in timestamp units, and the previous transit.
    jitter: f64,
    transit: Option<f64>,
    epoch: Option<Instant>,
    stats: JitterStats,
    /// The current trim window: when it began, the least time a frame
    /// waited between arrival and its turn in it (none for a frame that was
    /// missing), and the sum and count of depths (for [`Self::held`]).
    window: Option<(Instant, Duration, Duration, u32)>,
    /// The mean depth at a turn over the last whole window.
    held: Duration,
    /// The last whole window held a frame beyond the target at every turn.
    spare: bool,
    /// How much less every frame of the last whole window could have
    /// waited and still kept the target's share ([`Self::excess`]).
    excess: Duration,
    /// The target's floor while frames go missing (within the bounds), and
    /// how long without a missing frame it holds ([`Self::with_loss_floor`]).
    loss_floor: Option<(Duration, Duration)>,
    /// The last missing frame, or the start of playing.
    last_loss: Option<Instant>,
    /// The target's floor now: `min`, or the loss floor while it holds.
    floor: Duration,
    /// What the target adds to the jitter's share: a frame, unless set
    /// ([`Self::with_lead`]).
    lead: Option<Duration>,
}

/// A packet waiting for its turn.
#[derive(Debug)]
struct Held {
    payload: Vec<u8>,
    samples: u32,
    arrived: Instant,
}

impl JitterBuffer {
    pub fn new(clock_rate: u32, min: Duration, max: Duration) -> JitterBuffer {
        JitterBuffer {
            clock_rate,
            min,
            max: max.max(min),
            packets: VecDeque::with_capacity(MAX_PACKETS),
            // Every held packet, one being played and one refused at once.
            spent: Vec::with_capacity(MAX_PACKETS + 2),
            next: None,
            last_ts: None,
            frame: clock_rate / 50,
            start_at: None,
            jitter: 0.0,
            transit: None,
            epoch: None,
            stats: JitterStats::default(),
            window: None,
            held: Duration::ZERO,
            spare: false,
            excess: Duration::ZERO,
            loss_floor: None,
            last_loss: None,
            floor: min,
            lead: None,
        }
    }

    /// The target is three times the jitter plus `lead` rather than plus a
    /// frame: for a caller that asks at the time the frame is needed (a
    /// sound card pulling a request of `lead` ahead), not once per frame
    /// period whatever its phase.
    pub fn with_lead(mut self, lead: Duration) -> JitterBuffer {
        self.lead = Some(lead);
        self
    }

    /// From the start, and until `quiet` has passed without a missing
    /// frame, the target is at least `floor` (within the maximum).
    pub fn with_loss_floor(mut self, floor: Duration, quiet: Duration) -> JitterBuffer {
        self.floor = floor.clamp(self.min, self.max);
        self.loss_floor = Some((self.floor, quiet));
        self
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The interarrival jitter (RFC 3550), in timestamp units.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The delay the buffer aims for: three times the jitter plus a frame,
    /// within the configured bounds.
    pub fn target(&self) -> Duration {
        (self.jitter_share() + self.lead.unwrap_or(self.frame_time())).clamp(self.floor, self.max)
    }

    fn jitter_share(&self) -> Duration {
        Duration::from_secs_f64(3.0 * self.jitter / f64::from(self.clock_rate))
    }

    fn frame_time(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.frame) / f64::from(self.clock_rate))
    }

    /// What the buffer held when the sound card asked, on average over the
    /// last [`TRIM_WINDOW`]: the audio queued from the frame due onwards.
    pub fn held(&self) -> Duration {
        self.held
    }

    /// How much audio is queued, from the next frame on.
    pub fn depth(&self) -> Duration {
        let (Some(next), Some((last, held))) = (self.next, self.packets.back()) else {
            return Duration::ZERO;
        };
        let samples = (last + u64::from(held.samples)).saturating_sub(next);
        Duration::from_secs_f64(samples as f64 / f64::from(self.clock_rate))
    }

    /// A packet arrived at `now`: RTP `timestamp`, `samples` of audio.
    pub fn push(&mut self, now: Instant, timestamp: u32, samples: u32, payload: Vec<u8>) {
        if samples == 0 || samples > self.clock_rate {
            self.spend(payload);
            return;
        }
        let ext = self.unwrap(timestamp);
        self.update_jitter(now, ext);
        self.stats.received += 1;
        self.frame = samples;
        let resync = match self.next {
            None => true,
            Some(next) => {
                let far = (RESYNC.as_secs_f64() * f64::from(self.clock_rate)) as u64;
                ext > next + far || ext + far < next
            }
        };
        if resync {
            while let Some((_, held)) = self.packets.pop_front() {
                self.spend(held.payload);
            }
            self.window = None;
            self.spare = false;
            self.excess = Duration::ZERO;
            // A new stream starts as the call did: with the loss floor.
            self.last_loss = None;
            if let Some((floor, _)) = self.loss_floor {
                self.floor = floor;
            }
            self.next = Some(ext);
            self.start_at = Some(now + self.target());
        }
        let next = self.next.unwrap_or(ext);
        if ext < next {
            self.stats.late += 1;
            self.spend(payload);
            return;
        }
        match self.find(ext) {
            Ok(_) => {
                self.stats.duplicates += 1;
                self.spend(payload);
            }
            Err(_) if self.packets.len() >= MAX_PACKETS => {
                self.stats.late += 1;
                self.spend(payload);
            }
            Err(at) => self.packets.insert(at, (ext, Held { payload, samples, arrived: now })),
        }
    }

    /// Where the packet at `ext` is held, or where it would go.
    fn find(&self, ext: u64) -> Result<usize, usize> {
        self.packets.binary_search_by_key(&ext, |(ts, _)| *ts)
    }

    fn get(&self, ext: u64) -> Option<&Held> {
        self.find(ext).ok().map(|i| &self.packets[i].1)
    }

    fn remove(&mut self, ext: u64) -> Option<Held> {
        let i = self.find(ext).ok()?;
        self.packets.remove(i).map(|(_, held)| held)
    }

    /// Keeps a payload for the caller to take back; only past the room
    /// made for every packet the buffer can hold is one freed here.
    fn spend(&mut self, payload: Vec<u8>) {
        if self.spent.len() < self.spent.capacity() {
            self.spent.push(payload);
        }
    }

    /// The payloads the buffer is done with, and one the caller played
    /// (`recycle`), handed back for the next packets' bytes.
    pub fn take_spent(&mut self, mut back: impl FnMut(Vec<u8>)) {
        for payload in self.spent.drain(..) {
            back(payload);
        }
    }

    /// The caller is done with a payload [`Playout::Frame`] gave it.
    pub fn recycle(&mut self, payload: Vec<u8>) {
        self.spend(payload);
    }

    /// The next frame for the sound card, asked for once per frame period.
    pub fn pop(&mut self, now: Instant) -> Playout {
        let Some(next) = self.next else { return Playout::Waiting };
        if self.start_at.is_some_and(|t| now < t) {
            return Playout::Waiting;
        }
        self.start_at = None;
        if let Some((floor, quiet)) = self.loss_floor {
            let since = *self.last_loss.get_or_insert(now);
            self.floor = if now.duration_since(since) < quiet { floor } else { self.min };
        }
        // Too much queued (a burst, or the sender's clock runs fast): skip one.
        let frame_time = self.frame_time();
        let depth = self.depth();
        let waited = self.get(next).map_or(Duration::ZERO, |h| now.saturating_duration_since(h.arrived));
        self.turn(now, depth, waited);
        if depth > self.target() + frame_time * 2
            && self.packets.front().is_some_and(|(ts, _)| *ts == next)
            && let Some((_, held)) = self.packets.pop_front()
        {
            self.next = Some(next + u64::from(held.samples));
            self.spend(held.payload);
            self.stats.skipped += 1;
            return self.pop(now);
        }
        match self.remove(next) {
            Some(Held { payload, samples, .. }) => {
                self.next = Some(next + u64::from(samples));
                Playout::Frame { payload, samples }
            }
            // Nothing later is here either: the sender is behind (its clock
            // runs slow, or a burst is on its way). Conceal, but keep waiting
            // for this frame: moving on would make every packet late.
            None if self.packets.is_empty() => {
                self.stats.concealed += 1;
                self.last_loss = Some(now);
                Playout::Missing { samples: self.frame }
            }
            None => {
                let samples = self.frame;
                self.next = Some(next + u64::from(samples));
                self.stats.concealed += 1;
                self.last_loss = Some(now);
                Playout::Missing { samples }
            }
        }
    }

    /// A frame could go without eating into the target delay: in the last
    /// whole [`TRIM_WINDOW`] every frame waited a frame beyond what the
    /// target asks (and [`SPARE_MARGIN`]).
    pub fn spare(&self) -> bool {
        self.spare
    }

    /// The caller dropped the frame it was just given (a quiet one) because
    /// there was one to spare.
    pub fn drop_spare(&mut self) {
        if std::mem::take(&mut self.spare) {
            self.stats.skipped += 1;
            // The next verdict needs a whole window at the new depth.
            self.window = None;
        }
    }

    /// How much delay the buffer can give back, to any length, for a caller
    /// that asks for each frame when it needs it and plays samples, not
    /// frames (it drops that much of a quiet frame): every frame of the last
    /// whole window waited this much more than the jitter's share, the lead
    /// and [`SPARE_MARGIN`] (under a loss floor, than the floor less a frame).
    pub fn excess(&self) -> Duration {
        self.excess
    }

    /// The caller played less than it was given (a cut of a quiet frame,
    /// at most the [`Self::excess`]).
    pub fn give_back(&mut self) {
        self.excess = Duration::ZERO;
        self.spare = false;
        // The next verdict needs a whole window at the new depth.
        self.window = None;
    }

    /// Notes the depth at this turn and how long the frame due waited; at
    /// the end of a window, whether it had a frame to spare throughout.
    fn turn(&mut self, now: Instant, depth: Duration, waited: Duration) {
        // Without the frame every frame must still wait the jitter's share
        // (and the target: a loss floor is not given back this way).
        let keep = self.target().max(self.jitter_share() + self.frame_time());
        // Asked when needed, a frame need only wait the jitter's share (or,
        // under a loss floor, long enough for its successor to be here too)
        // and the lead it is asked for ahead of its turn.
        let lead = self.lead.unwrap_or(Duration::ZERO);
        let share = self.jitter_share().max(self.floor.saturating_sub(self.frame_time())) + lead + SPARE_MARGIN;
        let (since, least, sum, turns) = self.window.get_or_insert((now, waited, Duration::ZERO, 0));
        *least = (*least).min(waited);
        *sum += depth;
        *turns += 1;
        if now.duration_since(*since) < TRIM_WINDOW {
            return;
        }
        self.spare = *least >= keep + SPARE_MARGIN;
        self.excess = least.saturating_sub(share);
        self.held = *sum / *turns;
        self.window = None;
    }

    /// When playing starts, while the buffer fills to its target.
    pub fn starts_at(&self) -> Option<Instant> {
        self.start_at
    }

    /// The packet right after the one just reported missing, if it is here
    /// (its in-band FEC can rebuild the missing one).
    pub fn peek_next(&self) -> Option<&[u8]> {
        self.next.and_then(|n| self.get(n)).map(|h| h.payload.as_slice())
    }

    fn unwrap(&mut self, ts: u32) -> u64 {
        let ext = match self.last_ts {
            None => u64::from(ts) + (1 << 32),
            Some((last, last_ext)) => {
                let delta = ts.wrapping_sub(last) as i32;
                (last_ext as i64 + i64::from(delta)).max(0) as u64
            }
        };
        if self.last_ts.is_none_or(|(_, e)| ext > e) {
            self.last_ts = Some((ts, ext));
        }
        ext
    }

    /// RFC 3550 §A.8: J += (|D| − J) / 16, D the change in transit time.
    fn update_jitter(&mut self, now: Instant, ext: u64) {
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = now.duration_since(epoch).as_secs_f64() * f64::from(self.clock_rate);
        let transit = arrival - ext as f64;
        if let Some(prev) = self.transit {
            let d = (transit - prev).abs();
            // A resync jump is not jitter.
            if d < RESYNC.as_secs_f64() * f64::from(self.clock_rate) {
                self.jitter += (d - self.jitter) / 16.0;
            }
        }
        self.transit = Some(transit);
    }
}
