//! Prometheus metrics at `GET /metrics` (`metrics.addr`). The edges count with lock-free
//! atomics as they work (alarms decoded per format, refusals per reason, stage latencies per
//! batch); the core's own counters, incident states and consumer lag are read at scrape time,
//! so the per-alarm path carries no metric work at all. Label sets are bounded.

use crate::config::AlarmFormat;
use crate::correlate::Stats;
use crate::kafka::ingest::AlarmConsumer;
use crate::runtime::EngineHandle;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use rdkafka::consumer::Consumer;
use rdkafka::topic_partition_list::Offset;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const FORMATS: [(AlarmFormat, &str); 3] =
    [(AlarmFormat::Protobuf, "protobuf"), (AlarmFormat::Json, "json"), (AlarmFormat::Ves, "ves")];

fn format_index(format: AlarmFormat) -> usize {
    FORMATS.iter().position(|(f, _)| *f == format).unwrap_or(0)
}

/// Seconds; from 100 µs to 10 s.
const BOUNDS: [f64; 12] = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 10.0];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = BOUNDS.iter().position(|&b| seconds <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in BOUNDS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Counters and histograms written by the edges.
#[derive(Default)]
pub struct Metrics {
    decoded: [AtomicU64; FORMATS.len()],
    /// Refusals are rare; a mutex keeps the (format, reason) label set simple.
    refused: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Decoding one consumed batch (ingest stage).
    pub decode_batch: Histogram,
    /// Applying one batch in the correlation core (alarm, impact and incident stages, and
    /// handing each change to the transaction and the subscribers).
    pub apply_batch: Histogram,
    /// Messages delivered again after a rebalance, already applied, skipped.
    pub redelivered: AtomicU64,
    /// Alarms whose event time lay too far ahead of their record's, clamped to it.
    pub clamped: AtomicU64,
    /// Incidents written trimmed (incidents topic or changelog) because whole they would not
    /// fit `kafka.max_record_bytes`.
    pub records_trimmed: AtomicU64,
    /// Records stamped further ahead of the wall clock than the allowed skew, applied at it.
    pub record_time_capped: AtomicU64,
    /// Committing one transaction: changelog, offsets, and the brokers' acknowledgement.
    pub commit: Histogram,
    /// Live-stream subscribers connected now.
    pub subscribers: AtomicU64,
    /// Subscribers dropped for falling too far behind.
    pub subscribers_dropped: AtomicU64,
    /// Topology feed records by what the core did with them: applied, unchanged, held.
    topology_records: [AtomicU64; TOPOLOGY_OUTCOMES.len()],
}

const TOPOLOGY_OUTCOMES: [&str; 3] = ["applied", "unchanged", "held"];

impl Metrics {
    pub fn decoded(&self, format: AlarmFormat, alarms: usize) {
        self.decoded[format_index(format)].fetch_add(alarms as u64, Ordering::Relaxed);
    }

    pub fn refused(&self, format: AlarmFormat, reason: &'static str) {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        *refused.entry((FORMATS[format_index(format)].1, reason)).or_default() += 1;
    }

    /// A topology feed record refused to the dead-letter topic.
    pub fn refused_topology(&self, reason: &'static str) {
        self.refused_as("topology", reason);
    }

    /// A record of a topic that is not an alarm input (`topology`, `changes`) refused.
    pub fn refused_as(&self, topic: &'static str, reason: &'static str) {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        *refused.entry((topic, reason)).or_default() += 1;
    }

    /// Topology feed records the core applied, found unchanged, or held.
    pub fn topology_outcome(&self, applied: usize, unchanged: usize, held: usize) {
        for (counter, n) in self.topology_records.iter().zip([applied, unchanged, held]) {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// The exposition text, given what is read at scrape time.
    pub fn render(&self, stats: Option<&Stats>, incidents: &[(&str, u64)], lag: &[(String, i32, i64)]) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP faultline_alarms_decoded_total Alarms decoded from the input topics, by format.\n");
        out.push_str("# TYPE faultline_alarms_decoded_total counter\n");
        for ((_, name), count) in FORMATS.iter().zip(&self.decoded) {
            let _ =
                writeln!(out, "faultline_alarms_decoded_total{{format=\"{name}\"}} {}", count.load(Ordering::Relaxed));
        }
        out.push_str(
            "# HELP faultline_dead_letters_total Input messages sent to the dead-letter topic, by format and reason.\n",
        );
        out.push_str("# TYPE faultline_dead_letters_total counter\n");
        for ((format, reason), count) in self.refused.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "faultline_dead_letters_total{{format=\"{format}\",reason=\"{reason}\"}} {count}");
        }
        if let Some(stats) = stats {
            let core = stats;
            out.push_str("# HELP faultline_alarms_total Alarm notifications applied by the core, by outcome.\n");
            out.push_str("# TYPE faultline_alarms_total counter\n");
            for (outcome, count) in [
                ("raised", core.raised),
                ("duplicate", core.duplicates),
                ("severity_change", core.severity_changes),
                ("duplicate_notification", core.duplicate_notifications),
                ("stale", core.stale),
                ("cleared", core.cleared),
                ("cleared_by_resync", core.cleared_by_resync),
                ("aged", core.aged),
                ("clear_without_raise", core.clears_without_raise),
                ("dropped", core.dropped),
            ] {
                let _ = writeln!(out, "faultline_alarms_total{{outcome=\"{outcome}\"}} {count}");
            }
            let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
            };
            gauge(&mut out, "faultline_active_alarms", "Alarms currently active.", core.active_alarms);
            gauge(
                &mut out,
                "faultline_unmapped_resources",
                "Resources not in the topology that have active alarms (kept, not dropped).",
                core.unmapped_resources,
            );
            gauge(
                &mut out,
                "faultline_topology_held",
                "Topology feed changes waiting for another CI's change (topology.max_held at most).",
                core.topology_held,
            );
            let counter = |out: &mut String, name: &str, help: &str, value: u64| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
            };
            counter(
                &mut out,
                "faultline_input_refused_total",
                "Input messages refused to the dead-letter topic (kept across restarts).",
                core.refused,
            );
            counter(
                &mut out,
                "faultline_unmapped_updates_total",
                "Alarm changes on resources not in the topology.",
                core.unmapped,
            );
            out.push_str("# HELP faultline_incident_transitions_total Incident lifecycle transitions.\n");
            out.push_str("# TYPE faultline_incident_transitions_total counter\n");
            let i = &core.incidents;
            for (to, count) in
                [("opened", i.opened), ("resolved", i.resolved), ("reopened", i.reopened), ("closed", i.closed)]
            {
                let _ = writeln!(out, "faultline_incident_transitions_total{{to=\"{to}\"}} {count}");
            }
        }
        out.push_str(
            "# HELP faultline_incidents Incidents not yet closed, by state.\n# TYPE faultline_incidents gauge\n",
        );
        for (state, count) in incidents {
            let _ = writeln!(out, "faultline_incidents{{state=\"{state}\"}} {count}");
        }
        out.push_str("# HELP faultline_event_time_clamped_total Alarms whose event time lay too far in the future, clamped to their record's time.\n");
        out.push_str("# TYPE faultline_event_time_clamped_total counter\n");
        let _ = writeln!(out, "faultline_event_time_clamped_total {}", self.clamped.load(Ordering::Relaxed));
        out.push_str("# HELP faultline_records_trimmed_total Incidents written with their lists trimmed because whole they would not fit kafka.max_record_bytes.\n");
        out.push_str("# TYPE faultline_records_trimmed_total counter\n");
        let _ = writeln!(out, "faultline_records_trimmed_total {}", self.records_trimmed.load(Ordering::Relaxed));
        out.push_str("# HELP faultline_record_time_capped_total Records stamped further ahead of the wall clock than correlation.max_clock_skew_millis, applied at that bound.\n");
        out.push_str("# TYPE faultline_record_time_capped_total counter\n");
        let _ = writeln!(out, "faultline_record_time_capped_total {}", self.record_time_capped.load(Ordering::Relaxed));
        out.push_str("# HELP faultline_topology_records_total Topology feed records taken by the core, by outcome (refused ones: faultline_dead_letters_total{format=\"topology\"}).\n");
        out.push_str("# TYPE faultline_topology_records_total counter\n");
        for (outcome, count) in TOPOLOGY_OUTCOMES.iter().zip(&self.topology_records) {
            let _ = writeln!(
                out,
                "faultline_topology_records_total{{outcome=\"{outcome}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP faultline_input_redelivered_total Messages delivered again after a rebalance and skipped (already applied).\n");
        out.push_str("# TYPE faultline_input_redelivered_total counter\n");
        let _ = writeln!(out, "faultline_input_redelivered_total {}", self.redelivered.load(Ordering::Relaxed));
        out.push_str("# HELP faultline_consumer_lag Messages not yet consumed, per input partition.\n");
        out.push_str("# TYPE faultline_consumer_lag gauge\n");
        for (topic, partition, lag) in lag {
            let _ = writeln!(out, "faultline_consumer_lag{{topic=\"{topic}\",partition=\"{partition}\"}} {lag}");
        }
        out.push_str("# HELP faultline_subscribers Live incident-stream subscribers connected.\n");
        out.push_str("# TYPE faultline_subscribers gauge\n");
        let _ = writeln!(out, "faultline_subscribers {}", self.subscribers.load(Ordering::Relaxed));
        out.push_str("# HELP faultline_subscribers_dropped_total Live incident-stream subscribers dropped for falling too far behind.\n");
        out.push_str("# TYPE faultline_subscribers_dropped_total counter\n");
        let _ =
            writeln!(out, "faultline_subscribers_dropped_total {}", self.subscribers_dropped.load(Ordering::Relaxed));
        self.decode_batch.render(&mut out, "faultline_decode_batch_seconds", "Time to decode one consumed batch.");
        self.apply_batch.render(&mut out, "faultline_apply_batch_seconds", "Time for the core to apply one batch.");
        self.commit.render(&mut out, "faultline_commit_seconds", "Time to commit one Kafka transaction.");
        out
    }
}

#[derive(Clone)]
struct Scrape {
    metrics: Arc<Metrics>,
    handle: EngineHandle,
    consumer: Arc<AlarmConsumer>,
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    handle: EngineHandle,
    consumer: Arc<AlarmConsumer>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new().route("/metrics", get(scrape)).with_state(Scrape { metrics, handle, consumer });
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

async fn scrape(State(scrape): State<Scrape>) -> impl IntoResponse {
    let core = scrape
        .handle
        .call(|ctx| {
            let mut by_state: BTreeMap<&'static str, u64> = BTreeMap::new();
            for incident in ctx.correlator.incidents() {
                *by_state.entry(incident.state.as_str()).or_default() += 1;
            }
            (ctx.stats(), by_state)
        })
        .await
        .ok();
    let consumer = scrape.consumer.clone();
    let lag = tokio::task::spawn_blocking(move || consumer_lag(&consumer)).await.unwrap_or_default();
    let (stats, by_state) = match &core {
        Some((stats, by_state)) => (Some(stats), by_state.iter().map(|(s, c)| (*s, *c)).collect::<Vec<_>>()),
        None => (None, Vec::new()),
    };
    let body = scrape.metrics.render(stats, &by_state, &lag);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// High watermark minus position for each assigned partition.
fn consumer_lag(consumer: &AlarmConsumer) -> Vec<(String, i32, i64)> {
    let Ok(positions) = consumer.position() else { return Vec::new() };
    positions
        .elements()
        .iter()
        .filter_map(|e| {
            let (_, high) = consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(1)).ok()?;
            let position = match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            };
            Some((e.topic().to_owned(), e.partition(), (high - position).max(0)))
        })
        .collect()
}
