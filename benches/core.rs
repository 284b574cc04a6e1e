//! The correlation core alone, no I/O: how many alarm notifications per second one core
//! applies on a storm over a seeded carrier ring (`faultline::generate`). Each iteration
//! replays the whole storm on a fresh correlator (setup excluded), at 100 notifications per
//! 15 ms of stream time so that hold-downs and reopen windows fire as they would live.
//!
//! `cargo bench --bench core`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use faultline::config::AlarmFormat;
use faultline::correlate::incidents::IncidentPolicy;
use faultline::correlate::{Correlator, CorrelatorConfig};
use faultline::decode;
use faultline::generate;
use faultline::topology_file;
use std::sync::Arc;

const MESSAGES: usize = 200_000;

fn storm_on_ring(c: &mut Criterion) {
    let mut group = c.benchmark_group("core");
    group.sample_size(10);
    for sites in [60, 2_000] {
        let ring = generate::ring(sites);
        let topology = Arc::new(topology_file::parse(&ring.jsonl, "ring").expect("a valid ring"));
        let alarms: Vec<_> = generate::storm(&ring, MESSAGES, 7)
            .iter()
            .filter_map(|(_, value)| {
                let mut out = Vec::new();
                decode::decode(AlarmFormat::Json, value, 0, 1 << 20, &mut out).ok()?;
                out.pop()
            })
            .collect();
        let config = CorrelatorConfig {
            incidents: IncidentPolicy { hold_down_ms: 3_000, reopen_window_ms: 10_000, ..IncidentPolicy::default() },
            ..CorrelatorConfig::default()
        };
        group.throughput(Throughput::Elements(alarms.len() as u64));
        let name = format!("storm/{}-cis", topology.len());
        group.bench_function(&name, |b| {
            b.iter_batched(
                || Correlator::new(topology.clone(), config.clone()),
                |mut correlator| {
                    let mut out = Vec::new();
                    for (i, alarm) in alarms.iter().enumerate() {
                        correlator.apply(alarm, 1_700_000_000_000 + (i as i64 / 100) * 15, &mut out);
                        out.clear();
                    }
                    correlator
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, storm_on_ring);
criterion_main!(benches);
