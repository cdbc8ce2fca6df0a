//! A real kamailio registrar with digest authentication on 127.0.0.1, started
//! by the test. Every REGISTER it receives is logged as an `AH-REGISTER` line
//! (with or without credentials, and its Expires), so tests can count attempts.
#![allow(dead_code)]

use std::net::UdpSocket;
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
            .arg("-f").arg(&cfg)
            .arg("-P").arg(dir.path().join("kamailio.pid"))
            .arg("-w").arg(dir.path())
            .args(["-DD", "-E"])
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
            if let Ok(n) = sock.recv(&mut buf) {
                if buf[..n].starts_with(b"SIP/2.0 200") {
                    return;
                }
            }
        }
        panic!("kamailio did not answer on port {}: {}", self.port, std::fs::read_to_string(&self.log).unwrap_or_default());
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

impl Drop for Kamailio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA and a server certificate for 127.0.0.1 / localhost, with the openssl CLI.
fn make_certificates(dir: &std::path::Path) -> PathBuf {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=Agent Helper Test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    run(&["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"]);
    run(&["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-copy_extensions", "copy"]);
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

fn config(port: u16, password: &str, tls: Option<(u16, &std::path::Path)>) -> String {
    let (tls_listen, tls_module) = match tls {
        Some((tls_port, dir)) => (
            format!("enable_tls=yes\nlisten=tls:127.0.0.1:{tls_port}\n"),
            format!("loadmodule \"tls.so\"\nmodparam(\"tls\", \"config\", \"{}/tls.cfg\")\n", dir.display()),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        r#"#!KAMAILIO
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
{tls_listen}children=2
tcp_children=2
log_stderror=yes
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
{tls_module}loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "sanity.so"
loadmodule "auth.so"
modparam("auth", "algorithm", "MD5")
modparam("registrar", "max_expires", 3600)
request_route {{
  if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483","Too Many Hops"); exit; }}
  force_rport();
  if (is_method("OPTIONS")) {{ sl_send_reply("200","OK"); exit; }}
  if (is_method("REGISTER")) {{
    if (is_present_hf("Authorization")) {{ $var(auth) = "yes"; }} else {{ $var(auth) = "no"; }}
    xlog("L_ERR", "AH-REGISTER auth=$var(auth) expires=$hdr(Expires) proto=$proto user=$fU\n");
    if (!pv_www_authenticate("$td", "{password}", "0")) {{ www_challenge("$td", "0"); exit; }}
    consume_credentials();
    if (!save("location")) sl_reply_error();
    exit;
  }}
  if (has_totag()) {{
    if (loose_route()) {{ t_relay(); exit; }}
    if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    sl_send_reply("404","Not here");
    exit;
  }}
  if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
  xlog("L_ERR", "AH-CALL $rm from=$fU to=$rU\n");
  record_route();
  if (!lookup("location")) {{ sl_send_reply("404","Not Found"); exit; }}
  t_relay();
}}
"#
    )
}
