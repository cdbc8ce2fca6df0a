//! The softphone driver: the one task that owns the SIP transport and timers.
//! It feeds the sans-IO [`Registration`] and reports to the engine; it makes
//! no decisions of its own beyond reconnecting a lost TCP connection.
//!
//! Today it registers one account with the first configured server over UDP,
//! TCP or TLS ("secure phone": rustls, the system roots plus `sip.tls_ca_file`,
//! the server's name or IP checked against its certificate). Inbound requests
//! are answered statelessly until calls arrive: OPTIONS 200, INVITE 480,
//! anything else 501.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_helper_config::{SipConfig, Transport as ConfigTransport};
use agent_helper_protocol::Password;
use agent_helper_sip::framing::{Framed, StreamFramer, MAX_DATAGRAM};
use agent_helper_sip::ids::RandomIds;
use agent_helper_sip::registration::{Registration, RegistrationConfig, RegistrationOutput, RegistrationState, Transport};
use agent_helper_sip::transaction::Timers;
use rsip::{SipMessage, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};

/// How long an exiting helper waits for its unregistration to be answered.
const UNREGISTER_GRACE: Duration = Duration::from_secs(3);

pub enum PhoneCommand {
    Register { username: String, password: Password, sip: SipConfig },
    Unregister,
    Shutdown(oneshot::Sender<()>),
}

#[derive(Debug, Clone)]
pub enum PhoneEvent {
    Registration { state: RegistrationState, server: String, transport: Transport },
    /// The server could not be reached at all (DNS, connection refused).
    Unreachable { server: String, message: String },
}

pub fn spawn(events: mpsc::Sender<PhoneEvent>) -> mpsc::Sender<PhoneCommand> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(run(rx, events));
    tx
}

enum Link {
    /// The socket and one receive buffer reused for every datagram.
    Udp(UdpSocket, Vec<u8>),
    /// TCP or TLS: a writer, and messages cut from the stream by a reader task.
    Stream { writer: Box<dyn AsyncWrite + Send + Unpin>, incoming: mpsc::Receiver<Vec<u8>> },
}

impl Link {
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Link::Udp(s, _) => s.send(bytes).await.map(|_| ()),
            Link::Stream { writer, .. } => {
                writer.write_all(bytes).await?;
                writer.flush().await
            }
        }
    }

    /// The next message; `None` when a TCP connection closed.
    async fn recv(&mut self) -> Option<Vec<u8>> {
        match self {
            Link::Udp(s, buf) => {
                loop {
                    match s.recv(buf).await {
                        Ok(n) => return Some(buf[..n].to_vec()),
                        // ICMP port unreachable on a connected socket: keep listening;
                        // the transaction's timers decide when the server is gone.
                        Err(e) => tracing::debug!(error = %e, "udp receive"),
                    }
                }
            }
            Link::Stream { incoming, .. } => incoming.recv().await,
        }
    }
}

struct Active {
    reg: Registration,
    link: Link,
    server: String,
    transport: Transport,
    /// Stop once the binding is removed (logout, shutdown).
    stopping: bool,
}

struct Target {
    username: String,
    password: Password,
    sip: SipConfig,
}

async fn run(mut commands: mpsc::Receiver<PhoneCommand>, events: mpsc::Sender<PhoneEvent>) {
    let mut active: Option<Active> = None;
    let mut target: Option<Target> = None;
    let mut reconnect_at: Option<Instant> = None;
    let mut backoff = Duration::ZERO;
    loop {
        let deadline = [active.as_ref().and_then(|a| a.reg.poll_timeout()), reconnect_at].into_iter().flatten().min();
        tokio::select! {
            cmd = commands.recv() => match cmd {
                None => break,
                Some(PhoneCommand::Register { username, password, sip }) => {
                    active = None;
                    backoff = Duration::from_secs(u64::from(sip.reconnect_min));
                    target = Some(Target { username, password, sip });
                    reconnect_at = Some(Instant::now());
                }
                Some(PhoneCommand::Unregister) => {
                    target = None;
                    reconnect_at = None;
                    if let Some(a) = &mut active {
                        a.stopping = true;
                        a.reg.stop(Instant::now());
                        if flush(a, &events).await {
                            active = None;
                        }
                    }
                }
                Some(PhoneCommand::Shutdown(done)) => {
                    if let Some(mut a) = active.take() {
                        a.stopping = true;
                        a.reg.stop(Instant::now());
                        let _ = tokio::time::timeout(UNREGISTER_GRACE, finish(&mut a, &events)).await;
                    }
                    let _ = done.send(());
                    break;
                }
            },
            incoming = async { active.as_mut().expect("guarded").link.recv().await }, if active.is_some() => {
                let Some(a) = active.as_mut() else { continue };
                match incoming {
                    Some(bytes) => {
                        handle_incoming(a, &bytes).await;
                        if flush(a, &events).await {
                            active = None;
                        }
                    }
                    None => {
                        tracing::warn!(server = %a.server, "SIP connection closed by the server");
                        let _ = events.send(PhoneEvent::Unreachable { server: a.server.clone(), message: "connection closed".into() }).await;
                        active = None;
                        if target.is_some() {
                            reconnect_at = Some(Instant::now() + backoff);
                        }
                    }
                }
            },
            _ = sleep_until(deadline), if deadline.is_some() => {
                let now = Instant::now();
                if reconnect_at.is_some_and(|t| t <= now) {
                    reconnect_at = None;
                    if let Some(t) = &target {
                        match connect(t).await {
                            Ok(mut a) => {
                                a.reg.start(Instant::now());
                                backoff = Duration::from_secs(u64::from(t.sip.reconnect_min));
                                if !flush(&mut a, &events).await {
                                    active = Some(a);
                                }
                            }
                            Err((server, message)) => {
                                tracing::warn!(%server, %message, "cannot reach the SIP server");
                                let _ = events.send(PhoneEvent::Unreachable { server, message }).await;
                                reconnect_at = Some(now + backoff);
                                backoff = (backoff * 2).min(Duration::from_secs(u64::from(t.sip.reconnect_max)));
                            }
                        }
                    }
                }
                if let Some(a) = active.as_mut() {
                    if a.reg.poll_timeout().is_some_and(|t| t <= now) {
                        a.reg.handle_timeout(now);
                        if flush(a, &events).await {
                            active = None;
                        }
                    }
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d.into()).await;
    }
}

/// Waits for the binding to be removed (or the transaction to give up).
async fn finish(a: &mut Active, events: &mpsc::Sender<PhoneEvent>) {
    if flush(a, events).await {
        return;
    }
    loop {
        let deadline = a.reg.poll_timeout();
        tokio::select! {
            bytes = a.link.recv() => match bytes {
                Some(b) => handle_incoming(a, &b).await,
                None => return,
            },
            _ = sleep_until(deadline), if deadline.is_some() => a.reg.handle_timeout(Instant::now()),
        }
        if flush(a, events).await {
            return;
        }
    }
}

/// Sends what the registration queued and reports state changes; `true` when
/// a stopping registration has finished.
async fn flush(a: &mut Active, events: &mpsc::Sender<PhoneEvent>) -> bool {
    while let Some(out) = a.reg.poll_output() {
        match out {
            RegistrationOutput::Transmit(m) => {
                let bytes = m.to_string().into_bytes();
                tracing::trace!(server = %a.server, "SIP out:\n{}", String::from_utf8_lossy(&bytes));
                if let Err(e) = a.link.send(&bytes).await {
                    tracing::warn!(server = %a.server, error = %e, "SIP send failed");
                }
            }
            RegistrationOutput::StateChanged(state) => {
                tracing::info!(server = %a.server, transport = a.transport.param(), ?state, "registration");
                let _ = events.send(PhoneEvent::Registration { state, server: a.server.clone(), transport: a.transport }).await;
            }
        }
    }
    a.stopping && matches!(a.reg.state(), RegistrationState::Unregistered)
}

async fn handle_incoming(a: &mut Active, bytes: &[u8]) {
    tracing::trace!(server = %a.server, "SIP in:\n{}", String::from_utf8_lossy(bytes));
    // The parser has not panicked on our mutation tests (crates/sip/tests/hostile_input.rs);
    // should it ever, one bad datagram must not take the phone down with it.
    let parsed = std::panic::catch_unwind(|| SipMessage::try_from(bytes)).unwrap_or_else(|_| {
        Err(rsip::Error::Unexpected("the SIP parser panicked".into()))
    });
    let message = match parsed {
        Ok(m) => m,
        Err(e) => {
            // Malformed input from the network is dropped (and counted in the log).
            tracing::debug!(server = %a.server, error = %e, "dropped an unparsable SIP message");
            return;
        }
    };
    match message {
        SipMessage::Response(r) => {
            if !a.reg.handle_response(Instant::now(), r) {
                tracing::debug!(server = %a.server, "dropped a response matching no transaction");
            }
        }
        SipMessage::Request(req) => {
            let status = match req.method {
                rsip::Method::Ack => return,
                rsip::Method::Options => StatusCode::OK,
                rsip::Method::Invite => StatusCode::TemporarilyUnavailable,
                _ => StatusCode::NotImplemented,
            };
            if let Ok(resp) = agent_helper_sip::message::response_to(&req, status, Some("ah")) {
                let bytes = SipMessage::Response(resp).to_string().into_bytes();
                let _ = a.link.send(&bytes).await;
            }
        }
    }
}

/// Resolves the first configured server and opens the transport.
async fn connect(t: &Target) -> Result<Active, (String, String)> {
    let server = t.sip.servers.first().ok_or_else(|| ("-".to_owned(), "no SIP server configured".to_owned()))?;
    let transport = match server.transport.unwrap_or(t.sip.transport) {
        ConfigTransport::Udp => Transport::Udp,
        ConfigTransport::Tcp => Transport::Tcp,
        ConfigTransport::Tls => Transport::Tls,
    };
    let port = server.port.unwrap_or(if transport == Transport::Tls { 5061 } else { 5060 });
    let name = format!("{}:{port}", server.host);
    let fail = |m: String| (name.clone(), m);
    let addr: SocketAddr = tokio::net::lookup_host((server.host.as_str(), port))
        .await
        .map_err(|e| fail(format!("cannot resolve: {e}")))?
        .next()
        .ok_or_else(|| fail("no address".into()))?;
    let (link, local) = match transport {
        Transport::Udp => {
            let bind: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().map_err(|e| fail(format!("{e}")))?;
            let s = UdpSocket::bind(bind).await.map_err(|e| fail(e.to_string()))?;
            s.connect(addr).await.map_err(|e| fail(e.to_string()))?;
            let local = s.local_addr().map_err(|e| fail(e.to_string()))?;
            (Link::Udp(s, vec![0u8; MAX_DATAGRAM]), local)
        }
        Transport::Tcp | Transport::Tls => {
            let s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
                .await
                .map_err(|_| fail("connection timed out".into()))?
                .map_err(|e| fail(e.to_string()))?;
            let local = s.local_addr().map_err(|e| fail(e.to_string()))?;
            if transport == Transport::Tcp {
                let (reader, writer) = s.into_split();
                (Link::Stream { writer: Box::new(writer), incoming: read_stream(reader) }, local)
            } else {
                let config = tls_config(t.sip.tls_ca_file.as_deref()).map_err(fail)?;
                let name = rustls_pki_types::ServerName::try_from(server.host.clone())
                    .map_err(|e| fail(format!("{:?} is not a TLS server name: {e}", server.host)))?;
                let tls = tokio::time::timeout(
                    Duration::from_secs(10),
                    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, s),
                )
                .await
                .map_err(|_| fail("TLS handshake timed out".into()))?
                .map_err(|e| fail(format!("TLS handshake failed: {e}")))?;
                let (reader, writer) = tokio::io::split(tls);
                (Link::Stream { writer: Box::new(writer), incoming: read_stream(reader) }, local)
            }
        }
    };
    let domain = if t.sip.domain.is_empty() { server.host.clone() } else { t.sip.domain.clone() };
    let cfg = RegistrationConfig {
        username: t.username.clone(),
        domain,
        transport,
        local: local.to_string(),
        expires: t.sip.register_expiry,
        user_agent: t.sip.user_agent.clone(),
        extra_headers: t.sip.custom_headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        reconnect_min: Duration::from_secs(u64::from(t.sip.reconnect_min)),
        reconnect_max: Duration::from_secs(u64::from(t.sip.reconnect_max)),
        timers: Timers::default(),
    };
    let reg = Registration::new(cfg, t.password.expose(), Box::new(RandomIds));
    Ok(Active { reg, link, server: name, transport, stopping: false })
}

/// A reader task cutting the TCP stream into messages; the channel closes when
/// the connection does or the peer breaks the framing rules.
fn read_stream(mut reader: impl AsyncRead + Send + Unpin + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(32);
    tokio::spawn(async move {
        let mut framer = StreamFramer::default();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            framer.push(&buf[..n]);
            loop {
                match framer.poll() {
                    Ok(Some(Framed::Message(m))) => {
                        if tx.send(m).await.is_err() {
                            return;
                        }
                    }
                    Ok(Some(Framed::KeepAlive { .. })) => {}
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "closing a SIP connection that broke framing");
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// TLS client settings: the OS trust store plus the administrator's CA file.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A certificate the store cannot use is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("sip.tls_ca_file {}: {e}", path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("sip.tls_ca_file {}: {e}", path.display()))?;
            roots.add(cert).map_err(|e| format!("sip.tls_ca_file {}: {e}", path.display()))?;
        }
    }
    if roots.is_empty() {
        return Err("no trusted CA certificates (system store empty and no sip.tls_ca_file)".into());
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}
