//! The alarm consumer: a dedicated thread polls the input topics, decodes each message by
//! its topic's format, dead-letters what cannot be decoded, and hands batches to the core.
//! The bounded hand-off is the backpressure: when the core falls behind, polling waits.

use super::dead_letter;
use crate::config::{AlarmFormat, KafkaConfig};
use crate::decode;
use crate::metrics::Metrics;
use crate::model::alarm::Alarm;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Consumed messages on their way to the core, with what must be durable before their
/// offsets may be committed.
#[derive(Default)]
pub struct Batch {
    pub alarms: Vec<Alarm>,
    /// The next offset to commit per (topic, partition), once this batch is done.
    pub offsets: BTreeMap<(String, i32), i64>,
    /// Dead-letter records produced for this batch.
    pub deliveries: Vec<DeliveryFuture>,
    /// Messages refused, by reason.
    pub refused: Vec<&'static str>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    pub fn offsets_list(&self) -> TopicPartitionList {
        let mut list = TopicPartitionList::with_capacity(self.offsets.len());
        for ((topic, partition), &offset) in &self.offsets {
            // A partition added twice would be a bug; the list accepts the later offset.
            let _ = list.add_partition_offset(topic, *partition, Offset::Offset(offset));
        }
        list
    }
}

pub fn consumer(kafka: &KafkaConfig, brokers: &str) -> Result<BaseConsumer, KafkaError> {
    // Offsets are stored by hand once a batch's effects are durable, and committed in the
    // background from what was stored: at-least-once, never ahead of the work.
    let consumer: BaseConsumer = super::client_config(
        kafka,
        brokers,
        &[
            ("group.id", kafka.group_id.as_str()),
            ("enable.auto.commit", "true"),
            ("auto.commit.interval.ms", "1000"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
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
    pub producer: FutureProducer,
    pub formats: BTreeMap<String, AlarmFormat>,
    pub dead_letter_topic: String,
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
                let detail = error.to_string();
                batch.deliveries.push(dead_letter::send(
                    &self.producer,
                    &self.dead_letter_topic,
                    message,
                    reason,
                    &detail,
                ));
                batch.refused.push(reason);
                self.metrics.refused(format, reason);
            }
        }
    }
}
