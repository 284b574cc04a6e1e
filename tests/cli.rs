//! The binary as a user runs it: the demo with its summary, `watch` beside it, and
//! configuration errors that name their key before any port is bound.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn faultline() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_faultline"));
    command.env_remove("RUST_LOG").stdin(Stdio::null());
    command
}

/// The number after `label` in the demo summary.
fn summary_value(output: &str, label: &str) -> u64 {
    let line = output
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no `{label}` in:\n{output}"));
    line.trim_start()[label.len()..].trim().parse().unwrap()
}

#[test]
fn demo_plays_the_storm_and_watch_sees_it_live() {
    let mut demo = faultline()
        .args(["demo", "--duration", "28", "--grpc-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let banner = lines.next().unwrap().unwrap();
    let addr = banner.rsplit("gRPC on ").next().unwrap().trim().to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{banner}");

    let watch = faultline()
        .args(["watch", "--addr", &format!("http://{addr}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let output: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = demo.wait().unwrap();
    let output = output.join("\n");
    assert!(status.success(), "demo failed:\n{output}");

    // Both incidents open, evolve and resolve, in the demo's own table.
    let rows = |change: &str, id: &str| output.lines().filter(|l| l.contains(change) && l.contains(id)).count();
    for id in ["INC-000001", "INC-000002"] {
        assert_eq!(rows("opened", id), 1, "{id} opened once:\n{output}");
        assert_eq!(rows("resolved", id), 1, "{id} resolved once:\n{output}");
    }
    assert!(
        output.lines().any(|l| l.contains("INC-000001") && l.contains("P2") && l.contains("1 down")),
        "route A+B cut is an outage:\n{output}"
    );
    assert!(
        output.lines().any(|l| l.contains("INC-000002") && l.contains("mrs-r1/card-1") && l.contains("2/2")),
        "card with two symptoms:\n{output}"
    );
    // The service the CMDB provisions on the failed transport joins the outage at once.
    let provisioned = output.lines().position(|l| l.contains("the CMDB provisions")).expect("the provisioning");
    assert!(
        output.lines().skip(provisioned).take(3).any(|l| l.contains("INC-000001") && l.contains("2 down")),
        "the new service joins INC-000001:\n{output}"
    );
    // The card fails inside its maintenance window: its incident opens only as the window
    // ends, the card still down.
    let position = |text: &str| output.lines().position(|l| l.contains(text)).unwrap_or_else(|| panic!("no `{text}`"));
    let failed = position("line card mrs-r1 slot 1 fails, inside the window");
    let ends = position("the card's window ends at 14 s");
    let opened = output.lines().position(|l| l.contains("opened") && l.contains("INC-000002")).unwrap();
    assert!(failed < ends && ends < opened, "INC-000002 opened before its window ended:\n{output}");

    // The summary counts what the storm did: 21 notifications, 6 repeats, one severity
    // change, 7 clears, 2 incidents opened and resolved, the card's 2 port alarms as symptoms.
    assert_eq!(summary_value(&output, "alarms in"), 21);
    assert_eq!(summary_value(&output, "duplicates folded"), 6);
    assert_eq!(summary_value(&output, "severity changes"), 1);
    assert_eq!(summary_value(&output, "clears"), 7);
    assert_eq!(summary_value(&output, "incidents opened"), 2);
    assert_eq!(summary_value(&output, "incidents resolved"), 2);
    assert_eq!(summary_value(&output, "symptoms attached to a root"), 2);
    assert_eq!(summary_value(&output, "dead-lettered"), 0);

    // The watcher saw the same incidents live over gRPC, and ended when the engine stopped.
    let watched = watch.wait_with_output().unwrap();
    let watched = String::from_utf8_lossy(&watched.stdout);
    assert!(watched.lines().next().unwrap_or_default().starts_with("TIME"), "{watched}");
    for id in ["INC-000001", "INC-000002"] {
        assert!(watched.lines().any(|l| l.contains("opened") && l.contains(id)), "watch missed {id}:\n{watched}");
        assert!(watched.lines().any(|l| l.contains("resolved") && l.contains(id)), "watch missed {id}:\n{watched}");
    }
}

#[test]
fn configuration_errors_name_the_key_before_any_port_is_bound() {
    let dir = tempfile::tempdir().unwrap();
    // The address is taken: had the engine bound it first, the error would be about it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();

    let bad_key = dir.path().join("bad-key.toml");
    std::fs::write(&bad_key, "[kafka]\nbrokerz = \"localhost:9092\"\n").unwrap();
    let output =
        faultline().args(["run", "--config", bad_key.to_str().unwrap(), "--grpc-addr", &addr]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("brokerz"), "{stderr}");

    let bad_value = dir.path().join("bad-value.toml");
    std::fs::write(&bad_value, "[correlation]\ntick_millis = 0\n").unwrap();
    let output =
        faultline().args(["run", "--config", bad_value.to_str().unwrap(), "--grpc-addr", &addr]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("correlation.tick_millis"), "{stderr}");

    let output =
        faultline().args(["run", "--grpc-addr", &addr]).env("FAULTLINE__KAFKA__MAX_BATCH", "lots").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.to_lowercase().contains("kafka.max_batch"), "{stderr}");

    let missing = dir.path().join("missing.jsonl");
    let output =
        faultline().args(["run", "--topology", missing.to_str().unwrap(), "--grpc-addr", &addr]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("missing.jsonl") && !stderr.contains("bind"), "{stderr}");
    drop(taken);
}

/// The engine's log, read on: its pipe stays open while the engine runs.
type Log = std::io::Lines<BufReader<std::process::ChildStderr>>;

/// `faultline run` on the sample network, free ports; returns it once started, with the
/// line that says so and the rest of its log.
fn run_sample() -> (std::process::Child, String, Log) {
    let mut run = faultline()
        .args(["run", "--grpc-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--topology"])
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sample-network.jsonl"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(run.stderr.take().unwrap()).lines();
    let started = stderr.by_ref().map(|l| l.unwrap()).find(|l| l.contains("faultline started"));
    (run, started.expect("the engine did not report its start"), stderr)
}

#[test]
fn run_serves_until_sigterm_and_exits_cleanly() {
    let (mut run, _, _log) = run_sample();
    let pid = run.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = run.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still running 20 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn generate_writes_a_network_and_a_storm_the_engine_reads() {
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net.jsonl");
    let storm = dir.path().join("storm.jsonl");
    let run = |args: &[&str]| {
        let output = faultline().args(args).output().unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
    };

    let (ok, stderr) = run(&["generate", "topology", "--cis", "3000", "--seed", "5", "--out", net.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("3000 CIs"), "{stderr}");
    let net_stderr = stderr;
    let topology = faultline::topology_file::load(&net).expect("the engine loads what generate writes");
    assert_eq!(topology.len(), 3000);

    let args = ["--topology", net.to_str().unwrap(), "--rate", "500", "--duration", "10s", "--seed", "2"];
    let (ok, stderr) =
        run(&[&["generate", "alarms", "--scenario", "card-failure"][..], &args, &["--out", storm.to_str().unwrap()]]
            .concat());
    assert!(ok, "{stderr}");
    let text = std::fs::read_to_string(&storm).unwrap();
    assert_eq!(text.lines().count(), 5_000, "500/s for 10 s");
    let mut alarms = Vec::new();
    for line in text.lines() {
        faultline::decode::decode(faultline::config::AlarmFormat::Json, line.as_bytes(), 0, 1 << 20, &mut alarms)
            .unwrap();
    }
    assert!(alarms.iter().all(|a| topology.lookup(&a.resource).is_some()), "every alarm is on a known resource");
    assert_eq!(alarms[0].alarm_type, "EQPT_FAIL", "a card failure starts at the card");
    assert_eq!(alarms[10].event_time - alarms[0].event_time, 20, "2 ms apart at 500/s");

    // Denser: the same CIs, VPNs spanning six sites, about three relations per CI.
    let relations = |stderr: &str| -> usize {
        let before = stderr.split(" relations").next().unwrap();
        before.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let dense = dir.path().join("dense.jsonl");
    let (ok, dense_stderr) = run(&[
        "generate",
        "topology",
        "--cis",
        "3000",
        "--seed",
        "5",
        "--vpn-sites",
        "6",
        "--out",
        dense.to_str().unwrap(),
    ]);
    assert!(ok, "{dense_stderr}");
    assert_eq!(faultline::topology_file::load(&dense).unwrap().len(), 3000);
    assert!(relations(&dense_stderr) > relations(&net_stderr) * 3 / 2, "{net_stderr}\n{dense_stderr}");
    let (ok, stderr) = run(&["generate", "topology", "--cis", "3000", "--vpn-sites", "0", "--out", "x"]);
    assert!(!ok && stderr.contains("--vpn-sites"), "{stderr}");

    let (ok, stderr) = run(&["generate", "topology", "--cis", "10", "--out", net.to_str().unwrap()]);
    assert!(!ok && stderr.contains("--cis 10 is too small"), "{stderr}");
    let (ok, stderr) = run(&[&["generate", "alarms", "--scenario", "meteor"][..], &args, &["--out", "x"]].concat());
    assert!(!ok && stderr.contains("fibre-cut"), "the error lists the scenarios: {stderr}");
}

/// Every key of the configuration set from its `FAULTLINE__` environment variable, as a
/// user writes it in a shell or a container spec: numbers and words unquoted, lists and
/// tables in TOML's inline syntax, alarm types in their own case, librdkafka properties
/// with `_` for `.`. `faultline config` shows what the engine would run with.
#[test]
fn every_key_is_settable_from_its_environment_variable() {
    let settings: &[(&str, &str, &str)] = &[
        ("KAFKA__BROKERS", "kafka1:9092,kafka2:9092", "kafka.brokers = \"kafka1:9092,kafka2:9092\""),
        ("KAFKA__GROUP_ID", "2", "kafka.group_id = \"2\""),
        ("KAFKA__INSTANCE_ID", "2", "kafka.instance_id = \"2\""),
        ("KAFKA__INCIDENTS_TOPIC", "inc", "kafka.incidents_topic = \"inc\""),
        ("KAFKA__INCIDENTS_FORMAT", "json", "kafka.incidents_format = \"json\""),
        ("KAFKA__DEAD_LETTER_TOPIC", "dlq", "kafka.dead_letter_topic = \"dlq\""),
        ("KAFKA__STATE_TOPIC", "state", "kafka.state_topic = \"state\""),
        ("KAFKA__TOPOLOGY_TOPIC", "cmdb", "kafka.topology_topic = \"cmdb\""),
        ("KAFKA__CHANGES_TOPIC", "chg", "kafka.changes_topic = \"chg\""),
        ("KAFKA__COMMIT_INTERVAL_MS", "250", "kafka.commit_interval_ms = 250"),
        ("KAFKA__RESTORE_TIMEOUT_SECS", "30", "kafka.restore_timeout_secs = 30"),
        ("KAFKA__MAX_MESSAGE_BYTES", "65536", "kafka.max_message_bytes = 65536"),
        ("KAFKA__MAX_RECORD_BYTES", "900000", "kafka.max_record_bytes = 900000"),
        ("KAFKA__MAX_EVENT_TIME_AHEAD_SECS", "9", "kafka.max_event_time_ahead_secs = 9"),
        ("KAFKA__PARTITIONS", "12", "kafka.partitions = 12"),
        ("KAFKA__MAX_BATCH", "64", "kafka.max_batch = 64"),
        (
            "KAFKA__INPUTS",
            "[{topic=\"ves-in\",format=\"ves\"}]",
            "kafka.inputs = [{ topic = \"ves-in\", format = \"ves\" }]",
        ),
        (
            "KAFKA__PROPERTIES__SASL_MECHANISM",
            "SCRAM-SHA-512",
            "kafka.properties.\"sasl.mechanism\" = \"SCRAM-SHA-512\"",
        ),
        ("GRPC__ADDR", "0.0.0.0:7000", "grpc.addr = \"0.0.0.0:7000\""),
        ("GRPC__SUBSCRIBER_BUFFER", "100", "grpc.subscriber_buffer = 100"),
        ("GRPC__MAX_SUBSCRIBERS", "20", "grpc.max_subscribers = 20"),
        ("GRPC__HISTORY_MAX_INCIDENTS", "5000", "grpc.history_max_incidents = 5000"),
        ("METRICS__ADDR", "0.0.0.0:7001", "metrics.addr = \"0.0.0.0:7001\""),
        ("TOPOLOGY__FILE", "/etc/faultline/net.jsonl", "topology.file = \"/etc/faultline/net.jsonl\""),
        ("TOPOLOGY__MAX_HELD", "5000", "topology.max_held = 5000"),
        ("TOPOLOGY__MAX_HELD_SECS", "600", "topology.max_held_secs = 600"),
        ("CORRELATION__HOLD_DOWN_SECS", "120", "correlation.hold_down_secs = 120"),
        ("CORRELATION__REOPEN_WINDOW_SECS", "60", "correlation.reopen_window_secs = 60"),
        ("CORRELATION__TICK_MILLIS", "100", "correlation.tick_millis = 100"),
        ("CORRELATION__IDLE_CLOCK_MILLIS", "1000", "correlation.idle_clock_millis = 1000"),
        ("CORRELATION__MAX_CLOCK_SKEW_MILLIS", "500", "correlation.max_clock_skew_millis = 500"),
        ("CORRELATION__CLEAR_MEMORY_SECS", "60", "correlation.clear_memory_secs = 60"),
        ("CORRELATION__MAX_UNMAPPED_RESOURCES", "500", "correlation.max_unmapped_resources = 500"),
        ("CORRELATION__TIMELINE_LIMIT", "50", "correlation.timeline_limit = 50"),
        ("CORRELATION__MAX_NOTES", "20", "correlation.max_notes = 20"),
        ("CORRELATION__INCIDENT_MAX_ROOTS", "40", "correlation.incident_max_roots = 40"),
        ("CORRELATION__INCIDENT_MAX_ALARMS", "30", "correlation.incident_max_alarms = 30"),
        ("CORRELATION__ALARM_EFFECTS__LOS", "none", "correlation.alarm_effects.LOS = \"none\""),
        ("CORRELATION__ALARM_MAX_AGE_SECS__EMS_PARIS", "86400", "correlation.alarm_max_age_secs.EMS_PARIS = 86400"),
        ("CORRELATION__PRIORITY__MANY_CUSTOMERS", "3", "correlation.priority.many_customers = 3"),
        (
            "CORRELATION__PRIORITY__MATRIX",
            "[[1,1,2],[2,3,4],[3,4,5]]",
            "correlation.priority.matrix = [[1, 1, 2], [2, 3, 4], [3, 4, 5]]",
        ),
    ];
    let mut command = faultline();
    command.arg("config");
    for (name, value, _) in settings {
        command.env(format!("FAULTLINE__{name}"), value);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let shown: toml::Table = toml::from_str(&stdout).unwrap();
    for (name, _, expected) in settings {
        let wanted: toml::Table = toml::from_str(expected).unwrap();
        assert!(contains(&shown, &wanted), "FAULTLINE__{name}: expected `{expected}` in:\n{stdout}");
    }
    // Every key the engine has was set above: a key added later must be added here too.
    let mut set = toml::Table::new();
    for (_, _, expected) in settings {
        merge(&mut set, toml::from_str(expected).unwrap());
    }
    assert_eq!(leaf_keys(&shown), leaf_keys(&set), "keys without an environment check");

    // A value of the wrong kind names its variable.
    let output = faultline().arg("config").env("FAULTLINE__KAFKA__PARTITIONS", "many").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("PARTITIONS"), "{stderr}");
}

fn contains(table: &toml::Table, wanted: &toml::Table) -> bool {
    wanted.iter().all(|(key, value)| match (table.get(key), value) {
        (Some(toml::Value::Table(have)), toml::Value::Table(want)) => contains(have, want),
        (Some(have), want) => have == want,
        (None, _) => false,
    })
}

fn merge(into: &mut toml::Table, from: toml::Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(have)), toml::Value::Table(more)) => merge(have, more),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// Dotted names of the leaves, the maps of free keys (alarm effects, properties) as one.
fn leaf_keys(table: &toml::Table) -> Vec<String> {
    let mut keys = Vec::new();
    for (key, value) in table {
        match value {
            toml::Value::Table(inner) if !matches!(key.as_str(), "alarm_effects" | "properties") => {
                keys.extend(leaf_keys(inner).into_iter().map(|k| format!("{key}.{k}")))
            }
            _ => keys.push(key.clone()),
        }
    }
    keys.sort();
    keys
}

/// `faultline topology apply` shows what a file changes in a running engine's topology,
/// applies it as one batch (or, refused, nothing, with the engine's reason), and
/// `faultline topology get` shows a CI as the batch left it.
#[test]
fn topology_apply_shows_the_diff_and_applies_it_as_one_batch() {
    let (mut run, started, _log) = run_sample();
    let at = started.find(" grpc_addr=").expect("the gRPC address is logged") + " grpc_addr=".len();
    let addr = format!("http://{}", started[at..].split_whitespace().next().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("changes.jsonl");
    std::fs::write(
        &file,
        concat!(
            "# a new port, and the Marseille router with a new attribute\n",
            r#"{"id":"mrs-r1/9/1","class":"port","depends_on":["mrs-r1/card-2"]}"#,
            "\n",
            r#"{"id":"mrs-r1","class":"device","name":"Marseille core router 1","depends_on":["site-mrs"],"attributes":{"vendor":"acme-networks","role":"core","rack":"B4"}}"#,
            "\n",
            r#"{"id":"par-r1","class":"device","name":"Paris core router 1","depends_on":["site-par"],"attributes":{"vendor":"acme-networks","role":"core"}}"#,
            "\n",
        ),
    )
    .unwrap();
    let topology = |args: &[&str]| {
        let output = faultline().arg("topology").args(args).args(["--addr", &addr]).output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let file_arg = file.to_str().unwrap();

    let (ok, out, err) = topology(&["apply", file_arg, "--dry-run"]);
    assert!(ok, "{err}");
    assert!(out.contains("+ mrs-r1/9/1 (port)") && out.contains("~ mrs-r1 (attributes)"), "{out}");
    assert!(!out.contains("par-r1 "), "an unchanged CI is not listed: {out}");
    assert!(out.contains("1 to add, 1 to change, 0 to delete; not applied"), "{out}");

    let (ok, out, err) = topology(&["apply", file_arg]);
    assert!(ok, "{err}");
    assert!(out.contains("applied: 1 added, 1 changed, 0 deleted; topology version 1"), "{out}");
    let (ok, out, _) = topology(&["apply", file_arg]);
    assert!(ok && out.contains("nothing to change (topology version 1)"), "{out}");

    let (ok, out, err) = topology(&["get", "mrs-r1/9/1"]);
    assert!(ok, "{err}");
    assert!(out.contains("class        port") && out.contains("depends on   mrs-r1/card-2"), "{out}");
    assert!(out.contains("state        up") && out.contains("topology version 1"), "{out}");

    let output = faultline().args(["what-if", "mrs-r1", "--addr", &addr]).output().unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(out.starts_with("this change would take down 3 services and degrade 1 more"), "{out}");
    assert!(out.contains("cfs-initech-internet") && out.contains("would open an incident of priority P"), "{out}");

    // Refused whole: the engine's reason, naming the CI, and a failing exit status.
    std::fs::write(&file, r#"{"id":"cfs-x","class":"cfs","depends_on":["nowhere"]}"#).unwrap();
    let (ok, _, err) = topology(&["apply", file_arg]);
    assert!(!ok && err.contains("cfs-x") && err.contains("nowhere"), "{err}");
    let (ok, _, err) = topology(&["get", "cfs-x"]);
    assert!(!ok && err.contains("cfs-x"), "{err}");

    Command::new("kill").args(["-TERM", &run.id().to_string()]).status().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while run.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "still running 20 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `faultline maintenance`: a window created on a running engine with the change
/// assessment shown, listed, then ended (nothing left suppressed); bad windows and a second
/// end refused with the reason.
#[test]
fn maintenance_windows_are_created_listed_and_ended_from_the_command_line() {
    let (mut run, started, _log) = run_sample();
    let at = started.find(" grpc_addr=").expect("the gRPC address is logged") + " grpc_addr=".len();
    let addr = format!("http://{}", started[at..].split_whitespace().next().unwrap());
    let maintenance = |args: &[&str]| {
        let output = faultline().arg("maintenance").args(args).args(["--addr", &addr]).output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, out, err) = maintenance(&[
        "create",
        "CHG0012345",
        "--ci",
        "mrs-r1/card-1",
        "--end",
        "+2h",
        "--reason",
        "line card swap",
        "--by",
        "alice",
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("CHG0012345 active"), "{out}");
    assert!(out.contains("reason: line card swap"), "{out}");
    assert!(out.contains("this change would take down 3 services and degrade 1 more"), "{out}");
    let (ok, out, _) = maintenance(&["list"]);
    assert!(ok && out.contains("CHG0012345 active"), "{out}");

    let (ok, _, err) = maintenance(&["create", "CHG9", "--ci", "nowhere", "--end", "+1h"]);
    assert!(!ok && err.contains("nowhere"), "{err}");
    let (ok, _, err) = maintenance(&["create", "CHG9", "--ci", "mrs-r1", "--end", "yesterday"]);
    assert!(!ok && err.contains("yesterday"), "{err}");

    let (ok, out, _) = maintenance(&["end", "CHG0012345", "--by", "bob"]);
    assert!(ok && out.contains("CHG0012345 ended") && out.contains("by bob"), "{out}");
    let (ok, out, _) = maintenance(&["suppressed"]);
    assert!(ok && out.contains("no impact in maintenance"), "{out}");
    let (ok, _, err) = maintenance(&["end", "CHG0012345"]);
    assert!(!ok && err.contains("over"), "{err}");

    Command::new("kill").args(["-TERM", &run.id().to_string()]).status().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while run.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "still running 20 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}
