//! Creates Faultline's topics on a real cluster when they are missing: the input topics,
//! the dead-letter topic, and the incidents and state changelog topics with log compaction
//! (only the latest value of each key matters). Existing topics are left as they are, but
//! each topic the engine writes must take its largest record (`kafka.max_record_bytes`):
//! a topic that would refuse it fails the start, naming the topic and the keys, instead of
//! failing a transaction later.

use crate::config::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

pub async fn ensure(kafka: &KafkaConfig, brokers: &str) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = super::client_config(kafka, brokers, &[])
        .create()
        .map_err(|e| format!("cannot create an admin client: {e}"))?;
    let partitions = kafka.partitions;
    let record_limit = kafka.producer_message_max_bytes();
    let max_bytes = record_limit.to_string();
    let mut topics: Vec<NewTopic<'_>> =
        kafka.inputs.iter().map(|i| NewTopic::new(&i.topic, partitions, TopicReplication::Fixed(-1))).collect();
    let written =
        |topic| NewTopic::new(topic, partitions, TopicReplication::Fixed(-1)).set("max.message.bytes", &max_bytes);
    topics.push(written(&kafka.dead_letter_topic));
    topics.push(written(&kafka.incidents_topic).set("cleanup.policy", "compact"));
    topics.push(written(&kafka.state_topic).set("cleanup.policy", "compact"));
    for topic in [kafka.topology_topic(), kafka.changes_topic()].into_iter().flatten() {
        topics.push(NewTopic::new(topic, partitions, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact"));
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&topics, &options).await.map_err(|e| format!("cannot create topics: {e}"))?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(format!("cannot create topic {topic}: {code}")),
        }
    }
    let written = [&kafka.dead_letter_topic, &kafka.incidents_topic, &kafka.state_topic];
    let specifiers: Vec<_> = written.iter().map(|topic| ResourceSpecifier::Topic(topic)).collect();
    let described =
        admin.describe_configs(&specifiers, &options).await.map_err(|e| format!("cannot describe topics: {e}"))?;
    for (topic, resource) in written.iter().zip(described) {
        let resource = resource.map_err(|e| format!("cannot describe topic {topic}: {e}"))?;
        let takes = resource.get("max.message.bytes").and_then(|e| e.value.as_deref()).and_then(|v| v.parse().ok());
        if let Some(takes) = takes.filter(|&takes: &usize| takes < record_limit) {
            return Err(format!(
                "topic {topic} takes records of at most {takes} bytes (its max.message.bytes), less than the \
                 {record_limit} that kafka.max_record_bytes = {} needs: raise the topic's max.message.bytes, or lower \
                 kafka.max_record_bytes (and kafka.max_message_bytes below it)",
                kafka.max_record_bytes
            ));
        }
    }
    Ok(())
}
