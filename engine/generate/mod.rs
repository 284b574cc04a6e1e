//! Synthetic carrier networks and alarm storms, seeded: the same seed gives the same bytes
//! on every machine.
//!
//! - [`carrier`]: a carrier network of any size (1k to 10M CIs), `faultline generate topology`.
//! - [`scenario`]: storms shaped as real ones are over any topology (fibre cuts, power
//!   outages, card failures, flapping, a mix), `faultline generate alarms` and the benchmarks.
//! - [`ring`]: the small ring and storm the crash and restore tests replay.
//! - [`fan_in`]: a national service over twenty thousand ports failing one by one, the
//!   widest fan-in a CI has (benchmarks and tests).
//! - [`soak`]: weeks of a network's ordinary life in stream time (faults that come and go,
//!   flapping, unknown resources, operators), for the soak benchmark.

pub mod carrier;
pub mod fan_in;
mod ring;
pub mod scenario;
pub mod soak;

#[cfg(test)]
pub(crate) use ring::play;
pub use ring::{MAX_ACTIVE, Message, Ring, ring, storm};

/// xorshift64*: small, seeded, the same on every machine (no dependency whose stream could
/// change under a version bump).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
