//! ONAP VES 7.x events: `fault` domain events and 3GPP `stndDefined` fault notifications
//! (`notifyNewAlarm`, `notifyChangedAlarm`, `notifyClearedAlarm`), as a single `event` or an
//! `eventList` batch. Checked against the parts of the VES 7 schema (CommonEventFormat 30.x)
//! that the mapping relies on; other domains in a batch (heartbeats, measurements) are not
//! alarms and are skipped.
//!
//! Alarm-list resynchronisation: a batch whose first event is a marker carries the element
//! manager's whole list of active alarms, the batch's fault events (VES `fault` or 3GPP
//! `stndDefined`). The marker is a VES event of domain `other` named (`eventName`)
//! `alarmListResync`; its `reportingEntityName` is the source, its `lastEpochMicrosec` the
//! list's time. A marker alone says the element manager has no active alarm. A 3GPP
//! `notifyAlarmListRebuilt` (TS 28.532) is not one: it carries no alarm, only that the
//! producer's list was rebuilt and a consumer should fetch it (getAlarmList), which the
//! mediation in front of Faultline does and sends as such a batch; alone it is taken and
//! skipped, like a heartbeat, and clears nothing.
//!
//! Mapping: the resource is the header's `sourceName`. A fault event's alarm type is its
//! `alarmCondition`, its qualifier `alarmInterfaceA`; severity `NORMAL` is a clear. A 3GPP
//! notification's alarm type is `alarmType/probableCause`, its qualifier the `alarmId`, so
//! that new, changed and cleared notifications of one alarm share an identity.
//!
//! Ordering: `Alarm::notification_id` names the source's stream of notifications about one
//! alarm instance and `Alarm::sequence` the order within it; the alarm stage does not apply
//! a notification whose id is the one last applied to its alarm and whose sequence is not
//! higher (a retransmission, or stale).
//! - A fault event: `eventId` and the header's `sequence`. The VES 7 listener spec has the
//!   changes and the clear of a fault repeat its raise's `eventId` (and
//!   `startEpochMicrosec`) with a higher `sequence`; the schema gives `sequence` as the
//!   "ordering of events communicated by an event source instance".
//! - A 3GPP notification: the `alarmId` and the `notificationId`, a JSON integer or a
//!   string of digits. TS 28.532 carries `notificationId` in every notification's header and
//!   TS 28.623 types it as an integer (`NotificationId: integer`, required in
//!   `NotificationHeader`); the fault supervision texts (TS 28.532, TS 28.111, from the Alarm
//!   IRP of TS 32.111-2 and X.733) give it to identify one notification, for
//!   `correlatedNotifications` of later ones to refer to, unique among the producer's
//!   notifications while correlation matters. They do not promise that it grows: ordering
//!   by it assumes a producer that allocates ids in ascending order, as counters do. The
//!   VES header's `eventId` and `sequence` stand in when `notificationId` is absent or not
//!   a non-negative integer.

use super::DecodeError;
use super::json::severity_word;
use crate::model::EpochMillis;
use crate::model::alarm::{Alarm, EventType, Resync, Severity};
use serde_json::{Map, Value};

const FAULT_NAMESPACE: &str = "3GPP-FaultSupervision";

/// The `eventName` of a VES alarm-list marker (domain `other`).
pub const RESYNC_EVENT_NAME: &str = "alarmListResync";

/// Decodes one message's alarms into `out`; a resync marker first in it makes them an alarm
/// list, returned.
pub fn decode(bytes: &[u8], out: &mut Vec<Alarm>) -> Result<Option<Resync>, DecodeError> {
    let root: Value = serde_json::from_slice(bytes)?;
    let start = out.len();
    let events: &[Value] = match (root.get("event"), root.get("eventList")) {
        (Some(event), None) => std::slice::from_ref(event),
        (None, Some(Value::Array(events))) if !events.is_empty() => events,
        (None, Some(_)) => return Err(invalid(None, "`eventList` must be a non-empty array".into())),
        _ => return Err(invalid(None, "expected an object with either `event` or `eventList`".into())),
    };
    let at = |i: usize| (root.get("eventList").is_some()).then_some(i);
    let mut resync = None;
    let result = events.iter().enumerate().try_for_each(|(i, event)| match event_content(event) {
        Ok(Content::Alarm(alarm)) => {
            out.push(alarm);
            Ok(())
        }
        Ok(Content::Other) => Ok(()),
        Ok(Content::Resync(marker)) if i == 0 => {
            resync = Some(marker);
            Ok(())
        }
        Ok(Content::Resync(_)) => Err(invalid(at(i), "an alarm-list marker must be the batch's first event".into())),
        Err(message) => Err(invalid(at(i), message)),
    });
    if let Err(error) = result {
        out.truncate(start);
        return Err(error);
    }
    Ok(resync)
}

fn invalid(at: Option<usize>, message: String) -> DecodeError {
    DecodeError::Ves { at, message }
}

type Fields<'a> = &'a Map<String, Value>;

fn object<'a>(parent: Fields<'a>, key: &str) -> Result<Fields<'a>, String> {
    match parent.get(key) {
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(format!("`{key}` must be an object")),
        None => Err(format!("`{key}` is required")),
    }
}

fn string<'a>(parent: Fields<'a>, key: &str) -> Result<&'a str, String> {
    match parent.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("`{key}` must be a string")),
        None => Err(format!("`{key}` is required")),
    }
}

fn optional_string<'a>(parent: Fields<'a>, key: &str) -> Result<Option<&'a str>, String> {
    match parent.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{key}` must be a string")),
    }
}

fn integer(parent: Fields<'_>, key: &str) -> Result<i64, String> {
    match parent.get(key) {
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| format!("`{key}` must be an integer")),
        Some(_) => Err(format!("`{key}` must be an integer")),
        None => Err(format!("`{key}` is required")),
    }
}

/// A time in epoch microseconds: the schema types these as numbers, not integers, so a
/// fraction of a microsecond is dropped, not refused.
fn epoch_micros(parent: Fields<'_>, key: &str) -> Result<i64, String> {
    const RANGE: std::ops::Range<f64> = (i64::MIN as f64)..(i64::MAX as f64);
    match parent.get(key) {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| RANGE.contains(f)).map(|f| f as i64))
            .ok_or_else(|| format!("`{key}` is out of range")),
        Some(_) => Err(format!("`{key}` must be a number")),
        None => Err(format!("`{key}` is required")),
    }
}

fn one_of<'a>(value: &'a str, key: &str, allowed: &[&str]) -> Result<&'a str, String> {
    if allowed.contains(&value) { Ok(value) } else { Err(format!("`{key}` is `{value}`, expected one of {allowed:?}")) }
}

/// The common header every VES 7 event carries.
struct Header<'a> {
    domain: &'a str,
    event_name: &'a str,
    event_id: &'a str,
    source_name: &'a str,
    reporting_entity: &'a str,
    sequence: u64,
    last_epoch_ms: EpochMillis,
}

fn header(event: Fields<'_>) -> Result<Header<'_>, String> {
    let h = object(event, "commonEventHeader")?;
    let listener = string(h, "vesEventListenerVersion")?;
    if !listener.starts_with("7.") {
        return Err(format!("`vesEventListenerVersion` is `{listener}`, expected 7.x"));
    }
    string(h, "version")?;
    string(h, "priority")?;
    let start = epoch_micros(h, "startEpochMicrosec")?;
    let last = epoch_micros(h, "lastEpochMicrosec")?;
    let sequence = integer(h, "sequence")?;
    Ok(Header {
        domain: string(h, "domain")?,
        event_name: string(h, "eventName")?,
        event_id: string(h, "eventId")?,
        source_name: string(h, "sourceName")?,
        reporting_entity: string(h, "reportingEntityName")?,
        sequence: u64::try_from(sequence).map_err(|_| "`sequence` must not be negative".to_owned())?,
        last_epoch_ms: last.max(start) / 1000,
    })
}

/// What one event is to Faultline.
enum Content {
    Alarm(Alarm),
    /// An alarm-list marker.
    Resync(Resync),
    /// A domain that carries no alarm (heartbeat, measurement, ...).
    Other,
}

fn event_content(event: &Value) -> Result<Content, String> {
    let Value::Object(event) = event else { return Err("an event must be an object".into()) };
    let header = header(event)?;
    match header.domain {
        "fault" => fault(&header, object(event, "faultFields")?).map(Content::Alarm),
        "stndDefined" => {
            let fields = object(event, "stndDefinedFields")?;
            let namespace = string(object(event, "commonEventHeader")?, "stndDefinedNamespace")?;
            if namespace != FAULT_NAMESPACE {
                return Ok(Content::Other);
            }
            stnd_defined(&header, fields)
        }
        "other" if header.event_name == RESYNC_EVENT_NAME => marker(&header).map(Content::Resync),
        _ => Ok(Content::Other),
    }
}

fn marker(header: &Header<'_>) -> Result<Resync, String> {
    if header.reporting_entity.trim().is_empty() {
        return Err("an alarm-list marker names its source in `reportingEntityName`".into());
    }
    Ok(Resync { source_system: header.reporting_entity.to_owned(), as_of: header.last_epoch_ms })
}

fn fault(header: &Header<'_>, f: Fields<'_>) -> Result<Alarm, String> {
    string(f, "faultFieldsVersion")?;
    let condition = string(f, "alarmCondition")?;
    let severity =
        one_of(string(f, "eventSeverity")?, "eventSeverity", &["CRITICAL", "MAJOR", "MINOR", "WARNING", "NORMAL"])?;
    let source_type = string(f, "eventSourceType")?;
    let specific_problem = string(f, "specificProblem")?;
    one_of(
        string(f, "vfStatus")?,
        "vfStatus",
        &["Active", "Idle", "Preparing to terminate", "Ready to terminate", "Requesting termination"],
    )?;
    let severity = severity_word(severity).map_err(|e| e.to_string())?;
    Ok(Alarm {
        resource: header.source_name.to_owned(),
        alarm_type: condition.to_owned(),
        qualifier: optional_string(f, "alarmInterfaceA")?.unwrap_or_default().to_owned(),
        severity: severity.unwrap_or(Severity::Indeterminate),
        cleared: severity.is_none(),
        event_type: match source_type {
            "port" | "card" | "slot" | "host" | "router" | "switch" => EventType::Equipment,
            _ => EventType::Unspecified,
        },
        probable_cause: String::new(),
        specific_problem: specific_problem.to_owned(),
        text: specific_problem.to_owned(),
        event_time: header.last_epoch_ms,
        source_system: header.reporting_entity.to_owned(),
        notification_id: header.event_id.to_owned(),
        sequence: header.sequence,
    })
}

fn stnd_defined(header: &Header<'_>, fields: Fields<'_>) -> Result<Content, String> {
    let version = string(fields, "stndDefinedFieldsVersion")?;
    one_of(version, "stndDefinedFieldsVersion", &["1.0"])?;
    let data = object(fields, "data")?;
    let kind = string(data, "notificationType")?;
    one_of(
        kind,
        "notificationType",
        &[
            "notifyNewAlarm",
            "notifyChangedAlarm",
            "notifyChangedAlarmGeneral",
            "notifyClearedAlarm",
            "notifyAlarmListRebuilt",
        ],
    )?;
    if kind == "notifyAlarmListRebuilt" {
        return Ok(Content::Other);
    }
    let alarm_id = string(data, "alarmId")?;
    if alarm_id.trim().is_empty() {
        // It is the alarm's qualifier and the name of its notification stream.
        return Err("`alarmId` must not be blank".into());
    }
    let alarm_type = string(data, "alarmType")?;
    let event_type = match one_of(
        alarm_type,
        "alarmType",
        &[
            "COMMUNICATIONS_ALARM",
            "QUALITY_OF_SERVICE_ALARM",
            "PROCESSING_ERROR_ALARM",
            "EQUIPMENT_ALARM",
            "ENVIRONMENTAL_ALARM",
            "INTEGRITY_VIOLATION",
            "OPERATIONAL_VIOLATION",
            "PHYSICAL_VIOLATION",
            "SECURITY_SERVICE_OR_MECHANISM_VIOLATION",
            "TIME_DOMAIN_VIOLATION",
        ],
    )? {
        "COMMUNICATIONS_ALARM" => EventType::Communications,
        "QUALITY_OF_SERVICE_ALARM" => EventType::QualityOfService,
        "PROCESSING_ERROR_ALARM" => EventType::ProcessingError,
        "EQUIPMENT_ALARM" => EventType::Equipment,
        "ENVIRONMENTAL_ALARM" => EventType::Environmental,
        _ => EventType::Unspecified,
    };
    let probable_cause = match data.get("probableCause") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err("`probableCause` must be a string or an integer".into()),
        None => return Err("`probableCause` is required".into()),
    };
    let severity = match data.get("perceivedSeverity") {
        Some(Value::String(s)) => {
            one_of(s, "perceivedSeverity", &["CRITICAL", "MAJOR", "MINOR", "WARNING", "INDETERMINATE", "CLEARED"])?;
            severity_word(s).map_err(|e| e.to_string())?
        }
        Some(_) => return Err("`perceivedSeverity` must be a string".into()),
        None if kind == "notifyClearedAlarm" => None,
        None => return Err("`perceivedSeverity` is required".into()),
    };
    if let Some(trend) = optional_string(data, "trendIndication")? {
        one_of(trend, "trendIndication", &["MORE_SEVERE", "NO_CHANGE", "LESS_SEVERE"])?;
    } else if data.get("trendIndication").is_some() {
        return Err("`trendIndication` must be a string".into());
    }
    let cleared = kind == "notifyClearedAlarm" || severity.is_none();
    let event_time = optional_string(data, "eventTime")?.and_then(super::parse_rfc3339).unwrap_or(header.last_epoch_ms);
    let text = optional_string(data, "additionalText")?.unwrap_or_default();
    let (notification_id, sequence) = match notification_number(data.get("notificationId")) {
        Some(number) => (alarm_id.to_owned(), number),
        None => (header.event_id.to_owned(), header.sequence),
    };
    Ok(Content::Alarm(Alarm {
        resource: header.source_name.to_owned(),
        alarm_type: format!("{alarm_type}/{probable_cause}"),
        qualifier: alarm_id.to_owned(),
        severity: severity.unwrap_or(Severity::Indeterminate),
        cleared,
        event_type,
        probable_cause,
        specific_problem: optional_string(data, "specificProblem")?.unwrap_or_default().to_owned(),
        text: text.to_owned(),
        event_time,
        source_system: header.reporting_entity.to_owned(),
        notification_id,
        sequence,
    }))
}

/// A 3GPP `notificationId` as a number to order by: a JSON integer, or a string of digits
/// (some element managers quote it). Anything else orders nothing.
fn notification_number(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
