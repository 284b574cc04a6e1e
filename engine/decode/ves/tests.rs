//! The ordering mapping over the project's lifecycle fixtures, and the 3GPP
//! `notificationId` forms that do and do not order.

use super::*;

const FAULT_LIFECYCLE: [&str; 3] = [
    include_str!("../../../tests/fixtures/ves/fault_1_raise.json"),
    include_str!("../../../tests/fixtures/ves/fault_2_severity_change.json"),
    include_str!("../../../tests/fixtures/ves/fault_3_clear.json"),
];
const STND_LIFECYCLE: [&str; 3] = [
    include_str!("../../../tests/fixtures/ves/stnd_1_new_alarm.json"),
    include_str!("../../../tests/fixtures/ves/stnd_2_changed_alarm.json"),
    include_str!("../../../tests/fixtures/ves/stnd_3_cleared_alarm.json"),
];
const BATCH: &str = include_str!("../../../tests/fixtures/ves/batch_fault_with_heartbeat_and_measurement.json");

fn alarms(json: &str) -> Result<Vec<Alarm>, DecodeError> {
    let mut out = Vec::new();
    decode(json.as_bytes(), &mut out)?;
    Ok(out)
}

fn one(json: &str) -> Alarm {
    let mut out = alarms(json).unwrap();
    assert_eq!(out.len(), 1);
    out.remove(0)
}

/// What ordering and state the alarm stage reads from each notification of a lifecycle.
fn lifecycle(fixtures: [&str; 3]) -> Vec<(String, u64, Severity, bool)> {
    let alarms: Vec<Alarm> = fixtures.into_iter().map(one).collect();
    let identity = |a: &Alarm| (a.resource.clone(), a.alarm_type.clone(), a.qualifier.clone());
    assert!(alarms.iter().all(|a| identity(a) == identity(&alarms[0])), "one alarm: {alarms:#?}");
    alarms.into_iter().map(|a| (a.notification_id, a.sequence, a.severity, a.cleared)).collect()
}

#[test]
fn a_fault_lifecycle_is_ordered_by_event_id_and_sequence() {
    let id = "nce-r1-los-1-1".to_owned();
    assert_eq!(
        lifecycle(FAULT_LIFECYCLE),
        [
            (id.clone(), 1, Severity::Major, false),
            (id.clone(), 2, Severity::Critical, false),
            (id, 3, Severity::Indeterminate, true),
        ]
    );
}

#[test]
fn a_3gpp_lifecycle_is_ordered_by_alarm_id_and_notification_id() {
    // Each notification has its own VES eventId and a header sequence of 0: neither orders.
    let id = "7781".to_owned();
    assert_eq!(
        lifecycle(STND_LIFECYCLE),
        [
            (id.clone(), 1001, Severity::Major, false),
            (id.clone(), 1002, Severity::Critical, false),
            (id, 1003, Severity::Indeterminate, true),
        ]
    );
}

#[test]
fn a_quoted_notification_id_orders_like_an_integer() {
    let quoted = STND_LIFECYCLE[1].replace(r#""notificationId": 1002"#, r#""notificationId": "1002""#);
    let alarm = one(&quoted);
    assert_eq!((alarm.notification_id.as_str(), alarm.sequence), ("7781", 1002));
}

#[test]
fn without_an_integer_notification_id_the_ves_header_orders() {
    let header = ("gnb-nce-0042-ntf-1002", 0);
    for replacement in [
        "",
        r#""notificationId": -1002,"#,
        r#""notificationId": 1002.5,"#,
        r#""notificationId": 18446744073709551616,"#,
        r#""notificationId": "1002a","#,
        r#""notificationId": "-1002","#,
        r#""notificationId": " 1002","#,
        r#""notificationId": "","#,
        r#""notificationId": "99999999999999999999","#,
        r#""notificationId": null,"#,
        r#""notificationId": [1002],"#,
    ] {
        let json = STND_LIFECYCLE[1].replace(r#""notificationId": 1002,"#, replacement);
        let alarm = one(&json);
        assert_eq!((alarm.notification_id.as_str(), alarm.sequence), header, "with `{replacement}`");
    }
}

#[test]
fn a_blank_alarm_id_is_refused() {
    let json = STND_LIFECYCLE[0].replace(r#""alarmId": "7781""#, r#""alarmId": "  ""#);
    let error = alarms(&json).unwrap_err();
    assert_eq!(error.reason(), "invalid_ves");
    assert!(error.to_string().contains("alarmId"), "{error}");
}

#[test]
fn a_batch_keeps_its_fault_and_skips_heartbeats_and_measurements() {
    let alarms = alarms(BATCH).unwrap();
    let summary: Vec<_> = alarms.iter().map(|a| (a.resource.as_str(), a.alarm_type.as_str(), a.severity)).collect();
    assert_eq!(summary, [("nce-r1/card-2", "equipmentFailure", Severity::Critical)]);
    assert_eq!((alarms[0].notification_id.as_str(), alarms[0].sequence), ("nce-r1-eqpt-card-2", 1));
}

#[test]
fn epoch_times_may_be_any_json_number() {
    // The schema types them as numbers: 1748938500000000.9 is 08:15:00 and a fraction.
    let fractional = FAULT_LIFECYCLE[0].replace("1748938500000000,", "1748938500000000.9,");
    assert_eq!(one(&fractional).event_time, 1_748_938_500_000);
    let exponent = FAULT_LIFECYCLE[0].replace("1748938500000000,", "1.7489385e15,");
    assert_eq!(one(&exponent).event_time, 1_748_938_500_000);
    for (bad, cause) in [("1e300,", "out of range"), (r#""1748938500000000","#, "must be a number")] {
        let error = alarms(&FAULT_LIFECYCLE[0].replace("1748938500000000,", bad)).unwrap_err();
        assert!(error.to_string().contains(cause), "{bad}: {error}");
    }
}

#[test]
fn a_3gpp_event_time_keeps_its_offset() {
    // A minute before the VES header's time (08:15:00 UTC).
    let json = STND_LIFECYCLE[0].replace("2025-06-03T08:15:00Z", "2025-06-03T10:14:00+02:00");
    assert_eq!(one(&json).event_time, 1_748_938_440_000);
}
