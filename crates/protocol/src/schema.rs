//! The JSON Schema of the whole API: every method's parameters and result,
//! every event's payload, generated from the Rust types the helper itself
//! serializes. The browser SDK's TypeScript types are generated from it
//! (`browser-extensions/sdk/protocol.schema.json`, checked by a test), so the
//! two sides cannot drift.

use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::events as ev;
use crate::events::*;
use crate::methods as m;
use crate::methods::*;

struct Builder {
    generator: SchemaGenerator,
    methods: Map<String, Value>,
    events: Map<String, Value>,
}

impl Builder {
    fn method<P: JsonSchema, R: JsonSchema>(&mut self, name: &str) {
        let params = self.generator.subschema_for::<P>().to_value();
        let result = self.generator.subschema_for::<R>().to_value();
        self.methods.insert(
            name.to_owned(),
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["params", "result"],
                "properties": { "params": params, "result": result },
            }),
        );
    }

    fn event<D: JsonSchema>(&mut self, name: &str) {
        let data = self.generator.subschema_for::<D>().to_value();
        self.events.insert(name.to_owned(), data);
    }
}

/// The schema, as one JSON document with `methods`, `events` and `$defs`.
pub fn api_schema() -> Value {
    let mut b = Builder { generator: SchemaGenerator::default(), methods: Map::new(), events: Map::new() };
    b.method::<HelloParams, HelloResult>(m::HELLO);
    b.method::<Empty, Status>(m::GET_STATUS);
    b.method::<LoginParams, LoginResult>(m::LOGIN);
    b.method::<Empty, Empty>(m::LOGOUT);
    b.method::<SetLogLevelParams, LogLevelChanged>(m::SET_LOG_LEVEL);
    b.method::<Empty, ConfigView>(m::GET_CONFIG);
    b.method::<SetConfigParams, SetConfigResult>(m::SET_CONFIG);
    b.method::<Empty, DiagnosticsBundle>(m::COLLECT_DIAGNOSTICS);
    b.method::<CallParams, CallRef>(m::CALL);
    b.method::<CallIdParams, CallRef>(m::ANSWER_CALL);
    b.method::<RejectCallParams, CallRef>(m::REJECT_CALL);
    b.method::<CallIdParams, CallRef>(m::END_CALL);
    b.method::<SendDtmfParams, SendDtmfResult>(m::SEND_DTMF);
    b.method::<CallIdParams, CallRef>(m::HOLD_CALL);
    b.method::<CallIdParams, CallRef>(m::RESUME_CALL);
    b.method::<TransferCallParams, TransferResult>(m::TRANSFER_CALL);
    b.method::<CallIdParams, TransferResult>(m::CONFIRM_TRANSFER);
    b.method::<Empty, DeviceList>(m::LIST_DEVICES);
    b.method::<CallIdParams, MuteResult>(m::MUTE_CALL);
    b.method::<CallIdParams, MuteResult>(m::UNMUTE_CALL);
    b.method::<CallIdParams, CallStats>(m::GET_CALL_STATS);
    b.method::<SetDevicesParams, ChosenDevices>(m::SET_DEVICES);

    b.event::<AccountChanged>(ev::ACCOUNT_CHANGED);
    b.event::<ConfigChanged>(ev::CONFIG_CHANGED);
    b.event::<LogLevelChanged>(ev::LOG_LEVEL_CHANGED);
    b.event::<RegistrationStatus>(ev::REGISTRATION_CHANGED);
    b.event::<PhoneError>(ev::PHONE_ERROR);
    b.event::<CallIncoming>(ev::CALL_INCOMING);
    b.event::<CallStarted>(ev::CALL_STARTED);
    b.event::<CallInProgress>(ev::CALL_IN_PROGRESS);
    b.event::<CallAnswered>(ev::CALL_ANSWERED);
    b.event::<CallEvent>(ev::CALL_CONFIRMED);
    b.event::<CallEnded>(ev::CALL_ENDED);
    b.event::<CallDtmf>(ev::CALL_DTMF);
    b.event::<CallHeld>(ev::CALL_HELD);
    b.event::<CallHeld>(ev::CALL_RESUMED);
    b.event::<CallEvent>(ev::CALL_MUTED);
    b.event::<CallEvent>(ev::CALL_UNMUTED);
    b.event::<CallEvent>(ev::CALL_TRANSFER_STARTED);
    b.event::<CallEvent>(ev::CALL_TRANSFER_SUCCESS);
    b.event::<CallTransferCancel>(ev::CALL_TRANSFER_CANCEL);
    b.event::<CallTransferred>(ev::CALL_TRANSFERRED);
    b.event::<DeviceList>(ev::DEVICES_CHANGED);
    b.event::<CallStats>(ev::QUALITY_REPORT);
    b.event::<CallAudioDeviceChanged>(ev::CALL_AUDIO_DEVICE_CHANGED);

    let names = |map: &Map<String, Value>| Value::Array(map.keys().map(|k| json!(k)).collect());
    let (method_names, event_names) = (names(&b.methods), names(&b.events));
    let mut defs = b.generator.take_definitions(true);
    defs.insert("ApiError".into(), b.generator.subschema_for::<crate::ApiError>().to_value());
    defs.extend(b.generator.take_definitions(true));
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Protocol",
        "description": "Agent Helper local API: methods (params → result) and events (payload). Generated from the Rust types; do not edit.",
        "type": "object",
        "additionalProperties": false,
        "required": ["methods", "events"],
        "properties": {
            "methods": { "type": "object", "additionalProperties": false, "required": method_names, "properties": b.methods },
            "events": { "type": "object", "additionalProperties": false, "required": event_names, "properties": b.events },
        },
        "$defs": defs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../browser-extensions/sdk/protocol.schema.json");

    #[test]
    fn every_method_and_event_is_in_the_schema() {
        let schema = api_schema();
        let methods: Vec<&str> =
            schema["properties"]["methods"]["properties"].as_object().unwrap().keys().map(String::as_str).collect();
        let mut all: Vec<&str> = m::ALL.to_vec();
        all.sort_unstable();
        assert_eq!(methods, all);
        let events: Vec<&str> =
            schema["properties"]["events"]["properties"].as_object().unwrap().keys().map(String::as_str).collect();
        let mut all: Vec<&str> = ev::ALL.to_vec();
        all.sort_unstable();
        assert_eq!(events, all);
    }

    /// The SDK is built from the committed schema: it must be what these
    /// types produce. `UPDATE_SCHEMA=1 cargo test -p agent-helper-protocol`
    /// rewrites it after a protocol change.
    #[test]
    fn the_committed_schema_is_current() {
        let fresh = serde_json::to_string_pretty(&api_schema()).unwrap() + "\n";
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(COMMITTED, &fresh).unwrap();
        }
        let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
        assert!(
            committed == fresh,
            "{COMMITTED} is out of date: run `UPDATE_SCHEMA=1 cargo test -p agent-helper-protocol schema` and commit it"
        );
    }
}
