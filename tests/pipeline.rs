//! End to end on the embedded Kafka cluster: alarms produced to the input topics come out as
//! incidents on the compacted incidents topic and on a gRPC subscriber; operator actions over
//! gRPC show up on both; undecodable input goes to the dead-letter topic with its reason.

mod common;

use common::*;
use faultline::model::alarm::{Alarm, Severity};
use faultline::proto::{self, v1};
use prost::Message as _;
use rdkafka::Message;
use rdkafka::message::Headers;
use std::time::Duration;
use tonic::Code;
use v1::incident_service_client::IncidentServiceClient;
use v1::topology_service_client::TopologyServiceClient;

const WAIT: Duration = Duration::from_secs(20);

type Changes = tonic::Streaming<v1::SubscribeIncidentsResponse>;

/// The next change on the stream that satisfies `wanted`.
async fn next_change(
    stream: &mut Changes,
    mut wanted: impl FnMut(&v1::SubscribeIncidentsResponse) -> bool,
) -> v1::Incident {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let change = stream.message().await.expect("stream healthy").expect("stream open");
            if wanted(&change) {
                return change.incident.expect("a change carries its incident");
            }
        }
    })
    .await;
    found.expect("the wanted change arrived in time")
}

fn is(change: &v1::SubscribeIncidentsResponse, kind: v1::ChangeKind) -> bool {
    change.kind == kind as i32
}

fn services(incident: &v1::Incident) -> Vec<(String, i32)> {
    incident.impacted_services.iter().map(|s| (s.service_id.clone(), s.impact)).collect()
}

/// The incident snapshot on the incidents topic that satisfies `wanted`.
async fn on_topic(
    reader: &rdkafka::consumer::BaseConsumer,
    id: &str,
    wanted: impl Fn(&v1::Incident) -> bool,
) -> v1::Incident {
    let message = read_until(reader, WAIT, |m| {
        m.key() == Some(id.as_bytes()) && v1::Incident::decode(payload(m)).is_ok_and(|i| wanted(&i))
    })
    .await;
    v1::Incident::decode(payload(&message)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_become_incidents_on_kafka_and_grpc_and_operators_act_on_both() {
    let config = test_config();
    let engine = start(&config).await;
    let endpoint = format!("http://{}", engine.grpc_addr());
    let mut incidents = IncidentServiceClient::connect(endpoint.clone()).await.unwrap();
    let mut stream = incidents.subscribe(v1::SubscribeIncidentsRequest::default()).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(is(&first, v1::ChangeKind::SnapshotComplete), "an empty engine sends only the snapshot marker");

    // One end of fibre route A reports in protobuf, the other in JSON on its own topic.
    let producer = producer(engine.brokers());
    let raise = proto::alarm_to_proto(&Alarm::raise("par-r1/1/1", "LOS", Severity::Critical, 1_000)).encode_to_vec();
    produce(&producer, "faultline.alarms", "par-r1/1/1", &raise).await;
    let json =
        br#"{"resource":"lyo-r1/1/1","alarm_type":"LOS","severity":"critical","event_time":"2026-11-22T10:00:00Z"}"#;
    produce(&producer, JSON_TOPIC, "lyo-r1/1/1", json).await;

    let opened = next_change(&mut stream, |c| is(c, v1::ChangeKind::Opened)).await;
    assert_eq!(opened.id, "INC-000001");
    assert_eq!(services(&opened), vec![("cfs-acme-vpn".to_owned(), v1::ServiceState::Degraded as i32)]);
    let both = next_change(&mut stream, |c| c.incident.as_ref().is_some_and(|i| i.root_causes.len() == 2)).await;
    let mut roots = both.root_causes.clone();
    roots.sort();
    assert_eq!(roots, vec!["lyo-r1/1/1", "par-r1/1/1"]);
    assert_eq!(both.priority, v1::Priority::P3 as i32, "degraded gold service");

    let incidents_topic = reader(engine.brokers(), "faultline.incidents");
    let snapshot = on_topic(&incidents_topic, "INC-000001", |i| i.root_causes.len() == 2).await;
    assert_eq!(snapshot.state, v1::IncidentState::Open as i32);

    // The topology service explains the state and the impact.
    let mut topology = TopologyServiceClient::connect(endpoint.clone()).await.unwrap();
    let link = topology.get_ci(v1::GetCiRequest { id: "link-par-lyo-a".into() }).await.unwrap().into_inner();
    assert_eq!(link.state, v1::ServiceState::Down as i32);
    let explained: Vec<&[String]> = link.root_causes.iter().map(|r| r.path.as_slice()).collect();
    assert!(explained.contains(&&["link-par-lyo-a".to_owned(), "par-r1/1/1".to_owned()][..]), "{explained:?}");
    let impact =
        topology.get_impact(v1::GetImpactRequest { resource: "par-r1/1/1".into() }).await.unwrap().into_inner();
    let impacted: Vec<&str> = impact.services.iter().map(|s| s.service_id.as_str()).collect();
    assert_eq!(impacted, vec!["rfs-par-lyo-transport", "cfs-acme-vpn"]);
    assert_eq!(impact.customers[0].customer_id, "cust-acme");
    let missing = topology.get_ci(v1::GetCiRequest { id: "no-such-ci".into() }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // Acknowledge, annotate and resolve: each shows on the stream and on the topic.
    let acked = incidents
        .acknowledge_incident(v1::AcknowledgeIncidentRequest {
            id: "INC-000001".into(),
            by: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acked.state, v1::IncidentState::Acknowledged as i32);
    let streamed = next_change(&mut stream, |c| is(c, v1::ChangeKind::Acknowledged)).await;
    assert_eq!(streamed.acknowledgement.unwrap().by, "alice");
    on_topic(&incidents_topic, "INC-000001", |i| i.state == v1::IncidentState::Acknowledged as i32).await;

    let note = v1::AddIncidentNoteRequest {
        id: "INC-000001".into(),
        author: "bob".into(),
        text: "splice crew sent".into(),
        request_id: "bob-7f3a".into(),
    };
    let noted = incidents.add_incident_note(note.clone()).await.unwrap().into_inner();
    assert_eq!(noted.notes[0].text, "splice crew sent");
    // The client did not hear back and sends it again with the same request id: one note.
    let again = incidents.add_incident_note(note.clone()).await.unwrap().into_inner();
    assert_eq!((again.notes.len(), again.version), (1, noted.version), "a retry is answered, not applied");
    let other = v1::AddIncidentNoteRequest { request_id: "bob-7f3b".into(), ..note };
    assert_eq!(incidents.add_incident_note(other).await.unwrap().into_inner().notes.len(), 2, "another request is");

    // The VPN is still degraded: a plain resolve is refused, naming it; forced, it resolves.
    let resolve = v1::ResolveIncidentRequest {
        id: "INC-000001".into(),
        by: "alice".into(),
        reason: "fibre spliced".into(),
        ..Default::default()
    };
    let refused = incidents.resolve_incident(resolve.clone()).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("cfs-acme-vpn (degraded)"), "{refused:?}");
    incidents.resolve_incident(v1::ResolveIncidentRequest { force: true, ..resolve }).await.unwrap();
    let resolved = next_change(&mut stream, |c| is(c, v1::ChangeKind::Resolved)).await;
    assert!(resolved.timeline.iter().any(|e| e.text.contains("fibre spliced")));
    on_topic(&incidents_topic, "INC-000001", |i| i.state == v1::IncidentState::Resolved as i32).await;

    // Errors carry proper codes.
    let again = incidents
        .resolve_incident(v1::ResolveIncidentRequest {
            id: "INC-000001".into(),
            by: "x".into(),
            reason: String::new(),
            ..Default::default()
        })
        .await;
    assert_eq!(again.unwrap_err().code(), Code::FailedPrecondition);
    let unknown = incidents.get_incident(v1::GetIncidentRequest { id: "INC-999999".into() }).await;
    assert_eq!(unknown.unwrap_err().code(), Code::NotFound);
    let malformed = incidents.get_incident(v1::GetIncidentRequest { id: "bogus".into() }).await;
    assert_eq!(malformed.unwrap_err().code(), Code::InvalidArgument);
    let anonymous = incidents
        .acknowledge_incident(v1::AcknowledgeIncidentRequest {
            id: "INC-000001".into(),
            by: String::new(),
            ..Default::default()
        })
        .await;
    assert_eq!(anonymous.unwrap_err().code(), Code::InvalidArgument);

    drop(producer);
    drop(incidents_topic);
    engine.stop(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_alarms_go_to_the_dead_letter_topic_with_their_reason() {
    let config = test_config();
    let engine = start(&config).await;
    let producer = producer(engine.brokers());
    produce(&producer, "faultline.alarms", "bad-1", b"\xff\xff\xff\xff not protobuf").await;
    produce(&producer, JSON_TOPIC, "bad-2", b"{\"resource\": ").await;
    produce(&producer, JSON_TOPIC, "bad-3", &[b' '; 5000]).await;
    // A good alarm after the bad ones is still correlated: nothing stalls.
    let good = br#"{"resource":"mrs-r1","alarm_type":"POWER","severity":"critical"}"#;
    produce(&producer, JSON_TOPIC, "mrs-r1", good).await;

    let dead = reader(engine.brokers(), "faultline.dead-letter");
    let mut refused = std::collections::HashMap::new();
    while refused.len() < 3 {
        let message = read_until(&dead, WAIT, |_| true).await;
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        refused.insert(key, message);
    }
    for (key, reason, original) in [
        ("bad-1", "undecodable", b"\xff\xff\xff\xff not protobuf".to_vec()),
        ("bad-2", "undecodable", b"{\"resource\": ".to_vec()),
        ("bad-3", "oversized", vec![b' '; 5000]),
    ] {
        let message = &refused[key];
        assert_eq!(payload(message), original.as_slice(), "the original bytes are kept");
        let headers = message.headers().expect("dead letters carry headers");
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(header("faultline.reason").as_deref(), Some(reason), "{key}");
        assert!(header("faultline.source").unwrap().starts_with("faultline.alarms"), "{key}");
        assert!(!header("faultline.detail").unwrap().is_empty());
    }

    let mut incidents = IncidentServiceClient::connect(format!("http://{}", engine.grpc_addr())).await.unwrap();
    let listed = tokio::time::timeout(WAIT, async {
        loop {
            let list = incidents.list_incidents(v1::ListIncidentsRequest::default()).await.unwrap().into_inner();
            if list.total_size == 1 {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the good alarm opened an incident");
    assert_eq!(listed.incidents[0].root_causes, vec!["mrs-r1"]);
    let stats = engine.handle().call(|ctx| ctx.stats()).await.unwrap();
    assert_eq!(stats.refused, 3);

    // Prometheus sees the same: refusals by format and reason, the alarm taken, the incident.
    let metrics = scrape(engine.metrics_addr()).await;
    for line in [
        r#"faultline_dead_letters_total{format="protobuf",reason="undecodable"} 1"#,
        r#"faultline_dead_letters_total{format="json",reason="undecodable"} 1"#,
        r#"faultline_dead_letters_total{format="json",reason="oversized"} 1"#,
        r#"faultline_alarms_decoded_total{format="json"} 1"#,
        r#"faultline_alarms_total{outcome="raised"} 1"#,
        r#"faultline_incidents{state="open"} 1"#,
        r#"faultline_incident_transitions_total{to="opened"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "no `{line}` in:\n{metrics}");
    }
    for histogram in ["faultline_decode_batch_seconds_count", "faultline_apply_batch_seconds_count"] {
        let count = metrics.lines().find_map(|l| l.strip_prefix(histogram)).and_then(|v| v.trim().parse::<u64>().ok());
        assert!(count.is_some_and(|c| c > 0), "{histogram} not observed:\n{metrics}");
    }
    assert!(metrics.contains("faultline_consumer_lag{topic=\"faultline.alarms.json\""), "{metrics}");

    drop(producer);
    drop(dead);
    engine.stop(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_paging_and_filters() {
    let config = test_config();
    let engine = start(&config).await;
    let endpoint = format!("http://{}", engine.grpc_addr());

    let channel = tonic::transport::Channel::from_shared(endpoint.clone()).unwrap().connect().await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "faultline.v1.IncidentService", "faultline.v1.TopologyService"] {
        let status =
            health.check(tonic_health::pb::HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(
            status.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses =
        reflection.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for wanted in ["faultline.v1.IncidentService", "faultline.v1.TopologyService", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == wanted), "{wanted} missing from {names:?}");
    }

    // Three incidents: Marseille power (Globex, Initech, Umbrella), route A (ACME).
    let producer = producer(engine.brokers());
    for resource in ["mrs-r1", "par-r1/1/1"] {
        let alarm = format!(r#"{{"resource":"{resource}","alarm_type":"FAIL","severity":"critical"}}"#);
        produce(&producer, JSON_TOPIC, resource, alarm.as_bytes()).await;
    }
    let mut incidents = IncidentServiceClient::connect(endpoint).await.unwrap();
    tokio::time::timeout(WAIT, async {
        while incidents.list_incidents(v1::ListIncidentsRequest::default()).await.unwrap().into_inner().total_size < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();

    let page = incidents
        .list_incidents(v1::ListIncidentsRequest { page_size: 1, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((page.incidents.len(), page.total_size, page.next_page_token.as_str()), (1, 2, "INC-000001"));
    let next = incidents
        .list_incidents(v1::ListIncidentsRequest {
            page_size: 1,
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((next.incidents[0].id.as_str(), next.next_page_token.as_str()), ("INC-000002", ""));

    let acme = incidents
        .list_incidents(v1::ListIncidentsRequest { customer: "cust-acme".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acme.incidents.len(), 1);
    assert_eq!(acme.incidents[0].root_causes, vec!["par-r1/1/1"]);

    // A filtered subscription sees only its incidents.
    let mut stream = incidents
        .subscribe(v1::SubscribeIncidentsRequest { service: "cfs-globex-vpn".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(is(&first, v1::ChangeKind::Snapshot));
    assert_eq!(first.incident.unwrap().root_causes, vec!["mrs-r1"]);
    assert!(is(&stream.message().await.unwrap().unwrap(), v1::ChangeKind::SnapshotComplete));

    // The summary view: each incident as GetIncident returns it, without its lists but with
    // their sizes.
    let mut summaries = incidents
        .subscribe(v1::SubscribeIncidentsRequest { view: v1::IncidentView::Summary as i32, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    let mut summarised = 0;
    loop {
        let change = summaries.message().await.unwrap().unwrap();
        if is(&change, v1::ChangeKind::SnapshotComplete) {
            break;
        }
        let summary = change.incident.unwrap();
        let request = v1::GetIncidentRequest { id: summary.id.clone() };
        let mut whole = incidents.get_incident(request).await.unwrap().into_inner();
        assert!(!whole.root_cause_alarms.is_empty() && !whole.impacted_services.is_empty(), "{whole:?}");
        assert_eq!(
            (summary.root_cause_alarm_count as usize, summary.impacted_service_count as usize),
            (whole.root_cause_alarms.len(), whole.impacted_services.len()),
            "the summary counts what it leaves out"
        );
        (whole.root_cause_alarms, whole.symptom_alarms, whole.timeline, whole.notes) = (vec![], vec![], vec![], vec![]);
        (whole.impacted_services, whole.impacted_customers) = (vec![], vec![]);
        assert_eq!(summary, whole);
        summarised += 1;
    }
    assert!(summarised >= 2, "{summarised} incidents summarised");

    drop(producer);
    engine.stop(Duration::from_secs(10)).await.unwrap();
}

/// Queries leave the open transaction alone: with a commit interval of ten minutes, nothing
/// reaches the incidents topic however often the incident is read. An operator action
/// commits its transaction before it is answered: its snapshot is the first on the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_commit_nothing_and_operator_actions_commit_before_their_reply() {
    let config = test_config().with("kafka.commit_interval_ms", 600_000).unwrap();
    let engine = start(&config).await;
    let mut incidents = IncidentServiceClient::connect(format!("http://{}", engine.grpc_addr())).await.unwrap();
    let producer = producer(engine.brokers());
    let raise = proto::alarm_to_proto(&Alarm::raise("par-r1/1/1", "LOS", Severity::Critical, 1_000)).encode_to_vec();
    produce(&producer, "faultline.alarms", "par-r1/1/1", &raise).await;

    let id = || v1::GetIncidentRequest { id: "INC-000001".into() };
    let deadline = std::time::Instant::now() + WAIT;
    while incidents.get_incident(id()).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the incident never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..20 {
        incidents.get_incident(id()).await.unwrap();
        incidents.list_incidents(v1::ListIncidentsRequest::default()).await.unwrap();
    }
    let acked = incidents
        .acknowledge_incident(v1::AcknowledgeIncidentRequest {
            id: "INC-000001".into(),
            by: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // The first snapshot committed is the acknowledged one: the queries committed nothing.
    let topic = reader(engine.brokers(), "faultline.incidents");
    let first = on_topic(&topic, "INC-000001", |_| true).await;
    assert_eq!((first.state, first.version), (acked.state, acked.version), "the first snapshot on the topic");

    // A topology batch that moves no incident is committed before its reply too: the
    // state changelog has it (read committed) while the next interval is minutes away.
    let mut topology = TopologyServiceClient::connect(format!("http://{}", engine.grpc_addr())).await.unwrap();
    let port = v1::ConfigurationItem {
        id: "par-r1/9/9".into(),
        class: v1::CiClass::Port as i32,
        depends_on: vec!["par-r1/card-1".into()],
        ..Default::default()
    };
    let change = v1::CiChange { change: Some(v1::ci_change::Change::Upsert(port)) };
    topology.apply_topology_changes(v1::ApplyTopologyChangesRequest { changes: vec![change] }).await.unwrap();
    let state = reader(engine.brokers(), &config.kafka.state_topic);
    read_until(&state, WAIT, |m| m.key() == Some(b"ci/par-r1/9/9".as_slice())).await;

    drop(producer);
    drop(topic);
    engine.stop(Duration::from_secs(10)).await.unwrap();
}

/// The delta view: a subscriber that applies each change to the incident it holds has,
/// after every change, exactly the incident a subscriber of whole incidents received for it,
/// and receives far fewer bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_subscriber_holds_each_incident_as_sent_whole() {
    let engine = start(&test_config()).await;
    let mut incidents = IncidentServiceClient::connect(format!("http://{}", engine.grpc_addr())).await.unwrap();
    let subscribe = |view: v1::IncidentView| {
        let mut client = incidents.clone();
        async move {
            let request = v1::SubscribeIncidentsRequest { view: view as i32, ..Default::default() };
            let mut stream = client.subscribe(request).await.unwrap().into_inner();
            let complete = stream.message().await.unwrap().unwrap();
            assert!(is(&complete, v1::ChangeKind::SnapshotComplete), "nothing open yet");
            stream
        }
    };
    let mut whole = subscribe(v1::IncidentView::Full).await;
    let mut deltas = subscribe(v1::IncidentView::Delta).await;

    // Faults on every layer, repeats, severity changes, clears (symptoms come and go while
    // the incidents live), then operator actions.
    let producer = producer(engine.brokers());
    let mut time = 1_000;
    let mut send = |mut alarm: Alarm| {
        time += 10;
        alarm.event_time = time;
        let producer = &producer;
        async move { produce_alarm(producer, &alarm).await }
    };
    let faults = [
        ("par-r1/1/1", "LOS"),
        ("lyo-r1/1/1", "LOS"),
        ("link-par-lyo-a", "LINK_DOWN"),
        ("mrs-r1", "POWER"),
        ("mrs-r1/1/1", "LINK_DOWN"),
        ("link-lyo-mrs-1", "LINK_DOWN"),
        ("link-lyo-mrs-2", "LINK_DOWN"),
        ("par-r1/2/1", "LOS"),
        ("link-par-lyo-b", "LINK_DOWN"),
    ];
    for (resource, kind) in faults {
        send(Alarm::raise(resource, kind, Severity::Major, 0)).await;
    }
    for (resource, kind) in faults.iter().step_by(2) {
        send(Alarm::raise(resource, kind, Severity::Critical, 0)).await;
    }
    for (resource, kind) in faults.iter().skip(4).step_by(3) {
        send(Alarm::clear(resource, kind, 0)).await;
    }
    send(Alarm::raise("mrs-r1/1/1", "LINK_DOWN", Severity::Minor, 0)).await;
    // Once everything is in: the operator's turn, ending with a note that marks the end.
    let deadline = std::time::Instant::now() + WAIT;
    let opened = loop {
        let listed = incidents.list_incidents(v1::ListIncidentsRequest::default()).await.unwrap().into_inner();
        if listed.incidents.iter().any(|i| {
            i.symptom_alarms.iter().any(|a| a.resource == "mrs-r1/1/1" && a.severity == v1::Severity::Minor as i32)
        }) {
            break listed.incidents;
        }
        assert!(std::time::Instant::now() < deadline, "the alarms never all applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(opened.len() >= 2, "{} incidents", opened.len());
    let id = opened[0].id.clone();
    incidents
        .acknowledge_incident(v1::AcknowledgeIncidentRequest {
            id: id.clone(),
            by: "alice".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let note = |text: &str| v1::AddIncidentNoteRequest {
        id: id.clone(),
        author: "alice".into(),
        text: text.into(),
        ..Default::default()
    };
    incidents.add_incident_note(note("fibre team dispatched")).await.unwrap();
    incidents.add_incident_note(note("done")).await.unwrap();

    // The whole incidents, change by change, up to the last note.
    let mut sent_whole = Vec::new();
    let mut whole_bytes = 0;
    loop {
        let change = whole.message().await.unwrap().unwrap();
        let incident = change.incident.clone().unwrap();
        whole_bytes += change.encoded_len();
        sent_whole.push((change.kind, incident.clone()));
        if incident.notes.last().is_some_and(|n| n.text == "done") {
            break;
        }
    }
    // The same changes as deltas, applied one by one.
    let mut held: std::collections::HashMap<String, v1::Incident> = Default::default();
    let (mut applied, mut delta_bytes) = (0, 0);
    for (kind, expected) in &sent_whole {
        let change = deltas.message().await.unwrap().unwrap();
        delta_bytes += change.encoded_len();
        assert_eq!(change.kind, *kind);
        let incident = change.incident.unwrap();
        match change.delta {
            Some(delta) => {
                let holding = held.get_mut(&incident.id).expect("a delta for an incident held");
                proto::delta::apply(holding, incident, delta).unwrap();
                applied += 1;
            }
            None => {
                held.insert(incident.id.clone(), incident);
            }
        }
        assert_eq!(&held[&expected.id], expected, "after version {} of {}", expected.version, expected.id);
    }
    let opened_whole = sent_whole.iter().filter(|(kind, _)| *kind == v1::ChangeKind::Opened as i32).count();
    assert_eq!(applied + opened_whole, sent_whole.len(), "every change but openings sent as a delta");
    assert!(applied >= 10, "{applied} deltas");
    assert!(delta_bytes * 2 < whole_bytes, "{delta_bytes} bytes as deltas against {whole_bytes} whole");

    drop(producer);
    engine.stop(Duration::from_secs(10)).await.unwrap();
}

/// The next response on the stream, in time.
async fn next_response(stream: &mut Changes) -> v1::SubscribeIncidentsResponse {
    let next = tokio::time::timeout(WAIT, stream.message()).await.expect("a change in time");
    next.expect("stream healthy").expect("stream open")
}

/// Waits until `GetIncident` for `id` satisfies `wanted` (`None`: the incident is gone).
async fn incident_until(
    incidents: &mut IncidentServiceClient<tonic::transport::Channel>,
    id: &str,
    wanted: impl Fn(Option<&v1::Incident>) -> bool,
) -> Option<v1::Incident> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let got = incidents.get_incident(v1::GetIncidentRequest { id: id.into() }).await.ok().map(|r| r.into_inner());
        if wanted(got.as_ref()) {
            return got;
        }
        assert!(std::time::Instant::now() < deadline, "{id} never became as wanted: {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Resuming: a dashboard that comes back with the token of the last change it received is
/// sent only the incidents that changed while it was away and a CLOSED for each one that
/// closed, then the live stream; tokens the engine cannot resume from are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_subscription_sends_only_what_changed_or_closed_while_away() {
    let config = test_config().with("correlation.reopen_window_secs", 1).unwrap();
    let engine = start(&config).await;
    let mut incidents = IncidentServiceClient::connect(format!("http://{}", engine.grpc_addr())).await.unwrap();
    let producer = producer(engine.brokers());
    let send = |alarm: Alarm| {
        let producer = &producer;
        async move { produce_alarm(producer, &alarm).await }
    };
    send(Alarm::raise("par-r1/1/1", "LOS", Severity::Critical, 1_000)).await;
    send(Alarm::raise("mrs-r1", "POWER", Severity::Major, 1_000)).await;
    let deadline = std::time::Instant::now() + WAIT;
    let (paris, marseille) = loop {
        let listed = incidents.list_incidents(v1::ListIncidentsRequest::default()).await.unwrap().into_inner();
        let by_root = |root: &str| listed.incidents.iter().find(|i| i.root_causes == [root]).cloned();
        if let (Some(p), Some(m)) = (by_root("par-r1/1/1"), by_root("mrs-r1")) {
            break (p, m);
        }
        assert!(std::time::Instant::now() < deadline, "the two incidents never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let subscriber = incidents.clone();
    let subscribe = |token: &str| {
        let mut client = subscriber.clone();
        let request = v1::SubscribeIncidentsRequest { resume_token: token.into(), ..Default::default() };
        async move { client.subscribe(request).await.map(|r| r.into_inner()) }
    };

    // A whole snapshot: both incidents, then the token of that point.
    let mut stream = subscribe("").await.unwrap();
    let mut snapshot = Vec::new();
    let token = loop {
        let change = next_response(&mut stream).await;
        if is(&change, v1::ChangeKind::SnapshotComplete) {
            break change.resume_token;
        }
        assert!(change.resume_token.is_empty(), "a snapshot entry is no point to resume from");
        snapshot.push(change.incident.unwrap().id);
    };
    snapshot.sort();
    let mut both = vec![paris.id.clone(), marseille.id.clone()];
    both.sort();
    assert_eq!(snapshot, both);
    assert!(!token.is_empty());
    drop(stream);

    // Away: Marseille changes, Paris does not. Back: Marseille alone, as it is now.
    send(Alarm::raise("mrs-r1", "POWER", Severity::Critical, 2_000)).await;
    let now = incident_until(&mut incidents, &marseille.id, |i| i.is_some_and(|i| i.version > marseille.version)).await;
    let mut stream = subscribe(&token).await.unwrap();
    let change = next_response(&mut stream).await;
    assert!(is(&change, v1::ChangeKind::Snapshot));
    assert_eq!(change.incident, now, "the changed incident, whole");
    let complete = next_response(&mut stream).await;
    assert!(is(&complete, v1::ChangeKind::SnapshotComplete), "nothing else: Paris did not change");
    assert!(!complete.resume_token.is_empty() && complete.resume_token != token);

    // Live changes carry their token.
    send(Alarm::raise("par-r1/1/1", "LOS", Severity::Major, 3_000)).await;
    let live = next_response(&mut stream).await;
    assert!(is(&live, v1::ChangeKind::Updated) && live.incident.unwrap().id == paris.id);
    assert!(!live.resume_token.is_empty());
    drop(stream);

    // Away again: Marseille clears, resolves and closes. Back: told it closed.
    send(Alarm::clear("mrs-r1", "POWER", 4_000)).await;
    incident_until(&mut incidents, &marseille.id, |i| i.is_none()).await;
    let mut stream = subscribe(&live.resume_token).await.unwrap();
    let closed = next_response(&mut stream).await;
    assert!(is(&closed, v1::ChangeKind::Closed), "{closed:?}");
    let closed = closed.incident.unwrap();
    assert_eq!((closed.id.as_str(), closed.state), (marseille.id.as_str(), v1::IncidentState::Closed as i32));
    assert!(is(&next_response(&mut stream).await, v1::ChangeKind::SnapshotComplete));
    drop(stream);

    // Tokens that cannot be resumed, each with its reason.
    let refused = subscribe("not a token").await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let run = token.split('-').next().unwrap();
    let other_run = format!("{:016x}-1", u64::from_str_radix(run, 16).unwrap() ^ 1);
    let refused = subscribe(&other_run).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(refused.message().contains("earlier run"), "{}", refused.message());
    let ahead = format!("{run}-{}", u64::MAX);
    assert_eq!(subscribe(&ahead).await.unwrap_err().code(), Code::InvalidArgument);

    drop(producer);
    engine.stop(Duration::from_secs(10)).await.unwrap();
}

/// A panic on the correlation core (whatever its cause) stops the engine visibly: health
/// turns NOT_SERVING at once, the engine reports itself failed with the panic's message,
/// and its stop is an error (the binary exits non-zero with it), never ingest and output
/// standing still behind a SERVING health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_on_the_core_thread_stops_the_engine_with_its_reason() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let engine = start(&test_config()).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", engine.grpc_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = |response: tonic::Response<tonic_health::pb::HealthCheckResponse>| {
        ServingStatus::try_from(response.into_inner().status).unwrap()
    };
    let check = || tonic_health::pb::HealthCheckRequest { service: String::new() };
    assert_eq!(status(health.check(check()).await.unwrap()), ServingStatus::Serving);

    let answer = engine.handle().call(|_| -> u64 { panic!("the core met an impossible state") }).await;
    assert!(answer.is_err(), "a job whose core died has no answer");
    tokio::time::timeout(WAIT, engine.failed()).await.expect("the engine knows it failed");
    assert_eq!(engine.failure(), Some("correlation core panicked: the core met an impossible state"));
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let now = status(health.check(check()).await.expect("the server answers until the engine stops"));
        if now == ServingStatus::NotServing {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "health still {now:?} after the core died");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopped = engine.stop(Duration::from_secs(10)).await;
    let error = stopped.expect_err("a failed engine's stop is an error").to_string();
    assert!(error.contains("correlation core panicked: the core met an impossible state"), "{error}");
}

/// Subscribers are capped (`grpc.max_subscribers`): with the cap reached, each of ten
/// thousand further attempts is refused at once with RESOURCE_EXHAUSTED, the engine keeps
/// serving those it has, and a place freed by a subscriber leaving is taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_past_the_cap_are_refused_with_resource_exhausted() {
    const CAP: usize = 20;
    let engine = start(&test_config().with("grpc.max_subscribers", CAP).unwrap()).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", engine.grpc_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = IncidentServiceClient::new(channel);
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(client.subscribe(v1::SubscribeIncidentsRequest::default()).await.unwrap().into_inner());
    }
    for attempt in 0..10_000 {
        let refused = client.subscribe(v1::SubscribeIncidentsRequest::default()).await.err();
        let status = refused.unwrap_or_else(|| panic!("attempt {attempt} was served past the cap"));
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("grpc.max_subscribers"), "{status:?}");
    }
    let metrics = scrape(engine.metrics_addr()).await;
    assert!(metrics.contains(&format!("faultline_subscribers {CAP}\n")), "{metrics}");

    // Those held still get their changes.
    let producer = producer(engine.brokers());
    produce_alarm(&producer, &Alarm::raise("mrs-r1", "POWER", Severity::Critical, 1_767_225_600_000)).await;
    let stream = held.last_mut().unwrap();
    next_change(stream, |c| is(c, v1::ChangeKind::Opened)).await;

    // One leaves; its place is taken again.
    drop(held.pop());
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match client.subscribe(v1::SubscribeIncidentsRequest::default()).await {
            Ok(_) => break,
            Err(status) => assert_eq!(status.code(), Code::ResourceExhausted),
        }
        assert!(std::time::Instant::now() < deadline, "the place a subscriber left was never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    engine.stop(Duration::from_secs(10)).await.unwrap();
}

/// The gRPC `AlarmService.Resync`: a mediation system sends an element manager's alarm list
/// by hand; the alarms of that source it does not name are cleared (and the answer counts
/// them), and an invalid list is refused with INVALID_ARGUMENT naming the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_list_sent_over_grpc_clears_what_it_does_not_name() {
    use v1::alarm_service_client::AlarmServiceClient;
    let engine = start(&test_config()).await;
    let producer = producer(engine.brokers());
    for (resource, alarm_type) in [("mrs-r1", "POWER"), ("par-r1/1/1", "LOS")] {
        let mut alarm = Alarm::raise(resource, alarm_type, Severity::Critical, 1_767_225_600_000);
        alarm.source_system = "ems-south".into();
        produce_alarm(&producer, &alarm).await;
    }
    let deadline = std::time::Instant::now() + WAIT;
    while engine.handle().call(|ctx| ctx.stats().raised).await.unwrap() < 2 {
        assert!(std::time::Instant::now() < deadline, "the alarms never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut client = AlarmServiceClient::connect(format!("http://{}", engine.grpc_addr())).await.unwrap();
    let listed = proto::alarm_to_proto(&Alarm::raise("par-r1/1/1", "LOS", Severity::Critical, 1_767_225_601_000));
    let list = v1::AlarmResync { source_system: "ems-south".into(), as_of: None, alarms: vec![listed] };
    let result = client.resync(list).await.unwrap().into_inner();
    assert_eq!((result.listed, result.cleared), (1, 1));
    let active = engine
        .handle()
        .call(|ctx| ["mrs-r1", "par-r1/1/1"].map(|r| ctx.correlator.alarms().active_alarms(r).len()))
        .await
        .unwrap();
    assert_eq!(active, [0, 1]);

    let nameless = v1::AlarmResync { source_system: " ".into(), ..v1::AlarmResync::default() };
    let status = client.resync(nameless).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("source_system"), "{status:?}");
    engine.stop(Duration::from_secs(10)).await.unwrap();
}

/// Notes and requests past their limits: a note over 16 KiB is refused with
/// INVALID_ARGUMENT saying so, a 10 MB one is refused by the transport before it is read
/// (OUT_OF_RANGE), and neither reaches the incident; the engine serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_notes_are_refused_and_the_engine_serves_on() {
    let engine = start(&test_config()).await;
    let producer = producer(engine.brokers());
    produce_alarm(&producer, &Alarm::raise("mrs-r1", "POWER", Severity::Critical, 1_767_225_600_000)).await;
    let mut client = IncidentServiceClient::connect(format!("http://{}", engine.grpc_addr())).await.unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let id = loop {
        let list = client.list_incidents(v1::ListIncidentsRequest::default()).await.unwrap().into_inner();
        if let Some(incident) = list.incidents.first() {
            break incident.id.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no incident opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let note = |text: String| v1::AddIncidentNoteRequest {
        id: id.clone(),
        author: "mallory".into(),
        text,
        ..Default::default()
    };

    let over = client.add_incident_note(note("x".repeat(16 * 1024 + 1))).await.unwrap_err();
    assert_eq!(over.code(), Code::InvalidArgument, "{over:?}");
    assert!(over.message().contains("16384"), "{over:?}");
    let huge = client.add_incident_note(note("x".repeat(10_000_000))).await.unwrap_err();
    assert_eq!(huge.code(), Code::OutOfRange, "{huge:?}");

    let fine = client.add_incident_note(note("cable found".into())).await.unwrap().into_inner();
    assert_eq!(fine.notes.iter().map(|n| n.text.as_str()).collect::<Vec<_>>(), ["cable found"]);
    engine.stop(Duration::from_secs(10)).await.unwrap();
}

/// The topology changed over gRPC: a service provisioned on a failed router joins its
/// incident at once and every answer names the version it was computed on; a batch that
/// would leave the topology invalid is refused whole, naming the CI; CIs are listed a page
/// at a time with filters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_changes_over_grpc_are_applied_whole_or_refused_naming_the_ci() {
    let engine = start(&test_config()).await;
    let endpoint = format!("http://{}", engine.grpc_addr());
    let mut topology = TopologyServiceClient::connect(endpoint.clone()).await.unwrap();
    let mut incidents = IncidentServiceClient::connect(endpoint).await.unwrap();
    let version = topology.get_topology_version(v1::GetTopologyVersionRequest {}).await.unwrap().into_inner();
    assert_eq!(version.version, 0);
    let cis_before = version.cis;

    let producer = producer(engine.brokers());
    produce_alarm(&producer, &Alarm::raise("mrs-r1", "POWER", Severity::Critical, 1_767_225_600_000)).await;
    let deadline = std::time::Instant::now() + WAIT;
    while engine.handle().call(|ctx| ctx.correlator.incidents().count()).await.unwrap() == 0 {
        assert!(std::time::Instant::now() < deadline, "no incident for the router");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let service = v1::ConfigurationItem {
        id: "cfs-acme-mrs".into(),
        class: v1::CiClass::Cfs as i32,
        name: "ACME Marseille internet".into(),
        depends_on: vec!["mrs-r1".into()],
        customer: "cust-acme".into(),
        ..Default::default()
    };
    let upsert = |ci: v1::ConfigurationItem| v1::CiChange { change: Some(v1::ci_change::Change::Upsert(ci)) };
    let applied = topology
        .apply_topology_changes(v1::ApplyTopologyChangesRequest { changes: vec![upsert(service.clone())] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((applied.version, applied.added.as_slice()), (1, ["cfs-acme-mrs".to_string()].as_slice()));
    let status = topology.get_ci(v1::GetCiRequest { id: "cfs-acme-mrs".into() }).await.unwrap().into_inner();
    assert_eq!(status.state, v1::ServiceState::Down as i32);
    assert_eq!(status.topology_version, 1);
    assert_eq!(status.ci.unwrap().incidents, Some(true), "a customer-facing service opens incidents by default");
    let list = incidents.list_incidents(v1::ListIncidentsRequest::default()).await.unwrap().into_inner();
    let joined = list.incidents.iter().find(|i| i.impacted_services.iter().any(|s| s.service_id == "cfs-acme-mrs"));
    assert!(joined.is_some(), "the new service is in the router's incident: {list:?}");
    assert_eq!(joined.unwrap().topology_version, 1, "computed on the new topology");

    // A dependency that does not exist, in a batch with a valid change: nothing applied.
    let dangling = v1::ConfigurationItem { id: "cfs-x".into(), depends_on: vec!["nope".into()], ..service.clone() };
    let renamed = v1::ConfigurationItem { name: "renamed".into(), ..service.clone() };
    let status = topology
        .apply_topology_changes(v1::ApplyTopologyChangesRequest { changes: vec![upsert(renamed), upsert(dangling)] })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("cfs-x") && status.message().contains("nope"), "{status:?}");
    let still = topology.get_ci(v1::GetCiRequest { id: "cfs-acme-mrs".into() }).await.unwrap().into_inner();
    assert_eq!(still.ci.unwrap().name, "ACME Marseille internet");
    let classless = v1::ConfigurationItem { class: 0, ..service.clone() };
    let status = topology
        .apply_topology_changes(v1::ApplyTopologyChangesRequest { changes: vec![upsert(classless)] })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("cfs-acme-mrs") && status.message().contains("class"), "{status:?}");

    // Listed a page at a time: every CI once, filters applied.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let request = v1::ListCisRequest { page_size: 7, page_token: token.clone(), ..Default::default() };
        let page = topology.list_cis(request).await.unwrap().into_inner();
        assert!(page.cis.len() <= 7);
        assert_eq!(page.topology_version, 1);
        seen.extend(page.cis.into_iter().map(|ci| ci.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len() as u64, cis_before + 1);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len() as u64, cis_before + 1, "each CI once");
    let request =
        v1::ListCisRequest { class: v1::CiClass::Cfs as i32, name_prefix: "cfs-acme".into(), ..Default::default() };
    let page = topology.list_cis(request).await.unwrap().into_inner();
    let ids: Vec<&str> = page.cis.iter().map(|ci| ci.id.as_str()).collect();
    assert_eq!(ids, ["cfs-acme-vpn", "cfs-acme-mrs"]);
    let request =
        v1::ListCisRequest { attributes: [("role".to_string(), "core".to_string())].into(), ..Default::default() };
    let page = topology.list_cis(request).await.unwrap().into_inner();
    assert_eq!(page.cis.len(), 3, "the three core routers");
    let bad = v1::ListCisRequest { page_token: "x".into(), ..Default::default() };
    assert_eq!(topology.list_cis(bad).await.unwrap_err().code(), Code::InvalidArgument);

    // A CI record past 512 KiB (under the 1 MiB a request may take): refused, naming it.
    let huge = v1::ConfigurationItem {
        id: "cfs-huge".into(),
        attributes: [("notes".to_string(), "x".repeat(600 * 1024))].into(),
        ..service.clone()
    };
    let status = topology
        .apply_topology_changes(v1::ApplyTopologyChangesRequest { changes: vec![upsert(huge)] })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("cfs-huge"), "{status:?}");

    // The router cannot go while the new service depends on it.
    let delete = v1::CiChange { change: Some(v1::ci_change::Change::Delete("mrs-r1".into())) };
    let status =
        topology.apply_topology_changes(v1::ApplyTopologyChangesRequest { changes: vec![delete] }).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("mrs-r1"), "{status:?}");

    // Deleted, it leaves its incident, which says so.
    let delete = v1::CiChange { change: Some(v1::ci_change::Change::Delete("cfs-acme-mrs".into())) };
    let applied = topology
        .apply_topology_changes(v1::ApplyTopologyChangesRequest { changes: vec![delete] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((applied.version, applied.deleted.len()), (2, 1));
    let missing = topology.get_ci(v1::GetCiRequest { id: "cfs-acme-mrs".into() }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    engine.stop(Duration::from_secs(10)).await.unwrap();
}

/// What-if over gRPC: failing the Marseille router in a simulation names the services and
/// customers it would hit and the incident it would open, and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_failure_is_assessed_and_changes_nothing() {
    let engine = start(&test_config()).await;
    let mut topology = TopologyServiceClient::connect(format!("http://{}", engine.grpc_addr())).await.unwrap();
    let request = v1::SimulateImpactRequest { fail: vec!["mrs-r1".into()] };
    let answer = topology.simulate_impact(request).await.unwrap().into_inner();
    let newly: Vec<(&str, i32)> = answer.newly_impacted.iter().map(|s| (s.service_id.as_str(), s.would_be)).collect();
    assert!(newly.contains(&("cfs-initech-internet", v1::ServiceState::Down as i32)), "{newly:?}");
    assert!(newly.contains(&("cfs-globex-vpn", v1::ServiceState::Down as i32)), "{newly:?}");
    assert!(newly.contains(&("cfs-umbrella-backhaul", v1::ServiceState::Degraded as i32)), "{newly:?}");
    assert!(!newly.iter().any(|(id, _)| *id == "cfs-acme-vpn"), "Paris-Lyon is not hit: {newly:?}");
    let customers: Vec<&str> = answer.customers.iter().map(|c| c.customer_id.as_str()).collect();
    assert_eq!(customers, ["cust-globex", "cust-initech", "cust-umbrella"]);
    assert_eq!(answer.worst_sla_tier, v1::SlaTier::Gold as i32, "Umbrella is gold");
    assert!(answer.new_incident_priority > 0 && answer.escalated_incidents.is_empty(), "{answer:?}");
    assert!(answer.summary.contains("take down 3 services and degrade 1 more, of 3 customers"), "{}", answer.summary);

    let status = topology.get_ci(v1::GetCiRequest { id: "cfs-initech-internet".into() }).await.unwrap().into_inner();
    assert_eq!(status.state, v1::ServiceState::Up as i32, "nothing changed");
    let incidents = engine.handle().call(|ctx| ctx.correlator.incidents().count()).await.unwrap();
    assert_eq!(incidents, 0);

    let empty = topology.simulate_impact(v1::SimulateImpactRequest::default()).await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    let unknown = v1::SimulateImpactRequest { fail: vec!["nowhere".into()] };
    assert_eq!(topology.simulate_impact(unknown).await.unwrap_err().code(), Code::NotFound);
    engine.stop(Duration::from_secs(10)).await.unwrap();
}

/// With smaller changelog records (`kafka.max_record_bytes`), a CI record that could not
/// be kept in one is refused at the API, naming it, never accepted and then lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ci_record_past_what_the_changelog_holds_is_refused() {
    let config =
        test_config().with("kafka.max_message_bytes", 32_768).unwrap().with("kafka.max_record_bytes", 65_536).unwrap();
    let engine = start(&config).await;
    let mut topology = TopologyServiceClient::connect(format!("http://{}", engine.grpc_addr())).await.unwrap();
    let port = |id: &str, notes: usize| v1::CiChange {
        change: Some(v1::ci_change::Change::Upsert(v1::ConfigurationItem {
            id: id.into(),
            class: v1::CiClass::Port as i32,
            depends_on: vec!["par-r1/card-1".into()],
            attributes: [("notes".to_string(), "x".repeat(notes))].into(),
            ..Default::default()
        })),
    };
    let status = topology
        .apply_topology_changes(v1::ApplyTopologyChangesRequest { changes: vec![port("par-r1/9/8", 100_000)] })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("par-r1/9/8") && status.message().contains("61440"), "{status:?}");
    let fits = v1::ApplyTopologyChangesRequest { changes: vec![port("par-r1/9/8", 50_000)] };
    assert_eq!(topology.apply_topology_changes(fits).await.unwrap().into_inner().version, 1);
    engine.stop(Duration::from_secs(10)).await.unwrap();
}

/// Polls `GetTopologyVersion` until `wanted` holds.
async fn topology_version_until(
    topology: &mut TopologyServiceClient<tonic::transport::Channel>,
    mut wanted: impl FnMut(&v1::TopologyVersion) -> bool,
) -> v1::TopologyVersion {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let version = topology.get_topology_version(v1::GetTopologyVersionRequest {}).await.unwrap().into_inner();
        if wanted(&version) {
            return version;
        }
        assert!(std::time::Instant::now() < deadline, "the topology never got there: {version:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_topology_topic_is_seeded_and_its_records_change_the_live_topology() {
    let engine = start(&test_config()).await;
    let cis = sample_topology().len();
    // An empty topic is seeded with the engine's topology, one record a CI, keyed by id.
    let seeded = reader(engine.brokers(), "faultline.topology");
    let mut keys = std::collections::BTreeSet::new();
    while keys.len() < cis {
        let message = read_until(&seeded, WAIT, |_| true).await;
        let record: faultline::model::topology::CiRecord = serde_json::from_slice(payload(&message)).unwrap();
        assert_eq!(record.id.as_bytes(), message.key().unwrap());
        keys.insert(record.id);
    }
    drop(seeded);

    let mut topology = TopologyServiceClient::connect(format!("http://{}", engine.grpc_addr())).await.unwrap();
    let producer = producer(engine.brokers());
    // A service before the port it runs on: held, then applied with the port, one JSON, one protobuf.
    let service = br#"{"id":"cfs-acme-new","class":"cfs","customer":"cust-acme","depends_on":["par-r1/9/9"]}"#;
    produce(&producer, "faultline.topology", "cfs-acme-new", service).await;
    let held = topology_version_until(&mut topology, |v| v.held_changes == 1).await;
    assert_eq!(held.version, 0);
    assert_eq!((held.held[0].ci_id.as_str(), held.held[0].waits_for.as_str()), ("cfs-acme-new", "par-r1/9/9"));
    assert!(held.held[0].source.starts_with("faultline.topology/"), "{:?}", held.held[0]);
    let port = v1::ConfigurationItem {
        id: "par-r1/9/9".into(),
        class: v1::CiClass::Port as i32,
        depends_on: vec!["par-r1/card-1".into()],
        ..Default::default()
    };
    produce(&producer, "faultline.topology", "par-r1/9/9", &port.encode_to_vec()).await;
    let applied = topology_version_until(&mut topology, |v| v.held_changes == 0).await;
    assert_eq!((applied.version, applied.cis), (1, cis as u64 + 2), "one batch, two CIs");
    let status = topology.get_ci(v1::GetCiRequest { id: "cfs-acme-new".into() }).await.unwrap().into_inner();
    assert_eq!(status.ci.unwrap().depends_on, vec!["par-r1/9/9".to_string()]);

    // An alarm on the new port takes the new service down, in an incident.
    produce_alarm(&producer, &Alarm::raise("par-r1/9/9", "LOS", Severity::Critical, 1_767_225_600_000)).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let status = topology.get_ci(v1::GetCiRequest { id: "cfs-acme-new".into() }).await.unwrap().into_inner();
        if status.state == v1::ServiceState::Down as i32 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the new service never went down: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Bad records go to the dead-letter topic with their reason; nothing stalls.
    produce(&producer, "faultline.topology", "par-r1/9/8", br#"{"id":"par-r1/9/7","class":"port"}"#).await;
    produce(&producer, "faultline.topology", "par-r1/9/6", b"{not json").await;
    let quorum = br#"{"id":"rfs-q","class":"rfs","depends_on":["par-r1/9/9"],"rule":{"quorum":3}}"#;
    produce(&producer, "faultline.topology", "rfs-q", quorum).await;
    // A tombstone deletes the service.
    produce_tombstone(&producer, "faultline.topology", "cfs-acme-new").await;
    let dead = reader(engine.brokers(), "faultline.dead-letter");
    let mut refused = std::collections::BTreeMap::new();
    while refused.len() < 3 {
        let message = read_until(&dead, WAIT, |_| true).await;
        let headers = message.headers().expect("headers");
        let header = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        assert!(header("faultline.source").unwrap().starts_with("faultline.topology/"));
        let key = String::from_utf8_lossy(message.key().unwrap()).into_owned();
        refused.insert(key, (header("faultline.reason").unwrap(), payload(&message).to_vec()));
    }
    assert_eq!(refused["par-r1/9/8"].0, "key_mismatch");
    assert_eq!(refused["par-r1/9/6"], ("undecodable".to_string(), b"{not json".to_vec()));
    assert_eq!(refused["rfs-q"], ("impossible_quorum".to_string(), quorum.to_vec()), "the original bytes");
    let deleted = topology_version_until(&mut topology, |v| v.version == 2).await;
    assert_eq!(deleted.cis, cis as u64 + 1);
    let gone = topology.get_ci(v1::GetCiRequest { id: "cfs-acme-new".into() }).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    // The engine skipped its own seed; the records were counted.
    let metrics = scrape(engine.metrics_addr()).await;
    for line in [
        r#"faultline_topology_records_total{outcome="applied"} 3"#,
        r#"faultline_topology_records_total{outcome="unchanged"} 0"#,
        r#"faultline_topology_records_total{outcome="held"} 1"#,
        r#"faultline_dead_letters_total{format="topology",reason="key_mismatch"} 1"#,
        r#"faultline_dead_letters_total{format="topology",reason="impossible_quorum"} 1"#,
        "faultline_topology_held 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no `{line}` in:\n{metrics}");
    }
    drop((producer, dead));
    engine.stop(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_windows_over_grpc_and_the_changes_topic_suppress_and_then_open() {
    use v1::maintenance_service_client::MaintenanceServiceClient;
    let engine = start(&test_config()).await;
    let endpoint = format!("http://{}", engine.grpc_addr());
    let mut maintenance = MaintenanceServiceClient::connect(endpoint.clone()).await.unwrap();
    let mut topology = TopologyServiceClient::connect(endpoint.clone()).await.unwrap();
    let mut incidents = IncidentServiceClient::connect(endpoint).await.unwrap();
    let now = faultline::clock::wall_clock();
    let window = |change: &str, ci: &str, end: i64| v1::MaintenanceWindow {
        change: change.into(),
        reason: "line card swap".into(),
        ci_ids: vec![ci.into()],
        scope: v1::MaintenanceScope::Dependents as i32,
        start_time: Some(proto::timestamp(now - 1_000)),
        end_time: Some(proto::timestamp(end)),
        created_by: "alice".into(),
        ..Default::default()
    };
    // Created, answered with what the works would take down.
    let created = maintenance
        .create_maintenance_window(v1::CreateMaintenanceWindowRequest {
            window: Some(window("CHG0012345", "mrs-r1/card-1", now + 3_600_000)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.window.as_ref().unwrap().state, v1::MaintenanceState::Active as i32);
    let assessment = created.assessment.unwrap();
    let hit: Vec<&str> = assessment.newly_impacted.iter().map(|s| s.service_id.as_str()).collect();
    assert!(hit.contains(&"cfs-globex-vpn") && hit.contains(&"cfs-initech-internet"), "{hit:?}");
    assert!(assessment.summary.contains("take down 3 services and degrade 1"), "{}", assessment.summary);
    // Bad windows are refused naming what is wrong; the same window again is no error.
    let unknown = maintenance
        .create_maintenance_window(v1::CreateMaintenanceWindowRequest {
            window: Some(window("CHG0012346", "mrs-r1/card-9", now + 3_600_000)),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert!(unknown.message().contains("mrs-r1/card-9"), "{unknown:?}");
    let other = maintenance
        .create_maintenance_window(v1::CreateMaintenanceWindowRequest {
            window: Some(window("CHG0012345", "mrs-r1/card-2", now + 3_600_000)),
        })
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::AlreadyExists);

    // The card fails inside the window: no incident, the impact is suppressed and shown so.
    let producer = producer(engine.brokers());
    produce_alarm(&producer, &Alarm::raise("mrs-r1/card-1", "EQPT_FAIL", Severity::Critical, now)).await;
    let deadline = std::time::Instant::now() + WAIT;
    let suppressed = loop {
        let list = maintenance.list_suppressed_impacts(v1::ListSuppressedImpactsRequest {}).await.unwrap().into_inner();
        if list.impacts.len() == 3 {
            break list;
        }
        assert!(std::time::Instant::now() < deadline, "not suppressed: {list:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(suppressed.impacts.iter().all(|i| i.changes == ["CHG0012345"] && i.root_causes == ["mrs-r1/card-1"]));
    let status = topology.get_ci(v1::GetCiRequest { id: "cfs-globex-vpn".into() }).await.unwrap().into_inner();
    assert_eq!(status.state, v1::ServiceState::Down as i32);
    assert!(status.suppressed);
    assert_eq!(status.maintenance, ["CHG0012345"]);
    let impact = topology.get_impact(v1::GetImpactRequest { resource: "mrs-r1/card-1".into() }).await.unwrap();
    let impact = impact.into_inner();
    assert_eq!(impact.maintenance, ["CHG0012345"]);
    assert!(impact.services.iter().all(|s| s.in_maintenance), "{:?}", impact.services);
    let listed = incidents.list_incidents(v1::ListIncidentsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.total_size, 0, "no incident pages the SOC");

    // Ended early by an operator with the card still down: the incident opens, naming it.
    let ended = maintenance
        .end_maintenance_window(v1::EndMaintenanceWindowRequest { change: "CHG0012345".into(), by: "bob".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ended.state, ended.finished_by.as_str()), (v1::MaintenanceState::Ended as i32, "bob"));
    let listed = incidents.list_incidents(v1::ListIncidentsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.total_size, 1, "opened before the answer");
    let timeline = &listed.incidents[0].timeline;
    assert!(timeline.iter().any(|e| e.kind == "maintenance" && e.text.contains("CHG0012345 ended early by bob")));

    // The changes topic: a window from change management, then its tombstone cancels it.
    let changes = format!(
        r#"{{"reason":"fibre works","cis":["par-r1/1/1"],"start":{},"end":{},"by":"cab"}}"#,
        now - 1_000,
        now + 3_600_000
    );
    let topic = &test_config().kafka.changes_topic;
    produce(&producer, topic, "CHG0020001", changes.as_bytes()).await;
    produce(&producer, topic, "CHG0020002", br#"{"cis":["par-r1/1/1"],"start":1,"end":"soon"}"#).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let got = maintenance.get_maintenance_window(v1::GetMaintenanceWindowRequest { change: "CHG0020001".into() });
        if let Ok(window) = got.await {
            let window = window.into_inner();
            assert_eq!((window.state, window.created_by.as_str()), (v1::MaintenanceState::Active as i32, "cab"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the window from the topic never came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    produce_tombstone(&producer, topic, "CHG0020001").await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let window = maintenance
            .get_maintenance_window(v1::GetMaintenanceWindowRequest { change: "CHG0020001".into() })
            .await
            .unwrap()
            .into_inner();
        if window.state == v1::MaintenanceState::Cancelled as i32 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the tombstone never cancelled it: {window:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dead = reader(engine.brokers(), "faultline.dead-letter");
    let refused = read_until(&dead, WAIT, |m| m.key() == Some(b"CHG0020002")).await;
    let reason = refused.headers().unwrap().iter().find(|h| h.key == "faultline.reason").and_then(|h| h.value);
    assert_eq!(reason, Some(&b"invalid_window"[..]));
    let listed = maintenance
        .list_maintenance_windows(v1::ListMaintenanceWindowsRequest {
            states: vec![v1::MaintenanceState::Cancelled as i32],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.windows.iter().map(|w| w.change.as_str()).collect::<Vec<_>>(), ["CHG0020001"]);
    drop((producer, dead));
    engine.stop(Duration::from_secs(10)).await.unwrap();
}
