//! The alarm consumer: a dedicated thread polls the input topics, decodes each message by
//! its topic's format, sets aside what cannot be decoded for the dead-letter topic, and
//! hands batches to the core. The bounded hand-off is the backpressure: when the core falls
//! behind, polling waits. Offsets are never committed here: the core commits them in the
//! transaction that writes their effects ([`super::output`]).

use super::dead_letter::Refused;
use crate::config::{AlarmFormat, KafkaConfig};
use crate::decode;
use crate::metrics::Metrics;
use crate::model::alarm::Alarm;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
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
    /// The next offset to consume per (topic, partition) once this batch is applied.
    pub offsets: BTreeMap<(String, i32), i64>,
    /// Messages refused, for the dead-letter topic.
    pub refused: Vec<Refused>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
}

pub fn consumer(kafka: &KafkaConfig, brokers: &str) -> Result<BaseConsumer, KafkaError> {
    // No auto-commit: offsets move only inside the core's transactions. Static membership
    // lets a restarted instance take its partitions back without waiting for the session
    // of its killed predecessor to time out.
    let member = super::output::transactional_id(kafka);
    let consumer: BaseConsumer = super::client_config(
        kafka,
        brokers,
        &[
            ("group.id", kafka.group_id.as_str()),
            ("group.instance.id", member.as_str()),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
            ("isolation.level", "read_committed"),
            ("enable.partition.eof", "false"),
        ],
    )
    .create()?;
    let topics: Vec<&str> = kafka.inputs.iter().map(|i| i.topic.as_str()).collect();
    consumer.subscribe(&topics)?;
    Ok(consumer)
}

pub struct Ingest {
    pub consumer: Arc<BaseConsumer>,
    pub formats: BTreeMap<String, AlarmFormat>,
    pub max_message_bytes: usize,
    pub max_batch: usize,
    pub metrics: Arc<Metrics>,
}

impl Ingest {
    /// Polls until `shutdown`, then returns; dropping `batches` tells the core to drain.
    pub fn spawn(
        self,
        batches: crossbeam_channel::Sender<Batch>,
        shutdown: CancellationToken,
    ) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new().name("kafka-ingest".into()).spawn(move || {
            while !shutdown.is_cancelled() {
                let batch = self.collect();
                if !batch.is_empty() && batches.send(batch).is_err() {
                    break;
                }
            }
            tracing::debug!("alarm consumer stopped");
        })
    }

    fn collect(&self) -> Batch {
        let mut batch = Batch::default();
        let mut next = self.consumer.poll(Duration::from_millis(100));
        let started = Instant::now();
        while let Some(result) = next {
            match result {
                Ok(message) => self.take(&message, &mut batch),
                Err(error) => tracing::warn!(%error, "kafka consumer error"),
            }
            if batch.alarms.len() + batch.refused.len() >= self.max_batch {
                break;
            }
            next = self.consumer.poll(Duration::ZERO);
        }
        if !batch.is_empty() {
            self.metrics.decode_batch.observe(started.elapsed());
        }
        batch
    }

    fn take(&self, message: &rdkafka::message::BorrowedMessage<'_>, batch: &mut Batch) {
        batch.offsets.insert((message.topic().to_owned(), message.partition()), message.offset() + 1);
        let format = self.formats.get(message.topic()).copied().unwrap_or(AlarmFormat::Protobuf);
        let received = message.timestamp().to_millis().unwrap_or(0);
        let payload = message.payload().unwrap_or_default();
        let before = batch.alarms.len();
        match decode::decode(format, payload, received, self.max_message_bytes, &mut batch.alarms) {
            Ok(()) => self.metrics.decoded(format, batch.alarms.len() - before),
            Err(error) => {
                let reason = error.reason();
                tracing::debug!(reason, %error, "alarm refused to the dead-letter topic");
                batch.refused.push(Refused::new(message, reason, error.to_string()));
                self.metrics.refused(format, reason);
            }
        }
    }
}
