//! The runtime around the pure core: starts every edge in order, and stops them in order
//! under a deadline.
//!
//! Start: the topology and configuration are checked first; then the Kafka topics; then the
//! transactional producer, whose initialisation fences a previous incarnation of this
//! instance and aborts its open transaction; then the state changelog is read back, the
//! topic's owner checked (an engine of another instance id is refused, [`kafka::owner`])
//! and the core restored from it; then the consumer joins its group (resuming from the
//! offsets the last committed transaction stored); and only then are the gRPC and metrics
//! ports bound. Stop: stop consuming → drain the core → commit its last transaction → stop
//! serving, within the grace period whether the brokers answer or not. A critical thread
//! that fails or panics stops the engine the same way, and the stop reports why
//! ([`failure`]).

pub mod core_loop;
pub mod failure;
pub mod handle;
mod health;
pub mod resume;

use crate::config::Config;
use crate::correlate::Correlator;
use crate::correlate::changelog::RestoreSummary;
use crate::grpc;
use crate::kafka::embedded::EmbeddedKafka;
use crate::kafka::ingest::{self, AlarmConsumer, Ingest};
use crate::kafka::output::{self, Output};
use crate::kafka::{self, changelog, owner};
use crate::metrics::{self, Metrics};
use crate::model::EpochMillis;
use crate::model::topology::Topology;
use crate::topology_file::{self, TopologyFileError};
pub use core_loop::SharedChange;
use core_loop::{CoreLoop, Publisher};
use failure::Failure;
pub use handle::{EngineHandle, Unavailable};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Topology(#[from] TopologyFileError),
    #[error("kafka: {0}")]
    Kafka(String),
    #[error(transparent)]
    Restore(#[from] changelog::ChangelogError),
    #[error(transparent)]
    Owner(#[from] owner::OwnerError),
    #[error("cannot bind the {what} address {addr}: {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("cannot start a thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("gRPC: {0}")]
    Grpc(String),
    #[error("the engine stopped on an error: {0}; uncommitted input will be consumed again on restart")]
    Failed(String),
}

/// A running engine. Dropping it without [`Engine::stop`] leaves threads to die with the process.
pub struct Engine {
    grpc_addr: SocketAddr,
    metrics_addr: SocketAddr,
    brokers: String,
    handle: EngineHandle,
    restored: RestoreSummary,
    /// Stops consumption; the first step of shutdown.
    stop_consuming: CancellationToken,
    /// Set when a critical thread fails or panics; `run` then shuts down and reports it.
    failed: Failure,
    stop_serving: CancellationToken,
    ingest: Option<JoinHandle<()>>,
    core: Option<JoinHandle<()>>,
    output: Option<JoinHandle<()>>,
    server: tokio::task::JoinHandle<Result<(), String>>,
    /// Follows the incidents topic for the history of closed incidents; stops with serving.
    history: Option<JoinHandle<()>>,
    metrics_server: tokio::task::JoinHandle<std::io::Result<()>>,
    health: tokio::task::JoinHandle<()>,
    /// Dropped after the threads that use it, before the embedded cluster.
    consumer: Option<Arc<AlarmConsumer>>,
    /// Kept last: the embedded cluster must outlive every client.
    embedded: Option<EmbeddedKafka>,
}

impl Engine {
    /// Loads the configured topology file and starts (with none, from an empty topology
    /// the topology feed fills).
    pub async fn start(config: &Config) -> Result<Engine, StartError> {
        let topology = if config.topology.file.as_os_str().is_empty() {
            Topology::from_records(Vec::new())
                .map_err(|source| TopologyFileError::Invalid { path: String::new(), source })?
        } else {
            topology_file::load(&config.topology.file)?
        };
        Engine::start_with(config, Arc::new(topology)).await
    }

    /// Starts with a topology already in memory.
    pub async fn start_with(config: &Config, topology: Arc<Topology>) -> Result<Engine, StartError> {
        let kafka_config = &config.kafka;
        let embedded = if kafka_config.embedded() {
            let mut topics: Vec<String> = kafka_config.inputs.iter().map(|i| i.topic.clone()).collect();
            topics.push(kafka_config.incidents_topic.clone());
            topics.push(kafka_config.dead_letter_topic.clone());
            topics.push(kafka_config.state_topic.clone());
            topics.extend(kafka_config.topology_topic().map(str::to_owned));
            topics.extend(kafka_config.changes_topic().map(str::to_owned));
            Some(EmbeddedKafka::start(&topics, kafka_config.partitions).map_err(StartError::Kafka)?)
        } else {
            None
        };
        let brokers = match &embedded {
            Some(e) => e.bootstrap_servers().to_owned(),
            None => kafka_config.brokers.clone(),
        };
        if embedded.is_none() {
            kafka::topics::ensure(kafka_config, &brokers).await.map_err(StartError::Kafka)?;
        }

        // Fence the previous incarnation, then read what it committed and check the owner.
        let restore_timeout = Duration::from_secs(kafka_config.restore_timeout_secs);
        let started = Instant::now();
        let (producer, snapshot, read) = {
            let (kafka_config, brokers) = (kafka_config.clone(), brokers.clone());
            tokio::task::spawn_blocking(move || {
                let producer = output::producer(&kafka_config, &brokers, restore_timeout)
                    .map_err(|e| StartError::Kafka(format!("cannot initialise the transactional producer: {e}")))?;
                let (snapshot, read) = changelog::read(&kafka_config, &brokers, restore_timeout)?;
                owner::settle(&producer, &kafka_config, &brokers, &read.claims, restore_timeout)?;
                Ok::<_, StartError>((producer, snapshot, read))
            })
            .await
            .map_err(|e| StartError::Kafka(e.to_string()))??
        };
        let (correlator, restored) = Correlator::restore(topology, config.correlator(), snapshot);
        tracing::info!(
            active_alarms = restored.active_alarms,
            incidents = restored.incidents,
            unknown_cis = restored.unknown_cis,
            topology_changes = restored.topology_changes,
            topology_changes_left_out = restored.topology_rejected,
            records = read.records,
            bytes = read.bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "state restored from the changelog"
        );
        // An empty topology topic gets the topology as it now is (the file's, with the
        // changes the changelog kept): consuming it then changes nothing.
        if kafka_config.topology_topic().is_some() {
            let (seed_config, brokers, topology) =
                (kafka_config.clone(), brokers.clone(), correlator.topology().clone());
            let seeded = tokio::task::spawn_blocking(move || {
                kafka::topology_feed::seed(&seed_config, &brokers, &topology, restore_timeout)
            })
            .await
            .map_err(|e| StartError::Kafka(e.to_string()))?
            .map_err(|e| StartError::Kafka(format!("cannot seed the topology topic: {e}")))?;
            if seeded > 0 {
                tracing::info!(
                    cis = seeded,
                    topic = kafka_config.topology_topic,
                    "topology topic was empty: seeded with the topology"
                );
            }
        }
        let consumer = Arc::new(
            ingest::consumer(kafka_config, &brokers, embedded.is_some())
                .map_err(|e| StartError::Kafka(format!("cannot subscribe: {e}")))?,
        );

        let (listener, grpc_addr) = bind("gRPC", config.grpc.addr).await?;
        let (metrics_listener, metrics_addr) = bind("metrics", config.metrics.addr).await?;
        let metrics = Arc::new(Metrics::default());

        let (batch_tx, batch_rx) = crossbeam_channel::bounded(4);
        let (job_tx, job_rx) = crossbeam_channel::bounded(1024);
        let (changes, _) = broadcast::channel(config.grpc.subscriber_buffer);
        let failed = Failure::new();
        let stop_consuming = CancellationToken::new();
        let stop_serving = CancellationToken::new();
        let handle = EngineHandle::new(job_tx);
        let committing = Arc::new(AtomicBool::new(true));

        // One transaction in the hand-off: the output thread commits one while the core
        // gathers the next; a due transaction gathers on while one waits here, up to a limit
        // past which the core waits (`core_loop::GATHER_LIMIT`).
        let (transactions_tx, transactions_rx) = crossbeam_channel::bounded(1);
        let output =
            Output::new(producer, consumer.clone(), kafka_config, &brokers, committing.clone(), metrics.clone())
                .spawn(transactions_rx, failed.clone())?;
        let core = CoreLoop {
            correlator,
            publisher: Publisher::new(transactions_tx, changes),
            batches: batch_rx,
            jobs: job_rx,
            tick: Duration::from_millis(config.correlation.tick_millis),
            idle_clock: Duration::from_millis(config.correlation.idle_clock_millis),
            commit_interval: Duration::from_millis(kafka_config.commit_interval_ms),
            metrics: metrics.clone(),
            max_record_bytes: kafka_config.max_record_bytes,
            failed: failed.clone(),
        };
        let core = std::thread::Builder::new().name("correlation-core".into()).spawn(move || core.run())?;
        let ingest = Ingest {
            consumer: consumer.clone(),
            formats: kafka_config.inputs.iter().map(|i| (i.topic.clone(), i.format)).collect(),
            max_message_bytes: kafka_config.max_message_bytes,
            max_record_bytes: kafka_config.max_record_bytes,
            max_batch: kafka_config.max_batch,
            max_event_time_ahead_ms: (kafka_config.max_event_time_ahead_secs as EpochMillis).saturating_mul(1000),
            max_clock_skew_ms: config.correlation.max_clock_skew_millis as EpochMillis,
            topology_topic: kafka_config.topology_topic().map(str::to_owned),
            changes_topic: kafka_config.changes_topic().map(str::to_owned),
            group_id: kafka_config.group_id.clone(),
            max_ci_record_bytes: grpc::max_ci_record_bytes(kafka_config.max_record_bytes),
            metrics: metrics.clone(),
        }
        .spawn(batch_tx, stop_consuming.clone(), failed.clone())?;
        let (kafka_up, kafka_health) = tokio::sync::watch::channel(true);
        let health = tokio::spawn(health::watch_kafka(
            consumer.clone(),
            committing,
            failed.clone(),
            kafka_up,
            stop_serving.clone(),
        ));
        let (history, history_thread) = kafka::history::History::start(
            kafka_config,
            &brokers,
            config.grpc.history_max_incidents,
            stop_serving.clone(),
        )
        .map_err(|e| StartError::Kafka(format!("cannot follow the incidents topic: {e}")))?;
        let subscribers = grpc::Subscribers {
            buffer: config.grpc.subscriber_buffer,
            max: config.grpc.max_subscribers,
            metrics: metrics.clone(),
        };
        let server = tokio::spawn(grpc::serve(
            listener,
            handle.clone(),
            subscribers,
            history,
            grpc::max_ci_record_bytes(config.kafka.max_record_bytes),
            kafka_health,
            stop_serving.clone(),
        ));
        let metrics_server = tokio::spawn(metrics::serve(
            metrics_listener,
            metrics,
            handle.clone(),
            consumer.clone(),
            stop_serving.clone(),
        ));

        tracing::info!(%grpc_addr, %metrics_addr, %brokers, embedded = embedded.is_some(), "faultline started");
        Ok(Engine {
            grpc_addr,
            metrics_addr,
            brokers,
            handle,
            restored,
            stop_consuming,
            failed,
            stop_serving,
            ingest: Some(ingest),
            core: Some(core),
            output: Some(output),
            server,
            history: Some(history_thread),
            metrics_server,
            health,
            consumer: Some(consumer),
            embedded,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Where Prometheus scrapes `GET /metrics`.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// Bootstrap servers in use (the embedded cluster's when none were configured).
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    pub fn handle(&self) -> &EngineHandle {
        &self.handle
    }

    /// What the start took back from the state changelog.
    pub fn restored(&self) -> RestoreSummary {
        self.restored
    }

    /// Completes when a critical thread has failed (an error it cannot mend, or a panic).
    pub async fn failed(&self) {
        self.failed.failed().await
    }

    /// Why the engine failed, once it has.
    pub fn failure(&self) -> Option<&str> {
        self.failed.reason()
    }

    /// Ordered shutdown within `grace`: stop consuming, let the core apply what was
    /// consumed and commit its last transaction, then stop serving. Bounded by `grace` (and
    /// a few seconds for the servers) also when the brokers are unreachable: what is left
    /// uncommitted then is consumed again on restart.
    pub async fn stop(mut self, grace: Duration) -> Result<(), StartError> {
        let deadline = tokio::time::Instant::now() + grace;
        self.stop_consuming.cancel();
        let ingest = self.ingest.take();
        let core = self.core.take();
        let output = self.output.take();
        let drained = async {
            join_thread(ingest).await;
            join_thread(core).await;
            join_thread(output).await;
        };
        if tokio::time::timeout_at(deadline, drained).await.is_err() {
            tracing::warn!(?grace, "shutdown deadline passed before the pipeline drained");
        }
        self.stop_serving.cancel();
        // The servers and the history stop together, within one allowance.
        let (served, _, _, _) = tokio::join!(
            tokio::time::timeout(SERVERS_STOP, &mut self.server),
            tokio::time::timeout(SERVERS_STOP, &mut self.metrics_server),
            tokio::time::timeout(SERVERS_STOP, &mut self.health),
            tokio::time::timeout(SERVERS_STOP, join_thread(self.history.take())),
        );
        // Leaving the group talks to the brokers: not on the async runtime, and not past
        // the deadline when they do not answer.
        if let Some(consumer) = self.consumer.take() {
            let (left, leaving) = tokio::sync::oneshot::channel();
            let leave = std::thread::Builder::new().name("kafka-leave".into()).spawn(move || {
                drop(consumer);
                let _ = left.send(());
            });
            let until = deadline.max(tokio::time::Instant::now() + SERVERS_STOP);
            if leave.is_err() || tokio::time::timeout_at(until, leaving).await.is_err() {
                tracing::warn!("the brokers did not answer the consumer's leave; stopping without it");
            }
        }
        drop(self.embedded.take());
        if let Some(reason) = self.failed.reason() {
            return Err(StartError::Failed(reason.to_owned()));
        }
        match served {
            Ok(Ok(Err(error))) => Err(StartError::Grpc(error)),
            _ => Ok(()),
        }
    }
}

/// How long the servers have to finish once the pipeline has stopped.
const SERVERS_STOP: Duration = Duration::from_secs(2);

async fn bind(what: &'static str, addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { what, addr, source })?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Waits for a thread to end, without holding a thread of the runtime's: a wait given up
/// (the caller's timeout) leaves nothing behind that the runtime would wait for on exit.
async fn join_thread(thread: Option<JoinHandle<()>>) {
    if let Some(thread) = thread {
        while !thread.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = thread.join();
    }
}

/// `faultline run`: start, serve until `shutdown` (or a critical failure), stop in order.
pub async fn run(config: Config, shutdown: CancellationToken, grace: Duration) -> Result<(), StartError> {
    let engine = Engine::start(&config).await?;
    tokio::select! {
        _ = shutdown.cancelled() => tracing::info!("shutting down"),
        _ = engine.failed() => tracing::error!("a critical task failed; shutting down"),
    }
    engine.stop(grace).await
}
