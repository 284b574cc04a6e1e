//! The domain model shared by every stage: alarms (RFC 8632 identity, X.733 fields),
//! the service dependency graph (CMDB), CI states and incidents. Plain data, no I/O.

pub mod alarm;
pub mod incident;
pub mod state;
pub mod topology;

/// Milliseconds since the Unix epoch. Time always enters the core as an input.
pub type EpochMillis = i64;
