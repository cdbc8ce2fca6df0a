use agent_helper_media::codec::Codec;
use std::io::{Read, Write};
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let mut r = vec![];
    std::fs::File::open(&a[1]).unwrap().read_to_end(&mut r).unwrap();
    let pcm: Vec<i16> = r.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
    let loss: u64 = a[3].parse().unwrap();
    let mut enc = Codec::for_name(if a[4] == "raw16" { "g722" } else { &a[4] }).unwrap();
    let frame = enc.frame();
    let pk: Vec<Vec<u8>> = pcm
        .chunks_exact(frame)
        .map(|f| {
            let mut o = vec![];
            enc.encode(f, &mut o);
            o
        })
        .collect();
    let mut seed: u64 = a[5].parse().unwrap();
    let lost: Vec<bool> = (0..pk.len())
        .map(|_| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % 100 < loss
        })
        .collect();
    if a[4] == "raw16" {
        let mut plc = agent_helper_media::plc::Concealer::new(16000);
        let mut f = std::fs::File::create(format!("{}_plc.raw", a[2])).unwrap();
        for (k, chunk) in pcm.chunks_exact(320).enumerate() {
            let mut out = chunk.to_vec();
            if lost[k] {
                plc.conceal(&mut out)
            } else {
                plc.good(&mut out)
            }
            for s in &out {
                f.write_all(&s.to_le_bytes()).unwrap();
            }
        }
        std::fs::copy(format!("{}_plc.raw", a[2]), format!("{}_zero.raw", a[2])).unwrap();
        return;
    }
    for mode in ["plc", "zero"] {
        let mut c = Codec::for_name(&a[4]).unwrap();
        let mut f = std::fs::File::create(format!("{}_{mode}.raw", a[2])).unwrap();
        let mut out = vec![];
        for k in 0..pk.len() {
            if lost[k] {
                if mode == "plc" {
                    let nx = (k + 1 < pk.len() && !lost[k + 1]).then(|| pk[k + 1].as_slice());
                    c.conceal(nx, frame, &mut out)
                } else {
                    out.clear();
                    out.resize(frame, 0)
                }
            } else {
                c.decode(&pk[k], &mut out)
            }
            for s in &out {
                f.write_all(&s.to_le_bytes()).unwrap();
            }
        }
    }
    eprintln!("{} of {} lost", lost.iter().filter(|x| **x).count(), pk.len());
}
