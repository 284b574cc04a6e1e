//! Commit after the effect, atomically: everything the core writes goes through one
//! transactional producer. A [`Transaction`] holds the dead letters of a few batches, the
//! latest snapshot of each incident they changed, the state changelog records of what they
//! changed, and the input offsets that follow them (`send_offsets_to_transaction`). Either
//! all of it becomes visible to read_committed readers, or none of it does and the input is
//! consumed again: nothing lost, nothing doubled, whatever moment the process dies at.
//!
//! The core gathers a transaction for `commit_interval` and hands it to the output thread
//! ([`Output::spawn`]), which encodes, sends and commits it while the core goes on with the
//! next one. The hand-off holds one transaction. While one waits there, a due transaction
//! stays open and gathers more (fewer, larger commits when the brokers are slow, and the
//! core is not held up by a slow commit); past ten commit intervals the core waits, and
//! through its bounded input so does consumption (unreachable brokers).
//!
//! The incidents topic is compacted and carries the latest snapshot per incident: within
//! one transaction, an incident that changed a thousand times is written once, at its
//! newest version (versions on the topic only ever increase). Snapshots are encoded at
//! commit, so an incident costs one encoding per transaction, however busy it was.
//!
//! The producer is created and its transactions initialised (which fences a previous
//! incarnation and aborts its open transaction) before the changelog is read back, so the
//! restore sees exactly the last committed state.

use super::changelog;
use super::dead_letter::Refused;
use crate::config::{IncidentFormat, KafkaConfig};
use crate::correlate::changelog::CoreChanges;
use crate::kafka::incident_json;
use crate::kafka::ingest::AlarmConsumer;
use crate::metrics::Metrics;
use crate::model::incident::{ChangeKind, Incident, IncidentChange, IncidentId};
use crate::proto;
use crate::runtime::failure::Failure;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub type TxnProducer = ThreadedProducer<DefaultProducerContext>;

/// How long one transactional call may wait before it is retried (a retriable timeout).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The transaction could not complete and was aborted; the output writes it again.
    #[error("transaction aborted: {0}")]
    Aborted(String),
    /// The producer can no longer be used (fenced by a newer instance with the same
    /// `kafka.instance_id`, or a fatal broker error).
    #[error("transactional producer failed: {0}")]
    Fatal(String),
    /// The output thread stopped on one of the errors above (it logged which).
    #[error("the kafka output stopped; uncommitted input will be consumed again after a restart")]
    Stopped,
    /// A transactional call ran far past its own timeout (librdkafka can wait forever on a
    /// coordinator that came back in an odd state, confluentinc/librdkafka#5456).
    #[error("`{0}` did not return within its timeout")]
    Hung(&'static str),
}

/// How long past its own timeout a transactional call may run before it is taken as hung.
const HUNG_AFTER: Duration = Duration::from_secs(10);

/// The transactional id and static group member id of this instance.
pub fn transactional_id(kafka: &KafkaConfig) -> String {
    format!("{}-{}", kafka.group_id, kafka.instance_id)
}

/// Creates the transactional producer and initialises its transactions. Blocking.
pub fn producer(kafka: &KafkaConfig, brokers: &str, timeout: Duration) -> Result<TxnProducer, KafkaError> {
    let id = transactional_id(kafka);
    let max_bytes = kafka.producer_message_max_bytes().to_string();
    let producer: TxnProducer = super::client_config(
        kafka,
        brokers,
        &[
            ("transactional.id", id.as_str()),
            ("linger.ms", "5"),
            ("transaction.timeout.ms", "60000"),
            ("message.max.bytes", max_bytes.as_str()),
        ],
    )
    .create()?;
    producer.init_transactions(timeout)?;
    Ok(producer)
}

/// Run once a transaction has committed (the reply to an operator action).
pub type AfterCommit = Box<dyn FnOnce() + Send>;

/// What one transaction writes, gathered by the core thread while it works and handed to
/// the output thread whole: the latest snapshot of each incident changed, the dead letters,
/// the state changelog records, and the input offsets that follow them.
#[derive(Default)]
pub struct Transaction {
    /// When the first work was added; `None` while empty.
    opened_at: Option<Instant>,
    /// The incidents changed, each with its snapshot once [`Transaction::settle`] has run.
    /// Until then a changed incident is noted by id alone: holding its snapshot would make
    /// the core copy the whole incident on its next change (it writes in place only what
    /// nobody else holds), and the transaction needs only the latest one anyway.
    incidents: BTreeMap<IncidentId, Option<Arc<Incident>>>,
    dead_letters: Vec<Refused>,
    /// The next offset to consume per input partition.
    offsets: BTreeMap<(String, i32), i64>,
    changes: Option<CoreChanges>,
    after_commit: Vec<AfterCommit>,
}

impl Transaction {
    fn open(&mut self) {
        self.opened_at.get_or_insert_with(Instant::now);
    }

    /// Notes a changed incident. A closed one leaves the core, so its last snapshot is
    /// kept now; the others are taken at [`Transaction::settle`].
    pub fn incident(&mut self, change: &IncidentChange) {
        self.open();
        if change.kind == ChangeKind::Closed {
            self.incidents.insert(change.incident.id, Some(change.incident.clone()));
        } else {
            self.incidents.entry(change.incident.id).or_insert(None);
        }
    }

    /// Takes the latest snapshot of every incident noted by id, as the transaction is
    /// handed over.
    pub fn settle(&mut self, latest: impl Fn(IncidentId) -> Option<Arc<Incident>>) {
        for (&id, snapshot) in &mut self.incidents {
            if snapshot.is_none() {
                *snapshot = latest(id);
            }
        }
    }

    pub fn dead_letter(&mut self, refused: Refused) {
        self.open();
        self.dead_letters.push(refused);
    }

    /// Adds consumed positions.
    pub fn consumed(&mut self, offsets: &BTreeMap<(String, i32), i64>) {
        self.open();
        for (partition, &next) in offsets {
            let entry = self.offsets.entry(partition.clone()).or_insert(next);
            *entry = (*entry).max(next);
        }
    }

    /// The core's changelog records since the last transaction.
    pub fn changes(&mut self, changes: CoreChanges) {
        self.open();
        self.changes = Some(changes);
    }

    /// Runs `f` once this transaction has committed; never if it fails.
    pub fn after_commit(&mut self, f: AfterCommit) {
        self.open();
        self.after_commit.push(f);
    }

    pub fn is_empty(&self) -> bool {
        self.opened_at.is_none()
    }

    /// When this transaction should be handed over for commit, if it holds anything.
    pub fn deadline(&self, interval: Duration) -> Option<Instant> {
        self.opened_at.map(|at| at + interval)
    }

    /// Whether it has gathered work for `interval`.
    pub fn due(&self, interval: Duration) -> bool {
        self.opened_at.is_some_and(|at| at.elapsed() >= interval)
    }
}

/// Writes and commits transactions, on its own thread: encoding snapshots and waiting on
/// brokers never hold the core up, which gathers the next transaction meanwhile.
pub struct Output {
    producer: TxnProducer,
    /// The consumer whose offsets each transaction commits (its group metadata fences a
    /// zombie that lost its partitions).
    consumer: Arc<AlarmConsumer>,
    incidents_topic: String,
    incidents_format: IncidentFormat,
    dead_letter_topic: String,
    state_topic: String,
    /// The largest record written: an incident snapshot over it is written trimmed.
    max_record_bytes: usize,
    metrics: Arc<Metrics>,
    /// What a replacement producer is made from.
    kafka: KafkaConfig,
    brokers: String,
    /// Cleared while a commit is being retried (brokers unreachable), for health checks.
    healthy: Arc<AtomicBool>,
}

impl Output {
    pub fn new(
        producer: TxnProducer,
        consumer: Arc<AlarmConsumer>,
        kafka: &KafkaConfig,
        brokers: &str,
        healthy: Arc<AtomicBool>,
        metrics: Arc<Metrics>,
    ) -> Output {
        Output {
            producer,
            consumer,
            incidents_topic: kafka.incidents_topic.clone(),
            incidents_format: kafka.incidents_format,
            dead_letter_topic: kafka.dead_letter_topic.clone(),
            state_topic: kafka.state_topic.clone(),
            max_record_bytes: kafka.max_record_bytes,
            metrics,
            kafka: kafka.clone(),
            brokers: brokers.to_owned(),
            healthy,
        }
    }

    /// Commits every transaction received, in order, until the core hangs up. A failure
    /// that no new attempt can mend stops the thread and sets `failed`: the core then
    /// finds the channel closed and stops too, and the engine restarts from what was
    /// committed.
    pub fn spawn(
        mut self,
        transactions: crossbeam_channel::Receiver<Transaction>,
        failed: Failure,
    ) -> std::io::Result<JoinHandle<()>> {
        let metrics = self.metrics.clone();
        std::thread::Builder::new().name("kafka-output".into()).spawn(move || {
            failed.guard("kafka output", || {
                for mut transaction in transactions {
                    let started = Instant::now();
                    let after_commit = std::mem::take(&mut transaction.after_commit);
                    self.commit_surely(&transaction)?;
                    metrics.commit.observe(started.elapsed());
                    after_commit.into_iter().for_each(|f| f());
                }
                Ok::<(), OutputError>(())
            })
        })
    }

    /// Commits `transaction`, writing it again whole when it was aborted (the brokers
    /// rejected it, or a call hung and the producer was replaced, which aborts it): the
    /// core's state holds its effects, so the transaction must land. Only errors that no
    /// new attempt can mend (fenced by a newer instance, a fatal broker error) stop.
    fn commit_surely(&mut self, transaction: &Transaction) -> Result<(), OutputError> {
        loop {
            match self.commit(transaction) {
                Ok(()) => return Ok(()),
                Err(OutputError::Aborted(reason)) => {
                    self.healthy.store(false, Ordering::Relaxed);
                    tracing::warn!(%reason, "transaction aborted; writing it again");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(OutputError::Hung(what)) => {
                    self.healthy.store(false, Ordering::Relaxed);
                    tracing::error!(
                        what,
                        "a transactional call hung past its timeout; replacing the producer (which aborts the \
                         open transaction) and writing the transaction again"
                    );
                    self.producer = self.replacement()?;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// A new transactional producer under the same transactional id: its initialisation
    /// fences the old one and aborts the old one's open transaction. Retried while the
    /// brokers are unreachable.
    fn replacement(&self) -> Result<TxnProducer, OutputError> {
        let mut attempts = 0u32;
        loop {
            match producer(&self.kafka, &self.brokers, CALL_TIMEOUT) {
                Ok(producer) => {
                    tracing::info!(attempts, "transactional producer replaced");
                    return Ok(producer);
                }
                Err(error) => {
                    attempts += 1;
                    tracing::warn!(%error, attempts, "cannot initialise a new transactional producer yet; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// Encodes and sends the snapshots. Returns the protobuf encodings by incident, with
    /// their version, for the changelog records.
    fn send_incidents(
        &self,
        incidents: &BTreeMap<IncidentId, Option<Arc<Incident>>>,
    ) -> Result<BTreeMap<IncidentId, (u64, Vec<u8>)>, OutputError> {
        let mut key = String::new();
        let mut encoded = BTreeMap::new();
        for incident in incidents.values().flatten() {
            key.clear();
            write!(key, "{}", incident.id).expect("a String grows as needed");
            let record = BaseRecord::to(&self.incidents_topic).key(key.as_str());
            let room = self.max_record_bytes.saturating_sub(key.len());
            let format = self.incidents_format;
            let encode = |incident: &Incident, out: &mut Vec<u8>| match format {
                IncidentFormat::Protobuf => proto::encode::incident(incident, out),
                IncidentFormat::Json => *out = incident_json::to_json(&proto::incident_to_proto(incident)),
            };
            let mut bytes = Vec::new();
            if !fitted(incident, room, &mut bytes, encode) {
                self.trimmed(&self.incidents_topic, incident, bytes.len());
            } else if format == IncidentFormat::Protobuf {
                encoded.insert(incident.id, (incident.version, bytes.clone()));
            }
            send(&self.producer, record.payload(bytes.as_slice()))?;
        }
        Ok(encoded)
    }

    /// Counts and reports an incident written trimmed because it would not fit a record.
    fn trimmed(&self, topic: &str, incident: &Incident, size: usize) {
        self.metrics.records_trimmed.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            topic,
            incident = %incident.id,
            bytes = size,
            limit = self.max_record_bytes,
            "incident too large for one record; written with its lists trimmed"
        );
    }

    /// Writes one transaction and commits it. Retries while the brokers are unreachable;
    /// an abort, a hung call or a fatal error is returned.
    fn commit(&mut self, transaction: &Transaction) -> Result<(), OutputError> {
        let Transaction { incidents, dead_letters, offsets, changes, .. } = transaction;
        tracing::debug!("beginning a transaction");
        self.producer.begin_transaction().map_err(|e| OutputError::Fatal(e.to_string()))?;
        let encoded = self.send_incidents(incidents)?;
        for refused in dead_letters {
            send(&self.producer, refused.record(&self.dead_letter_topic))?;
        }
        if let Some(changes) = changes {
            let mut failed = Ok(());
            let (producer, topic) = (&self.producer, self.state_topic.as_str());
            let known = |incident: &Incident| {
                let (version, bytes) = encoded.get(&incident.id)?;
                (*version == incident.version).then_some(bytes.as_slice())
            };
            let trimmed = |incident: &Incident, size: usize| self.trimmed(topic, incident, size);
            changelog::encode(changes, self.max_record_bytes, known, trimmed, |key, value| {
                if failed.is_ok() {
                    let mut record = BaseRecord::<[u8], [u8]>::to(topic).key(key.as_bytes());
                    if let Some(value) = value {
                        record = record.payload(value);
                    }
                    failed = send(producer, record);
                }
            });
            failed?;
        }
        if !offsets.is_empty() {
            let mut list = TopicPartitionList::with_capacity(offsets.len());
            for ((topic, partition), &next) in offsets {
                list.add_partition_offset(topic, *partition, Offset::Offset(next))
                    .map_err(|e| OutputError::Fatal(e.to_string()))?;
            }
            // The group metadata is taken afresh on every attempt: if the brokers were away
            // long enough for the group to rebalance, the offsets commit under the new
            // generation (the ingest thread skips what the rebalance delivers again).
            if self.consumer.group_metadata().is_none() {
                return Err(OutputError::Fatal("the consumer has no group metadata (no group.id)".to_owned()));
            }
            let consumer = self.consumer.clone();
            self.retrying("send offsets", move |p| {
                let metadata =
                    consumer.group_metadata().ok_or(KafkaError::ConsumerCommit(RDKafkaErrorCode::InvalidGroupId))?;
                p.send_offsets_to_transaction(&list, &metadata, CALL_TIMEOUT)
            })?;
        }
        tracing::debug!(partitions = offsets.len(), "committing the transaction");
        self.wait_delivered();
        self.retrying("commit", |p| p.commit_transaction(CALL_TIMEOUT))?;
        tracing::debug!("transaction committed");
        Ok(())
    }

    /// Waits until the brokers have acknowledged every record sent, for at most a second.
    /// `commit_transaction` flushes first, but rust-rdkafka's flush waits in steps of a full
    /// 100 ms while anything is in flight, which was most of every commit's time. Here the
    /// wait ends within a millisecond of the last acknowledgement (the producer's own
    /// thread takes the delivery reports).
    /// Brokers that take longer are slow or away: `commit_transaction` then does the rest,
    /// with its timeouts, retries and health reporting.
    fn wait_delivered(&self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Runs a transactional call until it succeeds, retrying what librdkafka says may be
    /// retried (the brokers are unreachable or slow); aborts when the transaction cannot
    /// complete any more.
    fn retrying(
        &mut self,
        what: &'static str,
        call: impl Fn(&TxnProducer) -> Result<(), KafkaError> + Send + Sync + 'static,
    ) -> Result<(), OutputError> {
        let call = Arc::new(call);
        let mut attempts = 0u32;
        loop {
            let attempt = call.clone();
            let error = match self.watched(what, move |p| attempt(p))? {
                Ok(()) => {
                    if attempts > 0 {
                        tracing::info!(what, attempts, "transaction went through after retries");
                    }
                    self.healthy.store(true, Ordering::Relaxed);
                    return Ok(());
                }
                Err(error) => error,
            };
            let (retriable, abort) = match &error {
                KafkaError::Transaction(e) => (e.is_retriable(), e.txn_requires_abort()),
                // `commit_transaction` flushes first: a flush that timed out (brokers away)
                // leaves the messages queued, and calling it again resumes.
                KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut) => (true, false),
                _ => (false, false),
            };
            if retriable {
                attempts += 1;
                self.healthy.store(false, Ordering::Relaxed);
                tracing::warn!(what, %error, attempts, "transaction call failed; retrying");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            if abort {
                let aborted = self.watched("abort", |p| p.abort_transaction(CALL_TIMEOUT))?;
                return Err(OutputError::Aborted(match aborted {
                    Ok(()) => error.to_string(),
                    Err(abort_error) => format!("{error}; the abort failed too: {abort_error}"),
                }));
            }
            return Err(OutputError::Fatal(error.to_string()));
        }
    }

    /// Runs a blocking transactional call on a thread of its own and waits for it up to
    /// its timeout and `HUNG_AFTER` more; a call still running then is reported as hung
    /// and left behind (it ends when its producer is fenced by the replacement).
    fn watched(
        &self,
        what: &'static str,
        call: impl FnOnce(&TxnProducer) -> Result<(), KafkaError> + Send + 'static,
    ) -> Result<Result<(), KafkaError>, OutputError> {
        let producer = self.producer.clone();
        within(what, CALL_TIMEOUT + HUNG_AFTER, move || call(&producer))
    }
}

/// Encodes `incident` into `out` within `room` bytes; if the whole incident does not fit,
/// a copy with fewer entries in each list that does. Returns false when it had to trim.
pub fn fitted(incident: &Incident, room: usize, out: &mut Vec<u8>, encode: impl Fn(&Incident, &mut Vec<u8>)) -> bool {
    out.clear();
    encode(incident, out);
    if out.len() <= room {
        return true;
    }
    for keep in [256, 64, 16, 4, 0] {
        out.clear();
        encode(&incident.trimmed(keep), out);
        if out.len() <= room {
            break;
        }
    }
    false
}

/// Runs `call` on a thread of its own; its result if it returns within `limit`, else
/// [`OutputError::Hung`], leaving the thread to finish on its own.
fn within<T: Send + 'static>(
    what: &'static str,
    limit: Duration,
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<T, OutputError> {
    let (done, result) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("kafka-txn-call".into())
        .spawn(move || {
            let _ = done.send(call());
        })
        .map_err(|e| OutputError::Fatal(format!("cannot start a thread: {e}")))?;
    result.recv_timeout(limit).map_err(|_| OutputError::Hung(what))
}

/// Enqueues a record, waiting while librdkafka's local queue is full: the queue is the
/// backpressure on the output thread (and through its channel, on the core), never an error.
fn send<K: rdkafka::message::ToBytes + ?Sized, P: rdkafka::message::ToBytes + ?Sized>(
    producer: &TxnProducer,
    mut record: BaseRecord<'_, K, P>,
) -> Result<(), OutputError> {
    let started = Instant::now();
    let mut next_warning = started + Duration::from_secs(1);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                // Said once a second, so an output held up by a broker that takes nothing is seen.
                if Instant::now() >= next_warning {
                    tracing::warn!(waited_ms = started.elapsed().as_millis() as u64, "producer queue full; waiting");
                    next_warning += Duration::from_secs(1);
                }
                record = returned;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((error, _)) => return Err(OutputError::Fatal(format!("cannot produce: {error}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{play, ring};

    #[test]
    fn a_transaction_takes_snapshots_at_hand_over_and_a_closed_incident_its_own() {
        let (_, changes, _) = play(&ring(6), 2_000, 3, &mut |_| {});
        let changed = &changes[0];
        let closed = IncidentChange {
            kind: ChangeKind::Closed,
            incident: changes.iter().find(|c| c.incident.id != changed.incident.id).unwrap().incident.clone(),
        };
        let mut transaction = Transaction::default();
        let held = Arc::strong_count(&changed.incident);
        transaction.incident(changed);
        transaction.incident(&closed);
        assert_eq!(Arc::strong_count(&changed.incident), held, "no snapshot held while gathering");

        let mut newer = Incident::clone(&changed.incident);
        newer.version += 1;
        let newer = Arc::new(newer);
        let latest = |id: IncidentId| (id == changed.incident.id).then(|| newer.clone());
        transaction.settle(latest);
        assert!(Arc::ptr_eq(transaction.incidents[&changed.incident.id].as_ref().unwrap(), &newer), "the latest");
        let kept = transaction.incidents[&closed.incident.id].as_ref().unwrap();
        assert!(Arc::ptr_eq(kept, &closed.incident), "a closed incident, gone from the core, keeps its last snapshot");
    }

    #[test]
    fn an_incident_too_large_for_a_record_is_written_trimmed_within_it() {
        use crate::model::alarm::{AlarmRef, Severity};
        use crate::model::incident::{Note, TimelineEntry, TimelineKind};
        use prost::Message as _;
        let mut incident = Incident::new(IncidentId(7), 1_000);
        let text: Arc<str> = Arc::from("x".repeat(1_000));
        for i in 0..5_000 {
            incident.symptom_alarms.push(AlarmRef {
                resource: Arc::from(format!("port-{i}")),
                alarm_type: Arc::from("LOS"),
                qualifier: Arc::from(""),
                severity: Severity::Major,
                text: text.clone(),
                raised_at: 1_000,
                last_seen: 1_000,
                tally: 1,
                cleared_at: None,
            });
            incident.timeline.push(TimelineEntry { time: i, kind: TimelineKind::Symptom, text: text.clone() });
        }
        incident.notes.push(Note {
            author: "op".into(),
            text: "y".repeat(2_000_000),
            time: 5,
            request_id: String::new(),
        });
        incident.root_causes.push(Arc::from("card-1"));
        let encode = |incident: &Incident, out: &mut Vec<u8>| proto::encode::incident(incident, out);

        let mut whole = Vec::new();
        assert!(fitted(&incident, usize::MAX, &mut whole, encode), "no limit, no trimming");
        let mut bytes = Vec::new();
        assert!(!fitted(&incident, 100_000, &mut bytes, encode), "{} bytes whole", whole.len());
        assert!(bytes.len() <= 100_000, "{} bytes", bytes.len());
        let written = proto::v1::Incident::decode(bytes.as_slice()).unwrap();
        assert_eq!((written.id.as_str(), written.root_causes.as_slice()), ("INC-000007", &["card-1".to_owned()][..]));
        assert!(!written.symptom_alarms.is_empty(), "as many entries as fit are kept");
        assert_eq!(written.timeline.first().map(|e| e.time), Some(Some(proto::timestamp(0))), "the first entry");
    }

    #[test]
    fn a_call_that_outlives_its_limit_is_reported_hung_and_left_behind() {
        assert_eq!(within("quick", Duration::from_secs(5), || 7).unwrap(), 7);
        let started = Instant::now();
        let hung = within("send offsets", Duration::from_millis(50), || std::thread::sleep(Duration::from_secs(3)));
        assert!(matches!(hung, Err(OutputError::Hung("send offsets"))), "{hung:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "the caller does not wait for the hung call");
    }
}
