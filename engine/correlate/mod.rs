//! The correlation core: pure, synchronous and deterministic. No I/O, no clock, no async;
//! time is an argument. Data flows through two stages, kept apart so that the alarm stage
//! can later run per Kafka partition and the impact stage on its much smaller output:
//!
//! - [`alarm_stage`]: dedup, raise / severity change / clear on the RFC 8632 identity,
//!   a resource's own state from its active alarms. Emits [`alarm_stage::ResourceUpdate`].
//! - [`impact`]: propagation of resource states through the dependency graph's rules and
//!   root cause versus symptom; [`roots`] keeps each CI's inherited root causes, counted.
//! - [`incidents`]: one incident per root-cause group, its lifecycle and [`priority`].
//!
//! [`Correlator`] chains them: `apply(alarm, now) -> incident changes`. [`changelog`] is
//! what the core exports for durability and takes back at restore; [`sizes`], what it holds,
//! structure by structure, for the soak benchmark.

pub mod alarm_stage;
pub mod changelog;
mod correlator;
pub mod feed;
pub mod impact;
mod impacted;
pub mod incidents;
pub mod maintenance;
pub mod priority;
pub mod roots;
pub mod sizes;
mod waiting;

pub use correlator::{
    Correlator, CorrelatorConfig, FeedPolicy, Outcome, ResyncOutcome, SimulatedService, Simulation, Stats,
};
pub use incidents::CoreError;
pub use sizes::CoreSizes;
