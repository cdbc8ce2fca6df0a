//! The media core of Agent Helper, sans-IO: no sockets, no sound cards, no
//! clock. Packets and samples come in with the time they arrived; frames to
//! play and packets to send come out. The engine's media driver owns the
//! sockets and the audio devices.
//!
//! - [`rtp`]: RTP packets from the network, checked and bounded before use.
//! - [`codec`]: G.711 and Opus behind one face (frames in, payloads out, concealment).
//! - [`g711`]: G.711 µ-law and A-law; `g729` (feature `g729`): G.729 Annex A via libbcg729.
//! - [`dtmf`]: RFC 4733 telephone-events, sent and read.
//! - [`plc`]: loss concealment for codecs without their own (G.711 Appendix I style).
//! - [`jitter`]: an adaptive jitter buffer: reordering, duplicates, late packets.
//! - [`receiver`]: the receiving half of a call, pulled by the sound card: jitter buffer, decoder, concealment.
//! - [`quality`]: RFC 3550 jitter and loss, and the ITU-T G.107 E-model (R, MOS).
//! - [`rtcp`]: sender/receiver reports, and the round-trip time from the peer's.
//! - [`srtp`]: SRTP with keys from SDP (SDES), forged packets dropped without state.
//! - [`sound_file`]: sound files given to the helper (a ring tone), bounded and mixed to mono.

pub mod codec;
pub mod dtmf;
pub mod g711;
pub mod g722;
#[cfg(feature = "g729")]
pub mod g729;
pub mod jitter;
pub mod plc;
pub mod quality;
pub mod receiver;
pub mod resample;
pub mod rtcp;
pub mod rtp;
pub mod sound_file;
pub mod srtp;
