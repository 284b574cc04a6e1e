//! The core thread: the single writer of all correlation state. It takes alarm batches
//! from the consumer, jobs from gRPC (queries and operator actions, run as closures against
//! the core), and timer ticks; it publishes every incident change to Kafka and to gRPC
//! subscribers, then hands the batch's offsets to the committer with the deliveries they
//! wait on. It never blocks on anything but its inputs and the bounded commit queue.

use crate::config::IncidentFormat;
use crate::correlate::{Correlator, Stats};
use crate::kafka::commit::PendingCommit;
use crate::kafka::incident_json;
use crate::kafka::ingest::Batch;
use crate::kafka::send_blocking;
use crate::metrics::Metrics;
use crate::model::EpochMillis;
use crate::model::incident::IncidentChange;
use crate::proto::{self, v1};
use prost::Message;
use rdkafka::TopicPartitionList;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{broadcast, mpsc};

/// A change as sent to every gRPC subscriber: encoded once, shared.
pub type SharedChange = Arc<v1::SubscribeIncidentsResponse>;

/// Work sent to the core thread by the async side.
pub type Job = Box<dyn FnOnce(&mut CoreContext<'_>) + Send>;

/// What a job sees: the correlator, the current time, and a way to publish its changes.
pub struct CoreContext<'a> {
    pub correlator: &'a mut Correlator,
    pub now: EpochMillis,
    publisher: &'a mut Publisher,
}

impl CoreContext<'_> {
    /// Publishes a change caused by a job (an operator action) to Kafka and subscribers.
    pub fn publish(&mut self, change: &IncidentChange) -> v1::Incident {
        self.publisher.publish(change)
    }

    /// A receiver of every change published after this call: taken on the core thread,
    /// so a snapshot read in the same job and this stream neither overlap nor leave a gap.
    pub fn subscribe(&self) -> broadcast::Receiver<SharedChange> {
        self.publisher.changes.subscribe()
    }

    pub fn stats(&self) -> RuntimeStats {
        RuntimeStats { core: self.correlator.stats(), dead_lettered: self.publisher.dead_lettered }
    }
}

/// The core's counters plus what the edges refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    pub core: Stats,
    pub dead_lettered: u64,
}

pub struct Publisher {
    pub producer: FutureProducer,
    pub incidents_topic: String,
    pub incidents_format: IncidentFormat,
    pub changes: broadcast::Sender<SharedChange>,
    /// Deliveries of changes not tied to a batch (operator actions, timers); they ride
    /// with the next commit so a failure is still noticed.
    pending: Vec<DeliveryFuture>,
    dead_lettered: u64,
}

impl Publisher {
    pub fn new(
        producer: FutureProducer,
        incidents_topic: String,
        incidents_format: IncidentFormat,
        changes: broadcast::Sender<SharedChange>,
    ) -> Publisher {
        Publisher { producer, incidents_topic, incidents_format, changes, pending: Vec::new(), dead_lettered: 0 }
    }

    fn publish(&mut self, change: &IncidentChange) -> v1::Incident {
        let incident = proto::incident_to_proto(&change.incident);
        let key = incident.id.clone();
        let payload = match self.incidents_format {
            IncidentFormat::Protobuf => incident.encode_to_vec(),
            IncidentFormat::Json => incident_json::to_json(&incident),
        };
        let record = FutureRecord::<str, [u8]>::to(&self.incidents_topic).key(&key).payload(&payload);
        self.pending.push(send_blocking(&self.producer, record));
        let shared = Arc::new(v1::SubscribeIncidentsResponse {
            kind: proto::change_kind_to_proto(change.kind) as i32,
            incident: Some(incident.clone()),
        });
        // No subscriber is not an error.
        let _ = self.changes.send(shared);
        incident
    }
}

pub struct CoreLoop {
    pub correlator: Correlator,
    pub publisher: Publisher,
    pub batches: crossbeam_channel::Receiver<Batch>,
    pub jobs: crossbeam_channel::Receiver<Job>,
    pub commits: mpsc::Sender<PendingCommit>,
    pub tick: Duration,
    pub metrics: Arc<Metrics>,
}

pub fn wall_clock() -> EpochMillis {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as EpochMillis).unwrap_or(0)
}

impl CoreLoop {
    /// Runs until the consumer hangs up (shutdown), having drained every batch it sent.
    pub fn run(mut self) {
        let mut changes = Vec::new();
        let mut jobs = self.jobs.clone();
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            crossbeam_channel::select! {
                recv(self.batches) -> batch => match batch {
                    Ok(batch) => {
                        if !self.on_batch(batch, &mut changes) {
                            break;
                        }
                    }
                    Err(_) => break,
                },
                recv(jobs) -> job => match job {
                    Ok(job) => job(&mut CoreContext { correlator: &mut self.correlator, now: wall_clock(), publisher: &mut self.publisher }),
                    Err(_) => jobs = crossbeam_channel::never(),
                },
                default(timeout) => {}
            }
            if Instant::now() >= next_tick {
                self.correlator.tick(wall_clock(), &mut changes);
                for change in changes.drain(..) {
                    self.publisher.publish(&change);
                }
                if !self.publisher.pending.is_empty() {
                    let commit = PendingCommit {
                        offsets: TopicPartitionList::new(),
                        deliveries: std::mem::take(&mut self.publisher.pending),
                        applied_at: Instant::now(),
                    };
                    if self.commits.blocking_send(commit).is_err() {
                        break;
                    }
                }
                next_tick = Instant::now() + self.tick;
            }
        }
        tracing::debug!("correlation core stopped");
    }

    /// Applies a batch and queues its commit; false when the committer is gone.
    fn on_batch(&mut self, batch: Batch, changes: &mut Vec<IncidentChange>) -> bool {
        let now = wall_clock();
        let started = Instant::now();
        for alarm in &batch.alarms {
            self.correlator.apply(alarm, now, changes);
        }
        for change in changes.drain(..) {
            self.publisher.publish(&change);
        }
        self.metrics.apply_batch.observe(started.elapsed());
        self.publisher.dead_lettered += batch.refused.len() as u64;
        let offsets = batch.offsets_list();
        let mut deliveries = batch.deliveries;
        deliveries.append(&mut self.publisher.pending);
        self.commits.blocking_send(PendingCommit { offsets, deliveries, applied_at: Instant::now() }).is_ok()
    }
}
