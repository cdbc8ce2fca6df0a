//! Against a real Secret Service: `scripts/test.sh` runs the suite inside
//! `dbus-run-session` with an unlocked gnome-keyring. Without a session bus
//! (a plain `cargo test` on a desktop-less machine) the test says so and fails,
//! unless AGENT_HELPER_NO_KEYRING=1 says the machine has no keyring on purpose.

use agent_helper_credentials::{KeyringStore, SecretStore};
use agent_helper_protocol::Password;

#[test]
fn keyring_round_trip() {
    if std::env::var_os("AGENT_HELPER_NO_KEYRING").is_some() {
        eprintln!("AGENT_HELPER_NO_KEYRING set: keyring round trip not run");
        return;
    }
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() || !cfg!(target_os = "linux"),
        "no D-Bus session: run through scripts/test.sh (dbus-run-session + gnome-keyring)"
    );
    let service = format!("agent-helper-test-{}", std::process::id());
    let store = KeyringStore::new(&service);
    assert!(store.load("alice").unwrap().is_none());
    store.save("alice", &Password::new("s3cret with spaces & ünïcode".into())).unwrap();
    assert_eq!(store.load("alice").unwrap().unwrap().expose(), "s3cret with spaces & ünïcode");
    store.save("alice", &Password::new("changed".into())).unwrap();
    assert_eq!(store.load("alice").unwrap().unwrap().expose(), "changed");
    // A second store (another process after a restart) sees the same entry.
    assert_eq!(KeyringStore::new(&service).load("alice").unwrap().unwrap().expose(), "changed");
    store.delete("alice").unwrap();
    assert!(store.load("alice").unwrap().is_none());
    store.delete("alice").unwrap();
}
