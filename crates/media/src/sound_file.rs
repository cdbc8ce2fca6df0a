//! Sound files an administrator gives the helper (a ring tone): WAV (any PCM
//! or float format), MP3, Ogg Vorbis and FLAC through symphonia, mixed down
//! to one channel. A file is hostile input: its size and the audio taken from
//! it are bounded, a damaged packet is skipped, and anything else is an
//! error that names the file.

use std::path::Path;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

/// Files larger than this are refused before anything is decoded.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Sample rates a sound file may have.
const RATES: std::ops::RangeInclusive<u32> = 4000..=192_000;

/// One channel of 16-bit audio and its sample rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Sound {
    pub samples: Vec<i16>,
    pub rate: u32,
}

/// Reads `path` (at most [`MAX_FILE_BYTES`]) and decodes at most
/// `max_seconds` of it, the channels averaged.
pub fn read_mono(path: &Path, max_seconds: u32) -> Result<Sound, String> {
    let name = path.display();
    let size = std::fs::metadata(path).map_err(|e| format!("{name}: {e}"))?.len();
    if size > MAX_FILE_BYTES {
        return Err(format!("{name}: {size} bytes, over the {MAX_FILE_BYTES} a sound file may have"));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("{name}: {e}"))?;
    decode(bytes, path.extension().and_then(|e| e.to_str()), max_seconds).map_err(|e| format!("{name}: {e}"))
}

/// The decoding itself, on bytes in memory (`extension` a hint only).
fn decode(mut bytes: Vec<u8>, extension: Option<&str>, max_seconds: u32) -> Result<Sound, String> {
    // A WAV written as a stream (a pipe, a recorder cut off) says 0 or
    // 0xFFFFFFFF for its length: it is as long as the file.
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE" {
        let told = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if told == 0 || told == u32::MAX {
            let real = u32::try_from(bytes.len() - 8).unwrap_or(u32::MAX);
            bytes[4..8].copy_from_slice(&real.to_le_bytes());
        }
    }
    let source = MediaSourceStream::new(Box::new(std::io::Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    if let Some(e) = extension {
        hint.with_extension(e);
    }
    let mut format = symphonia::default::get_probe()
        .probe(&hint, source, FormatOptions::default(), MetadataOptions::default())
        .map_err(|e| format!("not a sound file we read (WAV, MP3, Ogg Vorbis, FLAC): {e}"))?;
    let track = format.default_track(TrackType::Audio).ok_or("no audio in it")?;
    let params = track.codec_params.as_ref().and_then(|p| p.audio()).ok_or("no audio in it")?;
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| format!("its audio is in a format we do not read: {e}"))?;
    let track_id = track.id;
    let (mut samples, mut rate, mut interleaved) = (Vec::new(), 0u32, Vec::<f32>::new());
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // Chained Ogg streams and the like: what came so far is the tone.
            Err(Error::ResetRequired) => break,
            Err(e) if samples.is_empty() => return Err(format!("unreadable: {e}")),
            Err(_) => break,
        };
        if packet.track_id != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            Err(Error::DecodeError(_) | Error::IoError(_)) => continue,
            Err(e) => return Err(format!("unreadable: {e}")),
        };
        let spec = decoded.spec();
        let channels = spec.channels().count();
        if channels == 0 || !RATES.contains(&spec.rate()) || (rate != 0 && spec.rate() != rate) {
            return Err(format!("{} channels at {} Hz is not a sound we play", channels, spec.rate()));
        }
        rate = spec.rate();
        decoded.copy_to_vec_interleaved(&mut interleaved);
        let most = rate as usize * max_seconds as usize;
        let mixed = interleaved.chunks_exact(channels).map(|frame| {
            let mean = frame.iter().sum::<f32>() / channels as f32;
            (mean.clamp(-1.0, 1.0) * f32::from(i16::MAX)) as i16
        });
        samples.extend(mixed.take(most.saturating_sub(samples.len())));
        if samples.len() >= most {
            break;
        }
    }
    if samples.is_empty() {
        return Err("no audio in it".into());
    }
    Ok(Sound { samples, rate })
}
