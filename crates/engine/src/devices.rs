//! The audio devices as the API shows them (`listDevices`, the diagnostics bundle).

use std::sync::{Arc, Mutex};

use agent_helper_protocol::methods::AudioDevice;

/// Asks the audio system; blocks (run it on a blocking thread).
pub fn list() -> Result<Vec<AudioDevice>, String> {
    let devices = agent_helper_audio::list_devices().map_err(|e| e.to_string())?;
    Ok(devices
        .into_iter()
        .map(|d| AudioDevice { id: d.id, name: d.name, direction: d.direction.as_str().into(), default: d.is_default })
        .collect())
}

/// The device list clients were last told about, shared by `listDevices` and
/// the watcher: a change is anything that differs from what a client could
/// have seen, so a device plugged right after the first `listDevices` is
/// announced even when the watcher has not polled yet.
#[derive(Clone, Default)]
pub struct Known(Arc<Mutex<Option<Vec<AudioDevice>>>>);

impl Known {
    /// Lists for a client; the first list anyone sees is the baseline. Later
    /// answers leave it alone so the watcher still announces the change.
    pub fn list_for_client(&self) -> Result<Vec<AudioDevice>, String> {
        let now = list()?;
        self.lock().get_or_insert_with(|| now.clone());
        Ok(now)
    }

    /// Records `now`; true when it differs from the list known before.
    pub fn changed_to(&self, now: &[AudioDevice]) -> bool {
        let before = self.lock().replace(now.to_vec());
        before.is_some_and(|b| b != now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Vec<AudioDevice>>> {
        // The list is replaced whole; a poisoned lock still holds a whole list.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str) -> AudioDevice {
        AudioDevice { id: id.into(), name: id.into(), direction: "output".into(), default: false }
    }

    #[test]
    fn the_first_list_is_the_baseline_and_changes_are_against_the_last_one() {
        let known = Known::default();
        assert!(!known.changed_to(&[device("a")]));
        assert!(!known.changed_to(&[device("a")]));
        assert!(known.changed_to(&[device("a"), device("b")]));
        assert!(!known.changed_to(&[device("a"), device("b")]));
        assert!(known.changed_to(&[device("b")]));
    }

    #[test]
    fn a_baseline_set_by_a_client_makes_the_next_poll_a_change() {
        let known = Known::default();
        known.lock().get_or_insert_with(|| vec![device("a")]);
        assert!(known.changed_to(&[device("a"), device("usb")]));
    }
}
