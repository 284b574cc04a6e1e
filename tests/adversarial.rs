//! Hostile input against a real Apache Kafka broker, as a carrier's feeds produce it: a
//! message larger than the engine's output could ever write, restarts in the middle, a
//! producer whose clock runs an hour ahead, VES notifications that share one `eventId`.
//! Each test fails if its defence goes away.

mod common;

use common::broker::KafkaBroker;
use common::*;
use faultline::config::Config;
use faultline::correlate::Stats;
use faultline::model::incident::IncidentState;
use faultline::runtime::Engine;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

async fn stats(engine: &Engine) -> Stats {
    engine.handle().call(|ctx| ctx.stats()).await.unwrap()
}

async fn until(engine: &Engine, what: &str, wanted: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = stats(engine).await;
        if wanted(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "never {what}: {stats:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn input(config: &Config) -> String {
    config.kafka.inputs[0].topic.clone()
}

/// A producer that may send records up to the broker's own limit.
fn big_producer(broker: &KafkaBroker) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("message.max.bytes", "1048000")
        .create()
        .unwrap()
}

async fn send_at(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8], timestamp: Option<i64>) {
    let mut record = FutureRecord::to(topic).key(key).payload(payload);
    if let Some(timestamp) = timestamp {
        record = record.timestamp(timestamp);
    }
    producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).expect("produce");
}

async fn incident_state(engine: &Engine, root: &str) -> Option<IncidentState> {
    let root = root.to_owned();
    engine
        .handle()
        .call(move |ctx| {
            ctx.correlator.incidents().find(|i| i.root_causes.iter().any(|r| **r == *root)).map(|i| i.state)
        })
        .await
        .unwrap()
}

/// One undecodable message of 1,040,000 bytes: under the broker's limit, over the input
/// limit, and over what the engine may write whole. It is dead-lettered, cut to fit with its
/// original size; the engine keeps consuming, the alarm after it is correlated, and a
/// restart does not meet it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_large_to_write_back_is_dead_lettered_cut_and_never_stops_the_engine() {
    let broker = KafkaBroker::start();
    let config = config_on(&broker, "oversized").with("kafka.max_message_bytes", 524_288).unwrap();
    let producer = big_producer(&broker);
    let topic = input(&config);
    let huge = vec![b'x'; 1_040_000];
    send_at(&producer, &topic, "huge", &huge, None).await;
    let good = br#"{"resource":"mrs-r1","alarm_type":"POWER","severity":"critical"}"#;
    send_at(&producer, &topic, "mrs-r1", good, None).await;

    let engine = Engine::start_with(&config, sample_topology()).await.expect("engine starts");
    until(&engine, "the good alarm applied after the huge one", |s| s.refused == 1 && s.raised == 1).await;
    assert!(incident_state(&engine, "mrs-r1").await.is_some(), "the alarm after it is correlated");

    let dead = reader(broker.bootstrap(), &config.kafka.dead_letter_topic);
    let letter = read_until(&dead, WAIT, |_| true).await;
    let header = |name: &str| {
        letter
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == name))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("faultline.reason").as_deref(), Some("oversized"));
    assert_eq!(header("faultline.original_size").as_deref(), Some("1040000"));
    assert!(header("faultline.source").is_some_and(|s| s.starts_with(&topic)), "its position");
    let kept = payload(&letter);
    assert!(kept.len() > 900_000 && kept.len() < 1_000_000 && kept.iter().all(|&b| b == b'x'), "{}", kept.len());
    engine.stop(Duration::from_secs(20)).await.expect("a clean stop");

    // Restarted: the huge message is behind the committed offsets; nothing is refused again.
    let engine = Engine::start_with(&config, sample_topology()).await.expect("engine restarts");
    let clear = br#"{"resource":"mrs-r1","alarm_type":"POWER","severity":"cleared"}"#;
    send_at(&producer, &topic, "mrs-r1", clear, None).await;
    let stats = until(&engine, "the clear applied after the restart", |s| s.cleared == 1).await;
    assert_eq!((stats.refused, stats.raised), (1, 1), "counted once, across the restart");
    engine.stop(Duration::from_secs(20)).await.expect("a clean stop");
}

/// A record stamped fifty minutes ahead (Kafka 4 takes up to an hour by default) must not
/// move stream time: an incident in its hold-down stays there, and is not resolved at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_stamped_an_hour_ahead_does_not_move_stream_time() {
    let broker = KafkaBroker::start();
    let config = config_on(&broker, "ahead")
        .with("correlation.hold_down_secs", 30)
        .unwrap()
        .with("correlation.idle_clock_millis", 600_000)
        .unwrap();
    let engine = Engine::start_with(&config, sample_topology()).await.expect("engine starts");
    let producer = big_producer(&broker);
    let topic = input(&config);
    let raise = br#"{"resource":"mrs-r1","alarm_type":"POWER","severity":"critical"}"#;
    let clear = br#"{"resource":"mrs-r1","alarm_type":"POWER","severity":"cleared"}"#;
    send_at(&producer, &topic, "mrs-r1", raise, None).await;
    send_at(&producer, &topic, "mrs-r1", clear, None).await;
    until(&engine, "raise and clear applied", |s| s.cleared == 1).await;
    assert_eq!(incident_state(&engine, "mrs-r1").await, Some(IncidentState::Open), "restored, in its hold-down");

    let ahead = faultline::clock::wall_clock() + 50 * 60_000;
    let other = br#"{"resource":"par-r1","alarm_type":"TEMP","severity":"warning"}"#;
    send_at(&producer, &topic, "par-r1", other, Some(ahead)).await;
    let stats = until(&engine, "the record from the future applied", |s| s.raised == 2).await;
    assert_eq!(stats.incidents.resolved, 0, "the hold-down was not skipped");
    assert_eq!(incident_state(&engine, "mrs-r1").await, Some(IncidentState::Open));
    let clock = engine.handle().call(|ctx| ctx.correlator.clock()).await.unwrap();
    assert!(clock <= faultline::clock::wall_clock() + 2_000, "stream time {clock} held at the wall clock + skew");
    let metrics = scrape(engine.metrics_addr()).await;
    assert!(metrics.contains("faultline_record_time_capped_total 1"), "{metrics}");
    engine.stop(Duration::from_secs(20)).await.expect("a clean stop");
}
