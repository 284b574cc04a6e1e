//! The engine against a failing broker: killed for more than ten seconds and restarted,
//! then frozen (SIGSTOP) and thawed, while alarms keep flowing. The engine waits, reconnects
//! and loses nothing; gRPC health says NOT_SERVING while Kafka is out of reach and SERVING
//! once it is back.

mod common;

use common::broker::KafkaBroker;
use common::*;
use faultline::runtime::Engine;
use rdkafka::producer::FutureRecord;
use std::time::{Duration, Instant};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

type Health = HealthClient<tonic::transport::Channel>;

async fn status(health: &mut Health) -> ServingStatus {
    let request = tonic_health::pb::HealthCheckRequest { service: String::new() };
    let response = health.check(request).await.expect("the gRPC server stays up while Kafka is away");
    ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown)
}

async fn until_status(health: &mut Health, wanted: ServingStatus, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let now = status(health).await;
        if now == wanted {
            return;
        }
        assert!(Instant::now() < deadline, "health still {now:?}, wanted {wanted:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A fault that lasts `lasting`: `fault(true)` starts it, `fault(false)` repairs it. Health
/// must say NOT_SERVING while it lasts and SERVING again after the repair.
async fn weather(health: &mut Health, lasting: Duration, mut fault: impl FnMut(bool)) {
    fault(true);
    until_status(health, ServingStatus::NotServing, Duration::from_secs(15)).await;
    tokio::time::sleep(lasting).await;
    fault(false);
    until_status(health, ServingStatus::Serving, Duration::from_secs(60)).await;
}

/// Waits until the engine has taken exactly `count` alarms (applied or refused).
async fn until_taken(engine: &Engine, count: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let stats = engine.handle().call(|ctx| ctx.stats()).await;
        if let Ok(stats) = &stats {
            let taken = stats.alarms_in + stats.refused;
            assert!(taken <= count, "{taken} alarms taken, more than the {count} sent");
            if taken == count {
                return;
            }
        }
        assert!(Instant::now() < deadline, "not every alarm arrived within {within:?}: {stats:?} of {count}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_waits_out_a_stopped_and_a_frozen_broker_and_loses_nothing() {
    log_to_test();
    let mut broker = KafkaBroker::start_own();
    let config = config_on(&broker, "faults");
    let input = config.kafka.inputs[0].topic.clone();
    let engine = Engine::start_with(&config, sample_topology()).await.expect("engine starts");
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", engine.grpc_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    until_status(&mut health, ServingStatus::Serving, Duration::from_secs(10)).await;

    // A steady trickle of repeats on one port, ten a second, from a producer that buffers
    // what it cannot deliver: "while alarms flow".
    let producer = producer(broker.bootstrap());
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop_feeding = tokio_util::sync::CancellationToken::new();
    let feed = {
        let (producer, input, sent, stop) = (producer.clone(), input.clone(), sent.clone(), stop_feeding.clone());
        tokio::spawn(async move {
            let alarm = br#"{"resource":"par-r1/1/1","alarm_type":"LOS","severity":"critical"}"#;
            while !stop.is_cancelled() {
                let record = FutureRecord::to(&input).key("par-r1/1/1").payload(&alarm[..]);
                let delivery = producer.send_result(record).expect("the producer queue has room");
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move { delivery.await.unwrap().expect("delivered after the outage") });
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The broker dies and stays away for twelve seconds.
    weather(&mut health, Duration::from_secs(12), |on| if on { broker.stop() } else { broker.restart() }).await;
    // Then it hangs (SIGSTOP) for eight seconds, connections open.
    tokio::time::sleep(Duration::from_secs(2)).await;
    weather(&mut health, Duration::from_secs(8), |on| if on { broker.pause() } else { broker.resume() }).await;

    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_feeding.cancel();
    feed.await.unwrap();
    let sent = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent > 200, "alarms kept flowing through the faults: {sent}");
    until_taken(&engine, sent, Duration::from_secs(90)).await;

    // One alarm, folded: the first raise and every repeat, none lost, none doubled.
    let stats = engine.handle().call(|ctx| ctx.stats()).await.unwrap();
    assert_eq!((stats.raised, stats.duplicates), (1, sent - 1));
    drop(producer);
    engine.stop(Duration::from_secs(30)).await.expect("a clean stop after the faults");
}
