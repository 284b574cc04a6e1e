//! Alarm storms shaped as real ones are, over any topology: each fault is an *episode*
//! with one root (a cut fibre, a site on batteries, a failed card, a flapping port), the
//! symptoms the network reports around it, element managers repeating every active alarm
//! until it clears (most of a real storm's volume), severity changes, the odd retransmitted
//! notification, and the clears once the fault is repaired, root first. Many episodes run
//! at once, interleaved, so the stream looks like a NOC's during a bad hour.
//!
//! Episodes find their resources by class and relation, so any topology file will do;
//! `faultline generate topology` networks have every kind.

use super::Rng;
use crate::model::EpochMillis;
use crate::model::alarm::{Alarm, EventType, Severity};
use crate::model::topology::{CiClass, CiIdx, Topology};
use rustc_hash::FxHashSet;
use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A fibre is cut: loss of signal at both ends, the link down, protection switching
    /// on what the link carries, paths rerouted.
    FibreCut,
    /// A site loses mains power: the site's alarm, its routers unreachable, loss of signal
    /// at the far end of every fibre leaving it.
    PowerOutage,
    /// A line card fails: the card's alarm, loss of signal on its ports and at the far
    /// ends of their fibres, their links down.
    CardFailure,
    /// A port's signal comes and goes: raise, clear, raise, clear.
    Flapping,
    /// All of the above at once, with background bit-error alarms.
    Mixed,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::FibreCut, Kind::PowerOutage, Kind::CardFailure, Kind::Flapping, Kind::Mixed];

    pub fn name(self) -> &'static str {
        match self {
            Kind::FibreCut => "fibre-cut",
            Kind::PowerOutage => "power-outage",
            Kind::CardFailure => "card-failure",
            Kind::Flapping => "flapping",
            Kind::Mixed => "mixed",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Kind, String> {
        Kind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown scenario `{s}` (one of {})", names.join(", "))
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the topology has no {what}, which scenario {scenario} needs")]
pub struct ScenarioError {
    pub scenario: &'static str,
    pub what: &'static str,
}

/// The resources episodes are built from, found once per topology.
struct Catalogue<'t> {
    topology: &'t Topology,
    sites: Vec<CiIdx>,
    cards: Vec<CiIdx>,
    ports: Vec<CiIdx>,
    links: Vec<CiIdx>,
}

impl<'t> Catalogue<'t> {
    fn new(topology: &'t Topology) -> Catalogue<'t> {
        let of = |class| topology.iter().filter(|(_, ci)| ci.class == class).map(|(i, _)| i).collect::<Vec<_>>();
        Catalogue {
            topology,
            sites: of(CiClass::Site),
            cards: of(CiClass::Card),
            ports: of(CiClass::Port),
            links: of(CiClass::Link),
        }
    }

    fn dependents_of(&self, ci: CiIdx, class: CiClass) -> impl Iterator<Item = CiIdx> + '_ {
        self.topology.dependents(ci).iter().copied().filter(move |&d| self.topology.ci(d).class == class)
    }

    /// What the network reports when a port goes dark: each fibre on it down, and loss of
    /// signal at the fibre's other end.
    fn fibre_symptoms(&self, port: CiIdx) -> Vec<Script> {
        let mut alarms = Vec::new();
        for link in self.dependents_of(port, CiClass::Link) {
            alarms.push(Script {
                resource: link,
                alarm_type: "LINK_DOWN",
                severity: Severity::Major,
                event_type: EventType::Communications,
            });
            for &far in self.topology.dependencies(link).iter().filter(|&&p| p != port) {
                let event_type = EventType::Communications;
                alarms.push(Script { resource: far, alarm_type: "LOS", severity: Severity::Major, event_type });
            }
        }
        alarms
    }

    fn name(&self, ci: CiIdx) -> &str {
        &self.topology.ci(ci).id
    }
}

/// One alarm an episode raises: its resource and type and the severity it raises with.
#[derive(Clone, Debug)]
struct Script {
    resource: CiIdx,
    alarm_type: &'static str,
    severity: Severity,
    event_type: EventType,
}

struct Episode {
    alarms: Vec<Script>,
    /// Alarms raised so far (in order), and then alarms cleared so far.
    raised: usize,
    cleared: usize,
    /// Repeats and severity changes left before the repair.
    budget: u32,
    flapping: bool,
    /// For flapping: whether the port's alarm is up now.
    up: bool,
    /// Current severity of each raised alarm.
    severities: Vec<Severity>,
    /// The last notification sent per alarm, to retransmit.
    last: Vec<u64>,
}

/// An endless, seeded storm over one topology. Each call to [`Storm::next_alarm`] gives
/// the next notification; `event_time` advances by `1000 / rate` ms per notification.
pub struct Storm<'t> {
    catalogue: Catalogue<'t>,
    kind: Kind,
    rng: Rng,
    episodes: Vec<Episode>,
    concurrent: usize,
    notification: u64,
    start: EpochMillis,
    rate: f64,
    emitted: u64,
    /// Alarms some running episode owns: a new episode leaves them alone, so one fault's
    /// clear never clears another's alarm.
    owned: FxHashSet<(CiIdx, &'static str)>,
}

/// Episodes running at once: enough for an interleaved storm, few enough that most of the
/// network stays up, as it does in a real one.
pub const CONCURRENT: usize = 32;

impl<'t> Storm<'t> {
    pub fn new(
        topology: &'t Topology,
        kind: Kind,
        seed: u64,
        start: EpochMillis,
        rate: f64,
    ) -> Result<Storm<'t>, ScenarioError> {
        let catalogue = Catalogue::new(topology);
        let missing = |what| Err(ScenarioError { scenario: kind.name(), what });
        match kind {
            Kind::FibreCut if catalogue.links.is_empty() => return missing("links"),
            Kind::PowerOutage if catalogue.sites.is_empty() => return missing("sites"),
            Kind::CardFailure if catalogue.cards.is_empty() => return missing("cards"),
            Kind::Flapping | Kind::Mixed if catalogue.ports.is_empty() => return missing("ports"),
            _ => {}
        }
        Ok(Storm {
            catalogue,
            kind,
            rng: Rng::new(seed),
            episodes: Vec::new(),
            concurrent: CONCURRENT,
            notification: 0,
            start,
            rate: rate.max(f64::MIN_POSITIVE),
            emitted: 0,
            owned: FxHashSet::default(),
        })
    }

    /// The next notification of the storm.
    pub fn next_alarm(&mut self) -> Alarm {
        let time = self.start + (self.emitted as f64 * 1000.0 / self.rate) as EpochMillis;
        self.emitted += 1;
        loop {
            if self.episodes.len() < self.concurrent {
                let kind = match self.kind {
                    Kind::Mixed => match self.rng.below(20) {
                        0..=5 => Kind::FibreCut,
                        6..=10 => Kind::CardFailure,
                        11..=12 => Kind::PowerOutage,
                        13..=15 => Kind::Flapping,
                        _ => Kind::Mixed, // background noise
                    },
                    kind => kind,
                };
                if let Some(episode) = self.episode(kind) {
                    self.episodes.push(episode);
                }
            }
            if self.episodes.is_empty() {
                continue;
            }
            let at = self.rng.below(self.episodes.len());
            if let Some(alarm) = self.step(at, time) {
                return alarm;
            }
            let over = self.episodes.swap_remove(at);
            for script in over.alarms {
                self.owned.remove(&(script.resource, script.alarm_type));
            }
        }
    }

    fn episode(&mut self, kind: Kind) -> Option<Episode> {
        let c = &self.catalogue;
        let rng = &mut self.rng;
        let pick = |rng: &mut Rng, from: &[CiIdx]| (!from.is_empty()).then(|| from[rng.below(from.len())]);
        let script = |resource, alarm_type, severity, event_type| Script { resource, alarm_type, severity, event_type };
        let mut alarms = Vec::new();
        let mut flapping = false;
        match kind {
            Kind::FibreCut => {
                let link = pick(rng, &c.links)?;
                for &port in c.topology.dependencies(link) {
                    alarms.push(script(port, "LOS", Severity::Critical, EventType::Communications));
                }
                alarms.push(script(link, "LINK_DOWN", Severity::Major, EventType::Communications));
                for carrier in c.topology.dependents(link).iter().copied() {
                    alarms.push(script(carrier, "PROTECTION_SWITCH", Severity::Minor, EventType::Communications));
                    for &path in c.topology.dependents(carrier).iter().take(4) {
                        alarms.push(script(path, "PATH_REROUTED", Severity::Warning, EventType::Communications));
                    }
                }
            }
            Kind::PowerOutage => {
                let site = pick(rng, &c.sites)?;
                alarms.push(script(site, "MAINS_FAIL", Severity::Critical, EventType::Environmental));
                for device in c.dependents_of(site, CiClass::Device) {
                    alarms.push(script(device, "NODE_UNREACHABLE", Severity::Critical, EventType::Communications));
                    for card in c.dependents_of(device, CiClass::Card) {
                        for port in c.dependents_of(card, CiClass::Port) {
                            alarms.extend(c.fibre_symptoms(port));
                        }
                    }
                }
            }
            Kind::CardFailure => {
                let card = pick(rng, &c.cards)?;
                alarms.push(script(card, "EQPT_FAIL", Severity::Critical, EventType::Equipment));
                for port in c.dependents_of(card, CiClass::Port) {
                    alarms.push(script(port, "LOS", Severity::Major, EventType::Communications));
                    alarms.extend(c.fibre_symptoms(port));
                }
            }
            Kind::Flapping => {
                let port = pick(rng, &c.ports)?;
                alarms.push(script(port, "LOS", Severity::Critical, EventType::Communications));
                flapping = true;
            }
            Kind::Mixed => {
                let port = pick(rng, &c.ports)?;
                alarms.push(script(port, "HIGH_BER", Severity::Minor, EventType::QualityOfService));
            }
        }
        // The root must be free; symptoms another fault already reports stay with it.
        if alarms.first().is_none_or(|root| self.owned.contains(&(root.resource, root.alarm_type))) {
            return None;
        }
        alarms.retain(|a| self.owned.insert((a.resource, a.alarm_type)));
        // Element managers repeat every active alarm until it clears (typically once a
        // minute; an outage lasts ten minutes to an hour): 10 to 60 repeats per alarm,
        // most of a real storm's volume. Flapping ports toggle instead.
        let budget = if flapping { 10 + self.rng.below(60) } else { alarms.len() * (10 + self.rng.below(50)) } as u32;
        let n = alarms.len();
        Some(Episode {
            alarms,
            raised: 0,
            cleared: 0,
            budget,
            flapping,
            up: false,
            severities: vec![Severity::Indeterminate; n],
            last: vec![0; n],
        })
    }

    /// The next notification of episode `at`; `None` once it is over.
    fn step(&mut self, at: usize, time: EpochMillis) -> Option<Alarm> {
        let rng = &mut self.rng;
        let e = &mut self.episodes[at];
        let (index, severity, cleared, retransmit) = if e.flapping {
            if e.budget == 0 && !e.up {
                return None;
            }
            e.budget = e.budget.saturating_sub(1);
            let repeat = e.up && rng.below(3) == 0;
            if !repeat {
                e.up = !e.up;
            }
            (0, e.alarms[0].severity, !e.up, false)
        } else if e.raised < e.alarms.len() {
            // The root first, then its symptoms as the network notices.
            e.raised += 1;
            (e.raised - 1, e.alarms[e.raised - 1].severity, false, false)
        } else if e.budget > 0 {
            e.budget -= 1;
            let i = rng.below(e.alarms.len());
            let roll = rng.below(100);
            let severity = if roll < 5 {
                // A threshold crossed: the severity moves one step and later back.
                match e.severities[i] {
                    Severity::Critical => Severity::Major,
                    Severity::Major => Severity::Critical,
                    Severity::Minor => Severity::Major,
                    other => other,
                }
            } else {
                e.severities[i]
            };
            (i, severity, false, roll == 99 && e.last[i] != 0)
        } else if e.cleared < e.alarms.len() {
            // Repaired: the root clears, then the symptoms.
            e.cleared += 1;
            (e.cleared - 1, e.alarms[e.cleared - 1].severity, true, false)
        } else {
            return None;
        };
        if !retransmit {
            self.notification += 1;
            e.last[index] = self.notification;
            e.severities[index] = severity;
        }
        // A clear carries no severity of its own (the JSON format has none for it).
        let severity = if cleared { Severity::Indeterminate } else { severity };
        let script = &e.alarms[index];
        let resource = self.catalogue.name(script.resource).to_owned();
        let mut notification_id = String::with_capacity(16);
        let _ = write!(notification_id, "n-{}", e.last[index]);
        let text = if cleared {
            String::new()
        } else {
            format!("{} on {resource}", script.alarm_type.replace('_', " ").to_lowercase())
        };
        Some(Alarm {
            resource,
            alarm_type: script.alarm_type.to_owned(),
            qualifier: String::new(),
            severity,
            cleared,
            event_type: script.event_type,
            probable_cause: String::new(),
            specific_problem: String::new(),
            text,
            event_time: time,
            source_system: "ems".to_owned(),
            notification_id,
            sequence: e.last[index],
        })
    }
}

/// An alarm in the documented JSON input format, as `faultline generate alarms` writes it.
pub fn to_json(alarm: &Alarm) -> String {
    let severity = if alarm.cleared { "cleared" } else { alarm.severity.as_str() };
    let event_type = match alarm.event_type {
        EventType::Unspecified => "unspecified",
        EventType::Communications => "communications",
        EventType::QualityOfService => "quality_of_service",
        EventType::ProcessingError => "processing_error",
        EventType::Equipment => "equipment",
        EventType::Environmental => "environmental",
    };
    let mut out = String::with_capacity(192);
    out.push_str("{\"resource\":");
    push_json_string(&mut out, &alarm.resource);
    out.push_str(",\"alarm_type\":");
    push_json_string(&mut out, &alarm.alarm_type);
    let _ = write!(out, ",\"severity\":\"{severity}\",\"event_type\":\"{event_type}\"");
    if !alarm.text.is_empty() {
        out.push_str(",\"text\":");
        push_json_string(&mut out, &alarm.text);
    }
    let _ = write!(out, ",\"event_time\":{}", alarm.event_time);
    out.push_str(",\"source_system\":");
    push_json_string(&mut out, &alarm.source_system);
    out.push_str(",\"notification_id\":");
    push_json_string(&mut out, &alarm.notification_id);
    let _ = write!(out, ",\"sequence\":{}}}", alarm.sequence);
    out
}

fn push_json_string(out: &mut String, s: &str) {
    // serde_json's escaping, without building a Value.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::{Correlator, CorrelatorConfig};
    use crate::generate::carrier;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn network() -> Arc<Topology> {
        let mut text = Vec::new();
        carrier::write_network(5_000, 4, 1, &mut text, |_| {}).unwrap();
        Arc::new(crate::topology_file::parse(std::str::from_utf8(&text).unwrap(), "net").unwrap())
    }

    #[test]
    fn storms_have_a_real_storms_shape_and_round_trip_as_json() {
        let topology = network();
        for kind in Kind::ALL {
            let mut storm = Storm::new(&topology, kind, 11, 1_000_000, 1_000.0).unwrap();
            let alarms: Vec<Alarm> = (0..8_000).map(|_| storm.next_alarm()).collect();
            assert_eq!(alarms[1].event_time, 1_000_001, "1000/s is one per ms");
            let mut correlator = Correlator::new(topology.clone(), CorrelatorConfig::default());
            let mut out = Vec::new();
            let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
            for alarm in &alarms {
                let json = to_json(alarm);
                let mut decoded = Vec::new();
                crate::decode::decode(crate::config::AlarmFormat::Json, json.as_bytes(), 0, 1 << 20, &mut decoded)
                    .unwrap();
                assert_eq!(&decoded[0], alarm, "{json}");
                let outcome = correlator.apply(alarm, alarm.event_time, &mut out);
                *outcomes.entry(format!("{:?}", outcome.alarm)).or_default() += 1;
                assert!(outcome.landed != Some(crate::correlate::impact::Landed::Unmapped));
            }
            let count = |k: &str| outcomes.get(k).copied().unwrap_or(0);
            let changes = count("Raised") + count("Cleared");
            assert!(changes > 100, "{kind:?}: {outcomes:?}");
            assert_eq!(count("ClearWithoutRaise"), 0, "{kind:?}: every clear finds its raise");
            if kind != Kind::Flapping {
                assert!(count("Repeated") > 2 * changes, "{kind:?}: repeats dominate, {outcomes:?}");
                assert!(count("SeverityChanged") > 0 && count("DuplicateNotification") > 0, "{kind:?}");
            }
            assert!(correlator.stats().incidents.opened > 0, "{kind:?} opens incidents");
        }
    }

    #[test]
    fn same_seed_same_storm_and_missing_resources_are_named() {
        let topology = network();
        let take = |seed| {
            let mut storm = Storm::new(&topology, Kind::Mixed, seed, 0, 100.0).unwrap();
            (0..2_000).map(|_| to_json(&storm.next_alarm())).collect::<Vec<_>>()
        };
        assert_eq!(take(1), take(1));
        assert_ne!(take(1), take(2));
        let empty = Topology::default();
        let error = Storm::new(&empty, Kind::PowerOutage, 1, 0, 1.0).err().unwrap();
        assert_eq!(error.to_string(), "the topology has no sites, which scenario power-outage needs");
    }
}
