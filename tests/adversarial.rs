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

/// Marseille's core router loses power, and gets it back: an outage of three services.
const MRS_POWER_RAISE: &[u8] = br#"{"resource":"mrs-r1","alarm_type":"POWER","severity":"critical"}"#;
const MRS_POWER_CLEAR: &[u8] = br#"{"resource":"mrs-r1","alarm_type":"POWER","severity":"cleared"}"#;

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
    send_at(&producer, &topic, "mrs-r1", MRS_POWER_RAISE, None).await;

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
    send_at(&producer, &topic, "mrs-r1", MRS_POWER_CLEAR, None).await;
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
    send_at(&producer, &topic, "mrs-r1", MRS_POWER_RAISE, None).await;
    send_at(&producer, &topic, "mrs-r1", MRS_POWER_CLEAR, None).await;
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

/// Two engines on one state topic would each restore the other's state and both number
/// their incidents from INC-000001: one started with another `kafka.instance_id` is refused
/// at start with an error naming the owner, whether the owner runs or not, and the owner
/// itself restarts as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_on_the_same_state_topic_is_refused_at_start() {
    let broker = KafkaBroker::start();
    let config = config_on(&broker, "second");
    let other = config.clone().with("kafka.instance_id", "2").unwrap();
    let owner = Engine::start_with(&config, sample_topology()).await.expect("the first engine starts");

    let refused = Engine::start_with(&other, sample_topology()).await.err().expect("the second one is refused");
    let message = refused.to_string();
    assert!(message.contains("kafka.instance_id `1`") && message.contains("`2`"), "{message}");

    // The owner goes on alone.
    let producer = big_producer(&broker);
    send_at(&producer, &input(&config), "mrs-r1", MRS_POWER_RAISE, None).await;
    until(&owner, "the alarm applied by the owner", |s| s.raised == 1).await;
    owner.stop(Duration::from_secs(20)).await.expect("a clean stop");

    assert!(Engine::start_with(&other, sample_topology()).await.is_err(), "refused with the owner stopped too");
    let owner = Engine::start_with(&config, sample_topology()).await.expect("the owner restarts");
    assert_eq!(owner.restored().active_alarms, 1, "with its state");
    owner.stop(Duration::from_secs(20)).await.expect("a clean stop");
}

/// A state changelog record the engine cannot read stops the start with an error naming
/// the record's key, partition and offset, so an operator can find it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changelog_record_the_engine_cannot_read_is_named_by_key_and_offset() {
    let broker = KafkaBroker::start();
    let config = config_on(&broker, "unreadable");
    let engine = Engine::start_with(&config, sample_topology()).await.expect("engine starts");
    engine.stop(Duration::from_secs(20)).await.expect("a clean stop");

    let producer = big_producer(&broker);
    let record = FutureRecord::to(&config.kafka.state_topic).key("incident/INC-000042").payload(&b"\xff\xff\xff"[..]);
    let delivered = producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).unwrap();
    let (partition, offset) = (delivered.partition, delivered.offset);
    let error = Engine::start_with(&config, sample_topology()).await.err().expect("the start fails").to_string();
    assert!(error.contains("incident/INC-000042"), "{error}");
    assert!(error.contains(&format!("partition {partition} offset {offset}")), "{error}");
}

/// SIGTERM with the brokers gone: the engine cannot commit its last transaction, and still
/// exits within `--shutdown-grace` (and the few seconds its servers have), leaving what it
/// did not commit to be consumed again.
#[test]
fn sigterm_with_the_brokers_unreachable_stops_within_the_grace() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut broker = KafkaBroker::start_own();
    let config = config_on(&broker, "grace");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("faultline.toml");
    std::fs::write(&file, config.to_toml()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["run", "--shutdown-grace", "3", "--config"])
        .arg(&file)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok);
    assert!(lines.any(|line| line.contains("faultline started")), "the engine did not start");
    std::thread::spawn(move || lines.for_each(drop));

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        send_at(&big_producer(&broker), &input(&config), "mrs-r1", MRS_POWER_RAISE, None).await;
    });
    broker.stop();
    std::thread::sleep(Duration::from_secs(1));
    let signalled = Instant::now();
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let limit = Duration::from_secs(3 + 10);
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if signalled.elapsed() > limit {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(exited.is_some(), "still running {limit:?} after SIGTERM with a 3 s grace");
}

/// An element manager back from an outage of its feed sends its list of active alarms: the
/// alarms of that source it no longer lists are cleared, and the incident they explained
/// says so; an alarm the list names, or another source's, stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_list_resync_clears_what_its_source_no_longer_has() {
    use faultline::model::incident::TimelineKind;
    let broker = KafkaBroker::start();
    let config = config_on(&broker, "resync");
    let engine = Engine::start_with(&config, sample_topology()).await.expect("engine starts");
    let producer = big_producer(&broker);
    let topic = input(&config);
    let raises = [
        (
            "mrs-r1",
            br#"{"resource":"mrs-r1","alarm_type":"POWER","severity":"critical","source_system":"ems-south"}"#
                .as_slice(),
        ),
        (
            "par-r1/1/1",
            br#"{"resource":"par-r1/1/1","alarm_type":"LOS","severity":"major","source_system":"ems-south"}"#,
        ),
        (
            "lyo-r1/1/1",
            br#"{"resource":"lyo-r1/1/1","alarm_type":"LOS","severity":"major","source_system":"ems-north"}"#,
        ),
    ];
    for (key, raise) in raises {
        send_at(&producer, &topic, key, raise, None).await;
    }
    until(&engine, "three alarms raised", |s| s.raised == 3).await;

    // ems-south's list names par-r1/1/1 only: its feed lost the clear of mrs-r1's power alarm.
    let list = br#"{"resync":{"source_system":"ems-south","alarms":[
        {"resource":"par-r1/1/1","alarm_type":"LOS","severity":"major"}]}}"#;
    send_at(&producer, &topic, "ems-south", list, None).await;
    let stats = until(&engine, "the list applied", |s| s.cleared_by_resync == 1).await;
    assert_eq!((stats.active_alarms, stats.cleared, stats.refused), (2, 1, 0), "{stats:#?}");
    let active = engine
        .handle()
        .call(|ctx| ["mrs-r1", "par-r1/1/1", "lyo-r1/1/1"].map(|r| ctx.correlator.alarms().active_alarms(r).len()))
        .await
        .unwrap();
    assert_eq!(active, [0, 1, 1], "mrs-r1 cleared; the listed alarm and ems-north's stay");
    let said = engine
        .handle()
        .call(|ctx| {
            let incident = ctx.correlator.incidents().find(|i| i.root_causes.iter().any(|r| &**r == "mrs-r1")).cloned();
            incident.map(|i| i.timeline.iter().any(|e| e.kind == TimelineKind::Resync && e.text.contains("ems-south")))
        })
        .await
        .unwrap();
    assert_eq!(said, Some(true), "the incident of mrs-r1 says its alarm was cleared by the resync");
    engine.stop(Duration::from_secs(20)).await.expect("a clean stop");

    // The sources are part of the state: after a restart, an empty list of ems-north clears its alarm.
    let engine = Engine::start_with(&config, sample_topology()).await.expect("engine restarts");
    send_at(&producer, &topic, "ems-north", br#"{"resync":{"source_system":"ems-north","alarms":[]}}"#, None).await;
    let stats = until(&engine, "the empty list applied", |s| s.cleared_by_resync == 2).await;
    assert_eq!(stats.active_alarms, 1, "{stats:#?}");
    engine.stop(Duration::from_secs(20)).await.expect("a clean stop");
}

/// Last week's incident: once closed it leaves the core, and a SOC engineer still opens it
/// by id and finds it among the closed incidents of its customer and time, also after the
/// engine restarted (the history is read back from the incidents topic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_incidents_are_found_by_id_and_listed_across_a_restart() {
    use faultline::proto::v1;
    use v1::incident_service_client::IncidentServiceClient;
    let broker = KafkaBroker::start();
    let config = config_on(&broker, "history").with("correlation.reopen_window_secs", 1).unwrap();
    let engine = Engine::start_with(&config, sample_topology()).await.expect("engine starts");
    let producer = big_producer(&broker);
    let topic = input(&config);
    send_at(&producer, &topic, "mrs-r1", MRS_POWER_RAISE, None).await;
    until(&engine, "the alarm raised", |s| s.raised == 1).await;
    send_at(&producer, &topic, "mrs-r1", MRS_POWER_CLEAR, None).await;
    until(&engine, "the incident closed", |s| s.incidents.closed == 1).await;

    let closed = |customer: &str, closed_after: Option<i64>| v1::ListClosedIncidentsRequest {
        customer: customer.to_owned(),
        closed_after: closed_after.map(faultline::proto::timestamp),
        ..Default::default()
    };
    let check = |engine: &Engine| {
        let endpoint = format!("http://{}", engine.grpc_addr());
        async move {
            let mut client = IncidentServiceClient::connect(endpoint).await.unwrap();
            let deadline = Instant::now() + WAIT;
            // Read back from the topic after a restart: UNAVAILABLE until then.
            while let Err(status) = client.list_closed_incidents(closed("", None)).await {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                assert!(Instant::now() < deadline, "the history was never read: {status:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let incident = loop {
                match client.get_incident(v1::GetIncidentRequest { id: "INC-000001".into() }).await {
                    Ok(incident) => break incident.into_inner(),
                    Err(status)
                        if status.code() == tonic::Code::Unavailable || status.code() == tonic::Code::NotFound =>
                    {
                        assert!(Instant::now() < deadline, "the closed incident never showed: {status:?}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(status) => panic!("{status:?}"),
                }
            };
            assert_eq!(incident.state, v1::IncidentState::Closed as i32);
            assert_eq!(incident.root_causes, ["mrs-r1"]);
            assert!(incident.timeline.iter().any(|e| e.kind == "resolved"), "whole, with its timeline");
            let globex = client.list_closed_incidents(closed("cust-globex", None)).await.unwrap().into_inner();
            assert_eq!(globex.incidents.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["INC-000001"]);
            assert_eq!(globex.incidents[0].impacted_customer_count, 3, "a summary that says its lists' sizes");
            let acme = client.list_closed_incidents(closed("cust-acme", None)).await.unwrap().into_inner();
            assert!(acme.incidents.is_empty(), "ACME was not impacted");
            let later = faultline::clock::wall_clock() + 3_600_000;
            let none = client.list_closed_incidents(closed("", Some(later))).await.unwrap().into_inner();
            assert!(none.incidents.is_empty(), "nothing closed in the next hour");
        }
    };
    check(&engine).await;
    engine.stop(Duration::from_secs(20)).await.expect("a clean stop");

    let engine = Engine::start_with(&config, sample_topology()).await.expect("engine restarts");
    check(&engine).await;
    let missing = IncidentServiceClient::connect(format!("http://{}", engine.grpc_addr()))
        .await
        .unwrap()
        .get_incident(v1::GetIncidentRequest { id: "INC-000099".into() })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    engine.stop(Duration::from_secs(20)).await.expect("a clean stop");
}

/// An operator's client sends a note and an acknowledgement, hears nothing back (the
/// engine restarted in between) and sends both again with the same request ids: the
/// restarted engine answers them from what it restored, adding no second note and no new
/// version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_retries_after_a_restart_are_answered_not_applied_again() {
    use faultline::proto::v1;
    use v1::incident_service_client::IncidentServiceClient;
    let broker = KafkaBroker::start();
    let config = config_on(&broker, "retries");
    let engine = Engine::start_with(&config, sample_topology()).await.expect("engine starts");
    let producer = big_producer(&broker);
    send_at(&producer, &input(&config), "mrs-r1", MRS_POWER_RAISE, None).await;
    until(&engine, "the incident opened", |s| s.incidents.opened == 1).await;

    let note = v1::AddIncidentNoteRequest {
        id: "INC-000001".into(),
        author: "bob".into(),
        text: "power team called".into(),
        request_id: "bob-0001".into(),
    };
    let ack =
        v1::AcknowledgeIncidentRequest { id: "INC-000001".into(), by: "alice".into(), request_id: "alice-0001".into() };
    let mut client = IncidentServiceClient::connect(format!("http://{}", engine.grpc_addr())).await.unwrap();
    client.add_incident_note(note.clone()).await.expect("noted");
    let done = client.acknowledge_incident(ack.clone()).await.expect("acknowledged").into_inner();
    engine.stop(Duration::from_secs(20)).await.expect("a clean stop");

    let engine = Engine::start_with(&config, sample_topology()).await.expect("engine restarts");
    let mut client = IncidentServiceClient::connect(format!("http://{}", engine.grpc_addr())).await.unwrap();
    let noted = client.add_incident_note(note.clone()).await.expect("the retry is answered").into_inner();
    assert_eq!(noted.notes.len(), 1, "one note");
    let acked = client.acknowledge_incident(ack).await.expect("the retry is answered").into_inner();
    assert_eq!(acked.version, done.version, "nothing applied again");
    assert_eq!(acked.acknowledgement.map(|a| a.by).as_deref(), Some("alice"));
    // Another request is applied.
    let other = v1::AddIncidentNoteRequest { request_id: "bob-0002".into(), ..note };
    assert_eq!(client.add_incident_note(other).await.unwrap().into_inner().notes.len(), 2);
    engine.stop(Duration::from_secs(20)).await.expect("a clean stop");
}
