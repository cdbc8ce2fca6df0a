//! A private PulseAudio server with null sinks: real audio devices without
//! hardware. `headset`, `ringer` and `speaker2` are outputs (what they play
//! is recorded from their `.monitor`); `headset_mic` is a microphone fed by
//! whatever is played into the `micfeed` sink. Loading and unloading a sink
//! is a real plug and unplug.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Pulse {
    child: Child,
    /// Silence streamed into every sink at low latency, as real devices
    /// work: null sinks otherwise run in two-second blocks, and a recording
    /// from their monitor (or the microphone fed by `micfeed`) would start
    /// seconds late. 40 ms, not less: at 10 ms the sinks ran in 2.5 ms
    /// blocks and every client underran whenever the machine was busy.
    feeds: Vec<Child>,
    dir: tempfile::TempDir,
    /// `unix:/…/native`, for PULSE_SERVER.
    pub server: String,
}

impl Pulse {
    pub fn start() -> Pulse {
        assert!(
            Command::new("pulseaudio").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success()),
            "pulseaudio is not installed: run the suite through scripts/test.sh"
        );
        let dir = super::ram_dir();
        let socket = dir.path().join("native");
        let config = format!(
            "load-module module-native-protocol-unix auth-anonymous=1 socket={socket}\n\
             load-module module-null-sink sink_name=headset sink_properties=device.description=Test_Headset\n\
             load-module module-null-sink sink_name=ringer sink_properties=device.description=Test_Ringer\n\
             load-module module-null-sink sink_name=speaker2 sink_properties=device.description=Test_Speaker2\n\
             load-module module-null-sink sink_name=micfeed sink_properties=device.description=Mic_Feed\n\
             load-module module-remap-source master=micfeed.monitor source_name=headset_mic source_properties=device.description=Test_Headset_Mic\n\
             set-default-sink headset\n\
             set-default-source headset_mic\n",
            socket = socket.display()
        );
        std::fs::write(dir.path().join("pulse.pa"), config).unwrap();
        let child = Pulse::spawn(dir.path());
        let mut pulse = Pulse { child, feeds: Vec::new(), server: format!("unix:{}", socket.display()), dir };
        pulse.serve();
        pulse
    }

    /// The server stops and a new one starts on the same socket with the
    /// same devices, as when a desktop's sound server is restarted.
    pub fn restart(&mut self) {
        for mut feed in self.feeds.drain(..) {
            let _ = feed.kill();
            let _ = feed.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Pulse::spawn(self.dir.path());
        self.serve();
    }

    fn spawn(dir: &Path) -> Child {
        let runtime = dir.join("runtime");
        std::fs::create_dir_all(&runtime).unwrap();
        Command::new("pulseaudio")
            .args(["-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no", "--system=no"])
            .arg("-F")
            .arg(dir.join("pulse.pa"))
            .arg(format!("--log-target=file:{}", dir.join("pulse.log").display()))
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("HOME", dir)
            // The suite runs inside a D-Bus session (for the keyring): parallel
            // servers would all claim org.PulseAudio1 there and all but one exit.
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pulseaudio")
    }

    /// Waits for the server to answer, then feeds its sinks.
    fn serve(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.pactl(&["info"]).0 {
            assert!(Instant::now() < deadline, "pulseaudio did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        for sink in ["micfeed", "headset", "ringer", "speaker2"] {
            let zeros = std::fs::File::open("/dev/zero").unwrap();
            self.feeds.push(
                Command::new("pacat")
                    .args(["--playback", "-d", sink, "--latency-msec=40", "--raw", "--format=s16le", "--rate=8000"])
                    .arg("--channels=1")
                    .env("PULSE_SERVER", &self.server)
                    .stdin(zeros)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("pacat"),
            );
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pulse.log")).unwrap_or_default()
    }

    /// Runs pactl against this server: (success, stdout).
    pub fn pactl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("pactl").args(args).env("PULSE_SERVER", &self.server).output().expect("pactl");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Loads a null sink (a device plugged in); returns its module index.
    pub fn plug_sink(&self, name: &str) -> String {
        let (ok, index) = self.pactl(&[
            "load-module",
            "module-null-sink",
            &format!("sink_name={name}"),
            &format!("sink_properties=device.description={name}"),
        ]);
        assert!(ok, "load-module failed");
        index.trim().to_owned()
    }

    pub fn unplug(&self, module: &str) {
        assert!(self.pactl(&["unload-module", module]).0, "unload-module {module} failed");
    }

    /// Records `source` (e.g. `headset.monitor`) to a WAV at `rate` Hz mono
    /// until the returned recorder is stopped.
    pub fn record(&self, source: &str, rate: u32, to: &Path) -> Recorder {
        let child = Command::new("parecord")
            .args(["-d", source, "--rate", &rate.to_string(), "--channels=1", "--format=s16le", "--file-format=wav"])
            .arg(to)
            .env("PULSE_SERVER", &self.server)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("parecord");
        let recorder = Recorder { child, path: to.to_owned() };
        // parecord takes a moment to connect: wait until audio (the sinks'
        // silence feed) is being written, so nothing after this is missed.
        crate::support::wait_until("parecord records", || {
            std::fs::metadata(to).map(|m| m.len()).unwrap_or(0) > 44 + 1600
        });
        recorder
    }

    /// Plays a WAV into `sink` (e.g. `micfeed`, which feeds `headset_mic`),
    /// queued 200 ms ahead: a real microphone never runs dry, and a player
    /// 20 ms ahead did on a busy machine (gaps in what baresip heard).
    pub fn play(&self, file: &Path, sink: &str) -> Child {
        Command::new("paplay")
            .args(["-d", sink, "--latency-msec=200"])
            .arg(file)
            .env("PULSE_SERVER", &self.server)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("paplay")
    }
}

pub struct Recorder {
    child: Child,
    pub path: PathBuf,
}

impl Recorder {
    /// Stops recording (SIGINT lets parecord finish the WAV header).
    pub fn stop(mut self) -> PathBuf {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let _ = self.child.wait();
        self.path.clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        for f in &mut self.feeds {
            let _ = f.kill();
            let _ = f.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Root-mean-square level of a 16-bit mono WAV's samples (0 = silence).
pub fn wav_rms(path: &Path) -> f64 {
    wav_rms_between(path, 0.0, f64::MAX)
}

/// The same between two times (seconds), for an 8 kHz recording.
pub fn wav_rms_between(path: &Path, from: f64, to: f64) -> f64 {
    let (from, to) = ((from * 8000.0) as usize, (to * 8000.0).min(1e12) as usize);
    let samples: Vec<f64> =
        wav_samples(path).into_iter().skip(from).take(to.saturating_sub(from)).map(f64::from).collect();
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|s| s * s).sum::<f64>() / samples.len() as f64).sqrt()
}

/// The 16-bit samples of a mono WAV recording (none while it has no data yet).
pub fn wav_samples(path: &Path) -> Vec<i16> {
    let bytes = std::fs::read(path).unwrap_or_default();
    // Skip the RIFF header up to the "data" chunk.
    let Some(pos) = bytes.windows(4).position(|w| w == b"data") else { return Vec::new() };
    bytes[(pos + 8).min(bytes.len())..].chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect()
}
