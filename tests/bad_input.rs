//! Bad input, one case per test: each is dead-lettered with its reason or handled as
//! design.md says, the engine never panics, and its partition never stalls (a good alarm
//! sent after the bad input is always correlated).

mod common;

use common::*;
use faultline::model::alarm::{Alarm, Severity};
use faultline::proto::{self, v1};
use faultline::runtime::Engine;
use prost::Message as _;
use rdkafka::Message;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Headers;
use rdkafka::producer::FutureProducer;
use std::time::{Duration, Instant};
use v1::incident_service_client::IncidentServiceClient;
use v1::topology_service_client::TopologyServiceClient;

const WAIT: Duration = Duration::from_secs(30);
const VES_TOPIC: &str = "faultline.alarms.ves";

/// An engine on the embedded cluster with protobuf, JSON and VES inputs.
struct Rig {
    engine: Engine,
    producer: FutureProducer,
    dead: BaseConsumer,
}

impl Rig {
    async fn start() -> Rig {
        let inputs = serde_json::json!([
            {"topic": "faultline.alarms", "format": "protobuf"},
            {"topic": JSON_TOPIC, "format": "json"},
            {"topic": VES_TOPIC, "format": "ves"},
        ]);
        let config = test_config().with("kafka.inputs", inputs).unwrap();
        let engine = start(&config).await;
        let producer = producer(engine.brokers());
        let dead = reader(engine.brokers(), "faultline.dead-letter");
        Rig { engine, producer, dead }
    }

    async fn send(&self, topic: &str, key: &str, payload: &[u8]) {
        produce(&self.producer, topic, key, payload).await;
    }

    /// The next dead letter: its reason header and its payload.
    async fn refused(&self) -> (String, Vec<u8>) {
        let message = read_until(&self.dead, WAIT, |_| true).await;
        let reason = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "faultline.reason").and_then(|h| h.value))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .expect("a reason header");
        (reason, payload(&message).to_vec())
    }

    async fn stats(&self) -> faultline::correlate::Stats {
        self.engine.handle().call(|ctx| ctx.stats()).await.unwrap()
    }

    /// Waits until `wanted` holds of the engine's counters.
    async fn until(&self, wanted: impl Fn(&faultline::correlate::Stats) -> bool) -> faultline::correlate::Stats {
        let deadline = Instant::now() + WAIT;
        loop {
            let stats = self.stats().await;
            if wanted(&stats) {
                return stats;
            }
            assert!(Instant::now() < deadline, "counters never as wanted: {stats:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends a good alarm and waits for the incident it opens: the partition still flows.
    async fn still_flows(&self, topic: &str) {
        let good = br#"{"resource":"mrs-r1","alarm_type":"POWER","severity":"critical"}"#;
        self.send(topic, "mrs-r1", good).await;
        let mut client = IncidentServiceClient::connect(format!("http://{}", self.engine.grpc_addr())).await.unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            let list = client.list_incidents(v1::ListIncidentsRequest::default()).await.unwrap().into_inner();
            if list.incidents.iter().any(|i| i.root_causes == ["mrs-r1"]) {
                return;
            }
            assert!(Instant::now() < deadline, "the good alarm after the bad input was never correlated");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        drop(self.producer);
        drop(self.dead);
        self.engine.stop(Duration::from_secs(10)).await.expect("a clean stop");
    }
}

fn json_alarm(fields: &str) -> Vec<u8> {
    format!("{{{fields}}}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_protobuf() {
    let rig = Rig::start().await;
    let mut bytes = proto::alarm_to_proto(&Alarm::raise("par-r1/1/1", "LOS", Severity::Major, 0)).encode_to_vec();
    bytes.truncate(bytes.len() / 2);
    rig.send("faultline.alarms", "par-r1/1/1", &bytes).await;
    assert_eq!(rig.refused().await, ("undecodable".to_owned(), bytes));
    rig.still_flows(JSON_TOPIC).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json() {
    let rig = Rig::start().await;
    for (bad, reason) in [
        (&b"{\"resource\": \"par-r1\", "[..], "undecodable"),
        (&br#"["not", "an", "object"]"#[..], "undecodable"),
        (&br#"{"resource":"par-r1","alarm_type":"LOS","severity":"apocalyptic"}"#[..], "invalid"),
        (&br#"{"resource":"par-r1","alarm_type":"LOS","severity":"major","event_time":"yesterday"}"#[..], "invalid"),
    ] {
        rig.send(JSON_TOPIC, "par-r1", bad).await;
        assert_eq!(rig.refused().await, (reason.to_owned(), bad.to_vec()));
    }
    rig.still_flows(JSON_TOPIC).await;
    rig.stop().await;
}

/// VES through Kafka: the project's fixtures always, and the real ONAP samples when they are
/// beside the checkout (required under `CI=true`). The `*invalid*` files reach the
/// dead-letter topic, the valid ones are correlated: each fixture lifecycle (raise, severity
/// change, clear of one alarm, in sequence) is applied as one alarm's, nothing taken for a
/// retransmission, and a change sent again after the clear is stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_ves() {
    /// The VES message files of `dir`, by name: (bytes, alarms they decode to, or None).
    fn samples(dir: &std::path::Path) -> Vec<(Vec<u8>, Option<usize>)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with("CommonEventFormat"))
            .collect();
        files.sort();
        let decoded = |bytes: &[u8]| {
            let mut out = Vec::new();
            let format = faultline::config::AlarmFormat::Ves;
            faultline::decode::decode(format, bytes, 0, 4096, &mut out).ok().map(|_| out.len())
        };
        files
            .into_iter()
            .map(|path| {
                let bytes = std::fs::read(&path).unwrap();
                let alarms = decoded(&bytes);
                assert_eq!(alarms.is_none(), path.to_string_lossy().contains("invalid"), "{}", path.display());
                (bytes, alarms)
            })
            .collect()
    }
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixtures = manifest.join("tests/fixtures/ves");
    let own = samples(&fixtures);
    let shared_dir = manifest.join("../shared/formats/ves");
    let shared = if shared_dir.is_dir() {
        Some(samples(&shared_dir))
    } else {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "CI=true and the shared ONAP VES samples are missing: expected {}", shared_dir.display());
        eprintln!("skipped: no shared ONAP VES samples at {} (with CI=true this fails)", shared_dir.display());
        None
    };

    let invalid = |files: &[(Vec<u8>, Option<usize>)]| files.iter().filter(|(_, a)| a.is_none()).count() as u64;
    let alarms = |files: &[(Vec<u8>, Option<usize>)]| files.iter().filter_map(|(_, a)| *a).sum::<usize>() as u64;

    let rig = Rig::start().await;
    // Sends a set of files and waits for all of it: dead letters (the original bytes, reason
    // `invalid_ves`) for the invalid ones, alarms applied for the others, until the counters
    // reach `totals` (refused, alarms in). One key for every message: one partition, so that
    // each lifecycle arrives in its order.
    let play = async |files: &[(Vec<u8>, Option<usize>)], totals: (u64, u64)| {
        for (bytes, _) in files {
            rig.send(VES_TOPIC, "ves-samples", bytes).await;
        }
        let originals: Vec<_> = files.iter().filter(|(_, a)| a.is_none()).map(|(b, _)| b).collect();
        for _ in 0..originals.len() {
            let (reason, original) = rig.refused().await;
            assert_eq!(reason, "invalid_ves");
            assert!(originals.contains(&&original), "a dead letter is the original file");
        }
        rig.until(|s| (s.refused, s.alarms_in) == totals).await
    };

    assert_eq!((invalid(&own), alarms(&own)), (10, 10), "the fixtures in tests/fixtures/ves");
    let stats = play(&own, (10, 10)).await;
    let counters = |s: &faultline::correlate::Stats| {
        (s.raised, s.severity_changes, s.cleared, s.duplicate_notifications, s.stale, s.active_alarms)
    };
    // In file order: the batch's card fault raised; the VES lifecycle raised, changed and
    // cleared; ems-nice-1's alarm list, taken after that clear, says the LOS is active again
    // (raised), adds a fan fault, and clears the card fault it no longer lists; the 3GPP
    // lifecycle raised, changed and cleared; then oam-nce-1's notifyAlarmListRebuilt
    // (skipped) and the 3GPP raise again, stale after its clear.
    assert_eq!(counters(&stats), (5, 2, 3, 0, 1, 2), "the lifecycles in order, the list applied");
    assert_eq!(stats.cleared_by_resync, 1, "the card fault ems-nice-1 no longer lists");
    // Each lifecycle's severity change again, late: older than its alarm's clear, it undoes nothing.
    let late = ["fault_2_severity_change.json", "stnd_2_changed_alarm.json"]
        .map(|name| (std::fs::read(fixtures.join(name)).unwrap(), Some(1)));
    let stats = play(&late, (10, 12)).await;
    assert_eq!(counters(&stats), (5, 2, 3, 0, 3, 2), "the late changes are stale");
    if let Some(shared) = shared {
        let valid = shared.len() as u64 - invalid(&shared);
        assert_eq!((invalid(&shared), valid), (3, 5), "the shared VES samples");
        assert!(alarms(&shared) > valid, "the batches carry several alarms each");
        play(&shared, (10 + 3, 12 + alarms(&shared))).await;
    }
    rig.still_flows(JSON_TOPIC).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_size_limit() {
    let rig = Rig::start().await;
    // The test configuration allows 4096 bytes.
    let padded = json_alarm(&format!(
        r#""resource":"par-r1","alarm_type":"LOS","severity":"major","text":"{}""#,
        "x".repeat(5000)
    ));
    rig.send(JSON_TOPIC, "par-r1", &padded).await;
    assert_eq!(rig.refused().await, ("oversized".to_owned(), padded));
    rig.still_flows(JSON_TOPIC).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_empty_resource() {
    let rig = Rig::start().await;
    let missing = json_alarm(r#""alarm_type":"LOS","severity":"major""#);
    let blank = json_alarm(r#""resource":"   ","alarm_type":"LOS","severity":"major""#);
    let empty_protobuf = proto::alarm_to_proto(&Alarm::raise("", "LOS", Severity::Major, 0)).encode_to_vec();
    rig.send(JSON_TOPIC, "", &missing).await;
    assert_eq!(rig.refused().await, ("missing_resource".to_owned(), missing));
    rig.send(JSON_TOPIC, "", &blank).await;
    assert_eq!(rig.refused().await, ("missing_resource".to_owned(), blank));
    rig.send("faultline.alarms", "", &empty_protobuf).await;
    assert_eq!(rig.refused().await, ("missing_resource".to_owned(), empty_protobuf));
    rig.still_flows(JSON_TOPIC).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_resource_is_kept_and_reported() {
    let rig = Rig::start().await;
    let unknown = json_alarm(r#""resource":"lab-box-7","alarm_type":"LOS","severity":"critical""#);
    rig.send(JSON_TOPIC, "lab-box-7", &unknown).await;
    let stats = rig.until(|s| s.alarms_in == 1).await;
    assert_eq!(
        (stats.active_alarms, stats.unmapped_resources, stats.refused),
        (1, 1, 0),
        "kept, reported, not refused"
    );
    let mut topology = TopologyServiceClient::connect(format!("http://{}", rig.engine.grpc_addr())).await.unwrap();
    let status = topology.get_ci(v1::GetCiRequest { id: "lab-box-7".into() }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert!(status.message().contains("lab-box-7"), "{}", status.message());
    // Its clear finds it: the alarm was tracked all along.
    rig.send(JSON_TOPIC, "lab-box-7", &json_alarm(r#""resource":"lab-box-7","alarm_type":"LOS","severity":"cleared""#))
        .await;
    let stats = rig.until(|s| s.alarms_in == 2).await;
    assert_eq!((stats.cleared, stats.active_alarms, stats.unmapped_resources), (1, 0, 0));
    rig.still_flows(JSON_TOPIC).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clear_without_its_raise() {
    let rig = Rig::start().await;
    rig.send(JSON_TOPIC, "par-r1/1/1", &json_alarm(r#""resource":"par-r1/1/1","alarm_type":"LOS","cleared":true"#))
        .await;
    let stats = rig.until(|s| s.alarms_in == 1).await;
    assert_eq!((stats.clears_without_raise, stats.refused, stats.incidents.opened), (1, 0, 0));
    rig.still_flows(JSON_TOPIC).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_times_out_of_order_or_far_in_the_future() {
    let rig = Rig::start().await;
    let at = |time: &str, text: &str| {
        json_alarm(&format!(
            r#""resource":"par-r1/1/1","alarm_type":"LOS","severity":"major","event_time":"{time}","text":"{text}""#
        ))
    };
    rig.send(JSON_TOPIC, "par-r1/1/1", &at("2026-11-20T10:00:00Z", "first")).await;
    rig.send(JSON_TOPIC, "par-r1/1/1", &at("2026-11-20T09:00:00Z", "an hour older")).await;
    rig.send(JSON_TOPIC, "par-r1/1/1", &at("2100-01-01T00:00:00Z", "clock far ahead")).await;
    let stats = rig.until(|s| s.alarms_in == 3).await;
    assert_eq!(stats.stale, 1, "the notification an hour older than the one applied is stale");
    let mut topology = TopologyServiceClient::connect(format!("http://{}", rig.engine.grpc_addr())).await.unwrap();
    let port = topology.get_ci(v1::GetCiRequest { id: "par-r1/1/1".into() }).await.unwrap().into_inner();
    let alarm = &port.active_alarms[0];
    let seconds = |t: &Option<prost_types::Timestamp>| t.as_ref().unwrap().seconds;
    assert_eq!(alarm.tally, 2, "the first and the clamped one fold into the alarm; the stale one does not");
    assert_eq!(seconds(&alarm.raised_time), 1_795_168_800, "raised at the first event time");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let last_seen = seconds(&alarm.last_seen_time);
    assert!((last_seen - now).abs() < 600, "the far-future time was clamped to the record's: {last_seen}");
    rig.still_flows(JSON_TOPIC).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_notification_ids() {
    let rig = Rig::start().await;
    let notification = |id: &str| {
        json_alarm(&format!(
            r#""resource":"par-r1/1/1","alarm_type":"LOS","severity":"major","notification_id":"{id}""#
        ))
    };
    for id in ["ems-1", "ems-1", "ems-2", "ems-2", "ems-2"] {
        rig.send(JSON_TOPIC, "par-r1/1/1", &notification(id)).await;
    }
    let stats = rig.until(|s| s.alarms_in == 5).await;
    assert_eq!((stats.raised, stats.duplicates, stats.duplicate_notifications), (1, 1, 3));
    let mut topology = TopologyServiceClient::connect(format!("http://{}", rig.engine.grpc_addr())).await.unwrap();
    let port = topology.get_ci(v1::GetCiRequest { id: "par-r1/1/1".into() }).await.unwrap().into_inner();
    assert_eq!(port.active_alarms[0].tally, 2, "a retransmission is not a repeat");
    rig.still_flows(JSON_TOPIC).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_poison_message_ten_thousand_times() {
    let rig = Rig::start().await;
    let poison = b"\x00\x01poison\xff";
    let sends: Vec<_> = (0..10_000)
        .map(|_| {
            let record = rdkafka::producer::FutureRecord::to(JSON_TOPIC).key("poison").payload(&poison[..]);
            rig.producer.send_result(record).expect("room in the producer queue")
        })
        .collect();
    for send in sends {
        send.await.unwrap().unwrap();
    }
    rig.still_flows(JSON_TOPIC).await;
    let stats = rig.until(|s| s.refused == 10_000).await;
    assert_eq!(stats.alarms_in, 1, "only the good alarm was applied");
    let mut dead = 0;
    while dead < 10_000 {
        let (reason, payload) = rig.refused().await;
        assert_eq!((reason.as_str(), payload.as_slice()), ("undecodable", &poison[..]));
        dead += 1;
    }
    rig.stop().await;
}

/// One alarm's lifecycle as an element manager sends it, in JSON and in protobuf: a raise,
/// a severity change and a clear sharing one notification id with increasing sequences.
/// The change applies (the port goes from degraded to down), the same notification sent
/// again is a retransmission, an older one is stale and undoes nothing, the clear clears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lifecycle_under_one_notification_id_applies_in_order_in_json_and_protobuf() {
    let rig = Rig::start().await;
    let mut topology = TopologyServiceClient::connect(format!("http://{}", rig.engine.grpc_addr())).await.unwrap();
    let notification = |port: &str, severity: Option<Severity>, sequence: u64| {
        let mut alarm = match severity {
            Some(severity) => Alarm::raise(port, "LOS", severity, 1_795_168_800_000 + sequence as i64),
            None => Alarm::clear(port, "LOS", 1_795_168_800_000 + sequence as i64),
        };
        alarm.notification_id = format!("{port}/LOS");
        alarm.sequence = sequence;
        alarm
    };
    let json = |alarm: &Alarm| {
        let severity =
            if alarm.cleared { "cleared".to_owned() } else { format!("{:?}", alarm.severity).to_lowercase() };
        json_alarm(&format!(
            r#""resource":"{}","alarm_type":"LOS","severity":"{severity}","notification_id":"{}","sequence":{}"#,
            alarm.resource, alarm.notification_id, alarm.sequence
        ))
    };
    let protobuf = |alarm: &Alarm| proto::alarm_to_proto(alarm).encode_to_vec();
    type Encode<'a> = &'a dyn Fn(&Alarm) -> Vec<u8>;
    let formats: [(&str, &str, Encode<'_>); 2] =
        [(JSON_TOPIC, "par-r1/1/1", &json), ("faultline.alarms", "par-r1/2/1", &protobuf)];
    for (round, (topic, port, encode)) in formats.into_iter().enumerate() {
        let sent = |n: u64| 5 * round as u64 + n;
        for (severity, sequence) in [(Some(Severity::Minor), 1), (Some(Severity::Critical), 2)] {
            rig.send(topic, port, &encode(&notification(port, severity, sequence))).await;
        }
        // Sent again, and an older one late.
        rig.send(topic, port, &encode(&notification(port, Some(Severity::Critical), 2))).await;
        rig.send(topic, port, &encode(&notification(port, Some(Severity::Minor), 1))).await;
        let stats = rig.until(|s| s.alarms_in == sent(4)).await;
        let n = round as u64 + 1;
        assert_eq!(
            (stats.raised, stats.severity_changes, stats.duplicate_notifications, stats.stale),
            (n, n, n, n),
            "{topic}: raised, changed, a retransmission, a stale one"
        );
        let ci = topology.get_ci(v1::GetCiRequest { id: port.to_string() }).await.unwrap().into_inner();
        assert_eq!(ci.own_state, v1::ServiceState::Down as i32, "{topic}: the change to critical took the port down");
        assert_eq!(
            ci.active_alarms[0].severity,
            v1::Severity::Critical as i32,
            "{topic}: not lowered by the stale one"
        );
        rig.send(topic, port, &encode(&notification(port, None, 3))).await;
        let stats = rig.until(|s| s.alarms_in == sent(5)).await;
        assert_eq!(stats.cleared, n, "{topic}: the clear applied");
        let ci = topology.get_ci(v1::GetCiRequest { id: port.to_string() }).await.unwrap().into_inner();
        assert!(ci.active_alarms.is_empty(), "{topic}: cleared");
    }
    rig.still_flows(JSON_TOPIC).await;
    rig.stop().await;
}
