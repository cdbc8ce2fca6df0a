//! Requests, responses and events.
//!
//! ```text
//! client → helper  {"id":7,"method":"getStatus","params":{}}
//! helper → client  {"id":7,"result":{...}}
//! helper → client  {"id":7,"error":{"code":"invalid-params","message":"..."}}
//! helper → every client  {"event":"config-changed","data":{...}}
//! ```
//! A response carries the request's `id` (a number or a string); an error about a
//! frame whose `id` could not be read carries `"id": null`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ApiError, ErrorCode};

/// Longest accepted method name; longer ones are certainly not ours.
const MAX_METHOD_LEN: usize = 64;
/// Longest accepted string id.
const MAX_ID_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    Number(u64),
    Text(String),
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestId::Number(n) => write!(f, "{n}"),
            RequestId::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// A request as the helper receives it; `params` is checked per method.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Request {
    pub id: RequestId,
    pub method: String,
    pub params: Value,
}

impl Request {
    pub fn new(id: RequestId, method: impl Into<String>, params: Value) -> Self {
        Self { id, method: method.into(), params }
    }

    /// Parses one frame's payload. On failure the error comes with the request's
    /// id when that much could be read, so the caller can still be answered.
    pub fn parse(payload: &[u8]) -> Result<Request, (Option<RequestId>, ApiError)> {
        let value: Value = serde_json::from_slice(payload)
            .map_err(|e| (None, ApiError::new(ErrorCode::InvalidJson, format!("frame is not valid JSON: {e}"))))?;
        let Value::Object(mut obj) = value else {
            return Err((None, invalid_request("a request must be a JSON object")));
        };
        let id = match obj.remove("id") {
            Some(Value::Number(n)) => match n.as_u64() {
                Some(n) => RequestId::Number(n),
                None => return Err((None, invalid_request("`id` must be a non-negative integer or a string"))),
            },
            Some(Value::String(s)) if s.len() <= MAX_ID_LEN => RequestId::Text(s),
            Some(Value::String(_)) => {
                return Err((None, invalid_request(format!("`id` longer than {MAX_ID_LEN} characters"))));
            }
            Some(_) => return Err((None, invalid_request("`id` must be a non-negative integer or a string"))),
            None => return Err((None, invalid_request("missing `id`"))),
        };
        let method = match obj.remove("method") {
            Some(Value::String(m)) if is_method_name(&m) => m,
            Some(Value::String(_)) => {
                return Err((
                    Some(id),
                    invalid_request(format!(
                        "`method` must be a name of at most {MAX_METHOD_LEN} letters, digits, `-`, `_` or `.`"
                    )),
                ));
            }
            Some(_) => return Err((Some(id), invalid_request("`method` must be a string"))),
            None => return Err((Some(id), invalid_request("missing `method`"))),
        };
        let params = match obj.remove("params") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(v @ Value::Object(_)) => v,
            Some(_) => return Err((Some(id), ApiError::new(ErrorCode::InvalidParams, "`params` must be an object"))),
        };
        Ok(Request { id, method, params })
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A Value-only struct always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Method names are identifiers: they end up in log lines, so nothing that could
/// forge a line (newlines, control characters) gets through.
fn is_method_name(m: &str) -> bool {
    let mut chars = m.chars();
    m.len() <= MAX_METHOD_LEN
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn invalid_request(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub id: Option<RequestId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
}

impl Response {
    pub fn ok(id: RequestId, result: Value) -> Self {
        Self { id: Some(id), result: Some(result), error: None }
    }

    pub fn err(id: Option<RequestId>, error: ApiError) -> Self {
        Self { id, result: None, error: Some(error) }
    }

    pub fn into_result(self) -> Result<Value, ApiError> {
        match (self.result, self.error) {
            (_, Some(e)) => Err(e),
            (Some(v), None) => Ok(v),
            (None, None) => Ok(Value::Null),
        }
    }
}

/// An event, pushed to every connected client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event: String,
    #[serde(default)]
    pub data: Value,
}

impl Event {
    pub fn new(event: impl Into<String>, data: impl Serialize) -> Self {
        // Event payloads are plain structs of strings and numbers.
        Self { event: event.into(), data: serde_json::to_value(data).unwrap_or(Value::Null) }
    }
}

/// Anything the helper sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ServerMessage {
    Response(Response),
    Event(Event),
}

impl ServerMessage {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Client side: tells responses and events apart by the `event` member.
    pub fn parse(payload: &[u8]) -> Result<ServerMessage, serde_json::Error> {
        let value: Value = serde_json::from_slice(payload)?;
        if value.get("event").is_some() {
            serde_json::from_value(value).map(ServerMessage::Event)
        } else {
            serde_json::from_value(value).map(ServerMessage::Response)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_request_and_defaults_params() {
        let r = Request::parse(br#"{"id":1,"method":"getStatus"}"#).unwrap();
        assert_eq!(r.id, RequestId::Number(1));
        assert_eq!(r.params, json!({}));
        let r = Request::parse(br#"{"id":"a","method":"hello","params":{"sdkVersion":"1"}}"#).unwrap();
        assert_eq!(r.id, RequestId::Text("a".into()));
    }

    #[test]
    fn malformed_requests_get_codes_and_keep_the_id_when_known() {
        let (id, e) = Request::parse(b"{nope").unwrap_err();
        assert_eq!((id, e.code), (None, ErrorCode::InvalidJson));
        let (id, e) = Request::parse(br#"[1,2]"#).unwrap_err();
        assert_eq!((id, e.code), (None, ErrorCode::InvalidRequest));
        let (id, e) = Request::parse(br#"{"id":-1,"method":"x"}"#).unwrap_err();
        assert_eq!((id, e.code), (None, ErrorCode::InvalidRequest));
        let (id, e) = Request::parse(br#"{"id":3,"method":7}"#).unwrap_err();
        assert_eq!((id, e.code), (Some(RequestId::Number(3)), ErrorCode::InvalidRequest));
        let (id, e) = Request::parse(br#"{"id":4,"method":"x","params":[1]}"#).unwrap_err();
        assert_eq!((id, e.code), (Some(RequestId::Number(4)), ErrorCode::InvalidParams));
        let (id, e) = Request::parse(br#"{"id":5,"method":"getStatus\nINFO forged line"}"#).unwrap_err();
        assert_eq!((id, e.code), (Some(RequestId::Number(5)), ErrorCode::InvalidRequest));
        let (_, e) = Request::parse(b"\xff\xfe").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidJson);
    }

    #[test]
    fn server_messages_round_trip() {
        let resp = ServerMessage::Response(Response::err(None, ApiError::new(ErrorCode::FrameTooLarge, "x")));
        let json = resp.to_json();
        assert_eq!(serde_json::from_slice::<Value>(&json).unwrap()["id"], Value::Null);
        assert_eq!(ServerMessage::parse(&json).unwrap(), resp);
        let ev = ServerMessage::Event(Event::new("config-changed", json!({"key":"log.level"})));
        assert_eq!(ServerMessage::parse(&ev.to_json()).unwrap(), ev);
    }
}
