//! BPClient.log and the diagnostics bundle, through the real helper.
#![cfg(unix)]

mod support;

use std::io::Read;

use serde_json::json;
use support::*;

fn log_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir.join("logs")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

#[test]
fn log_rotates_at_the_configured_size_and_keeps_at_most_n_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), "[log]\nlevel = \"debug\"\nmax_file_bytes = 4096\nmax_files = 3\n")
        .unwrap();
    let helper = Helper::start(dir.path());
    let mut conn = helper.connect();
    // Each request writes a debug line; 400 of them are far more than 3 × 4 KiB.
    for _ in 0..400 {
        conn.request("getStatus", json!({}));
    }
    conn.request("setLogLevel", json!({"level": "info"}));
    wait_until("three log files", || log_files(dir.path()).len() == 3);
    // Stopping flushes the writer; the count must still hold afterwards.
    assert!(helper.stop().success());
    assert_eq!(log_files(dir.path()), ["BPClient.log", "BPClient.log.1", "BPClient.log.2"]);
    for rotated in ["BPClient.log.1", "BPClient.log.2"] {
        let len = std::fs::metadata(dir.path().join("logs").join(rotated)).unwrap().len();
        assert!((4096..4096 + 512).contains(&len), "{rotated} is {len} bytes");
    }
    let active = std::fs::read_to_string(dir.path().join("logs/BPClient.log")).unwrap();
    assert!(active.trim_end().ends_with("stopped"), "newest lines are in BPClient.log: {active}");
}

#[test]
fn collect_diagnostics_returns_a_zip_with_logs_config_and_facts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        "[sip]\ncustom_headers = { X-Api-Token = \"tok\" }\n# token = \"abc-secret-123\"\n",
    )
    .unwrap();
    let helper = Helper::start(dir.path());
    let out = helper.call("collectDiagnostics", json!({}));
    let path = std::path::PathBuf::from(out["path"].as_str().unwrap());
    assert!(path.starts_with(dir.path().join("diagnostics")), "{path:?}");
    assert_eq!(out["bytes"], std::fs::metadata(&path).unwrap().len());

    let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    let mut names: Vec<String> = zip.file_names().map(|n| n.unwrap().into_owned()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "config/config.toml",
            "devices.json",
            "effective-config.json",
            "logs/BPClient.log",
            "status.json",
            "system.json",
            "versions.json"
        ]
    );
    let mut read = |name: &str| {
        let mut s = String::new();
        zip.by_name(name).unwrap().read_to_string(&mut s).unwrap();
        s
    };
    let config = read("config/config.toml");
    assert!(!config.contains("abc-secret-123") && config.contains("<redacted>"), "{config}");
    let versions: serde_json::Value = serde_json::from_str(&read("versions.json")).unwrap();
    assert_eq!(versions["helper"], env!("CARGO_PKG_VERSION"));
    let status: serde_json::Value = serde_json::from_str(&read("status.json")).unwrap();
    assert_eq!(status["pid"], helper.pid());
    // Lines from start-up are in; the bundle's own "collecting" line may still be
    // in the non-blocking writer's queue when the zip is made.
    assert!(read("logs/BPClient.log").contains(" ready socket="));
}
