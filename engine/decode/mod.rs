//! Bytes from an input topic to alarms, per the topic's configured format: Faultline's
//! protobuf `Alarm`, plain JSON ([`json`]), or ONAP VES 7.x fault and 3GPP stndDefined
//! events, single or batched ([`ves`]). Every failure has a stable, low-cardinality reason
//! (the dead-letter header and metric label) and a readable detail. A message is taken or
//! refused whole: a batch with one bad event is refused with the event's index.

pub mod json;
pub mod ves;

use crate::config::AlarmFormat;
use crate::model::EpochMillis;
use crate::model::alarm::{Alarm, Resync};
use crate::proto::{self, v1};
use prost::Message;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    Oversized { size: usize, limit: usize },
    #[error("empty message")]
    Empty,
    #[error("not a faultline.v1.Alarm protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a JSON object")]
    NotAnObject,
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
    #[error("invalid VES event{}: {message}", at.map(|i| format!(" #{i} of the batch")).unwrap_or_default())]
    Ves { at: Option<usize>, message: String },
    #[error("invalid alarm list: {0}")]
    Resync(String),
}

impl DecodeError {
    /// The value of the dead-letter `faultline.reason` header.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Oversized { .. } => "oversized",
            DecodeError::Empty => "empty",
            DecodeError::Protobuf(_) | DecodeError::Json(_) | DecodeError::NotAnObject => "undecodable",
            DecodeError::MissingResource => "missing_resource",
            DecodeError::MissingAlarmType => "missing_alarm_type",
            DecodeError::Field(_) | DecodeError::UnknownSeverity(_) | DecodeError::EventTime(_) => "invalid",
            DecodeError::Ves { .. } => "invalid_ves",
            DecodeError::Resync(_) => "invalid_resync",
        }
    }
}

/// Decodes one message into `out` (a VES batch may hold several alarms). `received` (the
/// Kafka timestamp) stands in for a missing event time. An alarm-list resynchronisation
/// puts its listed alarms into `out`, each with the list's source, and is returned. On
/// error `out` is left unchanged.
pub fn decode(
    format: AlarmFormat,
    bytes: &[u8],
    received: EpochMillis,
    limit: usize,
    out: &mut Vec<Alarm>,
) -> Result<Option<Resync>, DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::Oversized { size: bytes.len(), limit });
    }
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let start = out.len();
    let decoded = match format {
        AlarmFormat::Protobuf => protobuf(bytes, received, out),
        AlarmFormat::Json => json::decode(bytes, received, out),
        AlarmFormat::Ves => ves::decode(bytes, out),
    };
    let resync = match decoded {
        Ok(resync) => resync,
        Err(error) => {
            out.truncate(start);
            return Err(error);
        }
    };
    if let Some(resync) = &resync {
        for alarm in &mut out[start..] {
            alarm.source_system.clone_from(&resync.source_system);
        }
    }
    if let Err(error) = out[start..].iter().try_for_each(check_identity) {
        out.truncate(start);
        return Err(error);
    }
    Ok(resync)
}

/// A `faultline.v1.Alarm`: one notification, or an alarm list in its `resync` field.
fn protobuf(bytes: &[u8], received: EpochMillis, out: &mut Vec<Alarm>) -> Result<Option<Resync>, DecodeError> {
    let mut message = v1::Alarm::decode(bytes)?;
    let Some(resync) = message.resync.take() else {
        out.push(proto::alarm_from_proto(message, received)?);
        return Ok(None);
    };
    if message != v1::Alarm::default() {
        return Err(DecodeError::Resync("`resync` stands alone, not beside an alarm's fields".into()));
    }
    alarm_list(resync, received, out).map(Some)
}

/// A `faultline.v1.AlarmResync` (from the protobuf input, or the gRPC `AlarmService`): its
/// alarms into `out`, each with the list's source; `received` stands in for a missing time.
/// On error `out` is left unchanged.
pub fn alarm_list(resync: v1::AlarmResync, received: EpochMillis, out: &mut Vec<Alarm>) -> Result<Resync, DecodeError> {
    if resync.source_system.trim().is_empty() {
        return Err(DecodeError::Resync("`source_system` is required".into()));
    }
    let as_of = resync.as_of.as_ref().map(proto::millis).unwrap_or(received);
    let start = out.len();
    let listed = resync.alarms.into_iter().enumerate().try_for_each(|(i, listed)| {
        if listed.resync.is_some() {
            return Err(DecodeError::Resync(format!("alarm #{i} holds a `resync` of its own")));
        }
        let mut alarm =
            proto::alarm_from_proto(listed, as_of).map_err(|e| DecodeError::Resync(format!("alarm #{i}: {e}")))?;
        check_identity(&alarm).map_err(|e| DecodeError::Resync(format!("alarm #{i}: {e}")))?;
        alarm.source_system.clone_from(&resync.source_system);
        out.push(alarm);
        Ok(())
    });
    if let Err(error) = listed {
        out.truncate(start);
        return Err(error);
    }
    Ok(Resync { source_system: resync.source_system, as_of })
}

fn check_identity(alarm: &Alarm) -> Result<(), DecodeError> {
    if alarm.resource.trim().is_empty() {
        return Err(DecodeError::MissingResource);
    }
    if alarm.alarm_type.trim().is_empty() {
        return Err(DecodeError::MissingAlarmType);
    }
    Ok(())
}

/// An RFC 3339 time (`2026-01-02T03:04:05.678+01:00`), or one without its offset (UTC), as
/// epoch milliseconds. humantime reads UTC only, written with `T` or a space and an optional
/// `Z`: the offset is taken off here, and `t`/`z` (which RFC 3339 allows) upper-cased.
pub(crate) fn parse_rfc3339(s: &str) -> Option<EpochMillis> {
    let (utc, offset_minutes) = match s.len().checked_sub(6).map(|at| s.as_bytes().split_at(at)) {
        Some((time, &[sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]))
            if !time.ends_with(b"Z") && !time.ends_with(b"z") =>
        {
            let number = |a: u8, b: u8| {
                (a.is_ascii_digit() && b.is_ascii_digit()).then(|| i64::from((a - b'0') * 10 + b - b'0'))
            };
            let (hours, minutes) = (number(h1, h2).filter(|h| *h < 24)?, number(m1, m2).filter(|m| *m < 60)?);
            (time, if sign == b'+' { hours * 60 + minutes } else { -(hours * 60 + minutes) })
        }
        _ => (s.as_bytes(), 0),
    };
    // A copy on the stack, to upper-case without allocating: a time is some 35 bytes at most.
    let mut buffer = [0u8; 40];
    let copy = buffer.get_mut(..utc.len())?;
    copy.copy_from_slice(utc);
    copy.make_ascii_uppercase();
    let time = humantime::parse_rfc3339_weak(std::str::from_utf8(copy).ok()?).ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()?.checked_sub(offset_minutes * 60_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::alarm::Severity;

    fn one(format: AlarmFormat, bytes: &[u8]) -> Result<Alarm, DecodeError> {
        let mut out = Vec::new();
        decode(format, bytes, 7, 1024, &mut out)?;
        assert_eq!(out.len(), 1);
        Ok(out.remove(0))
    }

    #[test]
    fn json_alarms_decode_with_either_time_form() {
        let json =
            br#"{"resource":"port-1","alarm_type":"LOS","severity":"MAJOR","event_time":"2026-01-02T03:04:05Z"}"#;
        let alarm = one(AlarmFormat::Json, json).unwrap();
        assert_eq!((alarm.severity, alarm.cleared, alarm.event_time), (Severity::Major, false, 1_767_323_045_000));
        let json = br#"{"resource":"port-1","alarm_type":"LOS","severity":"cleared","event_time":42}"#;
        let alarm = one(AlarmFormat::Json, json).unwrap();
        assert_eq!((alarm.cleared, alarm.event_time), (true, 42));
        let json = br#"{"resource":"port-1","alarm_type":"LOS","severity":"minor"}"#;
        assert_eq!(one(AlarmFormat::Json, json).unwrap().event_time, 7, "the Kafka timestamp stands in");
    }

    #[test]
    fn rfc3339_times_with_an_offset_or_in_lower_case() {
        let utc = Some(1_767_323_045_678);
        for time in [
            "2026-01-02T03:04:05.678Z",
            "2026-01-02T03:04:05.678",
            "2026-01-02 03:04:05.678Z",
            "2026-01-02t03:04:05.678z",
            "2026-01-02T05:04:05.678+02:00",
            "2026-01-02T03:04:05.678-00:00",
            "2026-01-01T20:34:05.678-06:30",
        ] {
            assert_eq!(parse_rfc3339(time), utc, "{time}");
        }
        for bad in [
            "2026-01-02T03:04:05+24:00",
            "2026-01-02T03:04:05+02:60",
            "2026-01-02T03:04:05Z+02:00",
            "2026-01-02T03:04:05+2:00",
            "2026-01-02T03:04:05 +02:00",
            "1969-12-31T23:59:59Z",
            "+02:00",
            "yesterday",
            "",
            "2026-01-02T03:04:05.000000000000000000000000000000000Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        let json =
            br#"{"resource":"p","alarm_type":"LOS","severity":"major","event_time":"2026-01-02T05:04:05+02:00"}"#;
        assert_eq!(one(AlarmFormat::Json, json).unwrap().event_time, 1_767_323_045_000, "refused before");
    }

    #[test]
    fn bad_input_has_a_reason() {
        let reason = |format, bytes: &[u8]| decode(format, bytes, 0, 64, &mut Vec::new()).unwrap_err().reason();
        assert_eq!(reason(AlarmFormat::Json, b"{not json"), "undecodable");
        assert_eq!(reason(AlarmFormat::Json, br#"["port-1", "LOS", "", "major"]"#), "undecodable");
        assert_eq!(reason(AlarmFormat::Protobuf, b"\xff\xff\xff"), "undecodable");
        assert_eq!(reason(AlarmFormat::Json, br#"{"alarm_type":"LOS","severity":"major"}"#), "missing_resource");
        assert_eq!(reason(AlarmFormat::Json, br#"{"resource":"p","severity":"major"}"#), "missing_alarm_type");
        assert_eq!(reason(AlarmFormat::Json, br#"{"resource":"p","alarm_type":"LOS","severity":"bad"}"#), "invalid");
        assert_eq!(reason(AlarmFormat::Json, &[b' '; 65]), "oversized");
        assert_eq!(reason(AlarmFormat::Json, b""), "empty");
        assert_eq!(reason(AlarmFormat::Ves, br#"{"event":{}}"#), "invalid_ves");
    }

    #[test]
    fn a_ves_event_without_a_resource_or_an_alarm_type_is_refused_like_any_other() {
        let raise = include_str!("../../tests/fixtures/ves/fault_1_raise.json");
        let reason = |json: String| {
            let mut out = vec![Alarm::raise("earlier", "EARLIER", Severity::Minor, 0)];
            let reason = decode(AlarmFormat::Ves, json.as_bytes(), 0, 4096, &mut out).unwrap_err().reason();
            assert_eq!(out.len(), 1, "the output is left as it was");
            reason
        };
        assert_eq!(reason(raise.replace(r#""sourceName": "nce-r1/1/1""#, r#""sourceName": """#)), "missing_resource");
        assert_eq!(
            reason(raise.replace(r#""sourceName": "nce-r1/1/1""#, r#""sourceName": " \t""#)),
            "missing_resource"
        );
        assert_eq!(
            reason(raise.replace(r#""alarmCondition": "lossOfSignal""#, r#""alarmCondition": " ""#)),
            "missing_alarm_type"
        );
    }

    #[test]
    fn protobuf_round_trips() {
        let alarm = Alarm::raise("card-1", "EQPT", Severity::Critical, 1_000);
        let bytes = proto::alarm_to_proto(&alarm).encode_to_vec();
        assert_eq!(one(AlarmFormat::Protobuf, &bytes).unwrap(), alarm);
    }
}
