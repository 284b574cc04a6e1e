//! Maintenance windows in the core, beyond the scenario fixtures: they survive a restore in
//! the middle (the suppressed impact still opens its incident when the window ends, exactly
//! as without the restart), follow a topology that changes under them, and are refused
//! when they name what the topology lacks.

use faultline::correlate::changelog::CoreSnapshot;
use faultline::correlate::maintenance::{MaintenanceError, Scope, WindowSpec, WindowState};
use faultline::correlate::{Correlator, CorrelatorConfig};
use faultline::model::EpochMillis;
use faultline::model::alarm::{Alarm, Severity};
use faultline::model::incident::{Incident, TimelineKind};
use faultline::model::topology::{CiChange, CiClass, CiRecord, Topology};
use faultline::topology_file;
use std::sync::Arc;

const START: EpochMillis = 1_767_225_600_000;
const MINUTE: EpochMillis = 60_000;

fn sample() -> Arc<Topology> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sample-network.jsonl");
    Arc::new(topology_file::load(&path).unwrap())
}

fn window(change: &str, cis: &[&str], scope: Scope, start: EpochMillis, end: EpochMillis) -> WindowSpec {
    WindowSpec {
        change: change.into(),
        reason: "line card swap".into(),
        cis: cis.iter().map(|c| c.to_string()).collect(),
        scope,
        start,
        end,
        by: "alice".into(),
    }
}

fn suppressed(correlator: &Correlator) -> Vec<String> {
    let topology = correlator.topology();
    correlator.suppressed().map(|s| topology.ci(s).id.to_string()).collect()
}

#[test]
fn a_window_survives_a_restore_and_its_end_opens_the_incident_as_without_one() {
    let run = |restart: bool| -> Vec<Incident> {
        let mut correlator = Correlator::new(sample(), CorrelatorConfig::default());
        let mut log = CoreSnapshot::default();
        let mut out = Vec::new();
        let spec = window("CHG0012345", &["mrs-r1/card-1"], Scope::Ci, START, START + 10 * MINUTE);
        correlator.create_window(spec, false, START, &mut out).unwrap();
        correlator.apply(
            &Alarm::raise("mrs-r1/card-1", "EQPT_FAIL", Severity::Critical, START),
            START + MINUTE,
            &mut out,
        );
        assert_eq!(correlator.incidents().count(), 0);
        assert_eq!(suppressed(&correlator).len(), 3);
        if let Some(changes) = correlator.take_changes() {
            log.fold(changes);
        }
        if restart {
            assert_eq!(log.windows.len(), 1, "the window is in the changelog");
            correlator = Correlator::restore(sample(), CorrelatorConfig::default(), log).0;
            correlator.tick(START + 2 * MINUTE, &mut out);
            assert_eq!(correlator.maintenance().get("CHG0012345").unwrap().state, WindowState::Active);
            assert_eq!(suppressed(&correlator).len(), 3, "still suppressed after the restore");
            assert_eq!(correlator.incidents().count(), 0, "and still no incident");
        }
        correlator.tick(START + 10 * MINUTE, &mut out);
        correlator.incidents().cloned().collect()
    };
    let straight = run(false);
    assert_eq!(straight.len(), 1, "the window ended with the card still down");
    assert!(straight[0].timeline.iter().any(|e| e.kind == TimelineKind::Maintenance && e.text.contains("CHG0012345")));
    assert_eq!(straight, run(true));
}

#[test]
fn a_window_of_dependents_covers_what_the_topology_gains_under_it() {
    let mut correlator = Correlator::new(sample(), CorrelatorConfig::default());
    let mut out = Vec::new();
    let spec = window("CHG2", &["mrs-r1/card-2"], Scope::Dependents, START, START + 60 * MINUTE);
    correlator.create_window(spec, false, START, &mut out).unwrap();
    // A service provisioned mid-window on a port of the card: covered at once.
    let port = CiRecord {
        id: "mrs-r1/2/9".into(),
        class: CiClass::Port,
        name: String::new(),
        depends_on: vec!["mrs-r1/card-2".into()],
        rule: Default::default(),
        customer: None,
        sla: None,
        incidents: None,
        attributes: Default::default(),
    };
    let service = CiRecord {
        id: "cfs-acme-mrs".into(),
        class: CiClass::Cfs,
        depends_on: vec!["mrs-r1/2/9".into()],
        customer: Some("cust-acme".into()),
        ..port.clone()
    };
    let batch = vec![CiChange::Upsert(port), CiChange::Upsert(service)];
    correlator.apply_topology(batch, START + MINUTE, &mut out).unwrap();
    let idx = correlator.topology().lookup("cfs-acme-mrs").unwrap();
    assert_eq!(correlator.maintenance().covering(idx), [Arc::from("CHG2")]);
    correlator.apply(&Alarm::raise("mrs-r1/2/9", "LOS", Severity::Critical, START), START + 2 * MINUTE, &mut out);
    assert_eq!(correlator.incidents().count(), 0);
    assert!(suppressed(&correlator).contains(&"cfs-acme-mrs".to_owned()));

    // Moved off the card while down: no longer covered, its incident opens.
    let moved =
        CiRecord { depends_on: vec!["mrs-r1/2/1".into(), "mrs-r1/2/9".into()], ..correlator.topology().record(idx) };
    correlator.apply(&Alarm::raise("mrs-r1/2/1", "LOS", Severity::Critical, START), START + 3 * MINUTE, &mut out);
    let topology = correlator.topology().clone();
    let outside = topology.lookup("mrs-r1/2/1").unwrap();
    assert!(correlator.maintenance().covers(outside), "the card's other port is covered too");
    let remove = CiChange::Delete("mrs-r1/2/9".into());
    let keep = CiRecord { depends_on: vec!["mrs-r1/1/1".into()], ..moved };
    correlator.apply(&Alarm::raise("mrs-r1/1/1", "LOS", Severity::Critical, START), START + 4 * MINUTE, &mut out);
    correlator.apply_topology(vec![CiChange::Upsert(keep), remove], START + 5 * MINUTE, &mut out).unwrap();
    assert!(!suppressed(&correlator).contains(&"cfs-acme-mrs".to_owned()));
    let incident = correlator.incidents().find(|i| i.services.iter().any(|s| &*s.id == "cfs-acme-mrs"));
    assert!(incident.is_some(), "its root is outside the window now");
}

#[test]
fn windows_naming_what_the_topology_lacks_are_refused() {
    let mut correlator = Correlator::new(sample(), CorrelatorConfig::default());
    let mut out = Vec::new();
    let bad = window("CHG3", &["mrs-r1/card-9"], Scope::Ci, START, START + MINUTE);
    let error = correlator.create_window(bad, false, START, &mut out).unwrap_err();
    assert!(matches!(&error, MaintenanceError::Invalid(m) if m.contains("mrs-r1/card-9")), "{error}");
    assert!(correlator.maintenance().is_empty());
    assert!(correlator.take_changes().is_none_or(|c| c.windows.is_empty()));
}

#[test]
fn a_window_that_ended_while_the_engine_was_down_opens_its_incident_naming_it() {
    let mut correlator = Correlator::new(sample(), CorrelatorConfig::default());
    let mut log = CoreSnapshot::default();
    let mut out = Vec::new();
    let spec = window("CHG0012345", &["mrs-r1/card-1"], Scope::Ci, START, START + 10 * MINUTE);
    correlator.create_window(spec, false, START, &mut out).unwrap();
    correlator.apply(&Alarm::raise("mrs-r1/card-1", "EQPT_FAIL", Severity::Critical, START), START + MINUTE, &mut out);
    log.fold(correlator.take_changes().unwrap());
    let (mut restored, _) = Correlator::restore(sample(), CorrelatorConfig::default(), log);
    assert_eq!(suppressed(&restored).len(), 3, "suppressed again before any input");
    // The first input after the restart is past the window's end.
    restored.tick(START + 30 * MINUTE, &mut out);
    let incidents: Vec<&Incident> = restored.incidents().collect();
    assert_eq!(incidents.len(), 1);
    let named =
        incidents[0].timeline.iter().any(|e| e.kind == TimelineKind::Maintenance && e.text.contains("CHG0012345"));
    assert!(named, "{:?}", incidents[0].timeline);
}

#[test]
fn change_management_closing_a_change_at_its_actual_end_ends_the_window() {
    let mut correlator = Correlator::new(sample(), CorrelatorConfig::default());
    let mut out = Vec::new();
    let spec = window("CHG5", &["mrs-r1/card-1"], Scope::Ci, START, START + 60 * MINUTE);
    correlator.create_window(spec.clone(), true, START, &mut out).unwrap();
    correlator.apply(&Alarm::raise("mrs-r1/card-1", "EQPT_FAIL", Severity::Critical, START), START + MINUTE, &mut out);
    assert_eq!(correlator.incidents().count(), 0);
    // The changes topic sends the change again, its end now the actual end: past.
    let closed = WindowSpec { end: START + 2 * MINUTE, ..spec };
    correlator.create_window(closed, true, START + 3 * MINUTE, &mut out).unwrap();
    assert_eq!(correlator.maintenance().get("CHG5").unwrap().state, WindowState::Ended);
    assert_eq!(correlator.incidents().count(), 1, "the card is still down");
    // Windows without bound, or with a padded reference, are refused.
    let long = window("CHG6", &["mrs-r1"], Scope::Ci, START, START + 91 * 24 * 60 * MINUTE);
    assert!(correlator.create_window(long, false, START + 3 * MINUTE, &mut out).is_err());
    let padded = window(" CHG7", &["mrs-r1"], Scope::Ci, START, START + MINUTE * 10);
    assert!(correlator.create_window(padded, false, START + 3 * MINUTE, &mut out).is_err());
}
