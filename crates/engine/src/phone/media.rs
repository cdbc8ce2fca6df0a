//! One call's audio: the RTP socket, the jitter buffer and codec, and the
//! agent's microphone and speaker. A task per call; the phone steers it
//! through a watch channel as the call's SDP and state change.
//!
//! - Receive: RTP is checked ([`agent_helper_media::rtp`]), counted, and
//!   handed to the call's playout ([`super::playout`]): the speaker's own
//!   thread pulls it through the adaptive jitter buffer and the decoder, so
//!   the sound card's clock paces playout (drift shows up as a fuller or
//!   emptier buffer, which trims or conceals).
//! - Send: every 20 ms of microphone audio becomes one RTP packet, to the
//!   address in the peer's SDP, or to where its RTP comes from once it does
//!   (symmetric RTP / comedia, for peers behind NAT).
//! - No audio device (none plugged, no sound server): the call still runs,
//!   sending silence, and says so once in the log.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agent_helper_media::codec::Codec;
use agent_helper_media::dtmf::{EventSender, TelephoneEvent, digit_of};
use agent_helper_media::quality::ReceiveCounters;
use agent_helper_media::receiver::Figures;
use agent_helper_media::resample::Resampler;
use agent_helper_media::rtcp::{self, Rtcp};
use agent_helper_media::rtp::{self, Kind, RtpSender};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::playout::Playout;

/// The codecs the media engine plays and records today; only these are offered.
#[cfg(not(feature = "g729"))]
pub(super) const SUPPORTED: &[&str] = &["opus", "G722", "PCMU", "PCMA"];
#[cfg(feature = "g729")]
pub(super) const SUPPORTED: &[&str] = &["opus", "G722", "PCMU", "PCMA", "G729"];

/// The sound server's buffer on the speaker (2 × 10 ms), in the E-model's delay.
const SPEAKER_BUFFER_MS: f64 = 20.0;
/// The media task's step: microphone frames go out, device and report
/// upkeep. A microphone that says when a packet's worth is waiting paces
/// the steps itself; the timer then runs only while it says nothing (each
/// wake-up costs more here than the step's work: docs/benchmarks.md).
const TICK: Duration = Duration::from_millis(10);
const TICK_MIC_PACED: Duration = Duration::from_millis(50);
/// The clock of telephone-events (RFC 4733 with 8 kHz codecs).
const EVENT_RATE: u32 = 8000;

/// What the phone tells a call's media task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct MediaControl {
    /// Where to send, and the payload type and name agreed in SDP.
    pub remote: Option<SocketAddr>,
    pub payload_type: u8,
    pub codec: String,
    /// The peer's `a=fmtp` for the codec: what it asks of what we send.
    pub peer_fmtp: String,
    /// `codecs.opus_dtx`: Opus DTX whatever the peer asks.
    pub opus_dtx: bool,
    /// The packet time the peer asked for, ms (0 before any SDP: 20).
    pub ptime: u32,
    /// `audio.device_rate = "native"`: devices at their own rate, converted here.
    pub native_rate: bool,
    /// SRTP keys, when the call agreed on SRTP: then nothing goes out in the clear.
    pub srtp: Option<agent_helper_sip::sdp::SrtpKeys>,
    /// RTCP rides on the RTP port (rtcp-mux); else it goes to `remote_rtcp`.
    pub rtcp_mux: bool,
    pub remote_rtcp: Option<SocketAddr>,
    /// The peer's telephone-event payload type (RFC 4733), if it takes them.
    pub telephone_event: Option<u8>,
    /// We send audio (not on hold, not inactive).
    pub send: bool,
    /// We play what arrives.
    pub receive: bool,
    pub muted: bool,
    pub speaker: Option<String>,
    pub microphone: Option<String>,
    /// The call may still need audio (not ended): devices may open.
    pub wanted: bool,
}

/// Dropping it ends the task (its control channel closes): the socket and
/// the audio streams go with it, after the call's summary line.
pub(super) struct MediaHandle {
    pub control: watch::Sender<MediaControl>,
    /// Digits to send as RFC 4733 telephone-events.
    pub dtmf: tokio::sync::mpsc::Sender<Tones>,
}

/// Digits to send in the media stream (`,` is a 2 s pause).
pub(super) struct Tones {
    pub tones: String,
    pub duration: Duration,
    pub gap: Duration,
}

/// What a media task tells the phone.
pub(super) enum MediaEvent {
    /// An RFC 4733 digit arrived (reported once, at its start).
    Dtmf { call_id: String, digit: char },
    /// Voice quality every [`REPORT_EVERY`] while audio flows.
    Quality(agent_helper_protocol::methods::CallStats),
    /// The call's speaker or microphone changed: `lost` (it went away; the
    /// system default took over) or `restored` (the chosen one is back).
    DeviceChanged { call_id: String, direction: &'static str, device: String, reason: &'static str },
}

/// A speaker that takes no audio for this long counts as gone.
const STALL: Duration = Duration::from_millis(800);
/// … and one that has not started playing yet, after this long: a sound
/// server may take a second or two to start a new stream (a device waking
/// from suspend, a Bluetooth headset, an idle null sink), which is no stall.
const START_LIMIT: Duration = Duration::from_secs(3);

/// How often a call on a fallback device looks for the chosen one again
/// (and at once when the phone's watcher sees the devices change).
const DEVICE_RECHECK: Duration = Duration::from_secs(2);

/// How often a call's voice quality is reported.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// What every call's media task shares with the phone: where it reports,
/// and the audio devices present now (ids, from the phone's device watcher).
#[derive(Clone)]
pub(super) struct MediaLinks {
    pub events: tokio::sync::mpsc::Sender<MediaEvent>,
    pub present: watch::Receiver<std::sync::Arc<Vec<String>>>,
}

/// Starts the media task on `socket`; it idles until told where to send.
pub(super) fn start(socket: UdpSocket, rtcp_socket: UdpSocket, call_id: String, links: MediaLinks) -> MediaHandle {
    let (control, rx) = watch::channel(MediaControl::default());
    let (dtmf, dtmf_rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(run(Sockets { rtp: socket, rtcp: rtcp_socket }, rx, dtmf_rx, links, call_id));
    MediaHandle { control, dtmf }
}

/// Digits being sent: the queue, the one on the wire (with its start
/// timestamp) and the gap before the next.
#[derive(Default)]
struct Dtmf {
    queue: std::collections::VecDeque<char>,
    length: u32,
    /// Silence left before the next digit, and the silence after each, ms.
    gap_ms: u32,
    gap_after_ms: u32,
    current: Option<(EventSender, u32)>,
    /// The start timestamp of the last event received (each is reported once).
    last_received: Option<u32>,
}

#[derive(Default)]
struct Devices {
    playback: Option<agent_helper_audio::Speaker>,
    capture: Option<agent_helper_audio::Capture>,
    /// Opened (or failed to) once: not again every tick.
    tried: bool,
    /// The codec's rate; each device runs at it or at its own (`native`,
    /// or when it takes no other), converted by the playout / `from_mic`.
    rate: u32,
    native: bool,
    from_mic: Option<Resampler>,
    /// Running on the system default because the chosen device went away.
    speaker_fallback: bool,
    mic_fallback: bool,
    /// The microphone's stream says here when it handed a piece over.
    #[cfg(unix)]
    mic_arrived: Option<tokio::net::UnixDatagram>,
    /// The speaker's requests counted at the last tick, and since when
    /// there has been none (the sound card stopped taking audio).
    served_seen: u64,
    stalled_since: Option<Instant>,
    /// When the speaker's stream opened, until the device starts playing it.
    speaker_opened: Option<Instant>,
}

/// A call's RTP socket, and its RTCP socket for a peer without rtcp-mux.
struct Sockets {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

async fn run(
    sockets: Sockets,
    mut control: watch::Receiver<MediaControl>,
    mut dtmf_in: tokio::sync::mpsc::Receiver<Tones>,
    links: MediaLinks,
    call_id: String,
) {
    let MediaLinks { events, mut present } = links;
    let Sockets { rtp: socket, rtcp: rtcp_socket } = sockets;
    let mut rtcp_buf = vec![0u8; agent_helper_media::rtcp::MAX_RTCP + 1];
    // Where the peer's RTCP comes from (comedia, as for RTP).
    let mut learned_rtcp: Option<SocketAddr> = None;
    let mut malformed_rtcp = 0u64;
    let mut dtmf = Dtmf::default();
    // Start from nothing, not from the channel's current value: the phone
    // may already have sent the call's codec before this task first ran (an
    // auto-answered call), and taking that value as "seen" would leave the
    // codec unset and the call silent.
    let mut ctl = MediaControl::default();
    let mut buf = vec![0u8; rtp::MAX_PACKET + 1];
    let mut codec: Option<Codec> = None;
    // The receiving half, once the codec is known: the speaker pulls it.
    let mut playout: Option<Playout> = None;
    let mut trimmed = 0;
    let mut counters = ReceiveCounters::default();
    let (mut dropped, mut other_pt) = (0u64, 0u64);
    let ssrc = rand_u32();
    let mut sender = RtpSender::new(ssrc, 0, rand_u32() as u16, rand_u32());
    let mut learned: Option<SocketAddr> = None;
    let mut remote_ssrc = 0u32;
    let mut srtp = Srtp::default();
    // RFC 7022: a random CNAME, the same for the whole call.
    let mut reports = Rtcp::new(ssrc, &format!("{:08x}{:08x}@agent-helper", rand_u32(), rand_u32()));
    let mut devices = Devices::default();
    let mut opening: Option<Opening> = None;
    let mut recheck: Option<tokio::task::JoinHandle<Vec<String>>> = None;
    let mut next_recheck = Instant::now();
    // The packet time last sent at (the summary tells it).
    let mut sent_packet_ms = 0;
    let mut tick = step_timer(TICK);
    let mut mic_paced = false;
    let mut last_send = Instant::now();
    let mut next_report = Instant::now() + REPORT_EVERY;
    let mut mic: Vec<i16> = Vec::with_capacity(4 * 960);
    let mut payload = Vec::with_capacity(960);
    // The codec sent nothing for the last frame (DTX).
    let mut talkspurt_over = false;
    loop {
        tokio::select! {
            changed = control.changed() => {
                if changed.is_err() {
                    break;
                }
                let next = control.borrow().clone();
                // The call ended: its devices close now, not when its last
                // transaction is done with (a BYE's can linger for seconds).
                if !next.wanted {
                    break;
                }
                let new_codec = next.payload_type != ctl.payload_type || next.codec != ctl.codec;
                if new_codec {
                    tracing::info!(call_id, codec = next.codec, peer_fmtp = next.peer_fmtp, ptime_ms = next.ptime, "call media codec");
                    codec = Codec::for_name(&next.codec).ok();
                    let rate = codec.as_ref().map_or(8000, Codec::rate);
                    // The speaker's thread decodes with a codec of its own
                    // (this one's decoder goes unused, as the other's encoder).
                    match (Codec::for_name(&next.codec), playout.as_mut()) {
                        (Ok(c), Some(p)) => p.set_codec(c),
                        (Ok(c), None) => playout = Some(Playout::new(c)),
                        (Err(_), _) => playout = None,
                    }
                    sender.payload_type = next.payload_type;
                    // Devices run at the codec's rate: a new rate opens them anew.
                    if devices.tried && devices.rate != rate {
                        devices = Devices::default();
                        opening = None;
                    }
                }
                // A new codec, or a re-INVITE that changed what the peer asks.
                if (new_codec || next.peer_fmtp != ctl.peer_fmtp || next.opus_dtx != ctl.opus_dtx)
                    && let Some(c) = codec.as_mut()
                    && let Err(e) = c.apply_peer_fmtp(&next.peer_fmtp, next.opus_dtx)
                {
                    tracing::warn!(call_id, fmtp = next.peer_fmtp, error = %e, "the peer's codec parameters");
                }
                if next.srtp != ctl.srtp {
                    srtp = Srtp::for_keys(next.srtp.as_ref(), &call_id);
                }
                if next.speaker != ctl.speaker || next.microphone != ctl.microphone || next.native_rate != ctl.native_rate {
                    devices = Devices::default();
                    opening = None;
                }
                ctl = next;
            }
            // A device the call plays or records on left the system. Its
            // stream may not fail (PulseAudio moves streams of a removed
            // sink to the default): treat it as lost, which reopens the
            // default and tells the agent.
            Ok(()) = present.changed() => {
                let ids = present.borrow_and_update().clone();
                let gone = |chosen: &Option<String>| chosen.as_ref().is_some_and(|id| !ids.contains(id));
                if !devices.speaker_fallback && gone(&ctl.speaker) && let Some(p) = &devices.playback {
                    p.mark_failed();
                }
                if !devices.mic_fallback && gone(&ctl.microphone) && let Some(c) = &devices.capture {
                    c.mark_failed();
                }
                // A call on a fallback looks for its chosen device at once.
                next_recheck = Instant::now();
            }
            received = rtcp_socket.recv_from(&mut rtcp_buf) => {
                let Ok((n, from)) = received else { continue };
                if !ctl.wanted {
                    continue;
                }
                if take_rtcp(&mut reports, &mut srtp, &rtcp_buf[..n], &mut malformed_rtcp) {
                    learned_rtcp = Some(from);
                }
            }
            Some(t) = dtmf_in.recv() => {
                dtmf.queue.extend(t.tones.chars());
                dtmf.length = (t.duration.as_millis() as u32) * EVENT_RATE / 1000;
                dtmf.gap_after_ms = (t.gap.as_millis() as u32).max(1);
            }
            received = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = received else { continue };
                // The call is ending (a BYE went or came): what the peer
                // still sends (its last audio, an RTCP BYE that may come
                // after its SRTP is gone) is no part of the call's figures.
                if !ctl.wanted {
                    continue;
                }
                if rtp::classify(&buf[..n]) == Kind::Rtcp {
                    // rtcp-mux: the peer's reports on the RTP port.
                    take_rtcp(&mut reports, &mut srtp, &buf[..n], &mut malformed_rtcp);
                    continue;
                }
                let opened;
                let datagram = match srtp.open(Kind::Rtp, &buf[..n]) {
                    Opened::Plain => &buf[..n],
                    Opened::Decrypted(plain) => {
                        opened = plain;
                        &opened[..]
                    }
                    Opened::Rejected => continue,
                };
                match rtp::parse(datagram) {
                    Ok(p) if p.payload_type == ctl.payload_type && let Some(out) = playout.as_mut() => {
                        counters.packet(p.sequence);
                        remote_ssrc = p.ssrc;
                        learned = Some(from);
                        out.push(Instant::now(), p.timestamp, &p.payload);
                    }
                    Ok(p) if Some(p.payload_type) == ctl.telephone_event => {
                        // Every packet of an event repeats its start timestamp: report it once.
                        if let Some(ev) = TelephoneEvent::parse(&p.payload)
                            && dtmf.last_received != Some(p.timestamp)
                            && let Some(digit) = digit_of(ev.code)
                        {
                            dtmf.last_received = Some(p.timestamp);
                            let _ = events.try_send(MediaEvent::Dtmf { call_id: call_id.clone(), digit });
                        }
                    }
                    // Comfort noise and unknown payload types are not audio frames.
                    Ok(_) => other_pt += 1,
                    Err(_) => dropped += 1,
                }
            }
            _ = next_step(&mut tick, mic_arrived(&devices)) => {
                // The devices open as soon as the call exists (they take a
                // moment), so audio flows from the first packet after the answer.
                let (Some(c), Some(out)) = (codec.as_mut(), playout.as_mut()) else { continue };
                let (rate, frame) = (c.rate(), c.frame());
                // What we send is packed as the peer asked, as the codec can.
                let packet_ms = c.packet_time(if ctl.ptime == 0 { 20 } else { ctl.ptime });
                sent_packet_ms = packet_ms;
                let (packet_len, ticks) = (c.samples_for(packet_ms), c.ticks_for(packet_ms));
                if !devices.tried && ctl.wanted {
                    devices.tried = true;
                    devices.rate = rate;
                    devices.native = ctl.native_rate;
                    opening = Some(open_devices(&ctl, rate, out));
                }
                if let Some(o) = &mut opening {
                    o.collect(&mut devices, out, &call_id, &events).await;
                }
                follow_devices(&mut devices, &mut opening, &mut recheck, &mut next_recheck, &ctl, out, &call_id).await;
                if mic_arrived(&devices).is_some() != mic_paced {
                    mic_paced = !mic_paced;
                    tick = step_timer(if mic_paced { TICK_MIC_PACED } else { TICK });
                }
                if ctl.remote.is_none() {
                    last_send = Instant::now();
                    continue;
                }
                let now = Instant::now();
                out.set_audible(ctl.receive);
                // Speaker: its thread pulls the call's audio. A sound card
                // that stops asking is gone (an unplugged device's stream
                // may just stop, with no error).
                let pulling = devices.playback.as_ref().is_some_and(|p| p.started() && !p.failed());
                if let Some(p) = &devices.playback {
                    let served = p.served();
                    if p.started() && let Some(at) = devices.speaker_opened.take() {
                        let ms = now.duration_since(at).as_millis() as u64;
                        tracing::info!(call_id, device = %p.device, ms, "speaker playing");
                    }
                    if served == devices.served_seen {
                        let since = *devices.stalled_since.get_or_insert(now);
                        let limit = if p.started() { STALL } else { START_LIMIT };
                        if now.duration_since(since) > limit {
                            tracing::warn!(call_id, device = %p.device, started = p.started(), "the speaker takes no audio");
                            p.mark_failed();
                        }
                    } else {
                        devices.stalled_since = None;
                    }
                    devices.served_seen = served;
                }
                // No speaker playing (none, not started yet, or gone): the
                // task pulls at the stream's pace, so the figures stay right
                // and the speaker starts on fresh audio.
                if pulling {
                    out.stop_pulling();
                } else {
                    out.pull(now);
                }
                if now >= next_report {
                    next_report = now + REPORT_EVERY;
                    let figures = out.figures();
                    if figures.trimmed > trimmed {
                        trimmed = figures.trimmed;
                        tracing::info!(held_ms = figures.held.as_millis() as u64, trimmed, "spare delay given back in a pause");
                    }
                    let (fraction, lost_ratio) = counters.fraction_lost_since_last();
                    // RTCP every report interval (RFC 3550 §6.2: 5 s for a two-party call).
                    let (sent, heard) = rtcp_figures(&sender, &counters, fraction, remote_ssrc, &figures);
                    let report = reports.report(now, std::time::SystemTime::now(), sent, heard);
                    send_rtcp((&socket, &rtcp_socket), (learned, learned_rtcp), &ctl, &mut srtp, report).await;
                    let stats = quality(&call_id, &ctl, c.rtp_clock(), lost_ratio, &counters, &figures, &sender, &reports);
                    let _ = events.try_send(MediaEvent::Quality(stats));
                }
                // Microphone: every packet time of it (20 ms unless the
                // peer asks otherwise) becomes a packet.
                let dest = learned.or(ctl.remote);
                // Microphone audio at the codec's rate, in one buffer reused
                // every tick; whole frames are sent, a rest waits for the next.
                match &mut devices.capture {
                    Some(c) => match devices.from_mic.as_mut() {
                        None => {
                            while c.samples.slots() >= frame {
                                let Ok(chunk) = c.samples.read_chunk(frame) else { break };
                                mic.extend(chunk);
                            }
                        }
                        Some(r) => {
                            if let Ok(chunk) = c.samples.read_chunk(c.samples.slots()) {
                                let (a, b) = chunk.as_slices();
                                r.process(a, &mut mic);
                                r.process(b, &mut mic);
                                chunk.commit_all();
                            }
                        }
                    },
                    None => {
                        let every = Duration::from_millis(packet_ms.into());
                        while now.duration_since(last_send) >= every {
                            last_send += every;
                            mic.resize(mic.len() + packet_len, 0);
                        }
                    }
                }
                for pcm_frame in mic.chunks_exact_mut(packet_len) {
                    if !ctl.send {
                        sender.skip(ticks);
                        continue;
                    }
                    // A digit in progress replaces the audio of this frame.
                    if let (Some(pt), Some(d)) = (ctl.telephone_event, dest)
                        && let Some(packet) = dtmf.next_packet(&mut sender, pt, ticks, packet_ms)
                    {
                        if let Some(sealed) = srtp.seal(Kind::Rtp, packet) {
                            let _ = socket.send_to(&sealed, d).await;
                        }
                        continue;
                    }
                    if ctl.muted {
                        pcm_frame.iter_mut().for_each(|s| *s = 0);
                    }
                    payload.clear();
                    c.encode(pcm_frame, &mut payload);
                    // DTX: silence the codec chose not to send; the next
                    // packet starts a talkspurt (marker bit, RFC 3551 §4.1).
                    if payload.is_empty() {
                        sender.skip(ticks);
                        talkspurt_over = true;
                        continue;
                    }
                    let packet = sender.packet(&payload, ticks, std::mem::take(&mut talkspurt_over));
                    if let Some(d) = dest
                        && let Some(sealed) = srtp.seal(Kind::Rtp, packet)
                    {
                        let _ = socket.send_to(&sealed, d).await;
                    }
                }
                let whole = mic.len() / packet_len * packet_len;
                mic.drain(..whole);
                // Woken again once the next packet's frames are waiting
                // (through a converter: once its next chunk can come out).
                if let Some(c) = &devices.capture {
                    let missing = (packet_len - mic.len()).div_ceil(frame) * frame;
                    c.tell_at(devices.from_mic.as_ref().map_or(missing, Resampler::wanted));
                }
            }
        }
    }
    // The stream ends here (RFC 3550 §6.3.7): a last report, then BYE.
    let figures = playout.as_ref().map(Playout::figures).unwrap_or_default();
    let said_bye = ctl.remote.is_some() && {
        let (fraction, _) = counters.fraction_lost_since_last();
        let (sent, heard) = rtcp_figures(&sender, &counters, fraction, remote_ssrc, &figures);
        let last = reports.goodbye(Instant::now(), std::time::SystemTime::now(), sent, heard);
        send_rtcp((&socket, &rtcp_socket), (learned, learned_rtcp), &ctl, &mut srtp, last).await
    };
    let stats = figures.stats;
    tracing::info!(
        call_id,
        received = counters.received(),
        lost = counters.lost(),
        concealed = stats.concealed,
        skipped = stats.skipped,
        from_next = figures.from_next,
        queue_overflowed = playout.as_ref().map_or(0, |p| p.overflowed),
        late = stats.late,
        duplicates = stats.duplicates,
        malformed = dropped,
        srtp_rejected = srtp.rejected,
        unprotected_rtcp = srtp.unprotected,
        rtcp_reports = reports.reports_received(),
        malformed_rtcp,
        peer_bye = reports.peer_left(remote_ssrc),
        bye_sent = said_bye,
        rtt_ms = reports.rtt().map(|d| d.as_millis() as u64),
        other_payload = other_pt,
        sent = sender.packets_sent,
        packet_ms = sent_packet_ms,
        "call media summary"
    );
}

/// The call's SRTP, when it has one.
#[derive(Default)]
struct Srtp {
    session: Option<agent_helper_media::srtp::Session>,
    /// SRTP was agreed but could not be set up: nothing is sent, nothing played.
    broken: bool,
    /// Packets dropped: bad tag, replayed, plain RTP on an SRTP call.
    rejected: u64,
    /// Plain RTCP on an SRTP call, dropped unread: a peer's own choice
    /// (baresip opens NAT pinholes with one), not a failed check.
    unprotected: u64,
}

enum Opened {
    Plain,
    Decrypted(Vec<u8>),
    Rejected,
}

impl Srtp {
    fn for_keys(keys: Option<&agent_helper_sip::sdp::SrtpKeys>, call_id: &str) -> Srtp {
        let Some(k) = keys else { return Srtp::default() };
        let session = agent_helper_media::srtp::Suite::from_sdp_name(&k.suite)
            .ok_or_else(|| format!("unknown suite {}", k.suite))
            .and_then(|suite| {
                agent_helper_media::srtp::Session::new(suite, &k.local, &k.remote).map_err(|e| e.to_string())
            });
        match session {
            Ok(s) => {
                tracing::info!(call_id, suite = %k.suite, "call media is SRTP");
                Srtp { session: Some(s), ..Srtp::default() }
            }
            Err(e) => {
                tracing::error!(call_id, error = %e, "SRTP could not be set up; the call's media is stopped");
                Srtp { broken: true, ..Srtp::default() }
            }
        }
    }

    /// An RTP or RTCP packet as it is to go out: protected on an SRTP call,
    /// `None` when it must not go out at all.
    fn seal(&mut self, kind: Kind, packet: Vec<u8>) -> Option<Vec<u8>> {
        match &mut self.session {
            _ if self.broken => None,
            Some(s) => match kind {
                Kind::Rtp => s.protect(&packet),
                Kind::Rtcp => s.protect_rtcp(&packet),
            }
            .ok(),
            None => Some(packet),
        }
    }

    /// An RTP or RTCP datagram as it arrived: decrypted and checked on an
    /// SRTP call (failures counted), as it is otherwise.
    fn open(&mut self, kind: Kind, datagram: &[u8]) -> Opened {
        match &mut self.session {
            _ if self.broken => Opened::Rejected,
            None => Opened::Plain,
            Some(s) => match match kind {
                Kind::Rtp => s.unprotect(datagram),
                Kind::Rtcp => s.unprotect_rtcp(datagram),
            } {
                Ok(plain) => Opened::Decrypted(plain),
                Err(e) => {
                    let head = &datagram[..datagram.len().min(12)];
                    if kind == Kind::Rtcp && agent_helper_media::rtcp::is_plain_compound(datagram) {
                        self.unprotected += 1;
                        tracing::debug!(len = datagram.len(), ?head, "plain RTCP on an SRTP call dropped unread");
                    } else {
                        self.rejected += 1;
                        tracing::debug!(?kind, error = %e, len = datagram.len(), ?head, "SRTP packet rejected");
                    }
                    Opened::Rejected
                }
            },
        }
    }
}

/// The call's voice quality now: counters, jitter, and the E-model with a
/// delay of the jitter buffer plus a frame each way of packetisation, plus
/// half the RTCP round trip once it is known.
#[allow(clippy::too_many_arguments)]
fn quality(
    call_id: &str,
    ctl: &MediaControl,
    // The RTP clock (what SDP names the codec by, and jitter is counted in).
    rate: u32,
    lost_ratio: f64,
    counters: &ReceiveCounters,
    figures: &Figures,
    sender: &RtpSender,
    reports: &Rtcp,
) -> agent_helper_protocol::methods::CallStats {
    let s = figures.stats;
    let buffer_ms = (figures.held.as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
    let loss_percent = lost_ratio * 100.0;
    let rtt_ms = reports.rtt().map(|d| d.as_secs_f64() * 1000.0);
    // Mouth to ear: the jitter buffer and the sound card's buffer on our
    // side, the frame and capture on the peer's, half the RTT.
    let delay = buffer_ms + SPEAKER_BUFFER_MS + 40.0 + rtt_ms.unwrap_or(0.0) / 2.0;
    let r = agent_helper_media::quality::r_factor(&ctl.codec, delay, loss_percent, 1.0);
    agent_helper_protocol::methods::CallStats {
        call_id: call_id.to_owned(),
        codec: format!("{}/{rate}", ctl.codec),
        packets_received: counters.received(),
        packets_lost: counters.lost(),
        loss_percent,
        jitter_ms: figures.jitter * 1000.0 / f64::from(rate),
        buffer_ms,
        concealed: s.concealed,
        late: s.late,
        duplicates: s.duplicates,
        packets_sent: sender.packets_sent,
        payload_bytes_sent: sender.octets_sent,
        rtt_ms: rtt_ms.map(|v| (v * 10.0).round() / 10.0),
        remote_loss_percent: reports.peer_view().map(|v| (v.fraction_lost * 1000.0).round() / 10.0),
        r_factor: (r * 10.0).round() / 10.0,
        mos: (agent_helper_media::quality::mos(r) * 100.0).round() / 100.0,
    }
}

/// What our RTCP says now: what we sent (for an SR), and a report block on
/// the peer's stream once one arrived; `fraction` is the interval's loss.
fn rtcp_figures(
    sender: &RtpSender,
    counters: &ReceiveCounters,
    fraction: u8,
    remote_ssrc: u32,
    figures: &Figures,
) -> (Option<rtcp::Sent>, Option<rtcp::Received>) {
    let sent = (sender.packets_sent > 0).then(|| rtcp::Sent {
        packets: sender.packets_sent as u32,
        octets: sender.octets_sent as u32,
        rtp_timestamp: sender.timestamp(),
    });
    let heard = (counters.received() > 0).then(|| rtcp::Received {
        ssrc: remote_ssrc,
        fraction_lost: fraction,
        total_lost: counters.lost() as u32,
        extended_highest: counters.extended_highest(),
        jitter: figures.jitter as u32,
    });
    (sent, heard)
}

/// Sends an RTCP compound packet (SRTCP on an SRTP call) where the peer's
/// RTCP comes from, else where its SDP says: the RTP port with rtcp-mux,
/// else the RTCP port. `learned` is (RTP, RTCP) as they came. Whether it went.
async fn send_rtcp(
    (rtp_socket, rtcp_socket): (&UdpSocket, &UdpSocket),
    (learned, learned_rtcp): (Option<SocketAddr>, Option<SocketAddr>),
    ctl: &MediaControl,
    srtp: &mut Srtp,
    packet: Vec<u8>,
) -> bool {
    let (via, to) = if ctl.rtcp_mux {
        (rtp_socket, learned.or(ctl.remote))
    } else {
        (rtcp_socket, learned_rtcp.or(ctl.remote_rtcp))
    };
    match (to, srtp.seal(Kind::Rtcp, packet)) {
        (Some(to), Some(sealed)) => via.send_to(&sealed, to).await.is_ok(),
        _ => false,
    }
}

/// An RTCP datagram from the peer (decrypted first on an SRTP call);
/// `true` when it was a report we could read.
fn take_rtcp(reports: &mut Rtcp, srtp: &mut Srtp, datagram: &[u8], malformed: &mut u64) -> bool {
    let plain;
    let packet = match srtp.open(Kind::Rtcp, datagram) {
        Opened::Plain => datagram,
        Opened::Decrypted(p) => {
            plain = p;
            &plain[..]
        }
        Opened::Rejected => return false,
    };
    match reports.receive(Instant::now(), std::time::SystemTime::now(), packet) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, len = packet.len(), head = ?&packet[..packet.len().min(16)], "unreadable RTCP");
            *malformed += 1;
            false
        }
    }
}

impl Dtmf {
    /// The telephone-event packet for this packet's slot (`frame` RTP
    /// ticks, `frame_ms` long), if a digit is due.
    fn next_packet(&mut self, sender: &mut RtpSender, pt: u8, frame: u32, frame_ms: u32) -> Option<Vec<u8>> {
        if self.current.is_none() {
            if self.gap_ms > 0 {
                self.gap_ms = self.gap_ms.saturating_sub(frame_ms);
                return None;
            }
            match self.queue.pop_front()? {
                ',' => {
                    self.gap_ms = 2000;
                    return None;
                }
                digit => self.current = EventSender::new(digit, self.length).map(|e| (e, sender.timestamp())),
            }
        }
        let (event, start) = self.current.as_mut()?;
        let start = *start;
        match event.next(frame) {
            Some(p) => {
                let packet = sender.packet_at(pt, start, &p.payload, p.marker);
                sender.skip(frame);
                Some(packet)
            }
            None => {
                self.current = None;
                self.gap_ms = self.gap_after_ms;
                None
            }
        }
    }
}

fn step_timer(every: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// The media task's next step: the [`TICK`], or sooner when the microphone
/// says a packet's worth is waiting, so it leaves at once rather than up to
/// a tick later; the tick then starts again from there.
#[cfg(unix)]
async fn next_step(tick: &mut tokio::time::Interval, mic_arrived: Option<&tokio::net::UnixDatagram>) {
    let Some(arrived) = mic_arrived else {
        tick.tick().await;
        return;
    };
    let mut byte = [0u8; 8];
    tokio::select! {
        _ = tick.tick() => {}
        // A stream that ended reads as nothing: only the tick then.
        Ok(1..) = arrived.recv(&mut byte) => {
            while arrived.try_recv(&mut byte).is_ok() {}
            tick.reset();
        }
    }
}

#[cfg(unix)]
fn mic_arrived(devices: &Devices) -> Option<&tokio::net::UnixDatagram> {
    devices.mic_arrived.as_ref()
}

#[cfg(not(unix))]
async fn next_step(tick: &mut tokio::time::Interval, _: Option<()>) {
    tick.tick().await;
}

#[cfg(not(unix))]
fn mic_arrived(_: &Devices) -> Option<()> {
    None
}

/// Keeps the call on working devices: one that failed (unplugged) is
/// replaced by the system default, and the chosen one is taken back when it
/// reappears (looked for every [`DEVICE_RECHECK`]).
async fn follow_devices(
    devices: &mut Devices,
    opening: &mut Option<Opening>,
    recheck: &mut Option<tokio::task::JoinHandle<Vec<String>>>,
    next_recheck: &mut Instant,
    ctl: &MediaControl,
    out: &mut Playout,
    call_id: &str,
) {
    let (rate, native) = (devices.rate, devices.native);
    let o = opening.get_or_insert_with(|| Opening {
        playback: None,
        capture: None,
        since: Instant::now(),
        reasons: (None, None),
        chosen: (false, false),
    });
    if o.playback.is_none() && devices.playback.as_ref().is_some_and(|p| p.failed()) {
        let lost = devices.playback.take().map(|p| p.device.clone()).unwrap_or_default();
        devices.stalled_since = None;
        tracing::warn!(call_id, device = %lost, "speaker lost; the call goes on on the default output");
        devices.speaker_fallback = true;
        o.playback = Some(open_speaker(None, rate, native, out));
        o.reasons.0 = Some("lost");
        o.chosen.0 = false;
    }
    if o.capture.is_none() && devices.capture.as_ref().is_some_and(|c| c.failed()) {
        let lost = devices.capture.take().map(|c| c.device.clone()).unwrap_or_default();
        #[cfg(unix)]
        {
            devices.mic_arrived = None;
        }
        tracing::warn!(call_id, device = %lost, "microphone lost; the call goes on on the default input");
        devices.mic_fallback = true;
        o.capture = Some(tokio::task::spawn_blocking(move || agent_helper_audio::open_capture(None, rate, native)));
        o.reasons.1 = Some("lost");
        o.chosen.1 = false;
    }
    if !(devices.speaker_fallback || devices.mic_fallback) {
        return;
    }
    if recheck.is_none() && Instant::now() >= *next_recheck {
        *next_recheck = Instant::now() + DEVICE_RECHECK;
        *recheck = Some(tokio::task::spawn_blocking(|| {
            agent_helper_audio::list_devices().map(|l| l.into_iter().map(|d| d.id).collect()).unwrap_or_default()
        }));
    }
    if !recheck.as_ref().is_some_and(|h| h.is_finished()) {
        return;
    }
    let Some(Ok(present)) = (match recheck.take() {
        Some(h) => Some(h.await),
        None => None,
    }) else {
        return;
    };
    if devices.speaker_fallback
        && o.playback.is_none()
        && let Some(id) = ctl.speaker.clone().filter(|id| present.contains(id))
    {
        devices.speaker_fallback = false;
        o.playback = Some(open_speaker(Some(id), rate, native, out));
        o.reasons.0 = Some("restored");
        o.chosen.0 = true;
    }
    if devices.mic_fallback
        && o.capture.is_none()
        && let Some(id) = ctl.microphone.clone().filter(|id| present.contains(id))
    {
        devices.mic_fallback = false;
        o.capture =
            Some(tokio::task::spawn_blocking(move || agent_helper_audio::open_capture(Some(&id), rate, native)));
        o.reasons.1 = Some("restored");
        o.chosen.1 = true;
    }
}

/// Starts opening `device` (`None`: the default) as the call's speaker,
/// pulling `out`, on a blocking thread (calls into the audio system block).
fn open_speaker(
    device: Option<String>,
    rate: u32,
    native: bool,
    out: &Playout,
) -> tokio::task::JoinHandle<Result<agent_helper_audio::Speaker, agent_helper_audio::AudioError>> {
    let source = out.source();
    tokio::task::spawn_blocking(move || agent_helper_audio::open_speaker(device.as_deref(), rate, native, source))
}

/// Starts opening the speaker and microphone, each on a blocking thread
/// (calls into the audio system block); the loop picks them up when ready.
fn open_devices(ctl: &MediaControl, rate: u32, out: &Playout) -> Opening {
    let microphone = ctl.microphone.clone();
    let native = ctl.native_rate;
    Opening {
        playback: Some(open_speaker(ctl.speaker.clone(), rate, native, out)),
        capture: Some(tokio::task::spawn_blocking(move || {
            agent_helper_audio::open_capture(microphone.as_deref(), rate, native)
        })),
        since: Instant::now(),
        reasons: (None, None),
        chosen: (ctl.speaker.is_some(), ctl.microphone.is_some()),
    }
}

struct Opening {
    playback: Option<tokio::task::JoinHandle<Result<agent_helper_audio::Speaker, agent_helper_audio::AudioError>>>,
    capture: Option<tokio::task::JoinHandle<Result<agent_helper_audio::Capture, agent_helper_audio::AudioError>>>,
    since: Instant,
    /// Why the speaker / microphone is being (re)opened, told to the agent
    /// once it is: `lost` or `restored`; `None` for the call's first open.
    reasons: (Option<&'static str>, Option<&'static str>),
    /// A chosen (configured) speaker / microphone is being opened, not the default.
    chosen: (bool, bool),
}

impl Opening {
    /// Moves devices that finished opening into `devices`.
    async fn collect(
        &mut self,
        devices: &mut Devices,
        out: &mut Playout,
        call_id: &str,
        events: &tokio::sync::mpsc::Sender<MediaEvent>,
    ) {
        let (rate, native) = (devices.rate, devices.native);
        let tell = |direction: &'static str, device: &str, reason: Option<&'static str>| {
            if let Some(reason) = reason {
                let device = device.to_owned();
                let _ = events.try_send(MediaEvent::DeviceChanged {
                    call_id: call_id.to_owned(),
                    direction,
                    device,
                    reason,
                });
            }
        };
        if self.playback.as_ref().is_some_and(|h| h.is_finished())
            && let Some(h) = self.playback.take()
        {
            match h.await {
                Ok(Ok(p)) => {
                    tracing::info!(call_id, device = %p.device, rate = p.rate, through = %p.through, ms = self.since.elapsed().as_millis() as u64, "speaker open");
                    tell("output", &p.device, self.reasons.0.take());
                    out.set_speaker(p.rate, converter(call_id, rate, p.rate));
                    devices.served_seen = p.served();
                    devices.playback = Some(p);
                    devices.speaker_opened = Some(Instant::now());
                }
                // The chosen speaker is not there: the system default carries the call.
                Ok(Err(e)) if self.chosen.0 && !devices.speaker_fallback => {
                    tracing::warn!(call_id, error = %e, "chosen speaker missing; using the default output");
                    devices.speaker_fallback = true;
                    self.playback = Some(open_speaker(None, rate, native, out));
                    self.reasons.0 = Some("lost");
                }
                Ok(Err(e)) => tracing::warn!(call_id, error = %e, "no speaker for this call; its audio is not played"),
                Err(_) => {}
            }
        }
        if self.capture.as_ref().is_some_and(|h| h.is_finished())
            && let Some(h) = self.capture.take()
        {
            match h.await {
                Ok(Ok(mut c)) => {
                    tracing::info!(call_id, device = %c.device, rate = c.rate, through = %c.through, ms = self.since.elapsed().as_millis() as u64, "microphone open");
                    tell("input", &c.device, self.reasons.1.take());
                    devices.from_mic = converter(call_id, c.rate, rate);
                    #[cfg(unix)]
                    {
                        devices.mic_arrived = c.arrived.take().and_then(|s| tokio::net::UnixDatagram::from_std(s).ok());
                    }
                    devices.capture = Some(c);
                }
                Ok(Err(e)) if self.chosen.1 && !devices.mic_fallback => {
                    tracing::warn!(call_id, error = %e, "chosen microphone missing; using the default input");
                    devices.mic_fallback = true;
                    self.capture =
                        Some(tokio::task::spawn_blocking(move || agent_helper_audio::open_capture(None, rate, native)));
                    self.reasons.1 = Some("lost");
                }
                Ok(Err(e)) => tracing::warn!(call_id, error = %e, "no microphone for this call; silence is sent"),
                Err(_) => {}
            }
        }
    }
}

/// A rate converter for a device that runs at another rate than the codec.
fn converter(call_id: &str, from: u32, to: u32) -> Option<Resampler> {
    if from == to {
        return None;
    }
    match Resampler::new(from, to) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(call_id, error = e, "no rate conversion; the device's audio is dropped");
            None
        }
    }
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    u32::from_le_bytes(b)
}
