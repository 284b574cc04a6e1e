//! The impact stage keeps counts (dependencies down and degraded, roots inherited) and
//! moves them by what changed. Here it is held against a from-scratch evaluation, a plain
//! recursion over the graph, after every step of random raise and clear sequences on
//! random graphs with every rule; and the fan-in storm (a national service over thousands
//! of ports failing one by one) is played through the whole correlator.

use faultline::correlate::alarm_stage::ResourceUpdate;
use faultline::correlate::changelog::CoreSnapshot;
use faultline::correlate::impact::{Changes, ImpactStage};
use faultline::correlate::incidents::IncidentPolicy;
use faultline::correlate::{Correlator, CorrelatorConfig};
use faultline::generate::fan_in;
use faultline::kafka::changelog;
use faultline::model::incident::IncidentChange;
use faultline::model::state::State;
use faultline::model::topology::{CiClass, CiIdx, CiRecord, Rule, Topology};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What a CI's rule makes of its dependencies' states, the long way.
fn rule_state(rule: Rule, deps: &[State]) -> State {
    if deps.is_empty() {
        return State::Up;
    }
    let worst = deps.iter().copied().max().unwrap_or(State::Up);
    let down = deps.iter().filter(|&&s| s == State::Down).count();
    match rule {
        Rule::Any => worst,
        Rule::Degrade => worst.min(State::Degraded),
        Rule::All if down == deps.len() => State::Down,
        Rule::Quorum(k) if deps.len() - down < k as usize => State::Down,
        Rule::All | Rule::Quorum(_) => worst.min(State::Degraded),
    }
}

/// Effective states and roots of every CI, recomputed from the own states alone.
fn reference(topology: &Topology, own: &[State]) -> Vec<(State, BTreeSet<CiIdx>)> {
    fn eval(
        topology: &Topology,
        own: &[State],
        ci: CiIdx,
        memo: &mut BTreeMap<CiIdx, (State, BTreeSet<CiIdx>)>,
    ) -> (State, BTreeSet<CiIdx>) {
        if let Some(done) = memo.get(&ci) {
            return done.clone();
        }
        let deps: Vec<_> = topology.dependencies(ci).iter().map(|&d| eval(topology, own, d, memo)).collect();
        let from_deps = rule_state(topology.ci(ci).rule, &deps.iter().map(|d| d.0).collect::<Vec<_>>());
        let mine = own[ci as usize];
        let effective = mine.max(from_deps);
        let mut roots = BTreeSet::new();
        if !effective.is_up() {
            if mine > from_deps {
                roots.insert(ci);
            }
            for (state, theirs) in &deps {
                if !state.is_up() {
                    roots.extend(theirs);
                }
            }
        }
        memo.insert(ci, (effective, roots.clone()));
        (effective, roots)
    }
    let mut memo = BTreeMap::new();
    (0..topology.len() as CiIdx).map(|ci| eval(topology, own, ci, &mut memo)).collect()
}

fn record(id: String, depends_on: Vec<String>, rule: Rule) -> CiRecord {
    CiRecord {
        id,
        class: CiClass::Device,
        name: String::new(),
        depends_on,
        rule,
        customer: None,
        sla: None,
        incidents: Some(false),
        attributes: Default::default(),
    }
}

/// A CI of a random graph: the CIs below it it depends on (as offsets back from it) and
/// its rule (a quorum's k taken modulo its dependencies).
#[derive(Clone, Debug)]
struct Node {
    deps: Vec<usize>,
    rule: u8,
    k: u32,
}

fn node() -> impl Strategy<Value = Node> {
    (prop::collection::vec(1..8usize, 0..5), 0..4u8, 0..8u32).prop_map(|(deps, rule, k)| Node { deps, rule, k })
}

fn graph(nodes: &[Node]) -> Topology {
    let records = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let deps: BTreeSet<usize> = node.deps.iter().filter(|&&back| back <= i).map(|&back| i - back).collect();
            let rule = match node.rule {
                0 => Rule::Any,
                1 => Rule::All,
                2 if !deps.is_empty() => Rule::Quorum(1 + node.k % deps.len() as u32),
                2 => Rule::Quorum(0),
                _ => Rule::Degrade,
            };
            record(format!("ci-{i}"), deps.iter().map(|d| format!("ci-{d}")).collect(), rule)
        })
        .collect();
    Topology::from_records(records).expect("a graph with dependencies only downwards")
}

/// A wide graph: `leaves` CIs, a quorum CI over all of them, an `any` CI over it and one
/// leaf, a `degrade` CI over a few leaves, an `all` CI over two of them.
fn wide(leaves: usize) -> Topology {
    let leaf = |i: usize| format!("leaf-{i}");
    let mut records: Vec<_> = (0..leaves).map(|i| record(leaf(i), Vec::new(), Rule::Any)).collect();
    records.push(record("quorum".into(), (0..leaves).map(leaf).collect(), Rule::Quorum(leaves as u32 / 2)));
    records.push(record("above".into(), vec!["quorum".into(), leaf(3)], Rule::Any));
    records.push(record("degrade".into(), (0..leaves).step_by(7).map(leaf).collect(), Rule::Degrade));
    records.push(record("all".into(), vec!["above".into(), "degrade".into()], Rule::All));
    Topology::from_records(records).expect("a valid graph")
}

fn own_state(level: u8) -> State {
    match level % 4 {
        0 | 1 => State::Up,
        2 => State::Degraded,
        _ => State::Down,
    }
}

/// Applies each (CI, own state) in turn, checking the stage against the reference after
/// every step: states, roots, and the changes it reported with the roots gained and lost.
/// Returns the most roots a CI had.
fn check_steps(topology: Arc<Topology>, steps: &[(usize, State)]) -> Result<usize, TestCaseError> {
    let n = topology.len();
    let mut stage = ImpactStage::new(topology.clone());
    let mut own = vec![State::Up; n];
    let mut before = reference(&topology, &own);
    let mut changes = Changes::default();
    let mut most = 0;
    for (step, &(ci, state)) in steps.iter().enumerate() {
        let ci = ci % n;
        own[ci] = state;
        changes.clear();
        let update = ResourceUpdate {
            resource: topology.ci(ci as CiIdx).id.clone(),
            own_state: state,
            alarms: Default::default(),
            ci: None,
        };
        stage.apply(update, &mut changes);
        let after = reference(&topology, &own);
        let reported: BTreeMap<CiIdx, _> = changes.iter().map(|c| (c.ci, c)).collect();
        prop_assert_eq!(reported.len(), changes.len(), "step {}: a CI reported twice", step);
        prop_assert!(reported.contains_key(&(ci as CiIdx)), "step {}: the updated CI is reported", step);
        for idx in 0..n as CiIdx {
            let (effective, roots) = &after[idx as usize];
            let state = stage.state(idx);
            prop_assert_eq!(state.effective, *effective, "step {}: state of {}", step, idx);
            prop_assert_eq!(state.own, own[idx as usize]);
            let live = stage.roots(idx);
            prop_assert_eq!(
                live.to_vec(),
                roots.iter().copied().collect::<Vec<_>>(),
                "step {}: roots of {}",
                step,
                idx
            );
            prop_assert_eq!(live.len(), roots.len());
            most = most.max(roots.len());
            prop_assert_eq!(stage.is_root(idx), roots.contains(&idx));
            let (was, was_roots) = &before[idx as usize];
            let gained: Vec<CiIdx> = roots.difference(was_roots).copied().collect();
            let lost: Vec<CiIdx> = was_roots.difference(roots).copied().collect();
            match reported.get(&idx) {
                Some(change) => {
                    prop_assert_eq!(change.was, *was, "step {}: previous state of {}", step, idx);
                    prop_assert_eq!(change.gained, &gained[..], "step {}: roots {} gained", step, idx);
                    prop_assert_eq!(change.lost, &lost[..], "step {}: roots {} lost", step, idx);
                }
                None => prop_assert!(
                    effective == was && gained.is_empty() && lost.is_empty(),
                    "step {}: {} moved unreported",
                    step,
                    idx
                ),
            }
        }
        // Propagation order: dependencies before their dependents.
        let order: BTreeMap<CiIdx, usize> = changes.cis().iter().enumerate().map(|(i, &c)| (c, i)).collect();
        for (&c, &at) in &order {
            for d in topology.dependencies(c) {
                prop_assert!(order.get(d).is_none_or(|&d_at| d_at < at), "step {}: {} before {}", step, c, d);
            }
        }
        before = after;
    }
    Ok(most)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn counts_and_roots_match_a_recomputation_on_random_graphs(
        nodes in prop::collection::vec(node(), 1..14),
        steps in prop::collection::vec((0..64usize, 0..4u8), 1..60),
    ) {
        let topology = Arc::new(graph(&nodes));
        let steps: Vec<_> = steps.into_iter().map(|(ci, level)| (ci, own_state(level))).collect();
        check_steps(topology, &steps)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn counts_and_roots_match_a_recomputation_past_a_hundred_roots(
        (leaves, order) in (100..140usize).prop_flat_map(|n| (Just(n), Just((0..n).collect::<Vec<_>>()).prop_shuffle())),
        tail in prop::collection::vec((0..200usize, 0..10u8), 100..300),
    ) {
        let topology = Arc::new(wide(leaves));
        // Most leaves fail in some order, so that the quorum CI inherits a hundred roots;
        // then mostly clears, the CIs above failing themselves now and then, so that it
        // sheds them again.
        let mut steps: Vec<_> = order.into_iter().take(leaves - 10).map(|leaf| (leaf, State::Down)).collect();
        steps.extend(tail.into_iter().map(|(ci, level)| {
            let state = match level {
                0..=1 => State::Down,
                2 => State::Degraded,
                _ => State::Up,
            };
            (ci % (leaves + 4), state)
        }));
        let most = check_steps(topology, &steps)?;
        prop_assert!(most > 64, "the quorum CI had {} roots at most", most);
    }
}

/// The fan-in storm through the whole correlator: a national service over 2,000 ports
/// (quorum 1,000) failing one by one, some clearing again, then all clearing. The incident
/// follows, its views stay what a recomputation gives, and nothing is left once the
/// hold-down has passed.
#[test]
fn the_fan_in_storm_ends_with_everything_cleared() {
    let ports = 2_000;
    let topology = Arc::new(Topology::from_records(fan_in::network(ports)).expect("a valid network"));
    let policy = IncidentPolicy { hold_down_ms: 60_000, reopen_window_ms: 120_000, ..IncidentPolicy::default() };
    let config = CorrelatorConfig { incidents: policy, ..CorrelatorConfig::default() };
    let mut correlator = Correlator::new(topology.clone(), config);
    let alarms = fan_in::storm(ports, 11, 8, 0, 1_000.0);
    let cfs = topology.lookup(fan_in::CFS).expect("the national service");
    let mut out = Vec::new();
    let mut worst = State::Up;
    let mut most_roots = 0;
    for (i, alarm) in alarms.iter().enumerate() {
        correlator.apply(alarm, alarm.event_time, &mut out);
        out.clear();
        worst = worst.max(correlator.impact().state(cfs).effective);
        most_roots = most_roots.max(correlator.impact().roots(cfs).len());
        if i % 97 == 0 {
            correlator.check_views().unwrap_or_else(|difference| panic!("after alarm {i}: {difference}"));
        }
    }
    correlator.check_views().expect("views as a recomputation gives them");
    assert_eq!(worst, State::Down, "the service went down once more than half its ports failed");
    assert!(most_roots > ports / 2, "the service had {most_roots} roots at most");
    let incidents: Vec<_> = correlator.incidents().collect();
    assert_eq!(incidents.len(), 1, "one incident for the whole storm");
    let incident = incidents[0];
    let named = incident.root_causes.len();
    assert_eq!(named, IncidentPolicy::default().max_roots, "the first roots named");
    assert_eq!(named + incident.omitted.root_causes as usize, ports, "every port failed once and stays counted");
    assert_eq!(correlator.stats().active_alarms, 0);
    assert_eq!(correlator.impact().state(cfs).effective, State::Up);
    assert!(correlator.impact().roots(cfs).is_empty());

    let end = alarms.last().expect("a storm").event_time;
    correlator.tick(end + 61_000, &mut out);
    assert!(correlator.incidents().all(|i| !i.state.is_active()), "resolved after the hold-down");
    correlator.tick(end + 61_000 + 121_000, &mut out);
    assert_eq!(correlator.incidents().count(), 0, "closed after the reopen window");
    correlator.check_views().expect("views as a recomputation gives them");
}

/// The fan-in storm at the size a carrier meets it (20,000 ports, quorum 10,000), played
/// until every port has failed: the incident names its first roots and alarms and counts
/// the others, so that it stays far within one record; the changelog never has to trim it,
/// and a restore from that changelog in the middle of the storm carries on exactly.
#[test]
fn a_storm_incident_stays_within_one_record_and_restores_exactly() {
    const RECORD: usize = 1_000_000;
    let ports = 20_000;
    let topology = Arc::new(Topology::from_records(fan_in::network(ports)).expect("a valid network"));
    let config = CorrelatorConfig::default();
    let cap = config.incidents.max_alarms;
    let alarms = fan_in::storm(ports, 5, 8, 0, 1_000.0);
    let last_raise = alarms.iter().rposition(|a| !a.cleared).expect("raises");
    let cut = last_raise / 2;

    let mut original = Correlator::new(topology.clone(), config.clone());
    let mut log = CoreSnapshot::default();
    let mut largest = 0;
    let commit = |correlator: &mut Correlator, log: &mut CoreSnapshot, largest: &mut usize| {
        let Some(changes) = correlator.take_changes() else { return };
        changelog::encode(
            &changes,
            RECORD,
            |_| None,
            |incident, size| panic!("{} trimmed at {size} bytes", incident.id),
            |key, value| {
                *largest = (*largest).max(key.len() + value.map_or(0, <[u8]>::len));
                changelog::fold(log, key.as_bytes(), value).expect("a record the engine reads back");
            },
        );
    };
    let mut out: Vec<IncidentChange> = Vec::new();
    for (i, alarm) in alarms[..cut].iter().enumerate() {
        original.apply(alarm, alarm.event_time, &mut out);
        if i % 500 == 499 {
            commit(&mut original, &mut log, &mut largest);
        }
    }
    commit(&mut original, &mut log, &mut largest);
    let (mut restored, _) = Correlator::restore(topology.clone(), config, log.clone());
    let (mut expected, mut actual) = (Vec::new(), Vec::new());
    for alarm in &alarms[cut..=last_raise] {
        original.apply(alarm, alarm.event_time, &mut expected);
        restored.apply(alarm, alarm.event_time, &mut actual);
    }
    assert!(actual == expected, "the restored engine published other changes than the original");
    original.check_views().expect("views as a recomputation gives them");
    restored.check_views().expect("views as a recomputation gives them");
    commit(&mut original, &mut log, &mut largest);

    let incidents: Vec<_> = original.incidents().collect();
    assert_eq!(incidents.len(), 1, "one incident for the whole storm");
    let incident = incidents[0];
    let active = original.stats().active_alarms as usize;
    assert!(active > 10_000, "{active} ports failed at the peak");
    assert_eq!(incident.root_cause_alarms.len(), cap, "the first alarms listed");
    // Listed: active alarms, and cleared ones until they are a tenth of the list; counted:
    // every other active alarm.
    let listed_active = incident.root_cause_alarms.iter().filter(|a| a.cleared_at.is_none()).count();
    assert!(cap - listed_active < cap / 10, "{} cleared alarms listed", cap - listed_active);
    assert_eq!(listed_active + incident.omitted.root_cause_alarms as usize, active);
    assert_eq!(incident.root_causes.len() + incident.omitted.root_causes as usize, ports, "every port failed once");
    let mut bytes = Vec::new();
    faultline::proto::encode::incident(incident, &mut bytes);
    assert!(bytes.len() < RECORD / 4, "the incident takes {} bytes", bytes.len());
    assert!(largest < RECORD, "a changelog record of {largest} bytes");
}
