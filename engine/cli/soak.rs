//! `faultline bench --soak 28d`: weeks of stream time through the correlation core, in this
//! process and as fast as it goes, with no Kafka: is resident memory flat once warmed up,
//! and if not, which structure grows?
//!
//! A [`Correlator`] with the engine's default configuration (and ageing, `--max-age`) over
//! a generated carrier network takes the seeded workload of [`crate::generate::soak`]:
//! faults that come and go, flapping ports, alarms on resources the topology does not
//! know, stray clears, operators acknowledging, annotating and resolving incidents. What
//! the core thread does besides applying alarms happens as it does in the engine, in
//! stream time: every 100 ms (the default commit interval) the timers are ticked and the
//! changelog's changes taken. Every `--sample` of stream time a row gives the stream
//! time, the alarms applied, their rate in wall time, the process's resident memory and
//! the size of each of the core's structures ([`CoreSizes`]); the summary compares the
//! end with the warm-up and flags each structure that grew more than 10% since.
//!
//! What the runtime keeps around the core (the operator requests already applied, the
//! resume log of the live stream) is bounded by count there and is not exercised here.

use super::bench::{BenchOptions, machine, rss_mb};
use crate::config::{Config, Overrides};
use crate::correlate::alarm_stage::MaxAges;
use crate::correlate::{CoreSizes, Correlator, Stats};
use crate::generate::carrier;
use crate::generate::soak::{OperatorAction, Step, Workload};
use crate::model::EpochMillis;
use crate::model::incident::{ChangeKind, IncidentChange, IncidentId, IncidentState};
use anyhow::Context;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct SoakOptions {
    /// Size of the generated carrier network.
    pub cis: usize,
    pub seed: u64,
    /// Stream time to play.
    pub duration: Duration,
    /// Stream time between two rows.
    pub sample: Duration,
    /// Stream time after which memory should stay flat: the summary compares the end with
    /// the first row at or after it.
    pub warmup: Duration,
    /// Multiplies every arrival rate of the workload.
    pub load: f64,
    /// Alarms of any source not repeated for this long are cleared (the engine's
    /// `correlation.alarm_max_age_secs."*"`); zero: no ageing, the engine's default.
    pub max_age: Duration,
}

impl SoakOptions {
    /// The soak `faultline bench` asks for, if it asks for one.
    pub fn from_bench(options: &BenchOptions) -> Option<SoakOptions> {
        Some(SoakOptions {
            cis: options.cis,
            seed: options.seed,
            duration: options.soak?,
            sample: options.sample,
            warmup: options.soak_warmup,
            load: options.load,
            max_age: options.max_age,
        })
    }
}

/// Stream time between two commits of the core thread (the default `commit_interval_ms`):
/// timers are ticked and the changelog's changes taken at each.
const COMMIT_INTERVAL: EpochMillis = 100;
/// Stream time at the start: 2026-01-01T00:00:00Z.
const START: EpochMillis = 1_767_225_600_000;
const DAY: EpochMillis = 86_400_000;
/// A structure that grew more than this after warm-up is flagged.
const GROWTH_FLAG: f64 = 0.10;

/// One row.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Stream time since the start.
    pub at: EpochMillis,
    /// Alarm notifications applied so far.
    pub alarms: u64,
    /// Of them per second of wall time, since the row before.
    pub per_sec: f64,
    pub rss_mb: f64,
    pub sizes: CoreSizes,
    pub stats: Stats,
    /// The incidents held as the published changes tell them: open, acknowledged, resolved.
    pub seen: [usize; 3],
}

/// What the operators did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Operators {
    pub acknowledged: u64,
    pub notes: u64,
    pub resolved: u64,
    pub force_resolved: u64,
    /// Actions the core refused (a resolve of an incident still impacting services
    /// without force, a note past `max_notes`).
    pub refused: u64,
    /// Actions with no incident to act on.
    pub idle: u64,
}

pub struct SoakReport {
    pub samples: Vec<Sample>,
    /// The row the summary compares the end with.
    pub warmup: usize,
    pub operators: Operators,
    /// Incident changes published, and changelog records taken.
    pub changes: u64,
    pub records: u64,
    pub wall: Duration,
    /// The incidents' incrementally kept views checked against a recomputation at the end.
    pub views: Result<(), String>,
    /// The workload's own state at the end (in the process's memory too): faults running,
    /// events queued, and the incidents the driver follows.
    pub workload: [usize; 3],
}

pub fn run(options: &SoakOptions, out: &mut impl Write) -> anyhow::Result<SoakReport> {
    let millis = |d: Duration| d.as_millis().min(i64::MAX as u128) as EpochMillis;
    let (duration, sample_every) = (millis(options.duration), millis(options.sample).max(COMMIT_INTERVAL));
    anyhow::ensure!(duration > 0, "--soak must be a positive stream time");
    anyhow::ensure!(options.load > 0.0 && options.load.is_finite(), "--load must be a positive number");
    let mut text = Vec::new();
    let shape = carrier::write_network(options.cis, options.seed, 1, &mut text, |_| {})?;
    let topology =
        Arc::new(crate::topology_file::parse(std::str::from_utf8(&text)?, "generated").context("generated network")?);
    drop(text);
    let mut config = Config::defaults(&Overrides::default())?.correlator();
    let max_age = millis(options.max_age);
    if max_age > 0 {
        config.alarms.max_age = MaxAges::new([("*".to_owned(), max_age)]);
    }

    writeln!(out, "faultline bench --soak")?;
    writeln!(out, "  machine      {}", machine())?;
    writeln!(
        out,
        "  network      {} CIs, {} relations, {} services (generated, seed {})",
        shape.cis, shape.relations, shape.services, options.seed
    )?;
    writeln!(
        out,
        "  stream time  {} at load {}, a row every {}, warm-up {}; timers ticked and changes taken every {COMMIT_INTERVAL} ms; ageing {}",
        humantime::format_duration(options.duration),
        options.load,
        humantime::format_duration(options.sample),
        humantime::format_duration(options.warmup),
        if max_age > 0 { humantime::format_duration(options.max_age).to_string() } else { "off".to_owned() },
    )?;
    writeln!(out, "  rss before   {:.1} MB (topology loaded)", rss_mb())?;

    let mut correlator = Correlator::new(topology.clone(), config);
    let mut workload = Workload::new(&topology, options.seed, START, options.load);
    let mut soak = Soak { held: BTreeMap::new(), operators: Operators::default(), changes: 0 };
    let mut changes: Vec<IncidentChange> = Vec::new();
    let mut samples: Vec<Sample> = Vec::new();
    let mut records = 0u64;
    let mut alarms = 0u64;
    let end = START.saturating_add(duration);
    let mut next_commit = START + COMMIT_INTERVAL;
    let mut next_sample = START.saturating_add(sample_every);
    let started = Instant::now();
    let mut last_row = (started, 0u64);
    write_header(out)?;
    loop {
        let (at, step) = workload.next_step();
        while next_commit <= at.min(end) {
            correlator.tick(next_commit, &mut changes);
            soak.follow(&mut changes);
            if let Some(taken) = correlator.take_changes() {
                records += (taken.resources.len() + taken.incidents.len()) as u64;
            }
            if next_commit >= next_sample || next_commit == end {
                let row = soak.sample(&correlator, next_commit - START, alarms, &mut last_row);
                write_row(out, &row)?;
                samples.push(row);
                next_sample += sample_every;
            }
            next_commit += COMMIT_INTERVAL;
        }
        if at > end {
            break;
        }
        match step {
            Step::Alarm(alarm) => {
                correlator.apply(&alarm, at, &mut changes);
                alarms += 1;
            }
            Step::Operator { action, pick } => soak.operate(&mut correlator, action, pick, at, &mut changes),
        }
        soak.follow(&mut changes);
    }
    if samples.last().is_none_or(|s| s.at < duration) {
        let row = soak.sample(&correlator, duration, alarms, &mut last_row);
        write_row(out, &row)?;
        samples.push(row);
    }
    let wall = started.elapsed();
    let warmup = samples.iter().position(|s| s.at >= millis(options.warmup)).unwrap_or(0);
    let report = SoakReport {
        warmup,
        operators: soak.operators,
        changes: soak.changes,
        records,
        wall,
        views: correlator.check_views(),
        workload: [workload.running(), workload.queued(), soak.held.len()],
        samples,
    };
    write_summary(out, &report)?;
    Ok(report)
}

/// The driver's side: the incidents as the published changes tell them, and what the
/// operators did.
struct Soak {
    held: BTreeMap<IncidentId, IncidentState>,
    operators: Operators,
    changes: u64,
}

impl Soak {
    /// Takes the published changes, as a subscriber would.
    fn follow(&mut self, changes: &mut Vec<IncidentChange>) {
        for change in changes.drain(..) {
            self.changes += 1;
            if change.kind == ChangeKind::Closed {
                self.held.remove(&change.incident.id);
            } else {
                self.held.insert(change.incident.id, change.incident.state);
            }
        }
    }

    /// An operator acts on one of the incidents the action suits.
    fn operate(
        &mut self,
        correlator: &mut Correlator,
        action: OperatorAction,
        pick: u64,
        now: EpochMillis,
        changes: &mut Vec<IncidentChange>,
    ) {
        let suits = |state: IncidentState| match action {
            OperatorAction::Acknowledge => state == IncidentState::Open,
            _ => state.is_active(),
        };
        let candidates = || self.held.iter().filter(|(_, state)| suits(**state)).map(|(&id, _)| id);
        let count = candidates().count();
        let Some(id) = (count > 0).then(|| candidates().nth((pick % count as u64) as usize)).flatten() else {
            self.operators.idle += 1;
            return;
        };
        let by = "noc-operator";
        let result = match action {
            OperatorAction::Acknowledge => correlator.acknowledge(id, by, now),
            OperatorAction::Note => {
                correlator.add_note(id, by, &format!("field team dispatched, ticket TT-{}", pick % 1_000_000), "", now)
            }
            OperatorAction::Resolve => correlator.resolve(id, by, "repaired on site", false, now),
            OperatorAction::ForceResolve => correlator.resolve(id, by, "closed with the customer", true, now),
        };
        let Ok(change) = result else {
            self.operators.refused += 1;
            return;
        };
        match action {
            OperatorAction::Acknowledge => self.operators.acknowledged += 1,
            OperatorAction::Note => self.operators.notes += 1,
            OperatorAction::Resolve => self.operators.resolved += 1,
            OperatorAction::ForceResolve => self.operators.force_resolved += 1,
        }
        changes.push(change);
    }

    fn sample(&self, correlator: &Correlator, at: EpochMillis, alarms: u64, last_row: &mut (Instant, u64)) -> Sample {
        let now = Instant::now();
        let seconds = now.duration_since(last_row.0).as_secs_f64();
        let per_sec = if seconds > 0.0 { (alarms - last_row.1) as f64 / seconds } else { 0.0 };
        *last_row = (now, alarms);
        let mut seen = [0; 3];
        for state in self.held.values() {
            match state {
                IncidentState::Open => seen[0] += 1,
                IncidentState::Acknowledged => seen[1] += 1,
                IncidentState::Resolved => seen[2] += 1,
                IncidentState::Closed => {}
            }
        }
        Sample { at, alarms, per_sec, rss_mb: rss_mb(), sizes: correlator.sizes(), stats: correlator.stats(), seen }
    }
}

fn width(name: &str) -> usize {
    name.len().max(6) + 1
}

fn write_header(out: &mut impl Write) -> std::io::Result<()> {
    let mut line = format!("{:>6} {:>11} {:>9} {:>8}", "day", "alarms", "alarms/s", "rss_mb");
    for (name, _) in CoreSizes::default().named() {
        line.push_str(&format!("{:>w$}", name, w = width(name)));
    }
    writeln!(out, "{line}")
}

fn write_row(out: &mut impl Write, row: &Sample) -> std::io::Result<()> {
    let mut line =
        format!("{:>6.2} {:>11} {:>9.0} {:>8.1}", row.at as f64 / DAY as f64, row.alarms, row.per_sec, row.rss_mb);
    for (name, value) in row.sizes.named() {
        line.push_str(&format!("{:>w$}", value, w = width(name)));
    }
    writeln!(out, "{line}")?;
    out.flush()
}

/// Growth from `from` to `to`, as a fraction; infinite from zero.
fn growth(from: f64, to: f64) -> f64 {
    if from == 0.0 { if to == 0.0 { 0.0 } else { f64::INFINITY } } else { (to - from) / from }
}

/// Growth from the mean of the first third of `values` to the mean of the last third: what
/// one row's noise does not move as much as it moves the last value.
fn trend(values: &[f64]) -> f64 {
    let third = (values.len() / 3).max(1);
    let mean = |part: &[f64]| part.iter().sum::<f64>() / part.len() as f64;
    growth(mean(&values[..third]), mean(&values[values.len() - third..]))
}

fn percent(growth: f64) -> String {
    if growth.is_infinite() { "from 0".to_owned() } else { format!("{:+.1}%", growth * 100.0) }
}

fn write_summary(out: &mut impl Write, report: &SoakReport) -> std::io::Result<()> {
    let (Some(warm), Some(end)) = (report.samples.get(report.warmup), report.samples.last()) else {
        return Ok(());
    };
    let after = &report.samples[report.warmup..];
    let day = |s: &Sample| s.at as f64 / DAY as f64;
    writeln!(out)?;
    writeln!(
        out,
        "summary: {} alarms in {:.1} s of wall time ({:.0} alarms/s), {} incident changes, {} changelog records",
        end.alarms,
        report.wall.as_secs_f64(),
        end.alarms as f64 / report.wall.as_secs_f64().max(1e-9),
        report.changes,
        report.records
    )?;
    let stats = &end.stats;
    writeln!(
        out,
        "  alarms: {} raised, {} cleared, {} repeats, {} severity changes, {} retransmissions, {} stale, {} clears without raise, {} aged, {} updates unmapped",
        stats.raised,
        stats.cleared,
        stats.duplicates,
        stats.severity_changes,
        stats.duplicate_notifications,
        stats.stale,
        stats.clears_without_raise,
        stats.aged,
        stats.unmapped
    )?;
    let i = &stats.incidents;
    writeln!(
        out,
        "  incidents: {} opened, {} resolved, {} reopened, {} closed; {} symptom alarms attached",
        i.opened, i.resolved, i.reopened, i.closed, i.symptoms_attached
    )?;
    let o = &report.operators;
    writeln!(
        out,
        "  operators: {} acknowledgements, {} notes, {} resolves, {} forced resolves, {} refused, {} with no incident to act on",
        o.acknowledged, o.notes, o.resolved, o.force_resolved, o.refused, o.idle
    )?;
    let [running, queued, followed] = report.workload;
    writeln!(
        out,
        "  the workload at the end: {running} faults running, {queued} events queued, {followed} incidents followed"
    )?;
    writeln!(
        out,
        "  views: {}",
        match &report.views {
            Ok(()) => "consistent with a recomputation".to_owned(),
            Err(difference) => format!("INCONSISTENT: {difference}"),
        }
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<12} {:>12} {:>12} {:>9} {:>9}  {:<21} (warm-up: day {:.2}, end: day {:.2})",
        "",
        "warm-up",
        "end",
        "growth",
        "trend",
        "min..max since",
        day(warm),
        day(end)
    )?;
    // RSS, then every structure: one series of values per row since the warm-up.
    let mut series: Vec<(&str, Vec<f64>)> = vec![("rss_mb", after.iter().map(|s| s.rss_mb).collect())];
    for (k, (name, _)) in warm.sizes.named().into_iter().enumerate() {
        series.push((name, after.iter().map(|s| s.sizes.named()[k].1 as f64).collect()));
    }
    let (mut flagged, mut trending) = (Vec::new(), Vec::new());
    for (name, values) in &series {
        let (first, last) = (values[0], values[values.len() - 1]);
        let (low, high) = values.iter().fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        let grown = growth(first, last);
        let trend = trend(values);
        let flag = if grown > GROWTH_FLAG {
            flagged.push(*name);
            if trend > GROWTH_FLAG {
                trending.push(*name);
                if values.windows(2).all(|w| w[0] < w[1]) { "GROWS, at every row" } else { "GROWS" }
            } else {
                "GROWS at the end only: the trend is flat"
            }
        } else {
            ""
        };
        let decimals = usize::from(*name == "rss_mb");
        writeln!(
            out,
            "{:<12} {:>12.decimals$} {:>12.decimals$} {:>9} {:>9}  {:<21} {flag}",
            name,
            first,
            last,
            percent(grown),
            percent(trend),
            format!("{low:.decimals$}..{high:.decimals$}"),
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "growth: the end against the warm-up; trend: the mean of the last third of the rows since the warm-up against the first third's"
    )?;
    if flagged.is_empty() {
        writeln!(out, "flat after warm-up: nothing grew more than {:.0}%", GROWTH_FLAG * 100.0)?;
    } else {
        writeln!(out, "grew more than {:.0}% after warm-up: {}", GROWTH_FLAG * 100.0, flagged.join(", "))?;
        writeln!(
            out,
            "of them, on the trend too: {}",
            if trending.is_empty() { "none".to_owned() } else { trending.join(", ") }
        )?;
    }
    out.flush()
}
