//! A real baresip user agent, registered with the test's kamailio and driven
//! through its `ctrl_tcp` module (netstring-framed JSON):
//! `<len>:{"command":"dial","params":"sip:…","token":"1"},` in, responses and
//! events such as `{"event":true,"type":"CALL_ESTABLISHED",…}` out.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub struct Baresip {
    child: Child,
    ctrl: TcpStream,
    pub user: String,
    pub log: std::path::PathBuf,
    /// Its RTP port range (first, last).
    pub rtp_ports: (u16, u16),
    /// Events read while waiting for a command's response, for `wait_event`.
    pending: std::collections::VecDeque<Value>,
    _dir: tempfile::TempDir,
}

/// A port free for both TCP and UDP (baresip listens on both for SIP).
fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// How a test wants its baresip.
#[derive(Clone, Copy)]
pub struct Options<'a> {
    pub auto_answer: bool,
    /// Sent as its microphone instead of a tone (at the codec's rate: 8 kHz
    /// mono for G.711, 48 kHz stereo for `opus/48000/2`). What it hears goes
    /// to [`Baresip::heard`].
    pub source: Option<&'a std::path::Path>,
    /// baresip's `audio_codecs`.
    pub codecs: &'a str,
    /// Appended to its account line (`;mediaenc=srtp-mand` for SRTP only, …).
    pub account: &'a str,
    /// Extra lines for its config file (`opus_bitrate 16000\n`, …).
    pub config: &'a str,
    /// Real devices instead of files: ALSA through its PulseAudio plugin
    /// on this server, sink and source (baresip 1.0 has no PulseAudio module).
    pub pulse: Option<PulseDevices<'a>>,
}

#[derive(Clone, Copy)]
pub struct PulseDevices<'a> {
    pub server: &'a str,
    pub sink: &'a str,
    pub source: &'a str,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options { auto_answer: false, source: None, codecs: "PCMU,PCMA", account: "", config: "", pulse: None }
    }
}

impl Baresip {
    /// Starts baresip as `user`, registered with kamailio on `kamailio_port`.
    pub fn start(user: &str, kamailio_port: u16, password: &str, auto_answer: bool) -> Baresip {
        Self::start_with(user, kamailio_port, password, &Options { auto_answer, ..Options::default() })
    }

    /// As [`Baresip::start`], with the [`Options`] a test needs.
    pub fn start_with(user: &str, kamailio_port: u16, password: &str, options: &Options) -> Baresip {
        // Ports are picked free but can be taken by a parallel test before baresip
        // binds them; then baresip exits at once and we try again with new ones.
        for _ in 0..4 {
            if let Some(b) = Self::try_start(user, kamailio_port, password, options) {
                return b;
            }
        }
        panic!("baresip {user} did not start (4 attempts)");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The WAV baresip's sndfile module wrote what it decoded into (complete
    /// once the call ended).
    pub fn heard(&self) -> std::path::PathBuf {
        std::fs::read_dir(self._dir.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .unwrap_or_else(|| {
                panic!("baresip wrote no decoded audio: {}", std::fs::read_to_string(&self.log).unwrap_or_default())
            })
    }

    fn try_start(user: &str, kamailio_port: u16, password: &str, options: &Options) -> Option<Baresip> {
        let Options { auto_answer, source, codecs, account, config, pulse } = *options;
        let dir = super::ram_dir();
        let sip_port = free_port();
        let ctrl_port = free_port();
        // A small RTP range of its own (the loss rig drops by port: another
        // test's baresip must not share it).
        let rtp = 20000 + (sip_port % 2000) * 10;
        let tone = dir.path().join("tone8k.wav");
        match source {
            Some(s) => {
                std::fs::copy(s, &tone).unwrap();
            }
            // baresip hangs up when its source file ends: longer than any test call.
            None => write_tone_wav(&tone, 8000, 440.0, 30.0),
        }
        let d = dir.path().display();
        let devices = match pulse {
            Some(_) => "audio_player alsa,pulse\naudio_source alsa,pulse\nmodule alsa.so\n".to_owned(),
            None => format!("audio_player aufile,{d}/heard.wav\naudio_source aufile,{d}/tone8k.wav\n"),
        };
        std::fs::write(
            dir.path().join("config"),
            format!(
                "sip_listen 127.0.0.1:{sip_port}\n{devices}\
                 module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule g722.so\nmodule opus.so\nmodule aufile.so\nmodule sndfile.so\nmodule srtp.so\nsnd_path {d}\nopus_inbandfec yes\nopus_packet_loss 10\n\
                 module account.so\nmodule menu.so\nmodule ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{ctrl_port}\nrtp_ports {rtp}-{}\n{config}",
                rtp + 9,
            ),
        )
        .unwrap();
        let answer = if auto_answer { ";answermode=auto" } else { ";answermode=manual" };
        std::fs::write(
            dir.path().join("accounts"),
            // Everything goes through kamailio, as with a phone's outbound proxy.
            format!(
                "<sip:{user}@127.0.0.1:{kamailio_port};transport=udp>;auth_pass={password};outbound=\"sip:127.0.0.1:{kamailio_port};transport=udp\";regint=600;audio_codecs={codecs}{answer}{account}\n"
            ),
        )
        .unwrap();
        let log = dir.path().join("log");
        let mut command = Command::new("baresip");
        if let Some(p) = pulse {
            // libpulse takes its server and default devices from these.
            command.env("PULSE_SERVER", p.server).env("PULSE_SINK", p.sink).env("PULSE_SOURCE", p.source);
        }
        let mut child = command
            .arg("-f")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start baresip");
        // The control port opens once baresip is up; connect as soon as it does.
        let deadline = Instant::now() + Duration::from_secs(20);
        let ctrl = loop {
            match TcpStream::connect(("127.0.0.1", ctrl_port)) {
                Ok(s) => break s,
                Err(_) if child.try_wait().ok().flatten().is_some() => return None,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => panic!("baresip control port: {e}"),
            }
        };
        ctrl.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut b = Baresip {
            child,
            ctrl,
            user: user.into(),
            log,
            rtp_ports: (rtp, rtp + 9),
            pending: Default::default(),
            _dir: dir,
        };
        // REGISTER_OK may fire before the control connection exists: ask instead.
        while !b.command("reginfo", "")["data"].as_str().unwrap_or_default().contains("OK") {
            assert!(Instant::now() < deadline, "baresip {user} did not register");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(b)
    }

    fn read_netstring(&mut self) -> Value {
        let mut len = String::new();
        let mut byte = [0u8; 1];
        loop {
            self.ctrl.read_exact(&mut byte).expect("baresip control stream");
            match byte[0] {
                b':' => break,
                b if b.is_ascii_digit() => len.push(b as char),
                _ => {}
            }
        }
        let mut body = vec![0u8; len.parse().unwrap()];
        self.ctrl.read_exact(&mut body).unwrap();
        self.ctrl.read_exact(&mut byte).unwrap(); // trailing ','
        serde_json::from_slice(&body).unwrap()
    }

    /// Sends a command; events arriving before its response are kept for
    /// [`Baresip::wait_event`] (a call may be established before `dial` answers).
    pub fn command(&mut self, command: &str, params: &str) -> Value {
        let msg = json!({ "command": command, "params": params, "token": "t" }).to_string();
        self.ctrl.write_all(format!("{}:{msg},", msg.len()).as_bytes()).unwrap();
        loop {
            let v = self.read_netstring();
            if v["response"] == true {
                return v;
            }
            if v["event"] == true {
                self.pending.push_back(v);
            }
        }
    }

    /// The next event of `kind` (e.g. `CALL_ESTABLISHED`), skipping others.
    pub fn wait_event(&mut self, kind: &str) -> Value {
        while let Some(v) = self.pending.pop_front() {
            if v["type"] == kind {
                return v;
            }
        }
        loop {
            let v = self.read_netstring();
            if v["event"] == true && v["type"] == kind {
                return v;
            }
        }
    }
}

/// A mono 16-bit PCM WAV with a sine tone: baresip's aufile needs the codec's
/// rate (8 kHz for G.711). Generated here, never committed.
pub fn write_tone_wav(path: &std::path::Path, rate: u32, freq: f64, seconds: f64) {
    let samples: Vec<i16> = (0..(f64::from(rate) * seconds) as u32)
        .map(|n| ((2.0 * std::f64::consts::PI * freq * f64::from(n) / f64::from(rate)).sin() * 8000.0) as i16)
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        wav.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, wav).unwrap();
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
