//! Creates Faultline's topics on a real cluster when they are missing: the input topics,
//! the dead-letter topic, and the incidents and state changelog topics with log compaction
//! (only the latest value of each key matters). Existing topics are left as they are.

use crate::config::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

pub async fn ensure(kafka: &KafkaConfig, brokers: &str) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = super::client_config(kafka, brokers, &[])
        .create()
        .map_err(|e| format!("cannot create an admin client: {e}"))?;
    let partitions = kafka.partitions;
    let mut topics: Vec<NewTopic<'_>> =
        kafka.inputs.iter().map(|i| NewTopic::new(&i.topic, partitions, TopicReplication::Fixed(-1))).collect();
    topics.push(NewTopic::new(&kafka.dead_letter_topic, partitions, TopicReplication::Fixed(-1)));
    topics.push(
        NewTopic::new(&kafka.incidents_topic, partitions, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact"),
    );
    topics.push(
        NewTopic::new(&kafka.state_topic, partitions, TopicReplication::Fixed(-1)).set("cleanup.policy", "compact"),
    );
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&topics, &options).await.map_err(|e| format!("cannot create topics: {e}"))?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(format!("cannot create topic {topic}: {code}")),
        }
    }
    Ok(())
}
