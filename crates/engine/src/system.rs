//! Facts about the machine for the diagnostics bundle.

use serde_json::{Value, json};

pub(crate) fn versions() -> Value {
    json!({
        "helper": agent_helper_protocol::HELPER_VERSION,
        "protocol": agent_helper_protocol::PROTOCOL_VERSION,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "target": { "os": std::env::consts::OS, "arch": std::env::consts::ARCH },
    })
}

pub(crate) fn system() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    let os_release = read("/etc/os-release").and_then(|text| {
        text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_owned())
    });
    json!({
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "osRelease": os_release,
        "kernel": read("/proc/sys/kernel/osrelease"),
        "hostname": read("/proc/sys/kernel/hostname").or_else(|| std::env::var("COMPUTERNAME").ok()),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "localTime": chrono::Local::now().to_rfc3339(),
    })
}
