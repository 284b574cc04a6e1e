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
        "notes": i.notes.iter().map(|n| json!({
            "author": n.author, "text": n.text, "time": time(&n.time), "request_id": n.request_id,
        })).collect::<Vec<_>>(),
        "open_time": time(&i.open_time),
        "update_time": time(&i.update_time),
        "resolve_time": time(&i.resolve_time),
        "version": i.version,
        "topology_version": i.topology_version,
        "omitted": {
            "root_causes": i.root_causes_omitted,
            "root_cause_alarms": i.root_cause_alarms_omitted,
            "symptom_alarms": i.symptom_alarms_omitted,
            "cleared_alarms": i.cleared_alarms_dropped,
        },
    });
    serde_json::to_vec(&value).unwrap_or_default()
}

/// Reads back what [`to_json`] wrote (for the history of closed incidents, when the
/// incidents topic is JSON); `None` for what it cannot have written.
pub fn from_json(bytes: &[u8]) -> Option<v1::Incident> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let enumerated = |v: &Value, key: &str, prefix: &str, parse: fn(&str) -> Option<i32>| {
        v.get(key).and_then(Value::as_str).and_then(|w| parse(&format!("{prefix}{}", w.to_ascii_uppercase())))
    };
    let parse_time = |v: &Value, key: &str| {
        let at = humantime::parse_rfc3339(v.get(key)?.as_str()?).ok()?;
        let since = at.duration_since(std::time::UNIX_EPOCH).ok()?;
        Some(prost_types::Timestamp { seconds: since.as_secs() as i64, nanos: since.subsec_nanos() as i32 })
    };
    let list = |key: &str| v.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    let service_state = |v: &Value| {
        enumerated(v, "impact", "SERVICE_STATE_", |n| v1::ServiceState::from_str_name(n).map(|s| s as i32)).unwrap_or(0)
    };
    let alarm = |a: &Value| v1::AlarmRef {
        resource: text(a, "resource"),
        alarm_type: text(a, "alarm_type"),
        qualifier: text(a, "qualifier"),
        severity: enumerated(a, "severity", "SEVERITY_", |n| v1::Severity::from_str_name(n).map(|s| s as i32))
            .unwrap_or(0),
        text: text(a, "text"),
        raised_time: parse_time(a, "raised_time"),
        last_seen_time: parse_time(a, "last_seen_time"),
        tally: a.get("tally").and_then(Value::as_u64).unwrap_or_default(),
        cleared_time: parse_time(a, "cleared_time"),
    };
    let omitted = |key: &str| {
        let count = v.get("omitted").and_then(|o| o.get(key)).and_then(Value::as_u64).unwrap_or_default();
        u32::try_from(count).unwrap_or(u32::MAX)
    };
    let level = |key: &str| enumerated(&v, key, "LEVEL_", |n| v1::Level::from_str_name(n).map(|l| l as i32));
    let mut incident = v1::Incident {
        id: text(&v, "id"),
        title: text(&v, "title"),
        state: enumerated(&v, "state", "INCIDENT_STATE_", |n| v1::IncidentState::from_str_name(n).map(|s| s as i32))?,
        priority: text(&v, "priority").strip_prefix('P')?.parse().ok()?,
        impact: level("impact").unwrap_or(0),
        urgency: level("urgency").unwrap_or(0),
        root_causes: list("root_causes").iter().filter_map(|r| r.as_str().map(str::to_owned)).collect(),
        root_cause_alarms: list("root_cause_alarms").iter().map(alarm).collect(),
        symptom_alarms: list("symptom_alarms").iter().map(alarm).collect(),
        impacted_services: list("impacted_services")
            .iter()
            .map(|s| v1::ImpactedService {
                service_id: text(s, "service_id"),
                name: text(s, "name"),
                impact: service_state(s),
                customer_id: text(s, "customer_id"),
                in_maintenance: false,
            })
            .collect(),
        impacted_customers: list("impacted_customers")
            .iter()
            .map(|c| v1::ImpactedCustomer {
                customer_id: text(c, "customer_id"),
                name: text(c, "name"),
                sla_tier: enumerated(c, "sla_tier", "SLA_TIER_", |n| v1::SlaTier::from_str_name(n).map(|t| t as i32))
                    .unwrap_or(0),
                impact: service_state(c),
            })
            .collect(),
        timeline: list("timeline")
            .iter()
            .map(|e| v1::TimelineEntry { time: parse_time(e, "time"), kind: text(e, "kind"), text: text(e, "text") })
            .collect(),
        acknowledgement: v
            .get("acknowledgement")
            .filter(|a| a.is_object())
            .map(|a| v1::Acknowledgement { by: text(a, "by"), time: parse_time(a, "time") }),
        notes: list("notes")
            .iter()
            .map(|n| v1::Note {
                author: text(n, "author"),
                text: text(n, "text"),
                time: parse_time(n, "time"),
                request_id: text(n, "request_id"),
            })
            .collect(),
        open_time: parse_time(&v, "open_time"),
        update_time: parse_time(&v, "update_time"),
        resolve_time: parse_time(&v, "resolve_time"),
        version: v.get("version").and_then(Value::as_u64).unwrap_or_default(),
        topology_version: v.get("topology_version").and_then(Value::as_u64).unwrap_or_default(),
        root_causes_omitted: omitted("root_causes"),
        root_cause_alarms_omitted: omitted("root_cause_alarms"),
        symptom_alarms_omitted: omitted("symptom_alarms"),
        cleared_alarms_dropped: omitted("cleared_alarms"),
        ..v1::Incident::default()
    };
    incident.root_cause_alarm_count = incident.root_cause_alarms.len() as u32;
    incident.symptom_alarm_count = incident.symptom_alarms.len() as u32;
    incident.impacted_service_count = incident.impacted_services.len() as u32;
    incident.impacted_customer_count = incident.impacted_customers.len() as u32;
    Some(incident)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_to_json_writes_from_json_reads_back() {
        let time = |ms: i64| Some(prost_types::Timestamp { seconds: ms / 1000, nanos: (ms % 1000) as i32 * 1_000_000 });
        let alarm = v1::AlarmRef {
            resource: "par-r1/1/1".into(),
            alarm_type: "LOS".into(),
            qualifier: "1/1".into(),
            severity: v1::Severity::Critical as i32,
            text: "loss of signal".into(),
            raised_time: time(1_767_225_600_123),
            last_seen_time: time(1_767_225_601_000),
            tally: 3,
            cleared_time: time(1_767_225_700_000),
        };
        let incident = v1::Incident {
            id: "INC-000042".into(),
            title: "par-r1/1/1: 1 service down".into(),
            state: v1::IncidentState::Closed as i32,
            priority: 2,
            impact: v1::Level::Medium as i32,
            urgency: v1::Level::High as i32,
            root_causes: vec!["par-r1/1/1".into()],
            root_cause_alarms: vec![alarm.clone()],
            symptom_alarms: vec![v1::AlarmRef { cleared_time: None, ..alarm }],
            impacted_services: vec![v1::ImpactedService {
                service_id: "cfs-acme-vpn".into(),
                name: "ACME VPN".into(),
                impact: v1::ServiceState::Down as i32,
                customer_id: "cust-acme".into(),
                in_maintenance: false,
            }],
            impacted_customers: vec![v1::ImpactedCustomer {
                customer_id: "cust-acme".into(),
                name: "ACME".into(),
                sla_tier: v1::SlaTier::Gold as i32,
                impact: v1::ServiceState::Down as i32,
            }],
            timeline: vec![v1::TimelineEntry {
                time: time(1_767_225_600_123),
                kind: "opened".into(),
                text: "x".into(),
            }],
            acknowledgement: Some(v1::Acknowledgement { by: "alice".into(), time: time(1_767_225_650_000) }),
            notes: vec![v1::Note {
                author: "bob".into(),
                text: "on it".into(),
                time: time(1_767_225_660_000),
                request_id: "retry-1".into(),
            }],
            open_time: time(1_767_225_600_123),
            update_time: time(1_767_226_600_000),
            resolve_time: time(1_767_225_760_000),
            version: 9,
            root_cause_alarm_count: 1,
            symptom_alarm_count: 1,
            impacted_service_count: 1,
            impacted_customer_count: 1,
            root_causes_omitted: 4,
            root_cause_alarms_omitted: 5,
            symptom_alarms_omitted: 6,
            cleared_alarms_dropped: 7,
            topology_version: 3,
        };
        assert_eq!(from_json(&to_json(&incident)), Some(incident));
        assert_eq!(from_json(b"{\"id\":\"INC-1\"}"), None, "not what to_json writes");
    }
}
