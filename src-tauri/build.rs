fn main() {
    // The app's own commands get permissions (`allow-engine` …) that the
    // capabilities hand out per window.
    let commands = tauri_build::AppManifest::new().commands(&[
        "engine",
        "window_info",
        "incoming_call",
        "call_history",
        "test_tone",
        "mic_level",
        "open_window",
    ]);
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(commands)).expect("tauri build");
}
