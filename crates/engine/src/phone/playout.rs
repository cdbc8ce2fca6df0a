//! A call's playout, pulled by its speaker. The media task hands arriving
//! packets over through a lock-free queue; the speaker's stream thread asks
//! the call's [`Receiver`] for exactly what the sound card wants, so the
//! jitter buffer, the decoder and the concealment run there, on the card's
//! clock, with no ring of decoded audio in between (docs/decisions.md,
//! "Playout pulled by the sound card").
//!
//! - The card's thread never waits: it takes the receiver with a `try_lock`,
//!   which only the media task contends, and only while no speaker plays
//!   (then the task pulls at the stream's pace itself, so the call's
//!   figures stay right and no stale audio piles up) or when the codec
//!   changes. A request that finds it taken plays silence.
//! - Payloads travel in buffers that come back through a second queue, so
//!   the card's thread neither allocates nor frees.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use agent_helper_media::codec::Codec;
use agent_helper_media::receiver::{Figures, Receiver};
use agent_helper_media::resample::Resampler;

/// Packets on their way to the receiver: 1.28 s of 20 ms frames, far more
/// than a card that is playing leaves there between two requests.
const QUEUE: usize = 64;
/// Every buffer in circulation fits here (the queue, all the jitter buffer
/// can hold, one being decoded): handing one back never fails.
const SPENT: usize = QUEUE + 256 + 2;
/// The room a payload buffer is made with: the largest Opus packet.
const PAYLOAD: usize = 1500;
/// The task pulls in pieces of this much while no speaker does.
const PIECE: Duration = Duration::from_millis(10);

struct Arrival {
    at: Instant,
    timestamp: u32,
    payload: Vec<u8>,
}

/// What the card's thread works on.
struct Outlet {
    receiver: Receiver,
    packets: rtrb::Consumer<Arrival>,
    spent: rtrb::Producer<Vec<u8>>,
}

impl Outlet {
    fn fill(&mut self, now: Instant, rate: u32, out: &mut [i16], shared: &Shared) {
        while let Ok(a) = self.packets.pop() {
            self.receiver.push(a.at, a.timestamp, a.payload);
        }
        self.receiver.set_audible(shared.audible.load(Ordering::Relaxed));
        self.receiver.fill(now, rate, out);
        let spent = &mut self.spent;
        self.receiver.take_spent(|p| drop(spent.push(p)));
        // The task reads these every few seconds; a request that finds it
        // reading leaves them for the next one.
        if let Ok(mut f) = shared.figures.try_lock() {
            *f = self.receiver.figures();
        }
    }
}

struct Shared {
    outlet: Mutex<Outlet>,
    audible: AtomicBool,
    figures: Mutex<Figures>,
}

/// The media task's end of a call's playout.
pub(super) struct Playout {
    shared: Arc<Shared>,
    packets: rtrb::Producer<Arrival>,
    spent: rtrb::Consumer<Vec<u8>>,
    /// Packets dropped because the queue was full (no one pulled).
    pub overflowed: u64,
    /// The rate the receiver gives audio at: the codec's, or the speaker's.
    rate: u32,
    /// Where the task's own pulling got to, while it pulls.
    pulled_to: Option<Instant>,
    piece: Vec<i16>,
}

fn outlet(codec: Codec) -> (Outlet, rtrb::Producer<Arrival>, rtrb::Consumer<Vec<u8>>) {
    let (packets_in, packets) = rtrb::RingBuffer::new(QUEUE);
    let (spent, spent_out) = rtrb::RingBuffer::new(SPENT);
    (Outlet { receiver: Receiver::new(codec), packets, spent }, packets_in, spent_out)
}

impl Playout {
    /// A playout for `codec` (only its decoding half is used).
    pub fn new(codec: Codec) -> Playout {
        let rate = codec.rate();
        let (o, packets, spent) = outlet(codec);
        let shared = Arc::new(Shared {
            outlet: Mutex::new(o),
            audible: AtomicBool::new(true),
            figures: Mutex::new(Figures::default()),
        });
        Playout { shared, packets, spent, overflowed: 0, rate, pulled_to: None, piece: Vec::with_capacity(960) }
    }

    /// Another codec: a new receiver, behind the same speaker (converted
    /// to its rate as before). What was queued for the old one is not played.
    pub fn set_codec(&mut self, codec: Codec) {
        let from = codec.rate();
        let (mut o, packets, spent) = outlet(codec);
        if self.rate != from {
            o.receiver.set_converter(Resampler::new(from, self.rate).ok());
        }
        (self.packets, self.spent) = (packets, spent);
        *self.outlet() = o;
        *self.shared.figures.lock().unwrap_or_else(|e| e.into_inner()) = Figures::default();
    }

    /// A packet's payload, arrived at `at`.
    pub fn push(&mut self, at: Instant, timestamp: u32, payload: &[u8]) {
        let mut buffer = self.spent.pop().unwrap_or_else(|_| Vec::with_capacity(PAYLOAD));
        buffer.clear();
        buffer.extend_from_slice(payload);
        if self.packets.push(Arrival { at, timestamp, payload: buffer }).is_err() {
            self.overflowed += 1;
        }
    }

    /// What the speaker's stream plays: the receiver's audio, or silence
    /// for a request that finds the task holding it.
    pub fn source(&self) -> impl FnMut(&mut [i16], u32) + Send + 'static {
        let shared = self.shared.clone();
        move |out: &mut [i16], rate: u32| match shared.outlet.try_lock() {
            Ok(mut o) => o.fill(Instant::now(), rate, out, &shared),
            Err(_) => out.fill(0),
        }
    }

    /// The speaker plays at `rate`, converted by `converter` from the codec's.
    pub fn set_speaker(&mut self, rate: u32, converter: Option<Resampler>) {
        self.rate = rate;
        self.outlet().receiver.set_converter(converter);
    }

    /// Silence instead of the peer (on hold), at the same pace.
    pub fn set_audible(&self, audible: bool) {
        self.shared.audible.store(audible, Ordering::Relaxed);
    }

    /// No speaker plays: the task pulls up to `now` itself, at the
    /// stream's pace, and drops what it pulled.
    pub fn pull(&mut self, now: Instant) {
        let from = *self.pulled_to.get_or_insert(now);
        let mut at = from;
        let piece = (self.rate as usize / 100).max(1);
        self.piece.resize(piece, 0);
        let mut outlet = self.shared.outlet.lock().unwrap_or_else(|e| e.into_inner());
        while at + PIECE <= now {
            outlet.fill(at, self.rate, &mut self.piece, &self.shared);
            at += PIECE;
        }
        drop(outlet);
        self.pulled_to = Some(at);
    }

    /// A speaker pulls again: the task's own pulling stops.
    pub fn stop_pulling(&mut self) {
        self.pulled_to = None;
    }

    pub fn figures(&self) -> Figures {
        *self.shared.figures.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn outlet(&self) -> MutexGuard<'_, Outlet> {
        self.shared.outlet.lock().unwrap_or_else(|e| e.into_inner())
    }
}
