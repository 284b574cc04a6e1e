//! The runtime around the pure core: starts every edge in order, and stops them in order
//! under a deadline. Startup: topology and config are checked first, then Kafka clients,
//! then the gRPC port is bound. Shutdown: stop consuming → drain the core → wait for
//! deliveries and commit → stop gRPC.

pub mod core_loop;
pub mod handle;

use crate::config::Config;
use crate::correlate::Correlator;
use crate::grpc;
use crate::kafka::embedded::EmbeddedKafka;
use crate::kafka::ingest::{self, Ingest};
use crate::kafka::{self, commit};
use crate::metrics::{self, Metrics};
use crate::model::topology::Topology;
use crate::topology_file::{self, TopologyFileError};
use core_loop::{CoreLoop, Publisher};
pub use core_loop::{RuntimeStats, SharedChange};
pub use handle::{EngineHandle, Unavailable};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Topology(#[from] TopologyFileError),
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("cannot bind the {what} address {addr}: {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("cannot start a thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("gRPC: {0}")]
    Grpc(String),
}

/// A running engine. Dropping it without [`Engine::stop`] leaves threads to die with the process.
pub struct Engine {
    grpc_addr: SocketAddr,
    metrics_addr: SocketAddr,
    brokers: String,
    handle: EngineHandle,
    /// Stops consumption; the first step of shutdown.
    stop_consuming: CancellationToken,
    /// Cancelled when a critical task fails; `run` then shuts down and reports it.
    failed: CancellationToken,
    stop_grpc: CancellationToken,
    /// Taken at shutdown for the final commit, and dropped before the embedded cluster.
    consumer: Option<Arc<BaseConsumer>>,
    ingest: Option<JoinHandle<()>>,
    core: Option<JoinHandle<()>>,
    committer: tokio::task::JoinHandle<()>,
    server: tokio::task::JoinHandle<Result<(), String>>,
    metrics_server: tokio::task::JoinHandle<std::io::Result<()>>,
    /// Kept last: the embedded cluster must outlive every client.
    embedded: Option<EmbeddedKafka>,
}

impl Engine {
    /// Loads the configured topology file and starts.
    pub async fn start(config: &Config) -> Result<Engine, StartError> {
        let topology = topology_file::load(&config.topology.file)?;
        Engine::start_with(config, Arc::new(topology)).await
    }

    /// Starts with a topology already in memory.
    pub async fn start_with(config: &Config, topology: Arc<Topology>) -> Result<Engine, StartError> {
        let kafka_config = &config.kafka;
        let embedded = if kafka_config.embedded() {
            let mut topics: Vec<String> = kafka_config.inputs.iter().map(|i| i.topic.clone()).collect();
            topics.push(kafka_config.incidents_topic.clone());
            topics.push(kafka_config.dead_letter_topic.clone());
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
        let kafka_error = |e: rdkafka::error::KafkaError| StartError::Kafka(e.to_string());
        let producer = kafka::producer(kafka_config, &brokers).map_err(kafka_error)?;
        let consumer = Arc::new(ingest::consumer(kafka_config, &brokers).map_err(kafka_error)?);

        let listener = TcpListener::bind(config.grpc.addr).await.map_err(|source| StartError::Bind {
            what: "gRPC",
            addr: config.grpc.addr,
            source,
        })?;
        let grpc_addr = listener.local_addr()?;
        let metrics_listener = TcpListener::bind(config.metrics.addr).await.map_err(|source| StartError::Bind {
            what: "metrics",
            addr: config.metrics.addr,
            source,
        })?;
        let metrics_addr = metrics_listener.local_addr()?;
        let metrics = Arc::new(Metrics::default());

        let (batch_tx, batch_rx) = crossbeam_channel::bounded(4);
        let (job_tx, job_rx) = crossbeam_channel::bounded(1024);
        let (commit_tx, commit_rx) = tokio::sync::mpsc::channel(64);
        let (changes, _) = broadcast::channel(config.grpc.subscriber_buffer);
        let failed = CancellationToken::new();
        let stop_consuming = CancellationToken::new();
        let stop_grpc = CancellationToken::new();
        let handle = EngineHandle::new(job_tx);

        let core = CoreLoop {
            correlator: Correlator::new(topology, config.correlator()),
            publisher: Publisher::new(
                producer.clone(),
                kafka_config.incidents_topic.clone(),
                kafka_config.incidents_format,
                changes,
            ),
            batches: batch_rx,
            jobs: job_rx,
            commits: commit_tx,
            metrics: metrics.clone(),
            tick: Duration::from_millis(config.correlation.tick_millis),
        };
        let core = std::thread::Builder::new().name("correlation-core".into()).spawn(move || core.run())?;
        let ingest = Ingest {
            consumer: consumer.clone(),
            producer,
            formats: kafka_config.inputs.iter().map(|i| (i.topic.clone(), i.format)).collect(),
            dead_letter_topic: kafka_config.dead_letter_topic.clone(),
            max_message_bytes: kafka_config.max_message_bytes,
            max_batch: kafka_config.max_batch,
            metrics: metrics.clone(),
        }
        .spawn(batch_tx, stop_consuming.clone())?;
        let committer = tokio::spawn(commit::run(consumer.clone(), commit_rx, metrics.clone(), failed.clone()));
        let server = tokio::spawn(grpc::serve(listener, handle.clone(), stop_grpc.clone()));
        let metrics_server = tokio::spawn(metrics::serve(
            metrics_listener,
            metrics,
            handle.clone(),
            consumer.clone(),
            stop_grpc.clone(),
        ));

        tracing::info!(%grpc_addr, %metrics_addr, %brokers, embedded = embedded.is_some(), "faultline started");
        Ok(Engine {
            grpc_addr,
            metrics_addr,
            brokers,
            handle,
            stop_consuming,
            failed,
            stop_grpc,
            consumer: Some(consumer),
            ingest: Some(ingest),
            core: Some(core),
            committer,
            server,
            metrics_server,
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

    /// Completes when a critical task has failed.
    pub async fn failed(&self) {
        self.failed.cancelled().await
    }

    /// Ordered shutdown within `grace`: stop consuming, drain the core, wait for the
    /// deliveries and commit, then stop gRPC.
    pub async fn stop(mut self, grace: Duration) -> Result<(), StartError> {
        self.stop_consuming.cancel();
        let ingest = self.ingest.take();
        let core = self.core.take();
        let consumer = self.consumer.take();
        let drained = async {
            join_thread(ingest).await;
            join_thread(core).await;
            let _ = (&mut self.committer).await;
            let Some(consumer) = consumer else { return };
            // Committing and closing the consumer (leaving the group) both talk to the brokers.
            let commit = tokio::task::spawn_blocking(move || {
                let result = consumer.commit_consumer_state(CommitMode::Sync);
                drop(consumer);
                result
            });
            match commit.await {
                Ok(Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))) | Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "final offset commit failed"),
                Err(error) => tracing::warn!(%error, "final offset commit panicked"),
            }
        };
        if tokio::time::timeout(grace, drained).await.is_err() {
            tracing::warn!(?grace, "shutdown deadline passed before the pipeline drained");
        }
        self.stop_grpc.cancel();
        let served = tokio::time::timeout(Duration::from_secs(2), &mut self.server).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.metrics_server).await;
        drop(self.embedded.take());
        if self.failed.is_cancelled() {
            return Err(StartError::Kafka("a delivery failed; uncommitted input will be replayed on restart".into()));
        }
        match served {
            Ok(Ok(Err(error))) => Err(StartError::Grpc(error)),
            _ => Ok(()),
        }
    }
}

async fn join_thread(thread: Option<JoinHandle<()>>) {
    if let Some(thread) = thread {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
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
