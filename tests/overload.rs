//! Overload at the gRPC edge: a subscriber that stops reading is dropped with
//! RESOURCE_EXHAUSTED and its reason, and meanwhile a subscriber that keeps up receives
//! every change, in order, as if the other were not there.

mod common;

use common::*;
use faultline::generate as storm;
use faultline::proto::v1;
use faultline::runtime::Engine;
use faultline::topology_file;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::Code;
use v1::incident_service_client::IncidentServiceClient;

const WAIT: Duration = Duration::from_secs(30);

/// A subscription on a connection of its own (a stream that is not read holds its
/// connection's HTTP/2 window, so sharing one would stall the other stream client-side).
async fn subscribe(endpoint: &str) -> tonic::Streaming<v1::SubscribeIncidentsResponse> {
    let mut client = IncidentServiceClient::connect(endpoint.to_owned()).await.unwrap();
    let mut stream = client.subscribe(v1::SubscribeIncidentsRequest::default()).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.kind, v1::ChangeKind::SnapshotComplete as i32, "an empty engine sends only the marker");
    stream
}

async fn metric(metrics_addr: &str, name: &str) -> u64 {
    let body = scrape(metrics_addr).await;
    let line = body.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap_or_else(|| panic!("{name}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn produce_all(producer: &FutureProducer, messages: &[storm::Message]) {
    let sends = messages.iter().map(|(key, value)| {
        producer.send(FutureRecord::to(JSON_TOPIC).key(key).payload(value), Duration::from_secs(10))
    });
    for sent in futures::future::join_all(sends).await {
        sent.map_err(|(e, _)| e).expect("produce");
    }
}

/// Waits until the engine has taken `count` input messages: each round's changes then
/// reach the subscribers as one burst, not piled up behind the consumer's first join.
async fn applied(engine: &Engine, count: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = engine.handle().call(|ctx| ctx.stats()).await.unwrap();
        if stats.alarms_in + stats.refused >= count {
            return;
        }
        assert!(Instant::now() < deadline, "the engine took {} of {count} messages", stats.alarms_in + stats.refused);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An engine on the embedded cluster serving a 30-site ring, fed a storm round by round.
struct RingBed {
    engine: Engine,
    ring: storm::Ring,
    endpoint: String,
    metrics_addr: String,
    producer: FutureProducer,
    /// Messages produced so far.
    produced: u64,
}

impl RingBed {
    async fn start(subscriber_buffer: usize) -> RingBed {
        log_to_test();
        let ring = storm::ring(30);
        let topology = Arc::new(topology_file::parse(&ring.jsonl, "ring").unwrap());
        let config = test_config().with("grpc.subscriber_buffer", subscriber_buffer).unwrap();
        let engine = Engine::start_with(&config, topology).await.expect("engine starts");
        let (endpoint, metrics_addr) = (format!("http://{}", engine.grpc_addr()), engine.metrics_addr().to_string());
        let producer = producer(engine.brokers());
        RingBed { engine, ring, endpoint, metrics_addr, producer, produced: 0 }
    }

    /// Produces a round of the storm and waits until the engine has taken it: each round's
    /// changes reach the subscribers as one burst.
    async fn play(&mut self, round: &[storm::Message]) {
        produce_all(&self.producer, round).await;
        self.produced += round.len() as u64;
        applied(&self.engine, self.produced).await;
    }

    /// Plays rounds until a subscriber has been dropped.
    async fn play_until_dropped<'a>(&mut self, rounds: &mut impl Iterator<Item = &'a [storm::Message]>) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while metric(&self.metrics_addr, "faultline_subscribers_dropped_total").await == 0 {
            assert!(Instant::now() < deadline, "no subscriber was ever dropped");
            self.play(rounds.next().expect("a subscriber is dropped before the storm runs out")).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_dropped_with_its_reason_and_slows_nobody() {
    // A buffer that holds the changes of one round below, not the backlog of a stalled reader.
    let mut bed = RingBed::start(256).await;
    let (endpoint, metrics_addr) = (bed.endpoint.clone(), bed.metrics_addr.clone());

    let mut stalled = subscribe(&endpoint).await;
    let mut live = subscribe(&endpoint).await;
    // The live subscriber reads everything: the versions it saw of each incident, in order.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        loop {
            match live.message().await {
                Ok(Some(change)) => {
                    let incident = change.incident.expect("a live change carries its incident");
                    let _ = seen_tx.send((incident.id, incident.version));
                }
                Ok(None) => return Ok(()),
                Err(status) => return Err(status),
            }
        }
    });
    assert_eq!(metric(&metrics_addr, "faultline_subscribers").await, 2);

    // The storm goes on until the stalled subscriber has fallen the whole buffer behind.
    let messages = storm::storm(&bed.ring, 40_000, 0x51_0e);
    let mut rounds = messages.chunks(100);
    bed.play_until_dropped(&mut rounds).await;
    for round in rounds.take(10) {
        bed.play(round).await;
    }
    assert_eq!(metric(&metrics_addr, "faultline_subscribers").await, 1, "only the live subscriber is left");

    // The stalled subscriber, reading again, gets what was queued for it, then the reason.
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match stalled.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stalled stream ends");
    assert_eq!(ended.code(), Code::ResourceExhausted, "{ended:?}");
    assert!(ended.message().contains("too slow"), "{}", ended.message());

    // The live subscriber catches up to the engine's state, having missed no change: each
    // incident's versions arrive one by one, from its first.
    let mut versions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut incidents = IncidentServiceClient::connect(endpoint.clone()).await.unwrap();
    let caught_up = tokio::time::timeout(WAIT, async {
        loop {
            while let Ok((id, version)) = seen_rx.try_recv() {
                versions.entry(id).or_default().push(version);
            }
            let listed = incidents
                .list_incidents(v1::ListIncidentsRequest { page_size: 1000, ..Default::default() })
                .await
                .unwrap()
                .into_inner();
            let current =
                listed.incidents.iter().all(|i| versions.get(&i.id).and_then(|v| v.last()) == Some(&i.version));
            if current && !listed.incidents.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(caught_up.is_ok(), "the live subscriber did not catch up with the engine");
    assert!(!reader.is_finished(), "the live stream is still open: {:?}", reader.await);
    for (id, seen) in &versions {
        let expected: Vec<u64> = (1..=seen.len() as u64).collect();
        assert_eq!(seen, &expected, "every version of {id}, in order");
    }
    let changes: usize = versions.values().map(Vec::len).sum();
    assert!(changes > 256, "the live subscriber saw more changes than the buffer holds: {changes}");

    reader.abort();
    bed.engine.stop(Duration::from_secs(10)).await.unwrap();
}

/// A terminal that stalls until released: what `faultline watch` prints, kept.
#[derive(Clone)]
struct Terminal {
    printed: Arc<std::sync::Mutex<Vec<u8>>>,
    released: Arc<std::sync::atomic::AtomicBool>,
}

impl std::io::Write for Terminal {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut printed = self.printed.lock().unwrap();
        // The header line goes through; then nothing until released.
        while printed.contains(&b'\n') && !self.released.load(std::sync::atomic::Ordering::Relaxed) {
            drop(printed);
            std::thread::sleep(Duration::from_millis(10));
            printed = self.printed.lock().unwrap();
        }
        printed.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Terminal {
    /// The last line printed for each incident.
    fn last_lines(&self) -> BTreeMap<String, String> {
        let printed = String::from_utf8(self.printed.lock().unwrap().clone()).unwrap();
        let id = |line: &str| line.split_whitespace().nth(2).map(str::to_owned);
        printed.lines().skip(1).filter_map(|line| Some((id(line)?, line.to_owned()))).collect()
    }
}

/// `faultline watch` whose terminal stalls in a storm is dropped like any subscriber, then
/// resumes from the last change it received and goes on: in the end, the line it printed
/// last for each incident shows the incident as the engine holds it (kept whole from the
/// delta stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_dropped_for_a_stalled_terminal_resumes_and_ends_up_current() {
    let mut bed = RingBed::start(16).await;
    let (endpoint, metrics_addr) = (bed.endpoint.clone(), bed.metrics_addr.clone());
    let terminal = Terminal { printed: Arc::default(), released: Arc::default() };
    let options = faultline::cli::watch::WatchOptions { addr: endpoint.clone(), ..Default::default() };
    let watching = {
        let terminal = terminal.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(faultline::cli::watch::watch(options, terminal))
        })
    };
    let deadline = Instant::now() + WAIT;
    while metric(&metrics_addr, "faultline_subscribers").await == 0 {
        assert!(Instant::now() < deadline, "watch never subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A storm while the terminal is stalled, until watch is dropped.
    let messages = storm::storm(&bed.ring, 40_000, 0x3a7c);
    let mut rounds = messages.chunks(200);
    bed.play_until_dropped(&mut rounds).await;
    // The terminal comes back; the storm goes on a little.
    terminal.released.store(true, std::sync::atomic::Ordering::Relaxed);
    for round in rounds.take(5) {
        bed.play(round).await;
    }

    // Watch resubscribed (it did not end) and catches up with every incident.
    let mut incidents = IncidentServiceClient::connect(endpoint).await.unwrap();
    let deadline = Instant::now() + WAIT;
    let mut listed;
    loop {
        listed = incidents
            .list_incidents(v1::ListIncidentsRequest { page_size: 1000, ..Default::default() })
            .await
            .unwrap()
            .into_inner()
            .incidents;
        let lines = terminal.last_lines();
        // The change column aside, the line is the incident's row.
        let current = |incident: &v1::Incident| {
            let expected = faultline::cli::table::row(v1::ChangeKind::Updated as i32, incident);
            lines.get(&incident.id).is_some_and(|line| line.get(24..) == expected.get(24..))
        };
        if !listed.is_empty() && listed.iter().all(current) {
            break;
        }
        assert!(!watching.is_finished(), "watch ended");
        assert!(Instant::now() < deadline, "watch did not catch up: {} incidents", listed.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(listed.iter().any(|i| i.symptom_alarms.len() > 1), "incidents with lists to keep up to date");
    assert_eq!(metric(&metrics_addr, "faultline_subscribers").await, 1, "watch is subscribed again");

    bed.engine.stop(Duration::from_secs(10)).await.unwrap();
    let _ = watching.join();
}
