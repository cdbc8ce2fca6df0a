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

/// Where each frame of a stream of frames with one level each (eight
/// levels in turn) first reaches the card, against when it arrived.
fn level(frame: u32) -> i16 {
    1500 + (frame % 8) as i16 * 3500
}

#[test]
fn each_frame_reaches_the_card_a_frame_after_it_arrived_whatever_the_phase() {
    for phase_ms in [0, 3, 9] {
        let start = Instant::now();
        let mut codec = Codec::for_name("PCMU").unwrap();
        let frames = 150u32;
        let arrivals: Vec<_> = (0..frames)
            .map(|i| {
                let pcm = vec![level(i); 160];
                let mut payload = vec![];
                codec.encode(&pcm, &mut payload);
                let jitter = Duration::from_micros(u64::from(i * 7919 % 4000));
                (start + Duration::from_millis(20) * i + jitter, 160 * i, payload)
            })
            .collect();
        let mut arrivals = arrivals;
        let arrived: Vec<Instant> = arrivals.iter().map(|a| a.0).collect();
        let mut receiver = Receiver::new(Codec::for_name("PCMU").unwrap());
        let phase = Duration::from_millis(phase_ms);
        let (mut played, mut spent) = (vec![], vec![]);
        pull(&mut receiver, (8000, start, phase), &mut arrivals, &mut played, &mut spent);
        let (mut delays, mut from) = (vec![], 0);
        for (i, at) in arrived.iter().enumerate() {
            let level = i32::from(level(i as u32));
            // µ-law keeps a level within 3 %; the concealer's 30-sample delay shifts it.
            let Some(first) = played[from..].iter().position(|&s| (i32::from(s) - level).abs() * 100 < level * 3)
            else {
                panic!("phase {phase_ms} ms: frame {i} never played");
            };
            let first = from + first;
            from = first + 1;
            let card_time = start + phase + Duration::from_micros(first as u64 * 125);
            delays.push(card_time.saturating_duration_since(*at));
        }
        // The buffer's target (a frame) and the concealer's 3.75 ms output delay.
        let worst = delays.iter().max().unwrap();
        assert!(
            *worst <= Duration::from_millis(25),
            "phase {phase_ms} ms: a frame waited {worst:?} between arrival and the card"
        );
        let stats = receiver.figures().stats;
        assert_eq!((stats.late, stats.skipped), (0, 0), "phase {phase_ms} ms: {stats:?}");
    }
}
