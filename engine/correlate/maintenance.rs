//! Maintenance windows (change management): planned works on CIs, between a start and an
//! end in stream time. While a window is active, alarms are tracked and states propagate
//! as always, but an impact whose root causes all lie inside active windows opens no
//! incident: the service is *suppressed*, visible as in maintenance. An impact with any
//! root outside opens its incident as usual; an incident already open when a window starts
//! is annotated, not resolved. When a window ends, or is cancelled, with the fault still
//! there, the incident opens then, naming the change.
//!
//! A window covers its CIs, or its CIs and everything that depends on them (`scope`); it is
//! identified by its change reference (`CHG0012345`). Windows may overlap. They are core
//! state: written to the changelog, restored with the rest, and their transitions fire as
//! stream time passes their start and end, like every other timer.

use crate::model::EpochMillis;
use crate::model::topology::{CiIdx, Topology};
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// What a window covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// The CIs named, alone.
    #[default]
    Ci,
    /// The CIs named and everything that depends on them.
    Dependents,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ci => "ci",
            Scope::Dependents => "dependents",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "ci" => Some(Scope::Ci),
            "dependents" => Some(Scope::Dependents),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum WindowState {
    /// Not started yet.
    #[default]
    Scheduled,
    Active,
    /// Over: its end passed, or it was ended early.
    Ended,
    /// Called off, before or during it.
    Cancelled,
}

impl WindowState {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowState::Scheduled => "scheduled",
            WindowState::Active => "active",
            WindowState::Ended => "ended",
            WindowState::Cancelled => "cancelled",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, WindowState::Ended | WindowState::Cancelled)
    }
}

/// A maintenance window as asked for: by an operator over gRPC, or by a change-management
/// system on the changes topic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowSpec {
    /// The change reference, the window's identity (`CHG0012345`).
    pub change: String,
    pub reason: String,
    /// Ids of the CIs under maintenance.
    pub cis: Vec<String>,
    pub scope: Scope,
    pub start: EpochMillis,
    pub end: EpochMillis,
    /// Who asked for it.
    pub by: String,
}

/// A window with its lifecycle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub spec: WindowSpec,
    pub state: WindowState,
    /// Stream time it was created at.
    pub created: EpochMillis,
    /// When it started, ended or was cancelled (stream time), as it happened.
    pub started: Option<EpochMillis>,
    pub finished: Option<EpochMillis>,
    /// Who ended or cancelled it, if someone did.
    pub finished_by: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MaintenanceError {
    #[error("{0}")]
    Invalid(String),
    #[error("maintenance window `{0}` not found")]
    NotFound(String),
    #[error("maintenance window `{0}` exists already, {1}")]
    Exists(String, &'static str),
    #[error("maintenance window `{0}` is {1}: {2}")]
    State(String, &'static str, &'static str),
}

/// A transition a window went through as the clock moved, or by an operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    Started(String),
    /// Ended or cancelled.
    Finished(String),
}

/// Windows finished kept for listing (the most recent); older ones are forgotten.
pub const FINISHED_KEPT: usize = 1_000;
/// CIs one window names at most.
pub const MAX_CIS: usize = 10_000;
/// Longest change reference and reason.
pub const MAX_CHANGE: usize = 256;
pub const MAX_REASON: usize = 4_096;
/// Windows scheduled or active at once at most.
pub const MAX_OPEN: usize = 10_000;
/// What one window's CI ids and texts take at most, so that its changelog record fits any
/// record limit the engine allows.
pub const MAX_BYTES: usize = 48 * 1024;
/// The longest window (from now, for one started already): longer works are planned as
/// several changes, and no CI stays out of incident management for good.
pub const MAX_LENGTH_MS: EpochMillis = 90 * 86_400_000;

/// Every window the engine knows, and what the active ones cover.
#[derive(Clone, Debug, Default)]
pub struct Maintenance {
    windows: BTreeMap<Arc<str>, Window>,
    /// Finished windows, oldest first, to forget past [`FINISHED_KEPT`].
    finished: VecDeque<Arc<str>>,
    /// The CIs active windows cover, each with the windows covering it.
    covered: FxHashMap<CiIdx, Vec<Arc<str>>>,
    /// The earliest start of a scheduled window or end of an active one.
    next_due: Option<EpochMillis>,
    /// Windows set or forgotten since the changelog last took them.
    dirty: BTreeSet<Arc<str>>,
    /// Moves with every change of a window: an operator's answer waits for its commit.
    revision: u64,
}

impl Maintenance {
    /// The windows a changelog recorded; `covered` is rebuilt by [`Maintenance::cover`].
    pub fn restore(windows: impl IntoIterator<Item = Window>) -> Maintenance {
        let mut maintenance = Maintenance::default();
        let mut finished: Vec<(EpochMillis, Arc<str>)> = Vec::new();
        for window in windows {
            let id: Arc<str> = Arc::from(window.spec.change.as_str());
            if window.state.is_finished() {
                finished.push((window.finished.unwrap_or(window.spec.end), id.clone()));
            }
            maintenance.windows.insert(id, window);
        }
        finished.sort();
        maintenance.finished = finished.into_iter().map(|(_, id)| id).collect();
        maintenance.schedule();
        maintenance
    }

    pub fn get(&self, change: &str) -> Option<&Window> {
        self.windows.get(change)
    }

    /// Moves whenever a window changes.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Every window, by change reference.
    pub fn iter(&self) -> impl Iterator<Item = &Window> {
        self.windows.values()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Whether any window is active.
    pub fn any_active(&self) -> bool {
        self.windows.values().any(|w| w.state == WindowState::Active)
    }

    /// The active windows covering `ci`.
    pub fn covering(&self, ci: CiIdx) -> &[Arc<str>] {
        self.covered.get(&ci).map_or(&[], Vec::as_slice)
    }

    pub fn covers(&self, ci: CiIdx) -> bool {
        !self.covered.is_empty() && self.covered.contains_key(&ci)
    }

    /// Whether the clock at `now` owes a window a transition.
    pub fn due(&self, now: EpochMillis) -> bool {
        self.next_due.is_some_and(|due| due <= now)
    }

    /// Checks a window asked for against the topology and the windows there are.
    fn check(&self, spec: &WindowSpec, topology: &Topology, now: EpochMillis) -> Result<(), MaintenanceError> {
        let invalid = |m: String| Err(MaintenanceError::Invalid(m));
        if spec.change.trim().is_empty() {
            return invalid("a maintenance window needs its change reference".into());
        }
        if spec.change.trim() != spec.change {
            return invalid(format!("change reference `{}` has spaces around it", spec.change));
        }
        let bytes = spec.cis.iter().map(String::len).sum::<usize>() + spec.change.len() + spec.reason.len();
        if bytes > MAX_BYTES {
            return invalid(format!(
                "maintenance window `{}` takes {bytes} bytes of CI ids and text, over {MAX_BYTES}",
                spec.change
            ));
        }
        if spec.end.saturating_sub(spec.start.max(now)) > MAX_LENGTH_MS {
            return invalid(format!("maintenance window `{}` lasts longer than 90 days", spec.change));
        }
        if spec.change.len() > MAX_CHANGE || spec.reason.len() > MAX_REASON {
            return invalid(format!(
                "change reference or reason too long (at most {MAX_CHANGE} and {MAX_REASON} bytes)"
            ));
        }
        if spec.cis.is_empty() {
            return invalid(format!("maintenance window `{}` names no CI", spec.change));
        }
        if spec.cis.len() > MAX_CIS {
            return invalid(format!("maintenance window `{}` names more than {MAX_CIS} CIs", spec.change));
        }
        if let Some(unknown) = spec.cis.iter().find(|ci| topology.lookup(ci).is_none()) {
            return invalid(format!("maintenance window `{}` names unknown CI `{unknown}`", spec.change));
        }
        if spec.end <= spec.start {
            return invalid(format!("maintenance window `{}` ends before it starts", spec.change));
        }
        if spec.end <= now {
            return invalid(format!("maintenance window `{}` ends in the past", spec.change));
        }
        Ok(())
    }

    /// Creates a window; one with the same change reference that is not finished is
    /// replaced when `replace` (the changes topic: its latest record is the window), else
    /// refused unless it is the same (a retried create).
    pub fn create(
        &mut self,
        spec: WindowSpec,
        replace: bool,
        topology: &Topology,
        now: EpochMillis,
    ) -> Result<(), MaintenanceError> {
        if replace && self.windows.get(spec.change.as_str()).is_some_and(|w| w.state.is_finished()) {
            return Ok(());
        }
        self.check(&spec, topology, now)?;
        let open = self.windows.values().filter(|w| !w.state.is_finished()).count();
        match self.windows.get_mut(spec.change.as_str()) {
            // A change reference names one window: once over, it stays over (the changes
            // topic may send its record again).
            Some(window) if window.state.is_finished() && replace => Ok(()),
            Some(window) if window.state.is_finished() => {
                Err(MaintenanceError::Exists(spec.change, "and is over: use another change reference"))
            }
            Some(window) if !window.state.is_finished() => {
                if window.spec == spec {
                    return Ok(());
                }
                if !replace {
                    return Err(MaintenanceError::Exists(spec.change, "with other settings"));
                }
                if window.state == WindowState::Active && spec.start != window.spec.start {
                    // Started already: it keeps its start.
                    let start = window.spec.start;
                    window.spec = WindowSpec { start, ..spec };
                } else {
                    window.spec = spec;
                }
                let id = Arc::from(window.spec.change.as_str());
                self.mark(id);
                self.schedule();
                Ok(())
            }
            _ => {
                if open >= MAX_OPEN {
                    return Err(MaintenanceError::Invalid(format!(
                        "{MAX_OPEN} maintenance windows are scheduled or active already"
                    )));
                }
                let id: Arc<str> = Arc::from(spec.change.as_str());
                self.finished.retain(|f| *f != id);
                let window = Window { spec, created: now, ..Window::default() };
                self.windows.insert(id.clone(), window);
                self.mark(id);
                self.schedule();
                Ok(())
            }
        }
    }

    /// Moves a window's end; it must not be over.
    pub fn extend(&mut self, change: &str, end: EpochMillis, now: EpochMillis) -> Result<(), MaintenanceError> {
        let window = self.open_window(change)?;
        if end <= window.spec.start.max(now) {
            return Err(MaintenanceError::Invalid(format!(
                "maintenance window `{change}` cannot end before it starts or in the past"
            )));
        }
        if end.saturating_sub(window.spec.start.max(now)) > MAX_LENGTH_MS {
            return Err(MaintenanceError::Invalid(format!(
                "maintenance window `{change}` would last longer than 90 days"
            )));
        }
        window.spec.end = end;
        self.mark(Arc::from(change));
        self.schedule();
        Ok(())
    }

    /// Ends an active window now, or cancels a scheduled or active one. Returns whether it
    /// was active (what it covered is then uncovered).
    pub fn finish(&mut self, change: &str, cancel: bool, by: &str, now: EpochMillis) -> Result<bool, MaintenanceError> {
        let window = self.open_window(change)?;
        let was_active = window.state == WindowState::Active;
        if !cancel && !was_active {
            return Err(MaintenanceError::State(change.to_owned(), "scheduled", "not started; cancel it instead"));
        }
        window.state = if cancel { WindowState::Cancelled } else { WindowState::Ended };
        window.finished = Some(now);
        window.finished_by = by.to_owned();
        self.finished_now(Arc::from(change));
        Ok(was_active)
    }

    fn open_window(&mut self, change: &str) -> Result<&mut Window, MaintenanceError> {
        match self.windows.get_mut(change) {
            None => Err(MaintenanceError::NotFound(change.to_owned())),
            Some(w) if w.state.is_finished() => {
                Err(MaintenanceError::State(change.to_owned(), w.state.as_str(), "it is over"))
            }
            Some(w) => Ok(w),
        }
    }

    fn finished_now(&mut self, id: Arc<str>) {
        self.mark(id.clone());
        self.finished.push_back(id);
        while self.finished.len() > FINISHED_KEPT {
            if let Some(old) = self.finished.pop_front() {
                self.windows.remove(&old);
                self.mark(old);
            }
        }
        self.schedule();
    }

    /// Starts and ends the windows whose time has come by `now`, in time order.
    pub fn advance(&mut self, now: EpochMillis) -> Vec<Transition> {
        let mut transitions = Vec::new();
        while self.due(now) {
            let mut due: Vec<(EpochMillis, bool, Arc<str>)> = self
                .windows
                .iter()
                .filter_map(|(id, w)| match w.state {
                    WindowState::Scheduled if w.spec.start <= now => Some((w.spec.start, true, id.clone())),
                    WindowState::Active if w.spec.end <= now => Some((w.spec.end, false, id.clone())),
                    _ => None,
                })
                .collect();
            due.sort();
            for (at, starts, id) in due {
                let window = self.windows.get_mut(&id).expect("a window");
                if starts {
                    window.state = WindowState::Active;
                    // Created after its start: it started when created.
                    window.started = Some(at.max(window.created));
                    self.mark(id.clone());
                    transitions.push(Transition::Started(id.to_string()));
                } else {
                    window.state = WindowState::Ended;
                    window.finished = Some(at);
                    self.finished_now(id.clone());
                    transitions.push(Transition::Finished(id.to_string()));
                }
            }
            self.schedule();
        }
        transitions
    }

    fn schedule(&mut self) {
        self.next_due = self
            .windows
            .values()
            .filter_map(|w| match w.state {
                WindowState::Scheduled => Some(w.spec.start),
                WindowState::Active => Some(w.spec.end),
                _ => None,
            })
            .min();
    }

    /// Works out again what the active windows cover, on `topology`: their CIs, and for
    /// a window of scope [`Scope::Dependents`] everything above them. Returns the CIs
    /// covered now that were not before.
    pub fn cover(&mut self, topology: &Topology) -> Vec<CiIdx> {
        let mut covered: FxHashMap<CiIdx, Vec<Arc<str>>> = FxHashMap::default();
        for (id, window) in &self.windows {
            if window.state != WindowState::Active {
                continue;
            }
            let mut stack: Vec<CiIdx> = window.spec.cis.iter().filter_map(|ci| topology.lookup(ci)).collect();
            while let Some(ci) = stack.pop() {
                let windows = covered.entry(ci).or_default();
                if windows.last() == Some(id) {
                    continue;
                }
                windows.push(id.clone());
                if window.spec.scope == Scope::Dependents {
                    stack.extend_from_slice(topology.dependents(ci));
                }
            }
        }
        let mut gained: Vec<CiIdx> = covered.keys().filter(|ci| !self.covered.contains_key(ci)).copied().collect();
        gained.sort_unstable();
        self.covered = covered;
        gained
    }

    fn mark(&mut self, id: Arc<str>) {
        self.revision += 1;
        self.dirty.insert(id);
    }

    /// The windows set or forgotten (`None`) since the last call, for the changelog.
    pub fn take_dirty(&mut self) -> Vec<(Arc<str>, Option<Window>)> {
        std::mem::take(&mut self.dirty).into_iter().map(|id| (id.clone(), self.windows.get(&id).cloned())).collect()
    }

    /// The CIs covered now, for incident management.
    pub fn covered(&self) -> impl Iterator<Item = CiIdx> + '_ {
        self.covered.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::topology::{CiClass, CiRecord};

    fn topology() -> Topology {
        let node = |id: &str, class, deps: &[&str]| CiRecord {
            id: id.into(),
            class,
            name: String::new(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            rule: Default::default(),
            customer: None,
            sla: None,
            incidents: None,
            attributes: Default::default(),
        };
        Topology::from_records(vec![
            node("dev", CiClass::Device, &[]),
            node("card", CiClass::Card, &["dev"]),
            node("port", CiClass::Port, &["card"]),
            node("svc", CiClass::Cfs, &["port"]),
        ])
        .unwrap()
    }

    fn spec(change: &str, cis: &[&str], scope: Scope, start: EpochMillis, end: EpochMillis) -> WindowSpec {
        WindowSpec {
            change: change.into(),
            reason: "line card swap".into(),
            cis: cis.iter().map(|c| c.to_string()).collect(),
            scope,
            start,
            end,
            by: "alice".into(),
        }
    }

    #[test]
    fn windows_start_and_end_with_the_clock_and_cover_by_scope() {
        let topology = topology();
        let idx = |id: &str| topology.lookup(id).unwrap();
        let mut m = Maintenance::default();
        m.create(spec("CHG1", &["card"], Scope::Ci, 100, 200), false, &topology, 0).unwrap();
        m.create(spec("CHG2", &["card"], Scope::Dependents, 150, 300), false, &topology, 0).unwrap();
        assert!(!m.due(99) && m.due(100));
        assert_eq!(m.advance(120), vec![Transition::Started("CHG1".into())]);
        assert_eq!(m.cover(&topology), vec![idx("card")]);
        assert!(!m.covers(idx("port")));
        assert_eq!(m.advance(250), vec![Transition::Started("CHG2".into()), Transition::Finished("CHG1".into())]);
        let mut gained = m.cover(&topology);
        gained.sort_unstable();
        assert_eq!(gained, vec![idx("port"), idx("svc")]);
        assert_eq!(m.covering(idx("card")), [Arc::from("CHG2")]);
        assert!(!m.covers(idx("dev")));
        assert_eq!(m.get("CHG1").unwrap().state, WindowState::Ended);
        assert_eq!(m.get("CHG1").unwrap().finished, Some(200), "at its end, not when the clock noticed");
        m.advance(300);
        m.cover(&topology);
        assert!(!m.covers(idx("card")) && !m.any_active());
    }

    #[test]
    fn operators_extend_end_and_cancel_and_bad_windows_are_refused() {
        let topology = topology();
        let mut m = Maintenance::default();
        let bad = |s: WindowSpec| Maintenance::default().create(s, false, &topology, 50).unwrap_err();
        assert!(matches!(bad(spec("", &["card"], Scope::Ci, 100, 200)), MaintenanceError::Invalid(_)));
        assert!(bad(spec("C", &["nope"], Scope::Ci, 100, 200)).to_string().contains("`nope`"));
        assert!(bad(spec("C", &[], Scope::Ci, 100, 200)).to_string().contains("names no CI"));
        assert!(bad(spec("C", &["card"], Scope::Ci, 200, 100)).to_string().contains("before it starts"));
        assert!(bad(spec("C", &["card"], Scope::Ci, 10, 40)).to_string().contains("in the past"));

        m.create(spec("CHG1", &["card"], Scope::Ci, 100, 200), false, &topology, 0).unwrap();
        // A retried create is no error; another with the same reference is.
        m.create(spec("CHG1", &["card"], Scope::Ci, 100, 200), false, &topology, 0).unwrap();
        let other = m.create(spec("CHG1", &["port"], Scope::Ci, 100, 200), false, &topology, 0);
        assert!(matches!(other, Err(MaintenanceError::Exists(..))));
        assert!(matches!(m.finish("CHG1", false, "bob", 50), Err(MaintenanceError::State(..))));
        m.advance(100);
        m.extend("CHG1", 400, 150).unwrap();
        assert!(m.extend("CHG1", 120, 150).is_err(), "not into the past");
        assert!(m.advance(300).is_empty(), "extended");
        assert!(m.finish("CHG1", false, "bob", 310).unwrap(), "it was active");
        let window = m.get("CHG1").unwrap();
        assert_eq!(
            (window.state, window.finished, window.finished_by.as_str()),
            (WindowState::Ended, Some(310), "bob")
        );
        assert!(matches!(m.extend("CHG1", 500, 320), Err(MaintenanceError::State(..))));
        assert!(matches!(m.finish("CHG9", true, "bob", 320), Err(MaintenanceError::NotFound(_))));

        m.create(spec("CHG2", &["card"], Scope::Ci, 1_000, 2_000), false, &topology, 320).unwrap();
        assert!(!m.finish("CHG2", true, "bob", 330).unwrap(), "cancelled before it started");
        assert!(m.advance(5_000).is_empty(), "a cancelled window never starts");
        let dirty: Vec<_> = m.take_dirty().into_iter().map(|(id, w)| (id.to_string(), w.map(|w| w.state))).collect();
        assert_eq!(
            dirty,
            vec![("CHG1".into(), Some(WindowState::Ended)), ("CHG2".into(), Some(WindowState::Cancelled))]
        );
    }

    #[test]
    fn finished_windows_are_forgotten_past_a_bound() {
        let topology = topology();
        let mut m = Maintenance::default();
        for i in 0..FINISHED_KEPT + 5 {
            let change = format!("CHG{i}");
            m.create(spec(&change, &["card"], Scope::Ci, 100, 200), false, &topology, 0).unwrap();
            m.finish(&change, true, "bob", 1).unwrap();
        }
        assert_eq!(m.iter().count(), FINISHED_KEPT);
        assert!(m.get("CHG0").is_none() && m.get("CHG5").is_some());
        let forgotten = m.take_dirty().into_iter().filter(|(_, w)| w.is_none()).count();
        assert_eq!(forgotten, 5, "tombstones for the changelog");
        let restored = Maintenance::restore(m.iter().cloned());
        assert_eq!(restored.iter().count(), FINISHED_KEPT);
    }
}
