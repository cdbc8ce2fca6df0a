//! A WWW-Authenticate / Proxy-Authenticate value from a registrar.
#![no_main]

use agent_helper_sip::auth::Challenge;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(c) = Challenge::parse(text) {
        let _ = c.authorization("agent", "secret", "REGISTER", "sip:h", "cn", 1);
    }
});
