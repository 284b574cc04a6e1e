//! Incidents as published: plain snapshots that the Kafka and gRPC edges encode as they are.

use super::EpochMillis;
use super::alarm::AlarmRef;
use super::state::State;
use super::topology::SlaTier;
use std::fmt;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IncidentId(pub u64);

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "INC-{:06}", self.0)
    }
}

impl std::str::FromStr for IncidentId {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("INC-").ok_or(())?;
        digits.parse().map(IncidentId).map_err(|_| ())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IncidentState {
    Open,
    Acknowledged,
    Resolved,
    Closed,
}

impl IncidentState {
    /// Open or acknowledged: the incident still tracks live impact.
    pub fn is_active(self) -> bool {
        matches!(self, IncidentState::Open | IncidentState::Acknowledged)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Open => "open",
            IncidentState::Acknowledged => "acknowledged",
            IncidentState::Resolved => "resolved",
            IncidentState::Closed => "closed",
        }
    }
}

/// ITIL impact and urgency level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    High,
    Medium,
    Low,
}

/// P1 (most pressing) to P5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(pub u8);

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P{}", self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImpactedService {
    pub id: Arc<str>,
    pub name: Arc<str>,
    /// Current impact; `Up` once restored (the service stays listed until resolution).
    pub impact: State,
    pub customer: Option<Arc<str>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImpactedCustomer {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub sla: Option<SlaTier>,
    /// Worst impact over the customer's services in this incident.
    pub impact: State,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimelineKind {
    Opened,
    Impact,
    RootCause,
    Symptom,
    Restored,
    Acknowledged,
    Note,
    Resolved,
    Reopened,
    Closed,
}

impl TimelineKind {
    const ALL: [TimelineKind; 10] = [
        TimelineKind::Opened,
        TimelineKind::Impact,
        TimelineKind::RootCause,
        TimelineKind::Symptom,
        TimelineKind::Restored,
        TimelineKind::Acknowledged,
        TimelineKind::Note,
        TimelineKind::Resolved,
        TimelineKind::Reopened,
        TimelineKind::Closed,
    ];

    /// The kind named by [`TimelineKind::as_str`].
    pub fn parse(name: &str) -> Option<TimelineKind> {
        TimelineKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TimelineKind::Opened => "opened",
            TimelineKind::Impact => "impact",
            TimelineKind::RootCause => "root_cause",
            TimelineKind::Symptom => "symptom",
            TimelineKind::Restored => "restored",
            TimelineKind::Acknowledged => "acknowledged",
            TimelineKind::Note => "note",
            TimelineKind::Resolved => "resolved",
            TimelineKind::Reopened => "reopened",
            TimelineKind::Closed => "closed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineEntry {
    pub time: EpochMillis,
    pub kind: TimelineKind,
    /// Shared: every published snapshot carries the whole timeline, and copying hundreds of
    /// texts per change was the core's largest cost.
    pub text: Arc<str>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acknowledgement {
    pub by: String,
    pub time: EpochMillis,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub author: String,
    pub text: String,
    pub time: EpochMillis,
}

/// One incident: a root-cause group and everything it impacts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incident {
    pub id: IncidentId,
    pub title: String,
    pub state: IncidentState,
    pub priority: Priority,
    pub impact: Level,
    pub urgency: Level,
    /// Root-cause CI ids, sorted.
    pub root_causes: Vec<Arc<str>>,
    pub root_cause_alarms: Vec<AlarmRef>,
    pub symptom_alarms: Vec<AlarmRef>,
    pub services: Vec<ImpactedService>,
    pub customers: Vec<ImpactedCustomer>,
    pub timeline: Vec<TimelineEntry>,
    pub acknowledgement: Option<Acknowledgement>,
    pub notes: Vec<Note>,
    pub opened_at: EpochMillis,
    pub updated_at: EpochMillis,
    pub resolved_at: Option<EpochMillis>,
    /// Incremented on every published change.
    pub version: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Opened,
    Updated,
    Acknowledged,
    NoteAdded,
    Resolved,
    Reopened,
    Closed,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Opened => "opened",
            ChangeKind::Updated => "updated",
            ChangeKind::Acknowledged => "acknowledged",
            ChangeKind::NoteAdded => "note",
            ChangeKind::Resolved => "resolved",
            ChangeKind::Reopened => "reopened",
            ChangeKind::Closed => "closed",
        }
    }
}

/// What the core publishes: the kind of change and the incident after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentChange {
    pub kind: ChangeKind,
    /// Shared with the core: a change costs a reference count, not a copy.
    pub incident: std::sync::Arc<Incident>,
}
