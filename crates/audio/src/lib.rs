//! The agent's audio devices, through cpal: PulseAudio (or PipeWire's
//! PulseAudio server) on Linux, WASAPI on Windows, CoreAudio on macOS.
//!
//! - Devices have stable ids (`pulseaudio:alsa_output.usb-…`): what the
//!   settings store, so the agent's headset is found again after a reboot
//!   or a re-plug.
//! - A stream runs on the audio system's own thread. Its callback neither
//!   blocks nor allocates. A call's speaker is pulled ([`open_speaker`]):
//!   each request of the device is answered by the caller's source there
//!   and then. Other playback (the ringer, a test tone) and capture go
//!   through a lock-free single-producer single-consumer ring ([`rtrb`]),
//!   filled with silence when it runs dry (playback) or dropping when it is
//!   full (capture).
//! - cpal streams may not leave the thread that built them; each stream
//!   lives on a small thread of its own, ended by dropping its handle.
//! - On a PulseAudio server (Linux) the call streams go through libpulse
//!   instead ([`pulse`]): devices are still listed and found through cpal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};

#[cfg(target_os = "linux")]
mod pulse;

/// How long opening a stream may take before the device counts as unavailable.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("no audio system available: {0}")]
    NoHost(String),
    #[error("audio device {0:?} not found")]
    NotFound(String),
    #[error("audio device {device:?}: {message}")]
    Device { device: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Input => "input",
            Direction::Output => "output",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Stable across restarts and re-plugs: what settings store.
    pub id: String,
    /// For people: "Jabra Evolve2 65", "Test_Headset".
    pub name: String,
    pub direction: Direction,
    pub is_default: bool,
}

/// The audio system: PulseAudio where it runs, otherwise the platform default.
fn host() -> Result<cpal::Host, AudioError> {
    #[cfg(target_os = "linux")]
    if cpal::available_hosts().contains(&cpal::HostId::PulseAudio)
        && let Ok(h) = cpal::host_from_id(cpal::HostId::PulseAudio)
    {
        return Ok(h);
    }
    Ok(cpal::default_host())
}

/// The API a process's call streams go through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Streams {
    /// libpulse where a PulseAudio server (or PipeWire's) answers, cpal elsewhere.
    #[default]
    Auto,
    /// cpal everywhere: the path Windows and macOS take, kept at hand on
    /// Linux for a sound server that libpulse's streams do not suit.
    Cpal,
}

static THROUGH_CPAL: AtomicBool = AtomicBool::new(false);

/// Streams opened from now on go through `streams` (the `audio.streams` setting).
pub fn set_streams(streams: Streams) {
    THROUGH_CPAL.store(streams == Streams::Cpal, Ordering::Relaxed);
}

/// A PulseAudio server (or PipeWire's) answers.
#[cfg(target_os = "linux")]
fn on_pulseaudio() -> bool {
    cpal::available_hosts().contains(&cpal::HostId::PulseAudio)
}

/// Streams go through libpulse: a sound server answers and cpal was not asked for.
#[cfg(target_os = "linux")]
fn through_libpulse() -> bool {
    !THROUGH_CPAL.load(Ordering::Relaxed) && on_pulseaudio()
}

/// Whether listing devices is cheap enough to repeat every second or two
/// (to notice plug and unplug): a sound server answers from its tables, but
/// bare ALSA probes every card.
pub fn can_watch() -> bool {
    #[cfg(target_os = "linux")]
    {
        cpal::available_hosts().contains(&cpal::HostId::PulseAudio)
    }
    #[cfg(not(target_os = "linux"))]
    {
        true
    }
}

/// Calls `changed`, from a thread of its own, whenever the devices may have
/// changed (one came or went, a default moved), until it returns false.
/// Only a sound server tells of its devices (PulseAudio or PipeWire's, by
/// libpulse's subscription); elsewhere, and when none answers, an error:
/// the caller compares [`list_devices`] on a timer instead.
pub fn watch_device_changes(changed: impl FnMut() -> bool + Send + 'static) -> Result<(), AudioError> {
    #[cfg(target_os = "linux")]
    if on_pulseaudio() {
        return pulse::watch_devices(changed);
    }
    drop(changed);
    Err(AudioError::NoHost("this audio system does not tell of device changes".into()))
}

/// Every input and output device, defaults marked. PulseAudio's monitor
/// sources (a copy of what a sink plays) are not microphones and are left out.
pub fn list_devices() -> Result<Vec<DeviceInfo>, AudioError> {
    let host = host()?;
    let id_of = |d: &cpal::Device| d.id().map(|i| i.to_string()).ok();
    let default_in = host.default_input_device().as_ref().and_then(id_of);
    let default_out = host.default_output_device().as_ref().and_then(id_of);
    let devices = host.devices().map_err(|e| AudioError::NoHost(e.to_string()))?;
    let mut out = Vec::new();
    for d in devices {
        let Some(id) = id_of(&d) else { continue };
        let name = d.description().map(|n| n.name().to_owned()).unwrap_or_else(|_| id.clone());
        let direction = if d.supports_output() { Direction::Output } else { Direction::Input };
        if direction == Direction::Input && id.ends_with(".monitor") {
            continue;
        }
        let is_default = match direction {
            Direction::Input => default_in.as_deref() == Some(&id),
            Direction::Output => default_out.as_deref() == Some(&id),
        };
        out.push(DeviceInfo { id, name, direction, is_default });
    }
    Ok(out)
}

fn find(host: &cpal::Host, id: Option<&str>, direction: Direction) -> Result<cpal::Device, AudioError> {
    let wanted = id.filter(|i| !i.is_empty());
    match wanted {
        None => match direction {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        }
        .ok_or_else(|| AudioError::NotFound("default".into())),
        Some(id) => {
            let devices = host.devices().map_err(|e| AudioError::NoHost(e.to_string()))?;
            for d in devices {
                let matches = d.id().is_ok_and(|i| i.to_string() == id);
                let right_way = match direction {
                    Direction::Input => d.supports_input(),
                    Direction::Output => d.supports_output(),
                };
                if matches && right_way {
                    return Ok(d);
                }
            }
            Err(AudioError::NotFound(id.to_owned()))
        }
    }
}

/// How often a playback stream ran dry, shared with its audio thread.
#[derive(Clone, Default)]
pub(crate) struct Stalls {
    /// Samples the sound card asked for when the ring was empty (a
    /// [`Playback`]'s; a pulled stream's source always answers).
    pub starved: Arc<AtomicU64>,
    /// Times the sound server ran out because we answered too late (only
    /// PulseAudio says so).
    pub underruns: Arc<AtomicU64>,
    /// Times the device asked for audio and got it.
    pub served: Arc<AtomicU64>,
}

/// A running playback stream pulled by its device: each time it asks, the
/// stream's source fills what it asked for (mono, `rate` Hz).
pub struct Speaker {
    pub rate: u32,
    /// The device id actually in use.
    pub device: String,
    /// The API the stream goes through ("libpulse" or "cpal").
    pub through: &'static str,
    failed: Arc<AtomicBool>,
    stalls: Stalls,
    _stop: mpsc::Sender<()>,
}

impl Speaker {
    /// The device went away or its stream broke (unplugged headset).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// The caller saw the stream stop taking audio: treat it as failed.
    pub fn mark_failed(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }

    /// Samples the sound card asked for when a [`Playback`]'s ring was
    /// empty (it played silence instead), since the stream opened.
    pub fn starved(&self) -> u64 {
        self.stalls.starved.load(Ordering::Relaxed)
    }

    /// Times the sound server played silence because the stream's audio
    /// came too late (the machine was busy), since the stream opened.
    pub fn underruns(&self) -> u64 {
        self.stalls.underruns.load(Ordering::Relaxed)
    }

    /// Times the device asked for audio, since the stream opened: a count
    /// that stops means a device that stopped playing.
    pub fn served(&self) -> u64 {
        self.stalls.served.load(Ordering::Relaxed)
    }

    /// The device plays: it asked for audio again after what filled its
    /// buffer at the start. A sound server can take a second or two to
    /// start a new stream (a device resuming from suspend, a Bluetooth
    /// headset, an idle null sink finishing its long block): not a stall.
    pub fn started(&self) -> bool {
        self.served() >= 2
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        let starved_ms = self.starved() * 1000 / u64::from(self.rate.max(1));
        tracing::info!(device = %self.device, starved_ms, underruns = self.underruns(), "playback stream closed");
    }
}

/// A running playback stream fed through a ring: push samples (mono,
/// `speaker.rate` Hz) into `samples`; the device plays silence when it runs dry.
pub struct Playback {
    pub samples: rtrb::Producer<i16>,
    pub speaker: Speaker,
}

/// A running capture stream: mono samples at `rate` Hz arrive in `samples`.
pub struct Capture {
    pub samples: rtrb::Consumer<i16>,
    pub rate: u32,
    pub device: String,
    /// The API the stream goes through ("libpulse" or "cpal").
    pub through: &'static str,
    /// Where a sound server's stream says that samples are waiting, once
    /// there are as many as [`Capture::tell_at`] asked for (a datagram,
    /// non-blocking; PulseAudio only), so a caller can send them at once
    /// rather than at its next step.
    #[cfg(unix)]
    pub arrived: Option<std::os::unix::net::UnixDatagram>,
    /// How many waiting samples are worth telling of.
    tell_at: Arc<std::sync::atomic::AtomicUsize>,
    failed: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    _stop: mpsc::Sender<()>,
}

impl Capture {
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// The device left the system (the stream may not say so): treat it as failed.
    pub fn mark_failed(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }

    /// [`Capture::arrived`] is told once `samples` are waiting (at least
    /// one; from the start, every piece the server hands over). A caller
    /// that needs a whole packet says so, and wakes once per packet rather
    /// than per piece: a sound server may hand a microphone over in pieces
    /// of a few milliseconds, whatever was asked for.
    pub fn tell_at(&self, samples: usize) {
        self.tell_at.store(samples.max(1), Ordering::Relaxed);
    }

    /// Microphone samples lost since the stream opened: the call read them
    /// too late, or the sound server's buffer overflowed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let dropped_ms = self.dropped() * 1000 / u64::from(self.rate.max(1));
        tracing::info!(device = %self.device, dropped_ms, "capture stream closed");
    }
}

/// Hands captured samples to the call's ring; a full ring drops them (an
/// audio thread never blocks), and what it dropped is counted in `dropped`.
pub(crate) fn push_counting(
    producer: &mut rtrb::Producer<i16>,
    samples: impl Iterator<Item = i16>,
    dropped: &AtomicU64,
) {
    let lost = samples.filter(|s| producer.push(*s).is_err()).count() as u64;
    if lost > 0 {
        dropped.fetch_add(lost, Ordering::Relaxed);
    }
}

/// Ring size: 500 ms at the stream rate, far more than the few frames in flight.
fn ring_len(rate: u32) -> usize {
    (rate / 2) as usize
}

/// Opens `device` (an id from [`list_devices`]; `None` = the default) for
/// playback of mono audio at `rate` Hz, fed through a ring.
pub fn open_playback(device: Option<&str>, rate: u32, native: bool) -> Result<Playback, AudioError> {
    // Room for the device's own rate too, when it is opened at it.
    let (samples, mut consumer) = rtrb::RingBuffer::<i16>::new(ring_len(rate.max(48_000)));
    let stalls = Stalls::default();
    let starved = stalls.starved.clone();
    let from_ring = move |out: &mut [i16], _rate: u32| {
        let mut missing = 0;
        for s in out.iter_mut() {
            *s = consumer.pop().unwrap_or_else(|_| {
                missing += 1;
                0
            });
        }
        if missing > 0 {
            starved.fetch_add(missing, Ordering::Relaxed);
        }
    };
    let speaker = open_pulled(device, rate, native, stalls, from_ring)?;
    Ok(Playback { samples, speaker })
}

/// Opens `device` (`None` = the default) for playback of mono audio at
/// `rate` Hz (or the device's own: [`Speaker::rate`]), pulled by the device:
/// `source(out, rate)` fills `out` each time it asks, on the stream's
/// thread. The source must neither block nor allocate.
pub fn open_speaker(
    device: Option<&str>,
    rate: u32,
    native: bool,
    source: impl FnMut(&mut [i16], u32) + Send + 'static,
) -> Result<Speaker, AudioError> {
    open_pulled(device, rate, native, Stalls::default(), source)
}

/// The longest request a source is asked for at once: larger ones are
/// split (100 ms at 48 kHz).
const MAX_REQUEST: usize = 4800;

fn open_pulled(
    device: Option<&str>,
    rate: u32,
    native: bool,
    stalls: Stalls,
    mut source: impl FnMut(&mut [i16], u32) + Send + 'static,
) -> Result<Speaker, AudioError> {
    #[cfg(target_os = "linux")]
    if through_libpulse() {
        let (device, rate) = pulse::resolve(device, Direction::Output, rate, native)?;
        let ((), failed, stop) = pulse::open_playback(&device, rate, source, stalls.clone())?;
        return Ok(Speaker { rate, device, through: "libpulse", failed, stalls, _stop: stop });
    }
    let served = stalls.served.clone();
    let (rate, device, failed, stop) = on_stream_thread("audio-out", device, Direction::Output, move |d, flag| {
        let supported = supported(d, Direction::Output);
        let channels = stream_channels(&supported);
        let rate = stream_rate(d, Direction::Output, &supported, rate, native);
        // 10 ms periods, two of them buffered, keep the speaker's latency
        // low (PulseAudio buffers two seconds by default).
        let config =
            cpal::StreamConfig { channels, sample_rate: rate, buffer_size: cpal::BufferSize::Fixed(rate / 100) };
        let ch = usize::from(channels);
        let mut mono = vec![0i16; MAX_REQUEST];
        let stream = d.build_output_stream::<i16, _, _>(
            config,
            move |data: &mut [i16], _| {
                for frames in data.chunks_mut(MAX_REQUEST * ch) {
                    let mono = &mut mono[..frames.len() / ch];
                    source(mono, rate);
                    for (frame, s) in frames.chunks_mut(ch).zip(mono.iter()) {
                        frame.fill(*s);
                    }
                }
                served.fetch_add(1, Ordering::Relaxed);
            },
            move |e: cpal::Error| {
                tracing::warn!(error = %e, "playback stream failed");
                flag.store(true, Ordering::Relaxed);
            },
            Some(OPEN_TIMEOUT),
        )?;
        Ok((stream, rate))
    })?;
    Ok(Speaker { rate, device, through: "cpal", failed, stalls, _stop: stop })
}

/// Opens `device` (`None` = the default) for capture of mono audio at `rate` Hz.
pub fn open_capture(device: Option<&str>, rate: u32, native: bool) -> Result<Capture, AudioError> {
    let dropped = Arc::new(AtomicU64::new(0));
    let counter = dropped.clone();
    #[cfg(target_os = "linux")]
    if through_libpulse() {
        let (device, rate) = pulse::resolve(device, Direction::Input, rate, native)?;
        let signal = std::os::unix::net::UnixDatagram::pair()
            .and_then(|(tell, hear)| {
                tell.set_nonblocking(true)?;
                hear.set_nonblocking(true)?;
                Ok((tell, hear))
            })
            .ok();
        let (tell, arrived) = signal.unzip();
        let tell_at = Arc::new(std::sync::atomic::AtomicUsize::new(1));
        let tell = tell.map(|t| (t, tell_at.clone()));
        let (samples, failed, stop) = pulse::open_capture(&device, rate, ring_len(rate), counter, tell)?;
        return Ok(Capture {
            samples,
            rate,
            device,
            through: "libpulse",
            arrived,
            tell_at,
            failed,
            dropped,
            _stop: stop,
        });
    }
    let ((samples, rate), device, failed, stop) =
        on_stream_thread("audio-in", device, Direction::Input, move |d, flag| {
            let supported = supported(d, Direction::Input);
            let channels = stream_channels(&supported);
            let rate = stream_rate(d, Direction::Input, &supported, rate, native);
            let (mut producer, consumer) = rtrb::RingBuffer::<i16>::new(ring_len(rate));
            // 20 ms fragments: PulseAudio's default would hand the microphone
            // over in blocks of up to two seconds, and cpal lets the server hold
            // no more than one fragment, so a smaller one overruns (gaps in what
            // the peer hears) whenever this thread is a little late.
            let config =
                cpal::StreamConfig { channels, sample_rate: rate, buffer_size: cpal::BufferSize::Fixed(rate / 50) };
            let ch = usize::from(channels);
            let stream = d.build_input_stream::<i16, _, _>(
                config,
                move |data: &[i16], _| {
                    // The first channel is the microphone.
                    push_counting(&mut producer, data.chunks(ch).map(|frame| frame[0]), &counter);
                },
                move |e: cpal::Error| {
                    tracing::warn!(error = %e, "capture stream failed");
                    flag.store(true, Ordering::Relaxed);
                },
                Some(OPEN_TIMEOUT),
            )?;
            Ok((stream, (consumer, rate)))
        })?;
    Ok(Capture {
        samples,
        rate,
        device,
        through: "cpal",
        tell_at: Arc::default(),
        #[cfg(unix)]
        arrived: None,
        failed,
        dropped,
        _stop: stop,
    })
}

/// What [`on_stream_thread`] hands back: the ring end, the device id in
/// use, the failure flag and the stop channel (dropping it ends the stream).
type Started<T> = (T, String, Arc<AtomicBool>, mpsc::Sender<()>);

/// Builds and plays a stream on a thread of its own (cpal streams may not
/// move between threads), which keeps it until the returned sender is
/// dropped. `build` gets the device and the flag its error callback sets.
fn on_stream_thread<T: Send + 'static>(
    thread: &str,
    device: Option<&str>,
    direction: Direction,
    build: impl FnOnce(&cpal::Device, Arc<AtomicBool>) -> Result<(cpal::Stream, T), cpal::Error> + Send + 'static,
) -> Result<Started<T>, AudioError> {
    let device = device.map(str::to_owned);
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let failed = Arc::new(AtomicBool::new(false));
    let flag = failed.clone();
    std::thread::Builder::new()
        .name(thread.into())
        .spawn(move || {
            let opened = (|| {
                let host = host()?;
                let d = find(&host, device.as_deref(), direction)?;
                let name = d.id().map(|i| i.to_string()).unwrap_or_default();
                let err = |e: cpal::Error| AudioError::Device { device: name.clone(), message: e.to_string() };
                let (stream, end) = build(&d, flag).map_err(err)?;
                stream.play().map_err(err)?;
                Ok((stream, end, name))
            })();
            match opened {
                Ok((stream, end, name)) => {
                    let _ = ready_tx.send(Ok((end, name)));
                    // Runs until the handle is dropped.
                    let _ = stop_rx.recv();
                    drop(stream);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        })
        .map_err(|e| AudioError::NoHost(e.to_string()))?;
    let (end, name) = ready_rx
        .recv_timeout(OPEN_TIMEOUT * 2)
        .map_err(|_| AudioError::NoHost("the audio system did not answer".into()))??;
    Ok((end, name, failed, stop_tx))
}

/// The rate to open `d` at: the codec's `rate`, unless the device is wanted
/// at its own (`native`) or does not take the codec's (a shared-mode device
/// on Windows or macOS runs at its mix rate); then the caller converts.
fn stream_rate(
    d: &cpal::Device,
    direction: Direction,
    supported: &[cpal::SupportedStreamConfigRange],
    rate: u32,
    native: bool,
) -> u32 {
    let own = match direction {
        Direction::Input => d.default_input_config(),
        Direction::Output => d.default_output_config(),
    }
    .ok()
    .map(|c| c.sample_rate());
    let takes = supported.iter().any(|c| c.min_sample_rate() <= rate && rate <= c.max_sample_rate());
    match own {
        Some(own) if native || !takes => own,
        _ => rate,
    }
}

/// Mono where the device takes it (PulseAudio mixes), else its own count.
fn stream_channels(supported: &[cpal::SupportedStreamConfigRange]) -> u16 {
    if supported.iter().any(|c| c.channels() == 1) { 1 } else { supported.first().map_or(2, |c| c.channels()) }
}

/// What `d` supports for `direction`: asked once per stream, for its
/// channels and its rate.
fn supported(d: &cpal::Device, direction: Direction) -> Vec<cpal::SupportedStreamConfigRange> {
    match direction {
        Direction::Input => d.supported_input_configs().map(|c| c.collect()).unwrap_or_default(),
        Direction::Output => d.supported_output_configs().map(|c| c.collect()).unwrap_or_default(),
    }
}
