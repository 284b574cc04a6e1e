//! Golden tests over every real ONAP VES file in `../shared/formats/ves/`: the valid ones map
//! to the expected alarms, the ones named `*invalid*` are refused with a reason.

use faultline::config::AlarmFormat;
use faultline::decode::decode;
use faultline::model::alarm::{Alarm, Severity};
use std::path::PathBuf;

pub fn ves_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/formats/ves");
    assert!(dir.is_dir(), "the shared VES samples are missing: expected {} beside the checkout", dir.display());
    dir
}

/// (resource, alarm type, qualifier, severity, cleared, event time ms, notification id, source system)
type Expected = (&'static str, &'static str, &'static str, Severity, bool, i64, &'static str, &'static str);

const PILOT: Expected = (
    "scfx0001vm002cap001",
    "PilotNumberPoolExhaustion",
    "",
    Severity::Critical,
    false,
    1_413_378_172_000,
    "fault0000250",
    "ibcx0001vm002oam0011234",
);
const POWER_LOST: Expected = (
    "scfx0001vm002cap001",
    "COMMUNICATIONS_ALARM/1",
    "1",
    Severity::Indeterminate,
    false,
    1_413_378_172_000,
    "1",
    "ibcx0001vm002oam001",
);

fn expected(file: &str) -> Vec<Expected> {
    match file {
        "ves7_valid_30_1_1_event.json" => vec![(
            "scfx0001vm002cap001",
            "PilotNumberPoolExhaustion",
            "",
            Severity::Critical,
            false,
            1_413_378_172_000,
            "fault0000245",
            "ibcx0001vm002oam001",
        )],
        "ves7_batch_valid.json" => vec![
            PILOT,
            (
                "scfx0001vm002cap001",
                "RecordingServerUnreachable",
                "",
                Severity::Critical,
                false,
                1_413_378_172_000,
                "fault0000251",
                "ibcx0001vm002oam0011234",
            ),
        ],
        "ves7_batch_valid_two_different_domain.json" => vec![PILOT, POWER_LOST],
        "ves7_batch_with_stndDefined_valid.json" => vec![POWER_LOST, POWER_LOST],
        "ves_stdnDefined_valid.json" => vec![POWER_LOST],
        other => panic!("no expectation for the new sample {other}: add one"),
    }
}

fn summary(a: &Alarm) -> Expected {
    // Leak the strings: a test process, and it keeps the comparison a plain tuple.
    let s = |x: &str| -> &'static str { Box::leak(x.to_owned().into_boxed_str()) };
    (
        s(&a.resource),
        s(&a.alarm_type),
        s(&a.qualifier),
        a.severity,
        a.cleared,
        a.event_time,
        s(&a.notification_id),
        s(&a.source_system),
    )
}

#[test]
fn every_shared_ves_sample_decodes_as_expected() {
    let mut seen = 0;
    for entry in std::fs::read_dir(ves_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".json") || name.starts_with("CommonEventFormat") {
            continue;
        }
        seen += 1;
        let bytes = std::fs::read(&path).unwrap();
        let mut out = Vec::new();
        let result = decode(AlarmFormat::Ves, &bytes, 0, 1 << 20, &mut out);
        if name.contains("invalid") {
            let error = result.expect_err(&name);
            assert_eq!(error.reason(), "invalid_ves", "{name}: {error}");
            assert!(out.is_empty(), "{name}: a refused message yields no alarm");
        } else {
            result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(out.iter().map(summary).collect::<Vec<_>>(), expected(&name), "{name}");
        }
    }
    assert_eq!(seen, 8, "expected the 8 VES samples");
}

#[test]
fn normal_severity_and_cleared_notifications_are_clears() {
    let fault = std::fs::read_to_string(ves_dir().join("ves7_valid_30_1_1_event.json")).unwrap();
    let normal = fault.replace("\"CRITICAL\"", "\"NORMAL\"");
    let mut out = Vec::new();
    decode(AlarmFormat::Ves, normal.as_bytes(), 0, 1 << 20, &mut out).unwrap();
    assert!(out[0].cleared && out[0].alarm_type == "PilotNumberPoolExhaustion");

    let stnd = std::fs::read_to_string(ves_dir().join("ves_stdnDefined_valid.json")).unwrap();
    let cleared = stnd.replace("notifyNewAlarm", "notifyClearedAlarm").replace("\"INDETERMINATE\"", "\"CLEARED\"");
    let changed = stnd.replace("notifyNewAlarm", "notifyChangedAlarm").replace("\"INDETERMINATE\"", "\"MAJOR\"");
    let mut out = Vec::new();
    decode(AlarmFormat::Ves, stnd.as_bytes(), 0, 1 << 20, &mut out).unwrap();
    decode(AlarmFormat::Ves, changed.as_bytes(), 0, 1 << 20, &mut out).unwrap();
    decode(AlarmFormat::Ves, cleared.as_bytes(), 0, 1 << 20, &mut out).unwrap();
    let identities: Vec<_> = out.iter().map(|a| (&a.resource, &a.alarm_type, &a.qualifier)).collect();
    assert!(identities.windows(2).all(|w| w[0] == w[1]), "new, changed and cleared share one identity");
    assert_eq!((out[1].severity, out[1].cleared, out[2].cleared), (Severity::Major, false, true));
}

#[test]
fn a_batch_with_one_bad_event_is_refused_whole() {
    let batch = std::fs::read_to_string(ves_dir().join("ves7_batch_valid.json")).unwrap();
    let broken = batch.replacen("\"CRITICAL\"", "\"DISASTROUS\"", 1);
    let mut out = Vec::new();
    let error = decode(AlarmFormat::Ves, broken.as_bytes(), 0, 1 << 20, &mut out).unwrap_err();
    assert!(error.to_string().contains("#0"), "{error}");
    assert!(out.is_empty());
}
