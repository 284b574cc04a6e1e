//! The Kafka edge. Alarms are consumed on a dedicated thread ([`ingest`]), decoded
//! ([`crate::decode`]), and handed to the core in batches; undecodable messages are set
//! aside for the dead-letter topic ([`dead_letter`]). The core thread writes everything
//! through one transactional producer ([`output`]): incident snapshots, dead letters, the
//! state changelog ([`changelog`]) and the input offsets, atomically. At start the
//! changelog is read back to restore the core. With no brokers configured, [`embedded`]
//! starts librdkafka's mock cluster and the same code runs against it.

pub mod changelog;
pub mod changes_feed;
pub mod dead_letter;
pub mod embedded;
pub mod history;
pub mod incident_json;
pub mod ingest;
pub mod output;
pub mod owner;
pub mod topics;
pub mod topology_feed;

use crate::config::KafkaConfig;
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, FutureProducer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

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

/// A plain (non-transactional) producer, for tools that feed Faultline: the demo, the
/// load generator.
pub fn producer(kafka: &KafkaConfig, brokers: &str) -> Result<FutureProducer, KafkaError> {
    // Idempotence keeps retried sends from doubling records.
    client_config(kafka, brokers, &[("enable.idempotence", "true"), ("linger.ms", "2")]).create()
}

/// Sends a record, waiting while the producer's queue is full (backpressure from a slower
/// broker) instead of failing.
pub fn send_waiting<C, K, P>(producer: &ThreadedProducer<C>, mut record: BaseRecord<'_, K, P>) -> Result<(), KafkaError>
where
    C: ProducerContext<DeliveryOpaque = ()>,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err((error, _)) => return Err(error),
        }
    }
}
