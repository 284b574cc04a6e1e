//! ITIL priority: impact (outage or degradation, how many customers) × urgency (the best
//! SLA tier among the impacted services: a service's own tier, else its customer's), read
//! through a configurable matrix.

use crate::model::incident::{Level, Priority};
use crate::model::topology::SlaTier;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityPolicy {
    /// An outage touching at least this many customers has high impact.
    pub many_customers: usize,
    /// Priority (1..=5) by impact row (high, medium, low) and urgency column (high, medium, low).
    pub matrix: [[u8; 3]; 3],
}

impl Default for PriorityPolicy {
    fn default() -> Self {
        PriorityPolicy { many_customers: 5, matrix: [[1, 2, 3], [2, 3, 4], [3, 4, 5]] }
    }
}

impl PriorityPolicy {
    /// Checks the matrix; the error names the offending cell.
    pub fn validate(&self) -> Result<(), String> {
        for (r, row) in self.matrix.iter().enumerate() {
            for (c, &p) in row.iter().enumerate() {
                if !(1..=5).contains(&p) {
                    return Err(format!("matrix[{r}][{c}] = {p}, expected 1..=5"));
                }
            }
        }
        Ok(())
    }

    /// `best_tier`: the best SLA tier among the services impacted now (a service's own,
    /// else its customer's); `parties_down`: the customers with a service down, and each
    /// service down that has no customer; `any_down`: whether a service is down at all.
    pub fn assess(&self, best_tier: Option<SlaTier>, parties_down: usize, any_down: bool) -> (Level, Level, Priority) {
        let impact = if any_down && parties_down >= self.many_customers {
            Level::High
        } else if any_down {
            Level::Medium
        } else {
            Level::Low
        };
        let urgency = match best_tier {
            Some(SlaTier::Gold) => Level::High,
            Some(SlaTier::Silver) => Level::Medium,
            _ => Level::Low,
        };
        let priority = Priority(self.matrix[level_index(impact)][level_index(urgency)]);
        (impact, urgency, priority)
    }
}

fn level_index(level: Level) -> usize {
    match level {
        Level::High => 0,
        Level::Medium => 1,
        Level::Low => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gold_outage_outranks_bronze_degradation() {
        let policy = PriorityPolicy::default();
        let (_, _, gold) = policy.assess(Some(SlaTier::Gold), 1, true);
        let (_, _, bronze) = policy.assess(Some(SlaTier::Bronze), 0, false);
        assert_eq!((gold, bronze), (Priority(2), Priority(5)));
        assert_eq!(policy.assess(Some(SlaTier::Gold), 5, true).2, Priority(1));
        assert_eq!(policy.assess(None, 1, true).2, Priority(4), "a service without tier or customer still counts");
    }
}
