//! The JSON form of an incident snapshot, for incidents topics read by tools that do not
//! speak protobuf (`kcat`, ITSM connectors). Field names are the protobuf `Incident`'s;
//! enums are lowercase words (`open`, `degraded`, `gold`), priorities `P1`..`P5`, times
//! RFC 3339.

use crate::proto::v1;
use serde_json::{Value, json};

fn time(ts: &Option<prost_types::Timestamp>) -> Value {
    match ts {
        Some(ts) if ts.seconds >= 0 => {
            let at = std::time::UNIX_EPOCH + std::time::Duration::new(ts.seconds as u64, ts.nanos.max(0) as u32);
            Value::String(humantime::format_rfc3339_millis(at).to_string())
        }
        _ => Value::Null,
    }
}

fn word(name: &str, prefix: &str) -> Value {
    Value::String(name.trim_start_matches(prefix).to_ascii_lowercase())
}

fn state(value: i32) -> Value {
    word(v1::ServiceState::try_from(value).unwrap_or_default().as_str_name(), "SERVICE_STATE_")
}

fn alarm(a: &v1::AlarmRef) -> Value {
    json!({
        "resource": a.resource,
        "alarm_type": a.alarm_type,
        "qualifier": a.qualifier,
        "severity": word(v1::Severity::try_from(a.severity).unwrap_or_default().as_str_name(), "SEVERITY_"),
        "text": a.text,
        "raised_time": time(&a.raised_time),
        "last_seen_time": time(&a.last_seen_time),
        "tally": a.tally,
        "cleared_time": time(&a.cleared_time),
    })
}

pub fn to_json(i: &v1::Incident) -> Vec<u8> {
    let value = json!({
        "id": i.id,
        "title": i.title,
        "state": word(v1::IncidentState::try_from(i.state).unwrap_or_default().as_str_name(), "INCIDENT_STATE_"),
        "priority": format!("P{}", i.priority),
        "impact": word(v1::Level::try_from(i.impact).unwrap_or_default().as_str_name(), "LEVEL_"),
        "urgency": word(v1::Level::try_from(i.urgency).unwrap_or_default().as_str_name(), "LEVEL_"),
        "root_causes": i.root_causes,
        "root_cause_alarms": i.root_cause_alarms.iter().map(alarm).collect::<Vec<_>>(),
        "symptom_alarms": i.symptom_alarms.iter().map(alarm).collect::<Vec<_>>(),
        "impacted_services": i.impacted_services.iter().map(|s| json!({
            "service_id": s.service_id, "name": s.name, "impact": state(s.impact), "customer_id": s.customer_id,
        })).collect::<Vec<_>>(),
        "impacted_customers": i.impacted_customers.iter().map(|c| json!({
            "customer_id": c.customer_id,
            "name": c.name,
            "sla_tier": word(v1::SlaTier::try_from(c.sla_tier).unwrap_or_default().as_str_name(), "SLA_TIER_"),
            "impact": state(c.impact),
        })).collect::<Vec<_>>(),
        "timeline": i.timeline.iter().map(|e| json!({"time": time(&e.time), "kind": e.kind, "text": e.text})).collect::<Vec<_>>(),
        "acknowledgement": i.acknowledgement.as_ref().map(|a| json!({"by": a.by, "time": time(&a.time)})),
        "notes": i.notes.iter().map(|n| json!({"author": n.author, "text": n.text, "time": time(&n.time)})).collect::<Vec<_>>(),
        "open_time": time(&i.open_time),
        "update_time": time(&i.update_time),
        "resolve_time": time(&i.resolve_time),
        "version": i.version,
    });
    serde_json::to_vec(&value).unwrap_or_default()
}
