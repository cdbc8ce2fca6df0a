//! The transport to the SIP server: UDP (one connected socket), TCP or TLS
//! (a writer and a reader task cutting the stream into messages), and how a
//! server is reached and registered with.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agent_helper_config::{SipServer, Transport as ConfigTransport};
use agent_helper_sip::call::Endpoint;
use agent_helper_sip::framing::{Framed, MAX_DATAGRAM, StreamFramer};
use agent_helper_sip::ids::RandomIds;
use agent_helper_sip::keepalive::{KeepAlive, KeepAliveConfig};
use agent_helper_sip::registration::{Registration, RegistrationConfig, Transport};
use agent_helper_sip::transaction::Timers;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

use super::{Active, Target};

pub(super) enum Link {
    /// The socket and one receive buffer reused for every datagram.
    Udp(UdpSocket, Vec<u8>),
    /// TCP or TLS: a writer, and messages cut from the stream by a reader task.
    Stream { writer: Box<dyn AsyncWrite + Send + Unpin>, incoming: mpsc::Receiver<Received> },
}

/// What came from the server.
pub(super) enum Received {
    Message(Vec<u8>),
    /// A CRLF keep-alive on a stream: the server answered our ping.
    Pong,
}

impl Link {
    pub(super) async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Link::Udp(s, _) => s.send(bytes).await.map(|_| ()),
            Link::Stream { writer, .. } => {
                writer.write_all(bytes).await?;
                writer.flush().await
            }
        }
    }

    /// The next message or pong; `None` when a TCP connection closed or
    /// nothing listens at the server's UDP port any more.
    pub(super) async fn recv(&mut self) -> Option<Received> {
        match self {
            Link::Udp(s, buf) => {
                loop {
                    match s.recv(buf).await {
                        Ok(n) => return Some(Received::Message(buf[..n].to_vec())),
                        // ICMP port unreachable on the connected socket.
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return None,
                        Err(e) => tracing::debug!(error = %e, "udp receive"),
                    }
                }
            }
            Link::Stream { incoming, .. } => incoming.recv().await,
        }
    }
}

/// One server we are registered with: its transport, registration and
/// keep-alive. The active server has one; so does the backup server.
pub(super) struct Binding {
    pub reg: Registration,
    /// Notices a server that stopped answering (`sip.keepalive_interval`).
    pub keepalive: Option<KeepAlive>,
    pub link: Link,
    /// `host:port`, for logs and events.
    pub server: String,
    pub transport: Transport,
    /// What calls through this server put in Via and Contact.
    pub endpoint: Endpoint,
    pub local_ip: std::net::IpAddr,
}

/// Opens the transport to `server` and prepares (not starts) its registration.
pub(super) async fn bind(t: &Target, server: &SipServer) -> Result<Binding, (String, String)> {
    let sip = &t.config.sip;
    let transport = match server.transport.unwrap_or(sip.transport) {
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
            let bind: SocketAddr =
                if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().map_err(|e| fail(format!("{e}")))?;
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
                let config = tls_config(sip.tls_ca_file.as_deref()).map_err(fail)?;
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
    let domain = if sip.domain.is_empty() { server.host.clone() } else { sip.domain.clone() };
    let cfg = RegistrationConfig {
        username: t.username.clone(),
        domain: domain.clone(),
        transport,
        local: local.to_string(),
        expires: sip.register_expiry,
        user_agent: sip.user_agent.clone(),
        extra_headers: sip.custom_headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        reconnect_min: Duration::from_secs(u64::from(sip.reconnect_min)),
        reconnect_max: Duration::from_secs(u64::from(sip.reconnect_max)),
        timers: Timers::default(),
    };
    let endpoint = Endpoint {
        username: t.username.clone(),
        domain: domain.clone(),
        display_name: None,
        local: local.to_string(),
        transport,
        user_agent: sip.user_agent.clone(),
        timers: Timers::default(),
        session_expires: t.config.calls.session_expires,
        avoid_two_way_hold: t.config.calls.avoid_two_way_hold,
    };
    let reg = Registration::new(cfg, t.password.expose(), Box::new(RandomIds));
    let keepalive = (sip.keepalive_interval > 0).then(|| {
        let cfg = KeepAliveConfig {
            transport,
            interval: Duration::from_secs(u64::from(sip.keepalive_interval)),
            server_uri: format!("sip:{name}"),
            aor: format!("{}@{domain}", agent_helper_sip::registration::escape_user(&t.username)),
            local: local.to_string(),
            user_agent: sip.user_agent.clone(),
            timers: Timers::default(),
        };
        KeepAlive::new(std::time::Instant::now(), cfg, Box::new(RandomIds))
    });
    Ok(Binding { reg, keepalive, link, server: name, transport, endpoint, local_ip: local.ip() })
}

/// Opens the transport to the server `t` points at: the active server.
pub(super) async fn connect(t: &Target) -> Result<Active, (String, String)> {
    let server = t.server().ok_or_else(|| ("-".to_owned(), "no SIP server configured".to_owned()))?;
    let primary = bind(t, server).await?;
    Ok(Active {
        primary,
        backup: None,
        backup_retry_at: None,
        stopping: false,
        config: t.config.clone(),
        calls: Vec::new(),
        pending_incoming: Vec::new(),
        referred: Vec::new(),
        consultations: Vec::new(),
        needs_failover: false,
        password: t.password.clone(),
        ringer: None,
        media_links: t.media_links.clone(),
    })
}

/// A reader task cutting the TCP stream into messages; the channel closes when
/// the connection does or the peer breaks the framing rules.
pub(super) fn read_stream(mut reader: impl AsyncRead + Send + Unpin + 'static) -> mpsc::Receiver<Received> {
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
                        if tx.send(Received::Message(m)).await.is_err() {
                            return;
                        }
                    }
                    Ok(Some(Framed::KeepAlive { ping: false })) => {
                        if tx.send(Received::Pong).await.is_err() {
                            return;
                        }
                    }
                    // Servers do not ping clients (RFC 5626); nothing to answer.
                    Ok(Some(Framed::KeepAlive { ping: true })) => {}
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
pub(super) fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
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
