//! How much of the machine's CPU time its hypervisor took (`steal` in
//! `/proc/stat`). On the shared CI machine it comes in bursts (7–12 % of
//! the CPUs over minutes) that stall the sound server and every process at
//! once; the audio tests and the voice benchmark print it beside their
//! figures, so a low score can be told from a noisy hour.

/// The machine's CPU time counters at one moment (all CPUs, clock ticks).
pub struct Steal {
    stolen: u64,
    total: u64,
}

impl Steal {
    /// The counters now; `None` where there is no `/proc/stat`.
    pub fn now() -> Option<Steal> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        // "cpu  user nice system idle iowait irq softirq steal guest guest_nice":
        // guest time is already inside user and nice, so it is left out.
        let fields: Vec<u64> =
            stat.lines().next()?.split_whitespace().skip(1).take(8).map(|v| v.parse().ok()).collect::<Option<_>>()?;
        (fields.len() == 8).then(|| Steal { stolen: fields[7], total: fields.iter().sum() })
    }

    /// The share of all CPU time since `self` that the hypervisor took, in %.
    pub fn percent_since(&self) -> Option<f64> {
        let now = Steal::now()?;
        let total = now.total.checked_sub(self.total).filter(|t| *t > 0)?;
        Some(now.stolen.saturating_sub(self.stolen) as f64 * 100.0 / total as f64)
    }
}

/// `percent_since` for a message: "7.4 %", or "unknown".
pub fn since(start: &Option<Steal>) -> String {
    match start.as_ref().and_then(Steal::percent_since) {
        Some(p) => format!("{p:.1} %"),
        None => "unknown".to_owned(),
    }
}
