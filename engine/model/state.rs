//! The state of a configuration item and how alarm severities map onto it.

use super::alarm::Severity;
use serde::{Deserialize, Serialize};

/// Health of a CI. Ordered from best to worst so `max` combines states.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    #[default]
    Up,
    Degraded,
    Down,
}

impl State {
    pub fn is_up(self) -> bool {
        self == State::Up
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Degraded => "degraded",
            State::Down => "down",
        }
    }
}

/// What an active alarm does to its resource's own state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Down,
    Degraded,
    /// Tracked, but no effect on the resource's state (informational alarms).
    None,
}

impl Effect {
    /// The default X.733 reading: critical and major take a resource down, minor degrades
    /// it; a warning (a fault that may come, not one that is there) and an indeterminate
    /// alarm are tracked and shown, but change no state.
    pub fn of_severity(severity: Severity) -> Effect {
        match severity {
            Severity::Critical | Severity::Major => Effect::Down,
            Severity::Minor => Effect::Degraded,
            Severity::Warning | Severity::Indeterminate => Effect::None,
        }
    }

    pub fn state(self) -> State {
        match self {
            Effect::Down => State::Down,
            Effect::Degraded => State::Degraded,
            Effect::None => State::Up,
        }
    }
}
