//! `faultline bench`: end-to-end load against a Kafka cluster, through real sockets.
//!
//! 1. **Throughput.** A generated storm (`generate::scenario`) over a generated carrier
//!    network is produced into a fresh topic as fast as possible. A plain rust-rdkafka
//!    consumer reads it all with no processing (the raw rate); then an engine, started in
//!    this process against the same brokers, consumes and correlates it (from its first
//!    alarm applied to its last). Faultline's rate is printed as a ratio of the raw one.
//! 2. **Latency.** With the engine caught up and gRPC subscribers attached, the storm goes
//!    on at a fixed offered rate. Each incident change a subscriber receives is timed from
//!    the Kafka timestamp of the alarm that made it (the incident's `update_time`, which is
//!    stream time: the newest record timestamp applied) to its arrival, into an
//!    hdrhistogram; the warm-up is left out. Subscribers decode only that timestamp
//!    ([`ChangeProbe`]); each has its own connection.
//!
//!    With `--replace-topology`, a second latency run follows, the same load offered while
//!    the whole topology is replaced through the topology topic: every CI's record sent
//!    again, changed (an attribute), spread evenly over the run. Its percentiles are
//!    printed beside those of the first run: what a CMDB's bulk update costs the alarms.
//!
//! 3. **Overload** (`--overload D`). Twice the throughput measured in 1 is offered for `D`,
//!    then `--rate` again until the backlog has drained; a row a second shows what was
//!    offered and applied, the backlog in Kafka, the engine's state, memory and latency.
//!
//! Conditions (machine, partitions, message size, network size, offered load) are printed
//! with the figures.

use super::generate::{produce, producer};
use crate::clock::wall_clock;
use crate::config::{AlarmFormat, Config, InputTopic, Overrides};
use crate::generate::carrier;
use crate::generate::scenario::{Kind, Storm};
use crate::kafka;
use crate::proto::v1;
use crate::runtime::Engine;
use anyhow::Context;
use hdrhistogram::Histogram;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::Producer;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct BenchOptions {
    /// Kafka bootstrap servers (`scripts/kafka-broker` starts a local one); not with --soak.
    #[arg(long, value_name = "HOST:PORT,...", required_unless_present = "soak")]
    pub brokers: Option<String>,
    /// Size of the generated carrier network.
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub cis: usize,
    #[arg(long, default_value = "mixed", value_parser = clap::value_parser!(Kind))]
    pub scenario: Kind,
    /// Alarms produced for the throughput run.
    #[arg(long, default_value_t = 1_000_000, value_name = "N")]
    pub count: u64,
    /// Alarms per second offered in the latency run (0 skips it), and after an overload.
    #[arg(long, default_value_t = 10_000.0, value_name = "PER_SECOND")]
    pub rate: f64,
    /// Length of the latency run, e.g. `60s`.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Start of the latency run left out of the figures.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// gRPC subscribers in the latency run.
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// What the subscribers ask for: whole incidents, summaries (no lists, only their
    /// sizes), or deltas (the summary and what the lists did).
    #[arg(long, value_enum, default_value = "full")]
    pub view: StreamView,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Then offer twice the measured throughput for this long (e.g. `10s`), and `--rate`
    /// until the backlog has drained, printing backlog, memory and latency each second.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub overload: Duration,
    /// Soak instead, with no Kafka: play this much stream time (e.g. `28d`) through the
    /// correlation core in this process, as fast as it goes, printing resident memory and
    /// the size of each of the core's structures every --sample (see `cli::soak`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, conflicts_with = "brokers")]
    pub soak: Option<Duration>,
    /// With --soak: stream time between two rows.
    #[arg(long, default_value = "1d", value_parser = humantime::parse_duration)]
    pub sample: Duration,
    /// With --soak: the stream time after which memory should stay flat; the summary
    /// compares the end with it.
    #[arg(long, default_value = "2d", value_parser = humantime::parse_duration)]
    pub soak_warmup: Duration,
    /// With --soak: multiplies every arrival rate of the workload (faults, flapping,
    /// unknown resources, operator actions).
    #[arg(long, default_value_t = 1.0)]
    pub load: f64,
    /// Then a second latency run while every CI's record is sent again, changed, through
    /// the topology topic (which the engine seeds with the network at start).
    #[arg(long, conflicts_with = "soak")]
    pub replace_topology: bool,
    /// With --soak: alarms not repeated for this long are aged out (`alarm_max_age_secs`
    /// for every source); 0s for none, the engine's default.
    #[arg(long, default_value = "1d", value_parser = humantime::parse_duration)]
    pub max_age: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StreamView {
    Full,
    Summary,
    Delta,
}

impl StreamView {
    fn proto(self) -> v1::IncidentView {
        match self {
            StreamView::Full => v1::IncidentView::Full,
            StreamView::Summary => v1::IncidentView::Summary,
            StreamView::Delta => v1::IncidentView::Delta,
        }
    }
}

pub struct Latency {
    pub offered: f64,
    pub sent: u64,
    pub changes: u64,
    /// The fewest and the most changes one subscriber received while measuring: equal when
    /// none was dropped or fell behind.
    pub per_subscriber: (u64, u64),
    /// The bytes of incidents (and deltas) those changes carried.
    pub bytes: usize,
    pub histogram: Histogram<u64>,
    /// Kafka alone: each alarm's Kafka timestamp to its arrival at a plain consumer of the
    /// same topic, at the same time. What the broker and the machine cost before the
    /// engine does anything; the engine's latency cannot be lower.
    pub kafka_alone: Histogram<u64>,
}

pub struct Report {
    pub raw_per_sec: f64,
    pub engine_per_sec: f64,
    pub produce_per_sec: f64,
    pub mean_bytes: f64,
    pub latency: Option<Latency>,
    pub overload: Vec<Second>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Twice the measured throughput offered.
    Overload,
    /// The load dropped back to `--rate`.
    Recovery,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Overload => "2x",
            Phase::Recovery => "recovery",
        }
    }
}

/// One second of the overload run.
pub struct Second {
    pub phase: Phase,
    /// Alarms the brokers took from the bench's producer in this second.
    pub offered: u64,
    /// Alarms the engine applied in this second.
    pub applied: u64,
    /// Alarms in the topic not yet applied, at the end of the second.
    pub backlog: u64,
    /// The engine's state at the end of the second: active alarms, incidents held.
    pub active_alarms: u64,
    pub incidents: u64,
    /// This process's resident memory: the engine, and the bench's producer and subscriber.
    pub rss_mb: f64,
    /// Latency of the incident changes received in this second.
    pub latency: Histogram<u64>,
}

impl Second {
    /// In recovery, with less than a second of input waiting in the topic.
    fn drained(&self) -> bool {
        self.phase == Phase::Recovery && self.backlog <= self.offered.max(1)
    }
}

pub async fn run(options: &BenchOptions) -> anyhow::Result<Report> {
    let brokers = options.brokers.as_deref().context("--brokers is required")?;
    let mut text = Vec::new();
    let shape = carrier::write_network(options.cis, options.seed, 1, &mut text, |_| {})?;
    let topology =
        Arc::new(crate::topology_file::parse(std::str::from_utf8(&text)?, "generated").context("generated network")?);
    drop(text);

    let run = format!("{}-{}", std::process::id(), wall_clock());
    let topic = format!("faultline-bench.{run}.alarms");
    let overrides = Overrides { brokers: Some(brokers.to_owned()), ..Overrides::default() };
    let config = Config::defaults(&overrides)?
        .with("kafka.inputs", vec![InputTopic { topic: topic.clone(), format: AlarmFormat::Json }])?
        .with("kafka.incidents_topic", format!("faultline-bench.{run}.incidents"))?
        .with("kafka.dead_letter_topic", format!("faultline-bench.{run}.dead-letter"))?
        .with("kafka.state_topic", format!("faultline-bench.{run}.state"))?
        // Alarms alone are measured, unless the topology is to be replaced: no topology
        // topic to seed with the whole network otherwise.
        .with(
            "kafka.topology_topic",
            if options.replace_topology { format!("faultline-bench.{run}.topology") } else { String::new() },
        )?
        .with("kafka.changes_topic", "")?
        .with("kafka.group_id", format!("faultline-bench-{run}"))?
        .with("kafka.partitions", options.partitions)?
        .with("grpc.addr", "127.0.0.1:0")?
        .with("metrics.addr", "127.0.0.1:0")?;
    kafka::topics::ensure(&config.kafka, brokers).await.map_err(anyhow::Error::msg)?;

    println!("faultline bench");
    println!("  machine      {}", machine());
    println!("  brokers      {} ({} partitions)", brokers, options.partitions);
    println!(
        "  network      {} CIs, {} relations, {} services (generated, seed {})",
        shape.cis, shape.relations, shape.services, options.seed
    );

    // Throughput: the whole storm is in the topic before anyone reads it.
    let start = wall_clock();
    let (produce_per_sec, bytes) = {
        let producer = producer(&config.kafka, brokers)?;
        let (count, topic, topology, scenario, seed) =
            (options.count, topic.clone(), topology.clone(), options.scenario, options.seed);
        tokio::task::spawn_blocking(move || {
            let mut storm = Storm::new(&topology, scenario, seed, start, 1_000_000.0)?;
            produce(&producer, &topic, &mut storm, count, None)
        })
        .await??
    };
    let mean_bytes = bytes as f64 / options.count as f64;
    println!(
        "  storm        {} {} alarms, {mean_bytes:.0} bytes each (JSON), produced at {produce_per_sec:.0}/s",
        options.count,
        options.scenario.name()
    );
    let raw_per_sec = {
        let (config, topic, count) = (config.clone(), topic.clone(), options.count);
        tokio::task::spawn_blocking(move || raw_consume(&config, &topic, count)).await??
    };
    // The engine owns its topology, as when it reads a file: one shared with the bench
    // would be copied whole at every topology batch (copy on write).
    let engine = Engine::start_with(&config, Arc::new((*topology).clone())).await?;
    let engine_per_sec = engine_rate(&engine, options.count).await?;
    println!();
    println!("throughput (as fast as possible, {} alarms)", options.count);
    println!("  raw rdkafka consumption   {raw_per_sec:>10.0} alarms/s");
    println!(
        "  faultline end to end      {engine_per_sec:>10.0} alarms/s  ({:.2} x raw)",
        engine_per_sec / raw_per_sec
    );

    let base = if options.rate > 0.0 {
        Some(latency(&engine, &config, &topic, &topology, options, false).await?)
    } else {
        None
    };
    if let Some(l) = &base {
        print_latency(l, options, "");
    }
    let mut sent = options.count + base.as_ref().map_or(0, |l| l.sent);
    if options.replace_topology && options.rate > 0.0 {
        let before =
            engine.handle().call(|ctx| ctx.correlator.topology().version()).await.map_err(anyhow::Error::msg)?;
        let replaced = latency(&engine, &config, &topic, &topology, options, true).await?;
        sent += replaced.sent;
        engine_rate(&engine, sent).await?;
        let topic = config.kafka.topology_topic().unwrap_or_default().to_owned();
        let cis = topology.len() as u64;
        let applied = applied_versions(&engine, before, &topic, cis).await?;
        let title = format!(
            "while the topology is replaced: each of the {cis} CI records sent again, changed, at {:.0}/s over the run, to {topic}; {applied} topology batches applied",
            cis as f64 / options.duration.as_secs_f64()
        );
        print_latency(&replaced, options, &title);
        if let Some(base) = &base {
            let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99) as f64;
            println!(
                "  p99 while the topology is replaced: {:.2} x the run without topology traffic",
                p99(&replaced.histogram) / p99(&base.histogram).max(1.0)
            );
        }
    }
    let overload = if options.overload > Duration::ZERO {
        let run = overload(&engine, &config, &topic, &topology, options, engine_per_sec).await?;
        sent += run.iter().map(|s| s.offered).sum::<u64>();
        run
    } else {
        Vec::new()
    };

    // Everything produced has been applied before the totals are read.
    engine_rate(&engine, sent).await?;
    let stats = engine.handle().call(|ctx| ctx.stats()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    // What each change costs a subscriber: the size of a whole snapshot, or of a summary.
    let (incidents, full, summary) = engine
        .handle()
        .call(|ctx| {
            let mut buffer = Vec::new();
            let mut size = |encode: fn(&crate::model::incident::Incident, &mut Vec<u8>), incident| {
                buffer.clear();
                encode(incident, &mut buffer);
                buffer.len()
            };
            ctx.correlator.incidents().fold((0usize, 0usize, 0usize), |(n, full, summary), incident| {
                let whole = size(crate::proto::encode::incident, incident);
                (n + 1, full + whole, summary + size(crate::proto::encode::incident_summary, incident))
            })
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!();
    println!(
        "engine: {} alarms in, {} raised, {} repeats, {} cleared, {} incidents opened, {} refused",
        stats.alarms_in, stats.raised, stats.duplicates, stats.cleared, stats.incidents.opened, stats.refused
    );
    let kb = |bytes: usize| bytes as f64 / incidents.max(1) as f64 / 1024.0;
    println!(
        "incidents in memory at the end: {incidents}; what each change sends a subscriber, on average: {:.1} KB whole, {:.2} KB as a summary",
        kb(full),
        kb(summary)
    );
    engine.stop(Duration::from_secs(30)).await?;
    Ok(Report { raw_per_sec, engine_per_sec, produce_per_sec, mean_bytes, latency: base, overload })
}

/// Prints a latency run's figures, under `title` (the run's conditions) if given.
fn print_latency(l: &Latency, options: &BenchOptions, title: &str) {
    let h = &l.histogram;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!();
    println!(
        "latency (alarm's Kafka timestamp to incident change at a gRPC subscriber), {:.0} alarms/s offered for {} s, {} subscriber(s) ({:?} view), first {} s left out",
        l.offered,
        options.duration.as_secs(),
        options.subscribers,
        options.view,
        options.warmup.as_secs()
    );
    if !title.is_empty() {
        println!("  {title}");
    }
    println!(
        "  alarms sent {}   incident changes timed {} ({} to {} a subscriber), {:.2} KB each on average",
        l.sent,
        l.changes,
        l.per_subscriber.0,
        l.per_subscriber.1,
        l.bytes as f64 / l.changes.max(1) as f64 / 1024.0
    );
    println!(
        "  p50 {:.2} ms   p90 {:.2} ms   p99 {:.2} ms   p99.9 {:.2} ms   max {:.2} ms",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0
    );
    let k = &l.kafka_alone;
    let ms = |q: f64| k.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "  Kafka alone (a plain consumer of the same topic, at the same time): p50 {:.2} ms   p90 {:.2} ms   p99 {:.2} ms   p99.9 {:.2} ms   max {:.2} ms",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        k.max() as f64 / 1000.0
    );
}

pub(super) fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| info.lines().next().and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
        .map(|kb| format!("{:.0} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    format!("{cpus} cores, {model}, {memory}, {} {}", std::env::consts::OS, std::env::consts::ARCH)
}

/// `SubscribeIncidentsResponse` as the bench's subscribers read it: only the incident's
/// `update_time` is decoded, the rest skipped, and the bytes of the incident and of its delta
/// counted. With hundreds of subscribers in the bench's own process, decoding every whole
/// incident would measure the bench, not the engine.
#[derive(Clone, Debug, Default)]
struct ChangeProbe {
    /// A `faultline.v1.ChangeKind`.
    kind: i32,
    incident: Option<IncidentProbe>,
    resume_token: String,
    /// The encoded sizes of the incident and of the delta.
    bytes: usize,
}

impl prost::Message for ChangeProbe {
    fn encode_raw(&self, _: &mut impl prost::bytes::BufMut) {
        unreachable!("the bench only reads changes")
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        let before = buf.remaining();
        let merged = match tag {
            1 => prost::encoding::int32::merge(wire_type, &mut self.kind, buf, ctx),
            4 => prost::encoding::string::merge(wire_type, &mut self.resume_token, buf, ctx),
            2 => prost::encoding::message::merge(wire_type, self.incident.get_or_insert_default(), buf, ctx),
            _ => prost::encoding::skip_field(wire_type, tag, buf, ctx),
        };
        if tag == 2 || tag == 3 {
            self.bytes += before - buf.remaining();
        }
        merged
    }

    fn encoded_len(&self) -> usize {
        0
    }

    fn clear(&mut self) {
        *self = ChangeProbe::default();
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct IncidentProbe {
    #[prost(message, optional, tag = "16")]
    update_time: Option<prost_types::Timestamp>,
}

/// Opens `IncidentService.Subscribe` on its own connection, read as [`ChangeProbe`]s.
async fn subscribe_probe(
    endpoint: &str,
    view: StreamView,
    resume_token: &str,
) -> anyhow::Result<tonic::Streaming<ChangeProbe>> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())?.connect().await?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/faultline.v1.IncidentService/Subscribe");
    let codec = tonic_prost::ProstCodec::<v1::SubscribeIncidentsRequest, ChangeProbe>::default();
    let request = v1::SubscribeIncidentsRequest {
        view: view.proto() as i32,
        resume_token: resume_token.into(),
        ..Default::default()
    };
    let request = tonic::Request::new(request);
    Ok(grpc.server_streaming(request, path, codec).await?.into_inner())
}

/// A consumer that only reads, in a group of its own (`<group_id>-<group>`), fetching as
/// the engine's does.
fn plain_consumer(config: &Config, group: &str, settings: &[(&str, &str)]) -> anyhow::Result<BaseConsumer> {
    let group = format!("{}-{group}", config.kafka.group_id);
    let mut all = vec![
        ("group.id", group.as_str()),
        ("enable.auto.commit", "false"),
        ("isolation.level", "read_committed"),
        ("fetch.queue.backoff.ms", kafka::ingest::FETCH_QUEUE_BACKOFF_MS),
    ];
    all.extend_from_slice(settings);
    kafka::client_config(&config.kafka, &config.kafka.brokers, &all).create().context("cannot create a plain consumer")
}

/// A plain consumer assigned every partition of `topic` at its end: it reads what is
/// produced from now on.
fn plain_consumer_at_end(config: &Config, topic: &str) -> anyhow::Result<BaseConsumer> {
    let consumer = plain_consumer(config, "plain", &[])?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).context("topic metadata")?;
    let mut assignment = rdkafka::TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment.add_partition_offset(topic, partition.id(), rdkafka::Offset::End).context("assignment")?;
    }
    consumer.assign(&assignment).context("cannot assign the plain consumer")?;
    Ok(consumer)
}

/// A plain consumer reads `count` messages of `topic` from the start, doing nothing with
/// them: the ceiling any consumer of this topic on this machine can reach.
fn raw_consume(config: &Config, topic: &str, count: u64) -> anyhow::Result<f64> {
    let consumer = plain_consumer(config, "raw", &[("auto.offset.reset", "earliest")])?;
    consumer.subscribe(&[topic]).context("cannot subscribe")?;
    let mut seen = 0u64;
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen < count {
        anyhow::ensure!(Instant::now() < deadline, "raw consumer read only {seen} of {count} messages");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                first.get_or_insert_with(Instant::now);
                std::hint::black_box(message.payload());
                seen += 1;
            }
            Some(Err(error)) => return Err(error).context("raw consumer"),
            None => {}
        }
    }
    Ok(count as f64 / first.map_or(1.0, |f| f.elapsed().as_secs_f64()))
}

/// Input messages the engine has taken (alarms applied and messages refused), with its
/// active alarms and the incidents it holds.
async fn taken(engine: &Engine) -> anyhow::Result<(u64, u64, u64)> {
    engine
        .handle()
        .call(|ctx| {
            let stats = ctx.stats();
            (stats.alarms_in + stats.refused, stats.active_alarms, ctx.correlator.shared_incidents().count() as u64)
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// This process's resident memory, in MB.
pub(super) fn rss_mb() -> f64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    (pages * 4096) as f64 / 1e6
}

fn new_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// Microseconds from an incident's `update_time` (the Kafka timestamp of the alarm that
/// changed it) to now.
fn age_micros(updated: &prost_types::Timestamp) -> u64 {
    micros_since(updated.seconds * 1_000_000 + i64::from(updated.nanos) / 1_000)
}

/// Microseconds from `stamp` (since the Unix epoch) to now; at least 1.
fn micros_since(stamp: i64) -> u64 {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
    (now - stamp).max(1) as u64
}

/// Twice the measured throughput for `options.overload`, then `options.rate` until the
/// backlog has drained and ten seconds more (at most ten minutes), with one gRPC
/// subscriber; a row a second: what was offered and applied, the backlog in the topic, the
/// engine's state, resident memory, and the latency of that second's incident changes. The
/// engine's queues are bounded, so the excess waits in Kafka, not in memory; once the load
/// drops, the backlog drains and latency comes back. The subscriber does what a dashboard
/// should: dropped for falling behind, it subscribes again.
async fn overload(
    engine: &Engine,
    config: &Config,
    topic: &str,
    topology: &Arc<crate::model::topology::Topology>,
    options: &BenchOptions,
    sustainable: f64,
) -> anyhow::Result<Vec<Second>> {
    const RECOVERY_LIMIT: Duration = Duration::from_secs(600);
    let high = 2.0 * sustainable;
    let low = if options.rate > 0.0 { options.rate } else { sustainable / 10.0 };
    println!();
    println!(
        "overload: {high:.0} alarms/s offered (2 x the throughput above) for {} s, then {low:.0} alarms/s until the backlog has drained; 1 subscriber",
        options.overload.as_secs(),
    );
    println!(
        "  {:>4}  {:<8}  {:>8}  {:>8}  {:>9}  {:>8}  {:>9}  {:>6}  {:>8}  {:>8}",
        "s", "phase", "offered", "applied", "backlog", "alarms", "incidents", "RSS MB", "p50 ms", "p99 ms"
    );

    let window = Arc::new(std::sync::Mutex::new(new_histogram()));
    let stop = tokio_util::sync::CancellationToken::new();
    let (endpoint, view) = (format!("http://{}", engine.grpc_addr()), options.view);
    let mut stream = subscribe_probe(&endpoint, view, "").await?;
    let subscriber = {
        let (window, stop) = (window.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut dropped, mut resumed) = (0u32, 0u32);
            let mut token = String::new();
            loop {
                let change = tokio::select! {
                    message = stream.message() => message,
                    _ = stop.cancelled() => return Ok((dropped, resumed)),
                };
                match change {
                    Ok(Some(change)) if change.kind == v1::ChangeKind::Snapshot as i32 => {}
                    Ok(Some(change)) => {
                        if !change.resume_token.is_empty() {
                            token = change.resume_token;
                        }
                        if let Some(updated) = change.incident.and_then(|i| i.update_time) {
                            let _ = window.lock().unwrap_or_else(|e| e.into_inner()).record(age_micros(&updated));
                        }
                    }
                    Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                        // Back from where it was: only the incidents that changed since.
                        dropped += 1;
                        stream = match subscribe_probe(&endpoint, view, &token).await {
                            Ok(stream) => {
                                resumed += 1;
                                stream
                            }
                            Err(_) => subscribe_probe(&endpoint, view, "").await?,
                        };
                    }
                    Ok(None) => anyhow::bail!("the subscription ended"),
                    Err(status) => anyhow::bail!("the subscription failed: {status}"),
                }
            }
        })
    };

    let producer = Arc::new(producer(&config.kafka, &config.kafka.brokers)?);
    let recovering = Arc::new(AtomicBool::new(false));
    let enough = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (producer, recovering, enough) = (producer.clone(), recovering.clone(), enough.clone());
        let (topic, topology, scenario, seed) = (topic.to_owned(), topology.clone(), options.scenario, options.seed);
        let length = options.overload;
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut storm = Storm::new(&topology, scenario, seed.wrapping_add(2), wall_clock(), high)?;
            produce(&producer, &topic, &mut storm, (high * length.as_secs_f64()) as u64, Some(high))?;
            recovering.store(true, Ordering::Relaxed);
            // Five seconds at a time, until the sampler has seen enough.
            while !enough.load(Ordering::Relaxed) {
                produce(&producer, &topic, &mut storm, (low * 5.0) as u64, Some(low))?;
            }
            Ok(())
        })
    };

    let base = taken(engine).await?.0;
    let (mut delivered, mut applied) = (0, 0);
    let mut seconds: Vec<Second> = Vec::new();
    let mut drained_at: Option<usize> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while !feeder.is_finished() {
        tick.tick().await;
        let now_delivered = producer.context().delivered.load(Ordering::Relaxed);
        let (now_taken, alarms, incidents) = taken(engine).await?;
        let now_applied = now_taken - base;
        let latency = std::mem::replace(&mut *window.lock().unwrap_or_else(|e| e.into_inner()), new_histogram());
        let second = Second {
            phase: if recovering.load(Ordering::Relaxed) { Phase::Recovery } else { Phase::Overload },
            offered: now_delivered - delivered,
            applied: now_applied - applied,
            backlog: now_delivered.saturating_sub(now_applied),
            active_alarms: alarms,
            incidents,
            rss_mb: rss_mb(),
            latency,
        };
        (delivered, applied) = (now_delivered, now_applied);
        let ms = |q: f64| {
            if second.latency.is_empty() { f64::NAN } else { second.latency.value_at_quantile(q) as f64 / 1000.0 }
        };
        println!(
            "  {:>4}  {:<8}  {:>8}  {:>8}  {:>9}  {:>8}  {:>9}  {:>6.0}  {:>8.1}  {:>8.1}",
            seconds.len() + 1,
            second.phase.name(),
            second.offered,
            second.applied,
            second.backlog,
            second.active_alarms,
            second.incidents,
            second.rss_mb,
            ms(0.5),
            ms(0.99)
        );
        if drained_at.is_none() && second.drained() {
            drained_at = Some(seconds.len());
        }
        let recovered = drained_at.is_some_and(|at| seconds.len() >= at + 10);
        let recovery_time = seconds.iter().filter(|s| s.phase == Phase::Recovery).count() as u64;
        seconds.push(second);
        if recovered || recovery_time >= RECOVERY_LIMIT.as_secs() {
            enough.store(true, Ordering::Relaxed);
        }
    }
    feeder.await??;
    stop.cancel();
    let (dropped, resumed) = subscriber.await??;
    summarise(&seconds, dropped, resumed);
    Ok(seconds)
}

/// The overload run in a few lines: memory, the backlog, latency at the end.
fn summarise(seconds: &[Second], dropped: u32, resumed: u32) {
    let peak = |phase: Phase| seconds.iter().filter(|s| s.phase == phase).map(|s| s.rss_mb).fold(0.0, f64::max);
    let first_rss = seconds.first().map_or(0.0, |s| s.rss_mb);
    println!(
        "  resident memory: {first_rss:.0} MB after the first second, at most {:.0} MB under 2x load, {:.0} MB in recovery",
        peak(Phase::Overload),
        peak(Phase::Recovery)
    );
    let backlog_peak = seconds.iter().map(|s| s.backlog).max().unwrap_or(0);
    let dropped_at = seconds.iter().position(|s| s.phase == Phase::Recovery).unwrap_or(seconds.len());
    let drained = seconds[dropped_at..].iter().position(Second::drained);
    match drained {
        Some(after) => println!("  backlog: at most {backlog_peak} alarms, drained {after} s after the load dropped"),
        None => println!("  backlog: at most {backlog_peak} alarms, not drained by the end of the run"),
    }
    println!(
        "  the subscriber was dropped for falling behind {dropped} time(s), and subscribed again ({resumed} time(s) resuming from its last change)"
    );
    let tail = &seconds[seconds.len().saturating_sub(10)..];
    let mut last = new_histogram();
    for second in tail {
        let _ = last.add(&second.latency);
    }
    if !last.is_empty() {
        let ms = |q: f64| last.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "  latency in the last {} s: p50 {:.2} ms   p99 {:.2} ms   p99.9 {:.2} ms",
            tail.len(),
            ms(0.5),
            ms(0.99),
            ms(0.999)
        );
    }
}

/// From the first alarm the engine applied to the `count`th.
async fn engine_rate(engine: &Engine, count: u64) -> anyhow::Result<f64> {
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let stats = engine.handle().call(|ctx| ctx.stats()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let done = stats.alarms_in + stats.refused;
        if done > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if done >= count {
            let elapsed = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
            return Ok(count as f64 / elapsed.max(1e-3));
        }
        anyhow::ensure!(Instant::now() < deadline, "the engine applied only {done} of {count} alarms");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until the engine's topology version stops moving (two seconds alike, at most
/// five minutes); returns how many batches it moved past `before`.
async fn applied_versions(engine: &Engine, before: u64, topic: &str, cis: u64) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let version =
        || async { engine.handle().call(|ctx| ctx.correlator.topology().version()).await.map_err(anyhow::Error::msg) };
    let mut last = version().await?;
    let mut since = Instant::now();
    while since.elapsed() < Duration::from_secs(2) {
        anyhow::ensure!(Instant::now() < deadline, "the engine was still applying {cis} records of {topic}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = version().await?;
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    Ok(last - before)
}

/// Sends every CI's record of `topology` to `topic` again, changed (attribute
/// `bench-revision`), keyed by id, spread evenly over `length`; waits for every delivery.
fn replace_topology(
    config: &Config,
    topic: &str,
    topology: &crate::model::topology::Topology,
    length: Duration,
) -> anyhow::Result<u64> {
    let producer: rdkafka::producer::ThreadedProducer<super::generate::Deliveries> = kafka::client_config(
        &config.kafka,
        &config.kafka.brokers,
        &[("enable.idempotence", "true"), ("linger.ms", "5"), ("partitioner", "murmur2_random")],
    )
    .create_with_context(Default::default())
    .context("cannot create the topology producer")?;
    let rate = topology.len() as f64 / length.as_secs_f64();
    let started = Instant::now();
    let mut value = Vec::new();
    let mut sent = 0u64;
    for (idx, ci) in topology.iter() {
        let due = Duration::from_secs_f64(sent as f64 / rate);
        if let Some(wait) = due.checked_sub(started.elapsed())
            && wait > Duration::from_micros(500)
        {
            std::thread::sleep(wait);
        }
        let mut record = topology.record(idx);
        record.attributes.insert("bench-revision".into(), "2".into());
        value.clear();
        serde_json::to_writer(&mut value, &record)?;
        let message = rdkafka::producer::BaseRecord::to(topic).key(&*ci.id).payload(&value);
        kafka::send_waiting(&producer, message).context("cannot send to Kafka")?;
        sent += 1;
    }
    producer.flush(Duration::from_secs(60)).context("cannot flush to Kafka")?;
    anyhow::ensure!(producer.context().delivered.load(Ordering::Relaxed) == sent, "topology records not delivered");
    Ok(sent)
}

/// A latency run; with `replace`, the whole topology replaced through the topology topic
/// meanwhile ([`replace_topology`]).
async fn latency(
    engine: &Engine,
    config: &Config,
    topic: &str,
    topology: &Arc<crate::model::topology::Topology>,
    options: &BenchOptions,
    replace: bool,
) -> anyhow::Result<Latency> {
    let (endpoint, view) = (format!("http://{}", engine.grpc_addr()), options.view);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut subscribers = Vec::new();
    for _ in 0..options.subscribers {
        let mut stream = subscribe_probe(&endpoint, view, "").await?;
        let (measuring, stop) = (measuring.clone(), stop.clone());
        subscribers.push(tokio::spawn(async move {
            let mut histogram = new_histogram();
            let (mut changes, mut bytes) = (0u64, 0usize);
            loop {
                let change = tokio::select! {
                    message = stream.message() => match message {
                        Ok(Some(change)) => change,
                        _ => break,
                    },
                    _ = stop.cancelled() => break,
                };
                let Some(updated) = change.incident.and_then(|i| i.update_time) else { continue };
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                let _ = histogram.record(age_micros(&updated));
                changes += 1;
                bytes += change.bytes;
            }
            (histogram, changes, bytes)
        }));
    }

    let baseline = {
        let (config, topic, measuring, stop) = (config.clone(), topic.to_owned(), measuring.clone(), stop.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<Histogram<u64>> {
            // Assigned long before the warm-up ends, so that it times every measured alarm.
            let consumer = plain_consumer_at_end(&config, &topic)?;
            let mut histogram = new_histogram();
            while !stop.is_cancelled() {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(message)) if measuring.load(Ordering::Relaxed) => {
                        if let Some(millis) = message.timestamp().to_millis() {
                            let _ = histogram.record(micros_since(millis * 1_000));
                        }
                    }
                    Some(Err(error)) => return Err(error).context("the plain consumer"),
                    _ => {}
                }
            }
            Ok(histogram)
        })
    };
    let replacer = match config.kafka.topology_topic().filter(|_| replace) {
        Some(target) => {
            let (config, target, topology, length) =
                (config.clone(), target.to_owned(), topology.clone(), options.duration);
            Some(tokio::task::spawn_blocking(move || replace_topology(&config, &target, &topology, length)))
        }
        None => None,
    };
    let producer = producer(&config.kafka, &config.kafka.brokers)?;
    let (rate, warmup, duration, topic) = (options.rate, options.warmup, options.duration, topic.to_owned());
    let (topology, scenario, seed) = (topology.clone(), options.scenario, options.seed.wrapping_add(1));
    let gate = measuring.clone();
    let total = (rate * duration.as_secs_f64()) as u64;
    let warm = (rate * warmup.as_secs_f64()).min(total as f64) as u64;
    let sent = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        let mut storm = Storm::new(&topology, scenario, seed, wall_clock(), rate)?;
        produce(&producer, &topic, &mut storm, warm, Some(rate))?;
        gate.store(true, Ordering::Relaxed);
        produce(&producer, &topic, &mut storm, total - warm, Some(rate))?;
        Ok(total)
    })
    .await??;
    if let Some(replacer) = replacer {
        replacer.await??;
    }
    // Let the last changes arrive, then close the streams by stopping the measurement.
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(false, Ordering::Relaxed);
    stop.cancel();
    let mut histogram = new_histogram();
    let (mut changes, mut per_subscriber, mut bytes) = (0, (u64::MAX, 0), 0);
    for subscriber in subscribers {
        let (h, c, b) = subscriber.await?;
        histogram.add(h).context("merge histograms")?;
        changes += c;
        bytes += b;
        per_subscriber = (per_subscriber.0.min(c), per_subscriber.1.max(c));
    }
    let kafka_alone = baseline.await??;
    Ok(Latency { offered: rate, sent, changes, per_subscriber, bytes, histogram, kafka_alone })
}
