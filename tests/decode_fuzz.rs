//! The decoders under hostile input, on stable Rust (proptest): arbitrary bytes, and valid
//! messages (the VES fixtures, a JSON alarm, an encoded protobuf `Alarm`) broken at random:
//! fields deleted or given values of other JSON types, huge, negative and fractional
//! numbers, long and unicode strings, deep nesting, duplicated keys, truncation at any
//! byte, batches mixing good and bad events, protobuf fields of any number and wire type.
//!
//! Whatever comes in, `decode` returns: the alarms, each with a resource and an alarm type,
//! or a refusal with one of the documented reasons, the output left as it was. A failure
//! found here is fixed with a unit test beside the decoder, so the cases need not persist.
//! `PROPTEST_CASES=100000 cargo test --test decode_fuzz` searches longer.

use faultline::config::AlarmFormat;
use faultline::decode::decode;
use faultline::model::alarm::{Alarm, EventType, Severity};
use faultline::proto::{self, v1};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use prost::Message as _;
use serde_json::{Map, Value};

/// The size limit the decoder is given: some mutated messages go over it.
const LIMIT: usize = 48 * 1024;

const REASONS: [&str; 8] = [
    "oversized",
    "empty",
    "undecodable",
    "missing_resource",
    "missing_alarm_type",
    "invalid",
    "invalid_ves",
    "invalid_resync",
];

const FIXTURES: [&str; 19] = [
    include_str!("fixtures/ves/fault_1_raise.json"),
    include_str!("fixtures/ves/fault_2_severity_change.json"),
    include_str!("fixtures/ves/fault_3_clear.json"),
    include_str!("fixtures/ves/batch_fault_with_heartbeat_and_measurement.json"),
    include_str!("fixtures/ves/stnd_1_new_alarm.json"),
    include_str!("fixtures/ves/stnd_2_changed_alarm.json"),
    include_str!("fixtures/ves/stnd_3_cleared_alarm.json"),
    include_str!("fixtures/ves/resync_alarm_list.json"),
    include_str!("fixtures/ves/stnd_alarm_list_rebuilt.json"),
    include_str!("fixtures/ves/invalid_resync_marker_not_first.json"),
    include_str!("fixtures/ves/invalid_header_missing_fields.json"),
    include_str!("fixtures/ves/invalid_listener_version_5.json"),
    include_str!("fixtures/ves/invalid_event_severity.json"),
    include_str!("fixtures/ves/invalid_negative_sequence.json"),
    include_str!("fixtures/ves/invalid_batch_one_bad_event.json"),
    include_str!("fixtures/ves/invalid_empty_event_list.json"),
    include_str!("fixtures/ves/invalid_event_and_event_list.json"),
    include_str!("fixtures/ves/invalid_stnd_perceived_severity.json"),
    include_str!("fixtures/ves/invalid_stnd_missing_alarm_id.json"),
];

const JSON_ALARM: &str = r#"{"resource":"par-r1/1/1","alarm_type":"LOS","qualifier":"1/1","severity":"major",
"cleared":false,"event_type":"communications","probable_cause":"lossOfSignal","specific_problem":"LOS",
"text":"loss of signal","event_time":"2026-01-02T03:04:05Z","source_system":"ems-paris",
"notification_id":"n-42","sequence":7}"#;

const JSON_LIST: &str = r#"{"resync":{"source_system":"ems-paris","as_of":"2026-01-02T03:04:05Z","alarms":[
{"resource":"par-r1/1/1","alarm_type":"LOS","severity":"major"},{"resource":"par-r1","alarm_type":"FAN","severity":"minor"}]}}"#;

/// The keys the decoders read, so that mutations land on them.
#[rustfmt::skip]
const KEYS: &[&str] = &[
    "event", "eventList", "commonEventHeader", "faultFields", "stndDefinedFields", "data", "domain", "eventId",
    "eventName", "priority", "version", "sequence", "sourceName", "reportingEntityName",
    "vesEventListenerVersion", "startEpochMicrosec", "lastEpochMicrosec", "stndDefinedNamespace",
    "faultFieldsVersion", "eventSeverity", "eventSourceType", "specificProblem", "vfStatus", "alarmCondition",
    "alarmInterfaceA", "stndDefinedFieldsVersion", "notificationType", "alarmId", "alarmType", "notificationId",
    "perceivedSeverity", "probableCause", "eventTime", "trendIndication", "additionalText", "resource",
    "alarm_type", "qualifier", "severity", "cleared", "event_time", "event_type", "notification_id",
    "source_system",
];

/// Values the decoders tell apart.
#[rustfmt::skip]
const WORDS: &[&str] = &[
    "fault", "stndDefined", "heartbeat", "measurement", "7.2.1", "7.", "7", "5.4.1", "4.1", "1.0",
    "3GPP-FaultSupervision", "NORMAL", "CRITICAL", "MAJOR", "Active", "port", "notifyNewAlarm",
    "notifyChangedAlarm", "notifyClearedAlarm", "COMMUNICATIONS_ALARM", "CLEARED", "INDETERMINATE",
    "MORE_SEVERE", "2025-06-03T08:15:00Z", "9999-12-31T23:59:59Z", "0000-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z", "2025-06-03T08:15:00.123456789+14:00", "quality_of_service", "cleared", "major",
    "1002", "-1",
];

/// Decodes `bytes` after an alarm already in the output, and checks the outcome.
fn check(format: AlarmFormat, bytes: &[u8]) -> Result<(), TestCaseError> {
    let earlier = Alarm::raise("earlier", "EARLIER", Severity::Minor, 1);
    let mut out = vec![earlier.clone()];
    match decode(format, bytes, 1_000, LIMIT, &mut out) {
        Ok(resync) => {
            prop_assert_eq!(&out[0], &earlier, "the output's earlier content is kept");
            if let Some(resync) = resync {
                prop_assert!(!resync.source_system.trim().is_empty(), "an alarm list without its source");
                prop_assert!(out[1..].iter().all(|a| a.source_system == resync.source_system));
            }
            for alarm in &out[1..] {
                prop_assert!(!alarm.resource.trim().is_empty(), "decoded with a blank resource: {:?}", alarm);
                prop_assert!(!alarm.alarm_type.trim().is_empty(), "decoded with a blank alarm type: {:?}", alarm);
            }
        }
        Err(error) => {
            prop_assert!(REASONS.contains(&error.reason()), "undocumented reason {}: {}", error.reason(), error);
            prop_assert!(!error.to_string().is_empty());
            prop_assert_eq!(out, vec![earlier], "a refusal leaves the output as it was");
        }
    }
    Ok(())
}

/// A string the decoders may not expect: blank, unicode, long, or a word they look for.
fn odd_string() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => "\\PC{0,24}",
        3 => "[ \t\n\u{a0}\u{2003}\u{3000}]{0,3}",
        3 => select(WORDS).prop_map(str::to_owned),
        1 => select(KEYS).prop_map(str::to_owned),
        1 => (1usize..16_000, "\\PC").prop_map(|(n, c)| c.repeat(n)),
        2 => "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,40})?([Zz]|[+-][0-9]{2}:[0-9]{2}|\\PC{1,6})?",
    ]
}

/// A number the decoders may not expect: negative, huge, fractional.
fn odd_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        select(vec![0, -1, 1, i64::MIN, i64::MAX, 1_748_938_500_000_000, -1_748_938_500_000_000]).prop_map(Value::from),
        prop::num::f64::NORMAL.prop_map(Value::from),
        select(vec![0.5, -0.0, 1e300, -1e300, 1e-300, 1.7e15, 9.3e18, 1.8446744073709552e19]).prop_map(Value::from),
    ]
}

/// A JSON value of any type, often an odd one for where it lands.
fn odd_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        3 => odd_number(),
        6 => odd_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((select(KEYS), inner), 0..4)
                .prop_map(|entries| Value::Object(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// One change to a JSON document, at a node chosen by walking `path` down from the root, or
/// at every value of a key the decoders read.
#[derive(Clone, Debug)]
enum Edit {
    Delete(Vec<Index>),
    Replace(Vec<Index>, Value),
    /// Wraps the node in this many arrays (or objects), past the parser's depth limit at times.
    Nest(Vec<Index>, usize, bool),
    /// Adds or overwrites a key of the object found there.
    Insert(Vec<Index>, &'static str, Value),
    DeleteKey(&'static str),
    ReplaceKey(&'static str, Value),
    /// Gives a key a value of the type it has, odd in content: a string or a number.
    ReplaceKeyInKind(&'static str, String, Value),
}

fn edit() -> impl Strategy<Value = Edit> {
    let path = prop::collection::vec(any::<Index>(), 0..7);
    prop_oneof![
        1 => path.clone().prop_map(Edit::Delete),
        2 => (path.clone(), odd_value()).prop_map(|(p, v)| Edit::Replace(p, v)),
        1 => (path.clone(), 1usize..3000, any::<bool>()).prop_map(|(p, n, a)| Edit::Nest(p, n, a)),
        1 => (path, select(KEYS), odd_value()).prop_map(|(p, k, v)| Edit::Insert(p, k, v)),
        2 => select(KEYS).prop_map(Edit::DeleteKey),
        3 => (select(KEYS), odd_value()).prop_map(|(k, v)| Edit::ReplaceKey(k, v)),
        5 => (select(KEYS), odd_string(), odd_number()).prop_map(|(k, s, n)| Edit::ReplaceKeyInKind(k, s, n)),
    ]
}

/// Text edits, none mostly: any but a duplicated key makes the message unreadable.
fn text_edits() -> impl Strategy<Value = Vec<TextEdit>> {
    prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec(text_edit(), 1..3)]
}

/// Calls `change` on every object of the document, innermost first (so that it does not
/// visit what it put in).
fn each_object(value: &mut Value, change: &mut impl FnMut(&mut Map<String, Value>)) {
    match value {
        Value::Object(fields) => {
            fields.values_mut().for_each(|v| each_object(v, change));
            change(fields);
        }
        Value::Array(items) => items.iter_mut().for_each(|v| each_object(v, change)),
        _ => {}
    }
}

fn node<'a>(value: &'a mut Value, path: &[Index]) -> &'a mut Value {
    let Some((first, rest)) = path.split_first() else { return value };
    let children = match value {
        Value::Object(fields) => fields.len(),
        Value::Array(items) => items.len(),
        _ => 0,
    };
    if children == 0 {
        return value;
    }
    let i = first.index(children);
    match value {
        Value::Object(fields) => node(fields.values_mut().nth(i).expect("an index below the length"), rest),
        Value::Array(items) => node(&mut items[i], rest),
        leaf => leaf,
    }
}

/// Applies edits to documents and writes them out. A nesting is written into the text, not
/// built as a value: serde_json writes and drops a value recursively, and thousands of
/// levels could overflow the test's own stack; the decoders read text anyway.
#[derive(Default)]
struct Mutator {
    /// (the marker standing in the document, depth, arrays or objects, the node nested).
    nests: Vec<(String, usize, bool, Value)>,
}

impl Mutator {
    fn apply(&mut self, document: &mut Value, edit: &Edit) {
        let Edit::Nest(path, depth, arrays) = edit else { return apply(document, edit) };
        let marker = format!("@@nest-{}@@", self.nests.len());
        let target = std::mem::replace(node(document, path), Value::from(marker.clone()));
        self.nests.push((marker, *depth, *arrays, target));
    }

    fn write(&self, document: &Value) -> String {
        let mut text = serde_json::to_string(document).expect("a JSON value serialises");
        // Latest first: a later nesting may hold an earlier one's marker, never the reverse.
        for (marker, depth, arrays, target) in self.nests.iter().rev() {
            let (open, close) = if *arrays { ("[", "]") } else { (r#"{"data":"#, "}") };
            let target = serde_json::to_string(target).expect("a JSON value serialises");
            let nested = format!("{}{target}{}", open.repeat(*depth), close.repeat(*depth));
            text = text.replacen(&format!("\"{marker}\""), &nested, 1);
        }
        text
    }
}

fn apply(document: &mut Value, edit: &Edit) {
    match edit {
        Edit::Nest(..) => unreachable!("nestings are written by the mutator"),
        Edit::Delete(path) => {
            let Some((last, path)) = path.split_last() else { return };
            match node(document, path) {
                Value::Object(fields) if !fields.is_empty() => {
                    let key = fields.keys().nth(last.index(fields.len())).cloned().expect("an index below the length");
                    fields.remove(&key);
                }
                Value::Array(items) if !items.is_empty() => {
                    items.remove(last.index(items.len()));
                }
                _ => {}
            }
        }
        Edit::Replace(path, value) => *node(document, path) = value.clone(),
        Edit::Insert(path, key, value) => {
            if let Value::Object(fields) = node(document, path) {
                fields.insert((*key).to_owned(), value.clone());
            }
        }
        Edit::DeleteKey(key) => each_object(document, &mut |fields| {
            fields.remove(*key);
        }),
        Edit::ReplaceKey(key, value) => each_object(document, &mut |fields| {
            if let Some(old) = fields.get_mut(*key) {
                *old = value.clone();
            }
        }),
        Edit::ReplaceKeyInKind(key, string, number) => {
            each_object(document, &mut |fields| match fields.get_mut(*key) {
                Some(old @ Value::String(_)) => *old = Value::from(string.as_str()),
                Some(old @ Value::Number(_)) => *old = number.clone(),
                _ => {}
            })
        }
    }
}

/// A change to the text of a message, where the JSON document cannot hold it.
#[derive(Clone, Debug)]
enum TextEdit {
    /// Cut the message at a byte (any byte: inside a UTF-8 sequence too).
    Truncate(Index),
    /// Repeat a key in an object, before (earlier wins) or after (later wins) its own.
    DuplicateKey(Index, &'static str, Value, bool),
    /// Put one byte anywhere (a stray quote, brace or invalid UTF-8).
    Insert(Index, u8),
    /// Write a number too long for any machine type.
    HugeNumber(Index, String),
}

fn text_edit() -> impl Strategy<Value = TextEdit> {
    prop_oneof![
        any::<Index>().prop_map(TextEdit::Truncate),
        (any::<Index>(), select(KEYS), odd_value(), any::<bool>())
            .prop_map(|(i, k, v, b)| TextEdit::DuplicateKey(i, k, v, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| TextEdit::Insert(i, b)),
        (any::<Index>(), "-?[1-9][0-9]{20,400}(\\.[0-9]{1,30})?(e[+-]?[0-9]{1,4})?")
            .prop_map(|(i, n)| TextEdit::HugeNumber(i, n)),
    ]
}

fn apply_text(text: &mut Vec<u8>, edit: &TextEdit) {
    match edit {
        TextEdit::Truncate(at) => text.truncate(at.index(text.len() + 1)),
        TextEdit::DuplicateKey(at, key, value, before) => {
            let brace = if *before { b'{' } else { b'}' };
            let braces: Vec<usize> = text.iter().enumerate().filter(|(_, b)| **b == brace).map(|(i, _)| i).collect();
            if braces.is_empty() {
                return;
            }
            let position = braces[at.index(braces.len())];
            let pair = format!("{}:{}", Value::from(*key), value);
            let (position, pair) =
                if *before { (position + 1, format!("{pair},")) } else { (position, format!(",{pair}")) };
            text.splice(position..position, pair.into_bytes());
        }
        TextEdit::Insert(at, byte) => text.insert(at.index(text.len() + 1), *byte),
        TextEdit::HugeNumber(at, number) => {
            // In place of a number already there, so that the document stays well formed.
            let starts: Vec<usize> = text
                .windows(2)
                .enumerate()
                .filter(|(_, w)| w[0] == b':' && (w[1].is_ascii_digit() || w[1] == b'-'))
                .map(|(i, _)| i + 1)
                .collect();
            if starts.is_empty() {
                return;
            }
            let start = starts[at.index(starts.len())];
            let end = start + text[start..].iter().take_while(|b| b.is_ascii_digit() || b"-+.eE".contains(b)).count();
            text.splice(start..end, number.bytes());
        }
    }
}

fn mutated(document: &Value, edits: &[Edit], text_edits: &[TextEdit]) -> Vec<u8> {
    let mut mutator = Mutator::default();
    let mut document = document.clone();
    edits.iter().for_each(|edit| mutator.apply(&mut document, edit));
    let mut text = mutator.write(&document).into_bytes();
    text_edits.iter().for_each(|edit| apply_text(&mut text, edit));
    text
}

fn fixtures() -> Vec<Value> {
    FIXTURES.iter().map(|f| serde_json::from_str(f).expect("a fixture is JSON")).collect()
}

/// Every event of every fixture, good and bad, to mix into batches.
fn events() -> Vec<Value> {
    let mut events = Vec::new();
    for fixture in fixtures() {
        events.extend(fixture.get("event").cloned());
        if let Some(Value::Array(list)) = fixture.get("eventList") {
            events.extend(list.iter().cloned());
        }
    }
    events
}

/// A protobuf field of any number and wire type, its payload well formed or not.
fn raw_field() -> impl Strategy<Value = Vec<u8>> {
    (prop_oneof![1u32..=14, 15u32..=(1 << 29) - 1], 0u8..8, prop::collection::vec(any::<u8>(), 0..24), any::<u64>())
        .prop_map(|(number, wire_type, payload, varint)| {
            let mut bytes = Vec::new();
            prost::encoding::encode_varint(u64::from(number) << 3 | u64::from(wire_type), &mut bytes);
            match wire_type {
                0 => prost::encoding::encode_varint(varint, &mut bytes),
                1 => bytes.extend(&varint.to_le_bytes()),
                2 => {
                    // The declared length is the payload's, or an arbitrary one.
                    let length = if varint % 3 == 0 { varint } else { payload.len() as u64 };
                    prost::encoding::encode_varint(length, &mut bytes);
                    bytes.extend(&payload);
                }
                5 => bytes.extend(&varint.to_le_bytes()[..4]),
                _ => bytes.extend(&payload),
            }
            bytes
        })
}

fn proto_alarm() -> impl Strategy<Value = v1::Alarm> {
    let text = || prop_oneof!["\\PC{0,12}", Just(String::new()), Just("  ".to_owned())];
    let timestamp = (any::<i64>(), any::<i32>()).prop_map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos });
    (
        (text(), text(), text(), prop_oneof![0i32..7, any::<i32>()], any::<bool>(), prop_oneof![0i32..7, any::<i32>()]),
        (text(), text(), proptest::option::of(timestamp), any::<u64>()),
    )
        .prop_map(
            |((resource, alarm_type, qualifier, severity, cleared, event_type), (text, source, time, seq))| v1::Alarm {
                resource,
                alarm_type,
                qualifier,
                severity,
                cleared,
                event_type,
                text,
                source_system: source,
                event_time: time,
                sequence: seq,
                ..v1::Alarm::default()
            },
        )
}

fn valid_proto() -> Vec<u8> {
    let mut alarm = Alarm::raise("par-r1/1/1", "LOS", Severity::Major, 1_767_323_045_000);
    alarm.event_type = EventType::Communications;
    alarm.notification_id = "n-42".into();
    alarm.sequence = 7;
    proto::alarm_to_proto(&alarm).encode_to_vec()
}

const FORMATS: [AlarmFormat; 3] = [AlarmFormat::Protobuf, AlarmFormat::Json, AlarmFormat::Ves];

/// 1000 cases a property (about a second for the file in a debug build), or `PROPTEST_CASES` for a
/// longer search.
fn config() -> ProptestConfig {
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() { ProptestConfig::default().cases } else { 1000 };
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for format in FORMATS {
            check(format, &bytes)?;
        }
    }

    #[test]
    fn arbitrary_text_that_looks_like_json(text in "[{}\\[\\]\":,0-9a-zA-Z \\-.eE\\\\]{0,256}") {
        for format in FORMATS {
            check(format, text.as_bytes())?;
        }
    }

    #[test]
    fn ves_fixtures_mutated(fixture in any::<Index>(), edits in prop::collection::vec(edit(), 0..5), text_edits in text_edits()) {
        let fixtures = fixtures();
        let bytes = mutated(&fixtures[fixture.index(fixtures.len())], &edits, &text_edits);
        check(AlarmFormat::Ves, &bytes)?;
    }

    #[test]
    fn ves_batches_mixing_good_and_bad_events(
        batch in prop::collection::vec((any::<Index>(), prop::collection::vec(edit(), 0..3)), 0..10),
        text_edits in text_edits(),
    ) {
        let events = events();
        let mut mutator = Mutator::default();
        let list = batch
            .iter()
            .map(|(event, edits)| {
                let mut event = events[event.index(events.len())].clone();
                edits.iter().for_each(|edit| mutator.apply(&mut event, edit));
                event
            })
            .collect();
        let mut bytes = mutator.write(&Value::Object(Map::from_iter([("eventList".to_owned(), Value::Array(list))]))).into_bytes();
        text_edits.iter().for_each(|edit| apply_text(&mut bytes, edit));
        check(AlarmFormat::Ves, &bytes)?;
    }

    #[test]
    fn json_alarm_mutated(edits in prop::collection::vec(edit(), 0..5), text_edits in text_edits()) {
        let alarm: Value = serde_json::from_str(JSON_ALARM).expect("the seed is JSON");
        check(AlarmFormat::Json, &mutated(&alarm, &edits, &text_edits))?;
    }

    #[test]
    fn json_alarm_list_mutated(edits in prop::collection::vec(edit(), 0..5), text_edits in text_edits()) {
        let list: Value = serde_json::from_str(JSON_LIST).expect("the seed is JSON");
        check(AlarmFormat::Json, &mutated(&list, &edits, &text_edits))?;
    }

    #[test]
    fn protobuf_alarm_lists_of_any_alarms(
        alarms in prop::collection::vec(proto_alarm(), 0..4),
        source in prop_oneof!["\\PC{0,12}", Just("ems-1".to_owned())],
        beside in proptest::option::of(proto_alarm()),
        cut in proptest::option::of(any::<Index>()),
    ) {
        let resync = v1::AlarmResync { source_system: source, as_of: None, alarms };
        let message = v1::Alarm { resync: Some(resync), ..beside.unwrap_or_default() };
        let mut bytes = message.encode_to_vec();
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        check(AlarmFormat::Protobuf, &bytes)?;
    }

    #[test]
    fn protobuf_alarms_of_any_field_values(alarm in proto_alarm(), cut in proptest::option::of(any::<Index>())) {
        let mut bytes = alarm.encode_to_vec();
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        check(AlarmFormat::Protobuf, &bytes)?;
    }

    #[test]
    fn protobuf_with_foreign_fields_and_truncation(
        before in prop::collection::vec(raw_field(), 0..4),
        after in prop::collection::vec(raw_field(), 0..4),
        cut in proptest::option::of(any::<Index>()),
    ) {
        let mut bytes: Vec<u8> = before.concat();
        bytes.extend(valid_proto());
        bytes.extend(after.concat());
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        check(AlarmFormat::Protobuf, &bytes)?;
    }
}

#[test]
fn the_seeds_decode() {
    let mut out = Vec::new();
    decode(AlarmFormat::Json, JSON_ALARM.as_bytes(), 0, LIMIT, &mut out).unwrap();
    decode(AlarmFormat::Protobuf, &valid_proto(), 0, LIMIT, &mut out).unwrap();
    decode(AlarmFormat::Ves, FIXTURES[0].as_bytes(), 0, LIMIT, &mut out).unwrap();
    assert!(decode(AlarmFormat::Json, JSON_LIST.as_bytes(), 0, LIMIT, &mut out).unwrap().is_some());
    assert_eq!(out.len(), 5, "the mutations start from messages that decode");
}
