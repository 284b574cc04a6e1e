//! The topology feed in the core: CI records from the CMDB's compacted topic arrive in no
//! order across partitions, a change of several CIs as several records. What can apply does;
//! what waits for another CI is held, survives a restore, and applies once that CI comes;
//! what is invalid is refused for the dead-letter topic, and nothing waits without bound.

use faultline::correlate::changelog::CoreSnapshot;
use faultline::correlate::feed::FeedChange;
use faultline::correlate::{Correlator, CorrelatorConfig, FeedPolicy};
use faultline::model::EpochMillis;
use faultline::model::alarm::{Alarm, Severity};
use faultline::model::incident::IncidentChange;
use faultline::model::state::State;
use faultline::model::topology::{CiChange, CiClass, CiRecord, Rule, Topology};
use faultline::topology_file;
use std::collections::BTreeMap;
use std::sync::Arc;

const START: EpochMillis = 1_767_225_600_000;

fn sample() -> Arc<Topology> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sample-network.jsonl");
    Arc::new(topology_file::load(&path).unwrap())
}

fn record(id: &str, class: CiClass, deps: &[&str], customer: Option<&str>) -> CiRecord {
    CiRecord {
        id: id.into(),
        class,
        name: String::new(),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        rule: Rule::Any,
        customer: customer.map(str::to_owned),
        sla: None,
        incidents: None,
        attributes: BTreeMap::new(),
    }
}

fn feed(changes: Vec<CiChange>) -> Vec<FeedChange> {
    changes
        .into_iter()
        .enumerate()
        .map(|(i, change)| FeedChange { change, source: format!("faultline.topology/0/{i}") })
        .collect()
}

fn up(r: CiRecord) -> CiChange {
    CiChange::Upsert(r)
}

/// A new service over a new transport over a new port on par-r1's card, sent top down.
fn provisioning() -> [CiChange; 3] {
    [
        up(record("cfs-new", CiClass::Cfs, &["rfs-new"], Some("cust-acme"))),
        up(record("rfs-new", CiClass::Rfs, &["port-new"], None)),
        up(record("port-new", CiClass::Port, &["par-r1/card-1"], None)),
    ]
}

fn state(correlator: &Correlator, id: &str) -> Option<State> {
    let topology = correlator.topology();
    topology.lookup(id).map(|idx| correlator.impact().state(idx).effective)
}

#[test]
fn records_sent_before_what_they_name_wait_for_it_then_apply() {
    let mut correlator = Correlator::new(sample(), CorrelatorConfig::default());
    let mut out: Vec<IncidentChange> = Vec::new();
    // The port fails before the CMDB has told the engine of it: unmapped for now.
    correlator.apply(&Alarm::raise("port-new", "LOS", Severity::Critical, START), START, &mut out);
    let [service, transport, port] = provisioning();

    let outcome = correlator.apply_feed(feed(vec![service]), START + 1_000, &mut out);
    assert_eq!((outcome.applied, outcome.held, outcome.refused), (0, 1, 0));
    let held = correlator.held().get("cfs-new").expect("the service waits");
    assert_eq!(held.waits_for, "rfs-new");
    assert_eq!(held.since, START + 1_000);
    assert!(correlator.topology().lookup("cfs-new").is_none());
    let version = correlator.topology().version();
    assert!(correlator.take_changes().is_some_and(|c| c.held.len() == 1), "the held change is written");

    let outcome = correlator.apply_feed(feed(vec![transport]), START + 2_000, &mut out);
    assert_eq!((outcome.applied, outcome.held), (0, 1), "the transport waits for its port");
    assert_eq!(correlator.held().len(), 2, "the service still for the transport");
    assert!(
        correlator.take_changes().is_some_and(|c| c.held.len() == 1),
        "only the transport's is written, not the service's again"
    );
    assert_eq!(correlator.topology().version(), version, "nothing applied, no version");

    out.clear();
    let outcome = correlator.apply_feed(feed(vec![port]), START + 3_000, &mut out);
    assert_eq!((outcome.applied, outcome.held, outcome.refused), (3, 0, 0), "all three, as one batch");
    assert_eq!(outcome.versions, Some((version + 1, version + 1)));
    assert!(correlator.held().is_empty());
    assert_eq!(correlator.stats().topology_held, 0);
    assert_eq!(state(&correlator, "cfs-new"), Some(State::Down), "the port's alarm reaches the new service");
    let incident = correlator.incidents().find(|i| i.services.iter().any(|s| &*s.id == "cfs-new"));
    let incident = incident.expect("the new service is in an incident at once");
    assert_eq!(incident.topology_version, version + 1);
    assert!(out.iter().any(|c| c.incident.id == incident.id), "and it is published");
}

#[test]
fn a_tombstone_sent_before_its_dependents_moved_waits_for_them() {
    let mut correlator = Correlator::new(sample(), CorrelatorConfig::default());
    let mut out = Vec::new();
    // par-r1/1/1 carries the Paris-Lyon link; the CMDB moves the link to par-r1/2/1 and
    // deletes the port, the tombstone first.
    let link = correlator.topology().record(correlator.topology().lookup("link-par-lyo-a").unwrap());
    assert!(link.depends_on.contains(&"par-r1/1/1".to_owned()), "{link:?}");
    let outcome = correlator.apply_feed(feed(vec![CiChange::Delete("par-r1/1/1".into())]), START, &mut out);
    assert_eq!((outcome.applied, outcome.held), (0, 1));
    assert_eq!(correlator.held().get("par-r1/1/1").unwrap().waits_for, "link-par-lyo-a");
    assert!(correlator.topology().lookup("par-r1/1/1").is_some(), "not deleted while depended on");

    let mut moved = link.clone();
    for dep in &mut moved.depends_on {
        if dep == "par-r1/1/1" {
            *dep = "par-r1/2/1".into();
        }
    }
    let outcome = correlator.apply_feed(feed(vec![up(moved)]), START + 1_000, &mut out);
    assert_eq!((outcome.applied, outcome.held), (2, 0), "the link moved, then the port deleted, together");
    assert!(correlator.topology().lookup("par-r1/1/1").is_none());
    assert!(correlator.held().is_empty());
}

#[test]
fn records_wrong_in_themselves_are_refused_and_what_another_may_mend_waits_a_while() {
    let mut correlator = Correlator::new(sample(), CorrelatorConfig::default());
    let mut out = Vec::new();
    let version = correlator.topology().version();
    // The card made to depend on its own port: a cycle (a record still to come might
    // break it). A service sold to a port (the port might be made a customer). A quorum
    // of 3 over one dependency: wrong whatever comes. A new port, valid.
    let cycle = up(record("par-r1/card-1", CiClass::Card, &["par-r1", "par-r1/1/1"], None));
    let not_a_customer = up(record("cfs-odd", CiClass::Cfs, &["rfs-par-lyo-transport"], Some("par-r1/1/1")));
    let mut quorum = record("rfs-q", CiClass::Rfs, &["par-r1/1/1"], None);
    quorum.rule = Rule::Quorum(3);
    let valid = up(record("port-ok", CiClass::Port, &["par-r1/card-1"], None));
    let outcome = correlator.apply_feed(feed(vec![cycle, not_a_customer, up(quorum), valid]), START, &mut out);
    assert_eq!((outcome.applied, outcome.held, outcome.refused), (1, 2, 1));
    assert_eq!(correlator.topology().version(), version + 1);
    assert!(correlator.topology().lookup("port-ok").is_some());
    assert!(correlator.topology().lookup("cfs-odd").is_none());
    let card = correlator.topology().lookup("par-r1/card-1").unwrap();
    assert_eq!(correlator.topology().dependencies(card).len(), 1, "the card as it was");
    let refusals = correlator.take_refusals();
    let found: Vec<_> = refusals.iter().map(|r| (r.index, r.reason, r.source.as_str())).collect();
    assert_eq!(found, vec![(Some(2), "impossible_quorum", "faultline.topology/0/2")]);
    assert!(refusals[0].detail.contains("rfs-q"), "{}", refusals[0].detail);
    assert!(correlator.take_refusals().is_empty(), "taken once");
    for id in ["par-r1/card-1", "cfs-odd"] {
        let held = correlator.held().get(id).unwrap();
        assert_eq!(held.waits_for, "par-r1/1/1", "{held:?}");
    }
    assert!(correlator.held().get("par-r1/card-1").unwrap().reason.contains("cycle"));

    // Nothing mends them within the hour: refused then, saying why they waited.
    correlator.tick(START + 3_600_000, &mut out);
    assert_eq!(correlator.held().len(), 2, "not before the hour is over");
    correlator.tick(START + 3_600_001, &mut out);
    assert!(correlator.held().is_empty());
    let mut refusals = correlator.take_refusals();
    refusals.sort_by(|a, b| a.change.id().cmp(b.change.id()));
    let found: Vec<_> = refusals.iter().map(|r| (r.index, r.reason, r.change.id())).collect();
    assert_eq!(found, vec![(None, "held_too_long", "cfs-odd"), (None, "held_too_long", "par-r1/card-1")]);
    assert!(refusals[0].detail.contains("not a customer"), "{}", refusals[0].detail);
    assert!(refusals[1].detail.contains("cycle"), "{}", refusals[1].detail);
}

#[test]
fn a_dependency_reversed_in_two_records_applies_whichever_comes_first() {
    let mut correlator = Correlator::new(sample(), CorrelatorConfig::default());
    let mut out = Vec::new();
    let x = |deps: &[&str]| up(record("x", CiClass::Rfs, deps, None));
    let y = |deps: &[&str]| up(record("y", CiClass::Rfs, deps, None));
    correlator.apply_feed(feed(vec![x(&["par-r1/1/1"]), y(&["x"])]), START, &mut out);
    // The CMDB turns it round: y under the port, x over y. x comes first.
    let outcome = correlator.apply_feed(feed(vec![x(&["y"])]), START + 1, &mut out);
    assert_eq!((outcome.applied, outcome.held, outcome.refused), (0, 1, 0));
    assert_eq!(correlator.held().get("x").unwrap().waits_for, "y");
    let outcome = correlator.apply_feed(feed(vec![y(&["par-r1/1/1"])]), START + 2, &mut out);
    assert_eq!((outcome.applied, outcome.held, outcome.refused), (2, 0, 0));
    let topology = correlator.topology();
    assert_eq!(topology.record(topology.lookup("x").unwrap()).depends_on, vec!["y".to_owned()]);
    assert!(correlator.held().is_empty());
}

#[test]
fn the_whole_cmdb_sent_again_changes_nothing() {
    let topology = sample();
    let mut correlator = Correlator::new(topology.clone(), CorrelatorConfig::default());
    let mut out = Vec::new();
    // As the seed writes them, and as a CMDB might: name and flags spelled out.
    let mut records: Vec<CiChange> = topology.iter().map(|(idx, _)| up(topology.record(idx))).collect();
    for change in records.iter_mut().step_by(2) {
        if let CiChange::Upsert(r) = change {
            if r.name.is_empty() {
                r.name = r.id.clone();
            }
            r.incidents.get_or_insert(r.class == CiClass::Cfs);
            if let Some(first) = r.depends_on.first().cloned() {
                r.depends_on.push(first);
            }
        }
    }
    records.push(CiChange::Delete("never-there".into()));
    let n = records.len();
    let outcome = correlator.apply_feed(feed(records), START, &mut out);
    assert_eq!((outcome.unchanged, outcome.applied, outcome.held, outcome.refused), (n, 0, 0, 0));
    assert_eq!(correlator.topology().version(), 0, "no batch, no version");
    assert!(correlator.take_changes().is_none_or(|c| c.topology.is_empty()));

    // One real change among them is one.
    let mut renamed = topology.record(topology.lookup("cust-acme").unwrap());
    renamed.name = "ACME Group".into();
    let outcome = correlator.apply_feed(feed(vec![up(renamed)]), START + 1, &mut out);
    assert_eq!((outcome.unchanged, outcome.applied), (0, 1));
}

#[test]
fn held_changes_are_bounded_the_oldest_refused() {
    let config =
        CorrelatorConfig { feed: FeedPolicy { max_held: 2, ..FeedPolicy::default() }, ..CorrelatorConfig::default() };
    let mut correlator = Correlator::new(sample(), config);
    let mut out = Vec::new();
    for i in 0..3 {
        let service = up(record(&format!("svc-{i}"), CiClass::Rfs, &[&format!("missing-{i}")], None));
        correlator.apply_feed(feed(vec![service]), START + i, &mut out);
    }
    assert_eq!(correlator.held().len(), 2);
    assert!(correlator.held().get("svc-0").is_none(), "the oldest went");
    let refusals = correlator.take_refusals();
    assert_eq!(refusals.len(), 1);
    assert_eq!((refusals[0].reason, refusals[0].index, refusals[0].change.id()), ("held_too_long", None, "svc-0"));
    assert!(refusals[0].detail.contains("missing-0"), "{}", refusals[0].detail);
    assert_eq!(correlator.stats().topology_held, 2);
}

#[test]
fn a_newer_record_replaces_the_held_one_and_a_grpc_batch_releases_what_waits() {
    let mut correlator = Correlator::new(sample(), CorrelatorConfig::default());
    let mut out = Vec::new();
    correlator.apply_feed(feed(vec![up(record("rfs-x", CiClass::Rfs, &["port-a"], None))]), START, &mut out);
    correlator.apply_feed(feed(vec![up(record("rfs-x", CiClass::Rfs, &["port-b"], None))]), START + 1, &mut out);
    assert_eq!(correlator.held().len(), 1);
    assert_eq!(correlator.held().get("rfs-x").unwrap().waits_for, "port-b", "the newer record waits, alone");

    // An operator changes rfs-z over gRPC while the feed's change of it waits: the
    // operator's, newer, wins; the feed's is refused as superseded.
    correlator.apply_feed(feed(vec![up(record("rfs-z", CiClass::Rfs, &["port-d"], None))]), START + 1, &mut out);
    let operator = up(record("rfs-z", CiClass::Rfs, &["par-r1/1/1"], None));
    correlator.apply_topology(vec![operator], START + 1, &mut out).unwrap();
    assert!(correlator.held().get("rfs-z").is_none());
    let refusals = correlator.take_refusals();
    assert_eq!(refusals.iter().map(|r| (r.reason, r.change.id())).collect::<Vec<_>>(), vec![("superseded", "rfs-z")]);
    assert!(correlator.topology().lookup("rfs-z").is_some());

    // An operator adds port-b over gRPC: what waited for it applies after the batch.
    let port = up(record("port-b", CiClass::Port, &["par-r1/card-1"], None));
    let applied = correlator.apply_topology(vec![port], START + 2, &mut out).unwrap();
    assert!(correlator.held().is_empty());
    let topology = correlator.topology();
    let rfs = topology.lookup("rfs-x").expect("released");
    assert_eq!(topology.version(), applied.version + 1, "in a batch of its own, after the operator's");
    assert_eq!(topology.record(rfs).depends_on, vec!["port-b".to_owned()]);

    // A tombstone for a held upsert of a CI never there: both gone, nothing to do.
    correlator.apply_feed(feed(vec![up(record("rfs-y", CiClass::Rfs, &["port-c"], None))]), START + 3, &mut out);
    let outcome = correlator.apply_feed(feed(vec![CiChange::Delete("rfs-y".into())]), START + 4, &mut out);
    assert_eq!((outcome.unchanged, outcome.held), (1, 0));
    assert!(correlator.held().is_empty());
}

#[test]
fn held_changes_survive_a_restore_and_apply_as_they_would_have() {
    let run = |restart: bool| {
        let mut correlator = Correlator::new(sample(), CorrelatorConfig::default());
        let mut log = CoreSnapshot::default();
        let mut out = Vec::new();
        let [service, transport, port] = provisioning();
        correlator.apply(&Alarm::raise("port-new", "LOS", Severity::Critical, START), START, &mut out);
        correlator.apply_feed(feed(vec![service, transport]), START + 1_000, &mut out);
        if let Some(changes) = correlator.take_changes() {
            log.fold(changes);
        }
        if restart {
            assert_eq!(log.held.len(), 2, "both held changes are in the changelog");
            correlator = Correlator::restore(sample(), CorrelatorConfig::default(), log.clone()).0;
            assert_eq!(correlator.held().len(), 2);
            assert!(correlator.take_changes().is_none_or(|c| c.held.is_empty()), "nothing to write again");
        }
        correlator.apply_feed(feed(vec![port]), START + 2_000, &mut out);
        if let Some(changes) = correlator.take_changes() {
            assert!(changes.held.iter().all(|(_, h)| h.is_none()), "released: tombstones");
            log.fold(changes);
        }
        assert!(log.held.is_empty());
        let incidents: Vec<_> = correlator.incidents().map(|i| (*i).clone()).collect();
        (incidents, correlator.topology().version(), state(&correlator, "cfs-new"))
    };
    let (straight, restarted) = (run(false), run(true));
    assert_eq!(straight.2, Some(State::Down));
    assert_eq!(straight, restarted);
}

#[test]
fn a_restore_on_a_topology_that_has_what_a_change_waits_for_applies_it() {
    let mut correlator = Correlator::new(sample(), CorrelatorConfig::default());
    let mut out = Vec::new();
    let [_, transport, port] = provisioning();
    correlator.apply_feed(feed(vec![transport]), START, &mut out);
    let mut log = CoreSnapshot::default();
    log.fold(correlator.take_changes().unwrap());
    assert_eq!(log.held.len(), 1);

    // The next start's topology file has the port.
    let CiChange::Upsert(port) = port else { unreachable!() };
    let mut records: Vec<CiRecord> = sample().iter().map(|(idx, _)| sample().record(idx)).collect();
    records.push(port);
    let file = Arc::new(Topology::from_records(records).unwrap());
    let (mut restored, _) = Correlator::restore(file, CorrelatorConfig::default(), log);
    assert_eq!(restored.held().len(), 1, "as written");
    restored.tick(START + 1_000, &mut out);
    assert!(restored.held().is_empty(), "tried again as the clock moves on");
    assert!(restored.topology().lookup("rfs-new").is_some());
}
