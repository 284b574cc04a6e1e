//! The changes topic (`kafka.changes_topic`): maintenance windows from a change-management
//! system. A record's key is the change reference; its value the window, as JSON or as a
//! protobuf `faultline.v1.MaintenanceWindow`; the latest record of a change is the window
//! (a start or end moved, CIs added), a tombstone cancels it.
//!
//! JSON: `{"change": "CHG0012345", "reason": "line card swap", "cis": ["mrs-r1/card-1"],
//! "scope": "ci" | "dependents", "start": "2026-11-26T22:00:00Z", "end": ..., "by": "cab",
//! "state": "cancelled" | "ended"}`; times RFC 3339 or epoch milliseconds; `change`
//! defaults to the key, `scope` to `ci`; `state` (optional) ends or cancels the window.

use super::dead_letter::{Refusal, keyed, refused};
use crate::correlate::maintenance::{Scope, WindowSpec};
use crate::proto::{self, v1};
use prost::Message as _;
use serde::Deserialize;

/// What a record of the changes topic asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WindowCommand {
    /// Create the window, or make it this one.
    Put(WindowSpec),
    /// End it now if it is active (else cancel it), or cancel it.
    Finish { change: String, cancel: bool, by: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonWindow {
    #[serde(default)]
    change: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    cis: Vec<String>,
    #[serde(default)]
    scope: Option<String>,
    start: Option<serde_json::Value>,
    end: Option<serde_json::Value>,
    #[serde(default)]
    by: String,
    #[serde(default)]
    state: Option<String>,
}

fn time(value: &serde_json::Value, field: &str) -> Result<i64, Refusal> {
    let bad = || refused("invalid_window", format!("`{field}` is not an RFC 3339 time or epoch milliseconds"));
    match value {
        serde_json::Value::Number(n) => n.as_i64().ok_or_else(bad),
        serde_json::Value::String(s) => {
            crate::decode::parse_rfc3339(s).or_else(|| s.parse::<i64>().ok()).ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

/// The command a record carries. `max_bytes`: the largest value taken.
pub fn decode(key: Option<&[u8]>, payload: Option<&[u8]>, max_bytes: usize) -> Result<WindowCommand, Refusal> {
    let (key, payload) = match keyed(key, payload, max_bytes, "its change reference")? {
        (key, None) => return Ok(WindowCommand::Finish { change: key.to_owned(), cancel: true, by: String::new() }),
        (key, Some(payload)) => (key, payload),
    };
    let (spec, state) = if payload.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        let json: JsonWindow = serde_json::from_slice(payload)
            .map_err(|e| refused("undecodable", format!("not a maintenance window (JSON): {e}")))?;
        let scope = match json.scope.as_deref() {
            None => Scope::Ci,
            Some(text) => Scope::parse(text)
                .ok_or_else(|| refused("invalid_window", format!("unknown scope `{text}` (ci or dependents)")))?,
        };
        let start = json.start.as_ref().ok_or_else(|| refused("invalid_window", "`start` is required"))?;
        let end = json.end.as_ref().ok_or_else(|| refused("invalid_window", "`end` is required"))?;
        let spec = WindowSpec {
            change: json.change,
            reason: json.reason,
            cis: json.cis,
            scope,
            start: time(start, "start")?,
            end: time(end, "end")?,
            by: json.by,
        };
        (spec, json.state)
    } else {
        let window = v1::MaintenanceWindow::decode(payload)
            .map_err(|e| refused("undecodable", format!("not a maintenance window (JSON or protobuf): {e}")))?;
        let state = match v1::MaintenanceState::try_from(window.state) {
            Ok(v1::MaintenanceState::Ended) => Some("ended".to_owned()),
            Ok(v1::MaintenanceState::Cancelled) => Some("cancelled".to_owned()),
            _ => None,
        };
        (proto::window_spec_from_proto(&window).map_err(|e| refused("invalid_window", e))?, state)
    };
    let mut spec = spec;
    if spec.change.is_empty() {
        spec.change = key.to_owned();
    } else if spec.change != key {
        return Err(refused(
            "key_mismatch",
            format!("the record is of change `{}` but its key is `{key}`: the key must be the change", spec.change),
        ));
    }
    match state.as_deref() {
        None | Some("scheduled") | Some("active") => Ok(WindowCommand::Put(spec)),
        Some(state @ ("ended" | "cancelled")) => {
            Ok(WindowCommand::Finish { change: spec.change, cancel: state == "cancelled", by: spec.by })
        }
        Some(other) => Err(refused("invalid_window", format!("unknown state `{other}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_decode_from_json_and_protobuf_and_tombstones_cancel() {
        let json = br#"{"reason":"card swap","cis":["c1"],"scope":"dependents","start":"2026-11-26T22:00:00Z","end":1795816800000}"#;
        let Ok(WindowCommand::Put(spec)) = decode(Some(b"CHG1"), Some(json), 4096) else { panic!() };
        assert_eq!((spec.change.as_str(), spec.scope, spec.start), ("CHG1", Scope::Dependents, 1_795_730_400_000));
        assert_eq!(spec.end, 1_795_816_800_000);

        let window = v1::MaintenanceWindow {
            change: "CHG2".into(),
            ci_ids: vec!["c1".into()],
            start_time: Some(proto::timestamp(1_000)),
            end_time: Some(proto::timestamp(2_000)),
            state: v1::MaintenanceState::Cancelled as i32,
            ..Default::default()
        };
        let cancel = decode(Some(b"CHG2"), Some(&window.encode_to_vec()), 4096).unwrap();
        assert_eq!(cancel, WindowCommand::Finish { change: "CHG2".into(), cancel: true, by: String::new() });
        assert_eq!(
            decode(Some(b"CHG3"), None, 4096).unwrap(),
            WindowCommand::Finish { change: "CHG3".into(), cancel: true, by: String::new() }
        );
    }

    #[test]
    fn bad_records_are_refused_with_a_reason() {
        let reason = |key: Option<&[u8]>, value: &[u8]| decode(key, Some(value), 4096).unwrap_err().reason;
        let ok = r#"{"cis":["c1"],"start":1,"end":2}"#;
        assert_eq!(reason(None, ok.as_bytes()), "missing_key");
        assert_eq!(reason(Some(b"CHG1"), br#"{"cis":["c1"],"end":2}"#), "invalid_window");
        assert_eq!(reason(Some(b"CHG1"), br#"{"cis":["c1"],"start":"yesterday","end":2}"#), "invalid_window");
        assert_eq!(reason(Some(b"CHG1"), br#"{"cis":["c1"],"start":1,"end":2,"scope":"site"}"#), "invalid_window");
        assert_eq!(reason(Some(b"CHG1"), br#"{"change":"CHG2","cis":["c1"],"start":1,"end":2}"#), "key_mismatch");
        assert_eq!(reason(Some(b"CHG1"), br#"{"cis":["c1"],"start":1,"end":2,"colour":1}"#), "undecodable");
        assert_eq!(reason(Some(b"CHG1"), &[0xff; 8]), "undecodable");
        assert_eq!(reason(Some(b"CHG1"), &vec![b' '; 5000]), "oversized");
    }
}
