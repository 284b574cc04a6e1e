//! Incidents as published: plain snapshots that the Kafka and gRPC edges encode as they are.

use super::EpochMillis;
use super::alarm::AlarmRef;
use super::state::State;
use super::topology::SlaTier;
use std::fmt;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IncidentId(pub u64);

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "INC-{:06}", self.0)
    }
}

impl std::str::FromStr for IncidentId {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("INC-").ok_or(())?;
        digits.parse().map(IncidentId).map_err(|_| ())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IncidentState {
    Open,
    Acknowledged,
    Resolved,
    Closed,
}

impl IncidentState {
    /// Open or acknowledged: the incident still tracks live impact.
    pub fn is_active(self) -> bool {
        matches!(self, IncidentState::Open | IncidentState::Acknowledged)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Open => "open",
            IncidentState::Acknowledged => "acknowledged",
            IncidentState::Resolved => "resolved",
            IncidentState::Closed => "closed",
        }
    }
}

/// ITIL impact and urgency level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    High,
    Medium,
    Low,
}

/// P1 (most pressing) to P5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(pub u8);

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P{}", self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImpactedService {
    pub id: Arc<str>,
    pub name: Arc<str>,
    /// Current impact; `Up` once restored (the service stays listed until resolution).
    pub impact: State,
    pub customer: Option<Arc<str>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImpactedCustomer {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub sla: Option<SlaTier>,
    /// Worst impact over the customer's services in this incident.
    pub impact: State,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimelineKind {
    Opened,
    Impact,
    RootCause,
    Symptom,
    Restored,
    Acknowledged,
    Note,
    Resolved,
    Reopened,
    Closed,
    /// Alarms cleared by an alarm-list resynchronisation that did not list them.
    Resync,
    /// Alarms cleared for not being repeated within their source's maximum age.
    Aged,
    /// The priority rose: an acknowledged incident is open again, to be acknowledged anew.
    Escalated,
    /// A maintenance window began over its root causes, or ended with the fault still there.
    Maintenance,
}

impl TimelineKind {
    const ALL: [TimelineKind; 14] = [
        TimelineKind::Opened,
        TimelineKind::Impact,
        TimelineKind::RootCause,
        TimelineKind::Symptom,
        TimelineKind::Restored,
        TimelineKind::Acknowledged,
        TimelineKind::Note,
        TimelineKind::Resolved,
        TimelineKind::Reopened,
        TimelineKind::Closed,
        TimelineKind::Resync,
        TimelineKind::Aged,
        TimelineKind::Escalated,
        TimelineKind::Maintenance,
    ];

    /// The kind named by [`TimelineKind::as_str`].
    pub fn parse(name: &str) -> Option<TimelineKind> {
        TimelineKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TimelineKind::Opened => "opened",
            TimelineKind::Impact => "impact",
            TimelineKind::RootCause => "root_cause",
            TimelineKind::Symptom => "symptom",
            TimelineKind::Restored => "restored",
            TimelineKind::Acknowledged => "acknowledged",
            TimelineKind::Note => "note",
            TimelineKind::Resolved => "resolved",
            TimelineKind::Reopened => "reopened",
            TimelineKind::Closed => "closed",
            TimelineKind::Resync => "resync",
            TimelineKind::Aged => "aged",
            TimelineKind::Escalated => "escalated",
            TimelineKind::Maintenance => "maintenance",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineEntry {
    pub time: EpochMillis,
    pub kind: TimelineKind,
    /// Shared: every published snapshot carries the whole timeline, and copying hundreds of
    /// texts per change was the core's largest cost.
    pub text: Arc<str>,
}

/// Entries a sealed timeline chunk holds.
const CHUNK: usize = 32;

/// An incident's timeline: its first entry (`opened`), always kept, then the latest ones
/// up to a limit. Kept in shared, immutable chunks of `CHUNK` entries plus an open tail:
/// copying an incident that a reader still holds (every published version is one) copies
/// a few chunk pointers and the tail rather than hundreds of entries, and dropping the
/// oldest entry moves nothing.
#[derive(Clone, Default)]
pub struct Timeline {
    first: Option<TimelineEntry>,
    /// Sealed chunks, oldest first; the front one's first `skip` entries are dropped.
    chunks: std::collections::VecDeque<Arc<[TimelineEntry]>>,
    skip: usize,
    /// The newest entries, fewer than `CHUNK`.
    tail: Vec<TimelineEntry>,
    len: usize,
    /// Entries ever appended, dropped ones included: what a later version of the timeline
    /// added is told by the difference ([`Timeline::changes_since`]).
    pushed: u64,
}

impl Timeline {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &TimelineEntry> {
        let sealed = self.chunks.iter().enumerate().flat_map(|(i, chunk)| &chunk[if i == 0 { self.skip } else { 0 }..]);
        self.first.iter().chain(sealed).chain(&self.tail)
    }

    pub fn last(&self) -> Option<&TimelineEntry> {
        self.iter().next_back()
    }

    /// What this timeline lost and gained since `earlier`, the version it was made from:
    /// how many entries right after the first were dropped, then the entries appended
    /// (those still held). `None` if this timeline was not made from `earlier` by
    /// appending.
    pub fn changes_since<'a>(&'a self, earlier: &Timeline) -> Option<(usize, impl Iterator<Item = &'a TimelineEntry>)> {
        let appended = usize::try_from(self.pushed.checked_sub(earlier.pushed)?).ok()?;
        let (dropped, kept) = if earlier.is_empty() {
            (0, self.len)
        } else {
            // The first entry always stays; of the appended ones, the latest are held.
            let kept = appended.min(self.len.checked_sub(1)?);
            ((earlier.len + kept).checked_sub(self.len)?, kept)
        };
        if kept > appended || dropped > earlier.len.saturating_sub(1) {
            return None;
        }
        Some((dropped, self.iter().skip(self.len - kept)))
    }

    /// Appends an entry.
    pub fn push(&mut self, entry: TimelineEntry) {
        self.pushed += 1;
        self.len += 1;
        if self.first.is_none() {
            self.first = Some(entry);
            return;
        }
        self.tail.push(entry);
        if self.tail.len() == CHUNK {
            let sealed: Arc<[TimelineEntry]> = std::mem::take(&mut self.tail).into();
            self.chunks.push_back(sealed);
        }
    }

    /// Appends an entry, first dropping the oldest after the first while the timeline
    /// holds `limit` (at least 2) or more.
    pub fn push_limited(&mut self, entry: TimelineEntry, limit: usize) {
        while self.len >= limit.max(2) {
            self.drop_second();
        }
        self.push(entry);
    }

    /// Drops the oldest entry after the first.
    fn drop_second(&mut self) {
        if let Some(front) = self.chunks.front() {
            self.skip += 1;
            if self.skip == front.len() {
                self.chunks.pop_front();
                self.skip = 0;
            }
        } else if !self.tail.is_empty() {
            self.tail.remove(0);
        } else {
            return;
        }
        self.len -= 1;
    }
}

impl FromIterator<TimelineEntry> for Timeline {
    fn from_iter<I: IntoIterator<Item = TimelineEntry>>(entries: I) -> Timeline {
        let mut timeline = Timeline::default();
        for entry in entries {
            timeline.push(entry);
        }
        timeline
    }
}

impl PartialEq for Timeline {
    fn eq(&self, other: &Timeline) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for Timeline {}

impl fmt::Debug for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acknowledgement {
    pub by: String,
    pub time: EpochMillis,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub author: String,
    pub text: String,
    pub time: EpochMillis,
    /// The client's id for the request that added it (empty without one): a retry of that
    /// request, even after a restart, finds it here and adds nothing.
    pub request_id: String,
}

/// What an incident's lists leave out: they hold at most what the caps of the incident
/// policy allow, so that an incident always fits one record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Omitted {
    /// Root-cause CIs not named in `root_causes`.
    pub root_causes: u32,
    /// Active alarms of the root causes not in `root_cause_alarms`.
    pub root_cause_alarms: u32,
    /// Active alarms of the symptom CIs not in `symptom_alarms`.
    pub symptom_alarms: u32,
    /// Cleared alarms dropped from the lists to make room for active ones, since it opened.
    pub cleared_alarms: u32,
}

/// One incident: a root-cause group and everything it impacts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incident {
    pub id: IncidentId,
    pub title: String,
    pub state: IncidentState,
    pub priority: Priority,
    pub impact: Level,
    pub urgency: Level,
    /// Root-cause CI ids, sorted.
    pub root_causes: Vec<Arc<str>>,
    pub root_cause_alarms: Vec<AlarmRef>,
    pub symptom_alarms: Vec<AlarmRef>,
    pub services: Vec<ImpactedService>,
    pub customers: Vec<ImpactedCustomer>,
    pub timeline: Timeline,
    pub acknowledgement: Option<Acknowledgement>,
    pub notes: Vec<Note>,
    pub opened_at: EpochMillis,
    pub updated_at: EpochMillis,
    pub resolved_at: Option<EpochMillis>,
    /// Incremented on every published change.
    pub version: u64,
    pub omitted: Omitted,
    /// The topology version its impact was last computed on.
    pub topology_version: u64,
}

impl Incident {
    /// An incident just opened at `now`: no impact, no alarms, an empty timeline.
    pub fn new(id: IncidentId, now: EpochMillis) -> Incident {
        Incident {
            id,
            title: String::new(),
            state: IncidentState::Open,
            priority: Priority(5),
            impact: Level::Low,
            urgency: Level::Low,
            root_causes: Vec::new(),
            root_cause_alarms: Vec::new(),
            symptom_alarms: Vec::new(),
            services: Vec::new(),
            customers: Vec::new(),
            timeline: Timeline::default(),
            acknowledgement: None,
            notes: Vec::new(),
            opened_at: now,
            updated_at: now,
            resolved_at: None,
            version: 0,
            omitted: Omitted::default(),
            topology_version: 0,
        }
    }
}

impl Incident {
    /// A copy holding at most `keep` entries of each list (the timeline: its first entry and
    /// the latest) and notes cut to `TRIMMED_NOTE` bytes, for a record that must fit a size
    /// limit the whole incident exceeds. State, priority and the first roots stay.
    pub fn trimmed(&self, keep: usize) -> Incident {
        const TRIMMED_NOTE: usize = 1024;
        let cut = |len: usize| len.min(keep);
        let notes = self.notes[self.notes.len() - cut(self.notes.len())..].iter().map(|note| {
            let mut end = note.text.len().min(TRIMMED_NOTE);
            while !note.text.is_char_boundary(end) {
                end -= 1;
            }
            Note { text: note.text[..end].to_owned(), ..note.clone() }
        });
        let mut trimmed = Incident {
            root_cause_alarms: self.root_cause_alarms[..cut(self.root_cause_alarms.len())].to_vec(),
            symptom_alarms: self.symptom_alarms[..cut(self.symptom_alarms.len())].to_vec(),
            services: self.services[..cut(self.services.len())].to_vec(),
            customers: self.customers[..cut(self.customers.len())].to_vec(),
            notes: notes.collect(),
            timeline: Timeline::default(),
            ..self.clone()
        };
        let latest = self.timeline.len().saturating_sub(1).min(keep.saturating_sub(1));
        let first = self.timeline.iter().take(usize::from(keep > 0));
        trimmed.timeline = first.chain(self.timeline.iter().skip(self.timeline.len() - latest)).cloned().collect();
        if trimmed.root_causes.len() > keep.max(1) * 4 {
            trimmed.root_causes.truncate(keep.max(1) * 4);
        }
        // What was cut is counted as the caps count what they leave out.
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let cut_alarms = |all: &[AlarmRef], kept: usize| {
            let cut = &all[kept..];
            let cleared = cut.iter().filter(|a| a.cleared_at.is_some()).count();
            (count(cut.len() - cleared), count(cleared))
        };
        let (root_active, root_cleared) = cut_alarms(&self.root_cause_alarms, trimmed.root_cause_alarms.len());
        let (symptom_active, symptom_cleared) = cut_alarms(&self.symptom_alarms, trimmed.symptom_alarms.len());
        let omitted = &mut trimmed.omitted;
        omitted.root_causes =
            omitted.root_causes.saturating_add(count(self.root_causes.len() - trimmed.root_causes.len()));
        omitted.root_cause_alarms = omitted.root_cause_alarms.saturating_add(root_active);
        omitted.symptom_alarms = omitted.symptom_alarms.saturating_add(symptom_active);
        omitted.cleared_alarms = omitted.cleared_alarms.saturating_add(root_cleared).saturating_add(symptom_cleared);
        trimmed
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    Opened,
    Updated,
    Acknowledged,
    NoteAdded,
    Resolved,
    Reopened,
    Closed,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Opened => "opened",
            ChangeKind::Updated => "updated",
            ChangeKind::Acknowledged => "acknowledged",
            ChangeKind::NoteAdded => "note",
            ChangeKind::Resolved => "resolved",
            ChangeKind::Reopened => "reopened",
            ChangeKind::Closed => "closed",
        }
    }
}

/// What the core publishes: the kind of change and the incident after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentChange {
    pub kind: ChangeKind,
    /// Shared with the core: a change costs a reference count, not a copy.
    pub incident: std::sync::Arc<Incident>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> TimelineEntry {
        let kind = if i == 0 { TimelineKind::Opened } else { TimelineKind::Impact };
        TimelineEntry { time: i as EpochMillis, kind, text: format!("entry {i}").into() }
    }

    fn times(timeline: &Timeline) -> Vec<EpochMillis> {
        timeline.iter().map(|e| e.time).collect()
    }

    #[test]
    fn a_timeline_keeps_its_first_entry_and_the_latest_up_to_its_limit() {
        for limit in [2, 5, CHUNK, CHUNK + 1, 3 * CHUNK + 7] {
            let mut timeline = Timeline::default();
            let mut expected: Vec<EpochMillis> = Vec::new();
            for i in 0..5 * CHUNK + 3 {
                timeline.push_limited(entry(i), limit);
                expected.push(i as EpochMillis);
                if expected.len() > limit {
                    expected.remove(1);
                }
                assert_eq!(times(&timeline), expected, "limit {limit}, after entry {i}");
                assert_eq!(timeline.len(), expected.len());
                assert_eq!(timeline.last().map(|e| e.time), Some(i as EpochMillis));
            }
        }
    }

    #[test]
    fn timelines_with_the_same_entries_are_equal_however_they_are_held() {
        let limit = 2 * CHUNK + 5;
        let mut trimmed = Timeline::default();
        for i in 0..4 * CHUNK {
            trimmed.push_limited(entry(i), limit);
        }
        // The same entries, never trimmed: chunked differently.
        let collected: Timeline = trimmed.iter().cloned().collect();
        assert_eq!(collected, trimmed);
        assert_eq!(format!("{collected:?}"), format!("{trimmed:?}"));

        // A copy goes its own way: the original does not move.
        let before = times(&trimmed);
        let mut copy = trimmed.clone();
        copy.push_limited(entry(10_000), limit);
        assert_eq!(times(&trimmed), before);
        assert_ne!(copy, trimmed);
        assert_eq!(copy.last().map(|e| e.time), Some(10_000));
    }
}
