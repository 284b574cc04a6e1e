//! The soak benchmark's driver on a small network and a few hours of stream time: what it
//! samples must agree with what the core counts and with what its published changes say,
//! and the workload must exercise what a soak is for. Not a timed test: nothing here
//! depends on the machine's speed.

use faultline::cli::soak::{self, SoakOptions};
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3_600);

fn options(seed: u64) -> SoakOptions {
    SoakOptions {
        cis: 5_000,
        seed,
        duration: 8 * HOUR,
        sample: HOUR,
        warmup: 2 * HOUR,
        // Five times the faults per CI of the reference load, so that a few hours on a
        // small network see incidents open, resolve and close, and alarms age.
        load: 5.0,
        max_age: 2 * HOUR,
    }
}

#[test]
fn the_soak_samples_agree_with_the_core_and_its_published_changes() {
    let report = soak::run(&options(3), &mut Vec::new()).unwrap();
    assert_eq!(report.samples.len(), 8, "one row an hour");
    assert_eq!(report.warmup, 1, "the row at the end of the warm-up");
    report.views.as_ref().unwrap();

    let mut alarms = 0;
    for (i, row) in report.samples.iter().enumerate() {
        let (sizes, stats) = (&row.sizes, &row.stats);
        let at = format!("row {i}: {sizes:?}");
        assert_eq!(row.at, (i as i64 + 1) * 3_600_000, "{at}");
        assert!(row.alarms > alarms, "{at}");
        alarms = row.alarms;
        assert_eq!(stats.alarms_in, row.alarms, "{at}");
        // Counted over the resources against the running count.
        assert_eq!(sizes.active_alarms as u64, stats.active_alarms, "{at}");
        assert!(sizes.alarm_resources <= sizes.active_alarms, "{at}");
        // The alarm stage's unknown resources are the impact stage's.
        assert_eq!(sizes.unlocated_resources, sizes.unmapped_resources, "{at}");
        assert_eq!(sizes.unmapped_resources as u64, stats.unmapped_resources, "{at}");
        // Incidents held: by state as the published changes tell them, and as many as
        // opened and not closed.
        assert_eq!([sizes.open, sizes.acknowledged, sizes.resolved], row.seen, "{at}");
        assert_eq!(sizes.incidents, row.seen.iter().sum::<usize>(), "{at}");
        assert_eq!(sizes.incidents as u64, stats.incidents.opened - stats.incidents.closed, "{at}");
        // Rows are taken right after the changelog took the changes.
        assert_eq!((sizes.dirty_resources, sizes.dirty_incidents), (0, 0), "{at}");
        // Each owned root is one an incident registered; each listed root is one of its roots.
        assert!(sizes.by_root <= sizes.registered_roots, "{at}");
        assert!(sizes.members <= sizes.incident_roots + sizes.incident_symptoms, "{at}");
        assert!(sizes.ageing_queue <= 2 * sizes.active_alarms + 1024, "{at}");
        assert!(sizes.clear_queue >= sizes.remembered_clears, "{at}");
        assert!(sizes.timeline_entries >= sizes.incidents, "{at}: each has its first entry");
    }

    // What a soak is for happened: incidents opened, resolved and closed; operators acted;
    // alarms on unknown resources were kept, clears without raise remembered, alarms aged.
    let end = report.samples.last().unwrap();
    let incidents = &end.stats.incidents;
    assert!(incidents.opened > 20 && incidents.resolved > 10 && incidents.closed > 10, "{incidents:?}");
    assert!(end.stats.unmapped > 0 && end.stats.clears_without_raise > 0 && end.stats.aged > 0, "{:?}", end.stats);
    assert!(end.stats.duplicates > end.stats.raised && end.stats.duplicate_notifications > 0, "{:?}", end.stats);
    assert!(report.samples.iter().any(|s| s.sizes.remembered_clears > 0 && s.sizes.unmapped_resources > 0));
    let operators = &report.operators;
    assert!(operators.acknowledged > 0 && operators.notes > 0 && operators.force_resolved > 0, "{operators:?}");
}

#[test]
fn the_same_seed_gives_the_same_soak() {
    let short = |seed| {
        let options = SoakOptions { duration: 2 * HOUR, ..options(seed) };
        let report = soak::run(&options, &mut Vec::new()).unwrap();
        report.samples.into_iter().map(|s| (s.alarms, s.sizes, s.stats)).collect::<Vec<_>>()
    };
    assert_eq!(short(5), short(5));
    assert_ne!(short(5), short(6));
}
