//! Properties of the correlation core over random storms on the sample network: raises,
//! repeats, severity changes and clears in any interleaving, on any CI but customers, late
//! and reordered, with and without notification ids and sequences, with operator actions
//! between them, restored from the changelog at any point.

use faultline::correlate::changelog::CoreSnapshot;
use faultline::correlate::{Correlator, CorrelatorConfig};
use faultline::model::EpochMillis;
use faultline::model::alarm::{Alarm, Severity};
use faultline::model::incident::{ChangeKind, Incident, IncidentChange, IncidentId, IncidentState};
use faultline::model::state::State;
use faultline::model::topology::{CiClass, Topology};
use faultline::topology_file;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::sync::Arc;

fn sample() -> Arc<Topology> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sample-network.jsonl");
    Arc::new(topology_file::load(&path).unwrap())
}

/// Resources that raise alarms: everything but the customers, the services included (a
/// service assurance system raises alarms on services themselves).
fn resources(topology: &Topology) -> Vec<String> {
    topology.iter().filter(|(_, ci)| ci.class != CiClass::Customer).map(|(_, ci)| ci.id.to_string()).collect()
}

const TYPES: &[&str] = &["LOS", "EQPT_FAIL", "HIGH_BER"];

#[derive(Clone, Debug)]
struct Op {
    resource: usize,
    alarm_type: usize,
    /// None is a clear.
    severity: Option<Severity>,
    /// Milliseconds since the previous notification.
    gap: EpochMillis,
    /// How much older than stream time the notification's event time is (reordered on
    /// the way: a clear overtaking its raise, a late repeat).
    late: EpochMillis,
    /// A notification id and sequence, from small ranges so that they meet again
    /// (retransmissions, lower sequences); `None`: the notification carries none.
    notification: Option<(u8, u64)>,
    /// What an operator does after the notification, to the incident picked by `resource`
    /// among those not closed.
    action: Option<Action>,
}

#[derive(Clone, Copy, Debug)]
enum Action {
    Acknowledge,
    Note,
    Resolve { force: bool },
}

fn action() -> impl Strategy<Value = Option<Action>> {
    prop_oneof![
        12 => Just(None),
        1 => Just(Some(Action::Acknowledge)),
        1 => Just(Some(Action::Note)),
        1 => any::<bool>().prop_map(|force| Some(Action::Resolve { force })),
    ]
}

/// The incident policy of a run: as configured by default, or with caps small enough that
/// the sample network's incidents leave roots and alarms out.
fn policy() -> impl Strategy<Value = CorrelatorConfig> {
    prop_oneof![
        Just(CorrelatorConfig::default()),
        (1usize..4, 1usize..6).prop_map(|(max_roots, max_alarms)| {
            let mut config = CorrelatorConfig::default();
            config.incidents.max_roots = max_roots;
            config.incidents.max_alarms = max_alarms;
            config
        }),
    ]
}

fn op(resources: usize) -> impl Strategy<Value = Op> {
    let severity = prop_oneof![
        Just(None),
        Just(Some(Severity::Critical)),
        Just(Some(Severity::Major)),
        Just(Some(Severity::Minor)),
        Just(Some(Severity::Warning)),
    ];
    let late = prop_oneof![4 => Just(0i64), 1 => 1..90_000i64];
    let notification = prop_oneof![3 => Just(None), 1 => (0..3u8, 0..4u64).prop_map(Some)];
    (0..resources, 0..TYPES.len(), severity, 0..120_000i64, late, notification, action()).prop_map(
        |(resource, alarm_type, severity, gap, late, notification, action)| Op {
            resource,
            alarm_type,
            severity,
            gap,
            late,
            notification,
            action,
        },
    )
}

fn alarm(resource: &str, op: &Op, now: EpochMillis) -> Alarm {
    let time = now - op.late;
    let mut alarm = match op.severity {
        Some(severity) => Alarm::raise(resource, TYPES[op.alarm_type], severity, time),
        None => Alarm::clear(resource, TYPES[op.alarm_type], time),
    };
    if let Some((id, sequence)) = op.notification {
        alarm.notification_id = format!("ems-{id}");
        alarm.sequence = sequence;
    }
    alarm
}

/// Plays the ops with the runtime's rhythm (timers run before each notification) and
/// returns every incident change.
fn play(
    correlator: &mut Correlator,
    names: &[String],
    ops: &[Op],
    start: EpochMillis,
) -> (Vec<IncidentChange>, EpochMillis) {
    let mut out = Vec::new();
    let mut now = start;
    for op in ops {
        now += op.gap;
        correlator.tick(now, &mut out);
        correlator.apply(&alarm(&names[op.resource], op, now), now, &mut out);
        if let Some(action) = op.action {
            act(correlator, action, op.resource, now, &mut out);
        }
        check_invariants(correlator);
    }
    (out, now)
}

/// An operator action on one of the incidents not closed (picked by `pick`); refusals
/// (an incident already acknowledged, one still impacting services resolved without
/// force) are part of the output too.
fn act(correlator: &mut Correlator, action: Action, pick: usize, now: EpochMillis, out: &mut Vec<IncidentChange>) {
    let ids: Vec<IncidentId> = correlator.incidents().map(|i| i.id).collect();
    let Some(&id) = ids.get(pick % ids.len().max(1)) else { return };
    let result = match action {
        Action::Acknowledge => correlator.acknowledge(id, "noc-1", now),
        Action::Note => correlator.add_note(id, "noc-2", "checking the site", "", now),
        Action::Resolve { force } => correlator.resolve(id, "noc-3", "done", force, now),
    };
    match result {
        Ok(change) => out.push(change),
        Err(error) => out.push(IncidentChange {
            kind: ChangeKind::Updated,
            incident: Arc::new(Incident { title: format!("refused: {error}"), ..Incident::new(id, now) }),
        }),
    }
}

/// Every failed CI is explained by root causes; every healthy one has none; what incident
/// management keeps incrementally equals a recomputation from scratch.
fn check_invariants(correlator: &Correlator) {
    if let Err(difference) = correlator.check_views() {
        panic!("incremental views diverged: {difference}");
    }
    let topology = correlator.topology();
    for (idx, ci) in topology.iter() {
        let state = correlator.impact().state(idx);
        let roots = correlator.impact().roots(idx);
        assert_eq!(state.effective == State::Up, roots.is_empty(), "{}: {:?} {:?}", ci.id, state, roots);
        assert!(state.effective >= state.own, "{}: effective below own state", ci.id);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn clearing_everything_leaves_no_alarm_and_no_open_incident(ops in prop::collection::vec(op(25), 1..150)) {
        let topology = sample();
        let names = resources(&topology);
        let ops: Vec<Op> = ops.into_iter().map(|mut o| { o.resource %= names.len(); o }).collect();
        let mut correlator = Correlator::new(topology.clone(), CorrelatorConfig::default());
        let (_, mut now) = play(&mut correlator, &names, &ops, 0);

        let raised: BTreeSet<(usize, usize)> = ops.iter().map(|o| (o.resource, o.alarm_type)).collect();
        let mut out = Vec::new();
        for (resource, alarm_type) in raised {
            now += 1;
            let clear = Op { resource, alarm_type, severity: None, gap: 0, late: 0, notification: None, action: None };
            correlator.apply(&alarm(&names[resource], &clear, now), now, &mut out);
        }
        correlator.tick(now + 3_600_000, &mut out);

        prop_assert_eq!(correlator.stats().active_alarms, 0);
        for (idx, ci) in topology.iter() {
            prop_assert_eq!(correlator.impact().state(idx).effective, State::Up, "{} not restored", ci.id);
        }
        let still_open: Vec<_> = correlator.incidents().filter(|i| i.state.is_active()).map(|i| i.id).collect();
        prop_assert!(still_open.is_empty(), "incidents still open: {:?}", still_open);
    }

    #[test]
    fn the_same_input_gives_the_same_output(ops in prop::collection::vec(op(25), 1..150), config in policy()) {
        let topology = sample();
        let names = resources(&topology);
        let ops: Vec<Op> = ops.into_iter().map(|mut o| { o.resource %= names.len(); o }).collect();
        let mut first = Correlator::new(topology.clone(), config.clone());
        let mut second = Correlator::new(topology, config);
        let (a, _) = play(&mut first, &names, &ops, 1_000);
        let (b, _) = play(&mut second, &names, &ops, 1_000);
        prop_assert_eq!(a, b);
        prop_assert_eq!(first.stats(), second.stats());
    }

    /// The crash-safety contract of the core: the changelog written at every commit, folded
    /// as a compacted topic keeps it, restores a correlator that continues exactly like the
    /// uninterrupted one, wherever the cut falls (including between many commits).
    #[test]
    fn a_restore_from_the_changelog_continues_exactly_like_the_original(
        ops in prop::collection::vec(op(25), 2..150),
        cut in 0usize..150,
        commit_every in 1usize..20,
        config in policy(),
    ) {
        let topology = sample();
        let names = resources(&topology);
        let ops: Vec<Op> = ops.into_iter().map(|mut o| { o.resource %= names.len(); o }).collect();
        let cut = cut % ops.len();

        let mut original = Correlator::new(topology.clone(), config.clone());
        let mut log = CoreSnapshot::default();
        let mut now = 0;
        for chunk in ops[..cut].chunks(commit_every) {
            let (_, end) = play(&mut original, &names, chunk, now);
            now = end;
            if let Some(changes) = original.take_changes() {
                log.fold(changes);
            }
        }
        let (mut restored, summary) = Correlator::restore(topology.clone(), config, log);
        prop_assert_eq!(summary.unknown_cis, 0);
        prop_assert_eq!(restored.stats(), original.stats());
        let before: Vec<_> = original.incidents().cloned().collect();
        let after: Vec<_> = restored.incidents().cloned().collect();
        prop_assert_eq!(before, after);
        for (idx, ci) in topology.iter() {
            prop_assert_eq!(restored.impact().state(idx), original.impact().state(idx), "{}", ci.id);
            prop_assert_eq!(restored.impact().roots(idx).to_vec(), original.impact().roots(idx).to_vec(), "{}", ci.id);
        }

        let (expected, _) = play(&mut original, &names, &ops[cut..], now);
        let (actual, _) = play(&mut restored, &names, &ops[cut..], now);
        prop_assert_eq!(actual, expected);
        prop_assert_eq!(restored.stats(), original.stats());
        prop_assert_eq!(restored.take_changes(), original.take_changes());
    }

    #[test]
    fn failures_on_one_redundant_route_never_cause_an_outage(ops in prop::collection::vec(op(5), 1..100)) {
        // Everything under Paris-Lyon route A, including both cards its ports sit on.
        let names: Vec<String> = ["par-r1/1/1", "lyo-r1/1/1", "link-par-lyo-a", "par-r1/card-1", "lyo-r1/card-1"]
            .iter().map(|s| s.to_string()).collect();
        let mut correlator = Correlator::new(sample(), CorrelatorConfig::default());
        let (changes, _) = play(&mut correlator, &names, &ops, 0);
        for change in &changes {
            for service in &change.incident.services {
                prop_assert!(service.impact != State::Down, "{} went down in {:?}", service.id, change.incident.title);
            }
            prop_assert!(change.incident.state != IncidentState::Closed || change.incident.resolved_at.is_some());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// What-if: failing some CIs in a simulation gives, CI by CI, the states raising a
    /// critical alarm on each of them does, and changes nothing.
    #[test]
    fn a_simulated_failure_predicts_what_the_real_one_does(
        ops in prop::collection::vec(op(25), 0..60),
        fail in prop::collection::vec(0usize..60, 1..4),
    ) {
        let topology = sample();
        let names = resources(&topology);
        let ops: Vec<Op> = ops.into_iter().map(|mut o| { o.resource %= names.len(); o.action = None; o }).collect();
        let mut live = Correlator::new(topology.clone(), CorrelatorConfig::default());
        let (_, now) = play(&mut live, &names, &ops, 0);
        let all: Vec<_> = topology.iter().map(|(idx, _)| idx).collect();
        let failed: Vec<_> = fail.iter().map(|&f| all[f % all.len()]).collect();
        let before: Vec<_> = all.iter().map(|&idx| live.impact().state(idx).clone()).collect();
        let simulation = live.impact().simulate(&failed);
        let after: Vec<_> = all.iter().map(|&idx| live.impact().state(idx).clone()).collect();
        prop_assert_eq!(&before, &after, "a simulation changes nothing");

        let mut out = Vec::new();
        for &idx in &failed {
            let id = &topology.ci(idx).id;
            live.apply(&Alarm::raise(id, "SIMULATED", Severity::Critical, now + 1), now + 1, &mut out);
        }
        for (i, &idx) in all.iter().enumerate() {
            let real = live.impact().state(idx).effective;
            match simulation.get(&idx) {
                Some(&(was, would_be)) => {
                    prop_assert_eq!(was, before[i].effective);
                    prop_assert_eq!(would_be, real, "{}", topology.ci(idx).id);
                }
                None => prop_assert_eq!(real, before[i].effective, "{} moved", topology.ci(idx).id),
            }
        }
    }
}
