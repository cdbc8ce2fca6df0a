//! The receiver as the sound card pulls it, on a virtual clock: 10 ms asked
//! for every 10 ms, packets arriving in between. It must play every frame
//! once and in order, soon after it arrives, and allocate nothing while it
//! plays, loss, reordering and duplicates included: it runs on the card's
//! own thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agent_helper_media::codec::Codec;
use agent_helper_media::receiver::Receiver;
use agent_helper_media::resample::Resampler;

/// Counts allocations and frees made on a thread while it is watched.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static FREES: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static WATCHED: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if WATCHED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if WATCHED.with(Cell::get) {
            FREES.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if WATCHED.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Allocations and frees made by `f` on this thread.
fn counted(f: impl FnOnce()) -> (u64, u64) {
    let (a, b) = (ALLOCATIONS.load(Ordering::Relaxed), FREES.load(Ordering::Relaxed));
    WATCHED.with(|w| w.set(true));
    f();
    WATCHED.with(|w| w.set(false));
    (ALLOCATIONS.load(Ordering::Relaxed) - a, FREES.load(Ordering::Relaxed) - b)
}

const PIECE: Duration = Duration::from_millis(10);

/// Voiced speech-like audio with pauses: a glide with harmonics, on for
/// 600 ms and off for 300.
fn speechlike(rate: u32, seconds: u32) -> Vec<i16> {
    (0..rate * seconds)
        .map(|i| {
            let t = f64::from(i) / f64::from(rate);
            if t % 0.9 > 0.6 {
                return 0;
            }
            let f = 140.0 + 30.0 * (2.0 * std::f64::consts::PI * 0.7 * t).sin();
            let phase = 2.0 * std::f64::consts::PI * f * t;
            (6000.0 * (phase.sin() + 0.5 * (2.0 * phase).sin() + 0.25 * (3.0 * phase).sin())) as i16
        })
        .collect()
}

/// RTP packets of `name` for `seconds` of speech: (sequence, timestamp, payload).
fn packets(name: &str, seconds: u32) -> Vec<(u32, u32, Vec<u8>)> {
    let mut codec = Codec::for_name(name).unwrap();
    let (frame, ticks) = (codec.frame(), codec.frame_ticks());
    speechlike(codec.rate(), seconds)
        .chunks_exact(frame)
        .enumerate()
        .map(|(i, pcm)| {
            let mut payload = Vec::with_capacity(1500);
            codec.encode(pcm, &mut payload);
            (i as u32, 1000 + i as u32 * ticks, payload)
        })
        .collect()
}

/// A lossy, jittery network: every 13th packet lost, every 17th swapped with
/// the next, every 19th sent twice, and up to 6 ms of jitter.
fn network(packets: Vec<(u32, u32, Vec<u8>)>, start: Instant) -> Vec<(Instant, u32, Vec<u8>)> {
    let mut out = vec![];
    for (seq, ts, payload) in packets {
        if seq % 13 == 5 {
            continue;
        }
        let jitter = Duration::from_micros(u64::from(seq * 7919 % 6000));
        let sent = start + Duration::from_millis(20) * seq;
        let at = if seq % 17 == 3 { sent + Duration::from_millis(25) } else { sent + jitter };
        if seq % 19 == 7 {
            out.push((at + Duration::from_millis(1), ts, payload.clone()));
        }
        out.push((at, ts, payload));
    }
    out.sort_by_key(|p| p.0);
    out
}

/// Pulls `receiver` for the length of `arrivals`, 10 ms at a time at `rate`,
/// from `start + phase`, appending what the card got to `played` and the
/// payloads handed back to `spent` (both the caller's, so that nothing is
/// freed in here).
fn pull(
    receiver: &mut Receiver,
    (rate, start, phase): (u32, Instant, Duration),
    arrivals: &mut [(Instant, u32, Vec<u8>)],
    played: &mut Vec<i16>,
    spent: &mut Vec<Vec<u8>>,
) {
    let end = arrivals.last().map_or(start, |a| a.0) + Duration::from_millis(200);
    let mut arrivals = arrivals.iter_mut().peekable();
    let mut piece = [0i16; 480];
    let piece = &mut piece[..(rate / 100) as usize];
    let mut now = start + phase;
    while now < end {
        while let Some((at, ts, payload)) = arrivals.next_if(|a| a.0 <= now) {
            receiver.push(*at, *ts, std::mem::take(payload));
        }
        receiver.fill(now, rate, piece);
        receiver.take_spent(|p| spent.push(p));
        played.extend_from_slice(piece);
        now += PIECE;
    }
}

/// Plays `arrivals` through `receiver`, the first two seconds (which warm
/// the decoder's scratch up) unwatched; the allocations and frees of the rest.
fn play_watched(
    receiver: &mut Receiver,
    rate: u32,
    start: Instant,
    mut arrivals: Vec<(Instant, u32, Vec<u8>)>,
) -> (Vec<i16>, (u64, u64)) {
    let split = arrivals.partition_point(|a| a.0 < start + Duration::from_secs(2));
    let (warm, rest) = arrivals.split_at_mut(split);
    let mut played = Vec::with_capacity(rate as usize * 40);
    let mut spent = Vec::with_capacity(4096);
    let phase = Duration::from_millis(7);
    pull(receiver, (rate, start, phase), warm, &mut played, &mut spent);
    let counts =
        counted(|| pull(receiver, (rate, start + Duration::from_secs(2), phase), rest, &mut played, &mut spent));
    (played, counts)
}

#[test]
fn playing_allocates_nothing_through_loss_reordering_and_duplicates() {
    for name in ["PCMU", "G722", "opus"] {
        let start = Instant::now();
        let arrivals = network(packets(name, 20), start);
        let mut receiver = Receiver::new(Codec::for_name(name).unwrap());
        let rate = receiver.rate();
        let (played, (allocations, frees)) = play_watched(&mut receiver, rate, start, arrivals);
        let f = receiver.figures();
        assert!(f.stats.concealed >= 60, "{name}: the losses were concealed: {f:?}");
        assert!(f.stats.duplicates >= 40, "{name}: {f:?}");
        assert!(played.iter().any(|&s| s.unsigned_abs() > 3000), "{name}: audio played");
        assert_eq!((allocations, frees), (0, 0), "{name}: allocations and frees while playing");
    }
}

#[test]
fn a_card_at_another_rate_allocates_nothing_either() {
    let start = Instant::now();
    let arrivals = network(packets("PCMU", 10), start);
    let mut receiver = Receiver::new(Codec::for_name("PCMU").unwrap());
    receiver.set_converter(Some(Resampler::new(8000, 48_000).unwrap()));
    let (played, counts) = play_watched(&mut receiver, 48_000, start, arrivals);
    assert!(played.iter().any(|&s| s.unsigned_abs() > 3000));
    assert_eq!(counts, (0, 0), "allocations and frees while playing");
}

fn level(frame: u32) -> i16 {
    1500 + (frame % 8) as i16 * 3500
}

/// 600 ms of sound, then 400 ms of silence, over and over.
fn loud(frame: u32) -> bool {
    frame % 50 < 30
}

/// A G.711 stream of `frames` frames, each loud one at its own level
/// (eight in turn), sent every 20 ms from `start` and arriving `delay(i)` later.
fn levels(start: Instant, frames: u32, delay: impl Fn(u32) -> Duration) -> Vec<(Instant, u32, Vec<u8>)> {
    let mut codec = Codec::for_name("PCMU").unwrap();
    (0..frames)
        .map(|i| {
            let pcm = vec![if loud(i) { level(i) } else { 0 }; 160];
            let mut payload = vec![];
            codec.encode(&pcm, &mut payload);
            (start + Duration::from_millis(20) * i + delay(i), 160 * i, payload)
        })
        .collect()
}

/// Plays `arrivals` (from [`levels`]) pulled from `start + phase`; for each
/// loud frame, how long after it arrived its first sample reached the
/// card. Every loud frame must play whole, in order.
fn card_delays(
    start: Instant,
    phase: Duration,
    mut arrivals: Vec<(Instant, u32, Vec<u8>)>,
) -> (Vec<(u32, Duration)>, Receiver) {
    let frames = arrivals.len() as u32;
    let arrived: Vec<Instant> = arrivals.iter().map(|a| a.0).collect();
    let mut receiver = Receiver::new(Codec::for_name("PCMU").unwrap());
    let (mut played, mut spent) = (vec![], vec![]);
    pull(&mut receiver, (8000, start, phase), &mut arrivals, &mut played, &mut spent);
    let (mut delays, mut from) = (vec![], 0);
    let near = |s: i16, level: i32| (i32::from(s) - level).abs() * 100 < level * 3;
    for i in (0..frames).filter(|&i| loud(i)) {
        // µ-law keeps a level within 3 %; the concealer's 30-sample delay shifts it.
        let level = i32::from(level(i));
        let Some(first) = played[from..].iter().position(|&s| near(s, level)) else {
            panic!("frame {i} never played");
        };
        let first = from + first;
        assert!(played[first..first + 150].iter().all(|&s| near(s, level)), "frame {i} was cut");
        from = first + 1;
        let card_time = start + phase + Duration::from_micros(first as u64 * 125);
        delays.push((i, card_time.saturating_duration_since(arrived[i as usize])));
    }
    (delays, receiver)
}

/// A clean call plays each frame about 40 ms after it arrived while the
/// loss floor holds (its first 10 s), then within 25 ms: once the spare
/// delay has gone, the jitter's share and 5 ms at the request, up to a
/// request's length (10 ms) to the frame's first sample, the 4 ms the
/// packets jitter and the concealer's 3.75 ms output delay, whatever the
/// phase between the card's requests and the packets.
#[test]
fn a_clean_call_plays_each_frame_within_25_ms_of_its_arrival_once_the_loss_floor_goes() {
    for phase_ms in [0, 3, 9] {
        let start = Instant::now();
        let jitter = |i: u32| Duration::from_micros(u64::from(i * 7919 % 4000));
        let (delays, receiver) = card_delays(start, Duration::from_millis(phase_ms), levels(start, 800, jitter));
        let worst = |from: u32, to: u32| delays.iter().filter(|d| d.0 >= from && d.0 < to).map(|d| d.1).max().unwrap();
        let (early, late) = (worst(0, 450), worst(700, 800));
        assert!(early <= Duration::from_millis(45), "phase {phase_ms} ms: {early:?} in the first 9 s");
        // A frame concealed on the way would have made every later one wait a frame more.
        assert!(late <= Duration::from_millis(25), "phase {phase_ms} ms: {late:?} after 14 s");
        let stats = receiver.figures().stats;
        assert_eq!((stats.late, stats.skipped), (0, 0), "phase {phase_ms} ms: {stats:?}");
    }
}

/// A first packet 12 ms late sets the whole call 12 ms deeper than it
/// needs: that goes too, with the floor, in a pause once the floor has
/// gone — to the millisecond, not by whole frames — and nothing is cut
/// from the frames that carry sound.
#[test]
fn spare_delay_goes_in_a_pause_to_the_millisecond() {
    let start = Instant::now();
    let late = |i: u32| if i == 0 { Duration::from_millis(12) } else { Duration::ZERO };
    let (delays, receiver) = card_delays(start, Duration::from_millis(4), levels(start, 800, late));
    let at = |frame: u32| delays.iter().find(|d| d.0 >= frame).unwrap().1;
    let (before, after) = (at(10), at(750));
    let given = before - after;
    let part = given.as_micros() % 20_000;
    assert!(
        after <= Duration::from_millis(25) && (2_000..=18_000).contains(&part),
        "{before:?} at the start, {after:?} at the end: {given:?} given back"
    );
    let f = receiver.figures();
    assert!(f.trimmed >= 1 && f.stats.skipped == 0, "{f:?}");
}
