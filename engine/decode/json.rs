//! The plain JSON alarm format: the protobuf `Alarm`'s fields with their snake_case names;
//! severities and event types as words (any case), `severity: "cleared"` (or `cleared: true`)
//! for a clear, `event_time` as RFC 3339 or epoch milliseconds.
//!
//! An alarm-list resynchronisation is an object with one key, `resync`:
//! `{"resync": {"source_system": "ems-paris", "as_of": "2026-01-02T03:04:05Z", "alarms": [...]}}`,
//! the alarms in this same format (`as_of` optional: the message's time).

use super::{DecodeError, parse_rfc3339};
use crate::model::EpochMillis;
use crate::model::alarm::{Alarm, EventType, Resync, Severity};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct JsonAlarm {
    #[serde(default)]
    resource: String,
    #[serde(default)]
    alarm_type: String,
    #[serde(default)]
    qualifier: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    cleared: bool,
    #[serde(default)]
    event_type: Option<EventType>,
    #[serde(default)]
    probable_cause: String,
    #[serde(default)]
    specific_problem: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    event_time: Option<serde_json::Value>,
    #[serde(default)]
    source_system: String,
    #[serde(default)]
    notification_id: String,
    #[serde(default)]
    sequence: u64,
    #[serde(default)]
    resync: Option<JsonResync>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonResync {
    #[serde(default)]
    source_system: String,
    #[serde(default)]
    as_of: Option<serde_json::Value>,
    #[serde(default)]
    alarms: Vec<JsonAlarm>,
}

/// Severity words shared by the JSON and VES formats; `None` for a clear.
pub(crate) fn severity_word(word: &str) -> Result<Option<Severity>, DecodeError> {
    Ok(Some(match word.to_ascii_lowercase().as_str() {
        "critical" => Severity::Critical,
        "major" => Severity::Major,
        "minor" => Severity::Minor,
        "warning" => Severity::Warning,
        "indeterminate" => Severity::Indeterminate,
        "cleared" | "clear" | "normal" => return Ok(None),
        _ => return Err(DecodeError::UnknownSeverity(word.to_owned())),
    }))
}

/// Decodes one message: an alarm into `out`, or an alarm list (its alarms into `out`, the
/// list returned).
pub fn decode(bytes: &[u8], received: EpochMillis, out: &mut Vec<Alarm>) -> Result<Option<Resync>, DecodeError> {
    // serde would also read a struct from a JSON array, field by field in order: an alarm
    // is an object, anything else is refused before it can be misread.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(DecodeError::NotAnObject);
    }
    let mut json: JsonAlarm = serde_json::from_slice(bytes)?;
    let Some(resync) = json.resync.take() else {
        out.push(alarm(json, received)?);
        return Ok(None);
    };
    if !json.resource.is_empty() || !json.alarm_type.is_empty() {
        return Err(DecodeError::Resync("`resync` stands alone, not beside an alarm's fields".into()));
    }
    if resync.source_system.trim().is_empty() {
        return Err(DecodeError::Resync("`source_system` is required".into()));
    }
    let as_of = time(resync.as_of, received)?;
    let start = out.len();
    for (i, mut listed) in resync.alarms.into_iter().enumerate() {
        if listed.resync.is_some() {
            out.truncate(start);
            return Err(DecodeError::Resync(format!("alarm #{i} holds a `resync` of its own")));
        }
        listed.source_system.clone_from(&resync.source_system);
        match alarm(listed, as_of) {
            Ok(alarm) => out.push(alarm),
            Err(error) => {
                out.truncate(start);
                return Err(DecodeError::Resync(format!("alarm #{i}: {error}")));
            }
        }
    }
    Ok(Some(Resync { source_system: resync.source_system, as_of }))
}

fn time(value: Option<serde_json::Value>, received: EpochMillis) -> Result<EpochMillis, DecodeError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(received),
        Some(serde_json::Value::Number(n)) => n.as_i64().ok_or_else(|| DecodeError::EventTime(n.to_string())),
        Some(serde_json::Value::String(s)) => parse_rfc3339(&s).ok_or(DecodeError::EventTime(s)),
        Some(other) => Err(DecodeError::EventTime(other.to_string())),
    }
}

fn alarm(json: JsonAlarm, received: EpochMillis) -> Result<Alarm, DecodeError> {
    let (severity, cleared) = match (json.severity.as_str(), json.cleared) {
        ("", true) => (Severity::Indeterminate, true),
        (word, cleared) => match severity_word(word)? {
            Some(severity) => (severity, cleared),
            None => (Severity::Indeterminate, true),
        },
    };
    let event_time = time(json.event_time, received)?;
    Ok(Alarm {
        resource: json.resource,
        alarm_type: json.alarm_type,
        qualifier: json.qualifier,
        severity,
        cleared,
        event_type: json.event_type.unwrap_or_default(),
        probable_cause: json.probable_cause,
        specific_problem: json.specific_problem,
        text: json.text,
        event_time,
        source_system: json.source_system,
        notification_id: json.notification_id,
        sequence: json.sequence,
    })
}
