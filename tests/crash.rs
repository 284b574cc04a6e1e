//! Nothing lost, nothing doubled, against a real Apache Kafka broker: the `faultline` binary
//! is killed with SIGKILL at random moments while a storm of 100,000 alarm messages flows in,
//! and restarted each time. In the end its incidents equal those of an uninterrupted run
//! over the same input, every message is accounted for (applied or dead-lettered) exactly
//! once, and no incident change reached the incidents topic twice or went missing.
//!
//! The input topic has one partition: Kafka orders messages within a partition only, and a
//! total order is what makes two runs comparable change for change.

mod common;

use common::broker::KafkaBroker;
use faultline::generate::{self as storm, Rng};
use faultline::proto::v1;
use prost::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use v1::incident_service_client::IncidentServiceClient;

const MESSAGES: usize = 100_000;
const KILLS: usize = 4;

/// One `faultline run` process and what it printed. Killed when dropped, so a failing
/// test leaves no engine behind.
struct Process {
    child: Child,
    grpc: String,
    metrics: String,
    /// Everything it wrote to stderr, for the failure message.
    log: mpsc::Receiver<String>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(config: &Path) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    loop {
        let Ok(line) = log.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("faultline did not start:\n{}", seen.join("\n"));
        };
        if line.contains("faultline started") {
            let field = |name: &str| {
                let at = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
                line[at..].split_whitespace().next().unwrap().to_owned()
            };
            let (grpc, metrics) = (field("grpc_addr"), field("metrics_addr"));
            return Process { child, grpc, metrics, log };
        }
        seen.push(line);
    }
}

/// A new input topic of one partition.
async fn single_partition_topic(broker: &KafkaBroker, name: &str) -> String {
    let topic = format!("{name}-{}", std::process::id());
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", broker.bootstrap()).create().unwrap();
    let created = admin
        .create_topics(&[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .unwrap();
    created.into_iter().for_each(|r| {
        r.unwrap();
    });
    topic
}

/// Sends `messages` to `topic`, waiting for every delivery.
async fn feed(broker: &KafkaBroker, topic: &str, messages: &[storm::Message]) {
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", broker.bootstrap()).create().unwrap();
    let sends: Vec<_> = messages
        .iter()
        .map(|(key, value)| producer.send_result(FutureRecord::to(topic).key(key).payload(value)).unwrap())
        .collect();
    for send in sends {
        send.await.unwrap().unwrap();
    }
}

/// The state changelog as the last committed transaction left it.
fn committed_state(broker: &KafkaBroker, topic: &str) -> faultline::correlate::changelog::CoreSnapshot {
    let mut snapshot = faultline::correlate::changelog::CoreSnapshot::default();
    read_topic(broker, topic, |m| {
        faultline::kafka::changelog::fold(&mut snapshot, m.key().unwrap_or_default(), m.payload()).unwrap()
    });
    snapshot
}

struct Run {
    config: PathBuf,
    group: String,
    incidents_topic: String,
    state_topic: String,
}

fn write_config(dir: &Path, name: &str, broker: &str, input: &str, topology: &Path) -> Run {
    let suffix = format!("{name}-{}", std::process::id());
    let config = dir.join(format!("{name}.toml"));
    let text = format!(
        r#"
[kafka]
brokers = "{broker}"
group_id = "faultline-{suffix}"
incidents_topic = "incidents-{suffix}"
dead_letter_topic = "dead-letter-{suffix}"
state_topic = "state-{suffix}"
partitions = 4
commit_interval_ms = 100

[[kafka.inputs]]
topic = "{input}"
format = "json"

[grpc]
addr = "127.0.0.1:0"

[metrics]
addr = "127.0.0.1:0"

[topology]
file = "{topology}"

[correlation]
# Timers run on stream time (the records' timestamps), so both runs resolve and close the
# same incidents at the same point of the input; the wall clock must not step in.
hold_down_secs = 3
reopen_window_secs = 10
idle_clock_millis = 600000
"#,
        topology = topology.display()
    );
    std::fs::write(&config, text).unwrap();
    Run {
        config,
        group: format!("faultline-{suffix}"),
        incidents_topic: format!("incidents-{suffix}"),
        state_topic: format!("state-{suffix}"),
    }
}

/// Log lines worth showing when the comparison fails: restores, assignments, resumes.
fn is_milestone(line: &str) -> bool {
    ["state restored", "partitions assigned", "partitions revoked", "consuming partition", "retrying", "stopped"]
        .iter()
        .any(|m| line.contains(m))
}

/// Committed offset and end of the single input partition, for `group`.
fn progress(broker: &str, group: &str, topic: &str) -> (i64, i64) {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", broker).set("group.id", group).create().unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, 0);
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .ok()
        .and_then(|l| l.find_partition(topic, 0).map(|e| e.offset()))
        .and_then(|o| if let Offset::Offset(o) = o { Some(o) } else { None })
        .unwrap_or(0);
    let (_, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).unwrap();
    (committed, high)
}

/// What a NOC engineer compares: id, state, priority, root causes, symptom alarms,
/// impacted services with their impact.
type Summary = (String, i32, i32, Vec<String>, Vec<(String, String, bool)>, Vec<(String, i32)>);

async fn incidents(grpc: &str) -> BTreeMap<String, Summary> {
    let mut client = IncidentServiceClient::connect(format!("http://{grpc}")).await.unwrap();
    let mut out = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let request = v1::ListIncidentsRequest { page_size: 1000, page_token, ..Default::default() };
        let page = client.list_incidents(request).await.unwrap().into_inner();
        for i in page.incidents {
            let mut roots = i.root_causes.clone();
            roots.sort();
            let symptoms = i
                .symptom_alarms
                .iter()
                .map(|a| (a.resource.clone(), a.alarm_type.clone(), a.cleared_time.is_some()))
                .collect();
            let services = i.impacted_services.iter().map(|s| (s.service_id.clone(), s.impact)).collect();
            out.insert(i.id.clone(), (i.id, i.state, i.priority, roots, symptoms, services));
        }
        if page.next_page_token.is_empty() {
            return out;
        }
        page_token = page.next_page_token;
    }
}

/// Messages the engine accounted for: every alarm outcome plus the refused messages.
async fn accounted(metrics: &str) -> u64 {
    common::scrape(metrics)
        .await
        .lines()
        .filter(|l| l.starts_with("faultline_alarms_total{") || l.starts_with("faultline_input_refused_total "))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Every incident snapshot on a run's incidents topic, read_committed: per incident id,
/// the snapshots in the order they were written.
fn snapshots(broker: &KafkaBroker, topic: &str) -> BTreeMap<String, Vec<v1::Incident>> {
    let mut out: BTreeMap<String, Vec<v1::Incident>> = BTreeMap::new();
    read_topic(broker, topic, |message| {
        let incident = v1::Incident::decode(message.payload().unwrap_or_default()).unwrap();
        out.entry(incident.id.clone()).or_default().push(incident);
    });
    out
}

/// Reads every committed record of `topic`, from the beginning of each partition to its end.
fn read_topic(broker: &KafkaBroker, topic: &str, mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>)) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", format!("read-{topic}"))
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let partitions = metadata.topics()[0].partitions().len();
    let mut list = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        list.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut done = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while done.len() < partitions {
        assert!(Instant::now() < deadline, "topic {topic} not read to its end");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => each(&message),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                done.insert(p);
            }
            _ => {}
        }
    }
}

/// A ring of `sites` written as a topology file in `dir`.
fn ring_file(dir: &Path, sites: usize) -> (storm::Ring, PathBuf) {
    let ring = storm::ring(sites);
    let path = dir.join("ring.jsonl");
    std::fs::write(&path, &ring.jsonl).unwrap();
    (ring, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_and_doubles_nothing() {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let (ring, topology) = ring_file(dir.path(), 60);
    let messages = storm::storm(&ring, MESSAGES, 0x5eed);
    let garbage = messages.iter().filter(|(k, _)| k == "garbage").count();
    assert!(garbage > 100, "the storm carries undecodable input too");

    let input = single_partition_topic(&broker, "alarms-crash").await;

    let reference = write_config(dir.path(), "reference", broker.bootstrap(), &input, &topology);
    let crashing = write_config(dir.path(), "crashing", broker.bootstrap(), &input, &topology);
    let mut uninterrupted = spawn(&reference.config);
    let mut victim = spawn(&crashing.config);

    // The storm flows in over about fifteen seconds while the victim is being killed.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let feed = {
        let input = input.clone();
        tokio::spawn(async move {
            for chunk in messages.chunks(4_000) {
                let sends: Vec<_> = chunk
                    .iter()
                    .map(|(key, value)| producer.send_result(FutureRecord::to(&input).key(key).payload(value)).unwrap())
                    .collect();
                for send in sends {
                    send.await.unwrap().unwrap();
                }
                tokio::time::sleep(Duration::from_millis(600)).await;
            }
        })
    };

    let begun = Instant::now();
    let mut rng = Rng::new(42);
    let mut kills_while_working = 0;
    let mut history = Vec::new();
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(500 + rng.below(2_000) as u64)).await;
        let (committed, high) = progress(broker.bootstrap(), &crashing.group, &input);
        kills_while_working += usize::from(committed < high || !feed.is_finished());
        victim.child.kill().unwrap();
        victim.child.wait().unwrap();
        history.extend(victim.log.try_iter().filter(|l| is_milestone(l)));
        drop(victim);
        victim = spawn(&crashing.config);
        eprintln!("{:?}: killed at {committed}/{high}, restarted", begun.elapsed());
    }
    feed.await.unwrap();
    assert!(kills_while_working >= 3, "only {kills_while_working} kills landed while the engine worked");

    let deadline = Instant::now() + Duration::from_secs(180);
    for run in [&reference, &crashing] {
        loop {
            let (committed, high) = progress(broker.bootstrap(), &run.group, &input);
            if committed == high && high as usize == MESSAGES {
                eprintln!("{:?}: {} drained", begun.elapsed(), run.group);
                break;
            }
            if Instant::now() > deadline {
                let log: Vec<String> = victim.log.try_iter().collect();
                panic!("{}: committed {committed} of {high}\n{}", run.group, log.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    history.extend(victim.log.try_iter().filter(|l| is_milestone(l)));
    let history = history.join("\n");

    // Every message applied or refused exactly once, across four restarts.
    assert_eq!(accounted(&uninterrupted.metrics).await, MESSAGES as u64);
    assert_eq!(accounted(&victim.metrics).await, MESSAGES as u64, "{history}");

    // The same incidents, to the symptom.
    let expected = incidents(&uninterrupted.grpc).await;
    let actual = incidents(&victim.grpc).await;
    assert!(expected.len() > 10, "the storm opened incidents: {}", expected.len());
    assert_eq!(actual.len(), expected.len(), "incident count");
    for (id, summary) in &expected {
        assert_eq!(actual.get(id), Some(summary), "{id} differs after the crashes\n{history}");
    }

    // On the incidents topic (compacted: the latest snapshot per incident and transaction):
    // versions only ever increase, never written twice, and each incident ends on the
    // snapshot the uninterrupted run ended on.
    let written = snapshots(&broker, &crashing.incidents_topic);
    let reference_written = snapshots(&broker, &reference.incidents_topic);
    assert_eq!(written.keys().collect::<Vec<_>>(), reference_written.keys().collect::<Vec<_>>());
    for (id, snapshots) in &written {
        let versions: Vec<u64> = snapshots.iter().map(|i| i.version).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{id}: versions on the incidents topic {versions:?}");
        assert_eq!(snapshots.last(), reference_written[id].last(), "{id}: the last snapshot differs");
    }

    for process in [&mut uninterrupted, &mut victim] {
        Command::new("kill").args(["-TERM", &process.child.id().to_string()]).status().unwrap();
        process.child.wait().unwrap();
    }
}

/// SIGTERM while the engine works: it stops consuming, applies what it took, commits, and
/// exits 0 within its grace period; what it committed accounts for exactly the input up to
/// the committed offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_commits_and_exits_in_time() {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let (ring, topology) = ring_file(dir.path(), 20);
    let input = single_partition_topic(&broker, "alarms-sigterm").await;
    let run = write_config(dir.path(), "sigterm", broker.bootstrap(), &input, &topology);
    let mut engine = spawn(&run.config);
    let messages = storm::storm(&ring, 60_000, 9);
    let (first, rest) = messages.split_at(10_000);
    feed(&broker, &input, first).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while progress(broker.bootstrap(), &run.group, &input).0 == 0 {
        assert!(Instant::now() < deadline, "the engine never committed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // SIGTERM while input is still arriving: the engine is busy with it when told to stop.
    let stop = async {
        while progress(broker.bootstrap(), &run.group, &input).1 < first.len() as i64 + 5_000 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Command::new("kill").args(["-TERM", &engine.child.id().to_string()]).status().unwrap();
    };
    tokio::join!(feed(&broker, &input, rest), stop);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = engine.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running 30 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit status {status}");

    let (committed, end) = progress(broker.bootstrap(), &run.group, &input);
    assert!(committed < end, "SIGTERM came while there was work left: {committed} of {end}");
    let stats = committed_state(&broker, &run.state_topic).meta.stats;
    assert_eq!(
        stats.alarms_in + stats.refused,
        committed as u64,
        "the committed state accounts for exactly the committed input"
    );
}
