//! Voice quality as the agent hears it: loss and jitter of the received
//! stream (RFC 3550 §6.4.1, §A.3) and the ITU-T G.107 E-model's
//! transmission rating R, mapped to a mean opinion score (MOS).

/// What an RTP receiver counts (RFC 3550 §A.1, §A.3).
#[derive(Debug, Clone, Default)]
pub struct ReceiveCounters {
    base_seq: Option<u32>,
    /// Extended highest sequence number: cycles × 65536 + highest.
    max_ext: u32,
    received: u64,
    /// At the last report: (expected, received), for the interval's loss.
    prior: (u64, u64),
}

impl ReceiveCounters {
    /// A packet with sequence number `seq` arrived.
    pub fn packet(&mut self, seq: u16) {
        let seq = u32::from(seq);
        match self.base_seq {
            None => {
                self.base_seq = Some(seq);
                self.max_ext = seq;
            }
            Some(_) => {
                let max = self.max_ext & 0xFFFF;
                let cycles = self.max_ext & !0xFFFF;
                let delta = seq.wrapping_sub(max) & 0xFFFF;
                if delta < 0x8000 {
                    // In order (or a small gap): may wrap into the next cycle.
                    let wrapped = if seq < max { cycles.wrapping_add(0x1_0000) } else { cycles };
                    self.max_ext = wrapped | seq;
                }
                // Otherwise late or duplicate: counted as received only.
            }
        }
        self.received += 1;
    }

    pub fn expected(&self) -> u64 {
        self.base_seq.map_or(0, |b| u64::from(self.max_ext.wrapping_sub(b)) + 1)
    }

    /// Packets lost since the start (never negative: duplicates do not count back).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// The fraction lost since the last call, as RTCP's 8-bit fixed point
    /// (RFC 3550 §A.3), and the same as a ratio.
    pub fn fraction_lost_since_last(&mut self) -> (u8, f64) {
        let (expected, received) = (self.expected(), self.received);
        let e = expected.saturating_sub(self.prior.0);
        let r = received.saturating_sub(self.prior.1);
        self.prior = (expected, received);
        if e == 0 || r >= e {
            return (0, 0.0);
        }
        let ratio = (e - r) as f64 / e as f64;
        ((((e - r) << 8) / e).min(255) as u8, ratio)
    }

    pub fn extended_highest(&self) -> u32 {
        self.max_ext
    }
}

/// Codec impairment per ITU-T G.113 Appendix I: (Ie, Bpl).
pub fn codec_impairment(codec: &str) -> (f64, f64) {
    match codec.to_ascii_lowercase().as_str() {
        "pcmu" | "pcma" => (0.0, 25.1),
        "g722" => (0.0, 20.0),
        "g729" => (11.0, 19.0),
        // Opus is not in G.113; its wideband quality with FEC is at least G.711's.
        "opus" => (0.0, 30.0),
        _ => (0.0, 10.0),
    }
}

/// The E-model rating R (G.107 §7, simplified to the default values except
/// delay and packet loss): `delay` one-way mouth-to-ear in ms, `loss` the
/// packet loss in percent, `burst` the burst ratio (1 = random loss).
pub fn r_factor(codec: &str, delay_ms: f64, loss_percent: f64, burst: f64) -> f64 {
    let (ie, bpl) = codec_impairment(codec);
    let ppl = loss_percent.clamp(0.0, 100.0);
    let burst = burst.max(1.0);
    let ie_eff = ie + (95.0 - ie) * ppl / (ppl / burst + bpl);
    // Delay impairment Id, G.107's absolute-delay term (Idd) as usually approximated.
    let d = delay_ms.max(0.0);
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    (93.2 - id - ie_eff).clamp(0.0, 100.0)
}

/// R to MOS (G.107 Annex B).
pub fn mos(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_loss_across_sequence_wrap_with_reordering_and_duplicates() {
        let mut c = ReceiveCounters::default();
        for seq in [65_530u16, 65_531, 65_533, 65_532, 65_535, 0, 0, 2, 3] {
            c.packet(seq);
        }
        // 65530..=3 is 10 packets; 65534 and 1 never came; 0 came twice.
        assert_eq!(c.expected(), 10);
        assert_eq!(c.received(), 9);
        assert_eq!(c.lost(), 1, "duplicates hide one loss, as RFC 3550 counts it");
        assert_eq!(c.extended_highest(), 0x1_0003);
        let (fraction, ratio) = c.fraction_lost_since_last();
        assert_eq!(fraction, 25, "1 of 10 lost, in 1/256ths");
        assert!((ratio - 0.1).abs() < 1e-9);
        assert_eq!(c.fraction_lost_since_last(), (0, 0.0), "nothing new since");
    }

    #[test]
    fn e_model_values() {
        // G.711 with no loss and a short delay: R ≈ 93, MOS ≈ 4.4.
        let r = r_factor("PCMU", 20.0, 0.0, 1.0);
        assert!((r - 92.72).abs() < 0.01, "{r}");
        assert!((mos(r) - 4.40).abs() < 0.02, "{}", mos(r));
        // 5 % random loss costs G.711 (with PLC) about 15 points.
        let lossy = r_factor("PCMU", 20.0, 5.0, 1.0);
        assert!((70.0..80.0).contains(&lossy), "{lossy}");
        // G.729 starts lower; long delays hurt everyone.
        assert!(r_factor("G729", 20.0, 0.0, 1.0) < r);
        assert!(r_factor("PCMU", 400.0, 0.0, 1.0) < 70.0);
        assert_eq!(mos(0.0), 1.0);
        assert_eq!(mos(100.0), 4.5);
    }
}
