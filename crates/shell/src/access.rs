//! Which engine methods each window may call. Tauri's capabilities give a
//! window the shell's commands; the `engine` command forwards any API method,
//! so the method itself is checked here against the window that sent it: a
//! popup can answer or reject a call, never change the configuration.

use agent_helper_protocol::methods as m;

/// The kinds of window the shell opens, named by their Tauri labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Softphone,
    /// `popup-N`: one per inbound call.
    Popup,
    Settings,
    Diagnostics,
}

impl Window {
    pub fn from_label(label: &str) -> Option<Window> {
        match label {
            "softphone" => Some(Window::Softphone),
            "settings" => Some(Window::Settings),
            "diagnostics" => Some(Window::Diagnostics),
            l if l.strip_prefix("popup-").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) => {
                Some(Window::Popup)
            }
            _ => None,
        }
    }

    /// The API methods this window may call through the shell.
    pub fn methods(self) -> &'static [&'static str] {
        match self {
            Window::Softphone => &[
                m::GET_STATUS,
                m::GET_CONFIG,
                m::CALL,
                m::ANSWER_CALL,
                m::REJECT_CALL,
                m::END_CALL,
                m::SEND_DTMF,
                m::HOLD_CALL,
                m::RESUME_CALL,
                m::MUTE_CALL,
                m::UNMUTE_CALL,
                m::TRANSFER_CALL,
                m::CONFIRM_TRANSFER,
                m::GET_CALL_STATS,
            ],
            Window::Popup => &[m::GET_CONFIG, m::ANSWER_CALL, m::REJECT_CALL],
            Window::Settings => &[
                m::GET_STATUS,
                m::GET_CONFIG,
                m::SET_CONFIG,
                m::LOGIN,
                m::LOGOUT,
                m::LIST_DEVICES,
                m::SET_DEVICES,
                m::SET_LOG_LEVEL,
            ],
            Window::Diagnostics => {
                &[m::GET_STATUS, m::GET_CONFIG, m::LIST_DEVICES, m::GET_CALL_STATS, m::COLLECT_DIAGNOSTICS]
            }
        }
    }
}

/// Whether the window labelled `label` may call `method`.
pub fn allowed(label: &str, method: &str) -> bool {
    Window::from_label(label).is_some_and(|w| w.methods().contains(&method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_window_reaches_only_its_methods() {
        assert!(allowed("softphone", "call"));
        assert!(allowed("popup-3", "answerCall"));
        assert!(!allowed("popup-3", "setConfig"), "a popup cannot change settings");
        assert!(!allowed("popup-3", "call"));
        assert!(allowed("settings", "login"));
        assert!(!allowed("softphone", "login"));
        assert!(allowed("diagnostics", "collectDiagnostics"));
        assert!(!allowed("diagnostics", "endCall"));
    }

    #[test]
    fn unknown_windows_reach_nothing() {
        for label in ["", "main", "popup-", "popup-x", "popup-1/../settings", "Softphone"] {
            assert!(!allowed(label, "getStatus"), "{label:?}");
        }
    }

    #[test]
    fn every_method_named_exists() {
        for w in [Window::Softphone, Window::Popup, Window::Settings, Window::Diagnostics] {
            for method in w.methods() {
                assert!(m::ALL.contains(method), "{method}");
            }
        }
    }
}
