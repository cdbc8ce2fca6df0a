//! Call streams on a PulseAudio server (or PipeWire's) through libpulse's
//! simple API, one blocking thread per stream. Devices are still listed and
//! chosen through cpal; only the streams go this way, because cpal's
//! PulseAudio host (the pure-Rust `pulseaudio` crate) zero-fills a 1 MiB
//! buffer on every socket read, which cost a call 8–14 % of a core
//! (docs/decisions.md).
//!
//! The loops neither allocate nor take locks of ours: playback takes what the
//! ring holds (silence when it runs dry) 10 ms at a time and blocks in
//! libpulse until the server has room, so the sound card paces it; capture
//! blocks until 20 ms arrived and pushes them (dropping when the ring is full).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use libpulse_binding::def::BufferAttr;
use libpulse_binding::sample::{Format, Spec};
use libpulse_binding::stream::Direction as PaDirection;
use libpulse_simple_binding::Simple;

use crate::{AudioError, Direction, OPEN_TIMEOUT};

/// Server-side playback buffer: what the speaker adds to the call's delay,
/// and the margin against a late wakeup of the playback thread.
const PLAYBACK_BUFFER_MS: u32 = 40;
/// Playback is written in pieces of this much.
const PLAYBACK_CHUNK_MS: u32 = 10;
/// The microphone is handed over in pieces of this much (one codec frame).
const CAPTURE_CHUNK_MS: u32 = 20;

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

/// Opens `device_id` (already resolved) for mono 16-bit playback at `rate`:
/// the ring's producer end, the failure flag, the stop sender.
pub(crate) fn open_playback(
    device_id: &str,
    rate: u32,
    ring: usize,
) -> Result<Running<rtrb::Producer<i16>>, AudioError> {
    let (producer, mut consumer) = rtrb::RingBuffer::<i16>::new(ring);
    let attr = BufferAttr {
        maxlength: u32::MAX,
        tlength: bytes_for(rate, PLAYBACK_BUFFER_MS),
        prebuf: u32::MAX,
        minreq: bytes_for(rate, PLAYBACK_CHUNK_MS),
        fragsize: u32::MAX,
    };
    let mut chunk = vec![0i16; (rate * PLAYBACK_CHUNK_MS / 1000) as usize];
    let mut bytes = vec![0u8; chunk.len() * 2];
    let (failed, stop) =
        on_thread("audio-out", device_id, rate, PaDirection::Playback, attr, move |simple: &Simple| {
            for s in chunk.iter_mut() {
                *s = consumer.pop().unwrap_or(0);
            }
            for (b, s) in bytes.chunks_exact_mut(2).zip(&chunk) {
                b.copy_from_slice(&s.to_ne_bytes());
            }
            simple.write(&bytes)
        })?;
    Ok((producer, failed, stop))
}

/// Opens `device_id` (already resolved) for mono 16-bit capture at `rate`.
pub(crate) fn open_capture(
    device_id: &str,
    rate: u32,
    ring: usize,
) -> Result<Running<rtrb::Consumer<i16>>, AudioError> {
    let (mut producer, consumer) = rtrb::RingBuffer::<i16>::new(ring);
    let attr = BufferAttr {
        maxlength: u32::MAX,
        tlength: u32::MAX,
        prebuf: u32::MAX,
        minreq: u32::MAX,
        fragsize: bytes_for(rate, CAPTURE_CHUNK_MS),
    };
    let mut bytes = vec![0u8; bytes_for(rate, CAPTURE_CHUNK_MS) as usize];
    let (failed, stop) = on_thread("audio-in", device_id, rate, PaDirection::Record, attr, move |simple: &Simple| {
        simple.read(&mut bytes)?;
        for b in bytes.chunks_exact(2) {
            // A full ring drops (never blocks).
            let _ = producer.push(i16::from_ne_bytes([b[0], b[1]]));
        }
        Ok(())
    })?;
    Ok((consumer, failed, stop))
}

/// Connects a stream on a thread of its own and runs `step` there until the
/// stop sender is dropped or the stream fails (the flag is then set).
fn on_thread(
    thread: &str,
    device_id: &str,
    rate: u32,
    direction: PaDirection,
    attr: BufferAttr,
    mut step: impl FnMut(&Simple) -> Result<(), libpulse_binding::error::PAErr> + Send + 'static,
) -> Result<(Arc<AtomicBool>, mpsc::Sender<()>), AudioError> {
    let spec = Spec { format: Format::S16NE, channels: 1, rate };
    let device = pulse_name(device_id).to_owned();
    let id = device_id.to_owned();
    let failed = Arc::new(AtomicBool::new(false));
    let flag = failed.clone();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name(thread.into())
        .spawn(move || {
            let stream_name = if direction == PaDirection::Playback { "call audio" } else { "call microphone" };
            let simple = match Simple::new(
                None,
                "Agent Helper",
                direction,
                Some(&device),
                stream_name,
                &spec,
                None,
                Some(&attr),
            ) {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready_tx.send(Err(AudioError::Device {
                        device: id,
                        message: e.to_string().unwrap_or_else(|| format!("{e:?}")),
                    }));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            while let Err(mpsc::TryRecvError::Empty) = stop_rx.try_recv() {
                if let Err(e) = step(&simple) {
                    tracing::warn!(device = %id, error = %e, "audio stream failed");
                    flag.store(true, Ordering::Relaxed);
                    return;
                }
            }
        })
        .map_err(|e| AudioError::NoHost(e.to_string()))?;
    ready_rx
        .recv_timeout(OPEN_TIMEOUT * 2)
        .map_err(|_| AudioError::NoHost("the audio system did not answer".into()))??;
    Ok((failed, stop_tx))
}

/// The device's id for `direction`, resolved through cpal (the default when
/// none is asked for), so a missing device is `NotFound` as on other hosts.
pub(crate) fn resolve(device: Option<&str>, direction: Direction) -> Result<String, AudioError> {
    use cpal::traits::DeviceTrait;
    let host = crate::host()?;
    let d = crate::find(&host, device, direction)?;
    d.id().map(|i| i.to_string()).map_err(|e| AudioError::NoHost(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_map_to_pulseaudio_names() {
        assert_eq!(pulse_name("pulseaudio:alsa_output.usb-Jabra.analog-stereo"), "alsa_output.usb-Jabra.analog-stereo");
        assert_eq!(pulse_name("headset"), "headset");
        assert_eq!(bytes_for(16_000, 20), 640);
        assert_eq!(bytes_for(8000, 10), 160);
    }
}
