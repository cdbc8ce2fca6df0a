//! What the inbound-call popup shows: who calls and the customer fields the
//! contact center sent in `X-Customer-Info`, under the labels the
//! administrator chose (`desktop.customer_fields`).

use agent_helper_config::CustomerField;
use agent_helper_protocol::events::CallIncoming;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A field's value is cut to this many characters: the popup is small, and
/// the header comes from the network.
const MAX_VALUE_CHARS: usize = 200;
/// With no fields configured, at most this many are shown.
const MAX_FIELDS: usize = 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncomingCallView {
    pub call_id: String,
    /// The caller's number or user part (`+358401234567`), else the whole URI.
    pub number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The queue the contact center routed the call from (`X-Queue`, or a
    /// `queue` field of the customer info), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    pub fields: Vec<LabelledValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LabelledValue {
    pub label: String,
    pub value: String,
}

impl IncomingCallView {
    pub fn new(call: &CallIncoming, configured: &[CustomerField]) -> IncomingCallView {
        let info = call.customer_info.as_ref().and_then(Value::as_object);
        let text = |v: &Value| {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            s.chars().filter(|c| !c.is_control()).take(MAX_VALUE_CHARS).collect::<String>()
        };
        let fields = match info {
            None => Vec::new(),
            Some(info) if configured.is_empty() => info
                .iter()
                .filter(|(k, _)| k.as_str() != "queue")
                .take(MAX_FIELDS)
                .map(|(k, v)| LabelledValue { label: k.chars().take(64).collect(), value: text(v) })
                .collect(),
            Some(info) => configured
                .iter()
                .filter_map(|f| info.get(&f.key).map(|v| LabelledValue { label: f.label.clone(), value: text(v) }))
                .collect(),
        };
        let queue = call
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-queue"))
            .map(|(_, v)| v.clone())
            .or_else(|| info.and_then(|i| i.get("queue")).map(text))
            .filter(|q| !q.is_empty());
        IncomingCallView {
            call_id: call.call_id.clone(),
            number: number_of(&call.from),
            name: call.display_name.clone().filter(|n| !n.is_empty()),
            queue,
            fields,
        }
    }

    /// The popup window's title, by which the agent (and a screen reader)
    /// finds it.
    pub fn title(&self) -> String {
        match &self.name {
            Some(name) => format!("Incoming call — {name} ({})", self.number),
            None => format!("Incoming call — {}", self.number),
        }
    }
}

/// `sip:+358401234567@pbx;user=phone` → `+358401234567`.
fn number_of(uri: &str) -> String {
    let rest = uri.trim_start_matches('<');
    let rest = rest.strip_prefix("sips:").or_else(|| rest.strip_prefix("sip:")).or_else(|| rest.strip_prefix("tel:"));
    match rest {
        Some(r) => r.split(['@', ';', '>']).next().unwrap_or(r).to_owned(),
        None => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn incoming(info: Value, headers: &[(&str, &str)]) -> CallIncoming {
        CallIncoming {
            call_id: "c1".into(),
            from: "sip:+358401234567@pbx.example.com;user=phone".into(),
            display_name: Some("Maija Meikäläinen".into()),
            to: "sip:agent1@pbx".into(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            customer_info: Some(info),
            contact_center_call_id: None,
            replaces_call_id: None,
        }
    }

    #[test]
    fn configured_fields_come_in_order_under_their_labels() {
        let call = incoming(json!({"acct": 12345, "tier": "gold", "secret": "x", "queue": "Billing"}), &[]);
        let fields = vec![
            CustomerField { key: "tier".into(), label: "Service level".into() },
            CustomerField { key: "acct".into(), label: "Account".into() },
            CustomerField { key: "missing".into(), label: "Never shown".into() },
        ];
        let view = IncomingCallView::new(&call, &fields);
        assert_eq!(view.number, "+358401234567");
        assert_eq!(view.queue.as_deref(), Some("Billing"));
        let shown: Vec<(&str, &str)> = view.fields.iter().map(|f| (f.label.as_str(), f.value.as_str())).collect();
        assert_eq!(shown, [("Service level", "gold"), ("Account", "12345")]);
        assert_eq!(view.title(), "Incoming call — Maija Meikäläinen (+358401234567)");
    }

    #[test]
    fn without_configuration_every_field_shows_under_its_name() {
        let call = incoming(json!({"b": "2", "a": "1"}), &[("X-Queue", "Sales")]);
        let view = IncomingCallView::new(&call, &[]);
        assert_eq!(view.queue.as_deref(), Some("Sales"), "the X-Queue header");
        assert_eq!(view.fields.len(), 2);
    }

    #[test]
    fn hostile_values_are_cut_and_cleaned() {
        let call = incoming(json!({"note": format!("a\u{1b}[31m{}", "x".repeat(10_000))}), &[]);
        let view = IncomingCallView::new(&call, &[]);
        let value = &view.fields[0].value;
        assert_eq!(value.chars().count(), MAX_VALUE_CHARS);
        assert!(!value.contains('\u{1b}'));
    }

    #[test]
    fn numbers_come_out_of_uris() {
        assert_eq!(number_of("sip:1001@pbx"), "1001");
        assert_eq!(number_of("<sips:alice@example.com>"), "alice");
        assert_eq!(number_of("tel:+1555"), "+1555");
        assert_eq!(number_of("anonymous"), "anonymous");
    }
}
