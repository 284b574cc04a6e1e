//! Kafka reachability, for gRPC health checks: once a second the brokers are asked for
//! metadata (on a blocking thread, bounded by a timeout), and a commit being retried counts
//! as unreachable too. Load balancers and operators see NOT_SERVING while the engine cannot
//! make progress, and SERVING again as soon as it can.

use super::failure::Failure;
use crate::kafka::ingest::AlarmConsumer;
use rdkafka::consumer::Consumer;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Publishes on `up` whether the engine can make progress: Kafka answers, commits go
/// through, and the core has not stopped on an error (`failed`).
pub async fn watch_kafka(
    consumer: Arc<AlarmConsumer>,
    committing: Arc<AtomicBool>,
    failed: Failure,
    up: watch::Sender<bool>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            // A failure shows at once, not at the next probe.
            _ = failed.failed(), if *up.borrow() => {}
            _ = stop.cancelled() => return,
        }
        let healthy = !failed.is_failed() && committing.load(Ordering::Relaxed) && {
            let probe = consumer.clone();
            tokio::task::spawn_blocking(move || probe.fetch_metadata(None, PROBE_TIMEOUT).is_ok())
                .await
                .unwrap_or(false)
        };
        if *up.borrow() != healthy {
            if let Some(reason) = failed.reason() {
                tracing::error!(reason, "the engine stopped on an error; health is NOT_SERVING");
            } else if healthy {
                tracing::info!("kafka reachable again; serving");
            } else {
                tracing::warn!("kafka unreachable; health is NOT_SERVING until it is back");
            }
            let _ = up.send(healthy);
        }
    }
}
