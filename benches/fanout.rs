//! Subscriber fan-out over real gRPC: an engine on the embedded Kafka cluster, serving a
//! generated 10k-CI carrier network in which a site has lost power (one incident of a few
//! hundred services, its snapshot about 30 KB); N subscribers, each on its own loopback
//! connection, in one view. Each iteration produces 20 severity changes of the site's power
//! alarm to the input topic and waits until every subscriber has received the 20 incident
//! changes they make: the throughput is incident changes delivered per second, all
//! subscribers together.
//!
//! `cargo bench --bench fanout` (all), `cargo bench --bench fanout -- 1000-delta` (one).
//! End to end with a real broker and a storm: `faultline bench --subscribers N --view V`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use faultline::config::{Config, Overrides};
use faultline::generate::carrier;
use faultline::model::alarm::{Alarm, Severity};
use faultline::proto::{self, v1};
use faultline::runtime::Engine;
use prost::Message as _;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use v1::incident_service_client::IncidentServiceClient;

/// Incident changes made per iteration.
const CHANGES: u64 = 20;
const SITE: &str = "g0-s1";

struct Bed {
    engine: Engine,
    producer: FutureProducer,
    topic: String,
    /// Stream time of the next alarm.
    time: i64,
}

impl Bed {
    async fn start() -> Bed {
        let mut text = Vec::new();
        carrier::write_network(10_000, 1, 1, &mut text, |_| {}).expect("a network");
        let topology =
            Arc::new(faultline::topology_file::parse(std::str::from_utf8(&text).unwrap(), "carrier").unwrap());
        let overrides = Overrides {
            grpc_addr: Some("127.0.0.1:0".parse().unwrap()),
            metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
            ..Overrides::default()
        };
        let config = Config::defaults(&overrides).unwrap().with("grpc.subscriber_buffer", 100_000).unwrap();
        let topic = config.kafka.inputs[0].topic.clone();
        let engine = Engine::start_with(&config, topology).await.expect("the engine starts");
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", engine.brokers())
            .set("linger.ms", "0")
            .create()
            .expect("a producer");
        let mut bed = Bed { engine, producer, topic, time: 1_767_225_600_000 };
        bed.send(Severity::Critical).await;
        // The outage's incident, with its services.
        let mut client = bed.client().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let listed = client.list_incidents(v1::ListIncidentsRequest::default()).await.unwrap().into_inner();
            if let Some(incident) = listed.incidents.iter().find(|i| i.impacted_services.len() > 100) {
                let summary = v1::Incident {
                    root_cause_alarms: vec![],
                    symptom_alarms: vec![],
                    impacted_services: vec![],
                    impacted_customers: vec![],
                    timeline: vec![],
                    notes: vec![],
                    ..incident.clone()
                };
                println!(
                    "fanout: one incident, {} services; a change sends {:.1} KB whole, {:.2} KB as a summary",
                    incident.impacted_services.len(),
                    incident.encoded_len() as f64 / 1024.0,
                    summary.encoded_len() as f64 / 1024.0
                );
                break;
            }
            assert!(Instant::now() < deadline, "the outage never opened its incident");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bed
    }

    async fn client(&self) -> IncidentServiceClient<tonic::transport::Channel> {
        IncidentServiceClient::connect(format!("http://{}", self.engine.grpc_addr())).await.unwrap()
    }

    /// The site's power alarm again, at `severity`: one change of its incident.
    async fn send(&mut self, severity: Severity) {
        self.time += 10;
        let alarm = Alarm::raise(SITE, "MAINS_FAIL", severity, self.time);
        let bytes = proto::alarm_to_proto(&alarm).encode_to_vec();
        let record = FutureRecord::to(&self.topic).key(SITE).payload(&bytes);
        self.producer.send(record, Duration::from_secs(10)).await.expect("the alarm is produced");
    }
}

/// Opens `count` subscriptions in `view`, each counting the changes it receives after its
/// snapshot into `received`.
async fn subscribe(
    bed: &Bed,
    count: usize,
    view: v1::IncidentView,
    received: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let mut client = bed.client().await;
        let request = v1::SubscribeIncidentsRequest { view: view as i32, ..Default::default() };
        let mut stream = client.subscribe(request).await.unwrap().into_inner();
        loop {
            let change = stream.message().await.unwrap().unwrap();
            if change.kind == v1::ChangeKind::SnapshotComplete as i32 {
                break;
            }
        }
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            while let Ok(Some(_)) = stream.message().await {
                received.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tasks
}

fn fanout(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a runtime");
    let mut bed = runtime.block_on(Bed::start());
    let mut group = c.benchmark_group("fanout");
    group.sample_size(10);
    let cases = [
        (100, v1::IncidentView::Full, "full"),
        (1_000, v1::IncidentView::Summary, "summary"),
        (1_000, v1::IncidentView::Delta, "delta"),
        (1_000, v1::IncidentView::Full, "full"),
    ];
    for (subscribers, view, name) in cases {
        let received = Arc::new(AtomicU64::new(0));
        let tasks = runtime.block_on(subscribe(&bed, subscribers, view, &received));
        group.throughput(Throughput::Elements(CHANGES * subscribers as u64));
        group.bench_function(format!("{subscribers}-{name}"), |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iterations {
                        let target = received.load(Ordering::Relaxed) + CHANGES * subscribers as u64;
                        for i in 0..CHANGES {
                            bed.send(if i % 2 == 0 { Severity::Major } else { Severity::Critical }).await;
                        }
                        let deadline = Instant::now() + Duration::from_secs(120);
                        while received.load(Ordering::Relaxed) < target {
                            assert!(Instant::now() < deadline, "the subscribers fell behind for good");
                            tokio::time::sleep(Duration::from_micros(200)).await;
                        }
                    }
                    started.elapsed()
                })
            })
        });
        for task in tasks {
            task.abort();
        }
    }
    group.finish();
    runtime.block_on(bed.engine.stop(Duration::from_secs(10))).expect("the engine stops");
}

criterion_group!(benches, fanout);
criterion_main!(benches);
