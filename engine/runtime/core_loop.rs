//! The core thread: the single writer of all correlation state. It takes alarm batches
//! from the consumer, jobs from gRPC (queries and operator actions, run as closures against
//! the core), and timer ticks. Every incident change goes to gRPC subscribers at once (a
//! shared snapshot; the subscriber tasks encode it) and into the open Kafka transaction;
//! every `commit_interval` the transaction takes the core's changelog records and goes to
//! the output thread, which writes and commits it ([`crate::kafka::output`]). A due
//! transaction is handed over once the output has taken the one before: until then it
//! gathers on, so a slow commit never stalls the core, for at most `GATHER_LIMIT`
//! intervals.
//!
//! A job that changed incidents (an operator action) is answered once its transaction has
//! committed, so an acknowledgement an operator was told about survives any crash.

use crate::clock::wall_clock;
use crate::correlate::{Correlator, Stats};
use crate::grpc::wire::PublishedChange;
use crate::kafka::dead_letter::Refused;
use crate::kafka::ingest::{Batch, TopologyRecord, WindowRecord};
use crate::kafka::output::{OutputError, Transaction};
use crate::metrics::Metrics;
use crate::model::EpochMillis;
use crate::model::incident::{IncidentChange, IncidentId};
use crate::proto::{self, v1};
use crate::runtime::failure::Failure;
use crate::runtime::resume::{CLOSED_KEPT, ResumeError, ResumeLog, ResumeToken, Since};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::broadcast;

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

    /// Publishes changes caused by a job to Kafka and subscribers.
    pub fn publish_all(&mut self, changes: &[IncidentChange]) {
        for change in changes {
            self.publisher.publish(change);
        }
    }

    /// A receiver of every change published after this call: taken on the core thread,
    /// so a snapshot read in the same job and this stream neither overlap nor leave a gap.
    pub fn subscribe(&self) -> broadcast::Receiver<SharedChange> {
        self.publisher.changes.subscribe()
    }

    /// Where the stream is: the token a subscription taken now resumes from.
    pub fn resume_point(&self) -> ResumeToken {
        self.publisher.resume.point()
    }

    /// The incidents changed and closed after `token`.
    pub fn changed_since(&self, token: ResumeToken) -> Result<Since, ResumeError> {
        self.publisher.resume.since(token)
    }

    pub fn stats(&self) -> Stats {
        self.correlator.stats()
    }

    /// The incident an operator action with this key was applied to, if it was (a retry):
    /// the reply then waits, as the first one did, for that action's transaction.
    pub fn already_done(&mut self, key: &str) -> Option<IncidentId> {
        let done = self.publisher.requests.get(key)?;
        self.publisher.replayed += 1;
        Some(done)
    }

    /// Remembers that the action with this key was applied to `incident`.
    pub fn done(&mut self, key: String, incident: IncidentId) {
        self.publisher.requests.insert(key, incident);
    }
}

/// Operator actions applied lately, by their client's request key: a retried action is
/// answered, not applied twice. The last [`Requests::KEPT`] are kept, in memory (a restart
/// forgets them).
#[derive(Default)]
struct Requests {
    applied: HashMap<String, IncidentId>,
    order: VecDeque<String>,
}

impl Requests {
    const KEPT: usize = 10_000;

    fn get(&self, key: &str) -> Option<IncidentId> {
        self.applied.get(key).copied()
    }

    fn insert(&mut self, key: String, incident: IncidentId) {
        if self.applied.insert(key.clone(), incident).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > Requests::KEPT {
            if let Some(oldest) = self.order.pop_front() {
                self.applied.remove(&oldest);
            }
        }
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
    /// Retried operator actions answered so far: like a publication, one makes its job
    /// commit before it replies, so that the retry's answer is no earlier than the first's.
    replayed: u64,
    requests: Requests,
    resume: ResumeLog,
}

impl Publisher {
    pub fn new(
        transactions: crossbeam_channel::Sender<Transaction>,
        changes: broadcast::Sender<SharedChange>,
    ) -> Publisher {
        // This run's resume tokens are told apart from an earlier run's by its start time.
        let run = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Publisher {
            open: Transaction::default(),
            transactions,
            changes,
            published: 0,
            replayed: 0,
            requests: Requests::default(),
            resume: ResumeLog::new(run, CLOSED_KEPT),
        }
    }

    fn publish(&mut self, change: &IncidentChange) {
        self.open.incident(change);
        self.published += 1;
        let token = self.resume.record(change);
        // No subscriber is not an error.
        if self.changes.receiver_count() > 0 {
            let _ = self.changes.send(Arc::new(PublishedChange::new(change, token)));
        }
    }
}

/// A due transaction waits for the output to take the one before it, gathering more work
/// meanwhile, for at most this many commit intervals; past that the core waits for the
/// output (backpressure on the input), so a transaction stays bounded.
const GATHER_LIMIT: u32 = 10;

/// How often the core looks whether the output has taken the transaction before a due one.
const OUTPUT_POLL: Duration = Duration::from_millis(1);

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
    /// The largest record the engine writes: a refused topology change's dead letter is
    /// cut to fit it.
    pub max_record_bytes: usize,
    /// Set when the core stops on an error or panics: the engine then shuts down.
    pub failed: Failure,
}

impl CoreLoop {
    /// Runs until the consumer hangs up (shutdown), having drained and committed every
    /// batch it sent; or until the output fails or the core panics, which sets `failed`.
    pub fn run(mut self) {
        let failed = self.failed.clone();
        failed.guard("correlation core", || self.serve());
    }

    fn serve(&mut self) -> Result<(), OutputError> {
        let mut changes = Vec::new();
        let mut jobs = self.jobs.clone();
        let mut next_tick = Instant::now() + self.tick;
        let mut last_input = Instant::now();
        loop {
            let wake = match self.publisher.open.deadline(self.commit_interval) {
                // Due, but the output is still busy: look again shortly.
                Some(due) if due <= Instant::now() => Instant::now() + OUTPUT_POLL,
                Some(due) => due,
                None => next_tick,
            }
            .min(next_tick);
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
                    // Held topology changes past their time are refused as the clock moves.
                    self.dead_letter_refusals(&[]);
                }
                for change in changes.drain(..) {
                    self.publisher.publish(&change);
                }
                next_tick = Instant::now() + self.tick;
            }
            if self.publisher.open.due(self.commit_interval)
                && (self.publisher.transactions.is_empty()
                    || self.publisher.open.due(self.commit_interval * GATHER_LIMIT))
            {
                self.commit()?;
            }
        }
        self.commit()
    }

    fn on_batch(&mut self, batch: Batch, changes: &mut Vec<IncidentChange>) {
        let started = Instant::now();
        let mut resyncs = batch.resyncs.iter().peekable();
        let mut feed = batch.topology.into_iter().peekable();
        let mut windows = batch.windows.into_iter().peekable();
        let mut next = 0;
        while next < batch.alarms.len() || resyncs.peek().is_some() || feed.peek().is_some() || windows.peek().is_some()
        {
            // Topology records consumed before the next alarm: applied before it, as one batch.
            let mut group = Vec::new();
            while let Some(record) = feed.next_if(|record| record.at == next) {
                group.push(record);
            }
            if !group.is_empty() {
                self.apply_feed(group, changes);
                for change in changes.drain(..) {
                    self.publisher.publish(&change);
                }
                continue;
            }
            if let Some(record) = windows.next_if(|record| record.at == next) {
                self.apply_window(record, changes);
                for change in changes.drain(..) {
                    self.publisher.publish(&change);
                }
                continue;
            }
            match resyncs.next_if(|(_, listed, _)| listed.start == next) {
                Some((resync, listed, at)) => {
                    self.correlator.resync(resync, &batch.alarms[listed.clone()], *at, changes);
                    next = listed.end;
                }
                None => {
                    self.correlator.apply(&batch.alarms[next], batch.times[next], changes);
                    next += 1;
                }
            }
            // Published at once: a change held until the batch ends would hold its
            // incident's snapshot, and the next change would copy the whole incident.
            for change in changes.drain(..) {
                self.publisher.publish(&change);
            }
        }
        self.metrics.apply_batch.observe(started.elapsed());
        self.dead_letter_refusals(&[]);
        self.correlator.count_refused(batch.refused.len() as u64);
        let open = &mut self.publisher.open;
        for refused in batch.refused {
            open.dead_letter(refused);
        }
        open.consumed(&batch.offsets);
    }

    /// Applies a record of the changes topic; dead-letters it if the core refuses it.
    fn apply_window(&mut self, record: WindowRecord, changes: &mut Vec<IncidentChange>) {
        use crate::kafka::changes_feed::WindowCommand;
        let result = match record.command {
            WindowCommand::Put(spec) => self.correlator.create_window(spec, true, record.time, changes),
            WindowCommand::Finish { change, cancel, by } => {
                let active = self.correlator.maintenance().get(&change).map(|w| w.state);
                match active {
                    // Over already, or never heard of: nothing to do (a compacted topic
                    // sends a window's last record again).
                    None => Ok(()),
                    Some(state) if state.is_finished() => Ok(()),
                    Some(state) => {
                        let cancel = cancel || state != crate::correlate::maintenance::WindowState::Active;
                        self.correlator.finish_window(&change, cancel, &by, record.time, changes)
                    }
                }
            }
        };
        if let Err(error) = result {
            let reason = match error {
                crate::correlate::maintenance::MaintenanceError::Invalid(_) => "invalid_window",
                _ => "window_refused",
            };
            tracing::warn!(source = %record.source, %error, "maintenance window refused to the dead-letter topic");
            self.metrics.refused_as("changes", reason);
            self.correlator.count_refused(1);
            let refused = Refused::cut(
                (record.key.as_deref(), &record.payload),
                reason,
                error.to_string(),
                record.source,
                self.max_record_bytes,
            );
            self.publisher.open.dead_letter(refused);
        }
    }

    /// Applies records of the topology feed; dead-letters what the core refuses.
    fn apply_feed(&mut self, group: Vec<TopologyRecord>, changes: &mut Vec<IncidentChange>) {
        let time = group.iter().map(|record| record.time).max().unwrap_or(EpochMillis::MIN);
        let mut originals = Vec::with_capacity(group.len());
        let records = group
            .into_iter()
            .map(|record| {
                originals.push((record.key, record.payload));
                record.change
            })
            .collect();
        let outcome = self.correlator.apply_feed(records, time, changes);
        self.metrics.topology_outcome(outcome.applied, outcome.unchanged + outcome.superseded, outcome.held);
        if outcome.applied + outcome.held > 0 {
            tracing::debug!(
                applied = outcome.applied,
                unchanged = outcome.unchanged,
                held = outcome.held,
                refused = outcome.refused,
                held_now = self.correlator.held().len(),
                versions = ?outcome.versions,
                "topology feed records applied"
            );
        }
        self.dead_letter_refusals(&originals);
    }

    /// Sends the topology changes the core refused to the dead-letter topic: with their
    /// original bytes when they came in the batch at hand (`originals`, by place), else
    /// (held before) as the JSON record of the change, a delete as a tombstone's empty value.
    fn dead_letter_refusals(&mut self, originals: &[(Option<Vec<u8>>, Vec<u8>)]) {
        let refusals = self.correlator.take_refusals();
        if refusals.is_empty() {
            return;
        }
        if let Some(first) = refusals.first() {
            tracing::warn!(
                refused = refusals.len(),
                ci = first.change.id(),
                reason = first.reason,
                detail = %first.detail,
                source = %first.source,
                "topology records refused to the dead-letter topic"
            );
        }
        self.correlator.count_refused(refusals.len() as u64);
        for refusal in refusals {
            self.metrics.refused_topology(refusal.reason);
            let rebuilt;
            let (key, payload) = match refusal.index.and_then(|i| originals.get(i)) {
                Some((key, payload)) => (key.as_deref(), payload.as_slice()),
                None => {
                    rebuilt = match &refusal.change {
                        crate::model::topology::CiChange::Upsert(record) => {
                            serde_json::to_vec(record).unwrap_or_default()
                        }
                        crate::model::topology::CiChange::Delete(_) => Vec::new(),
                    };
                    (Some(refusal.change.id().as_bytes()), rebuilt.as_slice())
                }
            };
            let refused =
                Refused::cut((key, payload), refusal.reason, refusal.detail, refusal.source, self.max_record_bytes);
            self.publisher.open.dead_letter(refused);
        }
    }

    /// Runs a job; when it changed anything, commits before its reply goes out. A job
    /// that only reads (a query, a metrics scrape) leaves the open transaction alone.
    fn on_job(&mut self, job: Job) -> Result<(), OutputError> {
        let published = self.publisher.published + self.publisher.replayed;
        let topology = self.correlator.topology().version();
        let windows = self.correlator.maintenance().revision();
        let mut ctx =
            CoreContext { correlator: &mut self.correlator, now: wall_clock(), publisher: &mut self.publisher };
        let reply = job(&mut ctx);
        // Feed changes a topology batch released and the core refused.
        self.dead_letter_refusals(&[]);
        // A topology batch or a window change is answered once committed, whether or not
        // it moved incidents.
        if self.publisher.published + self.publisher.replayed == published
            && self.correlator.topology().version() == topology
            && self.correlator.maintenance().revision() == windows
        {
            reply();
            return Ok(());
        }
        self.publisher.open.after_commit(reply);
        self.commit()
    }

    /// Hands the open transaction, with the changelog records of what changed since the
    /// last one, to the output thread; waits while the hand-off is full.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::CorrelatorConfig;
    use crate::generate::ring;
    use std::collections::BTreeMap;

    /// Runs a read-only job on the core; `None` if it does not answer within `wait`.
    fn ask(jobs: &crossbeam_channel::Sender<Job>, wait: Duration) -> Option<u64> {
        let (answer, answered) = crossbeam_channel::bounded(1);
        let job: Job = Box::new(move |ctx| {
            let _ = answer.send(ctx.stats().alarms_in);
            Box::new(|| {})
        });
        jobs.send(job).ok()?;
        answered.recv_timeout(wait).ok()
    }

    #[test]
    fn a_busy_output_holds_the_core_up_only_past_the_gather_limit() {
        let topology = Arc::new(crate::topology_file::parse(&ring(4).jsonl, "ring").unwrap());
        let (transactions, output) = crossbeam_channel::bounded(1);
        // The output is busy: a transaction already waits in the hand-off, and nobody takes it.
        transactions.send(Transaction::default()).unwrap();
        let (batches, batch_rx) = crossbeam_channel::bounded(4);
        let (jobs, job_rx) = crossbeam_channel::bounded(16);
        let commit_interval = Duration::from_millis(20);
        let core = CoreLoop {
            correlator: Correlator::new(topology, CorrelatorConfig::default()),
            publisher: Publisher::new(transactions, broadcast::channel(16).0),
            batches: batch_rx,
            jobs: job_rx,
            tick: Duration::from_millis(50),
            idle_clock: Duration::from_secs(3600),
            commit_interval,
            metrics: Arc::new(Metrics::default()),
            max_record_bytes: 1_000_000,
            failed: Failure::new(),
        };
        let core = std::thread::spawn(move || core.run());

        let batch = |next: i64| Batch {
            alarms: Vec::new(),
            times: Vec::new(),
            offsets: BTreeMap::from([(("alarms".to_owned(), 0), next)]),
            refused: Vec::new(),
            resyncs: Vec::new(),
            topology: Vec::new(),
            windows: Vec::new(),
        };
        // Due transactions keep gathering while the output is busy: the core goes on.
        for next in 1..=3 {
            batches.send(batch(next)).unwrap();
            std::thread::sleep(commit_interval * 2);
            assert!(ask(&jobs, Duration::from_secs(5)).is_some(), "the core waited for a busy output");
        }
        // Past the gather limit it waits for the output, so the transaction stays bounded.
        std::thread::sleep(commit_interval * GATHER_LIMIT * 2);
        batches.send(batch(4)).unwrap();
        assert!(ask(&jobs, commit_interval * 5).is_none(), "the core went on past the gather limit");

        // Once the output takes the waiting transaction, the gathered one follows and the
        // core answers again.
        assert!(output.recv().unwrap().is_empty(), "the transaction that was waiting");
        let gathered = output.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(!gathered.is_empty());
        assert!(ask(&jobs, Duration::from_secs(5)).is_some());
        drop((batches, jobs, output));
        core.join().unwrap();
    }
}
