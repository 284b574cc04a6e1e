//! Shared helpers of the in-process integration tests: an engine on the embedded Kafka
//! cluster with gRPC on a free loopback port, and small Kafka clients to feed and read it.
#![allow(dead_code)]

pub mod broker;

use faultline::config::{Config, Overrides};
use faultline::runtime::Engine;
use faultline::topology_file;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const JSON_TOPIC: &str = "faultline.alarms.json";

/// The default configuration on the embedded cluster, gRPC on port 0, a protobuf and a
/// JSON input topic, and short timers.
pub fn test_config() -> Config {
    let overrides = Overrides {
        grpc_addr: Some("127.0.0.1:0".parse().unwrap()),
        metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
        ..Overrides::default()
    };
    Config::defaults(&overrides)
        .unwrap()
        .with(
            "kafka.inputs",
            serde_json::json!([
                {"topic": "faultline.alarms", "format": "protobuf"},
                {"topic": JSON_TOPIC, "format": "json"},
            ]),
        )
        .unwrap()
        .with("kafka.max_message_bytes", 4096)
        .unwrap()
        .with("correlation.hold_down_secs", 1)
        .unwrap()
        .with("correlation.tick_millis", 50)
        .unwrap()
        .with("correlation.idle_clock_millis", 500)
        .unwrap()
}

pub fn sample_topology() -> Arc<faultline::model::topology::Topology> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sample-network.jsonl");
    Arc::new(topology_file::load(&path).unwrap())
}

/// Sends the engine's log to the test harness, which shows it when a test fails. The
/// `TEST_LOG` environment variable overrides the filter.
pub fn log_to_test() {
    let filter = std::env::var("TEST_LOG").unwrap_or_else(|_| "faultline=info,librdkafka=warn".into());
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter(filter).try_init();
}

pub async fn start(config: &Config) -> Engine {
    log_to_test();
    Engine::start_with(config, sample_topology()).await.expect("engine starts")
}

pub fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap()
}

pub async fn produce(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8]) {
    producer
        .send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
}

/// Produces a tombstone (a record with no value) for `key`: on a compacted topic, a delete.
pub async fn produce_tombstone(producer: &FutureProducer, topic: &str, key: &str) {
    producer
        .send(FutureRecord::<str, [u8]>::to(topic).key(key), Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("produce");
}

/// Produces `alarm` in protobuf to `faultline.alarms`, keyed by its resource.
pub async fn produce_alarm(producer: &FutureProducer, alarm: &faultline::model::alarm::Alarm) {
    let bytes = prost::Message::encode_to_vec(&faultline::proto::alarm_to_proto(alarm));
    produce(producer, "faultline.alarms", &alarm.resource, &bytes).await;
}

/// A consumer of `topic` from its beginning, in a group of its own.
pub fn reader(brokers: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-reader-{topic}-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// Reads until a message satisfies `wanted`, or fails after `timeout`.
pub async fn read_until(
    consumer: &BaseConsumer,
    timeout: Duration,
    mut wanted: impl FnMut(&OwnedMessage) -> bool,
) -> OwnedMessage {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match consumer.poll(Duration::ZERO) {
            Some(Ok(message)) => {
                let message = message.detach();
                if wanted(&message) {
                    return message;
                }
            }
            Some(Err(e)) => panic!("kafka error: {e}"),
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    panic!("no wanted message within {timeout:?}");
}

pub fn payload(message: &OwnedMessage) -> &[u8] {
    message.payload().unwrap_or_default()
}

/// The test configuration on `broker`, with topic and group names of this test's own so
/// that tests sharing an external broker do not meet.
pub fn config_on(broker: &broker::KafkaBroker, name: &str) -> Config {
    let suffix = format!("{name}-{}", std::process::id());
    test_config()
        .with("kafka.brokers", broker.bootstrap())
        .unwrap()
        .with("kafka.group_id", format!("faultline-{suffix}"))
        .unwrap()
        .with("kafka.inputs", serde_json::json!([{"topic": format!("alarms-{suffix}"), "format": "json"}]))
        .unwrap()
        .with("kafka.incidents_topic", format!("incidents-{suffix}"))
        .unwrap()
        .with("kafka.dead_letter_topic", format!("dead-letter-{suffix}"))
        .unwrap()
        .with("kafka.state_topic", format!("state-{suffix}"))
        .unwrap()
        .with("kafka.topology_topic", format!("topology-{suffix}"))
        .unwrap()
        .with("kafka.changes_topic", format!("changes-{suffix}"))
        .unwrap()
}

/// `GET /metrics` over a plain HTTP/1.1 connection, as a Prometheus server does it.
pub async fn scrape(addr: impl std::fmt::Display) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr.to_string()).await.unwrap();
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    body.to_owned()
}
