//! `faultline demo`: the engine on the embedded Kafka cluster with the sample network, and
//! a scripted storm played into the alarms topic: a fibre cut on one of two redundant routes
//! (degraded), then on the second (outage), a service provisioned by the CMDB on the failed
//! transport (it joins the incident), a card failure during planned works on it (no incident
//! until the window ends, the card still down), its ports' symptom alarms, repeats, a
//! severity change, then the clears that restore everything. Incident changes are printed as
//! they arrive over gRPC; a summary ends the run.

use super::watch::{WatchOptions, watch};
use crate::clock::wall_clock;
use crate::config::{Config, Overrides};
use crate::correlate::Stats;
use crate::kafka;
use crate::model::alarm::{Alarm, Severity};
use crate::proto;
use crate::runtime::Engine;
use crate::topology_file;
use prost::Message;
use rdkafka::producer::FutureRecord;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The sample network, built in so the demo runs from any directory.
pub const SAMPLE_NETWORK: &str = include_str!("../../config/sample-network.jsonl");

/// One cycle of the storm, then a pause; the storm repeats until the demo ends.
const CYCLE: Duration = Duration::from_secs(40);

enum Action {
    Say(&'static str),
    Raise(&'static str, &'static str, Severity, &'static str),
    Clear(&'static str, &'static str),
    /// A CI record from the CMDB, on the topology topic: (id, record).
    Provision(&'static str, &'static str),
    /// A maintenance window from change management, on the changes topic: the change
    /// reference (the cycle's number is appended), the CI, and how long from now it lasts.
    Maintenance(&'static str, &'static str, u64),
}

use Action::{Clear, Maintenance, Provision, Raise, Say};
use Severity::{Critical, Major};

const SCRIPT: &[(u64, Action)] = &[
    (1_000, Say("fibre cut on Paris-Lyon route A: the transport loses its redundancy")),
    (1_000, Raise("par-r1/1/1", "LOS", Critical, "loss of signal")),
    (1_050, Raise("lyo-r1/1/1", "LOS", Critical, "loss of signal")),
    (3_000, Say("the element managers repeat their alarms")),
    (3_000, Raise("par-r1/1/1", "LOS", Critical, "loss of signal")),
    (3_000, Raise("lyo-r1/1/1", "LOS", Critical, "loss of signal")),
    (3_500, Raise("par-r1/1/1", "LOS", Critical, "loss of signal")),
    (3_500, Raise("lyo-r1/1/1", "LOS", Critical, "loss of signal")),
    (6_000, Say("fibre cut on route B: Paris-Lyon is down")),
    (6_000, Raise("par-r1/2/1", "LOS", Critical, "loss of signal")),
    (6_050, Raise("lyo-r1/2/1", "LOS", Critical, "loss of signal")),
    (7_500, Say("the CMDB provisions ACME's backup VPN on the failed transport: it joins the outage")),
    (
        7_500,
        Provision(
            "cfs-acme-backup",
            r#"{"id":"cfs-acme-backup","class":"cfs","name":"ACME backup VPN","customer":"cust-acme","depends_on":["rfs-par-lyo-transport"]}"#,
        ),
    ),
    (9_000, Say("planned works on mrs-r1 slot 1 for 5 s (change CHG-DEMO-n): its failure pages no one meanwhile")),
    (9_000, Maintenance("CHG-DEMO-", "mrs-r1/card-1", 5_000)),
    (10_000, Say("line card mrs-r1 slot 1 fails, inside the window; its ports follow")),
    (10_000, Raise("mrs-r1/card-1", "EQPT_FAIL", Critical, "card failure")),
    (10_300, Raise("mrs-r1/1/1", "LOS", Major, "loss of signal")),
    (10_300, Raise("mrs-r1/1/2", "LOS", Major, "loss of signal")),
    (
        13_000,
        Say("more repeats, and a severity change on route A; the card's window ends at 14 s, the card still down"),
    ),
    (13_000, Raise("mrs-r1/card-1", "EQPT_FAIL", Critical, "card failure")),
    (13_000, Raise("mrs-r1/1/1", "LOS", Major, "loss of signal")),
    (13_000, Raise("par-r1/1/1", "LOS", Major, "loss of signal")),
    (16_000, Say("route B repaired: Paris-Lyon back to degraded")),
    (16_000, Clear("par-r1/2/1", "LOS")),
    (16_050, Clear("lyo-r1/2/1", "LOS")),
    (18_000, Say("route A repaired: Paris-Lyon restored")),
    (18_000, Clear("par-r1/1/1", "LOS")),
    (18_050, Clear("lyo-r1/1/1", "LOS")),
    (19_000, Say("card replaced: Marseille restored")),
    (19_000, Clear("mrs-r1/1/1", "LOS")),
    (19_000, Clear("mrs-r1/1/2", "LOS")),
    (19_300, Clear("mrs-r1/card-1", "EQPT_FAIL")),
    (19_500, Say("every service is back; incidents resolve after the hold-down")),
];

pub struct DemoOptions {
    /// Stop on its own after this long; otherwise run until `shutdown`.
    pub duration: Option<Duration>,
    pub grpc_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
}

/// Runs the demo and returns the engine's counters at the end.
pub async fn run(options: DemoOptions, shutdown: CancellationToken) -> anyhow::Result<Stats> {
    let overrides = Overrides {
        grpc_addr: Some(options.grpc_addr),
        metrics_addr: Some(options.metrics_addr),
        ..Overrides::default()
    };
    let config = Config::defaults(&overrides)?
        .with("correlation.hold_down_secs", 5)?
        .with("correlation.reopen_window_secs", 10)?
        .with("correlation.tick_millis", 100)?
        // The storm ends in silence: let the clock follow the wall soon after.
        .with("correlation.idle_clock_millis", 1000)?;
    let topology = Arc::new(topology_file::parse(SAMPLE_NETWORK, "sample network")?);
    let engine = Engine::start_with(&config, topology).await?;
    let alarms_topic = config.kafka.inputs[0].topic.clone();
    let topology_topic = config.kafka.topology_topic.clone();
    let changes_topic = config.kafka.changes_topic.clone();
    println!("faultline demo: embedded Kafka at {}, gRPC on {}", engine.brokers(), engine.grpc_addr());
    println!("  watch from another terminal:  faultline watch --addr http://{}", engine.grpc_addr());
    println!("  or list the API:              grpcurl -plaintext {} list", engine.grpc_addr());
    println!("  metrics:                      curl http://{}/metrics", engine.metrics_addr());
    println!();

    let watcher = tokio::spawn(watch(
        WatchOptions { addr: format!("http://{}", engine.grpc_addr()), ..WatchOptions::default() },
        std::io::stdout(),
    ));
    let producer = kafka::producer(&config.kafka, engine.brokers())?;
    let started = Instant::now();
    let deadline = options.duration.map(|d| started + d);
    let stopped = async {
        match deadline {
            Some(deadline) => tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {},
                _ = shutdown.cancelled() => {},
            },
            None => shutdown.cancelled().await,
        }
    };
    let play = async {
        let mut cycle_start = started;
        let mut cycle = 0;
        loop {
            cycle += 1;
            for (offset, action) in SCRIPT {
                tokio::time::sleep_until(cycle_start + Duration::from_millis(*offset)).await;
                let alarm = match action {
                    Say(text) => {
                        println!("── {text}");
                        continue;
                    }
                    Provision(id, record) => {
                        let record = FutureRecord::to(&topology_topic).key(*id).payload(*record);
                        if let Err((error, _)) = producer.send(record, Duration::from_secs(5)).await {
                            eprintln!("demo: could not produce a CI record: {error}");
                        }
                        continue;
                    }
                    Maintenance(change, ci, lasts) => {
                        let now = wall_clock();
                        let change = format!("{change}{cycle}");
                        let window = serde_json::json!({
                            "reason": "line card swap", "cis": [ci], "start": now,
                            "end": now + *lasts as i64, "by": "demo-cab",
                        })
                        .to_string();
                        let record = FutureRecord::to(&changes_topic).key(&change).payload(&window);
                        if let Err((error, _)) = producer.send(record, Duration::from_secs(5)).await {
                            eprintln!("demo: could not produce a maintenance window: {error}");
                        }
                        continue;
                    }
                    Raise(resource, alarm_type, severity, text) => {
                        let mut alarm = Alarm::raise(resource, alarm_type, *severity, wall_clock());
                        alarm.text = (*text).to_owned();
                        alarm.source_system = "demo-ems".to_owned();
                        alarm
                    }
                    Clear(resource, alarm_type) => Alarm::clear(resource, alarm_type, wall_clock()),
                };
                let payload = proto::alarm_to_proto(&alarm).encode_to_vec();
                let record = FutureRecord::to(&alarms_topic).key(&alarm.resource).payload(&payload);
                if let Err((error, _)) = producer.send(record, Duration::from_secs(5)).await {
                    eprintln!("demo: could not produce an alarm: {error}");
                }
            }
            cycle_start += CYCLE;
            tokio::time::sleep_until(cycle_start).await;
        }
    };
    tokio::select! {
        _ = stopped => {},
        _ = play => {},
    }

    let stats = engine.handle().call(|ctx| ctx.stats()).await?;
    watcher.abort();
    drop(producer);
    engine.stop(Duration::from_secs(10)).await?;
    print_summary(&stats);
    Ok(stats)
}

fn print_summary(core: &Stats) {
    println!();
    println!("── summary");
    println!("  alarms in                      {}", core.alarms_in + core.refused);
    println!("  duplicates folded              {}", core.duplicates);
    println!("  severity changes               {}", core.severity_changes);
    println!("  clears                         {}", core.cleared);
    println!("  incidents opened               {}", core.incidents.opened);
    println!("  incidents resolved             {}", core.incidents.resolved);
    println!("  incidents reopened             {}", core.incidents.reopened);
    println!("  symptoms attached to a root    {}", core.incidents.symptoms_attached);
    println!("  dead-lettered                  {}", core.refused);
}
