//! Against a real Apache Kafka broker (started by the harness from Maven Central jars, or
//! FAULTLINE_TEST_KAFKA): topics are created as Faultline needs them, alarms become
//! incidents, and input offsets are committed only after their effects are written.

mod common;

use common::broker::KafkaBroker;
use common::*;
use faultline::config::Config;
use faultline::proto::v1;
use faultline::runtime::Engine;
use prost::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::time::Duration;
use v1::incident_service_client::IncidentServiceClient;
use v1::topology_service_client::TopologyServiceClient;

const WAIT: Duration = Duration::from_secs(30);

fn committed(config: &Config, broker: &KafkaBroker, topic: &str) -> Vec<(i64, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", &config.kafka.group_id)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..config.kafka.partitions {
        list.add_partition(topic, p);
    }
    let offsets = consumer.committed_offsets(list, Duration::from_secs(10)).unwrap();
    (0..config.kafka.partitions)
        .map(|p| {
            let committed = match offsets.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => 0,
            };
            let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
            (committed, high)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_broker_carries_alarms_in_and_incidents_out() {
    let broker = KafkaBroker::start();
    let config = config_on(&broker, "basic");
    let engine = faultline::runtime::Engine::start_with(&config, sample_topology()).await.expect("engine starts");

    // The incidents topic was created compacted.
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", broker.bootstrap()).create().unwrap();
    let configs = admin
        .describe_configs(&[ResourceSpecifier::Topic(&config.kafka.incidents_topic)], &AdminOptions::new())
        .await
        .unwrap();
    let resource = configs.into_iter().next().unwrap().unwrap();
    assert_eq!(resource.get("cleanup.policy").and_then(|e| e.value.as_deref()), Some("compact"));

    let input = &config.kafka.inputs[0].topic;
    let producer = producer(broker.bootstrap());
    for (resource, severity) in [("mrs-r1/card-1", "critical"), ("mrs-r1/1/1", "major"), ("mrs-r1/card-1", "critical")]
    {
        let alarm = format!(r#"{{"resource":"{resource}","alarm_type":"FAIL","severity":"{severity}"}}"#);
        produce(&producer, input, resource, alarm.as_bytes()).await;
    }
    produce(&producer, input, "junk", b"not json").await;

    let incidents_topic = reader(broker.bootstrap(), &config.kafka.incidents_topic);
    let message = read_until(&incidents_topic, WAIT, |m| {
        v1::Incident::decode(payload(m)).is_ok_and(|i| i.symptom_alarms.len() == 1)
    })
    .await;
    let incident = v1::Incident::decode(payload(&message)).unwrap();
    assert_eq!(message.key(), Some(incident.id.as_bytes()));
    assert_eq!(incident.root_causes, vec!["mrs-r1/card-1"]);
    assert_eq!(incident.symptom_alarms[0].resource, "mrs-r1/1/1");

    let dead = reader(broker.bootstrap(), &config.kafka.dead_letter_topic);
    let refused = read_until(&dead, WAIT, |_| true).await;
    assert_eq!(payload(&refused), b"not json");

    let mut client = IncidentServiceClient::connect(format!("http://{}", engine.grpc_addr())).await.unwrap();
    let listed = client.list_incidents(v1::ListIncidentsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.total_size, 1);

    drop(producer);
    engine.stop(Duration::from_secs(20)).await.unwrap();
    // Every consumed message, refused ones included, was committed after its effects.
    for (partition, (committed, high)) in committed(&config, &broker, input).into_iter().enumerate() {
        assert_eq!(committed, high, "partition {partition}: committed offset behind the end");
    }
}

fn kcat(args: &[&str], input: Option<&str>) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("kcat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("this test needs kcat (Debian: apt-get install -y kcat): {e}"));
    let mut stdin = child.stdin.take().unwrap();
    if let Some(input) = input {
        stdin.write_all(input.as_bytes()).unwrap();
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "kcat {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_feeds_json_alarms_and_reads_json_incidents() {
    let broker = KafkaBroker::start();
    let config = config_on(&broker, "kcat").with("kafka.incidents_format", "json").unwrap();
    let engine = faultline::runtime::Engine::start_with(&config, sample_topology()).await.expect("engine starts");
    let input = config.kafka.inputs[0].topic.clone();

    // As in the README: one `key|json` line per alarm.
    let lines = "par-r1/1/1|{\"resource\":\"par-r1/1/1\",\"alarm_type\":\"LOS\",\"severity\":\"critical\"}\n\
                 par-r1/2/1|{\"resource\":\"par-r1/2/1\",\"alarm_type\":\"LOS\",\"severity\":\"critical\"}\n";
    let brokers = broker.bootstrap().to_owned();
    tokio::task::spawn_blocking(move || kcat(&["-b", &brokers, "-t", &input, "-P", "-K", "|"], Some(lines)))
        .await
        .unwrap();

    let deadline = std::time::Instant::now() + WAIT;
    let incident = loop {
        let brokers = broker.bootstrap().to_owned();
        let topic = config.kafka.incidents_topic.clone();
        let out = tokio::task::spawn_blocking(move || {
            kcat(&["-b", &brokers, "-t", &topic, "-C", "-o", "beginning", "-e", "-q", "-f", "%k\t%s\n"], None)
        })
        .await
        .unwrap();
        let outage = out.lines().filter_map(|l| l.split_once('\t')).find_map(|(key, value)| {
            let json: serde_json::Value = serde_json::from_str(value).expect("incidents are JSON");
            (json["id"] == key && json["impacted_services"][0]["impact"] == "down").then_some(json)
        });
        if let Some(json) = outage {
            break json;
        }
        assert!(std::time::Instant::now() < deadline, "no outage incident read back with kcat:\n{out}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(incident["state"], "open");
    assert_eq!(incident["priority"], "P2");
    assert_eq!(incident["impacted_services"][0]["service_id"], "cfs-acme-vpn");
    assert_eq!(incident["impacted_customers"][0]["sla_tier"], "gold");
    let mut roots: Vec<&str> =
        incident["root_causes"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    roots.sort();
    assert_eq!(roots, vec!["par-r1/1/1", "par-r1/2/1"]);
    engine.stop(Duration::from_secs(20)).await.unwrap();
}

/// Polls `list_incidents` until `wanted` holds for the page, or fails after the wait.
async fn until_listed(
    client: &mut IncidentServiceClient<tonic::transport::Channel>,
    wanted: impl Fn(&[v1::Incident]) -> bool,
) -> Vec<v1::Incident> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let page = client.list_incidents(v1::ListIncidentsRequest::default()).await.unwrap().into_inner();
        if wanted(&page.incidents) {
            return page.incidents;
        }
        assert!(std::time::Instant::now() < deadline, "incidents never as wanted: {:#?}", page.incidents);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_engine_takes_over_the_state_of_the_last_one() {
    let broker = KafkaBroker::start();
    let config = config_on(&broker, "takeover");
    let input = config.kafka.inputs[0].topic.clone();
    let producer = producer(broker.bootstrap());
    let alarm = |resource: &str, severity: &str| {
        format!(r#"{{"resource":"{resource}","alarm_type":"FAIL","severity":"{severity}"}}"#)
    };

    // The first engine sees a card fail under its ports, and an operator takes it on.
    let first = Engine::start_with(&config, sample_topology()).await.expect("engine starts");
    for (resource, severity) in [("mrs-r1/card-1", "critical"), ("mrs-r1/1/1", "major"), ("mrs-r1/1/2", "major")] {
        produce(&producer, &input, resource, alarm(resource, severity).as_bytes()).await;
    }
    produce(&producer, &input, "mrs-r1/card-1", alarm("mrs-r1/card-1", "critical").as_bytes()).await;
    let mut incidents = IncidentServiceClient::connect(format!("http://{}", first.grpc_addr())).await.unwrap();
    until_listed(&mut incidents, |list| list.len() == 1 && list[0].symptom_alarms.len() == 2).await;
    let by = |id: &str| v1::AcknowledgeIncidentRequest { id: id.into(), by: "alice".into(), ..Default::default() };
    incidents.acknowledge_incident(by("INC-000001")).await.unwrap();
    let note = v1::AddIncidentNoteRequest {
        id: "INC-000001".into(),
        author: "alice".into(),
        text: "truck rolled".into(),
        ..Default::default()
    };
    let before = incidents.add_incident_note(note).await.unwrap().into_inner();
    let mut topology = TopologyServiceClient::connect(format!("http://{}", first.grpc_addr())).await.unwrap();
    let card = |id: &str| v1::GetCiRequest { id: id.into() };
    let card_before = topology.get_ci(card("mrs-r1/card-1")).await.unwrap().into_inner();
    assert_eq!(card_before.active_alarms[0].tally, 2, "the repeat is folded");
    first.stop(Duration::from_secs(20)).await.unwrap();

    // A second engine, sharing nothing with the first but the brokers, carries on.
    let second = Engine::start_with(&config, sample_topology()).await.expect("engine starts");
    assert_eq!((second.restored().active_alarms, second.restored().incidents), (3, 1));
    let mut incidents = IncidentServiceClient::connect(format!("http://{}", second.grpc_addr())).await.unwrap();
    let after = incidents.get_incident(v1::GetIncidentRequest { id: "INC-000001".into() }).await.unwrap().into_inner();
    assert_eq!(after, before, "the incident, its acknowledgement and its note, as they were");
    let mut topology = TopologyServiceClient::connect(format!("http://{}", second.grpc_addr())).await.unwrap();
    let card_after = topology.get_ci(card("mrs-r1/card-1")).await.unwrap().into_inner();
    assert_eq!(card_after, card_before, "the card's state, root causes and live tally");

    // Its clears resolve the same incident: the bookkeeping came back too.
    for resource in ["mrs-r1/1/1", "mrs-r1/1/2", "mrs-r1/card-1"] {
        produce(&producer, &input, resource, alarm(resource, "cleared").as_bytes()).await;
    }
    let list = until_listed(&mut incidents, |list| {
        list.iter().any(|i| i.id == "INC-000001" && i.state == v1::IncidentState::Resolved as i32)
    })
    .await;
    assert_eq!(list.len(), 1, "no second incident for the same fault");
    // The id sequence continues where the first engine left it.
    produce(&producer, &input, "par-r1", alarm("par-r1", "critical").as_bytes()).await;
    let list = until_listed(&mut incidents, |list| list.len() == 2).await;
    assert_eq!(list[1].id, "INC-000002");
    drop(producer);
    second.stop(Duration::from_secs(20)).await.unwrap();
}

/// `faultline bench` as a capacity planner runs it, scaled down: a storm through a real
/// broker, raw and end-to-end rates, and latency figures from real gRPC subscribers.
#[test]
fn bench_measures_throughput_against_raw_consumption_and_latency_to_subscribers() {
    let broker = KafkaBroker::start();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["bench", "--brokers", broker.bootstrap(), "--cis", "2000", "--count", "3000"])
        .args(["--rate", "400", "--duration", "4s", "--warmup", "1s", "--subscribers", "2"])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let figure = |label: &str| -> f64 {
        let line = stdout.lines().find(|l| l.contains(label)).unwrap_or_else(|| panic!("no `{label}`:\n{stdout}"));
        line.split(label).nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap()
    };
    assert!(figure("raw rdkafka consumption") > 0.0, "{stdout}");
    assert!(figure("faultline end to end") > 0.0, "{stdout}");
    assert!(stdout.contains("2000 CIs") && stdout.contains("3000 mixed alarms"), "conditions printed: {stdout}");
    assert!(figure("alarms sent") == 1600.0, "400/s for 4 s: {stdout}");
    assert!(figure("incident changes timed") > 0.0, "subscribers saw changes: {stdout}");
    let per_change = stdout.split("a subscriber), ").nth(1).and_then(|rest| rest.split_whitespace().next());
    assert!(per_change.and_then(|kb| kb.parse::<f64>().ok()).is_some_and(|kb| kb > 0.0), "bytes received: {stdout}");
    let p99 = figure("p99");
    assert!(p99 > 0.0 && p99 < 60_000.0, "a latency in milliseconds: {stdout}");
    // The baseline beside it: a plain consumer of the same topic timed the same alarms.
    let alone = stdout.lines().find(|l| l.contains("Kafka alone")).unwrap_or_else(|| panic!("no baseline:\n{stdout}"));
    let alone_p50: f64 = alone.split("p50").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!(alone_p50 > 0.0 && alone_p50 < 60_000.0, "the plain consumer timed alarms: {stdout}");
    // Every alarm produced went through the engine.
    assert!(stdout.contains("engine: 4600 alarms in"), "{stdout}");
}

/// The CMDB's topic and change management over a real broker: a window from the changes
/// topic suppresses a card's impact, a service record waits for its port, and a second
/// engine carries both on (window active, impact suppressed, record held) until the port
/// comes and the window ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_records_and_maintenance_windows_survive_a_takeover_on_a_real_broker() {
    use v1::maintenance_service_client::MaintenanceServiceClient;
    let broker = KafkaBroker::start();
    let config = config_on(&broker, "cmdb");
    let (input, topology_topic, changes_topic) =
        (config.kafka.inputs[0].topic.clone(), config.kafka.topology_topic.clone(), config.kafka.changes_topic.clone());
    let producer = producer(broker.bootstrap());
    let first = Engine::start_with(&config, sample_topology()).await.expect("engine starts");

    // Both topics created compacted; the topology topic seeded with every CI.
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", broker.bootstrap()).create().unwrap();
    for topic in [&topology_topic, &changes_topic] {
        let configs = admin.describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new()).await.unwrap();
        let resource = configs.into_iter().next().unwrap().unwrap();
        assert_eq!(resource.get("cleanup.policy").and_then(|e| e.value.as_deref()), Some("compact"), "{topic}");
    }
    let seeded: i64 = committed(&config, &broker, &topology_topic).iter().map(|&(_, high)| high).sum();
    assert_eq!(seeded, sample_topology().len() as i64);

    let now = faultline::clock::wall_clock();
    let window = format!(
        r#"{{"reason":"card swap","cis":["mrs-r1/card-1"],"start":{},"end":{},"by":"cab"}}"#,
        now - 1_000,
        now + 3_600_000
    );
    produce(&producer, &changes_topic, "CHG0050001", window.as_bytes()).await;
    let service = r#"{"id":"cfs-rb-new","class":"cfs","customer":"cust-acme","depends_on":["par-r1/7/7"]}"#;
    produce(&producer, &topology_topic, "cfs-rb-new", service.as_bytes()).await;
    let card = r#"{"resource":"mrs-r1/card-1","alarm_type":"FAIL","severity":"critical"}"#;
    produce(&producer, &input, "mrs-r1/card-1", card.as_bytes()).await;

    let endpoint = format!("http://{}", first.grpc_addr());
    let mut maintenance = MaintenanceServiceClient::connect(endpoint.clone()).await.unwrap();
    let mut topology = TopologyServiceClient::connect(endpoint).await.unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let suppressed = maintenance.list_suppressed_impacts(v1::ListSuppressedImpactsRequest {}).await.unwrap();
        let version = topology.get_topology_version(v1::GetTopologyVersionRequest {}).await.unwrap().into_inner();
        if suppressed.into_inner().impacts.len() == 3 && version.held_changes == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "window, alarm and held record never all taken");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.stop(Duration::from_secs(20)).await.unwrap();

    let second = Engine::start_with(&config, sample_topology()).await.expect("engine starts");
    let endpoint = format!("http://{}", second.grpc_addr());
    let mut maintenance = MaintenanceServiceClient::connect(endpoint.clone()).await.unwrap();
    let mut topology = TopologyServiceClient::connect(endpoint.clone()).await.unwrap();
    let mut incidents = IncidentServiceClient::connect(endpoint).await.unwrap();
    let window = maintenance
        .get_maintenance_window(v1::GetMaintenanceWindowRequest { change: "CHG0050001".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(window.state, v1::MaintenanceState::Active as i32);
    let suppressed = maintenance.list_suppressed_impacts(v1::ListSuppressedImpactsRequest {}).await.unwrap();
    assert_eq!(suppressed.into_inner().impacts.len(), 3, "still suppressed after the takeover");
    let version = topology.get_topology_version(v1::GetTopologyVersionRequest {}).await.unwrap().into_inner();
    assert_eq!((version.held_changes, version.held[0].waits_for.as_str()), (1, "par-r1/7/7"));
    let listed = incidents.list_incidents(v1::ListIncidentsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.total_size, 0);

    // The port arrives: the held service applies. The window ends: the card's incident opens.
    let port = r#"{"id":"par-r1/7/7","class":"port","depends_on":["par-r1/card-1"]}"#;
    produce(&producer, &topology_topic, "par-r1/7/7", port.as_bytes()).await;
    let deadline = std::time::Instant::now() + WAIT;
    while topology.get_ci(v1::GetCiRequest { id: "cfs-rb-new".into() }).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the held service never applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    maintenance
        .end_maintenance_window(v1::EndMaintenanceWindowRequest { change: "CHG0050001".into(), by: "bob".into() })
        .await
        .unwrap();
    let list = until_listed(&mut incidents, |list| list.len() == 1).await;
    assert!(list[0].timeline.iter().any(|e| e.kind == "maintenance" && e.text.contains("CHG0050001")));
    drop(producer);
    second.stop(Duration::from_secs(20)).await.unwrap();
}
