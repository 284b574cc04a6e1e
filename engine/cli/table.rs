//! One line per incident change, in fixed columns a NOC engineer can scan.

use crate::proto::v1;

pub fn header() -> String {
    format!(
        "{:<8}  {:<12}  {:<10}  {:<12}  {:<4}  {:<22}  {:<30}  {:>8}  {}",
        "TIME", "CHANGE", "INCIDENT", "STATE", "PRIO", "IMPACT", "ROOT CAUSE", "SYMPTOMS", "TITLE"
    )
}

/// The line for a change of `kind` (a `v1::ChangeKind`) that left `incident` as it is.
pub fn row(kind: i32, incident: &v1::Incident) -> String {
    let kind = v1::ChangeKind::try_from(kind).unwrap_or_default();
    let kind = kind.as_str_name().trim_start_matches("CHANGE_KIND_").to_ascii_lowercase();
    let state = v1::IncidentState::try_from(incident.state).unwrap_or_default();
    let state = state.as_str_name().trim_start_matches("INCIDENT_STATE_").to_ascii_lowercase();
    let count =
        |wanted: v1::ServiceState| incident.impacted_services.iter().filter(|s| s.impact == wanted as i32).count();
    let (down, degraded, up) =
        (count(v1::ServiceState::Down), count(v1::ServiceState::Degraded), count(v1::ServiceState::Up));
    let mut impact = Vec::new();
    if down > 0 {
        impact.push(format!("{down} down"));
    }
    if degraded > 0 {
        impact.push(format!("{degraded} degraded"));
    }
    if up > 0 {
        impact.push(format!("{up} restored"));
    }
    let time = incident.update_time.as_ref().map(clock).unwrap_or_default();
    // Alarms the incident counts without listing them are active.
    let active_symptoms = incident.symptom_alarms.iter().filter(|a| a.cleared_time.is_none()).count()
        + incident.symptom_alarms_omitted as usize;
    let symptoms = incident.symptom_alarms.len() + incident.symptom_alarms_omitted as usize;
    let mut roots = incident.root_causes.join(", ");
    if incident.root_causes_omitted > 0 {
        roots = format!("{roots} +{}", incident.root_causes_omitted);
    }
    format!(
        "{:<8}  {:<12}  {:<10}  {:<12}  P{:<3}  {:<22}  {:<30}  {:>8}  {}",
        time,
        kind,
        incident.id,
        state,
        incident.priority,
        impact.join(", "),
        truncate(&roots, 30),
        format!("{active_symptoms}/{symptoms}"),
        incident.title
    )
}

fn clock(ts: &prost_types::Timestamp) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(ts.seconds.max(0) as u64);
    let text = humantime::format_rfc3339_seconds(time).to_string();
    text.get(11..19).unwrap_or_default().to_owned()
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(width - 1).collect();
        cut.push('…');
        cut
    }
}
