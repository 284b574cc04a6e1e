//! Golden tests of the VES decoder. The project's own fixtures (`tests/fixtures/ves/`, listed
//! in their README) always run: each valid file maps to the expected alarms, each
//! `*invalid*` one is refused for the expected cause. The real ONAP samples in
//! `../shared/formats/ves/` beside the checkout are checked too when they are there; when
//! they are not, that check is skipped with a notice, except under `CI=true`, where their
//! absence is a failure.

use faultline::config::AlarmFormat;
use faultline::decode::decode;
use faultline::model::alarm::{Alarm, Severity};
use std::path::{Path, PathBuf};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ves")
}

/// The shared ONAP samples, if they are beside the checkout.
fn shared_samples_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/formats/ves");
    if dir.is_dir() {
        return Some(dir);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(!ci, "CI=true and the shared ONAP VES samples are missing: expected {}", dir.display());
    eprintln!("skipped: no shared ONAP VES samples at {} (with CI=true this fails)", dir.display());
    None
}

/// Every VES message file of a directory (the JSON schema aside), by name.
fn samples(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| (path.file_name().unwrap().to_string_lossy().into_owned(), path))
        .filter(|(name, _)| !name.starts_with("CommonEventFormat"))
        .map(|(name, path)| (name, std::fs::read(path).unwrap()))
        .collect();
    files.sort();
    files
}

/// What a test checks of a decoded alarm.
#[derive(Debug, PartialEq)]
struct Expected<'a> {
    resource: &'a str,
    alarm_type: &'a str,
    qualifier: &'a str,
    severity: Severity,
    cleared: bool,
    event_time: i64,
    notification_id: &'a str,
    sequence: u64,
    source_system: &'a str,
}

fn summary(a: &Alarm) -> Expected<'_> {
    Expected {
        resource: &a.resource,
        alarm_type: &a.alarm_type,
        qualifier: &a.qualifier,
        severity: a.severity,
        cleared: a.cleared,
        event_time: a.event_time,
        notification_id: &a.notification_id,
        sequence: a.sequence,
        source_system: &a.source_system,
    }
}

/// What a file must decode to: alarms, an alarm list (its source, its time and its
/// alarms), or a refusal whose message holds these words.
enum Outcome {
    Alarms(Vec<Expected<'static>>),
    List(&'static str, i64, Vec<Expected<'static>>),
    Refused(&'static str),
}

/// Checks every file of `dir` against `expected`, and that it knows every file.
fn check(dir: &Path, expected: fn(&str) -> Option<Outcome>) -> usize {
    let files = samples(dir);
    for (name, bytes) in &files {
        let outcome = expected(name).unwrap_or_else(|| panic!("no expectation for {name}: add one"));
        assert_eq!(name.contains("invalid"), matches!(outcome, Outcome::Refused(_)), "{name}: named for its outcome");
        let mut out = Vec::new();
        let result = decode(AlarmFormat::Ves, bytes, 0, 1 << 20, &mut out);
        match outcome {
            Outcome::Alarms(alarms) => {
                let resync = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(resync.is_none(), "{name}: not an alarm list");
                assert_eq!(out.iter().map(summary).collect::<Vec<_>>(), alarms, "{name}");
            }
            Outcome::List(source, as_of, alarms) => {
                let resync = result.unwrap_or_else(|e| panic!("{name}: {e}")).expect("an alarm list");
                assert_eq!((resync.source_system.as_str(), resync.as_of), (source, as_of), "{name}");
                assert_eq!(out.iter().map(summary).collect::<Vec<_>>(), alarms, "{name}");
            }
            Outcome::Refused(cause) => {
                let error = result.expect_err(name);
                assert_eq!(error.reason(), "invalid_ves", "{name}: {error}");
                assert!(error.to_string().contains(cause), "{name}: refused as `{error}`, not for {cause}");
                assert!(out.is_empty(), "{name}: a refused message yields no alarm");
            }
        }
    }
    files.len()
}

/// 2025-06-03T08:15:00Z, when the fixtures' faults start.
const T0: i64 = 1_748_938_500_000;

const LOS: Expected = Expected {
    resource: "nce-r1/1/1",
    alarm_type: "lossOfSignal",
    qualifier: "1/1",
    severity: Severity::Major,
    cleared: false,
    event_time: T0,
    notification_id: "nce-r1-los-1-1",
    sequence: 1,
    source_system: "ems-nice-1",
};

const X2_LINK: Expected = Expected {
    resource: "gnb-nce-0042",
    alarm_type: "COMMUNICATIONS_ALARM/LOSS_OF_SIGNAL",
    qualifier: "7781",
    severity: Severity::Major,
    cleared: false,
    event_time: T0,
    notification_id: "7781",
    sequence: 1001,
    source_system: "oam-nce-1",
};

fn own_fixture(name: &str) -> Option<Outcome> {
    use Outcome::*;
    Some(match name {
        "fault_1_raise.json" => Alarms(vec![LOS]),
        "fault_2_severity_change.json" => {
            Alarms(vec![Expected { severity: Severity::Critical, event_time: T0 + 90_000, sequence: 2, ..LOS }])
        }
        "fault_3_clear.json" => Alarms(vec![Expected {
            severity: Severity::Indeterminate,
            cleared: true,
            event_time: T0 + 360_000,
            sequence: 3,
            ..LOS
        }]),
        "batch_fault_with_heartbeat_and_measurement.json" => Alarms(vec![Expected {
            resource: "nce-r1/card-2",
            alarm_type: "equipmentFailure",
            qualifier: "",
            severity: Severity::Critical,
            event_time: T0 + 312_000,
            notification_id: "nce-r1-eqpt-card-2",
            sequence: 1,
            ..LOS
        }]),
        "stnd_1_new_alarm.json" => Alarms(vec![X2_LINK]),
        "stnd_2_changed_alarm.json" => {
            Alarms(vec![Expected { severity: Severity::Critical, event_time: T0 + 90_000, sequence: 1002, ..X2_LINK }])
        }
        "stnd_3_cleared_alarm.json" => Alarms(vec![Expected {
            severity: Severity::Indeterminate,
            cleared: true,
            event_time: T0 + 360_000,
            sequence: 1003,
            ..X2_LINK
        }]),
        "resync_alarm_list.json" => List(
            "ems-nice-1",
            T0 + 600_000,
            vec![
                LOS,
                Expected {
                    resource: "nce-r1",
                    alarm_type: "fanFailure",
                    qualifier: "",
                    severity: Severity::Minor,
                    event_time: T0 + 300_000,
                    notification_id: "nce-r1-fan-2",
                    sequence: 7,
                    ..LOS
                },
            ],
        ),
        // A 3GPP notifyAlarmListRebuilt carries no alarm and makes no list: skipped.
        "stnd_alarm_list_rebuilt.json" => Alarms(vec![X2_LINK]),
        "invalid_resync_marker_not_first.json" => {
            Refused("#1 of the batch: an alarm-list marker must be the batch's first")
        }
        "invalid_header_missing_fields.json" => Refused("`sequence` is required"),
        "invalid_listener_version_5.json" => Refused("`vesEventListenerVersion` is `5.4.1`"),
        "invalid_event_severity.json" => Refused("`eventSeverity` is `SEVERE`"),
        "invalid_negative_sequence.json" => Refused("`sequence` must not be negative"),
        "invalid_batch_one_bad_event.json" => Refused("#1 of the batch: `alarmCondition` is required"),
        "invalid_empty_event_list.json" => Refused("`eventList` must be a non-empty array"),
        "invalid_event_and_event_list.json" => Refused("either `event` or `eventList`"),
        "invalid_stnd_perceived_severity.json" => Refused("`perceivedSeverity` is `SEVERE`"),
        "invalid_stnd_missing_alarm_id.json" => Refused("`alarmId` is required"),
        _ => return None,
    })
}

#[test]
fn every_own_fixture_decodes_as_expected() {
    assert_eq!(check(&fixtures_dir(), own_fixture), 19, "the fixtures in tests/fixtures/ves");
}

/// Expectations for the real ONAP samples (`ves4_invalid.json` and the like are refused).
fn shared_sample(name: &str) -> Option<Outcome> {
    const PILOT: Expected = Expected {
        resource: "scfx0001vm002cap001",
        alarm_type: "PilotNumberPoolExhaustion",
        qualifier: "",
        severity: Severity::Critical,
        cleared: false,
        event_time: 1_413_378_172_000,
        notification_id: "fault0000250",
        sequence: 1,
        source_system: "ibcx0001vm002oam0011234",
    };
    // The alarmId and the notificationId order a 3GPP notification: both are 1 here.
    const POWER_LOST: Expected = Expected {
        alarm_type: "COMMUNICATIONS_ALARM/1",
        qualifier: "1",
        severity: Severity::Indeterminate,
        notification_id: "1",
        source_system: "ibcx0001vm002oam001",
        ..PILOT
    };
    use Outcome::*;
    Some(match name {
        "ves7_valid_30_1_1_event.json" => {
            Alarms(vec![Expected { notification_id: "fault0000245", source_system: "ibcx0001vm002oam001", ..PILOT }])
        }
        "ves7_batch_valid.json" => Alarms(vec![
            PILOT,
            Expected {
                alarm_type: "RecordingServerUnreachable",
                notification_id: "fault0000251",
                sequence: 0,
                ..PILOT
            },
        ]),
        "ves7_batch_valid_two_different_domain.json" => Alarms(vec![PILOT, POWER_LOST]),
        "ves7_batch_with_stndDefined_valid.json" => Alarms(vec![POWER_LOST, POWER_LOST]),
        "ves_stdnDefined_valid.json" => Alarms(vec![POWER_LOST]),
        "ves4_invalid.json" => Refused("`vesEventListenerVersion` is required"),
        "ves7_invalid_30_1_1_event.json" => Refused("`vesEventListenerVersion` is `30.0.1`"),
        "ves_stdnDefined_invalid.json" => Refused("`alarmId` must be a string"),
        _ => return None,
    })
}

#[test]
fn every_shared_onap_sample_decodes_as_expected() {
    let Some(dir) = shared_samples_dir() else { return };
    assert_eq!(check(&dir, shared_sample), 8, "the ONAP samples in {}", dir.display());
}
