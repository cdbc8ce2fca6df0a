//! A real kamailio registrar with digest authentication on 127.0.0.1, started
//! by the test. Every REGISTER it receives is logged as an `AH-REGISTER` line
//! (with or without credentials, and its Expires), so tests can count attempts.
#![allow(dead_code)]

use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Kamailio {
    child: Child,
    pub port: u16,
    /// TLS listener and the CA that signed its certificate (for 127.0.0.1), when started with TLS.
    pub tls: Option<(u16, PathBuf)>,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A port free for both UDP and TCP on 127.0.0.1.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Kamailio {
    pub fn start(password: &str) -> Kamailio {
        Self::start_with(password, false)
    }

    /// Also listens for TLS, with a certificate for 127.0.0.1 from a CA made here.
    pub fn start_with_tls(password: &str) -> Kamailio {
        Self::start_with(password, true)
    }

    fn start_with(password: &str, tls: bool) -> Kamailio {
        assert!(
            Command::new("kamailio").arg("-v").stdout(Stdio::null()).status().is_ok_and(|s| s.success()),
            "kamailio is not installed: run the suite through scripts/test.sh"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let tls = tls.then(|| (free_port(), make_certificates(dir.path())));
        let cfg = dir.path().join("kamailio.cfg");
        std::fs::write(&cfg, config(port, password, tls.as_ref().map(|(p, _)| (*p, dir.path())))).unwrap();
        let log = dir.path().join("kamailio.log");
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(&cfg)
            .arg("-P")
            .arg(dir.path().join("kamailio.pid"))
            .arg("-w")
            .arg(dir.path())
            .args(["-DD", "-E"])
            // Its own process group: kamailio forks workers, and stopping or
            // killing "the server" must reach all of them.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start kamailio");
        let k = Kamailio { child, port, tls, log, _dir: dir };
        k.wait_ready();
        k
    }

    /// Sends OPTIONS until kamailio answers (each try waits up to 200 ms for it).
    fn wait_ready(&self) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let me = sock.local_addr().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let options = format!(
            "OPTIONS sip:127.0.0.1:{p} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKready\r\nMax-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1:{p}>\r\nCall-ID: ready@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            p = self.port
        );
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            sock.send_to(options.as_bytes(), ("127.0.0.1", self.port)).unwrap();
            if let Ok(n) = sock.recv(&mut buf)
                && buf[..n].starts_with(b"SIP/2.0 200")
            {
                return;
            }
        }
        panic!(
            "kamailio did not answer on port {}: {}",
            self.port,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// The `AH-REGISTER` lines logged so far.
    pub fn registers(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once("AH-REGISTER ").map(|(_, rest)| rest.to_owned()))
            .collect()
    }
}

impl Kamailio {
    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the process group this harness created.
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), signal) };
    }

    /// Freezes every kamailio process: the server is there (its ports stay
    /// bound) but answers nothing, like a hung or unplugged machine.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A test CA and a server certificate for 127.0.0.1 / localhost, with the openssl CLI.
fn make_certificates(dir: &std::path::Path) -> PathBuf {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Agent Helper Test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-copy_extensions",
        "copy",
    ]);
    std::fs::write(
        dir.join("tls.cfg"),
        format!(
            "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\nprivate_key = {d}/server.key\ncertificate = {d}/server.pem\n\n[client:default]\nverify_certificate = no\nrequire_certificate = no\n",
            d = dir.display()
        ),
    )
    .unwrap();
    dir.join("ca.pem")
}

/// The registrar/proxy configuration shared with `scripts/demo.sh`:
/// `tests/rigs/kamailio.cfg` with its placeholders filled in.
fn config(port: u16, password: &str, tls: Option<(u16, &std::path::Path)>) -> String {
    let (tls_listen, tls_module) = match tls {
        Some((tls_port, dir)) => (
            format!("enable_tls=yes\nlisten=tls:127.0.0.1:{tls_port}\n"),
            format!("loadmodule \"tls.so\"\nmodparam(\"tls\", \"config\", \"{}/tls.cfg\")\n", dir.display()),
        ),
        None => (String::new(), String::new()),
    };
    include_str!("../rigs/kamailio.cfg")
        .replace("@PORT@", &port.to_string())
        .replace("@PASSWORD@", password)
        .replace("@TLS_LISTEN@", &tls_listen)
        .replace("@TLS_MODULE@", &tls_module)
}
