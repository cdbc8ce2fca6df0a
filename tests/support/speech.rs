//! Speech for voice-quality tests (espeak-ng, resampled by sox) and its
//! PESQ score (ITU-T P.862, the `pesq` Python package).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Speech {
    _dir: tempfile::TempDir,
    /// 8 kHz mono: the reference PESQ compares against.
    pub reference8: PathBuf,
    /// The same with 1 s of silence before and 30 s after: what a sender
    /// plays (baresip hangs up when its file ends).
    pub padded8: PathBuf,
    /// With 0.5 s before and 2 s after: for `paplay` into a microphone.
    pub spoken8: PathBuf,
    /// Wideband: the 16 kHz reference, its spoken form, and 48 kHz stereo
    /// with the padding (baresip's Opus source).
    pub reference16: PathBuf,
    pub spoken16: PathBuf,
    /// As `padded8`, at 16 kHz (baresip's G.722 source).
    pub padded16: PathBuf,
    pub padded48s: PathBuf,
}

const TEXT: &str = "The quick brown fox jumps over the lazy dog. Contact center agents rely on clear audio \
                    for every customer call. Please hold while I transfer you to the billing department.";

impl Speech {
    pub fn make() -> Speech {
        let dir = super::ram_dir();
        let raw = dir.path().join("raw.wav");
        let ok = Command::new("espeak-ng").arg("-w").arg(&raw).arg(TEXT).status().is_ok_and(|s| s.success());
        assert!(ok, "espeak-ng failed: run the suite through scripts/test.sh");
        let reference8 = dir.path().join("speech8.wav");
        let padded8 = dir.path().join("speech8_padded.wav");
        sox(&[
            raw.as_os_str(),
            "-r".as_ref(),
            "8000".as_ref(),
            "-c".as_ref(),
            "1".as_ref(),
            "-b".as_ref(),
            "16".as_ref(),
            reference8.as_os_str(),
        ]);
        sox(&[reference8.as_os_str(), padded8.as_os_str(), "pad".as_ref(), "1".as_ref(), "30".as_ref()]);
        let spoken8 = dir.path().join("speech8_spoken.wav");
        sox(&[reference8.as_os_str(), spoken8.as_os_str(), "pad".as_ref(), "0.5".as_ref(), "2".as_ref()]);
        let reference16 = dir.path().join("speech16.wav");
        sox(&[
            raw.as_os_str(),
            "-r".as_ref(),
            "16000".as_ref(),
            "-c".as_ref(),
            "1".as_ref(),
            "-b".as_ref(),
            "16".as_ref(),
            reference16.as_os_str(),
        ]);
        let spoken16 = dir.path().join("speech16_spoken.wav");
        sox(&[reference16.as_os_str(), spoken16.as_os_str(), "pad".as_ref(), "0.5".as_ref(), "2".as_ref()]);
        let padded16 = dir.path().join("speech16_padded.wav");
        sox(&[reference16.as_os_str(), padded16.as_os_str(), "pad".as_ref(), "1".as_ref(), "30".as_ref()]);
        let padded48s = dir.path().join("speech48s_padded.wav");
        sox(&[
            raw.as_os_str(),
            "-r".as_ref(),
            "48000".as_ref(),
            "-c".as_ref(),
            "2".as_ref(),
            "-b".as_ref(),
            "16".as_ref(),
            padded48s.as_os_str(),
            "pad".as_ref(),
            "1".as_ref(),
            "30".as_ref(),
        ]);
        Speech { _dir: dir, reference8, padded8, spoken8, reference16, spoken16, padded16, padded48s }
    }

    /// Seconds of speech in the reference.
    pub fn seconds(&self) -> f64 {
        let out = Command::new("soxi").arg("-D").arg(&self.reference8).output().expect("soxi");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0.0)
    }
}

fn sox(args: &[&std::ffi::OsStr]) {
    assert!(Command::new("sox").args(args).status().is_ok_and(|s| s.success()), "sox {args:?} failed");
}

/// PESQ of `degraded` against `reference`, `mode` "nb" or "wb".
pub fn pesq(reference: &Path, degraded: &Path, mode: &str) -> f64 {
    let script = r#"
import sys, numpy as np, soundfile as sf
from pesq import pesq
from scipy.signal import resample_poly
ref, rs = sf.read(sys.argv[1]); deg, ds = sf.read(sys.argv[2])
if ref.ndim > 1: ref = ref[:, 0]
if deg.ndim > 1: deg = deg[:, 0]
fs = 8000 if sys.argv[3] == 'nb' else 16000
if rs != fs: ref = resample_poly(ref, fs, rs)
if ds != fs: deg = resample_poly(deg, fs, ds)
# Cut the degraded recording to where the speech is, around the reference's length.
env = np.convolve(np.abs(deg), np.ones(400) / 400, mode='same')
active = np.nonzero(env > 0.01 * max(env.max(), 1e-9))[0]
start = max(int(active[0]) - fs // 4, 0) if len(active) else 0
deg = deg[start:start + len(ref) + fs // 2]
print(f"{pesq(fs, ref, deg, sys.argv[3]):.3f}")
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(reference)
        .arg(degraded)
        .arg(mode)
        .output()
        .expect("python3 with pesq: run the suite through scripts/test.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().unwrap_or_else(|_| panic!("pesq failed: {} {}", text, String::from_utf8_lossy(&out.stderr)))
}
