//! G.729 Annex A through the system's libbcg729 (GPL-3: only in builds with
//! the `g729` feature, which makes the whole program GPL-3; see
//! docs/decisions.md). A 20 ms RTP frame is two 10 ms G.729 frames of 10
//! bytes; Annex B (VAD/DTX) is off, as we offer `annexb=no`.

use std::ptr::NonNull;

/// Samples in one G.729 frame (10 ms at 8 kHz) and its bytes.
pub const FRAME_SAMPLES: usize = 80;
pub const FRAME_BYTES: usize = 10;

#[repr(C)]
struct EncoderContext {
    _private: [u8; 0],
}

#[repr(C)]
struct DecoderContext {
    _private: [u8; 0],
}

#[link(name = "bcg729")]
unsafe extern "C" {
    fn initBcg729EncoderChannel(enable_vad: u8) -> *mut EncoderContext;
    fn closeBcg729EncoderChannel(context: *mut EncoderContext);
    fn bcg729Encoder(context: *mut EncoderContext, input: *const i16, bitstream: *mut u8, length: *mut u8);
    fn initBcg729DecoderChannel() -> *mut DecoderContext;
    fn closeBcg729DecoderChannel(context: *mut DecoderContext);
    fn bcg729Decoder(
        context: *mut DecoderContext,
        bitstream: *const u8,
        length: u8,
        frame_erased: u8,
        sid: u8,
        rfc3389: u8,
        signal: *mut i16,
    );
}

pub struct Encoder(NonNull<EncoderContext>);
pub struct Decoder(NonNull<DecoderContext>);

// SAFETY: a bcg729 channel context is plain memory used by one thread at a
// time (we hold it behind `&mut`); the library keeps no global state.
unsafe impl Send for Encoder {}
unsafe impl Send for Decoder {}

impl Encoder {
    pub fn new() -> Option<Encoder> {
        // SAFETY: allocates and initialises a context, or returns null.
        NonNull::new(unsafe { initBcg729EncoderChannel(0) }).map(Encoder)
    }

    /// 10 ms of audio (80 samples) to its 10 bytes.
    pub fn encode(&mut self, pcm: &[i16; FRAME_SAMPLES], out: &mut [u8; FRAME_BYTES]) {
        let mut length = 0u8;
        // SAFETY: the context is live; bcg729 reads 80 samples and writes at
        // most 10 bytes (Annex B off).
        unsafe { bcg729Encoder(self.0.as_ptr(), pcm.as_ptr(), out.as_mut_ptr(), &mut length) };
    }
}

impl Decoder {
    pub fn new() -> Option<Decoder> {
        // SAFETY: allocates and initialises a context, or returns null.
        NonNull::new(unsafe { initBcg729DecoderChannel() }).map(Decoder)
    }

    /// One frame of 10 bytes to 80 samples; `None` conceals a lost frame
    /// (the library's own erasure concealment).
    pub fn decode(&mut self, frame: Option<&[u8; FRAME_BYTES]>, out: &mut [i16; FRAME_SAMPLES]) {
        let (ptr, len, erased) = match frame {
            Some(f) => (f.as_ptr(), FRAME_BYTES as u8, 0),
            None => (std::ptr::null(), 0, 1),
        };
        // SAFETY: the context is live; bcg729 reads `len` bytes (none when
        // erased) and writes 80 samples.
        unsafe { bcg729Decoder(self.0.as_ptr(), ptr, len, erased, 0, 0, out.as_mut_ptr()) };
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: the context came from initBcg729EncoderChannel and is freed once.
        unsafe { closeBcg729EncoderChannel(self.0.as_ptr()) }
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: the context came from initBcg729DecoderChannel and is freed once.
        unsafe { closeBcg729DecoderChannel(self.0.as_ptr()) }
    }
}
