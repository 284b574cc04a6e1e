//! The wall clock, and the bound it puts on the time the edges hand to the core.
//!
//! The core runs on *stream time*: each alarm is applied at its Kafka record's timestamp, so
//! replays and restarts give the same outcomes. A record's timestamp is written by whoever
//! produced it, and one producer with a clock ahead would drag stream time, and with it every
//! hold-down and reopen timer of every incident, into its future. [`TimeBound`] caps a
//! record's time at the wall clock plus a small skew before the core sees it: recorded
//! traffic (timestamps in the past) is never touched, so replays stay deterministic.

use crate::model::EpochMillis;
use std::time::SystemTime;

/// Milliseconds since the Unix epoch, now.
pub fn wall_clock() -> EpochMillis {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as EpochMillis).unwrap_or(0)
}

/// The latest time a record may carry into the core: the wall clock, read once per batch,
/// plus the configured skew.
#[derive(Clone, Copy, Debug)]
pub struct TimeBound {
    skew: EpochMillis,
    latest: EpochMillis,
}

impl TimeBound {
    pub fn new(skew: EpochMillis) -> TimeBound {
        TimeBound { skew, latest: EpochMillis::MAX }
    }

    /// Reads the wall clock again (once per consumed batch: the bound moves with it).
    pub fn refresh(&mut self) {
        self.refresh_at(wall_clock());
    }

    fn refresh_at(&mut self, wall: EpochMillis) {
        self.latest = wall.saturating_add(self.skew);
    }

    /// `time`, or the bound when `time` lies beyond it; the second value is how far beyond
    /// it lay (0 when within).
    pub fn cap(&self, time: EpochMillis) -> (EpochMillis, EpochMillis) {
        if time > self.latest { (self.latest, time - self.latest) } else { (time, 0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_ahead_of_the_wall_clock_are_held_at_the_skew_and_the_past_is_untouched() {
        let mut bound = TimeBound::new(2_000);
        bound.refresh_at(1_000_000);
        assert_eq!(bound.cap(1_002_000), (1_002_000, 0), "within the skew");
        assert_eq!(bound.cap(1_000_000 + 50 * 60_000), (1_002_000, 50 * 60_000 - 2_000), "fifty minutes ahead");
        assert_eq!(bound.cap(5), (5, 0), "recorded traffic from long ago");
        bound.refresh_at(1_060_000);
        assert_eq!(bound.cap(1_060_500), (1_060_500, 0), "the bound follows the wall clock");
    }
}
