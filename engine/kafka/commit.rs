//! Commit after the effect: a batch's input offsets are stored only once every record it
//! caused (incident snapshots, dead letters) is acknowledged by the brokers, and batches
//! are committed in the order they were consumed.

use crate::metrics::Metrics;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::DeliveryFuture;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub struct PendingCommit {
    pub offsets: TopicPartitionList,
    pub deliveries: Vec<DeliveryFuture>,
    /// When the batch was applied, for the commit-wait histogram.
    pub applied_at: Instant,
}

/// Stores offsets as their batches complete. A failed delivery stops the engine without
/// committing (`failed` is cancelled), so a restart replays the batch: nothing is lost.
pub async fn run(
    consumer: Arc<BaseConsumer>,
    mut pending: mpsc::Receiver<PendingCommit>,
    metrics: Arc<Metrics>,
    failed: CancellationToken,
) {
    while let Some(commit) = pending.recv().await {
        for delivery in commit.deliveries {
            let outcome = match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((error, _))) => Err(error.to_string()),
                Err(_) => Err("producer dropped the record".to_owned()),
            };
            if let Err(error) = outcome {
                tracing::error!(%error, "delivery failed; input offsets left uncommitted, stopping");
                failed.cancel();
                return;
            }
        }
        metrics.commit_wait.observe(commit.applied_at.elapsed());
        if commit.offsets.count() == 0 {
            continue;
        }
        if let Err(error) = consumer.store_offsets(&commit.offsets) {
            // The partition moved to another instance: it will replay from the last commit.
            tracing::warn!(%error, "could not store offsets");
        }
    }
}
