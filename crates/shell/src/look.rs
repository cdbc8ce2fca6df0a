//! The tray icon's look, from the helper's status: the agent sees at a glance
//! whether the phone works and what it is doing.

use agent_helper_protocol::methods::Status;

/// Ordered by what matters most when several apply: a ringing call outranks
/// one in progress, a muted microphone outranks an unmuted call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// No account, or registration failed or not yet done.
    NotRegistered,
    Registered,
    InCall,
    /// In a call with the microphone muted.
    Muted,
    /// An inbound call is waiting to be answered.
    Ringing,
}

impl Look {
    pub fn of(status: &Status) -> Look {
        if status.calls.iter().any(|c| c.direction == "inbound" && c.state == "incoming") {
            Look::Ringing
        } else if status.calls.iter().any(|c| c.state == "connected" && c.muted) {
            Look::Muted
        } else if !status.calls.is_empty() {
            Look::InCall
        } else if status.registration.state == "registered" {
            Look::Registered
        } else {
            Look::NotRegistered
        }
    }

    /// The icon file's stem (`src-tauri/icons/tray-<stem>.png`) and the
    /// message id of its tooltip in the UI's string files.
    pub fn name(self) -> &'static str {
        match self {
            Look::NotRegistered => "offline",
            Look::Registered => "registered",
            Look::InCall => "in-call",
            Look::Muted => "muted",
            Look::Ringing => "ringing",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_helper_protocol::methods::{CallStatus, RegistrationStatus};

    fn status(registration: &str, calls: Vec<CallStatus>) -> Status {
        let mut s: Status = serde_json::from_value(serde_json::json!({
            "helperVersion": "0", "pid": 1, "startedAt": "", "uptimeMs": 0, "profileDir": "", "configFile": "",
            "policyFile": null, "lockedKeys": [], "configWarnings": [], "logFile": "", "logLevel": "info",
            "account": null, "registration": {"state": "not-configured"}, "calls": [], "clients": 1
        }))
        .unwrap();
        s.registration = RegistrationStatus { state: registration.into(), ..Default::default() };
        s.calls = calls;
        s
    }

    fn call(direction: &str, state: &str, muted: bool) -> CallStatus {
        let mut c = CallStatus::new("c".into(), direction, state, "sip:x@y".into());
        c.muted = muted;
        c
    }

    #[test]
    fn the_look_follows_registration_and_calls() {
        assert_eq!(Look::of(&status("failed", vec![])), Look::NotRegistered);
        assert_eq!(Look::of(&status("registered", vec![])), Look::Registered);
        assert_eq!(Look::of(&status("registered", vec![call("outbound", "calling", false)])), Look::InCall);
        assert_eq!(Look::of(&status("registered", vec![call("inbound", "connected", true)])), Look::Muted);
        let both = vec![call("inbound", "connected", true), call("inbound", "incoming", false)];
        assert_eq!(Look::of(&status("registered", both)), Look::Ringing, "a waiting call outranks the muted one");
    }
}
