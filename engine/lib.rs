//! Faultline: resource alarms in over Kafka, service impact and incidents out over Kafka
//! and gRPC.
//!
//! The crate reads like the data flow, from the middle out:
//!
//! - [`model`]: alarms, the dependency graph (CMDB), CI states, incidents. Plain data.
//! - [`correlate`]: the pure, deterministic core. [`correlate::alarm_stage`] (dedup,
//!   raise/clear) → [`correlate::impact`] (propagation, root cause) →
//!   [`correlate::incidents`] (lifecycle, priority). No I/O, no clock, no async.
//! - [`decode`]: bytes to alarms, per input format (protobuf, JSON, ONAP VES 7.x).
//! - [`topology_file`]: reads the documented topology file format.
//! - [`config`]: layered, validated configuration.
//! - [`clock`]: the wall clock, and the bound it puts on stream time.
//! - [`generate`]: seeded synthetic networks and alarm storms, for tests and benchmarks.
//! - [`runtime`]: the runtime around the core: the core thread, its command channel and
//!   the ordered startup and shutdown of every edge.
//! - [`kafka`]: the edges to Kafka: the embedded mock cluster, the alarm consumer,
//!   decoding, incident and dead-letter producers, offset commits after delivery.
//! - [`grpc`]: the gRPC API (incidents, topology), health and reflection.
//! - [`metrics`]: the Prometheus endpoint.
//! - [`cli`]: `demo` and `watch`, the command-line front ends.

#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod config;
pub mod correlate;
pub mod decode;
pub mod generate;
pub mod grpc;
pub mod kafka;
pub mod metrics;
pub mod model;
pub mod proto;
pub mod runtime;
pub mod topology_file;
