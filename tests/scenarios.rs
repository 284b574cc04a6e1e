//! Scenario fixtures: `tests/scenarios/*.scenario` describe a topology, timed alarms and
//! operator actions, and what a NOC engineer expects to see (incidents, their root causes,
//! symptoms, impacted services, priorities, CI states). Each file runs against the pure core.
//! The format is documented in `tests/scenarios/README.md`.

use faultline::correlate::incidents::IncidentPolicy;
use faultline::correlate::maintenance::{Scope, WindowSpec};
use faultline::correlate::{Correlator, CorrelatorConfig};
use faultline::model::EpochMillis;
use faultline::model::alarm::{Alarm, Severity};
use faultline::model::incident::{Incident, IncidentChange, IncidentId};
use faultline::topology_file;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn duration(text: &str) -> EpochMillis {
    if let Some(ms) = text.strip_suffix("ms") {
        ms.parse().expect("milliseconds")
    } else if let Some(s) = text.strip_suffix('s') {
        s.parse::<EpochMillis>().expect("seconds") * 1000
    } else if let Some(m) = text.strip_suffix('m') {
        m.parse::<EpochMillis>().expect("minutes") * 60_000
    } else if let Some(h) = text.strip_suffix('h') {
        h.parse::<EpochMillis>().expect("hours") * 3_600_000
    } else {
        panic!("bad duration `{text}` (use 500ms, 10s, 2m or 1h)")
    }
}

fn severity(text: &str) -> Severity {
    match text {
        "critical" => Severity::Critical,
        "major" => Severity::Major,
        "minor" => Severity::Minor,
        "warning" => Severity::Warning,
        "indeterminate" => Severity::Indeterminate,
        other => panic!("bad severity `{other}`"),
    }
}

struct Run {
    name: String,
    correlator: Correlator,
    now: EpochMillis,
    changes: Vec<IncidentChange>,
}

impl Run {
    fn fail(&self, line: usize, text: &str, why: String) -> ! {
        panic!("{}:{line}: `{text}`\n  {why}", self.name)
    }

    fn incident(&self, line: usize, text: &str, id: &str) -> &Incident {
        let id: IncidentId = id.parse().unwrap_or_else(|_| self.fail(line, text, format!("bad incident id {id}")));
        match self.correlator.incident(id) {
            Some(i) => i,
            None => self.fail(line, text, format!("incident {id} does not exist (or is closed)")),
        }
    }
}

fn set(list: &str) -> BTreeSet<String> {
    list.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn run_scenario(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut topology = repo().join("config/sample-network.jsonl");
    let mut policy = IncidentPolicy::default();
    let mut run: Option<Run> = None;

    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let content = raw.split('#').next().unwrap_or_default().trim();
        if content.is_empty() {
            continue;
        }
        let words: Vec<&str> = content.split_whitespace().collect();
        match words[0] {
            "topology" => topology = repo().join(words[1]),
            "hold-down" => policy.hold_down_ms = duration(words[1]),
            "reopen-window" => policy.reopen_window_ms = duration(words[1]),
            "max-roots" => policy.max_roots = words[1].parse().unwrap(),
            "max-alarms" => policy.max_alarms = words[1].parse().unwrap(),
            _ => {
                let r = run.get_or_insert_with(|| {
                    let topo = topology_file::load(&topology).unwrap_or_else(|e| panic!("{name}: {e}"));
                    let config = CorrelatorConfig { incidents: policy.clone(), ..CorrelatorConfig::default() };
                    Run {
                        name: name.clone(),
                        correlator: Correlator::new(Arc::new(topo), config),
                        now: 0,
                        changes: Vec::new(),
                    }
                });
                step(r, line, content, &words);
            }
        }
    }
}

fn step(r: &mut Run, line: usize, text: &str, words: &[&str]) {
    if let Err(difference) = r.correlator.check_views() {
        r.fail(line, text, format!("incremental views diverged: {difference}"));
    }
    match words[0] {
        "at" => {
            r.now = duration(words[1]);
            r.correlator.tick(r.now, &mut r.changes);
            let now = r.now;
            match &words[2..] {
                ["raise", resource, alarm_type, sev] => {
                    r.correlator.apply(&Alarm::raise(resource, alarm_type, severity(sev), now), now, &mut r.changes);
                }
                ["clear", resource, alarm_type] => {
                    r.correlator.apply(&Alarm::clear(resource, alarm_type, now), now, &mut r.changes);
                }
                ["tick"] => {}
                // `maintenance CHANGE cis=A,B [scope=ci|dependents] start=DURATION end=DURATION`
                ["maintenance", change, pairs @ ..] => {
                    let mut spec =
                        WindowSpec { change: change.to_string(), by: "scenario".into(), ..Default::default() };
                    for pair in pairs {
                        match pair.split_once('=') {
                            Some(("cis", cis)) => spec.cis = set(cis).into_iter().collect(),
                            Some(("scope", scope)) => {
                                spec.scope =
                                    Scope::parse(scope).unwrap_or_else(|| r.fail(line, text, "bad scope".into()))
                            }
                            Some(("start", at)) => spec.start = duration(at),
                            Some(("end", at)) => spec.end = duration(at),
                            _ => r.fail(line, text, format!("bad maintenance setting `{pair}`")),
                        }
                    }
                    r.correlator
                        .create_window(spec, false, now, &mut r.changes)
                        .unwrap_or_else(|e| r.fail(line, text, e.to_string()));
                }
                ["maintenance-extend", change, end] => {
                    let end = duration(end.strip_prefix("end=").unwrap_or(end));
                    r.correlator
                        .extend_window(change, end, now, &mut r.changes)
                        .unwrap_or_else(|e| r.fail(line, text, e.to_string()));
                }
                [verb @ ("maintenance-end" | "maintenance-cancel"), change, by] => {
                    let cancel = *verb == "maintenance-cancel";
                    r.correlator
                        .finish_window(change, cancel, by, now, &mut r.changes)
                        .unwrap_or_else(|e| r.fail(line, text, e.to_string()));
                }
                ["ack", id, by] => {
                    let change = r
                        .correlator
                        .acknowledge(id.parse().unwrap(), by, now)
                        .unwrap_or_else(|e| r.fail(line, text, e.to_string()));
                    r.changes.push(change);
                }
                ["resolve", id, by, how @ ..] => {
                    let force = how.contains(&"force");
                    match r.correlator.resolve(id.parse().unwrap(), by, "", force, now) {
                        Ok(change) if !how.contains(&"refused") => r.changes.push(change),
                        Ok(_) => r.fail(line, text, "resolved, not refused".into()),
                        // `refused NAME...`: refused, the message naming each.
                        Err(e) if how.first() == Some(&"refused") => {
                            let message = e.to_string();
                            for name in &how[1..] {
                                if !message.contains(name) {
                                    r.fail(line, text, format!("refused as `{message}`, without naming {name}"));
                                }
                            }
                        }
                        Err(e) => r.fail(line, text, e.to_string()),
                    }
                }
                _ => r.fail(line, text, "unknown action".into()),
            }
        }
        "expect" => expect(r, line, text, &words[1..]),
        _ => r.fail(line, text, "unknown directive".into()),
    }
}

fn expect(r: &Run, line: usize, text: &str, words: &[&str]) {
    match words {
        ["incidents", n] => {
            let count = r.correlator.incidents().count();
            if count.to_string() != *n {
                let ids: Vec<String> = r.correlator.incidents().map(|i| format!("{} {}", i.id, i.title)).collect();
                r.fail(line, text, format!("{count} incidents: {ids:?}"));
            }
        }
        ["state", ci, state] => {
            let topology = r.correlator.topology();
            let idx = topology.lookup(ci).unwrap_or_else(|| r.fail(line, text, format!("unknown CI {ci}")));
            let actual = r.correlator.impact().state(idx).effective.as_str();
            if actual != *state {
                r.fail(line, text, format!("{ci} is {actual}"));
            }
        }
        ["roots", ci, roots] => {
            let topology = r.correlator.topology();
            let idx = topology.lookup(ci).unwrap_or_else(|| r.fail(line, text, format!("unknown CI {ci}")));
            let actual: BTreeSet<String> =
                r.correlator.impact().roots(idx).iter().map(|x| topology.ci(x).id.to_string()).collect();
            if actual != set(roots) {
                r.fail(line, text, format!("roots of {ci} are {actual:?}"));
            }
        }
        // The services whose impact active maintenance windows suppress (no incident).
        ["suppressed", services @ ..] => {
            let topology = r.correlator.topology();
            let actual: BTreeSet<String> = r.correlator.suppressed().map(|s| topology.ci(s).id.to_string()).collect();
            if actual != set(services.first().copied().unwrap_or_default()) {
                r.fail(line, text, format!("suppressed: {actual:?}"));
            }
        }
        // The active windows covering a CI.
        ["maintenance", ci, changes @ ..] => {
            let topology = r.correlator.topology();
            let idx = topology.lookup(ci).unwrap_or_else(|| r.fail(line, text, format!("unknown CI {ci}")));
            let actual: BTreeSet<String> =
                r.correlator.maintenance().covering(idx).iter().map(|c| c.to_string()).collect();
            if actual != set(changes.first().copied().unwrap_or_default()) {
                r.fail(line, text, format!("{ci} is covered by {actual:?}"));
            }
        }
        ["window", change, state] => {
            let window = r.correlator.maintenance().get(change);
            let actual = window.map_or("none", |w| w.state.as_str());
            if actual != *state {
                r.fail(line, text, format!("window {change} is {actual}"));
            }
        }
        // `timeline INC KIND TEXT...`: the incident has an entry of that kind holding the text.
        ["timeline", id, kind, words @ ..] => {
            let incident = r.incident(line, text, id);
            let wanted = words.join(" ");
            if !incident.timeline.iter().any(|e| e.kind.as_str() == *kind && e.text.contains(&wanted)) {
                let entries: Vec<String> =
                    incident.timeline.iter().map(|e| format!("{}: {}", e.kind.as_str(), e.text)).collect();
                r.fail(line, text, format!("no such entry in {entries:#?}"));
            }
        }
        ["stats", pairs @ ..] => {
            let stats = r.correlator.stats();
            for pair in pairs {
                let (key, value) =
                    pair.split_once('=').unwrap_or_else(|| r.fail(line, text, "expected key=value".into()));
                let actual = match key {
                    "alarms" => stats.alarms_in,
                    "duplicates" => stats.duplicates,
                    "cleared" => stats.cleared,
                    "unmapped" => stats.unmapped,
                    "active" => stats.active_alarms,
                    "opened" => stats.incidents.opened,
                    "resolved" => stats.incidents.resolved,
                    "reopened" => stats.incidents.reopened,
                    "closed" => stats.incidents.closed,
                    "symptoms" => stats.incidents.symptoms_attached,
                    other => r.fail(line, text, format!("unknown stat {other}")),
                };
                if actual.to_string() != value {
                    r.fail(line, text, format!("{key} is {actual}"));
                }
            }
        }
        ["incident", id, pairs @ ..] => {
            let incident = r.incident(line, text, id);
            for pair in pairs {
                let (key, value) =
                    pair.split_once('=').unwrap_or_else(|| r.fail(line, text, "expected key=value".into()));
                let actual: String = match key {
                    "state" => incident.state.as_str().to_owned(),
                    "priority" => incident.priority.to_string(),
                    "roots" => join(incident.root_causes.iter().map(|r| r.to_string())),
                    "symptoms" => {
                        join(incident.symptom_alarms.iter().map(|a| format!("{}/{}", a.resource, a.alarm_type)))
                    }
                    // `root-alarms=RESOURCE/TYPE[:cleared],...`
                    "root-alarms" => join(incident.root_cause_alarms.iter().map(|a| {
                        let cleared = if a.cleared_at.is_some() { ":cleared" } else { "" };
                        format!("{}/{}{cleared}", a.resource, a.alarm_type)
                    })),
                    // `omitted=roots:N,root-alarms:N,symptoms:N,cleared:N`
                    "omitted" => {
                        let o = incident.omitted;
                        format!(
                            "roots:{},root-alarms:{},symptoms:{},cleared:{}",
                            o.root_causes, o.root_cause_alarms, o.symptom_alarms, o.cleared_alarms
                        )
                    }
                    "active-symptoms" => join(
                        incident
                            .symptom_alarms
                            .iter()
                            .filter(|a| a.cleared_at.is_none())
                            .map(|a| format!("{}/{}", a.resource, a.alarm_type)),
                    ),
                    "services" => join(incident.services.iter().map(|s| format!("{}:{}", s.id, s.impact.as_str()))),
                    "customers" => join(incident.customers.iter().map(|c| format!("{}:{}", c.id, c.impact.as_str()))),
                    "acknowledged-by" => incident.acknowledgement.as_ref().map(|a| a.by.clone()).unwrap_or_default(),
                    "last-entry" => {
                        incident.timeline.last().map(|e| format!("{}:{}", e.kind.as_str(), e.text)).unwrap_or_default()
                    }
                    other => r.fail(line, text, format!("unknown incident field {other}")),
                };
                let matches = match key {
                    "state" | "priority" | "acknowledged-by" => actual == value,
                    // `last-entry=KIND`: the kind of the timeline's last entry.
                    "last-entry" => actual.split(':').next() == Some(value),
                    _ => set(&actual) == set(value),
                };
                if !matches {
                    r.fail(line, text, format!("{key} of {id} is `{actual}`"));
                }
            }
        }
        _ => r.fail(line, text, "unknown expectation".into()),
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(",")
}

#[test]
fn every_scenario_holds() {
    let dir = repo().join("tests/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "scenario"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "expected the scenario fixtures in {}", dir.display());
    for file in files {
        run_scenario(&file);
    }
}

/// Ageing, on the core: with a maximum age for a source, an alarm its source stopped
/// repeating is cleared once stream time passes its last report plus that age, counted as
/// aged, and its incident resolves as after any clear; a source without one keeps its alarms.
#[test]
fn alarms_a_source_stopped_repeating_age_out() {
    use faultline::correlate::alarm_stage::{AlarmPolicy, MaxAges};
    use faultline::model::incident::{IncidentState, TimelineKind};
    let topology = Arc::new(topology_file::load(&repo().join("config/sample-network.jsonl")).unwrap());
    let mut alarms = AlarmPolicy::default();
    alarms.max_age = MaxAges::new([("ems-south".to_owned(), 600_000)]);
    let incidents = IncidentPolicy { hold_down_ms: 60_000, ..IncidentPolicy::default() };
    let mut core = Correlator::new(topology, CorrelatorConfig { alarms, incidents, ..CorrelatorConfig::default() });
    let mut out = Vec::new();
    let from = |source: &str, resource: &str, at: EpochMillis| {
        let mut alarm = Alarm::raise(resource, "POWER", Severity::Critical, at);
        alarm.source_system = source.to_owned();
        alarm
    };
    core.apply(&from("ems-south", "mrs-r1", 0), 0, &mut out);
    core.apply(&from("ems-north", "par-r1", 0), 0, &mut out);
    // Repeated at 5 min: it ages at 15 min, not 10.
    core.apply(&from("ems-south", "mrs-r1", 300_000), 300_000, &mut out);
    core.tick(899_999, &mut out);
    assert_eq!((core.stats().aged, core.stats().active_alarms), (0, 2));
    core.tick(900_000, &mut out);
    assert_eq!((core.stats().aged, core.stats().cleared, core.stats().active_alarms), (1, 1, 1));
    let mrs = core.incidents().find(|i| i.root_causes.iter().any(|r| &**r == "mrs-r1")).unwrap();
    assert!(mrs.timeline.iter().any(|e| e.kind == TimelineKind::Aged), "{:?}", mrs.timeline);
    let id = mrs.id;
    core.tick(960_000, &mut out);
    assert_eq!(core.incident(id).map(|i| i.state), Some(IncidentState::Resolved));
    core.tick(10 * 86_400_000, &mut out);
    assert_eq!(core.stats().active_alarms, 1, "ems-north has no maximum age");
}

/// An alarm list realigns what it names, whatever ids and sequences its alarms carry (an
/// element manager back from a restart numbers its notifications anew), unless the alarm
/// was reported after the list was taken; and it never reaches ahead of stream time.
#[test]
fn an_alarm_list_realigns_the_alarms_it_names() {
    use faultline::model::alarm::Resync;
    let topology = Arc::new(topology_file::load(&repo().join("config/sample-network.jsonl")).unwrap());
    let mut core = Correlator::new(topology, CorrelatorConfig::default());
    let mut out = Vec::new();
    let alarm = |resource: &str, severity: Severity, at: EpochMillis, sequence: u64| {
        let mut alarm = Alarm::raise(resource, "LOS", severity, at);
        alarm.source_system = "ems-south".to_owned();
        alarm.notification_id = format!("{resource}-los");
        alarm.sequence = sequence;
        alarm
    };
    core.apply(&alarm("par-r1/1/1", Severity::Major, 1_000, 50), 1_000, &mut out);
    core.apply(&alarm("lyo-r1/1/1", Severity::Major, 1_000, 50), 1_000, &mut out);
    core.apply(&alarm("lyo-r1/1/1", Severity::Major, 9_000, 51), 9_000, &mut out);
    // The list was taken at 5 s, by an element manager whose sequences restarted at 1.
    let listed = [alarm("par-r1/1/1", Severity::Critical, 800, 1), alarm("lyo-r1/1/1", Severity::Minor, 800, 1)];
    let resync = Resync { source_system: "ems-south".into(), as_of: 5_000 };
    let outcome = core.resync(&resync, &listed, 10_000, &mut out);
    assert_eq!((outcome.listed, outcome.cleared), (2, 0));
    let severity = |core: &Correlator, resource: &str| core.alarms().active_alarms(resource)[0].severity;
    assert_eq!(severity(&core, "par-r1/1/1"), Severity::Critical, "realigned despite its lower sequence");
    assert_eq!(severity(&core, "lyo-r1/1/1"), Severity::Major, "reported at 9 s, after the list: kept");
    assert_eq!(core.stats().stale, 1);
    // A list dated an hour ahead counts as of stream time (11 s): an alarm its source stamped
    // at 12 s is newer than the list, and kept.
    let ahead = Resync { source_system: "ems-south".into(), as_of: 3_600_000 };
    core.apply(&alarm("mrs-r1", Severity::Major, 12_000, 1), 11_000, &mut out);
    let outcome = core.resync(&ahead, &[], 11_000, &mut out);
    assert_eq!(outcome.cleared, 2, "par-r1/1/1 and lyo-r1/1/1, not mrs-r1");
    assert_eq!(core.alarms().active_alarms("mrs-r1").len(), 1);
    assert!(core.clock() < 3_600_000);
}

/// An incident takes at most `max_notes` notes: one more is refused with a reason naming
/// the key, so that an operator (or a script) cannot grow its snapshot past a record.
#[test]
fn an_incident_takes_a_bounded_number_of_notes() {
    let topology = Arc::new(topology_file::load(&repo().join("config/sample-network.jsonl")).unwrap());
    let incidents = IncidentPolicy { max_notes: 3, ..IncidentPolicy::default() };
    let mut core = Correlator::new(topology, CorrelatorConfig { incidents, ..CorrelatorConfig::default() });
    let mut out = Vec::new();
    core.apply(&Alarm::raise("mrs-r1", "POWER", Severity::Critical, 0), 0, &mut out);
    let id = core.incidents().next().unwrap().id;
    for i in 0..3 {
        core.add_note(id, "alice", &format!("note {i}"), "", 1_000).unwrap();
    }
    let refused = core.add_note(id, "alice", "one more", "", 2_000).unwrap_err().to_string();
    assert!(refused.contains("correlation.max_notes"), "{refused}");
    assert_eq!(core.incident(id).unwrap().notes.len(), 3);
}

/// Notes each within the 16 KiB a note may take still cannot take an incident past one
/// record: past 256 KiB of notes, one more is refused.
#[test]
fn an_incident_takes_a_bounded_amount_of_note_text() {
    let topology = Arc::new(topology_file::load(&repo().join("config/sample-network.jsonl")).unwrap());
    let mut core = Correlator::new(topology, CorrelatorConfig::default());
    let mut out = Vec::new();
    core.apply(&Alarm::raise("mrs-r1", "POWER", Severity::Critical, 0), 0, &mut out);
    let id = core.incidents().next().unwrap().id;
    let text = "x".repeat(16 * 1024 - 16);
    let mut taken = 0;
    let refused = loop {
        match core.add_note(id, "alice", &text, "", 1_000) {
            Ok(_) => taken += 1,
            Err(error) => break error.to_string(),
        }
        assert!(taken <= IncidentPolicy::default().max_notes, "notes taken without end");
    };
    assert!(refused.contains("262144 bytes"), "{refused}");
    let held: usize = core.incident(id).unwrap().notes.iter().map(|n| n.text.len()).sum();
    assert!(held <= 256 * 1024 && held > 240 * 1024, "{taken} notes, {held} bytes");
}

/// State written under one configuration, restored under another: the incidents follow
/// what the restored alarms make of the services now, at the first tick, not once each
/// service happens to change again.
#[test]
fn a_restore_under_another_configuration_reconciles_the_incidents() {
    use faultline::correlate::alarm_stage::AlarmPolicy;
    use faultline::correlate::changelog::CoreSnapshot;
    use faultline::model::state::{Effect, State};
    let topology = Arc::new(topology_file::load(&repo().join("config/sample-network.jsonl")).unwrap());
    let degrading = || {
        let alarms = AlarmPolicy::new([("HIGH_BER".to_owned(), Effect::Degraded)]);
        CorrelatorConfig { alarms, ..CorrelatorConfig::default() }
    };
    let written = |config: CorrelatorConfig| {
        let mut core = Correlator::new(topology.clone(), config);
        let mut out = Vec::new();
        core.apply(&Alarm::raise("par-r1/1/1", "HIGH_BER", Severity::Warning, 1_000), 1_000, &mut out);
        let mut log = CoreSnapshot::default();
        log.fold(core.take_changes().expect("changes"));
        (core, log)
    };
    let vpn = |core: &Correlator| {
        let incident = core.incidents().find(|i| i.services.iter().any(|s| &*s.id == "cfs-acme-vpn"));
        incident.map(|i| (i.id, i.services.iter().find(|s| &*s.id == "cfs-acme-vpn").unwrap().impact))
    };

    // HIGH_BER degraded the VPN when written; restored under the default (warnings change
    // nothing), the incident sees the VPN restored and its hold-down starts.
    let (core, log) = written(degrading());
    assert_eq!(vpn(&core).map(|(_, s)| s), Some(State::Degraded));
    let (mut restored, _) = Correlator::restore(topology.clone(), CorrelatorConfig::default(), log);
    let mut out = Vec::new();
    restored.tick(2_000, &mut out);
    assert_eq!(vpn(&restored).map(|(_, s)| s), Some(State::Up), "{out:?}");
    assert_eq!(out.len(), 1, "the change is published");
    restored.tick(2_000 + 61_000, &mut out);
    assert!(restored.incidents().all(|i| !i.state.is_active()), "resolved after the hold-down");

    // Written under the default (no incident), restored with HIGH_BER degrading: the VPN
    // has an incident at the first tick.
    let (core, log) = written(CorrelatorConfig::default());
    assert_eq!(vpn(&core), None);
    let (mut restored, _) = Correlator::restore(topology.clone(), degrading(), log.clone());
    let mut out = Vec::new();
    restored.tick(2_000, &mut out);
    assert_eq!(vpn(&restored).map(|(_, s)| s), Some(State::Degraded), "{out:?}");

    // Under the same configuration, a restore changes nothing.
    let (mut same, _) = Correlator::restore(topology, CorrelatorConfig::default(), log);
    let mut out = Vec::new();
    same.tick(2_000, &mut out);
    assert!(out.is_empty(), "{out:?}");
}
