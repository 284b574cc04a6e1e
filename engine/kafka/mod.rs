//! The Kafka edge. Alarms are consumed on a dedicated thread ([`ingest`]), decoded
//! ([`crate::decode`]), and handed to the core in batches; undecodable messages go to the
//! dead-letter topic ([`dead_letter`]). Incident snapshots are produced by the core thread,
//! and a batch's input offsets are stored only once every record it caused is acknowledged
//! ([`commit`]). With no brokers configured, [`embedded`] starts librdkafka's mock cluster.

pub mod commit;
pub mod dead_letter;

pub mod embedded;
pub mod incident_json;
pub mod ingest;
pub mod topics;

use crate::config::KafkaConfig;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use std::time::Duration;

/// A client's settings: the bootstrap servers, then the client's own defaults, then the
/// configured pass-through properties, so an operator can override anything.
pub fn client_config(kafka: &KafkaConfig, brokers: &str, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in defaults {
        config.set(*key, *value);
    }
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    config
}

pub fn producer(kafka: &KafkaConfig, brokers: &str) -> Result<FutureProducer, KafkaError> {
    // Idempotence keeps retried sends from doubling records; lingering briefly batches
    // incident snapshots without adding visible latency.
    client_config(kafka, brokers, &[("enable.idempotence", "true"), ("linger.ms", "2")]).create()
}

/// Enqueues a record, waiting while librdkafka's local queue is full. For the threads
/// that own the pipeline (never the async runtime): waiting here is the backpressure.
pub fn send_blocking(producer: &FutureProducer, mut record: FutureRecord<'_, str, [u8]>) -> DeliveryFuture {
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return delivery,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((error, returned)) => {
                tracing::warn!(%error, topic = returned.topic, "produce failed; retrying");
                record = returned;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
