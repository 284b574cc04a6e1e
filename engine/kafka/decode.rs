//! Bytes from an input topic to an [`Alarm`], per the topic's configured format. Every
//! failure has a stable, low-cardinality reason (the dead-letter header and metric label)
//! and a readable detail.

use crate::config::AlarmFormat;
use crate::model::EpochMillis;
use crate::model::alarm::{Alarm, EventType, Severity};
use crate::proto::{self, v1};
use prost::Message;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    Oversized { size: usize, limit: usize },
    #[error("empty message")]
    Empty,
    #[error("not a faultline.v1.Alarm protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("not a valid JSON alarm: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid alarm: {0}")]
    Field(#[from] proto::AlarmFieldError),
    #[error("alarm has no resource")]
    MissingResource,
    #[error("alarm has no alarm type")]
    MissingAlarmType,
    #[error("unknown severity `{0}`")]
    UnknownSeverity(String),
    #[error("invalid event time `{0}`: expected RFC 3339 or epoch milliseconds")]
    EventTime(String),
}

impl DecodeError {
    /// The value of the dead-letter `faultline.reason` header.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Oversized { .. } => "oversized",
            DecodeError::Empty => "empty",
            DecodeError::Protobuf(_) | DecodeError::Json(_) => "undecodable",
            DecodeError::MissingResource => "missing_resource",
            DecodeError::MissingAlarmType => "missing_alarm_type",
            DecodeError::Field(_) | DecodeError::UnknownSeverity(_) | DecodeError::EventTime(_) => "invalid",
        }
    }
}

/// Decodes one message. `received` (the Kafka timestamp) stands in for a missing event time.
pub fn decode(format: AlarmFormat, bytes: &[u8], received: EpochMillis, limit: usize) -> Result<Alarm, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::Oversized { size: bytes.len(), limit });
    }
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let alarm = match format {
        AlarmFormat::Protobuf => proto::alarm_from_proto(v1::Alarm::decode(bytes)?, received)?,
        AlarmFormat::Json => serde_json::from_slice::<JsonAlarm>(bytes)?.into_alarm(received)?,
    };
    if alarm.resource.trim().is_empty() {
        return Err(DecodeError::MissingResource);
    }
    if alarm.alarm_type.trim().is_empty() {
        return Err(DecodeError::MissingAlarmType);
    }
    Ok(alarm)
}

/// The plain JSON alarm format: the protobuf `Alarm`'s fields with snake_case names;
/// severities and event types as lowercase words, `severity: "cleared"` accepted for a clear.
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
}

impl JsonAlarm {
    fn into_alarm(self, received: EpochMillis) -> Result<Alarm, DecodeError> {
        let (severity, cleared) = match self.severity.to_ascii_lowercase().as_str() {
            "critical" => (Severity::Critical, self.cleared),
            "major" => (Severity::Major, self.cleared),
            "minor" => (Severity::Minor, self.cleared),
            "warning" => (Severity::Warning, self.cleared),
            "indeterminate" => (Severity::Indeterminate, self.cleared),
            "cleared" | "clear" | "normal" => (Severity::Indeterminate, true),
            "" if self.cleared => (Severity::Indeterminate, true),
            _ => return Err(DecodeError::UnknownSeverity(self.severity)),
        };
        let event_time = match self.event_time {
            None | Some(serde_json::Value::Null) => received,
            Some(serde_json::Value::Number(n)) => n.as_i64().ok_or_else(|| DecodeError::EventTime(n.to_string()))?,
            Some(serde_json::Value::String(s)) => parse_rfc3339(&s).ok_or(DecodeError::EventTime(s))?,
            Some(other) => return Err(DecodeError::EventTime(other.to_string())),
        };
        Ok(Alarm {
            resource: self.resource,
            alarm_type: self.alarm_type,
            qualifier: self.qualifier,
            severity,
            cleared,
            event_type: self.event_type.unwrap_or_default(),
            probable_cause: self.probable_cause,
            specific_problem: self.specific_problem,
            text: self.text,
            event_time,
            source_system: self.source_system,
            notification_id: self.notification_id,
            sequence: self.sequence,
        })
    }
}

fn parse_rfc3339(s: &str) -> Option<EpochMillis> {
    let time = humantime::parse_rfc3339_weak(s).ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_alarms_decode_with_either_time_form() {
        let json =
            br#"{"resource":"port-1","alarm_type":"LOS","severity":"MAJOR","event_time":"2026-01-02T03:04:05Z"}"#;
        let alarm = decode(AlarmFormat::Json, json, 7, 1024).unwrap();
        assert_eq!((alarm.severity, alarm.cleared, alarm.event_time), (Severity::Major, false, 1_767_323_045_000));
        let json = br#"{"resource":"port-1","alarm_type":"LOS","severity":"cleared","event_time":42}"#;
        let alarm = decode(AlarmFormat::Json, json, 7, 1024).unwrap();
        assert_eq!((alarm.cleared, alarm.event_time), (true, 42));
    }

    #[test]
    fn bad_input_has_a_reason() {
        let reason = |format, bytes: &[u8]| decode(format, bytes, 0, 64).unwrap_err().reason();
        assert_eq!(reason(AlarmFormat::Json, b"{not json"), "undecodable");
        assert_eq!(reason(AlarmFormat::Protobuf, b"\xff\xff\xff"), "undecodable");
        assert_eq!(reason(AlarmFormat::Json, br#"{"alarm_type":"LOS","severity":"major"}"#), "missing_resource");
        assert_eq!(reason(AlarmFormat::Json, br#"{"resource":"p","alarm_type":"LOS","severity":"bad"}"#), "invalid");
        assert_eq!(reason(AlarmFormat::Json, &[b' '; 65]), "oversized");
        assert_eq!(reason(AlarmFormat::Json, b""), "empty");
    }

    #[test]
    fn protobuf_round_trips() {
        let alarm = Alarm::raise("card-1", "EQPT", Severity::Critical, 1_000);
        let bytes = proto::alarm_to_proto(&alarm).encode_to_vec();
        assert_eq!(decode(AlarmFormat::Protobuf, &bytes, 0, 1024).unwrap(), alarm);
    }
}
