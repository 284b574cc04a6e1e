//! The small ring network the crash and restore tests replay storms on: [`ring`] builds a
//! ring of sites (routers, cards, ports, links, redundant transports, quorum bundles,
//! customer-facing services, customers with SLA tiers); [`storm`] plays the shape real
//! storms have on it: card failures with their ports' symptom alarms, repeats,
//! retransmissions, severity changes, clears, clears without a raise, and some
//! undecodable input.

use super::Rng;
use std::collections::BTreeMap;
use std::fmt::Write;

pub struct Ring {
    /// The topology file's text.
    pub jsonl: String,
    pub devices: Vec<String>,
    /// Each card with its ports.
    pub cards: Vec<(String, Vec<String>)>,
}

/// `sites` routers in a ring, two cards of four ports each; between neighbours two links on
/// diverse cards carry a redundant transport (`all`); every site sells a customer-facing
/// service over its two transports; every fifth site a quorum-2 bundle of three links.
pub fn ring(sites: usize) -> Ring {
    let mut out = String::new();
    let mut devices = Vec::new();
    let mut cards = Vec::new();
    for c in 0..10 {
        let sla = ["gold", "silver", "bronze"][c % 3];
        let _ = writeln!(out, r#"{{"id":"cust-{c}","class":"customer","sla":"{sla}"}}"#);
    }
    for s in 0..sites {
        let _ = writeln!(out, r#"{{"id":"r{s}","class":"device"}}"#);
        devices.push(format!("r{s}"));
        for c in 0..2 {
            let _ = writeln!(out, r#"{{"id":"r{s}/c{c}","class":"card","depends_on":["r{s}"]}}"#);
            let mut ports = Vec::new();
            for p in 0..4 {
                let _ = writeln!(out, r#"{{"id":"r{s}/c{c}/p{p}","class":"port","depends_on":["r{s}/c{c}"]}}"#);
                ports.push(format!("r{s}/c{c}/p{p}"));
            }
            cards.push((format!("r{s}/c{c}"), ports));
        }
    }
    for s in 0..sites {
        let n = (s + 1) % sites;
        let _ = writeln!(out, r#"{{"id":"l{s}a","class":"link","depends_on":["r{s}/c0/p0","r{n}/c1/p0"]}}"#);
        let _ = writeln!(out, r#"{{"id":"l{s}b","class":"link","depends_on":["r{s}/c1/p1","r{n}/c0/p1"]}}"#);
        let _ = writeln!(out, r#"{{"id":"l{s}c","class":"link","depends_on":["r{s}/c0/p2","r{n}/c1/p2"]}}"#);
        let _ = writeln!(out, r#"{{"id":"rfs{s}","class":"rfs","depends_on":["l{s}a","l{s}b"],"rule":"all"}}"#);
    }
    for s in 0..sites {
        let p = (s + sites - 1) % sites;
        let _ = writeln!(
            out,
            r#"{{"id":"cfs{s}","class":"cfs","customer":"cust-{}","depends_on":["rfs{s}","rfs{p}"]}}"#,
            s % 10
        );
        if s % 5 == 0 && sites >= 3 {
            let (a, b) = ((s + 1) % sites, (s + 2) % sites);
            let _ = writeln!(
                out,
                r#"{{"id":"bundle{s}","class":"rfs","depends_on":["l{s}c","l{a}c","l{b}c"],"rule":{{"quorum":2}}}}"#
            );
            let _ = writeln!(
                out,
                r#"{{"id":"cfs-bundle{s}","class":"cfs","customer":"cust-{}","depends_on":["bundle{s}"],"rule":"degrade"}}"#,
                (s + 3) % 10
            );
        }
    }
    Ring { jsonl: out, devices, cards }
}

/// One input message: the Kafka key and the JSON value.
pub type Message = (String, Vec<u8>);

/// `count` messages on `ring`: mostly a random walk over port, card and device alarms, with
/// card failures that bring their ports' LOS alarms along, about 1 % retransmissions of the
/// previous message, and about 0.5 % undecodable. New
/// faults stop while `max_active` alarms are up, so the network keeps working as a real one
/// does: failures come and go, most of it stays up.
pub const MAX_ACTIVE: usize = 25;
pub fn storm(ring: &Ring, count: usize, seed: u64) -> Vec<Message> {
    let mut rng = Rng::new(seed);
    let mut active: BTreeMap<(String, &'static str), &'static str> = BTreeMap::new();
    let mut out = Vec::with_capacity(count);
    let mut notification = 0u64;
    let mut json = |resource: &str, alarm_type: &str, severity: &str| -> Message {
        notification += 1;
        let value = format!(
            r#"{{"resource":"{resource}","alarm_type":"{alarm_type}","severity":"{severity}","notification_id":"n-{notification}"}}"#
        );
        (resource.to_owned(), value.into_bytes())
    };
    const SEVERITIES: [&str; 4] = ["critical", "major", "minor", "warning"];
    while out.len() < count {
        let roll = rng.below(1000);
        if roll < 5 {
            out.push(("garbage".to_owned(), b"{\"resource\": not json".to_vec()));
        } else if roll < 15 && !out.is_empty() {
            // An element manager resends its last notification.
            let last = out[out.len() - 1].clone();
            out.push(last);
        } else if roll < 40 && active.len() < MAX_ACTIVE {
            // A card fails, then its ports report loss of signal.
            let (card, ports) = &ring.cards[rng.below(ring.cards.len())];
            out.push(json(card, "EQPT_FAIL", "critical"));
            active.insert((card.clone(), "EQPT_FAIL"), "critical");
            for port in ports {
                out.push(json(port, "LOS", "major"));
                active.insert((port.clone(), "LOS"), "major");
            }
        } else if (roll < 300 && active.len() < MAX_ACTIVE) || active.is_empty() {
            let (resource, alarm_type) = match rng.below(10) {
                0 => (ring.devices[rng.below(ring.devices.len())].clone(), "POWER"),
                1 | 2 => (ring.cards[rng.below(ring.cards.len())].0.clone(), "EQPT_FAIL"),
                _ => {
                    let (_, ports) = &ring.cards[rng.below(ring.cards.len())];
                    (ports[rng.below(ports.len())].clone(), if rng.below(2) == 0 { "LOS" } else { "HIGH_BER" })
                }
            };
            let severity = SEVERITIES[rng.below(SEVERITIES.len())];
            out.push(json(&resource, alarm_type, severity));
            active.insert((resource, alarm_type), severity);
        } else {
            let index = rng.below(active.len());
            let ((resource, alarm_type), severity) =
                active.iter().nth(index).map(|(k, v)| (k.clone(), *v)).expect("index below len");
            let roll = rng.below(100);
            if roll < 50 {
                out.push(json(&resource, alarm_type, severity));
            } else if roll < 65 {
                let changed = SEVERITIES[rng.below(SEVERITIES.len())];
                out.push(json(&resource, alarm_type, changed));
                active.insert((resource, alarm_type), changed);
            } else if roll < 97 {
                out.push(json(&resource, alarm_type, "cleared"));
                active.remove(&(resource, alarm_type));
            } else {
                out.push(json(&resource, "NEVER_RAISED", "cleared"));
            }
        }
    }
    out.truncate(count);
    out
}

/// For unit tests: plays `count` messages of [`storm`] on a fresh core over `ring`, 7 ms
/// of stream time apart (undecodable ones skipped), handing the core to `each` after every
/// 100 messages. Returns the core, its incident changes and its clock.
#[cfg(test)]
pub(crate) fn play(
    ring: &Ring,
    count: usize,
    seed: u64,
    each: &mut dyn FnMut(&mut crate::correlate::Correlator),
) -> (crate::correlate::Correlator, Vec<crate::model::incident::IncidentChange>, crate::model::EpochMillis) {
    use crate::correlate::{Correlator, CorrelatorConfig};
    let topology = std::sync::Arc::new(crate::topology_file::parse(&ring.jsonl, "ring").expect("the ring is valid"));
    let mut correlator = Correlator::new(topology, CorrelatorConfig::default());
    let (mut changes, mut now) = (Vec::new(), 1_700_000_000_000);
    for chunk in storm(ring, count, seed).chunks(100) {
        for (_, value) in chunk {
            let mut alarms = Vec::new();
            if crate::decode::decode(crate::config::AlarmFormat::Json, value, 0, 1 << 20, &mut alarms).is_ok() {
                for alarm in &alarms {
                    now += 7;
                    correlator.apply(alarm, now, &mut changes);
                }
            }
        }
        each(&mut correlator);
    }
    (correlator, changes, now)
}
