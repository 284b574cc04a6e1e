//! The topology changing under a running correlator: CIs added, rewired and deleted in
//! batches between alarms. Impact after every batch must be what a correlator started on
//! the new topology with the same alarms computes, incidents must stay consistent with
//! it, and the same sequence must always give the same incidents.

use faultline::correlate::{Correlator, CorrelatorConfig};
use faultline::model::EpochMillis;
use faultline::model::alarm::{Alarm, AlarmRef, Severity};
use faultline::model::incident::{IncidentChange, IncidentState};
use faultline::model::state::State;
use faultline::model::topology::{CiChange, CiClass, CiRecord, Rule, Topology, TopologyError};
use faultline::topology_file;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

fn sample() -> Arc<Topology> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sample-network.jsonl");
    Arc::new(topology_file::load(&path).unwrap())
}

const START: EpochMillis = 1_767_225_600_000;

const CARDS: &[&str] = &["par-r1/card-1", "lyo-r1/card-2", "mrs-r1/card-1"];
const NEW_PORTS: &[&str] = &["new-port-0", "new-port-1"];
const LOWER: &[&str] = &[
    "par-r1/1/1",
    "lyo-r1/2/1",
    "mrs-r1/1/2",
    "link-par-lyo-a",
    "link-lyo-mrs-2",
    "rfs-par-lyo-transport",
    "rfs-lyo-mrs-bundle",
    "new-port-0",
    "new-port-1",
    "new-rfs",
];
const CUSTOMERS: &[&str] = &["cust-acme", "cust-globex", "cust-initech", "cust-umbrella"];
const SERVICES: &[&str] = &["new-svc-0", "new-svc-1", "cfs-acme-vpn", "cfs-globex-vpn"];
/// Where alarms land: CIs of the sample, and ids the topology gains and loses.
const RESOURCES: &[&str] = &[
    "par-r1/1/1",
    "lyo-r1/2/1",
    "mrs-r1/1/2",
    "lyo-r1",
    "mrs-r1/card-1",
    "link-lyo-mrs-2",
    "new-port-0",
    "new-port-1",
    "new-rfs",
    "new-svc-0",
    "cfs-acme-vpn",
];

fn record(id: &str, class: CiClass, deps: Vec<String>, rule: Rule, customer: Option<&str>) -> CiRecord {
    CiRecord {
        id: id.into(),
        class,
        name: String::new(),
        depends_on: deps,
        rule,
        customer: customer.map(str::to_owned),
        sla: None,
        incidents: None,
        attributes: BTreeMap::new(),
    }
}

fn change() -> impl Strategy<Value = CiChange> {
    let picks = || proptest::collection::vec(0..LOWER.len(), 1..4);
    prop_oneof![
        (0..NEW_PORTS.len(), 0..CARDS.len()).prop_map(|(p, c)| CiChange::Upsert(record(
            NEW_PORTS[p],
            CiClass::Port,
            vec![CARDS[c].into()],
            Rule::Any,
            None
        ))),
        (picks(), 0..3u32).prop_map(|(deps, rule)| {
            // new-rfs over ports and links only (never itself).
            let deps: Vec<String> = deps.into_iter().map(|d| LOWER[d % 5].to_string()).collect();
            let rule = [Rule::Any, Rule::All, Rule::Quorum(1)][rule as usize];
            CiChange::Upsert(record("new-rfs", CiClass::Rfs, deps, rule, None))
        }),
        (0..SERVICES.len(), picks(), 0..CUSTOMERS.len(), 0..6u8).prop_map(|(s, deps, c, kind)| {
            let deps = deps.into_iter().map(|d| LOWER[d].to_string()).collect();
            // Mostly customer-facing services as usual; sometimes one made to open no
            // incidents, or not a service any more, or a resource-facing one made to.
            let (class, incidents) = match kind {
                0 => (CiClass::Cfs, Some(false)),
                1 => (CiClass::Rfs, None),
                2 => (CiClass::Rfs, Some(true)),
                _ => (CiClass::Cfs, None),
            };
            let mut service = record(SERVICES[s], class, deps, Rule::Any, Some(CUSTOMERS[c]));
            service.incidents = incidents;
            CiChange::Upsert(service)
        }),
        (0..2usize, 0..NEW_PORTS.len()).prop_map(|(link, p)| {
            let (id, other) = [("link-par-lyo-a", "par-r1/1/1"), ("link-lyo-mrs-2", "mrs-r1/1/2")][link];
            CiChange::Upsert(record(id, CiClass::Link, vec![other.into(), NEW_PORTS[p].into()], Rule::Any, None))
        }),
        (0..RESOURCES.len()).prop_map(|r| CiChange::Delete(RESOURCES[r].into())),
        (0..SERVICES.len()).prop_map(|s| CiChange::Delete(SERVICES[s].into())),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    Alarm { resource: usize, severity: Option<Severity>, gap: EpochMillis },
    Topology(Vec<CiChange>),
}

fn op() -> impl Strategy<Value = Op> {
    let severity = prop_oneof![Just(None), Just(Some(Severity::Critical)), Just(Some(Severity::Minor))];
    prop_oneof![
        3 => (0..RESOURCES.len(), severity, 0..90_000i64)
            .prop_map(|(resource, severity, gap)| Op::Alarm { resource, severity, gap }),
        1 => proptest::collection::vec(change(), 1..4).prop_map(Op::Topology),
    ]
}

fn alarm(resource: usize, severity: Option<Severity>, now: EpochMillis) -> Alarm {
    match severity {
        Some(severity) => Alarm::raise(RESOURCES[resource], "LOS", severity, now),
        None => Alarm::clear(RESOURCES[resource], "LOS", now),
    }
}

/// An alarm as the impact stage keeps it, but for what repeats move (the impact stage
/// hears of repeats only with the next change of its resource's alarms).
fn kept(alarms: &[AlarmRef]) -> Vec<AlarmRef> {
    alarms.iter().map(|a| AlarmRef { tally: 0, last_seen: 0, ..a.clone() }).collect()
}

/// What the impact stage says of every CI present, by id, and of unmapped resources.
type ImpactView = (BTreeMap<String, (State, State, Vec<String>, Vec<AlarmRef>)>, Vec<(String, Vec<AlarmRef>)>);

fn impact_view(correlator: &Correlator) -> ImpactView {
    let topology = correlator.topology();
    let impact = correlator.impact();
    let cis = topology
        .iter()
        .map(|(idx, ci)| {
            let state = impact.state(idx);
            let roots = impact.roots(idx).iter().map(|r| topology.ci(r).id.to_string()).collect();
            (ci.id.to_string(), (state.own, state.effective, roots, kept(&state.alarms)))
        })
        .collect();
    let unmapped = impact.unmapped().iter().map(|(r, alarms)| (r.to_string(), kept(alarms))).collect();
    (cis, unmapped)
}

/// Plays the ops; after each, checks the correlator against one started on the topology
/// as it now is and given every alarm so far. Returns the incident changes and the
/// outcome of each batch.
/// The incident changes of a run, and the version or error of each batch.
type Played = (Vec<String>, Vec<Result<u64, TopologyError>>);

fn play(ops: &[Op]) -> Result<Played, TestCaseError> {
    let mut correlator = Correlator::new(sample(), CorrelatorConfig::default());
    let mut out: Vec<IncidentChange> = Vec::new();
    let mut batches = Vec::new();
    let mut alarms: Vec<(Alarm, EpochMillis)> = Vec::new();
    let mut now = START;
    for op in ops {
        match op {
            Op::Alarm { resource, severity, gap } => {
                now += gap;
                let alarm = alarm(*resource, *severity, now);
                correlator.tick(now, &mut out);
                correlator.apply(&alarm, now, &mut out);
                alarms.push((alarm, now));
            }
            Op::Topology(batch) => {
                let version = correlator.topology().version();
                let result = correlator.apply_topology(batch.clone(), now, &mut out);
                match &result {
                    Ok(applied) => prop_assert_eq!(applied.version, version + 1),
                    Err(_) => prop_assert_eq!(correlator.topology().version(), version),
                }
                batches.push(result.map(|applied| applied.version));
            }
        }
        if let Err(difference) = correlator.check_views() {
            return Err(TestCaseError::fail(format!("incident views diverged: {difference}")));
        }
        let mut fresh = Correlator::new(Arc::new((**correlator.topology()).clone()), CorrelatorConfig::default());
        let mut ignored = Vec::new();
        for (alarm, at) in &alarms {
            fresh.tick(*at, &mut ignored);
            fresh.apply(alarm, *at, &mut ignored);
        }
        prop_assert_eq!(impact_view(&correlator), impact_view(&fresh), "after {:?}", op);
    }
    let changes = out.iter().map(|c| format!("{:?} {:?}", c.kind, c.incident)).collect();
    Ok((changes, batches))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    /// Impact follows every batch exactly as a start on the new topology would compute
    /// it, and the same alarms and batches give the same incidents, every time.
    #[test]
    fn impact_follows_topology_changes_as_a_fresh_start_would(ops in proptest::collection::vec(op(), 1..40)) {
        let first = play(&ops)?;
        let second = play(&ops)?;
        prop_assert_eq!(first, second);
    }
}

fn upsert(record: CiRecord) -> Vec<CiChange> {
    vec![CiChange::Upsert(record)]
}

fn incident_of<'a>(correlator: &'a Correlator, service: &str) -> Option<&'a faultline::model::incident::Incident> {
    correlator.incidents().find(|i| i.services.iter().any(|s| *s.id == *service))
}

#[test]
fn a_service_provisioned_under_a_failed_link_joins_its_incident_at_once() {
    let mut correlator = Correlator::new(sample(), CorrelatorConfig::default());
    let mut out = Vec::new();
    // Both Lyon-Marseille members 1 and 2 fail: the bundle (quorum 2) is down.
    correlator.apply(&Alarm::raise("mrs-r1/1/1", "LOS", Severity::Critical, START), START, &mut out);
    correlator.apply(&Alarm::raise("mrs-r1/1/2", "LOS", Severity::Critical, START + 1_000), START + 1_000, &mut out);
    let incident = incident_of(&correlator, "cfs-globex-vpn").expect("an incident for Globex").id;

    let service = record("cfs-acme-mrs", CiClass::Cfs, vec!["link-lyo-mrs-1".into()], Rule::Any, Some("cust-acme"));
    out.clear();
    let applied = correlator.apply_topology(upsert(service), START + 2_000, &mut out).unwrap();
    assert_eq!(applied.version, 1);
    let joined = incident_of(&correlator, "cfs-acme-mrs").expect("the new service is in an incident");
    assert_eq!(joined.id, incident, "it joins the incident of the failed root");
    assert_eq!(joined.topology_version, 1, "computed on the topology the batch made");
    assert!(out.iter().any(|c| c.incident.id == incident), "the incident's change is published");
    assert!(
        joined.timeline.iter().any(|e| e.text.contains("ACME") || e.text.contains("cfs-acme-mrs")),
        "{:?}",
        joined.timeline.iter().map(|e| e.text.to_string()).collect::<Vec<_>>()
    );

    // Its dependency taken away, it is restored.
    let moved = record("cfs-acme-mrs", CiClass::Cfs, vec!["link-lyo-mrs-3".into()], Rule::Any, Some("cust-acme"));
    correlator.apply_topology(upsert(moved), START + 3_000, &mut out).unwrap();
    let idx = correlator.topology().lookup("cfs-acme-mrs").unwrap();
    assert_eq!(correlator.impact().state(idx).effective, State::Up);
    let incident = correlator.incident(incident).unwrap();
    let entry = incident.services.iter().find(|s| &*s.id == "cfs-acme-mrs");
    assert!(entry.is_none_or(|s| s.impact == faultline::model::state::State::Up), "{entry:?}");
}

#[test]
fn a_deleted_ci_keeps_its_alarms_as_unmapped_and_gets_them_back() {
    let mut correlator = Correlator::new(sample(), CorrelatorConfig::default());
    let mut out = Vec::new();
    correlator.apply(&Alarm::raise("mrs-r1", "EQPT_FAIL", Severity::Critical, START), START, &mut out);
    let initech = incident_of(&correlator, "cfs-initech-internet").expect("Initech is down").id;

    // Deleting the router needs what depends on it changed in the same batch.
    let refused = correlator.apply_topology(vec![CiChange::Delete("mrs-r1".into())], START + 1_000, &mut out);
    assert!(matches!(refused, Err(TopologyError::StillDependedOn { .. })), "{refused:?}");

    let topology = correlator.topology().clone();
    let mut batch = vec![CiChange::Delete("mrs-r1".into())];
    for dependent in topology.dependents(topology.lookup("mrs-r1").unwrap()) {
        let mut record = topology.record(*dependent);
        record.depends_on.retain(|d| d != "mrs-r1");
        if record.depends_on.is_empty() {
            record.depends_on.push("site-mrs".into());
        }
        batch.push(CiChange::Upsert(record));
    }
    correlator.apply_topology(batch, START + 2_000, &mut out).unwrap();
    assert_eq!(correlator.topology().lookup("mrs-r1"), None);
    let unmapped = correlator.impact().unmapped();
    assert_eq!(unmapped.get("mrs-r1").map(|a| a.len()), Some(1), "the alarm is kept, unmapped");
    let idx = correlator.topology().lookup("cfs-initech-internet").unwrap();
    assert_eq!(correlator.impact().state(idx).effective, State::Up, "nothing it took down is down any more");
    assert_eq!(correlator.stats().unmapped_resources, 1);

    // Back, under the site again: its alarm is its own again, and it takes its cards down.
    let router = record("mrs-r1", CiClass::Device, vec!["site-mrs".into()], Rule::Any, None);
    let card = record("mrs-r1/card-1", CiClass::Card, vec!["mrs-r1".into()], Rule::Any, None);
    correlator.apply_topology(vec![CiChange::Upsert(router), CiChange::Upsert(card)], START + 3_000, &mut out).unwrap();
    assert!(correlator.impact().unmapped().is_empty());
    let card = correlator.topology().lookup("mrs-r1/card-1").unwrap();
    assert_eq!(correlator.impact().state(card).effective, State::Down);
    assert_eq!(correlator.stats().unmapped_resources, 0);
    let _ = initech;
}

#[test]
fn an_incident_whose_service_is_deleted_says_so() {
    let mut correlator = Correlator::new(sample(), CorrelatorConfig::default());
    let mut out = Vec::new();
    correlator.apply(&Alarm::raise("mrs-r1", "EQPT_FAIL", Severity::Critical, START), START, &mut out);
    let id = incident_of(&correlator, "cfs-initech-internet").expect("Initech is down").id;
    correlator.apply_topology(vec![CiChange::Delete("cfs-initech-internet".into())], START + 1_000, &mut out).unwrap();
    let incident = correlator.incident(id).unwrap();
    assert!(
        incident.timeline.iter().any(|e| e.text.contains("deleted from the topology")),
        "{:?}",
        incident.timeline.iter().map(|e| e.text.to_string()).collect::<Vec<_>>()
    );
    assert!(incident.state != IncidentState::Closed);
    assert!(
        incident.services.iter().all(|s| &*s.id != "cfs-initech-internet" || s.impact == State::Up),
        "{:?}",
        incident.services
    );
}

/// A CMDB sending a service again with an attribute changed leaves its incident as it is
/// (no new version, nothing published); renamed, the incident shows the new name.
#[test]
fn an_attribute_change_leaves_incidents_alone_and_a_rename_shows() {
    let mut correlator = Correlator::new(sample(), CorrelatorConfig::default());
    let mut out = Vec::new();
    correlator.apply(&Alarm::raise("mrs-r1", "EQPT_FAIL", Severity::Critical, START), START, &mut out);
    let incident = incident_of(&correlator, "cfs-initech-internet").expect("Initech is down");
    let (id, version) = (incident.id, incident.version);
    let topology = correlator.topology().clone();
    let mut record = topology.record(topology.lookup("cfs-initech-internet").unwrap());
    record.attributes.insert("contract".into(), "C-42".into());
    out.clear();
    let applied = correlator.apply_topology(vec![CiChange::Upsert(record.clone())], START + 1_000, &mut out).unwrap();
    assert_eq!((applied.changed.len(), applied.relabelled.len()), (1, 0));
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(correlator.incident(id).unwrap().version, version);
    record.name = "Initech Marseille fibre".into();
    correlator.apply_topology(vec![CiChange::Upsert(record)], START + 2_000, &mut out).unwrap();
    let incident = correlator.incident(id).unwrap();
    assert!(incident.version > version);
    assert!(incident.services.iter().any(|s| &*s.name == "Initech Marseille fibre"), "{:?}", incident.services);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    /// A restore from the changelog, wherever the cut falls, takes back the topology the
    /// batches made (CIs at the same places, the same version) and continues exactly like
    /// the uninterrupted correlator.
    #[test]
    fn a_restore_takes_back_the_changed_topology_and_continues_exactly(
        ops in proptest::collection::vec(op(), 2..40),
        cut in 0usize..40,
        commit_every in 1usize..6,
    ) {
        use faultline::correlate::changelog::CoreSnapshot;
        let cut = cut % ops.len();
        let run = |correlator: &mut Correlator, ops: &[Op], now: &mut EpochMillis| {
            let mut out = Vec::new();
            for op in ops {
                match op {
                    Op::Alarm { resource, severity, gap } => {
                        *now += gap;
                        correlator.tick(*now, &mut out);
                        correlator.apply(&alarm(*resource, *severity, *now), *now, &mut out);
                    }
                    Op::Topology(batch) => {
                        let _ = correlator.apply_topology(batch.clone(), *now, &mut out);
                    }
                }
            }
            out.iter().map(|c| format!("{:?} {:?}", c.kind, c.incident)).collect::<Vec<_>>()
        };
        let mut original = Correlator::new(sample(), CorrelatorConfig::default());
        let mut log = CoreSnapshot::default();
        let mut now = START;
        for chunk in ops[..cut].chunks(commit_every) {
            run(&mut original, chunk, &mut now);
            if let Some(changes) = original.take_changes() {
                log.fold(changes);
            }
        }
        let (mut restored, summary) = Correlator::restore(sample(), CorrelatorConfig::default(), log);
        prop_assert_eq!(summary.topology_rejected, 0);
        // A restart first deletes the entries of released CIs the file does not have
        // (nothing would take them back), and writes nothing else.
        if let Some(cleanup) = restored.take_changes() {
            prop_assert!(cleanup.resources.is_empty() && cleanup.incidents.is_empty() && cleanup.held.is_empty());
            prop_assert!(!cleanup.topology.is_empty() && cleanup.topology.iter().all(|(_, entry)| entry.is_none()));
        }
        let (a, b) = (original.topology(), restored.topology());
        prop_assert_eq!(a.version(), b.version());
        let records = |t: &Topology| t.iter().map(|(i, _)| (i, t.record(i))).collect::<Vec<_>>();
        prop_assert_eq!(records(a), records(b));
        // Deleted CIs and released slots in their places too; released slots past the
        // last one taken may be missing after a restore (a new CI takes the lowest free
        // slot, or the next past the end: the same one).
        let slots = |t: &Topology| {
            let mut slots: Vec<_> = (0..t.slots() as u32).map(|i| (t.ci(i).id.clone(), t.ci(i).present)).collect();
            while slots.last().is_some_and(|(id, _)| id.is_empty()) {
                slots.pop();
            }
            slots
        };
        prop_assert_eq!(slots(a), slots(b));
        prop_assert_eq!(impact_view(&original), impact_view(&restored));
        let before: Vec<_> = original.incidents().cloned().collect();
        let after: Vec<_> = restored.incidents().cloned().collect();
        prop_assert_eq!(before, after);

        let mut later = now;
        let expected = run(&mut original, &ops[cut..], &mut now);
        let actual = run(&mut restored, &ops[cut..], &mut later);
        prop_assert_eq!(actual, expected);
        prop_assert_eq!(restored.take_changes(), original.take_changes());
    }
}

/// A restart on a topology file that changed under the run-time changes: those it still
/// takes are applied, those it no longer takes are left out (counted), and a CI deleted at
/// run time that the new file needs stays as the file has it.
#[test]
fn a_restore_on_a_changed_file_keeps_what_still_applies() {
    use faultline::correlate::changelog::CoreSnapshot;
    let node = |id: &str, class, deps: &[&str]| {
        record(id, class, deps.iter().map(|d| d.to_string()).collect(), Rule::Any, None)
    };
    let file = |records: Vec<CiRecord>| Arc::new(Topology::from_records(records).unwrap());
    let before = vec![
        node("site", CiClass::Site, &[]),
        node("dev", CiClass::Device, &["site"]),
        node("card-1", CiClass::Card, &["dev"]),
        node("card-2", CiClass::Card, &["dev"]),
    ];
    let mut correlator = Correlator::new(file(before.clone()), CorrelatorConfig::default());
    let mut out = Vec::new();
    let batch = vec![
        CiChange::Upsert(node("port-x", CiClass::Port, &["card-2"])),
        CiChange::Upsert(node("port-y", CiClass::Port, &["dev"])),
        CiChange::Delete("card-1".into()),
    ];
    correlator.apply_topology(batch, START, &mut out).unwrap();
    let mut log = CoreSnapshot::default();
    log.fold(correlator.take_changes().unwrap());

    // The new file: card-2 gone, and a card-3 on card-1.
    let mut after = before[..3].to_vec();
    after.push(node("card-3", CiClass::Card, &["card-1"]));
    let (restored, summary) = Correlator::restore(file(after.clone()), CorrelatorConfig::default(), log);
    assert_eq!((summary.topology_changes, summary.topology_rejected), (3, 2), "port-x and card-1's deletion left out");
    let topology = restored.topology();
    assert_eq!(topology.version(), 1);
    assert!(topology.lookup("port-y").is_some() && topology.lookup("port-x").is_none());
    let card = topology.lookup("card-1").expect("card-1 stays: the new file needs it");
    assert_eq!(topology.record(card), after[2], "as the file has it, not emptied");
}

/// Deleted CIs' slots released and taken again, across restarts.
mod released_slots {
    use super::START;
    use faultline::correlate::changelog::CoreSnapshot;
    use faultline::correlate::{Correlator, CorrelatorConfig};
    use faultline::model::alarm::{Alarm, Severity};
    use faultline::model::topology::{CiChange, CiClass, CiRecord, Rule, Topology};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn node(id: &str, class: CiClass, deps: &[&str]) -> CiRecord {
        CiRecord {
            id: id.into(),
            class,
            name: String::new(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            rule: Rule::Any,
            customer: None,
            sla: None,
            incidents: None,
            attributes: BTreeMap::new(),
        }
    }

    fn file() -> Vec<CiRecord> {
        vec![
            node("site", CiClass::Site, &[]),
            node("dev", CiClass::Device, &["site"]),
            node("card-1", CiClass::Card, &["dev"]),
            node("card-2", CiClass::Card, &["dev"]),
        ]
    }

    /// A CI of the topology file, released, added back at run time, deleted and released
    /// again: a restart does not take it back from the file.
    #[test]
    fn a_file_ci_released_twice_comes_back_from_the_file() {
        let topo = || Arc::new(Topology::from_records(file()).unwrap());
        let mut c = Correlator::new(topo(), CorrelatorConfig::default());
        let mut out = Vec::new();
        let mut log = CoreSnapshot::default();
        let mut step = |c: &mut Correlator, batch: Vec<CiChange>, log: &mut CoreSnapshot| {
            c.apply_topology(batch, START, &mut out).unwrap();
            if let Some(changes) = c.take_changes() {
                log.fold(changes);
            }
        };
        step(&mut c, vec![CiChange::Delete("card-2".into())], &mut log);
        // card-2 released before this batch, then added back (a new CI to the topology).
        step(&mut c, vec![CiChange::Upsert(node("card-2", CiClass::Card, &["dev"]))], &mut log);
        step(&mut c, vec![CiChange::Delete("card-2".into())], &mut log);
        // Released again: this time its entry is a tombstone.
        step(&mut c, vec![CiChange::Upsert(node("port-x", CiClass::Port, &["card-1"]))], &mut log);
        assert_eq!(c.topology().lookup("card-2"), None);
        let (restored, _) = Correlator::restore(topo(), CorrelatorConfig::default(), log);
        assert_eq!(restored.topology().lookup("card-2"), None, "card-2, deleted at run time, is back after a restart");
    }

    /// Same, with a restart in between or not: the changelog ends the same.
    #[test]
    fn the_entry_written_for_a_release_depends_on_whether_the_engine_restarted() {
        let topo = || Arc::new(Topology::from_records(file()).unwrap());
        let mut out = Vec::new();
        let run = |restart: bool, out: &mut Vec<_>| {
            let mut c = Correlator::new(topo(), CorrelatorConfig::default());
            let mut log = CoreSnapshot::default();
            let batches = vec![
                vec![CiChange::Delete("card-2".into())],
                vec![CiChange::Upsert(node("card-2", CiClass::Card, &["dev"]))],
                vec![CiChange::Delete("card-2".into())],
                vec![CiChange::Upsert(node("port-x", CiClass::Port, &["card-1"]))],
            ];
            for (i, batch) in batches.into_iter().enumerate() {
                c.apply_topology(batch, START, out).unwrap();
                if let Some(changes) = c.take_changes() {
                    log.fold(changes);
                }
                if restart && i == 1 {
                    c = Correlator::restore(topo(), CorrelatorConfig::default(), log.clone()).0;
                }
            }
            log.topology.get("card-2").cloned()
        };
        assert_eq!(run(false, &mut out), run(true, &mut out));
    }

    /// After a restart whose file changed (slots conflict: the entries are applied as changes),
    /// a file CI deleted at run time and released stays deleted across the next restart.
    #[test]
    fn after_a_fallback_restore_a_file_ci_deleted_at_run_time_comes_back() {
        let mut c = Correlator::new(Arc::new(Topology::from_records(file()).unwrap()), CorrelatorConfig::default());
        let mut out = Vec::new();
        let mut log = CoreSnapshot::default();
        // A run-time CI in slot 4, and card-2 (of the file) deleted.
        c.apply_topology(vec![CiChange::Upsert(node("port-x", CiClass::Port, &["card-1"]))], START, &mut out).unwrap();
        c.apply_topology(vec![CiChange::Delete("card-2".into())], START, &mut out).unwrap();
        log.fold(c.take_changes().unwrap());
        // The file gains a CI: slot 4 is now the file's, the entries no longer fit: fallback.
        let mut new_file = file();
        new_file.push(node("card-3", CiClass::Card, &["dev"]));
        let new_topo = || Arc::new(Topology::from_records(new_file.clone()).unwrap());
        let (mut c, summary) = Correlator::restore(new_topo(), CorrelatorConfig::default(), log.clone());
        assert_eq!(summary.topology_rejected, 0);
        assert_eq!(c.topology().lookup("card-2"), None);
        // Any batch: card-2 (quiet) is released.
        c.apply_topology(vec![CiChange::Upsert(node("port-y", CiClass::Port, &["card-1"]))], START, &mut out).unwrap();
        log.fold(c.take_changes().unwrap());
        let (restored, _) = Correlator::restore(new_topo(), CorrelatorConfig::default(), log);
        assert_eq!(restored.topology().lookup("card-2"), None, "card-2, deleted at run time, is back after a restart");
    }

    /// A deleted service still named by an incident keeps its customer; the customer is then
    /// made a non-customer (allowed: only present CIs are checked). A restart puts every slot
    /// back as it was, the deleted service and its customer included.
    #[test]
    fn a_deleted_service_whose_customer_changed_class_breaks_the_slot_restore() {
        let mut svc = node("svc", CiClass::Cfs, &["dev"]);
        svc.customer = Some("cust".into());
        let records = vec![
            node("site", CiClass::Site, &[]),
            node("dev", CiClass::Device, &["site"]),
            node("cust", CiClass::Customer, &[]),
        ];
        let topo = || Arc::new(Topology::from_records(records.clone()).unwrap());
        let mut c = Correlator::new(topo(), CorrelatorConfig::default());
        let mut out = Vec::new();
        let mut log = CoreSnapshot::default();
        c.apply_topology(vec![CiChange::Upsert(svc)], START, &mut out).unwrap();
        c.apply(&Alarm::raise("dev", "LOS", Severity::Critical, START), START, &mut out);
        assert_eq!(c.incidents().count(), 1);
        c.apply_topology(vec![CiChange::Delete("svc".into())], START + 1, &mut out).unwrap();
        c.apply_topology(vec![CiChange::Upsert(node("cust", CiClass::Device, &[]))], START + 2, &mut out).unwrap();
        log.fold(c.take_changes().unwrap());
        let (restored, summary) = Correlator::restore(topo(), CorrelatorConfig::default(), log);
        let slots =
            |t: &Topology| (0..t.slots() as u32).map(|i| (t.ci(i).id.to_string(), t.ci(i).present)).collect::<Vec<_>>();
        assert_eq!(slots(restored.topology()), slots(c.topology()));
        assert_eq!(summary.topology_rejected, 0);
        assert_eq!(summary.unknown_cis, 0);
    }

    /// A restart with a held feed change retries it: a topology batch attempt, so one more
    /// round of releases than the uninterrupted engine does. Releases are taken whole (a
    /// deleted customer with the deleted service naming it), so the new CIs take the same
    /// slots and the incidents list their roots in the same order.
    #[test]
    fn a_restart_with_a_held_change_releases_one_round_early() {
        use faultline::correlate::feed::FeedChange;
        let records = vec![
            node("site", CiClass::Site, &[]),
            node("dev", CiClass::Device, &["site"]),
            node("card-1", CiClass::Card, &["dev"]),
        ];
        let topo = || Arc::new(Topology::from_records(records.clone()).unwrap());
        let run = |restart: bool| {
            let mut c = Correlator::new(topo(), CorrelatorConfig::default());
            let mut out = Vec::new();
            let mut log = CoreSnapshot::default();
            let commit = |c: &mut Correlator, log: &mut CoreSnapshot| {
                if let Some(ch) = c.take_changes() {
                    log.fold(ch);
                }
            };
            let mut svc = node("svc", CiClass::Cfs, &["dev"]);
            svc.customer = Some("cust2".into());
            c.apply_topology(vec![CiChange::Upsert(node("cust2", CiClass::Customer, &[]))], START, &mut out).unwrap();
            c.apply_topology(vec![CiChange::Upsert(svc)], START, &mut out).unwrap();
            // Held: its customer is no customer.
            let mut x = node("x", CiClass::Port, &["card-1"]);
            x.customer = Some("dev".into());
            c.apply_feed(vec![FeedChange { change: CiChange::Upsert(x), source: String::new() }], START, &mut out);
            assert_eq!(c.held().len(), 1);
            c.apply_topology(vec![CiChange::Delete("svc".into()), CiChange::Delete("cust2".into())], START, &mut out)
                .unwrap();
            commit(&mut c, &mut log);
            if restart {
                c = Correlator::restore(topo(), CorrelatorConfig::default(), log.clone()).0;
            }
            c.tick(START + 1, &mut out);
            c.apply_topology(vec![CiChange::Upsert(node("p-a", CiClass::Port, &["card-1"]))], START + 1, &mut out)
                .unwrap();
            c.apply_topology(vec![CiChange::Upsert(node("p-b", CiClass::Port, &["card-1"]))], START + 1, &mut out)
                .unwrap();
            c.apply_topology(vec![CiChange::Upsert(node("svc2", CiClass::Cfs, &["p-a", "p-b"]))], START + 1, &mut out)
                .unwrap();
            out.clear();
            c.apply(&Alarm::raise("p-a", "LOS", Severity::Critical, START + 2), START + 2, &mut out);
            c.apply(&Alarm::raise("p-b", "LOS", Severity::Critical, START + 2), START + 2, &mut out);
            let t = c.topology();
            let slots = (t.lookup("p-a"), t.lookup("p-b"));
            let roots = c.incidents().map(|i| i.root_causes.clone()).collect::<Vec<_>>();
            (slots, roots)
        };
        assert_eq!(run(true), run(false));
    }

    /// A customer CI that names itself as its customer (nothing forbids it) is released once
    /// deleted, as any other.
    #[test]
    fn a_deleted_self_customer_is_never_released() {
        let topo = Arc::new(Topology::from_records(file()).unwrap());
        let mut c = Correlator::new(topo, CorrelatorConfig::default());
        let mut out = Vec::new();
        let mut me = node("cust-self", CiClass::Customer, &[]);
        me.customer = Some("cust-self".into());
        c.apply_topology(vec![CiChange::Upsert(me)], START, &mut out).unwrap();
        c.apply_topology(vec![CiChange::Delete("cust-self".into())], START, &mut out).unwrap();
        for i in 0..5 {
            c.apply_topology(
                vec![CiChange::Upsert(node(&format!("p{i}"), CiClass::Port, &["card-1"]))],
                START,
                &mut out,
            )
            .unwrap();
        }
        assert_eq!(c.sizes().deleted_cis, 0, "still deleted, never released: {:?}", c.sizes());
    }
}
