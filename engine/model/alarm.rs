//! Alarm notifications as they arrive, and active alarms as the alarm stage keeps them.

use super::EpochMillis;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Perceived severity (X.733). Ordered from least to most severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Indeterminate,
    Warning,
    Minor,
    Major,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Indeterminate => "indeterminate",
            Severity::Warning => "warning",
            Severity::Minor => "minor",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }
}

/// X.733 event type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    #[default]
    Unspecified,
    Communications,
    QualityOfService,
    ProcessingError,
    Equipment,
    Environmental,
}

/// One notification about an alarm: a raise, a repeat, a severity change or a clear.
/// Its identity is `(resource, alarm_type, qualifier)` (RFC 8632).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alarm {
    pub resource: String,
    pub alarm_type: String,
    pub qualifier: String,
    pub severity: Severity,
    /// A clear keeps its own flag so it can carry the severity the source last reported.
    pub cleared: bool,
    pub event_type: EventType,
    pub probable_cause: String,
    pub specific_problem: String,
    pub text: String,
    /// Event time at the source.
    pub event_time: EpochMillis,
    pub source_system: String,
    pub notification_id: String,
    pub sequence: u64,
}

impl Alarm {
    /// A raise with the given identity and severity; the other fields empty.
    pub fn raise(resource: &str, alarm_type: &str, severity: Severity, event_time: EpochMillis) -> Alarm {
        Alarm {
            resource: resource.to_owned(),
            alarm_type: alarm_type.to_owned(),
            qualifier: String::new(),
            severity,
            cleared: false,
            event_type: EventType::Unspecified,
            probable_cause: String::new(),
            specific_problem: String::new(),
            text: String::new(),
            event_time,
            source_system: String::new(),
            notification_id: String::new(),
            sequence: 0,
        }
    }

    /// The clear of [`Alarm::raise`]'s alarm.
    pub fn clear(resource: &str, alarm_type: &str, event_time: EpochMillis) -> Alarm {
        Alarm { cleared: true, ..Alarm::raise(resource, alarm_type, Severity::Indeterminate, event_time) }
    }
}

/// An element manager's list of its active alarms, sent after an outage of its feed: the
/// alarms listed with it are applied as notifications, then every active alarm of
/// `source_system` that the list does not name, last reported at or before `as_of`, is
/// cleared. An alarm raised after the list was taken (a later `last_seen`) stays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resync {
    pub source_system: String,
    pub as_of: EpochMillis,
}

/// An active alarm as referenced from CI states and incidents. Strings are shared
/// (`Arc<str>`) so that copying a reference into an incident snapshot does not allocate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlarmRef {
    pub resource: Arc<str>,
    pub alarm_type: Arc<str>,
    pub qualifier: Arc<str>,
    pub severity: Severity,
    pub text: Arc<str>,
    pub raised_at: EpochMillis,
    pub last_seen: EpochMillis,
    /// Notifications folded into this alarm so far (raise, repeats, severity changes).
    pub tally: u64,
    /// Set in incident records once the alarm has cleared; active alarms have `None`.
    pub cleared_at: Option<EpochMillis>,
}

impl AlarmRef {
    /// Sort key that keeps every list of alarm references in one deterministic order.
    pub fn identity(&self) -> (&str, &str, &str) {
        (&self.resource, &self.alarm_type, &self.qualifier)
    }
}
