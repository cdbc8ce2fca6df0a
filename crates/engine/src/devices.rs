//! The audio devices as the API shows them (`listDevices`, the diagnostics bundle).

use agent_helper_protocol::methods::AudioDevice;

/// Asks the audio system; blocks (run it on a blocking thread).
pub fn list() -> Result<Vec<AudioDevice>, String> {
    let devices = agent_helper_audio::list_devices().map_err(|e| e.to_string())?;
    Ok(devices
        .into_iter()
        .map(|d| AudioDevice { id: d.id, name: d.name, direction: d.direction.as_str().into(), default: d.is_default })
        .collect())
}
