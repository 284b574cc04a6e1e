//! A national service over a very wide aggregation, and the storm that fails it port by
//! port: the case where one CI sits above tens of thousands of others, and every alarm
//! below it moves its roots.
//!
//! [`network`]: a customer-facing national service over a resource-facing service that
//! stays up while a quorum of its ports does (`quorum ports/2`), the ports spread over a
//! few devices and their cards. [`storm`]: the ports fail one after the other (loss of
//! signal), now and then one that failed earlier clears again, and finally every port
//! still failed clears, in port order. The service is degraded from the first failure and
//! down once more than half its ports are.

use super::Rng;
use crate::model::EpochMillis;
use crate::model::alarm::{Alarm, Severity};
use crate::model::topology::{CiClass, CiRecord, Rule, SlaTier};

/// Devices the ports are spread over, and cards on each.
const DEVICES: usize = 4;
const CARDS: usize = 8;

/// The resource-facing service over every port.
pub const RFS: &str = "national-rfs";
/// The customer-facing service sold over it.
pub const CFS: &str = "national-cfs";

/// A port's id, in the order the ports are listed (and fail).
pub fn port(i: usize) -> String {
    format!("fan-port-{i:06}")
}

fn record(id: String, class: CiClass, depends_on: Vec<String>, rule: Rule) -> CiRecord {
    CiRecord {
        id,
        class,
        name: String::new(),
        depends_on,
        rule,
        customer: None,
        sla: None,
        incidents: None,
        attributes: Default::default(),
    }
}

/// The network: devices, their cards, `ports` ports over the cards, the quorum RFS over
/// all the ports, the CFS over it and its customer. `ports` must be at least 2.
pub fn network(ports: usize) -> Vec<CiRecord> {
    assert!(ports >= 2, "a quorum of half the ports needs two of them");
    let mut records = Vec::with_capacity(ports + DEVICES * (CARDS + 1) + 3);
    let mut customer = record("national-customer".into(), CiClass::Customer, Vec::new(), Rule::Any);
    customer.sla = Some(SlaTier::Gold);
    records.push(customer);
    let card = |i: usize| format!("fan-dev-{}/card-{}", i / CARDS, i % CARDS);
    for d in 0..DEVICES {
        records.push(record(format!("fan-dev-{d}"), CiClass::Device, Vec::new(), Rule::Any));
        for c in 0..CARDS {
            records.push(record(card(d * CARDS + c), CiClass::Card, vec![format!("fan-dev-{d}")], Rule::Any));
        }
    }
    // Consecutive ports share a card, so that the ports' order is the cards' order too.
    let per_card = ports.div_ceil(DEVICES * CARDS);
    for i in 0..ports {
        records.push(record(port(i), CiClass::Port, vec![card(i / per_card)], Rule::Any));
    }
    let quorum = (ports / 2) as u32;
    records.push(record(RFS.into(), CiClass::Rfs, (0..ports).map(port).collect(), Rule::Quorum(quorum)));
    let mut cfs = record(CFS.into(), CiClass::Cfs, vec![RFS.into()], Rule::Any);
    cfs.customer = Some("national-customer".into());
    records.push(cfs);
    records
}

/// The storm over [`network`]`(ports)`, one notification every `1000 / rate` ms from
/// `start`: each port fails in turn; after each failure, with probability `1/clear_every`,
/// a port that failed earlier and is still failed clears; then every port still failed
/// clears, in port order. Deterministic from `seed`.
pub fn storm(ports: usize, seed: u64, clear_every: usize, start: EpochMillis, rate: f64) -> Vec<Alarm> {
    let mut rng = Rng::new(seed);
    let mut failed: Vec<usize> = Vec::with_capacity(ports);
    let mut alarms = Vec::with_capacity(ports * 2);
    let at = |n: usize| start + (n as f64 * 1000.0 / rate) as EpochMillis;
    for i in 0..ports {
        let time = at(alarms.len());
        alarms.push(Alarm::raise(&port(i), "LOS", Severity::Critical, time));
        failed.push(i);
        if clear_every > 0 && rng.below(clear_every) == 0 {
            let which = failed.swap_remove(rng.below(failed.len()));
            let time = at(alarms.len());
            alarms.push(Alarm::clear(&port(which), "LOS", time));
        }
    }
    failed.sort_unstable();
    for i in failed {
        let time = at(alarms.len());
        alarms.push(Alarm::clear(&port(i), "LOS", time));
    }
    alarms
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::topology::Topology;

    #[test]
    fn every_port_fails_once_and_ends_cleared() {
        let topology = Topology::from_records(network(100)).expect("a valid network");
        let rfs = topology.lookup(RFS).expect("the rfs");
        assert_eq!(topology.dependencies(rfs).len(), 100);
        assert_eq!(topology.ci(rfs).rule, Rule::Quorum(50));
        let alarms = storm(100, 3, 8, 0, 1000.0);
        assert_eq!(alarms, storm(100, 3, 8, 0, 1000.0), "deterministic");
        let raised = alarms.iter().filter(|a| !a.cleared).count();
        let cleared = alarms.iter().filter(|a| a.cleared).count();
        assert_eq!((raised, cleared), (100, 100));
        let early_clears = alarms.iter().take_while(|a| a.resource != port(99)).filter(|a| a.cleared).count();
        assert!(early_clears > 0, "some ports clear again before the last one fails");
        assert!(alarms.windows(2).all(|w| w[0].event_time <= w[1].event_time));
    }
}
