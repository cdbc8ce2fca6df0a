use agent_helper_diagnostics::logging::{LogSettings, build};
use agent_helper_diagnostics::{BundleEntry, LOG_FILE_NAME, collect, redact};
use agent_helper_protocol::methods::LogLevel;
use std::io::Read;

fn settings(dir: &std::path::Path, max_file_bytes: u64, max_files: u32) -> LogSettings {
    LogSettings { dir: dir.to_owned(), level: LogLevel::Info, max_file_bytes, max_files }
}

#[test]
fn rotates_at_the_size_keeps_the_active_name_and_at_most_n_files() {
    let dir = tempfile::tempdir().unwrap();
    let (subscriber, logging) = build(&settings(dir.path(), 1024, 3)).unwrap();
    tracing::subscriber::with_default(subscriber, || {
        for i in 0..200 {
            tracing::info!(line = i, "a line of filler text to make the log grow quickly");
        }
        tracing::info!("the very last line");
    });
    drop(logging); // flushes the writer thread

    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["BPClient.log", "BPClient.log.1", "BPClient.log.2"]);
    let active = std::fs::read_to_string(dir.path().join(LOG_FILE_NAME)).unwrap();
    assert!(active.trim_end().ends_with("the very last line"), "{active}");
    for rotated in ["BPClient.log.1", "BPClient.log.2"] {
        let len = std::fs::metadata(dir.path().join(rotated)).unwrap().len();
        // Rotation happens after the write that crosses the limit, so whole lines stay together.
        assert!((1024..1024 + 200).contains(&len), "{rotated}: {len} bytes");
        let text = std::fs::read_to_string(dir.path().join(rotated)).unwrap();
        assert!(text.ends_with('\n') && text.lines().all(|l| l.contains("INFO")), "{text}");
    }
}

#[test]
fn lines_carry_millisecond_time_thread_and_module_and_the_level_changes_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let (subscriber, logging) = build(&settings(dir.path(), 1 << 20, 2)).unwrap();
    tracing::subscriber::with_default(subscriber, || {
        tracing::debug!("hidden at info");
        logging.set_level(LogLevel::Debug);
        tracing::debug!("shown at debug");
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        std::thread::Builder::new()
            .name("sip-driver".into())
            .spawn(move || tracing::dispatcher::with_default(&dispatch, || tracing::warn!("from a named thread")))
            .unwrap()
            .join()
            .unwrap();
    });
    assert_eq!(logging.level(), LogLevel::Debug);
    drop(logging);
    let text = std::fs::read_to_string(dir.path().join(LOG_FILE_NAME)).unwrap();
    assert!(!text.contains("hidden at info"), "{text}");
    let line = text.lines().find(|l| l.contains("shown at debug")).unwrap();
    let ts = regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d +DEBUG ").unwrap();
    assert!(ts.is_match(line), "{line}");
    assert!(line.contains("logging:"), "module target missing: {line}");
    assert!(text.lines().any(|l| l.contains("sip-driver") && l.contains("from a named thread")), "{text}");
}

#[test]
fn secrets_never_reach_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (subscriber, logging) = build(&settings(dir.path(), 1 << 20, 2)).unwrap();
    redact::register_secret("correct-horse-battery");
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!("user typed correct-horse-battery somewhere");
        tracing::info!(password = "p4ssw0rd!", "login attempt");
        tracing::info!("sent\r\nAuthorization: Digest username=\"a\", response=\"0123abcd\"\r\n");
        tracing::info!(header = "Bearer abc.def.ghi", "token header");
    });
    drop(logging);
    let text = std::fs::read_to_string(dir.path().join(LOG_FILE_NAME)).unwrap();
    for secret in ["correct-horse-battery", "p4ssw0rd!", "0123abcd", "abc.def.ghi"] {
        assert!(!text.contains(secret), "{secret} leaked:\n{text}");
    }
    assert_eq!(text.matches("<redacted>").count(), 4, "{text}");
    redact::forget_secret("correct-horse-battery");
}

#[test]
fn bundle_holds_logs_redacted_configs_and_entries() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("BPClient.log"), "now\n").unwrap();
    std::fs::write(logs.join("BPClient.log.1"), "before password=abc12345\n").unwrap();
    std::fs::write(logs.join("unrelated.txt"), "x").unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[sip]\ncustom_headers = { X-Token = \"t\" }\ntoken = \"sekrit-value\"\n").unwrap();
    let out = dir.path().join("diagnostics");
    let missing = dir.path().join("policy.toml");
    let entries = vec![BundleEntry { name: "versions.json".into(), bytes: br#"{"helper":"0.1.0"}"#.to_vec() }];

    let info = collect(&out, &logs, &[("config.toml", &config), ("policy.toml", &missing)], entries).unwrap();
    assert_eq!(info.files, ["logs/BPClient.log", "logs/BPClient.log.1", "config/config.toml", "versions.json"]);
    assert_eq!(info.bytes, std::fs::metadata(&info.path).unwrap().len());

    let mut zip = zip::ZipArchive::new(std::fs::File::open(&info.path).unwrap()).unwrap();
    let mut read = |name: &str| {
        let mut s = String::new();
        zip.by_name(name).unwrap().read_to_string(&mut s).unwrap();
        s
    };
    assert_eq!(read("logs/BPClient.log.1"), "before password=<redacted>\n");
    assert!(!read("config/config.toml").contains("sekrit-value"));
    assert_eq!(read("versions.json"), r#"{"helper":"0.1.0"}"#);

    // Only the newest bundles are kept and no temp file is left.
    for _ in 0..6 {
        collect(&out, &logs, &[], vec![]).unwrap();
    }
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), agent_helper_diagnostics::bundle::KEEP_BUNDLES, "{left:?}");
}
