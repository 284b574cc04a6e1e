//! The core thread: the single writer of all correlation state. It takes alarm batches
//! from the consumer, jobs from gRPC (queries and operator actions, run as closures against
//! the core), and timer ticks. Every incident change goes to gRPC subscribers at once (a
//! shared snapshot; the subscriber tasks encode it) and into the open Kafka transaction;
//! every `commit_interval` the transaction takes the core's changelog records and goes to
//! the output thread, which writes and commits it ([`crate::kafka::output`]).
//!
//! A job that changed incidents (an operator action) is answered once its transaction has
//! committed, so an acknowledgement an operator was told about survives any crash.

use crate::correlate::{Correlator, Stats};
use crate::grpc::wire::PublishedChange;
use crate::kafka::ingest::Batch;
use crate::kafka::output::{OutputError, Transaction};
use crate::metrics::Metrics;
use crate::model::EpochMillis;
use crate::model::incident::IncidentChange;
use crate::proto::{self, v1};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// A change as sent to every gRPC subscriber: shared, encoded once.
pub type SharedChange = Arc<PublishedChange>;

/// What a job hands back: the reply, sent once the job's changes are committed.
pub type Reply = crate::kafka::output::AfterCommit;

/// Work sent to the core thread by the async side.
pub type Job = Box<dyn FnOnce(&mut CoreContext<'_>) -> Reply + Send>;

/// What a job sees: the correlator, the current time, and a way to publish its changes.
pub struct CoreContext<'a> {
    pub correlator: &'a mut Correlator,
    pub now: EpochMillis,
    publisher: &'a mut Publisher,
}

impl CoreContext<'_> {
    /// Publishes a change caused by a job (an operator action) to Kafka and subscribers;
    /// returns the incident for the reply.
    pub fn publish(&mut self, change: &IncidentChange) -> v1::Incident {
        self.publisher.publish(change);
        proto::incident_to_proto(&change.incident)
    }

    /// A receiver of every change published after this call: taken on the core thread,
    /// so a snapshot read in the same job and this stream neither overlap nor leave a gap.
    pub fn subscribe(&self) -> broadcast::Receiver<SharedChange> {
        self.publisher.changes.subscribe()
    }

    pub fn stats(&self) -> Stats {
        self.correlator.stats()
    }
}

/// Sends incident changes to the subscribers and into the open transaction, and hands
/// transactions to the output thread.
pub struct Publisher {
    /// The transaction being gathered.
    open: Transaction,
    transactions: crossbeam_channel::Sender<Transaction>,
    pub changes: broadcast::Sender<SharedChange>,
    /// Changes published so far: a job that moved it commits before it replies.
    published: u64,
}

impl Publisher {
    pub fn new(
        transactions: crossbeam_channel::Sender<Transaction>,
        changes: broadcast::Sender<SharedChange>,
    ) -> Publisher {
        Publisher { open: Transaction::default(), transactions, changes, published: 0 }
    }

    fn publish(&mut self, change: &IncidentChange) {
        self.open.incident(change);
        self.published += 1;
        // No subscriber is not an error.
        if self.changes.receiver_count() > 0 {
            let _ = self.changes.send(Arc::new(PublishedChange::new(change)));
        }
    }
}

pub struct CoreLoop {
    pub correlator: Correlator,
    pub publisher: Publisher,
    pub batches: crossbeam_channel::Receiver<Batch>,
    pub jobs: crossbeam_channel::Receiver<Job>,
    pub tick: Duration,
    /// With no input for this long, the wall clock (less this delay) moves stream time on,
    /// so that incidents still resolve on a quiet network.
    pub idle_clock: Duration,
    pub commit_interval: Duration,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the core stops on an error: the engine then shuts down.
    pub failed: CancellationToken,
}

pub fn wall_clock() -> EpochMillis {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as EpochMillis).unwrap_or(0)
}

impl CoreLoop {
    /// Runs until the consumer hangs up (shutdown), having drained and committed every
    /// batch it sent; or until the output fails, which cancels `failed`.
    pub fn run(mut self) {
        match self.serve() {
            Ok(()) => tracing::debug!("correlation core stopped"),
            Err(error) => {
                tracing::error!(%error, "correlation core stopped");
                self.failed.cancel();
            }
        }
    }

    fn serve(&mut self) -> Result<(), OutputError> {
        let mut changes = Vec::new();
        let mut jobs = self.jobs.clone();
        let mut next_tick = Instant::now() + self.tick;
        let mut last_input = Instant::now();
        loop {
            let wake = self.publisher.open.deadline(self.commit_interval).map_or(next_tick, |d| d.min(next_tick));
            let timeout = wake.saturating_duration_since(Instant::now());
            crossbeam_channel::select! {
                recv(self.batches) -> batch => match batch {
                    Ok(batch) => {
                        self.on_batch(batch, &mut changes);
                        last_input = Instant::now();
                    }
                    Err(_) => break,
                },
                recv(jobs) -> job => match job {
                    Ok(job) => self.on_job(job)?,
                    Err(_) => jobs = crossbeam_channel::never(),
                },
                default(timeout) => {}
            }
            if Instant::now() >= next_tick {
                if last_input.elapsed() >= self.idle_clock {
                    let behind = self.idle_clock.as_millis() as EpochMillis;
                    self.correlator.tick(wall_clock() - behind, &mut changes);
                }
                for change in changes.drain(..) {
                    self.publisher.publish(&change);
                }
                next_tick = Instant::now() + self.tick;
            }
            if self.publisher.open.due(self.commit_interval) {
                self.commit()?;
            }
        }
        self.commit()
    }

    fn on_batch(&mut self, batch: Batch, changes: &mut Vec<IncidentChange>) {
        let started = Instant::now();
        for (alarm, &at) in batch.alarms.iter().zip(&batch.times) {
            self.correlator.apply(alarm, at, changes);
            // Published at once: a change held until the batch ends would hold its
            // incident's snapshot, and the next change would copy the whole incident.
            for change in changes.drain(..) {
                self.publisher.publish(&change);
            }
        }
        self.metrics.apply_batch.observe(started.elapsed());
        self.correlator.count_refused(batch.refused.len() as u64);
        let open = &mut self.publisher.open;
        for refused in batch.refused {
            open.dead_letter(refused);
        }
        open.consumed(&batch.offsets);
    }

    /// Runs a job; when it changed anything, commits before its reply goes out. A job
    /// that only reads (a query, a metrics scrape) leaves the open transaction alone.
    fn on_job(&mut self, job: Job) -> Result<(), OutputError> {
        let published = self.publisher.published;
        let mut ctx =
            CoreContext { correlator: &mut self.correlator, now: wall_clock(), publisher: &mut self.publisher };
        let reply = job(&mut ctx);
        if self.publisher.published == published {
            reply();
            return Ok(());
        }
        self.publisher.open.after_commit(reply);
        self.commit()
    }

    /// Hands the open transaction, with the changelog records of what changed since the
    /// last one, to the output thread; waits while it is two transactions behind.
    fn commit(&mut self) -> Result<(), OutputError> {
        if let Some(changes) = self.correlator.take_changes() {
            self.publisher.open.changes(changes);
        }
        if self.publisher.open.is_empty() {
            return Ok(());
        }
        let correlator = &self.correlator;
        self.publisher.open.settle(|id| correlator.shared_incident(id).cloned());
        let transaction = std::mem::take(&mut self.publisher.open);
        self.publisher.transactions.send(transaction).map_err(|_| OutputError::Stopped)
    }
}
