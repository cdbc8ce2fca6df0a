//! The desktop app end to end: the real app (Tauri, WebKitGTK) on its own
//! Xvfb display, driven window by window through tauri-driver and
//! WebKitWebDriver, registered with kamailio, calling and called by baresip,
//! playing its test tone on a PulseAudio null sink. Screenshots of each
//! window land in target/desktop-screenshots/ (artifacts, not committed).

mod support;

use std::path::Path;
use std::sync::Mutex;

use serde_json::json;
use support::agent::PASSWORD;
use support::baresip::Baresip;
use support::desktop::{Desktop, On};
use support::kamailio::Kamailio;
use support::pulse::Pulse;

/// One app at a time: each brings an X server, a WebKit and a sound server.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn configure(profile: &Path, k: &Kamailio) {
    std::fs::write(
        profile.join("config.toml"),
        format!(
            "[sip]\ndomain = \"127.0.0.1\"\nservers = [{{ host = \"127.0.0.1\", port = {} }}]\n[codecs]\nallow = [\"pcmu\"]\n\
             [desktop]\ncustomer_fields = [{{ key = \"tier\", label = \"Service level\" }}, {{ key = \"acct\", label = \"Account\" }}]\n",
            k.port
        ),
    )
    .unwrap();
}

/// A test's world: kamailio, a configured profile and the app on it (one
/// at a time). Fields drop in order: the app stops before kamailio does.
struct Rig {
    app: Desktop,
    k: Kamailio,
    profile: tempfile::TempDir,
    _one: std::sync::MutexGuard<'static, ()>,
}

impl Rig {
    fn start(env: &[(&str, String)], with_tray: bool) -> Rig {
        let one = one_at_a_time();
        let k = Kamailio::start(PASSWORD);
        let profile = tempfile::tempdir().unwrap();
        configure(profile.path(), &k);
        let app = Desktop::start_on(On::Profile(profile.path()), env, with_tray);
        Rig { app, k, profile, _one: one }
    }
}

/// Logs in as agent1 from the settings window (opened from the softphone).
fn log_in(app: &Desktop) {
    app.window("Agent Helper — Softphone");
    app.until("the softphone", "document.body.dataset.ready");
    app.click("#open-settings");
    app.window("Agent Helper — Settings");
    app.until("the settings", "document.body.dataset.ready");
    app.move_to(400);
    app.fill("#username", "agent1");
    app.fill("#password", PASSWORD);
    app.run("document.querySelector('#remember').checked = false");
    app.click("#login");
    app.until("registration", "document.querySelector('#registration-state').dataset.state === 'registered'");
    app.screenshot("settings");
}

/// The app's capture streams on the sound server (`pactl` indexes).
fn app_microphone_streams(pulse: &Pulse) -> Vec<u32> {
    let (_, listing) = pulse.pactl(&["list", "source-outputs"]);
    listing
        .split("Source Output #")
        .skip(1)
        .filter(|block| block.contains("application.name = \"Agent Helper\""))
        .filter_map(|block| block.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Closes the settings window (it hides; the app keeps running), so the
/// softphone is in front again.
fn close_settings(app: &Desktop) {
    app.window("Agent Helper — Settings");
    // Closed after the script has answered: a window gone mid-script leaves
    // WebKitWebDriver with no result to parse.
    app.run("setTimeout(() => window.close(), 0)");
    app.window("Agent Helper — Softphone");
}

#[test]
fn softphone_logs_in_calls_baresip_and_hangs_up() {
    let rig = Rig::start(&[], false);
    let app = &rig.app;
    let mut bob = Baresip::start("bob", rig.k.port, PASSWORD, true);
    log_in(app);
    close_settings(app);
    app.until("the look to follow registration", "document.querySelector('#look').dataset.look === 'registered'");
    app.fill("#target", "bob");
    app.click("#dial");
    bob.wait_event("CALL_ESTABLISHED");
    app.until(
        "the call to show as connected",
        "document.querySelector('li.call .state')?.dataset.i18n === 'state.connected'",
    );
    app.screenshot("softphone-in-call");

    // The call's controls: hold and resume, mute and unmute, DTMF from the keypad.
    app.click("li.call button.hold");
    app.until("the call on hold", "document.querySelector('li.call .state')?.dataset.i18n === 'state.held'");
    app.click("li.call button.resume");
    app.until("the call resumed", "document.querySelector('li.call button.hold')");
    app.click("li.call button.mute");
    app.until("the call muted", "document.querySelector('li.call button.unmute')");
    app.click("li.call button.unmute");
    app.until("the call unmuted", "document.querySelector('li.call button.mute')");
    for digit in ["1", "5", "#"] {
        app.click(&format!("#keypad button[aria-label='DTMF {digit}']"));
        assert_eq!(bob.wait_event("CALL_DTMF_START")["param"], json!(digit), "baresip hears the keypad");
    }

    app.click("li.call button.hangup");
    bob.wait_event("CALL_CLOSED");
    app.until("the call list to empty", "!document.querySelector('li.call')");
    let history = app.until("the call in the history", "document.querySelector('#history li')?.textContent");
    assert!(history.as_str().unwrap().contains("bob"), "history shows the call: {history}");
    assert!(history.as_str().unwrap().contains("local-hangup"), "{history}");
    // The history is in the profile, for the next start.
    let saved = std::fs::read_to_string(rig.profile.path().join("call-history.json")).unwrap();
    assert!(saved.contains("sip:bob@127.0.0.1"), "{saved}");
}

/// The softphone's transfer buttons: bob handed to carol blind, then again
/// after the agent has talked to carol (a consultation, then "complete").
#[test]
fn the_softphone_transfers_blind_and_after_consulting() {
    let rig = Rig::start(&[], false);
    let app = &rig.app;
    let mut bob = Baresip::start("bob", rig.k.port, PASSWORD, true);
    let mut carol = Baresip::start("carol", rig.k.port, PASSWORD, true);
    log_in(app);
    close_settings(app);
    let call_bob = |app: &Desktop, bob: &mut Baresip| {
        app.fill("#target", "bob");
        app.click("#dial");
        bob.wait_event("CALL_ESTABLISHED");
        app.until("the call connected", "document.querySelector('li.call .state')?.dataset.i18n === 'state.connected'");
        app.fill("#target", "carol");
    };

    // Blind: bob is sent on to carol and the agent's call ends.
    call_bob(app, &mut bob);
    app.click("li.call button.transfer");
    let established = carol.wait_event("CALL_ESTABLISHED");
    assert!(established["peeruri"].as_str().unwrap().contains("bob"), "carol talks to bob: {established}");
    app.until("the call list to empty", "!document.querySelector('li.call')");
    let history = app.until("the transfer in the history", "document.querySelector('#history li')?.textContent");
    assert!(history.as_str().unwrap().contains("transferred"), "{history}");
    bob.command("hangup", "");
    carol.wait_event("CALL_CLOSED");

    // Consulted: bob waits on hold while the agent talks to carol, then the
    // agent completes the transfer.
    call_bob(app, &mut bob);
    app.click("li.call button.consult");
    let consulting = carol.wait_event("CALL_ESTABLISHED");
    assert!(consulting["peeruri"].as_str().unwrap().contains("agent1"), "carol talks to the agent: {consulting}");
    app.until(
        "bob on hold beside the consultation",
        "document.querySelectorAll('li.call').length === 2 \
         && document.querySelector('li.call .state[data-i18n=\"state.held\"]')",
    );
    app.screenshot("softphone-consulting");
    app.click("li.call button.complete-transfer");
    let established = carol.wait_event("CALL_ESTABLISHED");
    assert!(established["peeruri"].as_str().unwrap().contains("bob"), "carol talks to bob: {established}");
    app.until("both calls gone", "!document.querySelector('li.call')");
}

#[test]
fn an_inbound_call_pops_up_over_the_desktop_and_is_answered_there() {
    let rig = Rig::start(&[], false);
    let app = &rig.app;
    log_in(app);

    // The agent is typing in a field (here the settings' user name) when the call comes.
    app.run("const e = document.querySelector('#username'); e.value = ''; e.focus();");
    let mut bob = Baresip::start("bob", rig.k.port, PASSWORD, false);
    bob.command("dial", "sip:agent1@127.0.0.1");
    app.wait_log("call popup shown");
    // On screen: the popup's corner of the (black) root window is drawn.
    support::wait_until("the popup on screen", || app.pixel(1100, 700) != (0, 0, 0));
    // The popup took no keyboard: keys still land in that field.
    app.xdotool(&["type", "--delay", "20", "still typing"]);
    app.until("the keys in the field", "document.querySelector('#username').value === 'still typing'");
    let popup = app.window("Incoming call");
    app.until("the popup's caller", "document.body.dataset.ready && document.querySelector('#caller').textContent");
    let caller = app.run("return document.querySelector('#caller').textContent");
    assert_eq!(caller, json!("bob"));
    app.screenshot("popup-over-softphone");
    app.click("#answer");
    bob.wait_event("CALL_ESTABLISHED");
    support::wait_until("the popup to close once answered", || !app.is_open(&popup));
    app.wait_log("call popup shown");

    app.window("Agent Helper — Softphone");
    app.until(
        "the call in the softphone",
        "document.querySelector('li.call .state')?.dataset.i18n === 'state.connected'",
    );
    app.click("li.call button.hangup");
    bob.wait_event("CALL_CLOSED");
}

#[test]
fn the_test_tone_lands_on_the_chosen_sink_and_the_language_switches() {
    let pulse = Pulse::start();
    let rig = Rig::start(&[("PULSE_SERVER", pulse.server.clone())], false);
    let app = &rig.app;
    log_in(app);

    // The ringer sink's test button: its tone is on the ringer and not on the headset.
    let ringer = pulse.record("ringer.monitor", 8000, &rig.profile.path().join("ringer.wav"));
    let headset = pulse.record("headset.monitor", 8000, &rig.profile.path().join("headset.wav"));
    app.until("the output devices", "document.querySelector('#outputs li[data-device-id$=\"ringer\"] button')");
    app.click("#outputs li[data-device-id$=\"ringer\"] button");
    app.until(
        "the tone to finish",
        "document.querySelector('#outputs li[data-device-id$=\"ringer\"] button').dataset.played",
    );
    let (on_ringer, on_headset) = (support::pulse::wav_rms(&ringer.stop()), support::pulse::wav_rms(&headset.stop()));
    assert!(on_ringer > 1000.0, "tone on the ringer: rms {on_ringer}");
    assert!(on_headset < 100.0, "nothing on the headset: rms {on_headset}");

    // Start at login: an XDG autostart entry that starts the app in the tray, and gone again.
    let autostart = app.xdg_config.join("autostart");
    let entry = || {
        std::fs::read_dir(&autostart).ok().and_then(|d| {
            d.filter_map(Result::ok).find(|e| e.path().extension().is_some_and(|x| x == "desktop")).map(|e| e.path())
        })
    };
    assert!(entry().is_none(), "no autostart entry by default");
    app.click("#autostart");
    support::wait_until("the autostart entry", || entry().is_some());
    let text = std::fs::read_to_string(entry().unwrap()).unwrap();
    assert!(text.contains("agent-helper-desktop") && text.contains("--minimized"), "{text}");
    app.click("#autostart");
    support::wait_until("the autostart entry removed", || entry().is_none());

    // Finnish, from the settings; every open window follows.
    app.run("const s = document.querySelector('#language'); s.value = 'fi'; s.dispatchEvent(new Event('change'))");
    app.until("Finnish in the settings", "document.querySelector('#login').textContent === 'Kirjaudu'");
    app.screenshot("settings-fi");
    // The window titles are translated too.
    app.window("Agent Helper — Ohjelmapuhelin");
    app.until("Finnish in the softphone", "document.querySelector('#dial').textContent === 'Soita'");
    let config = std::fs::read_to_string(rig.profile.path().join("config.toml")).unwrap();
    assert!(config.contains("language = \"fi\""), "{config}");

    // The microphone meter: one stream on the microphone while the window
    // is read (not one per reading), the level up while the agent speaks,
    // and no stream left once the window is closed.
    app.window("Agent Helper — Asetukset");
    let tone = rig.profile.path().join("speaking.wav");
    support::baresip::write_tone_wav(&tone, 8000, 440.0, 20.0);
    let mut speaking = pulse.play(&tone, "micfeed");
    app.until("the meter to rise", "document.querySelector('#mic-meter').value > -30");
    let streams = app_microphone_streams(&pulse);
    assert_eq!(streams.len(), 1, "one meter stream: {streams:?}");
    let readings = |app: &Desktop| app.run("return Number(document.querySelector('#mic-meter').dataset.readings)");
    let seen = readings(app).as_u64().unwrap();
    app.until(
        "five more readings",
        &format!("Number(document.querySelector('#mic-meter').dataset.readings) >= {}", seen + 5),
    );
    assert_eq!(app_microphone_streams(&pulse), streams, "the same stream throughout");
    let _ = speaking.kill();
    let _ = speaking.wait();
    // Closed, as `close_settings` does (in Finnish now).
    app.run("setTimeout(() => window.close(), 0)");
    app.window("Agent Helper — Ohjelmapuhelin");
    support::wait_until("the meter's stream closed", || app_microphone_streams(&pulse).is_empty());
}

/// Benchmark (`scripts/bench-desktop.sh`): the idle app's memory (RSS of
/// the app and its WebKit processes, all windows closed but the softphone)
/// and CPU over 60 s, and the time from an INVITE reaching the helper to the
/// popup drawing its caller, over ten calls. Figures go to
/// target/desktop-benchmark.md and docs/benchmarks.md.
#[test]
#[ignore = "benchmark: run by scripts/bench-desktop.sh"]
fn desktop_benchmark() {
    let rig = Rig::start(&[], false);
    let app = &rig.app;
    log_in(app);
    close_settings(app);
    let pid = app.pid();

    // Idle: registered, the softphone open, nothing happening.
    let idle_secs = std::env::var("BENCH_IDLE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60u64);
    let before = support::desktop::Tree::of(pid);
    let wall = std::time::Instant::now();
    let mut peak_rss = before.rss_kib();
    while wall.elapsed() < std::time::Duration::from_secs(idle_secs) {
        std::thread::sleep(std::time::Duration::from_secs(1));
        peak_rss = peak_rss.max(support::desktop::Tree::of(pid).rss_kib());
    }
    let after = support::desktop::Tree::of(pid);
    let cpu = after.cpu_ticks_since(&before) as f64 / support::desktop::ticks_per_second() * 100.0
        / wall.elapsed().as_secs_f64();

    // INVITE to popup, ten calls.
    let mut bob = Baresip::start("bob", rig.k.port, PASSWORD, false);
    let mut delays = vec![];
    for n in 0..10 {
        let from = app.log().matches("incoming call").count();
        bob.command("dial", "sip:agent1@127.0.0.1");
        app.window("Incoming call");
        let shown = app.until("the popup drawn", "document.body.dataset.shownAt");
        let shown: i64 = shown.as_str().unwrap().parse().unwrap();
        support::wait_until("the INVITE in the log", || app.log().matches("incoming call").count() > from);
        let log = app.log();
        let line = log.lines().filter(|l| l.contains("incoming call")).nth(from).unwrap().to_owned();
        let invite =
            chrono::DateTime::parse_from_str(line.split_whitespace().next().unwrap(), "%Y-%m-%dT%H:%M:%S%.3f%:z")
                .unwrap()
                .timestamp_millis();
        delays.push(shown - invite);
        app.click("#reject");
        bob.wait_event("CALL_CLOSED");
        eprintln!("call {n}: INVITE to popup {} ms", shown - invite);
    }
    delays.sort_unstable();
    let build = if std::env::var("DESKTOP_BUILD").is_ok_and(|b| b == "release") { "release" } else { "debug" };
    let text = format!(
        "| build | {build} |\n\
         | idle memory, app + WebKit processes | PSS {:.1} MiB ({}); RSS {:.1} MiB (peak {:.1}) |\n\
         | idle CPU over {idle_secs} s | {cpu:.2} % of a core |\n\
         | INVITE to popup drawn, 10 calls | median {} ms, max {} ms |\n",
        after.pss_kib() as f64 / 1024.0,
        after.breakdown(),
        after.rss_kib() as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        delays[delays.len() / 2],
        delays[delays.len() - 1],
    );
    eprintln!("{text}");
    std::fs::write(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/desktop-benchmark.md"), text).unwrap();
}

/// On the per-user profile a second launch hands over to the running app:
/// its softphone comes back (here from hidden) and the second process exits.
#[test]
fn a_second_launch_shows_the_running_softphone_and_exits() {
    let _one = one_at_a_time();
    let k = Kamailio::start(PASSWORD);
    let home = tempfile::tempdir().unwrap();
    let profile = home.path().join(".config/agent-helper");
    std::fs::create_dir_all(&profile).unwrap();
    configure(&profile, &k);
    let app = Desktop::start_on(On::Home(home.path()), &[], false);
    app.window("Agent Helper — Softphone");
    app.until("the softphone", "document.body.dataset.ready");
    let softphone = app.window("Agent Helper — Softphone");
    app.run("setTimeout(() => window.close(), 0)");
    support::wait_until("the softphone hidden", || !app.is_open(&softphone));

    let second = std::process::Command::new(support::desktop::built())
        .env_clear()
        .envs(app.env.iter().map(|(k, v)| (k, v)))
        .envs(std::env::var("DBUS_SESSION_BUS_ADDRESS").map(|a| ("DBUS_SESSION_BUS_ADDRESS".to_owned(), a)))
        .envs(std::env::var("PATH").map(|a| ("PATH".to_owned(), a)))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let status = support::wait_with_deadline(&mut second.unwrap());
    assert!(status.success(), "the second launch hands over and exits: {status:?}");
    // WebKitWebDriver forgets a window once hidden: the app's log says it was shown.
    app.wait_log("launched again: showing the softphone");
    assert_eq!(app.log().matches("starting version=").count(), 1, "one app on the profile");
}

/// What the contact center sent with the call, in the popup under the
/// administrator's labels (`desktop.customer_fields`: a field not listed
/// stays hidden); Reject answers 486 Busy Here.
#[test]
fn the_popup_shows_the_callers_customer_fields_and_rejects_with_busy() {
    let rig = Rig::start(&[], false);
    let app = &rig.app;
    log_in(app);

    let sipp = support::sipp::Sipp::uac("uac_customer_info.xml", "agent1", rig.k.port);
    app.window("Incoming call — Maija Virtanen (+358401234567)");
    app.until("the popup", "document.body.dataset.ready");
    let shown = app.run(
        "return { name: document.querySelector('#name').textContent, \
                  queue: document.querySelector('#queue').textContent, \
                  fields: [...document.querySelectorAll('#fields dt, #fields dd')].map(e => e.textContent) }",
    );
    assert_eq!(shown["name"], json!("Maija Virtanen"));
    assert_eq!(shown["queue"], json!("Billing"));
    assert_eq!(
        shown["fields"],
        json!(["Service level", "gold", "Account", "12345"]),
        "configured fields only, in order"
    );
    app.screenshot("popup-customer-info");
    app.click("#reject");
    sipp.assert_passed();
}

/// The tray icon follows the phone (grey offline, green once registered) and
/// its menu opens the windows: here the diagnostics, by keyboard as an agent
/// without a mouse would.
#[test]
fn the_tray_icon_follows_registration_and_its_menu_opens_diagnostics() {
    let rig = Rig::start(&[], true);
    let app = &rig.app;
    let (x, y) = support::desktop::TRAY_ICON;
    support::wait_until("the offline tray icon", || {
        let (r, g, b) = app.pixel(x, y);
        r == g && g == b && r > 60
    });
    log_in(app);
    // tray-registered.png is green (46, 157, 79).
    support::wait_until("the registered tray icon", || {
        let (r, g, b) = app.pixel(x + 8, y);
        g > 120 && r < 90 && b < 120
    });
    close_settings(app);

    app.xdotool(&["mousemove", &x.to_string(), &y.to_string(), "click", "1"]);
    // The menu opens below the icon, over the black root window.
    support::wait_until("the tray menu", || app.pixel(x - 100, y + 60) != (0, 0, 0));
    // The status line leads (not selectable); then softphone, settings, do
    // not disturb, diagnostics.
    app.xdotool(&["key", "Down", "Down", "Down", "Down"]);
    app.screenshot("tray-menu");
    app.xdotool(&["key", "Return"]);
    app.window("Agent Helper — Diagnostics");
    let version =
        app.until("the diagnostics", "document.body.dataset.ready && document.querySelector('#version').textContent");
    assert_eq!(version, json!(env!("CARGO_PKG_VERSION")));
    let registration = app.run("return document.querySelector('#registration').textContent");
    assert_eq!(registration, json!("registered"));
    app.screenshot("diagnostics");
}
