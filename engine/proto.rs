//! The generated protobuf types of `proto/faultline/v1/`, and the conversions between them
//! and the domain model. The only place where prost types meet the model.

use crate::model::EpochMillis;
use crate::model::alarm::{Alarm, AlarmRef, EventType, Severity};
use crate::model::incident::{
    Acknowledgement, ChangeKind, ImpactedCustomer, ImpactedService, Incident, IncidentId, IncidentState, Level, Note,
    Omitted, Priority, TimelineEntry, TimelineKind,
};
use crate::model::state::State;
use crate::model::topology::{CiClass, CiRecord, Rule, SlaTier};

pub mod delta;
pub mod encode;

#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("faultline.v1");
}

/// The encoded descriptor set of every Faultline proto, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/faultline_descriptor.bin"));

pub fn timestamp(ms: EpochMillis) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 }
}

pub fn millis(ts: &prost_types::Timestamp) -> EpochMillis {
    ts.seconds.saturating_mul(1000).saturating_add(i64::from(ts.nanos / 1_000_000))
}

pub fn severity_to_proto(s: Severity) -> v1::Severity {
    match s {
        Severity::Indeterminate => v1::Severity::Indeterminate,
        Severity::Warning => v1::Severity::Warning,
        Severity::Minor => v1::Severity::Minor,
        Severity::Major => v1::Severity::Major,
        Severity::Critical => v1::Severity::Critical,
    }
}

pub fn severity_from_proto(s: v1::Severity) -> Option<Severity> {
    Some(match s {
        v1::Severity::Unspecified => return None,
        v1::Severity::Indeterminate => Severity::Indeterminate,
        v1::Severity::Warning => Severity::Warning,
        v1::Severity::Minor => Severity::Minor,
        v1::Severity::Major => Severity::Major,
        v1::Severity::Critical => Severity::Critical,
    })
}

pub fn event_type_to_proto(e: EventType) -> v1::EventType {
    match e {
        EventType::Unspecified => v1::EventType::Unspecified,
        EventType::Communications => v1::EventType::Communications,
        EventType::QualityOfService => v1::EventType::QualityOfService,
        EventType::ProcessingError => v1::EventType::ProcessingError,
        EventType::Equipment => v1::EventType::Equipment,
        EventType::Environmental => v1::EventType::Environmental,
    }
}

pub fn event_type_from_proto(e: v1::EventType) -> EventType {
    match e {
        v1::EventType::Unspecified => EventType::Unspecified,
        v1::EventType::Communications => EventType::Communications,
        v1::EventType::QualityOfService => EventType::QualityOfService,
        v1::EventType::ProcessingError => EventType::ProcessingError,
        v1::EventType::Equipment => EventType::Equipment,
        v1::EventType::Environmental => EventType::Environmental,
    }
}

pub fn state_to_proto(s: State) -> v1::ServiceState {
    match s {
        State::Up => v1::ServiceState::Up,
        State::Degraded => v1::ServiceState::Degraded,
        State::Down => v1::ServiceState::Down,
    }
}

pub fn state_from_proto(s: v1::ServiceState) -> State {
    match s {
        v1::ServiceState::Unspecified | v1::ServiceState::Up => State::Up,
        v1::ServiceState::Degraded => State::Degraded,
        v1::ServiceState::Down => State::Down,
    }
}

pub fn sla_to_proto(t: Option<SlaTier>) -> v1::SlaTier {
    match t {
        None => v1::SlaTier::Unspecified,
        Some(SlaTier::Bronze) => v1::SlaTier::Bronze,
        Some(SlaTier::Silver) => v1::SlaTier::Silver,
        Some(SlaTier::Gold) => v1::SlaTier::Gold,
    }
}

pub fn sla_from_proto(t: v1::SlaTier) -> Option<SlaTier> {
    match t {
        v1::SlaTier::Unspecified => None,
        v1::SlaTier::Bronze => Some(SlaTier::Bronze),
        v1::SlaTier::Silver => Some(SlaTier::Silver),
        v1::SlaTier::Gold => Some(SlaTier::Gold),
    }
}

pub fn class_to_proto(c: CiClass) -> v1::CiClass {
    match c {
        CiClass::Site => v1::CiClass::Site,
        CiClass::Device => v1::CiClass::Device,
        CiClass::Card => v1::CiClass::Card,
        CiClass::Port => v1::CiClass::Port,
        CiClass::Link => v1::CiClass::Link,
        CiClass::Rfs => v1::CiClass::Rfs,
        CiClass::Cfs => v1::CiClass::Cfs,
        CiClass::Customer => v1::CiClass::Customer,
    }
}

pub fn rule_to_proto(r: Rule) -> v1::ImpactRule {
    let (kind, quorum) = match r {
        Rule::Any => (v1::RuleKind::Any, 0),
        Rule::All => (v1::RuleKind::All, 0),
        Rule::Quorum(k) => (v1::RuleKind::Quorum, k),
        Rule::Degrade => (v1::RuleKind::Degrade, 0),
    };
    v1::ImpactRule { kind: kind as i32, quorum }
}

/// A CI record from its protobuf form: what `ApplyTopologyChanges` and the topology topic
/// take. `Err` says what is wrong, naming the CI.
pub fn record_from_proto(ci: v1::ConfigurationItem) -> Result<CiRecord, String> {
    let id = ci.id;
    let class = match v1::CiClass::try_from(ci.class) {
        Ok(v1::CiClass::Site) => CiClass::Site,
        Ok(v1::CiClass::Device) => CiClass::Device,
        Ok(v1::CiClass::Card) => CiClass::Card,
        Ok(v1::CiClass::Port) => CiClass::Port,
        Ok(v1::CiClass::Link) => CiClass::Link,
        Ok(v1::CiClass::Rfs) => CiClass::Rfs,
        Ok(v1::CiClass::Cfs) => CiClass::Cfs,
        Ok(v1::CiClass::Customer) => CiClass::Customer,
        Ok(v1::CiClass::Unspecified) | Err(_) => {
            return Err(format!("CI `{id}`: class is missing or unknown ({})", ci.class));
        }
    };
    let rule = match ci.rule {
        None => Rule::Any,
        Some(rule) => match v1::RuleKind::try_from(rule.kind) {
            Ok(v1::RuleKind::Unspecified | v1::RuleKind::Any) => Rule::Any,
            Ok(v1::RuleKind::All) => Rule::All,
            Ok(v1::RuleKind::Quorum) => Rule::Quorum(rule.quorum),
            Ok(v1::RuleKind::Degrade) => Rule::Degrade,
            Err(_) => return Err(format!("CI `{id}`: unknown rule kind {}", rule.kind)),
        },
    };
    let sla = match v1::SlaTier::try_from(ci.sla_tier) {
        Ok(tier) => sla_from_proto(tier),
        Err(_) => return Err(format!("CI `{id}`: unknown SLA tier {}", ci.sla_tier)),
    };
    Ok(CiRecord {
        id,
        class,
        name: ci.name,
        depends_on: ci.depends_on,
        rule,
        customer: Some(ci.customer).filter(|c| !c.is_empty()),
        sla,
        incidents: ci.incidents,
        attributes: ci.attributes.into_iter().collect(),
    })
}

/// A CI record in its protobuf form, as `ListCis` gives it.
pub fn record_to_proto(record: &CiRecord) -> v1::ConfigurationItem {
    v1::ConfigurationItem {
        id: record.id.clone(),
        class: class_to_proto(record.class) as i32,
        name: record.name.clone(),
        depends_on: record.depends_on.clone(),
        rule: Some(rule_to_proto(record.rule)),
        customer: record.customer.clone().unwrap_or_default(),
        sla_tier: sla_to_proto(record.sla) as i32,
        incidents: record.incidents,
        attributes: record.attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

pub fn incident_state_to_proto(s: IncidentState) -> v1::IncidentState {
    match s {
        IncidentState::Open => v1::IncidentState::Open,
        IncidentState::Acknowledged => v1::IncidentState::Acknowledged,
        IncidentState::Resolved => v1::IncidentState::Resolved,
        IncidentState::Closed => v1::IncidentState::Closed,
    }
}

pub fn incident_state_from_proto(s: v1::IncidentState) -> Option<IncidentState> {
    Some(match s {
        v1::IncidentState::Unspecified => return None,
        v1::IncidentState::Open => IncidentState::Open,
        v1::IncidentState::Acknowledged => IncidentState::Acknowledged,
        v1::IncidentState::Resolved => IncidentState::Resolved,
        v1::IncidentState::Closed => IncidentState::Closed,
    })
}

fn level_to_proto(l: Level) -> v1::Level {
    match l {
        Level::High => v1::Level::High,
        Level::Medium => v1::Level::Medium,
        Level::Low => v1::Level::Low,
    }
}

fn level_from_proto(l: v1::Level) -> Level {
    match l {
        v1::Level::High => Level::High,
        v1::Level::Medium => Level::Medium,
        v1::Level::Unspecified | v1::Level::Low => Level::Low,
    }
}

pub fn change_kind_to_proto(k: ChangeKind) -> v1::ChangeKind {
    match k {
        ChangeKind::Opened => v1::ChangeKind::Opened,
        ChangeKind::Updated => v1::ChangeKind::Updated,
        ChangeKind::Acknowledged => v1::ChangeKind::Acknowledged,
        ChangeKind::NoteAdded => v1::ChangeKind::NoteAdded,
        ChangeKind::Resolved => v1::ChangeKind::Resolved,
        ChangeKind::Reopened => v1::ChangeKind::Reopened,
        ChangeKind::Closed => v1::ChangeKind::Closed,
    }
}

pub fn alarm_ref_to_proto(a: &AlarmRef) -> v1::AlarmRef {
    v1::AlarmRef {
        resource: a.resource.to_string(),
        alarm_type: a.alarm_type.to_string(),
        qualifier: a.qualifier.to_string(),
        severity: severity_to_proto(a.severity) as i32,
        text: a.text.to_string(),
        raised_time: Some(timestamp(a.raised_at)),
        last_seen_time: Some(timestamp(a.last_seen)),
        tally: a.tally,
        cleared_time: a.cleared_at.map(timestamp),
    }
}

pub fn alarm_ref_from_proto(a: &v1::AlarmRef) -> AlarmRef {
    AlarmRef {
        resource: a.resource.as_str().into(),
        alarm_type: a.alarm_type.as_str().into(),
        qualifier: a.qualifier.as_str().into(),
        severity: v1::Severity::try_from(a.severity)
            .ok()
            .and_then(severity_from_proto)
            .unwrap_or(Severity::Indeterminate),
        text: a.text.as_str().into(),
        raised_at: a.raised_time.as_ref().map(millis).unwrap_or_default(),
        last_seen: a.last_seen_time.as_ref().map(millis).unwrap_or_default(),
        tally: a.tally,
        cleared_at: a.cleared_time.as_ref().map(millis),
    }
}

/// Why a protobuf incident does not make an incident of the model.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IncidentFieldError {
    #[error("`{0}` is not an incident id")]
    Id(String),
    #[error("incident state {0} is not a state")]
    State(i32),
    #[error("priority {0} is not 1 to 5")]
    Priority(i32),
    #[error("timeline kind `{0}` is unknown")]
    TimelineKind(String),
}

/// The inverse of [`incident_to_proto`], exact to the millisecond.
pub fn incident_from_proto(i: &v1::Incident) -> Result<Incident, IncidentFieldError> {
    let id: IncidentId = i.id.parse().map_err(|_| IncidentFieldError::Id(i.id.clone()))?;
    let state = v1::IncidentState::try_from(i.state)
        .ok()
        .and_then(incident_state_from_proto)
        .ok_or(IncidentFieldError::State(i.state))?;
    let priority = u8::try_from(i.priority)
        .ok()
        .filter(|p| (1..=5).contains(p))
        .ok_or(IncidentFieldError::Priority(i.priority))?;
    let time = |ts: &Option<prost_types::Timestamp>| ts.as_ref().map(millis).unwrap_or_default();
    let state_of = |s: i32| state_from_proto(v1::ServiceState::try_from(s).unwrap_or_default());
    let timeline = i
        .timeline
        .iter()
        .map(|e| {
            let kind = TimelineKind::parse(&e.kind).ok_or_else(|| IncidentFieldError::TimelineKind(e.kind.clone()))?;
            Ok(TimelineEntry { time: time(&e.time), kind, text: e.text.as_str().into() })
        })
        .collect::<Result<_, IncidentFieldError>>()?;
    Ok(Incident {
        id,
        title: i.title.clone(),
        state,
        priority: Priority(priority),
        impact: level_from_proto(v1::Level::try_from(i.impact).unwrap_or_default()),
        urgency: level_from_proto(v1::Level::try_from(i.urgency).unwrap_or_default()),
        root_causes: i.root_causes.iter().map(|r| r.as_str().into()).collect(),
        root_cause_alarms: i.root_cause_alarms.iter().map(alarm_ref_from_proto).collect(),
        symptom_alarms: i.symptom_alarms.iter().map(alarm_ref_from_proto).collect(),
        services: i
            .impacted_services
            .iter()
            .map(|s| ImpactedService {
                id: s.service_id.as_str().into(),
                name: s.name.as_str().into(),
                impact: state_of(s.impact),
                customer: (!s.customer_id.is_empty()).then(|| s.customer_id.as_str().into()),
            })
            .collect(),
        customers: i
            .impacted_customers
            .iter()
            .map(|c| ImpactedCustomer {
                id: c.customer_id.as_str().into(),
                name: c.name.as_str().into(),
                sla: sla_from_proto(v1::SlaTier::try_from(c.sla_tier).unwrap_or_default()),
                impact: state_of(c.impact),
            })
            .collect(),
        timeline,
        acknowledgement: i.acknowledgement.as_ref().map(|a| Acknowledgement { by: a.by.clone(), time: time(&a.time) }),
        notes: i
            .notes
            .iter()
            .map(|n| Note {
                author: n.author.clone(),
                text: n.text.clone(),
                time: time(&n.time),
                request_id: n.request_id.clone(),
            })
            .collect(),
        opened_at: time(&i.open_time),
        updated_at: time(&i.update_time),
        resolved_at: i.resolve_time.as_ref().map(millis),
        version: i.version,
        topology_version: i.topology_version,
        omitted: Omitted {
            root_causes: i.root_causes_omitted,
            root_cause_alarms: i.root_cause_alarms_omitted,
            symptom_alarms: i.symptom_alarms_omitted,
            cleared_alarms: i.cleared_alarms_dropped,
        },
    })
}

pub fn incident_to_proto(i: &Incident) -> v1::Incident {
    v1::Incident {
        id: i.id.to_string(),
        title: i.title.clone(),
        state: incident_state_to_proto(i.state) as i32,
        priority: i32::from(i.priority.0),
        impact: level_to_proto(i.impact) as i32,
        urgency: level_to_proto(i.urgency) as i32,
        root_causes: i.root_causes.iter().map(|r| r.to_string()).collect(),
        root_cause_alarms: i.root_cause_alarms.iter().map(alarm_ref_to_proto).collect(),
        symptom_alarms: i.symptom_alarms.iter().map(alarm_ref_to_proto).collect(),
        impacted_services: i
            .services
            .iter()
            .map(|s| v1::ImpactedService {
                service_id: s.id.to_string(),
                name: s.name.to_string(),
                impact: state_to_proto(s.impact) as i32,
                customer_id: s.customer.as_deref().unwrap_or_default().to_owned(),
                in_maintenance: false,
            })
            .collect(),
        impacted_customers: i
            .customers
            .iter()
            .map(|c| v1::ImpactedCustomer {
                customer_id: c.id.to_string(),
                name: c.name.to_string(),
                sla_tier: sla_to_proto(c.sla) as i32,
                impact: state_to_proto(c.impact) as i32,
            })
            .collect(),
        timeline: i
            .timeline
            .iter()
            .map(|e| v1::TimelineEntry {
                time: Some(timestamp(e.time)),
                kind: e.kind.as_str().to_owned(),
                text: e.text.to_string(),
            })
            .collect(),
        acknowledgement: i
            .acknowledgement
            .as_ref()
            .map(|a| v1::Acknowledgement { by: a.by.clone(), time: Some(timestamp(a.time)) }),
        notes: i
            .notes
            .iter()
            .map(|n| v1::Note {
                author: n.author.clone(),
                text: n.text.clone(),
                time: Some(timestamp(n.time)),
                request_id: n.request_id.clone(),
            })
            .collect(),
        open_time: Some(timestamp(i.opened_at)),
        update_time: Some(timestamp(i.updated_at)),
        resolve_time: i.resolved_at.map(timestamp),
        version: i.version,
        root_cause_alarm_count: i.root_cause_alarms.len() as u32,
        symptom_alarm_count: i.symptom_alarms.len() as u32,
        impacted_service_count: i.services.len() as u32,
        impacted_customer_count: i.customers.len() as u32,
        root_causes_omitted: i.omitted.root_causes,
        root_cause_alarms_omitted: i.omitted.root_cause_alarms,
        symptom_alarms_omitted: i.omitted.symptom_alarms,
        cleared_alarms_dropped: i.omitted.cleared_alarms,
        topology_version: i.topology_version,
    }
}

/// Why a protobuf alarm does not make an alarm of the model.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AlarmFieldError {
    #[error("severity is unspecified on a raise")]
    MissingSeverity,
    #[error("unknown severity value {0}")]
    UnknownSeverity(i32),
}

/// Converts a decoded protobuf alarm; field checks common to every format live in the decoder.
pub fn alarm_from_proto(a: v1::Alarm, received: EpochMillis) -> Result<Alarm, AlarmFieldError> {
    let severity = match v1::Severity::try_from(a.severity) {
        Ok(s) => severity_from_proto(s),
        Err(_) => return Err(AlarmFieldError::UnknownSeverity(a.severity)),
    };
    let severity = match (severity, a.cleared) {
        (Some(s), _) => s,
        (None, true) => Severity::Indeterminate,
        (None, false) => return Err(AlarmFieldError::MissingSeverity),
    };
    Ok(Alarm {
        resource: a.resource,
        alarm_type: a.alarm_type,
        qualifier: a.qualifier,
        severity,
        cleared: a.cleared,
        event_type: event_type_from_proto(v1::EventType::try_from(a.event_type).unwrap_or_default()),
        probable_cause: a.probable_cause,
        specific_problem: a.specific_problem,
        text: a.text,
        event_time: a.event_time.as_ref().map(millis).unwrap_or(received),
        source_system: a.source_system,
        notification_id: a.notification_id,
        sequence: a.sequence,
    })
}

pub fn alarm_to_proto(a: &Alarm) -> v1::Alarm {
    v1::Alarm {
        resource: a.resource.clone(),
        alarm_type: a.alarm_type.clone(),
        qualifier: a.qualifier.clone(),
        severity: severity_to_proto(a.severity) as i32,
        cleared: a.cleared,
        event_type: event_type_to_proto(a.event_type) as i32,
        probable_cause: a.probable_cause.clone(),
        specific_problem: a.specific_problem.clone(),
        text: a.text.clone(),
        event_time: Some(timestamp(a.event_time)),
        source_system: a.source_system.clone(),
        notification_id: a.notification_id.clone(),
        sequence: a.sequence,
        resync: None,
    }
}

/// A maintenance window as the API and the changelog carry it.
pub fn window_to_proto(window: &crate::correlate::maintenance::Window) -> v1::MaintenanceWindow {
    use crate::correlate::maintenance::{Scope, WindowState};
    let spec = &window.spec;
    v1::MaintenanceWindow {
        change: spec.change.clone(),
        reason: spec.reason.clone(),
        ci_ids: spec.cis.clone(),
        scope: match spec.scope {
            Scope::Ci => v1::MaintenanceScope::Ci,
            Scope::Dependents => v1::MaintenanceScope::Dependents,
        } as i32,
        start_time: Some(timestamp(spec.start)),
        end_time: Some(timestamp(spec.end)),
        state: match window.state {
            WindowState::Scheduled => v1::MaintenanceState::Scheduled,
            WindowState::Active => v1::MaintenanceState::Active,
            WindowState::Ended => v1::MaintenanceState::Ended,
            WindowState::Cancelled => v1::MaintenanceState::Cancelled,
        } as i32,
        created_by: spec.by.clone(),
        create_time: Some(timestamp(window.created)),
        started_time: window.started.map(timestamp),
        finished_time: window.finished.map(timestamp),
        finished_by: window.finished_by.clone(),
    }
}

/// What a window asked for says: the change, its CIs, scope and times. `Err` names what
/// is missing or wrong.
pub fn window_spec_from_proto(
    window: &v1::MaintenanceWindow,
) -> Result<crate::correlate::maintenance::WindowSpec, String> {
    use crate::correlate::maintenance::{Scope, WindowSpec};
    let scope = match v1::MaintenanceScope::try_from(window.scope) {
        Ok(v1::MaintenanceScope::Unspecified | v1::MaintenanceScope::Ci) => Scope::Ci,
        Ok(v1::MaintenanceScope::Dependents) => Scope::Dependents,
        Err(_) => return Err(format!("unknown maintenance scope {}", window.scope)),
    };
    let start = window.start_time.as_ref().map(millis).ok_or("start_time is required")?;
    let end = window.end_time.as_ref().map(millis).ok_or("end_time is required")?;
    Ok(WindowSpec {
        change: window.change.clone(),
        reason: window.reason.clone(),
        cis: window.ci_ids.clone(),
        scope,
        start,
        end,
        by: window.created_by.clone(),
    })
}

/// A window as the changelog kept it.
pub fn window_from_proto(window: &v1::MaintenanceWindow) -> Result<crate::correlate::maintenance::Window, String> {
    use crate::correlate::maintenance::{Window, WindowState};
    let state = match v1::MaintenanceState::try_from(window.state) {
        Ok(v1::MaintenanceState::Scheduled) => WindowState::Scheduled,
        Ok(v1::MaintenanceState::Active) => WindowState::Active,
        Ok(v1::MaintenanceState::Ended) => WindowState::Ended,
        Ok(v1::MaintenanceState::Cancelled) => WindowState::Cancelled,
        _ => return Err(format!("unknown maintenance state {}", window.state)),
    };
    Ok(Window {
        spec: window_spec_from_proto(window)?,
        state,
        created: window.create_time.as_ref().map(millis).unwrap_or_default(),
        started: window.started_time.as_ref().map(millis),
        finished: window.finished_time.as_ref().map(millis),
        finished_by: window.finished_by.clone(),
    })
}
