//! sipp (the `sip-tester` package) running one of the scenarios in
//! `tests/sipp/` against the test's kamailio.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sipp {
    child: Child,
    pub port: u16,
    errors: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/sipp").join(name)
}

impl Sipp {
    /// A sipp UAS on its own port, reached through kamailio as `sipp-<port>`.
    /// Returns once sipp listens, so a call placed right after cannot arrive
    /// early. Ports are picked free, but a parallel test can take one before
    /// sipp binds it; then sipp exits and is started again on new ports.
    pub fn uas(name: &str) -> Sipp {
        Self::uas_with(name, &[])
    }

    /// [`Self::uas`] with more of sipp's arguments (`-key NAME VALUE` for a
    /// scenario's `[NAME]`).
    pub fn uas_with(name: &str, extra: &[&str]) -> Sipp {
        for _ in 0..4 {
            let mut sipp = Self::spawn(name, extra);
            if sipp.wait_listening() {
                return sipp;
            }
            let _ = sipp.child.kill();
        }
        panic!("sipp {name} did not start (4 attempts)");
    }

    /// Polls the kernel's UDP socket table until sipp's port is bound; `false`
    /// when sipp exits first or does not bind in time.
    fn wait_listening(&mut self) -> bool {
        let needle = format!("0100007F:{:04X}", self.port);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::fs::read_to_string("/proc/net/udp").unwrap_or_default().contains(&needle) {
                return true;
            }
            if self.child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A sipp UAC calling `user` through kamailio on `kamailio_port`.
    pub fn uac(name: &str, user: &str, kamailio_port: u16) -> Sipp {
        Self::spawn(name, &["-s", user, &format!("127.0.0.1:{kamailio_port}")])
    }

    fn spawn(name: &str, extra: &[&str]) -> Sipp {
        let dir = tempfile::tempdir().unwrap();
        let port = free_udp_port();
        let errors = dir.path().join("errors.log");
        let child = Command::new("sipp")
            .arg("-sf")
            .arg(scenario(name))
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-mp", &free_udp_port().to_string()])
            .args(["-m", "1", "-timeout", "90", "-timeout_error", "-nostdin", "-trace_err", "-error_file"])
            .arg(&errors)
            .args(extra)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp (package sip-tester) must be installed: run through scripts/test.sh");
        Sipp { child, port, errors, _dir: dir }
    }

    /// The helper's target for this UAS.
    pub fn target(&self) -> String {
        format!("sipp-{}", self.port)
    }

    /// Waits for the scenario to end and asserts that it passed.
    pub fn assert_passed(mut self) {
        let deadline = Instant::now() + Duration::from_secs(100);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "sipp did not finish");
            std::thread::sleep(Duration::from_millis(20));
        };
        let errors = std::fs::read_to_string(&self.errors).unwrap_or_default();
        assert!(status.success(), "sipp scenario failed ({status}):\n{errors}");
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
