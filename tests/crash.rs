//! Nothing lost, nothing doubled, against a real Apache Kafka broker: the `faultline` binary
//! is killed with SIGKILL at random moments while a storm of alarm messages flows in, and
//! restarted each time; an uninterrupted run over the same input is the reference.
//!
//! Over an input topic of one partition, which Kafka keeps in a total order, the two runs
//! are comparable change for change: the same incidents, to the symptom, and no incident
//! change written twice or missing. Over several partitions only each resource's
//! notifications keep their order (they are keyed by resource), so incidents may group and
//! number differently; what must still hold is that every message is accounted for exactly
//! once, and that the network ends in the same state: the same active alarms and CI states,
//! and the same impacted services followed by open incidents.

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
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use v1::incident_service_client::IncidentServiceClient;
use v1::maintenance_service_client::MaintenanceServiceClient;
use v1::topology_service_client::TopologyServiceClient;

const KILLS: usize = 4;

/// One `faultline run` process and what it printed. Killed when dropped, so a failing
/// test leaves no engine behind.
struct Process {
    child: Child,
    grpc: String,
    metrics: String,
    /// Changelog records it read back at start: a restarted engine carries on from them.
    restored_records: u64,
    /// Everything it wrote to stderr after it started, for the failure message.
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
    let mut seen: Vec<String> = Vec::new();
    loop {
        let Ok(line) = log.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("faultline did not start:\n{}", seen.join("\n"));
        };
        if line.contains("faultline started") {
            let (grpc, metrics) = (field(&line, "grpc_addr"), field(&line, "metrics_addr"));
            let restored = seen.iter().find(|l| l.contains("state restored")).expect("the engine logs its restore");
            let restored_records = field(restored, "records").parse().unwrap();
            return Process { child, grpc, metrics, restored_records, log };
        }
        seen.push(line);
    }
}

/// The value of the structured field `name` in a log line.
fn field(line: &str, name: &str) -> String {
    let at = line.find(&format!(" {name}=")).unwrap_or_else(|| panic!("no {name} in {line}")) + name.len() + 2;
    line[at..].split_whitespace().next().unwrap().to_owned()
}

/// A new input topic of `partitions` partitions.
async fn input_topic(broker: &KafkaBroker, name: &str, partitions: i32) -> String {
    let topic = format!("{name}-{}", std::process::id());
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", broker.bootstrap()).create().unwrap();
    let created = admin
        .create_topics(&[NewTopic::new(&topic, partitions, TopicReplication::Fixed(1))], &AdminOptions::new())
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
    topology_topic: String,
    changes_topic: String,
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
topology_topic = "topology-{suffix}"
changes_topic = "changes-{suffix}"
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
        topology_topic: format!("topology-{suffix}"),
        changes_topic: format!("changes-{suffix}"),
    }
}

/// Log lines worth showing when the comparison fails: restores, assignments, resumes.
fn is_milestone(line: &str) -> bool {
    ["state restored", "partitions assigned", "partitions revoked", "consuming partition", "retrying", "stopped"]
        .iter()
        .any(|m| line.contains(m))
}

/// Committed offset and end of each input partition, for `group`.
fn partition_progress(broker: &str, group: &str, topic: &str) -> Vec<(i64, i64)> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", broker).set("group.id", group).create().unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(10)).ok();
    (0..partitions)
        .map(|p| {
            let committed = committed
                .as_ref()
                .and_then(|l| l.find_partition(topic, p).map(|e| e.offset()))
                .and_then(|o| if let Offset::Offset(o) = o { Some(o) } else { None })
                .unwrap_or(0);
            let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
            (committed, high)
        })
        .collect()
}

/// Messages of the input committed by `group`, and messages in it, over all its partitions.
fn progress(broker: &str, group: &str, topic: &str) -> (i64, i64) {
    partition_progress(broker, group, topic)
        .into_iter()
        .fold((0, 0), |(c, h), (committed, high)| (c + committed, h + high))
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

/// Two engines over one storm: `uninterrupted` ran through it, `victim` was SIGKILLed at
/// random moments and restarted each time. Both have committed the whole input.
struct Crashed {
    /// The input topic both engines consume.
    input: String,
    uninterrupted: Process,
    victim: Process,
    /// Configuration, group and topics of each engine.
    reference: Run,
    crashing: Run,
    /// The network the storm ran on.
    ring: storm::Ring,
    /// The victim's restarts and log milestones, for the failure messages.
    history: Vec<String>,
    broker: KafkaBroker,
    /// Holds the configuration and topology files.
    _dir: tempfile::TempDir,
}

/// Feeds a storm of `count` messages on a ring of `sites`, keyed by resource, into a new
/// input topic of `partitions` partitions while the victim is killed `KILLS` times; then
/// waits until both engines have committed all of it, and checks that each accounted for
/// every message exactly once.
async fn crash_storm(name: &str, partitions: i32, sites: usize, count: usize) -> Crashed {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let (ring, topology) = ring_file(dir.path(), sites);
    let messages = storm::storm(&ring, count, 0x5eed);
    let garbage = messages.iter().filter(|(k, _)| k == "garbage").count();
    assert!(garbage > 100, "the storm carries undecodable input too");

    let input = input_topic(&broker, name, partitions).await;

    let reference = write_config(dir.path(), "reference", broker.bootstrap(), &input, &topology);
    let crashing = write_config(dir.path(), "crashing", broker.bootstrap(), &input, &topology);
    let uninterrupted = spawn(&reference.config);
    let mut victim = spawn(&crashing.config);

    // The storm flows in over about fifteen seconds, in 25 chunks 600 ms apart, while the
    // victim is being killed.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let feed = {
        let input = input.clone();
        tokio::spawn(async move {
            for chunk in messages.chunks(count.div_ceil(25)) {
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
        kill_and_restart(&mut victim, &crashing.config, &mut history);
        eprintln!("{:?}: killed at {committed}/{high}, restarted", begun.elapsed());
    }
    feed.await.unwrap();
    assert!(kills_while_working >= 3, "only {kills_while_working} kills landed while the engine worked");

    let deadline = Instant::now() + Duration::from_secs(180);
    for run in [&reference, &crashing] {
        loop {
            let (committed, high) = progress(broker.bootstrap(), &run.group, &input);
            if committed == high && high as usize == count {
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

    // Every message applied or refused exactly once, across the restarts.
    assert_eq!(accounted(&uninterrupted.metrics).await, count as u64);
    assert_eq!(accounted(&victim.metrics).await, count as u64, "{}", history.join("\n"));

    Crashed { input, uninterrupted, victim, reference, crashing, ring, history, broker, _dir: dir }
}

/// SIGKILLs the running `victim` and starts it again; its milestones go to `history`.
fn kill_and_restart(victim: &mut Process, config: &Path, history: &mut Vec<String>) {
    victim.child.kill().unwrap();
    let status = victim.child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "the engine ran until SIGKILL: {status}");
    history.extend(victim.log.try_iter().filter(|l| is_milestone(l)));
    *victim = spawn(config);
    assert!(victim.restored_records > 0, "the restarted engine carries on from the changelog");
    history.push(format!("restarted from {} changelog records", victim.restored_records));
}

impl Crashed {
    /// Stops both engines as an operator does.
    fn stop(mut self) {
        for process in [&mut self.uninterrupted, &mut self.victim] {
            Command::new("kill").args(["-TERM", &process.child.id().to_string()]).status().unwrap();
            process.child.wait().unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_and_doubles_nothing() {
    let crashed = crash_storm("alarms-crash", 1, 60, 100_000).await;
    let (broker, history) = (&crashed.broker, crashed.history.join("\n"));

    // The same incidents, to the symptom.
    let expected = incidents(&crashed.uninterrupted.grpc).await;
    let actual = incidents(&crashed.victim.grpc).await;
    assert!(expected.len() > 10, "the storm opened incidents: {}", expected.len());
    assert_eq!(actual.len(), expected.len(), "incident count");
    for (id, summary) in &expected {
        assert_eq!(actual.get(id), Some(summary), "{id} differs after the crashes\n{history}");
    }

    // On the incidents topic (compacted: the latest snapshot per incident and transaction):
    // versions only ever increase, never written twice, and each incident ends on the
    // snapshot the uninterrupted run ended on.
    let written = snapshots(broker, &crashed.crashing.incidents_topic);
    let reference_written = snapshots(broker, &crashed.reference.incidents_topic);
    assert_eq!(written.keys().collect::<Vec<_>>(), reference_written.keys().collect::<Vec<_>>());
    for (id, snapshots) in &written {
        let versions: Vec<u64> = snapshots.iter().map(|i| i.version).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{id}: versions on the incidents topic {versions:?}");
        assert_eq!(snapshots.last(), reference_written[id].last(), "{id}: the last snapshot differs");
    }

    crashed.stop();
}

/// What GetCi tells of a CI: its state, its own state, the root causes that explain it,
/// and its active alarms by identity with severity and tally.
type CiSummary = (i32, i32, Vec<String>, Vec<(String, String, String, i32, u64)>);

/// Every CI of the topology file `jsonl`, as GetCi tells it.
async fn ci_states(grpc: &str, jsonl: &str) -> BTreeMap<String, CiSummary> {
    let mut client = TopologyServiceClient::connect(format!("http://{grpc}")).await.unwrap();
    let mut out = BTreeMap::new();
    for line in jsonl.lines() {
        let ci: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = ci["id"].as_str().unwrap().to_owned();
        out.insert(id.clone(), ci_summary(&mut client, id).await);
    }
    out
}

/// What GetCi tells of one CI.
async fn ci_summary(client: &mut TopologyServiceClient<tonic::transport::Channel>, id: String) -> CiSummary {
    let status = client.get_ci(v1::GetCiRequest { id }).await.unwrap().into_inner();
    let mut roots: Vec<String> = status.root_causes.into_iter().map(|r| r.ci_id).collect();
    roots.sort();
    let alarms = status
        .active_alarms
        .into_iter()
        .map(|a| (a.resource, a.alarm_type, a.qualifier, a.severity, a.tally))
        .collect();
    (status.state, status.own_state, roots, alarms)
}

/// The services still impacted under open incidents, with their impact, sorted: a service
/// under two of them is there twice. Which incident a service is under depends on the
/// order its root causes failed in, so it is left out.
fn open_impact(incidents: &BTreeMap<String, Summary>) -> Vec<(String, i32)> {
    let open = [v1::IncidentState::Open as i32, v1::IncidentState::Acknowledged as i32];
    let mut impacted: Vec<_> = incidents
        .values()
        .filter(|(_, state, ..)| open.contains(state))
        .flat_map(|(.., services)| services.iter().filter(|(_, impact)| *impact != v1::ServiceState::Up as i32))
        .cloned()
        .collect();
    impacted.sort();
    impacted
}

/// Over several partitions the two runs interleave the partitions differently, so their
/// incidents may group and number differently; the input is accounted for exactly once
/// all the same, and the network ends in the same state with the same open incidents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_over_several_partitions_ends_in_the_reference_state() {
    const MESSAGES: usize = 40_000;
    let mut crashed = crash_storm("alarms-crash-partitions", 4, 30, MESSAGES).await;
    let partitions = partition_progress(crashed.broker.bootstrap(), &crashed.crashing.group, &crashed.input);
    assert!(partitions.iter().all(|&(_, end)| end > 1_000), "the storm spreads over every partition: {partitions:?}");

    // A last kill once everything is committed. Alarms come and go within a few hundred
    // messages of the storm, so the state the kills above left behind is soon written over;
    // this restart must take back the final state itself, whole.
    kill_and_restart(&mut crashed.victim, &crashed.crashing.config, &mut crashed.history);
    let history = crashed.history.join("\n");
    assert_eq!(accounted(&crashed.victim.metrics).await, MESSAGES as u64, "{history}");

    // The same active alarms and the same state on every CI.
    let expected = ci_states(&crashed.uninterrupted.grpc, &crashed.ring.jsonl).await;
    let actual = ci_states(&crashed.victim.grpc, &crashed.ring.jsonl).await;
    let alarmed = expected.values().filter(|(.., alarms)| !alarms.is_empty()).count();
    let down = expected.values().filter(|(state, ..)| *state != v1::ServiceState::Up as i32).count();
    assert!(alarmed > 5 && down > 0, "alarms remain at the end: {alarmed} CIs alarmed, {down} not up");
    for (id, summary) in &expected {
        assert_eq!(actual.get(id), Some(summary), "{id} differs after the crashes\n{history}");
    }

    // The same services impacted under open incidents, each under one: no incident lost,
    // none doubled, whichever incident each service ended up under.
    let expected = open_impact(&incidents(&crashed.uninterrupted.grpc).await);
    let actual = open_impact(&incidents(&crashed.victim.grpc).await);
    assert!(!expected.is_empty(), "incidents remain open at the end");
    assert!(expected.windows(2).all(|w| w[0].0 != w[1].0), "a service under two open incidents: {expected:?}");
    assert_eq!(actual, expected, "services under open incidents differ after the crashes\n{history}");

    // Topology batches, each killed right after its answer on the victim: what was answered
    // is committed, and both engines end on the same topology, states and open incidents.
    let records: Vec<serde_json::Value> =
        crashed.ring.jsonl.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let services: Vec<&serde_json::Value> = records.iter().filter(|r| r["class"] == "cfs").collect();
    assert!(services.len() >= 20, "the ring has services to change");
    let as_ci = |record: &serde_json::Value, id: &str| v1::ConfigurationItem {
        id: id.to_owned(),
        class: v1::CiClass::Cfs as i32,
        name: record["name"].as_str().unwrap_or_default().to_owned(),
        depends_on: record["depends_on"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_owned()).collect(),
        customer: record["customer"].as_str().unwrap_or_default().to_owned(),
        ..Default::default()
    };
    for k in 0..6 {
        let added = as_ci(services[k], &format!("live-svc-{k}"));
        let deleted = services[10 + k]["id"].as_str().unwrap().to_owned();
        let changes = vec![
            v1::CiChange { change: Some(v1::ci_change::Change::Upsert(added)) },
            v1::CiChange { change: Some(v1::ci_change::Change::Delete(deleted)) },
        ];
        for engine in [&crashed.uninterrupted.grpc, &crashed.victim.grpc] {
            let mut client = TopologyServiceClient::connect(format!("http://{engine}")).await.unwrap();
            let request = v1::ApplyTopologyChangesRequest { changes: changes.clone() };
            let applied = client.apply_topology_changes(request).await.unwrap().into_inner();
            assert_eq!(applied.version, k as u64 + 1);
        }
        kill_and_restart(&mut crashed.victim, &crashed.crashing.config, &mut crashed.history);
    }
    let history = crashed.history.join("\n");
    let expected = topology_states(&crashed.uninterrupted.grpc).await;
    let actual = topology_states(&crashed.victim.grpc).await;
    assert!(expected.contains_key("live-svc-5") && !expected.contains_key(services[15]["id"].as_str().unwrap()));
    assert_eq!(expected.len(), actual.len(), "CIs after the topology batches\n{history}");
    for (id, summary) in &expected {
        assert_eq!(actual.get(id), Some(summary), "{id} differs after the topology batches\n{history}");
    }
    let expected = open_impact(&incidents(&crashed.uninterrupted.grpc).await);
    let actual = open_impact(&incidents(&crashed.victim.grpc).await);
    assert_eq!(actual, expected, "services under open incidents differ after the topology batches\n{history}");

    // The CMDB's topic and change management's, the victim SIGKILLed while they flow: each
    // service sent before its port (held), half the ports at once, the rest at the end, a
    // maintenance window on a card each time. Both engines end alike.
    let cards: Vec<&str> = records.iter().filter(|r| r["class"] == "card").map(|r| r["id"].as_str().unwrap()).collect();
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", crashed.broker.bootstrap()).create().unwrap();
    let send = |topic: String, key: String, value: String| {
        let producer = producer.clone();
        async move {
            producer
                .send(FutureRecord::to(&topic).key(&key).payload(&value), Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    };
    let now = faultline::clock::wall_clock();
    let port = |k: usize| format!(r#"{{"id":"feed-port-{k}","class":"port","depends_on":["{}"]}}"#, cards[k]);
    let mut rng = Rng::new(7);
    for k in 0..4 {
        let customer = services[k]["customer"].as_str().unwrap();
        let service =
            format!(r#"{{"id":"feed-svc-{k}","class":"cfs","customer":"{customer}","depends_on":["feed-port-{k}"]}}"#);
        let window = format!(
            r#"{{"reason":"works","cis":["{}"],"scope":"dependents","start":{},"end":{}}}"#,
            cards[20 + k],
            now - 1_000,
            now + 3_600_000
        );
        for run in [&crashed.reference, &crashed.crashing] {
            send(run.topology_topic.clone(), format!("feed-svc-{k}"), service.clone()).await;
            if k % 2 == 0 {
                send(run.topology_topic.clone(), format!("feed-port-{k}"), port(k)).await;
            }
            send(run.changes_topic.clone(), format!("CHG-{k}"), window.clone()).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(400) as u64)).await;
        kill_and_restart(&mut crashed.victim, &crashed.crashing.config, &mut crashed.history);
    }
    for k in [1, 3] {
        for run in [&crashed.reference, &crashed.crashing] {
            send(run.topology_topic.clone(), format!("feed-port-{k}"), port(k)).await;
        }
    }
    kill_and_restart(&mut crashed.victim, &crashed.crashing.config, &mut crashed.history);
    let settled = |grpc: String| async move {
        let mut client = TopologyServiceClient::connect(format!("http://{grpc}")).await.unwrap();
        let mut windows = MaintenanceServiceClient::connect(format!("http://{grpc}")).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let version = client.get_topology_version(v1::GetTopologyVersionRequest {}).await.unwrap().into_inner();
            let listed = windows.list_maintenance_windows(v1::ListMaintenanceWindowsRequest::default()).await;
            let listed = listed.unwrap().into_inner().windows;
            let applied = client.get_ci(v1::GetCiRequest { id: "feed-svc-3".into() }).await.is_ok();
            if version.held_changes == 0 && applied && listed.len() == 4 {
                let mut suppressed: Vec<String> = windows
                    .list_suppressed_impacts(v1::ListSuppressedImpactsRequest {})
                    .await
                    .unwrap()
                    .into_inner()
                    .impacts
                    .into_iter()
                    .map(|i| format!("{i:?}"))
                    .collect();
                suppressed.sort();
                let listed: Vec<(String, i32)> = listed.into_iter().map(|w| (w.change, w.state)).collect();
                return (listed, suppressed);
            }
            assert!(Instant::now() < deadline, "the topics never settled on {grpc}: {version:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let expected_windows = settled(crashed.uninterrupted.grpc.clone()).await;
    let actual_windows = settled(crashed.victim.grpc.clone()).await;
    let history = crashed.history.join("\n");
    assert!(expected_windows.0.iter().all(|(_, state)| *state == v1::MaintenanceState::Active as i32));
    assert_eq!(actual_windows, expected_windows, "windows and suppressed impacts\n{history}");
    let expected = topology_states(&crashed.uninterrupted.grpc).await;
    let actual = topology_states(&crashed.victim.grpc).await;
    assert!(expected.contains_key("feed-svc-3") && expected.contains_key("feed-port-3"));
    assert_eq!(expected.len(), actual.len(), "CIs after the topology topic\n{history}");
    for (id, (_, record, summary)) in &expected {
        // Versions count batches, which follow the polls: records and states must agree.
        let (_, actual_record, actual_summary) = &actual[id];
        assert_eq!((actual_record, actual_summary), (record, summary), "{id} differs\n{history}");
    }
    let expected = open_impact(&incidents(&crashed.uninterrupted.grpc).await);
    let actual = open_impact(&incidents(&crashed.victim.grpc).await);
    assert_eq!(actual, expected, "services under open incidents differ after the topics\n{history}");

    crashed.stop();
}

/// Every CI present, listed over gRPC, with its version and record as `ListCis` gives them
/// and its state as `GetCi` does.
async fn topology_states(grpc: &str) -> BTreeMap<String, (u64, String, CiSummary)> {
    let mut client = TopologyServiceClient::connect(format!("http://{grpc}")).await.unwrap();
    let mut out = BTreeMap::new();
    let mut token = String::new();
    loop {
        let request = v1::ListCisRequest { page_token: token, page_size: 10_000, ..Default::default() };
        let page = client.list_cis(request).await.unwrap().into_inner();
        for ci in page.cis {
            let summary = ci_summary(&mut client, ci.id.clone()).await;
            out.insert(ci.id.clone(), (page.topology_version, format!("{ci:?}"), summary));
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    out
}

/// SIGTERM while the engine works: it stops consuming, applies what it took, commits, and
/// exits 0 within its grace period; what it committed accounts for exactly the input up to
/// the committed offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_commits_and_exits_in_time() {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let (ring, topology) = ring_file(dir.path(), 20);
    let input = input_topic(&broker, "alarms-sigterm", 1).await;
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
