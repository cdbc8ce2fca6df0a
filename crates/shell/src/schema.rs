//! The JSON Schema of what the shell's own commands return to the windows
//! (beyond the engine's API, whose schema the protocol crate keeps). The UI's
//! TypeScript types are generated from the committed copy
//! (`ui/shell.schema.json`), which a test keeps equal to these types.

use schemars::{JsonSchema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::history::HistoryEntry;
use crate::popup::IncomingCallView;

/// `window_info`: what a window learns about itself when it opens.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowInfo {
    /// The window's label (`softphone`, `popup-3` …).
    pub label: String,
    /// The API methods this window may call through `engine`.
    pub methods: Vec<String>,
    /// `en` or `fi`: `desktop.language`.
    pub language: String,
    /// The tray's look now (`offline`, `registered`, `ringing` …).
    pub look: String,
}

/// `test_tone`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestTonePlayed {
    /// The output device the tone went to (its `listDevices` id).
    pub device: String,
    pub millis: u32,
}

/// The microphone level the settings window's meter shows.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MicLevel {
    /// Peak over the last 100 ms, dBFS (−100 for silence).
    pub peak_dbfs: f32,
}

/// The shell's commands and the events it sends the windows.
pub fn shell_schema() -> Value {
    let mut generator = SchemaGenerator::default();
    let commands = json!({
        "window_info": generator.subschema_for::<WindowInfo>().to_value(),
        "incoming_call": generator.subschema_for::<IncomingCallView>().to_value(),
        "call_history": generator.subschema_for::<Vec<HistoryEntry>>().to_value(),
        "test_tone": generator.subschema_for::<TestTonePlayed>().to_value(),
        "mic_level": generator.subschema_for::<MicLevel>().to_value(),
        "open_window": generator.subschema_for::<()>().to_value(),
    });
    let names: Vec<&String> = commands.as_object().map(|o| o.keys().collect()).unwrap_or_default();
    let defs = generator.definitions().clone();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Agent Helper desktop shell",
        "type": "object",
        "additionalProperties": false,
        "required": ["commands"],
        "properties": {
            "commands": { "type": "object", "additionalProperties": false, "required": names, "properties": commands },
        },
        "$defs": defs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ui/shell.schema.json");

    /// The UI is built from the committed schema. `UPDATE_SCHEMA=1 cargo test
    /// -p agent-helper-shell` rewrites it after a change.
    #[test]
    fn the_committed_schema_is_current() {
        let fresh = serde_json::to_string_pretty(&shell_schema()).unwrap() + "\n";
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(COMMITTED, &fresh).unwrap();
        }
        let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
        assert!(
            committed == fresh,
            "ui/shell.schema.json is stale: run UPDATE_SCHEMA=1 cargo test -p agent-helper-shell"
        );
    }
}
