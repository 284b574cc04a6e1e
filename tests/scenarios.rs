//! Scenario fixtures: `tests/scenarios/*.scenario` describe a topology, timed alarms and
//! operator actions, and what a NOC engineer expects to see (incidents, their root causes,
//! symptoms, impacted services, priorities, CI states). Each file runs against the pure core.
//! The format is documented in `tests/scenarios/README.md`.

use faultline::correlate::incidents::IncidentPolicy;
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
    } else {
        panic!("bad duration `{text}` (use 500ms, 10s or 2m)")
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
                ["ack", id, by] => {
                    let change = r
                        .correlator
                        .acknowledge(id.parse().unwrap(), by, now)
                        .unwrap_or_else(|e| r.fail(line, text, e.to_string()));
                    r.changes.push(change);
                }
                ["resolve", id, by] => {
                    let change = r
                        .correlator
                        .resolve(id.parse().unwrap(), by, "", now)
                        .unwrap_or_else(|e| r.fail(line, text, e.to_string()));
                    r.changes.push(change);
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
                    other => r.fail(line, text, format!("unknown incident field {other}")),
                };
                let matches = match key {
                    "state" | "priority" | "acknowledged-by" => actual == value,
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
