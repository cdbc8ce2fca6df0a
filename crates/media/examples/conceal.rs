//! Offline loss concealment, for the figures in docs/benchmarks.md: speech
//! (raw 16-bit mono PCM at the codec's rate) is encoded, a random share of
//! its 20 ms packets is dropped, and it is decoded twice: with our
//! concealment (`<out>_plc.raw`, bridging into the next packet when it is
//! not lost too) and with silence for each lost packet (`<out>_zero.raw`).
//! Score both against the input with PESQ.
//!
//! ```sh
//! cargo run -p agent-helper-media --example conceal -- speech8.raw /tmp/out 5 pcmu 1
//! ```
//!
//! `raw16` instead of a codec runs the concealment on uncoded 16 kHz PCM,
//! `g722-oracle` on G.722 decoded without a loss (see below).

use std::io::{Read, Write};

use agent_helper_media::codec::Codec;
use agent_helper_media::plc::Concealer;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, out, percent, codec, seed] = &args[..] else {
        eprintln!("usage: conceal INPUT.raw OUT_PREFIX LOSS_PERCENT CODEC|raw16|g722-oracle SEED");
        std::process::exit(2);
    };
    let mut bytes = vec![];
    std::fs::File::open(input).and_then(|mut f| f.read_to_end(&mut bytes)).expect("read the input");
    let pcm: Vec<i16> = bytes.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
    let percent: u64 = percent.parse().expect("a loss percentage");
    // A fixed linear congruential generator: the same pattern for the same seed.
    let mut state: u64 = seed.parse().expect("a seed");
    let mut lost = || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % 100 < percent
    };
    let write = |name: &str, samples: &[i16]| {
        let mut f = std::fs::File::create(format!("{out}_{name}.raw")).expect("create the output");
        for s in samples {
            f.write_all(&s.to_le_bytes()).expect("write the output");
        }
    };

    // Concealment alone, at 16 kHz, bridging into the next frame when it is
    // here: on the uncoded speech (`raw16`), or on G.722 decoded with no
    // packet missed (`g722-oracle`: a decoder state that never goes stale,
    // the best any state recovery after a loss could do).
    if codec == "raw16" || codec == "g722-oracle" {
        let mut frames: Vec<Vec<i16>> = pcm.chunks_exact(320).map(<[i16]>::to_vec).collect();
        if codec == "g722-oracle" {
            let (mut encoder, mut decoder) = (Codec::for_name("g722").unwrap(), Codec::for_name("g722").unwrap());
            let mut packet = vec![];
            for frame in &mut frames {
                packet.clear();
                encoder.encode(frame, &mut packet);
                decoder.decode(&packet, frame);
            }
        }
        let losses: Vec<bool> = frames.iter().map(|_| lost()).collect();
        let mut plc = Concealer::new(16_000);
        let mut played = vec![];
        for (k, frame) in frames.iter().enumerate() {
            let mut out = frame.clone();
            if losses[k] {
                let next = frames.get(k + 1).filter(|_| !losses.get(k + 1).copied().unwrap_or(true));
                plc.conceal_before(&mut out, next.map(Vec::as_slice));
            } else {
                plc.good(&mut out);
            }
            played.extend(out);
        }
        write("plc", &played);
        return;
    }

    let mut encoder = Codec::for_name(codec).expect("a codec we have");
    let frame = encoder.frame();
    let packets: Vec<Vec<u8>> = pcm
        .chunks_exact(frame)
        .map(|f| {
            let mut p = vec![];
            encoder.encode(f, &mut p);
            p
        })
        .collect();
    let losses: Vec<bool> = packets.iter().map(|_| lost()).collect();
    for concealed in [true, false] {
        let mut decoder = Codec::for_name(codec).expect("a codec we have");
        let (mut played, mut out_frame) = (vec![], vec![]);
        for (k, packet) in packets.iter().enumerate() {
            if !losses[k] {
                decoder.decode(packet, &mut out_frame);
            } else if concealed {
                let next = packets.get(k + 1).filter(|_| !losses.get(k + 1).copied().unwrap_or(true));
                decoder.conceal(next.map(Vec::as_slice), frame, &mut out_frame);
            } else {
                out_frame.clear();
                out_frame.resize(frame, 0);
            }
            played.extend_from_slice(&out_frame);
        }
        write(if concealed { "plc" } else { "zero" }, &played);
    }
    eprintln!("{} of {} packets lost", losses.iter().filter(|l| **l).count(), packets.len());
}
