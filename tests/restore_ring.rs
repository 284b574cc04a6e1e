//! The core's crash contract on a larger network than the sample: the ring storm of the
//! crash test, cut at several points, each time written through the changelog's wire
//! format, read back and restored; the restored core must continue exactly like the
//! uninterrupted one. The Kafka crash test checks the same end to end; this one pins the
//! core and the encoding down in seconds.

use faultline::config::AlarmFormat;
use faultline::correlate::changelog::CoreSnapshot;
use faultline::correlate::incidents::IncidentPolicy;
use faultline::correlate::{Correlator, CorrelatorConfig};
use faultline::decode;
use faultline::generate as storm;
use faultline::kafka::changelog;
use faultline::model::incident::IncidentChange;
use faultline::topology_file;
use std::sync::Arc;

#[test]
fn restores_through_the_changelog_continue_exactly_like_the_original() {
    let ring = storm::ring(60);
    let topology = Arc::new(topology_file::parse(&ring.jsonl, "ring").unwrap());
    let messages = storm::storm(&ring, 30_000, 0x5eed);
    let config = CorrelatorConfig {
        incidents: IncidentPolicy { hold_down_ms: 3_000, reopen_window_ms: 10_000, ..IncidentPolicy::default() },
        ..CorrelatorConfig::default()
    };
    // 100 messages per 15 ms, as the crash test produces them.
    let time = |i: usize| 1_700_000_000_000 + (i as i64 / 100) * 15;
    let alarms: Vec<_> = messages
        .iter()
        .map(|(_, value)| {
            let mut out = Vec::new();
            decode::decode(AlarmFormat::Json, value, 0, 1 << 20, &mut out).ok();
            out.pop()
        })
        .collect();

    let play = |correlator: &mut Correlator, range: std::ops::Range<usize>, out: &mut Vec<IncidentChange>| {
        for i in range {
            if let Some(alarm) = &alarms[i] {
                correlator.apply(alarm, time(i), out);
            }
        }
    };

    let mut original = Correlator::new(topology.clone(), config.clone());
    let mut expected = Vec::new();
    play(&mut original, 0..messages.len(), &mut expected);

    let mut crashing = Correlator::new(topology.clone(), config.clone());
    let mut log = CoreSnapshot::default();
    let mut actual = Vec::new();
    let cuts = [0, 4_816, 9_936, 14_032, 16_080, 22_222, messages.len()];
    for window in cuts.windows(2) {
        // Commit every 500 messages, as the engine's transactions do.
        let mut at = window[0];
        while at < window[1] {
            let end = (at + 500).min(window[1]);
            play(&mut crashing, at..end, &mut actual);
            if let Some(changes) = crashing.take_changes() {
                // An incident is written only when its record moved: a storm touches many
                // incidents it does not change, and each record carries the whole incident.
                for (id, record) in &changes.incidents {
                    if let Some(record) = record {
                        assert_ne!(log.incidents.get(id), Some(record), "{id} written again, unchanged");
                    }
                }
                changelog::encode(
                    &changes,
                    1_000_000,
                    |_| None,
                    |incident, size| panic!("{} trimmed at {size} bytes", incident.id),
                    |key, value| changelog::fold(&mut log, key.as_bytes(), value).unwrap(),
                );
            }
            at = end;
        }
        let (restored, summary) = Correlator::restore(topology.clone(), config.clone(), log.clone());
        assert_eq!(summary.unknown_cis, 0);
        crashing = restored;
    }
    if let Some(i) = (0..expected.len().min(actual.len())).find(|&i| expected[i] != actual[i]) {
        let (e, a) = (&expected[i].incident, &actual[i].incident);
        panic!(
            "the restored core diverges at incident change {i} ({} v{}):\n roots {:?} vs {:?}\n services {:?} vs {:?}",
            e.id,
            e.version,
            e.root_causes,
            a.root_causes,
            e.services.iter().map(|s| (&s.id, s.impact)).collect::<Vec<_>>(),
            a.services.iter().map(|s| (&s.id, s.impact)).collect::<Vec<_>>(),
        );
    }
    assert_eq!(crashing.stats(), original.stats());
    let expected_final: Vec<_> = original.incidents().cloned().collect();
    let actual_final: Vec<_> = crashing.incidents().cloned().collect();
    for (e, a) in expected_final.iter().zip(&actual_final) {
        assert_eq!(a, e, "{} differs", e.id);
    }
    assert_eq!(actual_final.len(), expected_final.len());
    assert_eq!(actual.len(), expected.len(), "incident changes");
    assert!(original.stats().incidents.resolved > 0, "timers fired during the storm");
}
