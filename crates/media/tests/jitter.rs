//! The jitter buffer on a virtual clock: a 20 ms G.711 stream delivered with
//! jitter, reordering, duplicates and loss, played out one frame per 20 ms.

use std::time::{Duration, Instant};

use agent_helper_media::jitter::{JitterBuffer, Playout};

const FRAME: u32 = 160;
const PERIOD: Duration = Duration::from_millis(20);

fn buffer() -> JitterBuffer {
    JitterBuffer::new(8000, Duration::from_millis(20), Duration::from_millis(200))
}

/// Plays `frames` periods starting at `start`; returns what came out, as
/// the frame number for real frames and `None` for concealment.
fn play(jb: &mut JitterBuffer, start: Instant, frames: usize) -> Vec<Option<u32>> {
    simulate(jb, start, frames, &mut Vec::new())
}

/// The sound card's clock and the network together: before each 20 ms
/// tick from `start`, the packets that have arrived by then are pushed.
/// `arrivals`: (arrival time, frame number, RTP timestamp).
fn simulate(
    jb: &mut JitterBuffer,
    start: Instant,
    frames: usize,
    arrivals: &mut Vec<(Instant, u32, u32)>,
) -> Vec<Option<u32>> {
    simulate_trimming(jb, start, frames, arrivals, |_| false)
}

/// As [`simulate`], with a caller that drops a spare frame when `quiet`
/// says the frame it was given is quiet.
fn simulate_trimming(
    jb: &mut JitterBuffer,
    start: Instant,
    frames: usize,
    arrivals: &mut Vec<(Instant, u32, u32)>,
    quiet: impl Fn(u32) -> bool,
) -> Vec<Option<u32>> {
    arrivals.sort_by_key(|a| a.0);
    let mut out = vec![];
    for i in 0..frames {
        let now = start + PERIOD * i as u32;
        while let Some(&(at, n, ts)) = arrivals.first().filter(|a| a.0 <= now) {
            arrivals.remove(0);
            jb.push(at, ts, FRAME, vec![n as u8; 160]);
        }
        let mut playout = jb.pop(now);
        while let Playout::Frame { payload, .. } = &playout
            && jb.spare()
            && quiet(u32::from(payload[0]))
        {
            jb.drop_spare();
            playout = jb.pop(now);
        }
        match playout {
            Playout::Frame { payload, .. } => out.push(Some(u32::from(payload[0]))),
            Playout::Missing { .. } => out.push(None),
            Playout::Waiting => {}
        }
    }
    out
}

#[test]
fn reorders_drops_duplicates_and_reports_losses() {
    let t0 = Instant::now();
    let mut jb = buffer();
    // Frames 0..10; 3 arrives after 4 (15 ms late), 6 twice, 8 lost.
    let mut arrivals: Vec<_> =
        [(0u32, 0u64), (1, 20), (2, 40), (4, 60), (3, 75), (5, 100), (6, 120), (6, 121), (7, 140), (9, 180)]
            .into_iter()
            .map(|(n, at)| (t0 + Duration::from_millis(at), n, 1000 + n * FRAME))
            .collect();
    let out = simulate(&mut jb, t0 + Duration::from_millis(1), 14, &mut arrivals);
    assert_eq!(
        out[..10],
        [Some(0), Some(1), Some(2), Some(3), Some(4), Some(5), Some(6), Some(7), None, Some(9)],
        "{out:?}"
    );
    let s = jb.stats();
    assert_eq!((s.received, s.duplicates, s.late), (10, 1, 0), "{s:?}");
    assert!(s.concealed >= 1, "{s:?}");
}

#[test]
fn a_packet_after_its_turn_is_late_and_dropped() {
    let t0 = Instant::now();
    let mut jb = buffer();
    jb.push(t0, 0, FRAME, vec![0; 160]);
    jb.push(t0 + PERIOD * 2, 2 * FRAME, FRAME, vec![2; 160]);
    let out = play(&mut jb, t0 + PERIOD * 2, 2);
    assert_eq!(out, [Some(0), None]);
    jb.push(t0 + PERIOD * 4, FRAME, FRAME, vec![1; 160]);
    assert_eq!(jb.stats().late, 1);
}

#[test]
fn the_target_delay_follows_the_measured_jitter_within_bounds() {
    let t0 = Instant::now();
    let mut steady = buffer();
    let mut jittery = buffer();
    for n in 0..200u32 {
        steady.push(t0 + PERIOD * n, n * FRAME, FRAME, vec![0; 160]);
        // Arrivals wobble by up to ±30 ms.
        let wobble = [0i64, 30, -20, 10, -30, 25][n as usize % 6];
        let at = (i64::from(n) * 20 + 40 + wobble) as u64;
        jittery.push(t0 + Duration::from_millis(at), n * FRAME, FRAME, vec![0; 160]);
    }
    assert!(steady.target() <= Duration::from_millis(25), "{:?}", steady.target());
    assert!(jittery.target() > Duration::from_millis(60), "{:?}", jittery.target());
    assert!(jittery.target() <= Duration::from_millis(200));
    assert!(jittery.jitter() > steady.jitter());
}

#[test]
fn timestamps_wrap_and_a_restarted_stream_resyncs() {
    let t0 = Instant::now();
    let mut jb = buffer();
    let first = u32::MAX - FRAME + 1;
    let mut arrivals: Vec<_> = (0..4u32).map(|n| (t0 + PERIOD * n, n, first.wrapping_add(n * FRAME))).collect();
    assert_eq!(simulate(&mut jb, t0, 6, &mut arrivals)[..4], [Some(0), Some(1), Some(2), Some(3)]);
    // The sender restarts with a new random timestamp: played from there after the target delay.
    let t1 = t0 + Duration::from_secs(1);
    jb.push(t1, 123_456, FRAME, vec![7; 160]);
    assert_eq!(play(&mut jb, t1 + Duration::from_millis(40), 1), [Some(7)]);
}

#[test]
fn a_flood_beyond_the_target_is_trimmed() {
    let t0 = Instant::now();
    let mut jb = buffer();
    // 50 frames arrive at once (a burst after a network stall).
    for n in 0..50u32 {
        jb.push(t0, n * FRAME, FRAME, vec![n as u8; 160]);
    }
    let out = play(&mut jb, t0 + Duration::from_millis(100), 5);
    assert!(out.iter().all(Option::is_some));
    assert!(jb.stats().skipped > 0, "frames skipped to catch up");
    assert!(jb.depth() < Duration::from_millis(1000));
}

#[test]
fn random_loss_is_concealed_without_losing_step() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(48_000, Duration::from_millis(40), Duration::from_millis(300));
    // 500 frames of 960 samples, every 20th lost; played out at the same pace.
    let mut arrivals: Vec<_> = (0..500u32)
        .filter(|n| n % 20 != 7)
        .map(|n| (t0 + PERIOD * n + Duration::from_millis(u64::from(n % 3)), n, 5000 + n * 960))
        .collect();
    arrivals.sort_by_key(|a| a.0);
    let (mut out, mut fec) = (vec![], 0);
    for i in 0..520u32 {
        let now = t0 + PERIOD * i;
        while let Some(&(at, n, ts)) = arrivals.first().filter(|a| a.0 <= now) {
            arrivals.remove(0);
            jb.push(at, ts, 960, vec![n as u8; 4]);
        }
        match jb.pop(now) {
            Playout::Frame { .. } => out.push(true),
            Playout::Missing { .. } => {
                out.push(false);
                fec += usize::from(jb.peek_next().is_some());
            }
            Playout::Waiting => {}
        }
    }
    let s = jb.stats();
    assert_eq!(s.late, 0, "{s:?}");
    // The 40 ms held leave the next packet there for FEC, for every one of the 25.
    assert_eq!(fec, 25, "{s:?}");
    // 25 lost in the stream; after its end (frame 500 on) every pop conceals.
    let lost_inside = out.iter().take(480).filter(|ok| !**ok).count();
    assert_eq!(lost_inside, 24, "only the lost ones: {s:?}");
}

#[test]
fn a_sender_whose_clock_runs_slow_is_stretched_not_dropped() {
    let t0 = Instant::now();
    let mut jb = buffer();
    // The sender's 20 ms take 21 ms of ours: the buffer runs dry now and then.
    let mut arrivals: Vec<_> =
        (0..300u32).map(|n| (t0 + Duration::from_millis(u64::from(n) * 21), n, n * FRAME)).collect();
    let out = simulate(&mut jb, t0, 340, &mut arrivals);
    let s = jb.stats();
    assert_eq!(s.late, 0, "nothing arrives after its turn: {s:?}");
    let played: Vec<u32> = out.iter().flatten().copied().collect();
    assert_eq!(played.len(), 300, "every frame played once: {s:?}");
    assert!(played.windows(2).all(|w| w[1] == (w[0] + 1) % 256), "in order");
}

#[test]
fn a_buffer_that_started_deep_settles_within_a_frame_of_its_target() {
    let t0 = Instant::now();
    let mut jb = buffer();
    // A steady stream, but the sound card first asks 40 ms after the first
    // packet (a slow device open): three frames wait, under the two frames
    // beyond the target that count as a burst and go at once.
    let mut arrivals: Vec<_> = (0..500u32).map(|n| (t0 + PERIOD * n, n, n * FRAME)).collect();
    // Payloads carry the frame number mod 256: frames 0–199 are "speech".
    let out = simulate_trimming(&mut jb, t0 + Duration::from_millis(40), 480, &mut arrivals, |n| n >= 200);
    assert!(out.iter().all(Option::is_some), "nothing concealed");
    // Nothing was cut from the speech: frames 0–199 all played, in order.
    assert_eq!(out.iter().take(200).map(|f| f.unwrap()).collect::<Vec<_>>(), (0..200).collect::<Vec<_>>());
    // 20 ms target: what is queued at a turn is the frame due and at most a part of the next.
    assert!(jb.depth() <= Duration::from_millis(40), "{:?}", jb.depth());
    assert!(jb.held() <= Duration::from_millis(40), "{:?}", jb.held());
    // Each frame waited 40 ms against a 20 ms target: one frame to spare,
    // dropped once it is quiet; then each waits 20 ms, no more than the
    // target and its margin, and none goes.
    assert_eq!(jb.stats().skipped, 1, "{:?}", jb.stats());
}

#[test]
fn a_frame_waiting_a_whole_period_for_the_card_is_given_back() {
    // A stream with a little jitter (0–2 ms late, so the target is a bit
    // over one frame and a depth of two frames never looked spare); the card
    // asks `phase` after each packet is due, and first one period later
    // still (the buffer holds the next frame too).
    let waits = |phase: u64| {
        let t0 = Instant::now();
        let mut jb = buffer();
        let mut arrivals: Vec<_> = (0..400u32)
            .map(|n| (t0 + PERIOD * n + Duration::from_millis(u64::from(n * 7 % 3)), n, n * FRAME))
            .collect();
        let first = Duration::from_millis(20 + phase);
        let out = simulate_trimming(&mut jb, t0 + first, 380, &mut arrivals, |_| true);
        assert!(out.iter().all(Option::is_some), "nothing concealed");
        jb.stats().skipped
    };
    // 33–35 ms of waiting against a 21 ms target: 13–15 ms is left after one goes.
    assert_eq!(waits(15), 1);
    // 21–23 ms: without it a frame would wait 1–3 ms, inside the margin: kept.
    assert_eq!(waits(3), 0);
}

#[test]
fn jitter_the_target_covers_is_not_trimmed_into_losses() {
    let t0 = Instant::now();
    let mut jb = buffer();
    // Arrivals spread over 0–30 ms late (deterministic pseudo-random).
    let mut seed = 7u32;
    let mut arrivals: Vec<_> = (0..1500u32)
        .map(|n| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let late = Duration::from_millis(u64::from((seed >> 16) % 31));
            (t0 + PERIOD * n + late, n, n * FRAME)
        })
        .collect();
    let out = simulate_trimming(&mut jb, t0, 1480, &mut arrivals, |_| true);
    let concealed = out.iter().filter(|f| f.is_none()).count();
    assert!(concealed <= 3, "{concealed} frames concealed, {:?}", jb.stats());
    assert!(jb.target() > Duration::from_millis(30), "{:?}", jb.target());
}

#[test]
fn before_its_start_a_buffer_gives_nothing_and_keeps_its_depth() {
    // Callers that pop until the depth falls must stop on Waiting: two
    // packets queued before the start time are 40 ms deep and stay so.
    let t0 = Instant::now();
    let mut jb = buffer();
    jb.push(t0, 0, FRAME, vec![0; 160]);
    jb.push(t0, FRAME, FRAME, vec![1; 160]);
    assert_eq!(jb.pop(t0), Playout::Waiting);
    assert_eq!(jb.depth(), Duration::from_millis(40));
    assert!(matches!(jb.pop(t0 + Duration::from_millis(20)), Playout::Frame { .. }));
    assert_eq!(jb.depth(), Duration::from_millis(20));
}

#[test]
fn the_loss_floor_holds_while_frames_go_missing_and_goes_once_none_has() {
    // A steady stream; the card asks 5 ms after each packet lands. With a
    // 40 ms loss floor that holds 10 s after a missing frame (and from the
    // start); every 50th frame lost, or none.
    let run = |floor: bool, lose_every: Option<u32>| {
        let t0 = Instant::now();
        let mut jb = buffer();
        if floor {
            jb = jb.with_loss_floor(Duration::from_millis(40), Duration::from_secs(10));
        }
        let mut arrivals: Vec<_> = (0..1200u32)
            .filter(|n| lose_every.is_none_or(|k| n % k != k - 1))
            .map(|n| (t0 + PERIOD * n, n, n * FRAME))
            .collect();
        let (mut targets, mut held, mut out) = (vec![], vec![], vec![]);
        for chunk in 0..8 {
            let start = t0 + Duration::from_millis(5) + PERIOD * (chunk * 140);
            out.extend(simulate_trimming(&mut jb, start, 140, &mut arrivals, |_| true));
            targets.push(jb.target().as_millis() as u64);
            held.push(jb.held().as_millis() as u64);
        }
        (out, targets, held, jb.stats())
    };
    // Lossy: the floor holds all along and nothing is trimmed, so the
    // packet after each lost one is at hand when the gap's turn comes.
    let (out, targets, held, stats) = run(true, Some(50));
    assert!(targets.iter().all(|t| *t == 40), "{targets:?}");
    assert_eq!(stats.skipped, 0, "{stats:?}");
    assert!(held.iter().skip(1).all(|h| *h >= 40), "the next frame is held too: {held:?}");
    assert!(out.windows(2).all(|w| w[0].is_some() || w[1].is_some()), "two concealed in a row: {stats:?}");
    // Clean: 40 ms at first, then the minimum once 10 s passed with nothing
    // missing, and the delay it added given back: it ends where a buffer
    // without the floor does.
    let (out, targets, held, stats) = run(true, None);
    let (_, plain_targets, plain_held, plain) = run(false, None);
    assert!(out.iter().skip(2).all(Option::is_some), "nothing concealed: {stats:?}");
    assert_eq!((targets[0], plain_targets[0]), (40, 20), "{targets:?} {plain_targets:?}");
    assert_eq!(targets.last(), plain_targets.last());
    assert!(held[0] > plain_held[0], "{held:?} {plain_held:?}");
    assert_eq!(held.last(), plain_held.last(), "{held:?} {plain_held:?}");
    assert_eq!(stats.skipped, plain.skipped + 1, "the floor's frame went in a pause: {stats:?}");
}
