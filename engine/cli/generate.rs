//! `faultline generate`: synthetic carrier networks to a topology file, and alarm storms
//! over a topology to a file (JSON Lines, one alarm per line, ready for `kcat -P -l`) or
//! straight into a Kafka topic at a fixed rate.

use crate::config::KafkaConfig;
use crate::generate::carrier::{self, Shape};
use crate::generate::scenario::{Kind, Storm, to_json};
use crate::kafka;
use crate::model::EpochMillis;
use crate::topology_file;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::ClientContext;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Networks from this size on get a progress bar (on a terminal).
const PROGRESS_FROM: usize = 100_000;

fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!("{{bar:40}} {{human_pos}}/{{human_len}} {what} ({{eta}} left)"))
            .expect("a valid template"),
    );
    bar
}

/// Writes a network of `cis` CIs to `out`, VPNs spanning `vpn_sites` sites; prints its shape
/// on stderr.
pub fn topology(cis: usize, seed: u64, vpn_sites: usize, out: &Path) -> anyhow::Result<Shape> {
    let started = Instant::now();
    let file = std::fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let bar = if cis >= PROGRESS_FROM { progress_bar(cis as u64, "CIs") } else { ProgressBar::hidden() };
    let shape = carrier::write_network(cis, seed, vpn_sites, &mut writer, |done| bar.set_position(done as u64))?;
    writer.flush().with_context(|| format!("cannot write {}", out.display()))?;
    bar.finish_and_clear();
    eprintln!(
        "{}: {} CIs, {} relations ({} sites, {} services, {} customers) in {:.1} s",
        out.display(),
        shape.cis,
        shape.relations,
        shape.sites,
        shape.services,
        shape.customers,
        started.elapsed().as_secs_f64()
    );
    Ok(shape)
}

/// Where `generate alarms` sends its storm.
pub enum Sink<'a> {
    File(&'a Path),
    Topic { brokers: &'a str, topic: &'a str, kafka: &'a KafkaConfig },
}

pub struct AlarmOptions<'a> {
    pub topology: &'a Path,
    pub scenario: Kind,
    /// Notifications per second.
    pub rate: f64,
    pub duration: Duration,
    pub seed: u64,
    /// Event time of the first notification (file output; a topic gets the send time).
    pub start: EpochMillis,
}

/// Plays a storm to a file (as fast as it can be written, event times spaced by the rate)
/// or into a topic (paced at the rate, event times at sending). Returns the count sent.
pub fn alarms(options: &AlarmOptions, sink: Sink) -> anyhow::Result<u64> {
    let topology = topology_file::load(options.topology)?;
    let count = (options.rate * options.duration.as_secs_f64()).round() as u64;
    let started = Instant::now();
    match sink {
        Sink::File(path) => {
            let mut storm = Storm::new(&topology, options.scenario, options.seed, options.start, options.rate)?;
            let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
            let bar = if count >= PROGRESS_FROM as u64 { progress_bar(count, "alarms") } else { ProgressBar::hidden() };
            for i in 0..count {
                writeln!(writer, "{}", to_json(&storm.next_alarm()))?;
                if i % 65_536 == 0 {
                    bar.set_position(i);
                }
            }
            writer.flush().with_context(|| format!("cannot write {}", path.display()))?;
            bar.finish_and_clear();
            eprintln!(
                "{}: {count} {} alarms in {:.1} s",
                path.display(),
                options.scenario.name(),
                started.elapsed().as_secs_f64()
            );
        }
        Sink::Topic { brokers, topic, kafka: settings } => {
            let now = crate::clock::wall_clock();
            let mut storm = Storm::new(&topology, options.scenario, options.seed, now, options.rate)?;
            let producer = producer(settings, brokers)?;
            let (rate, _) = produce(&producer, topic, &mut storm, count, Some(options.rate))?;
            eprintln!(
                "{topic}: {count} {} alarms in {:.1} s ({rate:.0}/s)",
                options.scenario.name(),
                started.elapsed().as_secs_f64(),
            );
        }
    }
    Ok(count)
}

/// The load tools' producer: idempotent, batching, with room for a fast storm.
pub(crate) fn producer(settings: &KafkaConfig, brokers: &str) -> anyhow::Result<ThreadedProducer<Deliveries>> {
    kafka::client_config(
        settings,
        brokers,
        &[
            ("enable.idempotence", "true"),
            ("linger.ms", "5"),
            ("batch.size", "1000000"),
            ("queue.buffering.max.messages", "1000000"),
            ("compression.type", "lz4"),
        ],
    )
    .create_with_context(Deliveries::default())
    .context("cannot create the Kafka producer")
}

/// Sends `count` alarms of the storm keyed by resource, paced at `rate` if given (alarm i
/// leaves at i / rate seconds), each stamped with its send time; waits for every delivery.
/// Returns the rate achieved and the bytes sent; fails if the brokers refused any.
pub(crate) fn produce(
    producer: &ThreadedProducer<Deliveries>,
    topic: &str,
    storm: &mut Storm<'_>,
    count: u64,
    rate: Option<f64>,
) -> anyhow::Result<(f64, u64)> {
    let started = Instant::now();
    let failed_before = producer.context().failed.load(Ordering::Relaxed);
    let mut bytes = 0u64;
    for i in 0..count {
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(i as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed())
                && wait > Duration::from_micros(500)
            {
                std::thread::sleep(wait);
            }
        }
        let mut alarm = storm.next_alarm();
        alarm.event_time = crate::clock::wall_clock();
        let value = to_json(&alarm);
        bytes += value.len() as u64;
        let record = BaseRecord::to(topic).key(alarm.resource.as_str()).payload(value.as_str());
        kafka::send_waiting(producer, record).context("cannot send to Kafka")?;
    }
    producer.flush(Duration::from_secs(60)).context("cannot flush to Kafka")?;
    let failed = producer.context().failed.load(Ordering::Relaxed) - failed_before;
    anyhow::ensure!(failed == 0, "{failed} of {count} alarms were not delivered to {topic}");
    Ok((count as f64 / started.elapsed().as_secs_f64(), bytes))
}

/// Counts the records the brokers took, and those they did not (after librdkafka's own
/// retries).
#[derive(Default)]
pub(crate) struct Deliveries {
    pub delivered: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::error!(%error, "an alarm was not delivered");
                }
            }
        }
    }
}
