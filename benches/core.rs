//! The correlation core alone, no I/O, on generated carrier networks (`faultline::generate`):
//!
//! - `core/mixed/<N>-cis`: alarm notifications per second one core applies on the mixed
//!   storm (fibre cuts, card failures, power outages, flapping ports, background noise).
//!   Each iteration replays the storm on a fresh correlator (set-up excluded); the storm
//!   is spaced at 100,000 notifications per second of stream time, so hold-downs and
//!   reopen windows fire as they would live.
//! - `core/fan-in/20000-ports-quorum-10000`: the same on the fan-in storm
//!   (`generate::fan_in`): a national service over a quorum RFS of 20,000 ports (quorum
//!   10,000), the ports failing one by one in port order, one in eight of them followed
//!   by a clear of an earlier one, then all clearing: about 40,000 notifications, each
//!   moving the roots of the RFS and the service above it, in one incident that ends up
//!   naming 20,000 root causes. `impact/fan-in/20000-ports`: the impact stage alone on the
//!   resource updates of that storm.
//! - `topology/load/<N>-cis`: reading and validating a topology file; the bytes each CI
//!   holds in memory once loaded, with the correlator's per-CI state (all-in), are printed.
//!   `topology/load/<N>-cis-vpn6`: the same network with its VPNs spanning six sites, about
//!   three relations per CI (design.md's 1M CIs / 3M relations).
//! - `query/*`: the core's side of `GetImpact` and `GetCi` during a site power outage.
//!
//! `cargo bench --bench core` (all), `cargo bench --bench core -- core/mixed/1000000` (one).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use faultline::correlate::alarm_stage::{AlarmPolicy, AlarmStage, ResourceUpdate};
use faultline::correlate::feed::FeedChange;
use faultline::correlate::impact::{Changes, ImpactStage};
use faultline::correlate::incidents::IncidentPolicy;
use faultline::correlate::{Correlator, CorrelatorConfig};
use faultline::generate::scenario::{Kind, Storm};
use faultline::generate::{carrier, fan_in};
use faultline::model::alarm::Alarm;
use faultline::model::topology::{CiChange, CiClass, CiIdx, CiRecord, Topology};
use faultline::topology_file;
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

/// Counts the bytes live on the heap, to report memory per CI.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const START: i64 = 1_767_225_600_000;
const RATE: f64 = 100_000.0;

fn network_file(cis: usize) -> PathBuf {
    network_file_spanning(cis, 1)
}

/// A generated network whose VPNs span `vpn_sites` sites, written once and kept.
fn network_file_spanning(cis: usize, vpn_sites: usize) -> PathBuf {
    let dir = std::env::temp_dir().join("faultline-bench");
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let name =
        if vpn_sites == 1 { format!("carrier-{cis}.jsonl") } else { format!("carrier-{cis}-vpn{vpn_sites}.jsonl") };
    let path = dir.join(name);
    if !path.exists() {
        let partial = path.with_extension("partial");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&partial).expect("a writable temp dir"));
        carrier::write_network(cis, 1, vpn_sites, &mut out, |_| {}).expect("a network");
        drop(out);
        std::fs::rename(&partial, &path).expect("rename");
    }
    path
}

fn network(cis: usize) -> Arc<Topology> {
    Arc::new(topology_file::load(&network_file(cis)).expect("a valid network"))
}

fn config() -> CorrelatorConfig {
    CorrelatorConfig {
        incidents: IncidentPolicy { hold_down_ms: 3_000, reopen_window_ms: 10_000, ..IncidentPolicy::default() },
        ..CorrelatorConfig::default()
    }
}

fn storm(topology: &Topology, count: usize) -> Vec<Alarm> {
    let mut storm = Storm::new(topology, Kind::Mixed, 7, START, RATE).expect("a carrier network");
    (0..count).map(|_| storm.next_alarm()).collect()
}

/// One iteration: a fresh correlator (set-up excluded) applies every alarm of the storm.
fn replay(b: &mut criterion::Bencher<'_>, topology: &Arc<Topology>, config: &CorrelatorConfig, alarms: &[Alarm]) {
    b.iter_batched(
        || Correlator::new(topology.clone(), config.clone()),
        |mut correlator| {
            let mut out = Vec::new();
            for alarm in alarms {
                correlator.apply(alarm, alarm.event_time, &mut out);
                out.clear();
            }
            correlator
        },
        BatchSize::PerIteration,
    )
}

fn core(c: &mut Criterion) {
    let mut group = c.benchmark_group("core");
    group.sample_size(10);
    for (cis, count) in [(10_000, 200_000), (1_000_000, 1_000_000)] {
        let topology = network(cis);
        let alarms = storm(&topology, count);
        let config = config();
        group.throughput(Throughput::Elements(alarms.len() as u64));
        group.bench_function(format!("mixed/{cis}-cis"), |b| replay(b, &topology, &config, &alarms));
    }
    group.finish();
}

const FAN_IN_PORTS: usize = 20_000;

fn fan_in_network() -> (Arc<Topology>, Vec<Alarm>) {
    let topology = Topology::from_records(fan_in::network(FAN_IN_PORTS)).expect("a valid network");
    (Arc::new(topology), fan_in::storm(FAN_IN_PORTS, 7, 8, START, RATE))
}

fn core_fan_in(c: &mut Criterion) {
    let mut group = c.benchmark_group("core");
    group.sample_size(10);
    let (topology, alarms) = fan_in_network();
    let config = config();
    group.throughput(Throughput::Elements(alarms.len() as u64));
    group.bench_function(format!("fan-in/{FAN_IN_PORTS}-ports-quorum-{}", FAN_IN_PORTS / 2), |b| {
        replay(b, &topology, &config, &alarms)
    });
    group.finish();
}

fn impact_fan_in(c: &mut Criterion) {
    let mut group = c.benchmark_group("impact");
    group.sample_size(10);
    let (topology, alarms) = fan_in_network();
    let mut stage = AlarmStage::with_topology(AlarmPolicy::default(), topology.clone());
    let updates: Vec<ResourceUpdate> =
        alarms.iter().filter_map(|alarm| stage.apply(alarm, alarm.event_time).1).collect();
    group.throughput(Throughput::Elements(updates.len() as u64));
    group.bench_function(format!("fan-in/{FAN_IN_PORTS}-ports"), |b| {
        b.iter_batched(
            || (ImpactStage::new(topology.clone()), updates.clone()),
            |(mut impact, updates)| {
                let mut changes = Changes::default();
                for update in updates {
                    changes.clear();
                    impact.apply(update, &mut changes);
                }
                impact
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn topology_load(c: &mut Criterion) {
    let mut group = c.benchmark_group("topology");
    group.sample_size(10);
    let cis = 1_000_000;
    for (vpn_sites, suffix) in [(1, ""), (6, "-vpn6")] {
        let path = network_file_spanning(cis, vpn_sites);
        let before = LIVE.load(Ordering::Relaxed);
        let topology = Arc::new(topology_file::load(&path).expect("a valid network"));
        let graph = LIVE.load(Ordering::Relaxed) - before;
        let correlator = Correlator::new(topology.clone(), config());
        let all_in = LIVE.load(Ordering::Relaxed) - before;
        let dependencies: usize = topology.iter().map(|(i, _)| topology.dependencies(i).len()).sum();
        let customers = topology.iter().filter(|(_, ci)| ci.customer.is_some()).count();
        println!(
            "topology/{cis}-cis{suffix}: {} relations ({dependencies} dependencies, {customers} customer links); {} bytes per CI for the graph, {} all-in with the correlator's state",
            dependencies + customers,
            graph / cis as isize,
            all_in / cis as isize
        );
        drop(correlator);
        drop(topology);
        group.throughput(Throughput::Elements(cis as u64));
        group.bench_function(format!("load/{cis}-cis{suffix}"), |b| {
            b.iter(|| topology_file::load(&path).expect("a valid network"));
        });
    }
    group.finish();
}

/// A batch of `size` changes to a network's customer-facing services: two fifths new
/// (copies of existing ones under new ids, on the same resources), two fifths moved onto
/// another service's resources, one fifth deleted.
fn service_changes(topology: &Topology, size: usize) -> Vec<CiChange> {
    let services: Vec<CiIdx> = topology
        .iter()
        .filter(|(i, ci)| ci.class == CiClass::Cfs && topology.dependents(*i).is_empty())
        .map(|(i, _)| i)
        .collect();
    let fifth = size / 5;
    assert!(services.len() > 5 * fifth + 1, "enough services for the batch");
    let mut batch = Vec::with_capacity(size);
    for (k, &service) in services[..2 * fifth].iter().enumerate() {
        let mut record = topology.record(service);
        record.id = format!("new-svc-{k}");
        batch.push(CiChange::Upsert(record));
    }
    for pair in services[2 * fifth..4 * fifth + 1].windows(2) {
        let mut record = topology.record(pair[0]);
        record.depends_on = topology.record(pair[1]).depends_on;
        batch.push(CiChange::Upsert(record));
    }
    for &service in &services[4 * fifth + 1..5 * fifth + 1] {
        batch.push(CiChange::Delete(topology.ci(service).id.to_string()));
    }
    batch
}

/// The core's time to apply a batch of 10,000 topology changes to the 1M-CI network and
/// follow it (impact evaluated again where it touched the graph, incidents), with a hub
/// site down so that services land under failed resources.
fn topology_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("topology");
    group.sample_size(10);
    let topology = network(1_000_000);
    let batch = service_changes(&topology, 10_000);
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("apply/10000-changes-1000000-cis", |b| {
        b.iter_batched(
            || {
                let mut correlator = Correlator::new(Arc::new((*topology).clone()), config());
                let outage = Alarm::raise("g0-s0", "MAINS_FAIL", faultline::model::alarm::Severity::Critical, START);
                correlator.apply(&outage, START, &mut Vec::new());
                (correlator, batch.clone())
            },
            |(mut correlator, batch)| {
                let mut out = Vec::new();
                correlator.apply_topology(batch, START + 1_000, &mut out).expect("a valid batch");
                correlator
            },
            BatchSize::PerIteration,
        )
    });
    // The same changes as records of the topology topic, in polls of 1,024: the feed's own
    // cost (unchanged records dropped, names checked, held changes looked up) on top.
    let records: Vec<FeedChange> = batch
        .iter()
        .enumerate()
        .map(|(i, change)| FeedChange { change: change.clone(), source: format!("faultline.topology/0/{i}") })
        .collect();
    group.bench_function("feed/10000-records-1000000-cis", |b| {
        b.iter_batched(
            || {
                let mut correlator = Correlator::new(Arc::new((*topology).clone()), config());
                let outage = Alarm::raise("g0-s0", "MAINS_FAIL", faultline::model::alarm::Severity::Critical, START);
                correlator.apply(&outage, START, &mut Vec::new());
                (correlator, records.clone())
            },
            |(mut correlator, records)| {
                let mut out = Vec::new();
                for poll in records.chunks(1024) {
                    let outcome = correlator.apply_feed(poll.to_vec(), START + 1_000, &mut out);
                    assert_eq!(outcome.refused + outcome.held, 0);
                }
                correlator
            },
            BatchSize::PerIteration,
        )
    });
    // Under a storm's incidents (300,000 alarms of the mixed storm applied first), 10,000
    // CIs (one in a hundred) sent again in polls of 512: with an attribute changed (what a
    // CMDB's bulk update mostly is), and renamed (every incident naming them rewritten).
    let alarms = storm(&topology, 300_000);
    for (what, change) in [("attribute", false), ("renamed", true)] {
        let records: Vec<FeedChange> = topology
            .iter()
            .step_by(100)
            .map(|(i, _)| {
                let mut record = topology.record(i);
                if change {
                    record.name = format!("{} (renamed)", topology.ci(i).name);
                } else {
                    record.attributes.insert("revision".into(), "2".into());
                }
                FeedChange { change: CiChange::Upsert(record), source: String::new() }
            })
            .collect();
        group.throughput(Throughput::Elements(records.len() as u64));
        group.bench_function(format!("feed/{what}-10000-cis-under-storm"), |b| {
            b.iter_batched(
                || {
                    let mut correlator = Correlator::new(Arc::new((*topology).clone()), config());
                    let mut out = Vec::new();
                    for alarm in &alarms {
                        correlator.apply(alarm, alarm.event_time, &mut out);
                        out.clear();
                    }
                    (correlator, records.clone())
                },
                |(mut correlator, records)| {
                    let mut out = Vec::new();
                    let now = alarms.last().map_or(START, |a| a.event_time);
                    for poll in records.chunks(512) {
                        correlator.apply_feed(poll.to_vec(), now, &mut out);
                    }
                    correlator
                },
                BatchSize::PerIteration,
            )
        });
    }
    // A CMDB sending its whole inventory again: every record unchanged, nothing applied.
    let everything: Vec<FeedChange> = topology
        .iter()
        .map(|(i, _)| FeedChange { change: CiChange::Upsert(topology.record(i)), source: String::new() })
        .collect();
    group.throughput(Throughput::Elements(everything.len() as u64));
    let mut correlator = Correlator::new(Arc::new((*topology).clone()), config());
    group.bench_function("feed/resend-1000000-cis-unchanged", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            for poll in everything.chunks(1024) {
                let outcome = correlator.apply_feed(poll.to_vec(), START, &mut out);
                assert_eq!(outcome.unchanged, poll.len());
            }
        })
    });
    group.finish();
}

/// A CMDB's churn on the 1M-CI network: 1,000,000 changes in batches of 10,000, each a
/// third new customer-facing services (copies of existing ones under new ids), a third
/// moved onto another service's resources, a third ceased (the oldest first), so that the
/// network keeps its size. The bytes live per CI present, before and after, are printed:
/// replaced and deleted CIs must not make the engine grow.
fn topology_churn(c: &mut Criterion) {
    let topology = network(1_000_000);
    let before = LIVE.load(Ordering::Relaxed);
    let mut correlator = Correlator::new(Arc::new((*topology).clone()), config());
    let start = LIVE.load(Ordering::Relaxed) - before;
    let present = correlator.topology().len() as isize;
    let mut services: std::collections::VecDeque<CiRecord> = topology
        .iter()
        .filter(|(i, ci)| ci.class == CiClass::Cfs && topology.dependents(*i).is_empty())
        .map(|(i, _)| topology.record(i))
        .collect();
    drop(topology);
    let (batch, third) = (10_000, 3_333);
    let mut changes = 0usize;
    let mut round = 0usize;
    let mut out = Vec::new();
    while changes < 1_000_000 {
        let mut changes_now = Vec::with_capacity(batch);
        for _ in 0..third {
            let ceased = services.pop_front().expect("services");
            changes_now.push(CiChange::Delete(ceased.id));
        }
        for k in 0..third {
            let mut record = services[k * 7 % services.len()].clone();
            record.id = format!("churn-{round}-{k}");
            services.push_back(record.clone());
            changes_now.push(CiChange::Upsert(record));
        }
        for k in 0..batch - 2 * third {
            let (a, b) = (k * 13 % services.len(), (k * 13 + 1) % services.len());
            let mut record = services[a].clone();
            record.depends_on = services[b].depends_on.clone();
            services[a] = record.clone();
            changes_now.push(CiChange::Upsert(record));
        }
        changes += changes_now.len();
        correlator.apply_topology(changes_now, START + round as i64, &mut out).expect("a valid batch");
        out.clear();
        round += 1;
    }
    let after = LIVE.load(Ordering::Relaxed) - before;
    let now_present = correlator.topology().len() as isize;
    let _ = c;
    let sizes = correlator.sizes();
    println!(
        "topology/churn: {changes} CI changes in batches of {batch}: {} CIs present ({} slots, {} released and free, {} deleted not yet released); {} bytes per CI all-in before, {} after",
        now_present,
        sizes.topology_slots,
        sizes.free_slots,
        sizes.deleted_cis,
        start / present,
        after / now_present
    );
}

fn queries(c: &mut Criterion) {
    let mut group = c.benchmark_group("query");
    let topology = network(1_000_000);
    let mut correlator = Correlator::new(topology.clone(), config());
    // A hub site loses power: its whole ring goes down with it.
    let mut out = Vec::new();
    correlator.apply(
        &Alarm::raise("g0-s0", "MAINS_FAIL", faultline::model::alarm::Severity::Critical, START),
        START,
        &mut out,
    );
    let impact = faultline::grpc::impact_of(&correlator, "g0-s0").expect("a known CI");
    assert!(impact.services.len() > 200, "the ring's services are down: {}", impact.services.len());
    group.bench_function(format!("impact/site-outage-{}-services", impact.services.len()), |b| {
        b.iter(|| faultline::grpc::impact_of(&correlator, "g0-s0").expect("a known CI"))
    });
    // What-if: the same outage simulated on the network before it happened.
    let quiet = Correlator::new(topology.clone(), config());
    let assessed = faultline::grpc::what_if(&quiet, &["g0-s0".to_owned()]).expect("a known CI");
    assert!(assessed.newly_impacted.len() > 200, "the simulation hits the ring: {}", assessed.summary);
    group.bench_function(format!("what-if/site-outage-{}-services", assessed.newly_impacted.len()), |b| {
        b.iter(|| faultline::grpc::what_if(&quiet, &["g0-s0".to_owned()]).expect("a known CI"))
    });
    group.bench_function("ci/service-explained", |b| {
        b.iter(|| faultline::grpc::ci_status(&correlator, "svc-100").expect("a known CI"))
    });
    group.finish();
}

criterion_group!(benches, core, core_fan_in, impact_fan_in, topology_load, topology_apply, topology_churn, queries);
criterion_main!(benches);
