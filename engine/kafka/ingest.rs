//! The alarm consumer: a dedicated thread polls the input topics, decodes each message by
//! its topic's format, sets aside what cannot be decoded for the dead-letter topic, and
//! hands batches to the core. The bounded hand-off is the backpressure: when the core falls
//! behind, polling waits. Offsets are never committed here: the core commits them in the
//! transaction that writes their effects ([`super::output`]).

use super::changes_feed::WindowCommand;
use super::dead_letter::Refused;
use crate::clock::{TimeBound, wall_clock};
use crate::config::{AlarmFormat, KafkaConfig};
use crate::correlate::feed::FeedChange;
use crate::decode;
use crate::metrics::Metrics;
use crate::model::EpochMillis;
use crate::model::alarm::{Alarm, Resync};
use crate::runtime::failure::Failure;
use rdkafka::ClientContext;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Consumed messages on their way to the core.
#[derive(Default)]
pub struct Batch {
    pub alarms: Vec<Alarm>,
    /// Parallel to `alarms`: the Kafka timestamp of the record each came in, the time the
    /// core processes it at (stream time).
    pub times: Vec<EpochMillis>,
    /// The next offset to consume per (topic, partition) once this batch is applied.
    pub offsets: BTreeMap<(String, i32), i64>,
    /// Messages refused, for the dead-letter topic.
    pub refused: Vec<Refused>,
    /// Alarm lists (resynchronisations), in order, each with the range of `alarms` it lists
    /// and the time of its record.
    pub resyncs: Vec<(Resync, std::ops::Range<usize>, EpochMillis)>,
    /// Records of the topology feed, in order, each applied before `alarms[at]`.
    pub topology: Vec<TopologyRecord>,
    /// Records of the changes topic, in order, each applied before `alarms[at]` (after the
    /// topology records there).
    pub windows: Vec<WindowRecord>,
}

/// A record of the changes topic on its way to the core.
#[derive(Clone, Debug)]
pub struct WindowRecord {
    pub at: usize,
    pub time: EpochMillis,
    pub command: WindowCommand,
    pub source: String,
    /// The original key and value, for the dead-letter topic should the core refuse it.
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// A record of the topology feed on its way to the core, which applies it in its place
/// among the alarms.
#[derive(Clone, Debug)]
pub struct TopologyRecord {
    /// Applied before the alarm at this place in the batch (all of them: the batch's length).
    pub at: usize,
    /// Its record's time (stream time).
    pub time: EpochMillis,
    pub change: FeedChange,
    /// The original key and value, for the dead-letter topic should the core refuse it.
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
}

/// The alarm consumer's context: logs every assignment and revocation, the moments at
/// which Kafka may deliver a partition's messages again from its committed offset.
pub struct IngestContext;

impl ClientContext for IngestContext {}

impl ConsumerContext for IngestContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |list: &rdkafka::TopicPartitionList| {
            list.elements().iter().map(|e| format!("{}/{}", e.topic(), e.partition())).collect::<Vec<_>>().join(",")
        };
        match rebalance {
            Rebalance::Assign(list) => tracing::info!(partitions = %partitions(list), "partitions assigned"),
            Rebalance::Revoke(list) => tracing::info!(partitions = %partitions(list), "partitions revoked"),
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
        }
    }
}

/// The consumer of the input topics.
pub type AlarmConsumer = BaseConsumer<IngestContext>;

/// How long librdkafka waits before fetching again once its local queue is over its
/// thresholds (`fetch.queue.backoff.ms`; 1 s by default). The core drains a full queue in
/// well under a second and then sat without input for the rest of it, several times a
/// second under load (end to end 108k-154k alarms/s; 177k-221k with this).
pub const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// `embedded`: the brokers are the embedded mock cluster, which differs from a broker in
/// two ways that matter here. It answers a fetch that finds nothing only when the fetch's
/// whole wait is over, never as soon as a record arrives: the consumer waits 10 ms there
/// instead of 500 (Kafka's default), or every alarm reaching an idle engine would wait up to
/// half a second. And it completes a rebalance only when its timer runs out, a second short
/// of the session timeout: the session is 6 s there, so that a rejoin costs 5 s, not two
/// minutes (no broker restart is to be ridden out in-process).
pub fn consumer(kafka: &KafkaConfig, brokers: &str, embedded: bool) -> Result<AlarmConsumer, KafkaError> {
    // No auto-commit: offsets move only inside the core's transactions. Static membership
    // lets a restarted instance take its partitions back at once, so the session timeout can
    // be long (as static membership is meant to be used): a broker restart or a network
    // hiccup of a minute does not cost a rebalance.
    let member = super::output::transactional_id(kafka);
    let (session, heartbeat, fetch_wait) = if embedded { ("6000", "1000", "10") } else { ("120000", "3000", "500") };
    let consumer: AlarmConsumer = super::client_config(
        kafka,
        brokers,
        &[
            ("group.id", kafka.group_id.as_str()),
            ("group.instance.id", member.as_str()),
            ("session.timeout.ms", session),
            ("heartbeat.interval.ms", heartbeat),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
            ("isolation.level", "read_committed"),
            ("enable.partition.eof", "false"),
            ("fetch.wait.max.ms", fetch_wait),
            ("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS),
        ],
    )
    .create_with_context(IngestContext)?;
    let mut topics: Vec<&str> = kafka.inputs.iter().map(|i| i.topic.as_str()).collect();
    topics.extend(kafka.topology_topic());
    topics.extend(kafka.changes_topic());
    consumer.subscribe(&topics)?;
    Ok(consumer)
}

/// Whether a consumed message is new to this process.
#[derive(Debug, PartialEq, Eq)]
enum Position {
    Next,
    /// Already taken before a rebalance rewound the partition.
    Again,
}

/// The next offset this process takes from each input partition. A handful of partitions:
/// a short vector scanned without allocating beats a map keyed by an owned topic name.
#[derive(Default)]
struct Taken(Vec<(String, i32, i64)>);

impl Taken {
    fn check(&mut self, topic: &str, partition: i32, offset: i64) -> Position {
        let Some(entry) = self.0.iter_mut().find(|(t, p, _)| *p == partition && t == topic) else {
            tracing::info!(topic, partition, offset, "consuming partition");
            self.0.push((topic.to_owned(), partition, offset + 1));
            return Position::Next;
        };
        if offset < entry.2 {
            return Position::Again;
        }
        entry.2 = offset + 1;
        Position::Next
    }
}

pub struct Ingest {
    pub consumer: Arc<AlarmConsumer>,
    pub formats: BTreeMap<String, AlarmFormat>,
    pub max_message_bytes: usize,
    /// The largest record the engine writes: a dead letter is cut to fit it.
    pub max_record_bytes: usize,
    pub max_batch: usize,
    /// Event times further ahead of their record's timestamp are clamped to it.
    pub max_event_time_ahead_ms: EpochMillis,
    /// Stream time never runs further ahead of the wall clock than this: a record stamped
    /// later is applied at the bound.
    pub max_clock_skew_ms: EpochMillis,
    /// The topology feed's topic, and the largest CI record it takes.
    pub topology_topic: Option<String>,
    /// The changes topic (maintenance windows).
    pub changes_topic: Option<String>,
    /// The consumer group: records of the topology topic this group seeded are skipped.
    pub group_id: String,
    pub max_ci_record_bytes: usize,
    pub metrics: Arc<Metrics>,
}

/// How often a source whose records are stamped ahead of the wall clock is named in the log.
const AHEAD_WARNING_EVERY: Duration = Duration::from_secs(10);

impl Ingest {
    /// Polls until `shutdown`, then returns; dropping `batches` tells the core to drain.
    pub fn spawn(
        self,
        batches: crossbeam_channel::Sender<Batch>,
        shutdown: CancellationToken,
        failed: Failure,
    ) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new().name("kafka-ingest".into()).spawn(move || {
            failed.guard("kafka ingest", || {
                // The next offset this process has taken from each partition. After a
                // rebalance Kafka delivers again from the committed offset, which may be
                // behind what this process already applied but not yet committed: those
                // messages are skipped here, so that nothing is applied twice.
                let mut taken = Taken::default();
                let mut bound = TimeBound::new(self.max_clock_skew_ms);
                let mut warned: Option<Instant> = None;
                while !shutdown.is_cancelled() {
                    bound.refresh();
                    let mut at = Stamping { bound: &bound, warned: &mut warned };
                    let batch = self.collect(&mut taken, &mut at)?;
                    // A closed channel: the core has stopped (its own failure is recorded).
                    if !batch.is_empty() && batches.send(batch).is_err() {
                        break;
                    }
                }
                Ok::<(), KafkaError>(())
            })
        })
    }

    /// The messages at hand, decoded; an error no retry mends (fatal, not authorised,
    /// fenced) stops the engine.
    fn collect(&self, taken: &mut Taken, at: &mut Stamping<'_>) -> Result<Batch, KafkaError> {
        let mut batch = Batch::default();
        let mut next = self.consumer.poll(Duration::from_millis(100));
        let started = Instant::now();
        while let Some(result) = next {
            match result {
                Ok(message) => match taken.check(message.topic(), message.partition(), message.offset()) {
                    Position::Again => {
                        self.metrics.redelivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Position::Next => self.take(&message, at, &mut batch),
                },
                Err(error) if is_fatal(&error) => return Err(error),
                Err(error) => tracing::warn!(%error, "kafka consumer error"),
            }
            let taken = batch.alarms.len() + batch.refused.len() + batch.resyncs.len();
            if taken + batch.topology.len() + batch.windows.len() >= self.max_batch {
                break;
            }
            next = self.consumer.poll(Duration::ZERO);
        }
        if !batch.is_empty() {
            self.metrics.decode_batch.observe(started.elapsed());
        }
        Ok(batch)
    }

    fn take(&self, message: &rdkafka::message::BorrowedMessage<'_>, at: &mut Stamping<'_>, batch: &mut Batch) {
        batch.offsets.insert((message.topic().to_owned(), message.partition()), message.offset() + 1);
        if self.topology_topic.as_deref() == Some(message.topic()) {
            return self.take_topology(message, at, batch);
        }
        if self.changes_topic.as_deref() == Some(message.topic()) {
            return self.take_window(message, at, batch);
        }
        let format = self.formats.get(message.topic()).copied().unwrap_or(AlarmFormat::Protobuf);
        let received = at.stamp(message, &self.metrics);
        let payload = message.payload().unwrap_or_default();
        let before = batch.alarms.len();
        match decode::decode(format, payload, received, self.max_message_bytes, &mut batch.alarms) {
            Ok(resync) => {
                let decoded = batch.alarms.len() - before;
                batch.times.resize(batch.alarms.len(), received);
                // A source clock far ahead would pin an alarm's last-seen time in the
                // future: such event times are replaced by the record's and counted.
                let latest = received.saturating_add(self.max_event_time_ahead_ms);
                for alarm in &mut batch.alarms[before..] {
                    if alarm.event_time > latest {
                        alarm.event_time = received;
                        self.metrics.clamped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                if let Some(mut resync) = resync {
                    if resync.as_of > latest {
                        resync.as_of = received;
                        self.metrics.clamped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    batch.resyncs.push((resync, before..batch.alarms.len(), received));
                }
                self.metrics.decoded(format, decoded);
            }
            Err(error) => {
                let reason = error.reason();
                tracing::debug!(reason, %error, "alarm refused to the dead-letter topic");
                batch.refused.push(Refused::new(message, reason, error.to_string(), self.max_record_bytes));
                self.metrics.refused(format, reason);
            }
        }
    }
}

impl Ingest {
    fn take_window(&self, message: &rdkafka::message::BorrowedMessage<'_>, at: &mut Stamping<'_>, batch: &mut Batch) {
        let time = at.stamp(message, &self.metrics);
        match super::changes_feed::decode(message.key(), message.payload(), self.max_ci_record_bytes) {
            Ok(command) => batch.windows.push(WindowRecord {
                at: batch.alarms.len(),
                time,
                command,
                source: format!("{}/{}/{}", message.topic(), message.partition(), message.offset()),
                key: message.key().map(<[u8]>::to_vec),
                payload: message.payload().unwrap_or_default().to_vec(),
            }),
            Err(refusal) => {
                tracing::debug!(reason = refusal.reason, detail = %refusal.detail, "changes record refused to the dead-letter topic");
                batch.refused.push(Refused::new(message, refusal.reason, refusal.detail, self.max_record_bytes));
                self.metrics.refused_as("changes", refusal.reason);
            }
        }
    }

    fn take_topology(&self, message: &rdkafka::message::BorrowedMessage<'_>, at: &mut Stamping<'_>, batch: &mut Batch) {
        if super::topology_feed::is_own_seed(message, &self.group_id) {
            return;
        }
        let time = at.stamp(message, &self.metrics);
        match super::topology_feed::decode(message.key(), message.payload(), self.max_ci_record_bytes) {
            Ok(change) => {
                let source = format!("{}/{}/{}", message.topic(), message.partition(), message.offset());
                batch.topology.push(TopologyRecord {
                    at: batch.alarms.len(),
                    time,
                    change: FeedChange { change, source },
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().unwrap_or_default().to_vec(),
                });
            }
            Err(refusal) => {
                tracing::debug!(reason = refusal.reason, detail = %refusal.detail, "topology record refused to the dead-letter topic");
                batch.refused.push(Refused::new(message, refusal.reason, refusal.detail, self.max_record_bytes));
                self.metrics.refused_topology(refusal.reason);
            }
        }
    }
}

/// A consumer error no retry mends: the engine must stop and say so rather than consume
/// nothing behind a SERVING health.
fn is_fatal(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::Fatal
                | Code::TopicAuthorizationFailed
                | Code::GroupAuthorizationFailed
                | Code::ClusterAuthorizationFailed
                | Code::SaslAuthenticationFailed
                | Code::FencedInstanceId
                | Code::Authentication
        )
    )
}

/// The time a consumed record is applied at: its Kafka timestamp (the wall clock when it has
/// none), held at the wall clock plus the configured skew.
struct Stamping<'a> {
    bound: &'a TimeBound,
    /// When a source stamped ahead was last named in the log.
    warned: &'a mut Option<Instant>,
}

impl Stamping<'_> {
    fn stamp(&mut self, message: &rdkafka::message::BorrowedMessage<'_>, metrics: &Metrics) -> EpochMillis {
        let (time, ahead_ms) = self.bound.cap(message.timestamp().to_millis().unwrap_or_else(wall_clock));
        if ahead_ms > 0 {
            metrics.record_time_capped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if self.warned.is_none_or(|at| at.elapsed() >= AHEAD_WARNING_EVERY) {
                *self.warned = Some(Instant::now());
                tracing::warn!(
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    ahead_ms,
                    "record stamped ahead of the wall clock; applied at the wall clock plus the allowed skew"
                );
            }
        }
        time
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_delivered_again_after_a_rewind_are_recognised() {
        let mut taken = Taken::default();
        assert_eq!(taken.check("alarms", 0, 10), Position::Next, "the first message resumes the partition");
        assert_eq!(taken.check("alarms", 0, 11), Position::Next);
        assert_eq!(taken.check("alarms", 1, 0), Position::Next, "partitions are apart");
        // A rebalance rewinds partition 0 to its committed offset, 10.
        assert_eq!(taken.check("alarms", 0, 10), Position::Again);
        assert_eq!(taken.check("alarms", 0, 11), Position::Again);
        assert_eq!(taken.check("alarms", 0, 12), Position::Next);
        // Compaction or transaction markers leave gaps: later offsets are new.
        assert_eq!(taken.check("alarms", 0, 20), Position::Next);
        assert_eq!(taken.check("other", 0, 0), Position::Next, "topics are apart");
    }
}
