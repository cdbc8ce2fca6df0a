//! The softphone's call history: the last 100 calls, newest first, built from
//! engine events and kept in the profile (`call-history.json`, written
//! atomically so a crash mid-write leaves the previous list).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use agent_helper_protocol::events::{CallEnded, CallIncoming, CallStarted};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const KEPT: usize = 100;
/// A history file larger than this is not ours: it is set aside, not read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;
pub const FILE_NAME: &str = "call-history.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// `inbound` or `outbound`.
    pub direction: String,
    /// The other party's SIP URI.
    pub remote: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// RFC 3339, when the call started ringing or was placed.
    pub started_at: String,
    /// Seconds from answer to end; absent when never answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub talk_seconds: Option<u64>,
    /// `call-ended`'s reason (`local-hangup`, `cancelled`, `rejected` …).
    pub outcome: String,
}

/// A call seen starting, not yet ended.
struct Open {
    entry: HistoryEntry,
    answered_at: Option<chrono::DateTime<chrono::Local>>,
}

pub struct History {
    path: PathBuf,
    entries: Vec<HistoryEntry>,
    open: HashMap<String, Open>,
}

impl History {
    /// Loads `profile/call-history.json`; a missing file is an empty history,
    /// an unreadable one is renamed `.bad` (kept for diagnostics) and replaced.
    pub fn load(profile: &Path) -> History {
        let path = profile.join(FILE_NAME);
        let entries = match std::fs::metadata(&path) {
            Err(_) => Vec::new(),
            Ok(m) => {
                let read = (m.len() <= MAX_FILE_BYTES)
                    .then(|| std::fs::read(&path).ok())
                    .flatten()
                    .and_then(|bytes| serde_json::from_slice::<Vec<HistoryEntry>>(&bytes).ok());
                read.unwrap_or_else(|| {
                    let _ = std::fs::rename(&path, path.with_extension("json.bad"));
                    Vec::new()
                })
            }
        };
        let mut entries = entries;
        entries.truncate(KEPT);
        History { path, entries, open: HashMap::new() }
    }

    pub fn entries(&self) -> &[HistoryEntry] {
        &self.entries
    }

    /// Feeds one engine event; true when the list changed (and was saved).
    pub fn on_event(&mut self, event: &str, data: &Value) -> std::io::Result<bool> {
        use agent_helper_protocol::events as ev;
        let now = chrono::Local::now();
        match event {
            ev::CALL_INCOMING => {
                if let Ok(c) = serde_json::from_value::<CallIncoming>(data.clone()) {
                    let entry = HistoryEntry {
                        direction: "inbound".into(),
                        remote: c.from,
                        display_name: c.display_name,
                        started_at: now.to_rfc3339(),
                        talk_seconds: None,
                        outcome: String::new(),
                    };
                    self.open.insert(c.call_id, Open { entry, answered_at: None });
                }
            }
            ev::CALL_STARTED => {
                if let Ok(c) = serde_json::from_value::<CallStarted>(data.clone()) {
                    let entry = HistoryEntry {
                        direction: "outbound".into(),
                        remote: c.remote,
                        display_name: None,
                        started_at: now.to_rfc3339(),
                        talk_seconds: None,
                        outcome: String::new(),
                    };
                    self.open.insert(c.call_id, Open { entry, answered_at: None });
                }
            }
            ev::CALL_ANSWERED => {
                if let Some(open) = data["callId"].as_str().and_then(|id| self.open.get_mut(id)) {
                    open.answered_at.get_or_insert(now);
                }
            }
            ev::CALL_ENDED => {
                let Ok(end) = serde_json::from_value::<CallEnded>(data.clone()) else { return Ok(false) };
                let Some(Open { mut entry, answered_at }) = self.open.remove(&end.call_id) else { return Ok(false) };
                entry.talk_seconds = answered_at.map(|t| (now - t).num_seconds().max(0) as u64);
                entry.outcome = end.reason;
                self.entries.insert(0, entry);
                self.entries.truncate(KEPT);
                self.save()?;
                return Ok(true);
            }
            _ => {}
        }
        Ok(false)
    }

    fn save(&self) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.entries).map_err(std::io::Error::other)?;
        agent_helper_config::write_atomically(&self.path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(h: &mut History, n: usize, answered: bool) {
        let id = format!("c{n}");
        h.on_event("call-started", &json!({"callId": id, "direction": "outbound", "remote": format!("sip:{n}@pbx")}))
            .unwrap();
        if answered {
            h.on_event("call-answered", &json!({"callId": id, "codec": "PCMU/8000"})).unwrap();
        }
        assert!(h.on_event("call-ended", &json!({"callId": id, "reason": "local-hangup"})).unwrap());
    }

    #[test]
    fn calls_are_listed_newest_first_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::load(dir.path());
        call(&mut h, 1, true);
        h.on_event(
            "call-incoming",
            &json!({"callId": "in", "from": "sip:cust@pbx", "displayName": "Customer",
            "to": "sip:agent@pbx", "headers": {}, "customerInfo": null, "contactCenterCallId": null}),
        )
        .unwrap();
        h.on_event("call-ended", &json!({"callId": "in", "reason": "cancelled"})).unwrap();
        let again = History::load(dir.path());
        assert_eq!(again.entries().len(), 2);
        assert_eq!(again.entries()[0].remote, "sip:cust@pbx");
        assert_eq!(again.entries()[0].outcome, "cancelled");
        assert_eq!(again.entries()[0].talk_seconds, None, "never answered");
        assert_eq!(again.entries()[1].talk_seconds, Some(0));
        assert_eq!(again.entries()[1].direction, "outbound");
    }

    #[test]
    fn only_the_last_hundred_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::load(dir.path());
        for n in 0..KEPT + 5 {
            call(&mut h, n, false);
        }
        let again = History::load(dir.path());
        assert_eq!(again.entries().len(), KEPT);
        assert_eq!(again.entries()[0].remote, format!("sip:{}@pbx", KEPT + 4));
    }

    #[test]
    fn a_damaged_file_is_set_aside_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        let h = History::load(dir.path());
        assert!(h.entries().is_empty());
        assert_eq!(std::fs::read(dir.path().join("call-history.json.bad")).unwrap(), b"{not json");
    }

    #[test]
    fn an_end_without_a_start_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = History::load(dir.path());
        assert!(!h.on_event("call-ended", &json!({"callId": "ghost", "reason": "failed"})).unwrap());
        assert!(!h.on_event("call-ended", &json!("garbage")).unwrap());
        assert!(!dir.path().join(FILE_NAME).exists());
    }
}
