//! Call streams on a PulseAudio server (or PipeWire's) through libpulse's
//! asynchronous API. Devices are still listed and chosen through cpal; only
//! the streams go this way, because cpal's PulseAudio host (the pure-Rust
//! `pulseaudio` crate) zero-fills a 1 MiB buffer on every socket read and
//! asks the server for timing after every callback, which cost a call
//! 8–14 % of a core (docs/decisions.md).
//!
//! Each stream has a thread with its own connection and a plain main loop:
//! the thread sleeps in libpulse until the server asks for audio or hands
//! some over, then has the stream's source fill the server's memory (the
//! speaker) or moves samples from it into the ring (the microphone).
//! Nothing there allocates or takes a lock of ours. The latency is asked for
//! explicitly (`ADJUST_LATENCY`): 2 × 10 ms on the speaker, 20 ms pieces
//! from the microphone; no timing updates are requested.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use libpulse_binding::context::{Context, FlagSet as ContextFlags, State as ContextState};
use libpulse_binding::def::BufferAttr;
use libpulse_binding::mainloop::standard::{IterateResult, Mainloop};
use libpulse_binding::sample::{Format, Spec};
use libpulse_binding::stream::{FlagSet as StreamFlags, PeekResult, SeekMode, State as StreamState, Stream};

use crate::{AudioError, Direction, OPEN_TIMEOUT};

/// The speaker's server-side buffer, asked for in two requests of half.
const PLAYBACK_BUFFER_MS: u32 = 20;
/// After each underrun the speaker's buffer grows by a step, up to this:
/// PulseAudio's own ALSA sinks raise their watermark the same way, so a
/// busy machine trades a little latency for audio without gaps.
const PLAYBACK_BUFFER_MAX_MS: u32 = 60;
const PLAYBACK_BUFFER_STEP_MS: u32 = 10;
/// A grown buffer gives a step back after this long without an underrun
/// (PulseAudio's ALSA sinks lower their watermark the same way), so one
/// busy moment does not add latency to the rest of a long call.
const PLAYBACK_QUIET: Duration = Duration::from_secs(10);
/// An underrun soon after a step back doubles the quiet time asked for
/// next, up to this: a machine that is busy in bursts settles at the size
/// it needs instead of clicking at every step back.
const PLAYBACK_QUIET_MAX: Duration = Duration::from_secs(160);

/// The microphone is handed over in pieces of this much (one codec frame):
/// the server holds up to a second for a thread that is late.
const CAPTURE_PIECE_MS: u32 = 20;

/// The size of the speaker's server-side buffer over a call, sans-IO:
/// told of underruns and the time, it says when to ask for another size.
#[derive(Debug)]
struct SpeakerBuffer {
    ms: u32,
    /// The last underrun or step back.
    since: Instant,
    stepped_back: Option<Instant>,
    quiet: Duration,
}

impl SpeakerBuffer {
    fn new(now: Instant) -> SpeakerBuffer {
        SpeakerBuffer { ms: PLAYBACK_BUFFER_MS, since: now, stepped_back: None, quiet: PLAYBACK_QUIET }
    }

    /// The server ran out at `now`: the size to ask for, if it grows.
    fn underrun(&mut self, now: Instant) -> Option<u32> {
        if self.stepped_back.take().is_some_and(|t| now.duration_since(t) < self.quiet) {
            self.quiet = (self.quiet * 2).min(PLAYBACK_QUIET_MAX);
        }
        self.since = now;
        (self.ms < PLAYBACK_BUFFER_MAX_MS).then(|| {
            self.ms += PLAYBACK_BUFFER_STEP_MS;
            self.ms
        })
    }

    /// At each request of the server: the size to ask for, if a step can
    /// go back after a quiet while.
    fn poll(&mut self, now: Instant) -> Option<u32> {
        (self.ms > PLAYBACK_BUFFER_MS && now.duration_since(self.since) >= self.quiet).then(|| {
            self.ms -= PLAYBACK_BUFFER_STEP_MS;
            self.since = now;
            self.stepped_back = Some(now);
            self.ms
        })
    }
}

/// A running stream: its ring end, the failure flag, the stop sender
/// (dropping it ends the stream).
pub(crate) type Running<T> = (T, Arc<AtomicBool>, mpsc::Sender<()>);

/// The PulseAudio name in a device id from `list_devices` (`pulseaudio:NAME`).
fn pulse_name(id: &str) -> &str {
    id.strip_prefix("pulseaudio:").unwrap_or(id)
}

fn bytes_for(rate: u32, ms: u32) -> u32 {
    rate * ms / 1000 * 2
}

fn playback_attr(rate: u32, buffer_ms: u32) -> BufferAttr {
    BufferAttr {
        maxlength: u32::MAX,
        tlength: bytes_for(rate, buffer_ms),
        prebuf: u32::MAX,
        minreq: bytes_for(rate, PLAYBACK_BUFFER_MS / 2),
        fragsize: u32::MAX,
    }
}

/// Opens `device_id` (already resolved) for mono 16-bit playback at `rate`,
/// `source` filling what the server asks for. Counted in `stalls`: the
/// server's requests (`served`), and its underruns, when we answered too
/// late and the device played silence (`underruns`).
pub(crate) fn open_playback(
    device_id: &str,
    rate: u32,
    mut source: impl FnMut(&mut [i16], u32) + Send + 'static,
    stalls: crate::Stalls,
) -> Result<Running<()>, AudioError> {
    let crate::Stalls { underruns, served, .. } = stalls;
    let mut samples = vec![0i16; crate::MAX_REQUEST];
    let (mut seen, mut watching) = (0, false);
    let mut size = SpeakerBuffer::new(Instant::now());
    // What the server last granted (its own view, logged when it changes).
    let mut granted = bytes_for(rate, PLAYBACK_BUFFER_MS);
    let attr = playback_attr(rate, PLAYBACK_BUFFER_MS);
    let id = device_id.to_owned();
    let (failed, stop) = on_thread("audio-out", device_id, rate, Direction::Output, attr, move |stream| {
        if !watching {
            watching = true;
            let counter = underruns.clone();
            stream.set_underflow_callback(Some(Box::new(move || {
                counter.fetch_add(1, Ordering::Relaxed);
            })));
        }
        let now = Instant::now();
        let count = underruns.load(Ordering::Relaxed);
        let resize = if count > seen {
            seen = count;
            let grown = size.underrun(now);
            if let Some(buffer_ms) = grown {
                tracing::info!(device = %id, buffer_ms, "speaker underrun: its buffer grows");
            }
            grown
        } else {
            size.poll(now).inspect(|buffer_ms| {
                tracing::info!(device = %id, buffer_ms, "no speaker underrun for a while: its buffer gives a step back");
            })
        };
        if let Some(buffer_ms) = resize {
            drop(stream.set_buffer_attr(&playback_attr(rate, buffer_ms), |_| {}));
        }
        if let Some(tlength) = stream.get_buffer_attr().map(|a| a.tlength)
            && tlength != granted
        {
            granted = tlength;
            let buffer_ms = tlength / 2 * 1000 / rate;
            tracing::info!(device = %id, buffer_ms, "speaker buffer granted by the sound server");
        }
        let Some(wanted) = stream.writable_size().filter(|n| *n >= 2) else { return Ok(()) };
        let Some(buffer) = stream.begin_write(Some(wanted))? else { return Ok(()) };
        let whole = buffer.len() & !1;
        for bytes in buffer[..whole].chunks_mut(2 * crate::MAX_REQUEST) {
            let samples = &mut samples[..bytes.len() / 2];
            source(samples, rate);
            for (b, s) in bytes.chunks_exact_mut(2).zip(samples.iter()) {
                b.copy_from_slice(&s.to_ne_bytes());
            }
        }
        served.fetch_add(1, Ordering::Relaxed);
        stream.write(&buffer[..whole], None, 0, SeekMode::Relative)
    })?;
    Ok(((), failed, stop))
}

/// Opens `device_id` (already resolved) for mono 16-bit capture at `rate`;
/// samples lost because the ring was full (the call did not read in time)
/// or the server's buffer overflowed are counted in `dropped`. Once the
/// ring holds as many samples as `tell`'s count, each piece handed over is
/// told on its socket (one byte, never waited for).
pub(crate) fn open_capture(
    device_id: &str,
    rate: u32,
    ring: usize,
    dropped: Arc<AtomicU64>,
    tell: Option<(std::os::unix::net::UnixDatagram, Arc<AtomicUsize>)>,
) -> Result<Running<rtrb::Consumer<i16>>, AudioError> {
    let (mut producer, consumer) = rtrb::RingBuffer::<i16>::new(ring);
    let attr = BufferAttr {
        maxlength: bytes_for(rate, 1000),
        tlength: u32::MAX,
        prebuf: u32::MAX,
        minreq: u32::MAX,
        fragsize: bytes_for(rate, CAPTURE_PIECE_MS),
    };
    let mut watching = false;
    let (failed, stop) = on_thread("audio-in", device_id, rate, Direction::Input, attr, move |stream| {
        if !watching {
            watching = true;
            // The server's second of buffer overflowed: a whole piece is lost.
            let counter = dropped.clone();
            let piece = u64::from(rate * CAPTURE_PIECE_MS / 1000);
            stream.set_overflow_callback(Some(Box::new(move || {
                counter.fetch_add(piece, Ordering::Relaxed);
            })));
        }
        let mut got = false;
        loop {
            match stream.peek()? {
                PeekResult::Empty => {
                    // A full socket buffer means the reader has not looked
                    // since: it will find this piece too.
                    if let Some((t, at)) = tell.as_ref().filter(|_| got)
                        && producer.buffer().capacity() - producer.slots() >= at.load(Ordering::Relaxed)
                    {
                        let _ = t.send(&[1]);
                    }
                    return Ok(());
                }
                PeekResult::Hole(_) => {}
                PeekResult::Data(bytes) => {
                    let samples = bytes.chunks_exact(2).map(|b| i16::from_ne_bytes([b[0], b[1]]));
                    crate::push_counting(&mut producer, samples, &dropped);
                    got = true;
                }
            }
            stream.discard()?;
        }
    })?;
    Ok((consumer, failed, stop))
}

/// Connects a stream on a thread of its own, then runs `step` there each
/// time the main loop wakes, until the stop sender is dropped or the stream
/// fails (the flag is then set).
fn on_thread(
    thread: &str,
    device_id: &str,
    rate: u32,
    direction: Direction,
    attr: BufferAttr,
    mut step: impl FnMut(&mut Stream) -> Result<(), libpulse_binding::error::PAErr> + Send + 'static,
) -> Result<(Arc<AtomicBool>, mpsc::Sender<()>), AudioError> {
    let device = pulse_name(device_id).to_owned();
    let id = device_id.to_owned();
    let failed = Arc::new(AtomicBool::new(false));
    let flag = failed.clone();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name(thread.into())
        .spawn(move || {
            let spec = Spec { format: Format::S16NE, channels: 1, rate };
            let (mut mainloop, _context, mut stream) = match connect(&device, direction, &spec, &attr) {
                Ok(c) => c,
                Err(message) => {
                    let _ = ready_tx.send(Err(AudioError::Device { device: id, message }));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            // Serve first, then sleep: the server's first request may have
            // come with the stream's creation, and it asks again only once
            // that one is answered.
            while let Err(mpsc::TryRecvError::Empty) = stop_rx.try_recv() {
                // `connect` waited for Ready: any other state is the end.
                let outcome = match stream.get_state() {
                    StreamState::Ready => step(&mut stream).map_err(text),
                    state => Err(format!("stream {state:?}")),
                }
                .and_then(|()| match mainloop.iterate(true) {
                    IterateResult::Success(_) => Ok(()),
                    IterateResult::Err(e) => Err(text(e)),
                    IterateResult::Quit(_) => Err("the main loop quit".to_owned()),
                });
                if let Err(error) = outcome {
                    tracing::warn!(device = %id, error, "audio stream failed");
                    flag.store(true, Ordering::Relaxed);
                    return;
                }
            }
            let _ = stream.disconnect();
        })
        .map_err(|e| AudioError::NoHost(e.to_string()))?;
    ready_rx
        .recv_timeout(OPEN_TIMEOUT * 2)
        .map_err(|_| AudioError::NoHost("the audio system did not answer".into()))??;
    Ok((failed, stop_tx))
}

/// Connects to the server and opens the stream, iterating the main loop
/// until both are ready.
fn connect(
    device: &str,
    direction: Direction,
    spec: &Spec,
    attr: &BufferAttr,
) -> Result<(Mainloop, Context, Stream), String> {
    let (mut mainloop, mut context) = connect_context()?;
    let name = match direction {
        Direction::Output => "call audio",
        Direction::Input => "call microphone",
    };
    let mut stream = Stream::new(&mut context, name, spec, None).ok_or("no libpulse stream")?;
    let flags = StreamFlags::ADJUST_LATENCY;
    match direction {
        Direction::Output => stream.connect_playback(Some(device), Some(attr), flags, None, None),
        Direction::Input => stream.connect_record(Some(device), Some(attr), flags),
    }
    .map_err(text)?;
    wait(&mut mainloop, || match stream.get_state() {
        StreamState::Ready => Some(Ok(())),
        StreamState::Failed | StreamState::Terminated => Some(Err(format!("{device}: the stream was refused"))),
        _ => None,
    })?;
    Ok((mainloop, context, stream))
}

/// A main loop and a context connected to the server (never started by us).
fn connect_context() -> Result<(Mainloop, Context), String> {
    let mut mainloop = Mainloop::new().ok_or("no libpulse main loop")?;
    let mut context = Context::new(&mainloop, "Agent Helper").ok_or("no libpulse context")?;
    context.connect(None, ContextFlags::NOAUTOSPAWN, None).map_err(text)?;
    wait(&mut mainloop, || match context.get_state() {
        ContextState::Ready => Some(Ok(())),
        ContextState::Failed | ContextState::Terminated => Some(Err("the sound server refused us".to_owned())),
        _ => None,
    })?;
    Ok((mainloop, context))
}

/// How long the device watcher waits before connecting again to a sound
/// server that went away (restarted, or the session's server replaced).
const RECONNECT: std::time::Duration = std::time::Duration::from_secs(1);

/// Tells `changed` each time the server's devices may have changed: a sink
/// or source came or went, or a default moved. A thread with its own
/// connection sleeps in libpulse until the server says so: nothing is
/// polled, and a headset shows within the server's own notice. When the
/// server goes away `changed` hears of it (its devices went with it); the
/// thread connects again every [`RECONNECT`] and tells `changed` once the
/// server is back. The thread ends when `changed` returns false. An error
/// when no server answers now (the caller then compares lists on a timer).
pub(crate) fn watch_devices(mut changed: impl FnMut() -> bool + Send + 'static) -> Result<(), AudioError> {
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("audio-devices".into())
        .spawn(move || {
            let mut ready = Some(ready_tx);
            loop {
                match subscribed() {
                    Ok((mut mainloop, context, pending)) => {
                        match ready.take() {
                            Some(tx) => drop(tx.send(Ok(()))),
                            None if !changed() => return,
                            None => tracing::info!("the sound server is back: watching its devices again"),
                        }
                        while matches!(mainloop.iterate(true), IterateResult::Success(_))
                            && context.get_state() == ContextState::Ready
                        {
                            if pending.take() && !changed() {
                                return;
                            }
                        }
                        tracing::warn!("the sound server went away: its devices are gone until it is back");
                        if !changed() {
                            return;
                        }
                    }
                    Err(message) => {
                        if let Some(tx) = ready.take() {
                            drop(tx.send(Err(AudioError::NoHost(message))));
                            return;
                        }
                    }
                }
                std::thread::sleep(RECONNECT);
            }
        })
        .map_err(|e| AudioError::NoHost(e.to_string()))?;
    ready_rx.recv_timeout(OPEN_TIMEOUT).map_err(|_| AudioError::NoHost("the audio system did not answer".into()))?
}

/// A connection subscribed to device events; the flag is set by each one
/// that may change the device list (taken by the caller after each wake).
fn subscribed() -> Result<(Mainloop, Context, std::rc::Rc<std::cell::Cell<bool>>), String> {
    use libpulse_binding::context::subscribe::{Facility, InterestMaskSet, Operation};
    let (mut mainloop, mut context) = connect_context()?;
    let pending = std::rc::Rc::new(std::cell::Cell::new(false));
    let flag = pending.clone();
    context.set_subscribe_callback(Some(Box::new(move |facility, operation, _index| {
        // A device's volume or port changes often and leaves the list as it
        // was; its coming and going, and the server's defaults, do not.
        let device = matches!(facility, Some(Facility::Sink | Facility::Source))
            && matches!(operation, Some(Operation::New | Operation::Removed));
        if device || facility == Some(Facility::Server) {
            flag.set(true);
        }
    })));
    let answer = std::rc::Rc::new(std::cell::Cell::new(None));
    let answered = answer.clone();
    let mask = InterestMaskSet::SINK | InterestMaskSet::SOURCE | InterestMaskSet::SERVER;
    let _operation = context.subscribe(mask, move |ok| answered.set(Some(ok)));
    wait(&mut mainloop, || match answer.get() {
        Some(true) => Some(Ok(())),
        Some(false) => Some(Err("the sound server refused to tell of device changes".to_owned())),
        None => None,
    })?;
    Ok((mainloop, context, pending))
}

/// Runs the main loop until `done` has an answer.
fn wait(mainloop: &mut Mainloop, mut done: impl FnMut() -> Option<Result<(), String>>) -> Result<(), String> {
    loop {
        if let Some(answer) = done() {
            return answer;
        }
        match mainloop.iterate(true) {
            IterateResult::Success(_) => {}
            IterateResult::Err(e) => return Err(format!("the sound server connection failed: {}", text(e))),
            IterateResult::Quit(_) => return Err("the sound server connection ended".to_owned()),
        }
    }
}

fn text(e: libpulse_binding::error::PAErr) -> String {
    e.to_string().unwrap_or_else(|| format!("{e:?}"))
}

/// The device's id for `direction`, resolved through cpal (the default when
/// none is asked for), so a missing device is `NotFound` as on other hosts,
/// and the rate to open it at.
pub(crate) fn resolve(
    device: Option<&str>,
    direction: Direction,
    rate: u32,
    native: bool,
) -> Result<(String, u32), AudioError> {
    use cpal::traits::DeviceTrait;
    let host = crate::host()?;
    let d = crate::find(&host, device, direction)?;
    let id = d.id().map(|i| i.to_string()).map_err(|e| AudioError::NoHost(e.to_string()))?;
    let supported = crate::supported(&d, direction);
    Ok((id, crate::stream_rate(&d, direction, &supported, rate, native)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_speaker_buffer_grows_on_underruns_and_steps_back_after_a_quiet_while() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut b = SpeakerBuffer::new(t0);
        assert_eq!(b.poll(at(60)), None, "never below the start");
        assert_eq!(b.underrun(at(60)), Some(30));
        assert_eq!(b.underrun(at(61)), Some(40));
        assert_eq!(b.poll(at(70)), None, "9 s quiet");
        assert_eq!(b.poll(at(71)), Some(30));
        assert_eq!(b.poll(at(72)), None, "a step per quiet while");
        assert_eq!(b.poll(at(81)), Some(20));
        assert_eq!(b.poll(at(200)), None);
        // An underrun 5 s after a step back: the next step back waits twice as long.
        assert_eq!(b.underrun(at(86)), Some(30));
        assert_eq!(b.poll(at(96)), None);
        assert_eq!(b.poll(at(106)), Some(20));
        // Never past the most, nor a longer wait than the most.
        for s in 107..120 {
            b.underrun(at(s));
        }
        assert_eq!(b.ms, PLAYBACK_BUFFER_MAX_MS);
        assert_eq!(b.quiet, Duration::from_secs(40), "one premature step back doubled it again");
        for s in 0..10 {
            b.stepped_back = Some(at(200 + s));
            b.underrun(at(200 + s));
        }
        assert_eq!(b.quiet, PLAYBACK_QUIET_MAX);
    }

    #[test]
    fn device_ids_map_to_pulseaudio_names() {
        assert_eq!(pulse_name("pulseaudio:alsa_output.usb-Jabra.analog-stereo"), "alsa_output.usb-Jabra.analog-stereo");
        assert_eq!(pulse_name("headset"), "headset");
        assert_eq!(bytes_for(16_000, 20), 640);
        assert_eq!(bytes_for(8000, 10), 160);
    }
}
