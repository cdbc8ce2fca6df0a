//! Ring tone files as administrators have them, made by real tools (sox,
//! lame), read back; and damaged or oversized files refused, never a panic.

use std::path::{Path, PathBuf};
use std::process::Command;

use agent_helper_media::sound_file::{MAX_FILE_BYTES, read_mono};

/// 1.5 s of a 1 kHz tone at `rate` with `channels`, as `name` (its
/// extension picks the format), made by sox; MP3 through lame.
fn made(dir: &Path, name: &str, rate: u32, channels: u32, sox_format: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let wav = dir.join(format!("{name}.source.wav"));
    let synth = |out: &Path, extra: &[&str]| {
        let status = Command::new("sox")
            .args(["-n", "-r", &rate.to_string(), "-c", &channels.to_string()])
            .args(extra)
            .arg(out)
            .args(["synth", "1.5", "sine", "1000", "vol", "0.5"])
            .status()
            .expect("sox is installed (scripts/system-deps.sh test)");
        assert!(status.success(), "sox made {}", out.display());
    };
    if name.ends_with(".mp3") {
        synth(&wav, &["-b", "16"]);
        let status = Command::new("lame")
            .args(["--quiet", "-b", "128"])
            .arg(&wav)
            .arg(&path)
            .status()
            .expect("lame is installed (scripts/system-deps.sh test)");
        assert!(status.success(), "lame made {}", path.display());
    } else {
        synth(&path, sox_format);
    }
    path
}

/// The level and the zero crossings per second of `samples` at `rate`,
/// over its middle (codecs' edges left out).
fn level_and_crossings(samples: &[i16], rate: u32) -> (f64, f64) {
    let middle = &samples[samples.len() / 4..samples.len() * 3 / 4];
    let rms = (middle.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / middle.len() as f64).sqrt();
    let crossings = middle.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    (rms, crossings as f64 * f64::from(rate) / middle.len() as f64)
}

#[test]
fn every_format_an_administrator_may_have_rings_as_the_tone_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, u32, u32, &[&str]); 7] = [
        ("pcm16.wav", 8000, 1, &["-b", "16"]),
        ("pcm24-stereo.wav", 48_000, 2, &["-b", "24"]),
        ("float-stereo.wav", 44_100, 2, &["-e", "floating-point", "-b", "32"]),
        ("pcm8.wav", 22_050, 1, &["-b", "8", "-e", "unsigned-integer"]),
        ("tone.flac", 44_100, 2, &[]),
        ("tone.ogg", 44_100, 2, &[]),
        ("tone.mp3", 44_100, 2, &[]),
    ];
    for (name, rate, channels, format) in cases {
        let path = made(dir.path(), name, rate, channels, format);
        let sound = read_mono(&path, 60).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(sound.rate, rate, "{name}");
        // 1.5 s (MP3 and Vorbis pad a little at the edges).
        let seconds = sound.samples.len() as f64 / f64::from(rate);
        assert!((1.45..1.6).contains(&seconds), "{name}: {seconds} s");
        // sox's "vol 0.5": peak 16383, RMS about 11585, whatever the channels.
        let (rms, crossings) = level_and_crossings(&sound.samples, rate);
        assert!((10_000.0..13_000.0).contains(&rms), "{name}: RMS {rms}");
        assert!((1980.0..2020.0).contains(&crossings), "{name}: {crossings} crossings/s");
    }
}

#[test]
fn at_most_the_asked_seconds_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    let path = made(dir.path(), "long.wav", 8000, 1, &["-b", "16"]);
    assert_eq!(read_mono(&path, 1).unwrap().samples.len(), 8000);
}

#[test]
fn damaged_oversized_and_foreign_files_are_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let wav = std::fs::read(made(dir.path(), "good.wav", 8000, 1, &["-b", "16"])).unwrap();
    let mp3 = std::fs::read(made(dir.path(), "good.mp3", 44_100, 2, &[])).unwrap();
    let bad = dir.path().join("bad.mp3");
    for (what, bytes) in [
        ("empty", Vec::new()),
        ("text", b"not a sound at all".to_vec()),
        ("a WAV head only", wav[..44].to_vec()),
        ("an MP3's first bytes", mp3[..40].to_vec()),
    ] {
        std::fs::write(&bad, &bytes).unwrap();
        let e = read_mono(&bad, 60).expect_err(what);
        assert!(e.contains("bad.mp3"), "{what}: {e}");
    }
    // Larger than a sound file may be: refused before it is read.
    let huge = dir.path().join("huge.wav");
    std::fs::File::create(&huge).unwrap().set_len(MAX_FILE_BYTES + 1).unwrap();
    let e = read_mono(&huge, 60).unwrap_err();
    assert!(e.contains("over the"), "{e}");
    assert!(read_mono(&dir.path().join("missing.ogg"), 60).is_err());
}

/// Flipped bytes, cut files and junk inside real WAV, MP3 and FLAC files:
/// each is read or refused, and nothing panics (a deterministic stand-in
/// for a fuzzer, run on every test).
#[test]
fn mutated_sound_files_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = [
        std::fs::read(made(dir.path(), "m.wav", 8000, 2, &["-b", "16"])).unwrap(),
        std::fs::read(made(dir.path(), "m.mp3", 22_050, 1, &[])).unwrap(),
        std::fs::read(made(dir.path(), "m.flac", 16_000, 1, &[])).unwrap(),
    ];
    let path = dir.path().join("mutant");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut read, mut refused) = (0, 0);
    for round in 0..600 {
        let mut bytes = seeds[round % seeds.len()].clone();
        match next() % 3 {
            0 => {
                for _ in 0..1 + next() % 8 {
                    let at = (next() % bytes.len() as u64) as usize;
                    bytes[at] ^= 1 << (next() % 8);
                }
            }
            1 => bytes.truncate((next() % bytes.len() as u64) as usize),
            _ => {
                let at = (next() % bytes.len() as u64) as usize;
                let junk: Vec<u8> = (0..1 + next() % 64).map(|_| next() as u8).collect();
                bytes.splice(at..at, junk);
            }
        }
        std::fs::write(&path, &bytes).unwrap();
        match read_mono(&path, 60) {
            Ok(sound) => {
                assert!(sound.samples.len() <= sound.rate as usize * 60);
                read += 1;
            }
            Err(_) => refused += 1,
        }
    }
    assert!(read > 0 && refused > 0, "read {read}, refused {refused}");
}
