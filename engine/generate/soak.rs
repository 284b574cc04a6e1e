//! A carrier network's ordinary weeks in stream time, seeded, for the soak benchmark
//! (`faultline bench --soak`): faults that come and go on ports, cards, devices and fibres
//! after minutes to hours, signal degradations, flapping ports, alarms from a legacy system
//! on resources the topology does not know (many distinct ones, a fifth never cleared nor
//! repeated), stray clears of alarms never raised, and operators acknowledging, annotating
//! and resolving incidents. Element managers repeat every active alarm every one to five
//! minutes, now and then at another severity or as a retransmission of the last
//! notification, as in [`super::scenario`]'s storms. Unlike a storm, time here is the
//! network's own: hold-downs, reopen windows, the memory of clears and ageing all run
//! their course, so incidents open, resolve and close continually.
//!
//! [`Workload::next_step`] gives the steps in stream-time order. Integer arithmetic only: the
//! same seed gives the same steps on every machine.

use super::Rng;
use crate::model::EpochMillis;
use crate::model::alarm::{Alarm, EventType, Severity};
use crate::model::topology::{CiClass, CiIdx, Topology};
use rustc_hash::{FxHashMap, FxHashSet};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

const SECOND: EpochMillis = 1_000;
const MINUTE: EpochMillis = 60 * SECOND;
const HOUR: EpochMillis = 60 * MINUTE;

/// The source system reporting on resources the topology does not know.
pub const LEGACY_SOURCE: &str = "legacy-nms";
/// Element managers of the network the topology describes; a CI's is its index modulo this.
const MANAGERS: u32 = 16;
/// Distinct resources the legacy system reports on.
const LEGACY_RESOURCES: usize = 1_000_000;
const LEGACY_TYPES: [&str; 4] = ["EQPT_ALARM", "TEMP_HIGH", "PSU_FAIL", "FAN_FAIL"];
/// One legacy alarm in this many is never cleared nor repeated: only ageing removes it.
const NEVER_CLEARED: usize = 5;

/// What an operator does to an incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorAction {
    /// An open incident.
    Acknowledge,
    /// An incident not yet resolved.
    Note,
    /// An incident not yet resolved, refused if it still impacts services.
    Resolve,
    /// An incident not yet resolved, even if it still impacts services.
    ForceResolve,
}

/// One step of the workload, at a stream time.
// Nearly every step is an alarm: boxing it would allocate for each one to save nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Alarm(Alarm),
    /// An operator acts on one of the incidents the action suits: the `pick`-th, modulo
    /// their number (the driver knows the incidents, the workload does not).
    Operator {
        action: OperatorAction,
        pick: u64,
    },
}

/// What arrives: each kind at a mean interval, on a network of [`REFERENCE_CIS`] at load 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arrival {
    /// Loss of signal on a port, and on the far end of its fibres: 2 min to 4 h.
    PortFault,
    /// A high bit-error rate on a port (minor: degraded): 1 min to 8 h.
    Degradation,
    /// A line card fails, its ports lose signal: 5 min to 2 h.
    CardFault,
    /// A fibre is cut: loss of signal at both ends, the link down: 10 min to 6 h.
    FibreCut,
    /// A router is unreachable, the far ends of its fibres lose signal: 5 min to 1 h.
    DeviceFault,
    /// A port's signal comes and goes every 2 to 10 s, for 2 to 30 min.
    Flap,
    /// An alarm on a resource the topology does not know: 1 min to 12 h, or never cleared.
    Legacy,
    /// A clear of an alarm that is not active (an element manager resending after a
    /// restart): remembered for a while.
    StrayClear,
    Operator,
}

/// The network size the intervals of [`ARRIVALS`] are for: a network of N CIs sees
/// N / 100,000 as many arrivals of each kind (faults strike resources; operators follow
/// incidents).
pub const REFERENCE_CIS: usize = 100_000;

const ARRIVALS: [(Arrival, EpochMillis); 9] = [
    (Arrival::PortFault, 12 * SECOND),
    (Arrival::Degradation, 30 * SECOND),
    (Arrival::CardFault, 3 * MINUTE),
    (Arrival::FibreCut, 20 * MINUTE),
    (Arrival::DeviceFault, 30 * MINUTE),
    (Arrival::Flap, 2 * MINUTE),
    (Arrival::Legacy, 2 * SECOND),
    (Arrival::StrayClear, MINUTE),
    (Arrival::Operator, 10 * SECOND),
];

#[derive(Clone, Copy, Debug)]
enum Event {
    /// The next arrival of `ARRIVALS[i]`.
    Arrive(usize),
    Repeat(u64),
    Clear(u64),
    Toggle(u64),
}

/// An event in the queue, ordered by time, then by the order it was scheduled in.
struct Scheduled {
    at: EpochMillis,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// One alarm of a fault.
struct Script {
    resource: Arc<str>,
    alarm_type: &'static str,
    severity: Severity,
    event_type: EventType,
    /// The last notification sent for it (0: none yet).
    notification: u64,
}

/// A running fault: its alarms, root first.
struct Fault {
    alarms: Vec<Script>,
    source: Arc<str>,
    /// The keys it holds in `Workload::owned`.
    owned: Vec<Owned>,
    repeat_every: EpochMillis,
    /// A flapping port: whether its alarm is up, and when the flapping stops.
    flap: Option<(bool, EpochMillis)>,
}

/// An alarm identity a fault holds, so that no other fault raises or clears it meanwhile:
/// a CI or a legacy resource, and the alarm type.
type Owned = (u64, &'static str);

fn legacy_key(n: usize) -> u64 {
    (1 << 40) | n as u64
}

/// The workload over one topology; endless.
pub struct Workload<'t> {
    topology: &'t Topology,
    ports: Vec<CiIdx>,
    cards: Vec<CiIdx>,
    devices: Vec<CiIdx>,
    links: Vec<CiIdx>,
    managers: Vec<Arc<str>>,
    legacy: Arc<str>,
    rng: Rng,
    /// Mean interval of each arrival, at the workload's load.
    intervals: [EpochMillis; ARRIVALS.len()],
    queue: BinaryHeap<Reverse<Scheduled>>,
    scheduled: u64,
    faults: FxHashMap<u64, Fault>,
    next_fault: u64,
    owned: FxHashSet<Owned>,
    notification: u64,
    /// Steps made by the last event, not yet handed out.
    ready: VecDeque<(EpochMillis, Step)>,
}

impl<'t> Workload<'t> {
    /// A workload from stream time `start`; `load` multiplies every arrival rate (which
    /// follows the network's size, see [`REFERENCE_CIS`]).
    pub fn new(topology: &'t Topology, seed: u64, start: EpochMillis, load: f64) -> Workload<'t> {
        let of = |class| topology.iter().filter(|(_, ci)| ci.class == class).map(|(i, _)| i).collect::<Vec<_>>();
        let load = if load.is_finite() && load > 0.0 { load } else { 1.0 };
        let scale = load * topology.len().max(1) as f64 / REFERENCE_CIS as f64;
        // The one floating-point step: a division, exact to the same bits on every machine.
        let intervals = ARRIVALS.map(|(_, mean)| ((mean as f64 / scale) as EpochMillis).max(1));
        let mut workload = Workload {
            topology,
            ports: of(CiClass::Port),
            cards: of(CiClass::Card),
            devices: of(CiClass::Device),
            links: of(CiClass::Link),
            managers: (0..MANAGERS).map(|m| Arc::from(format!("ems-{m}"))).collect(),
            legacy: Arc::from(LEGACY_SOURCE),
            rng: Rng::new(seed),
            intervals,
            queue: BinaryHeap::new(),
            scheduled: 0,
            faults: FxHashMap::default(),
            next_fault: 1,
            owned: FxHashSet::default(),
            notification: 0,
            ready: VecDeque::new(),
        };
        for i in 0..ARRIVALS.len() {
            let first = start + workload.interval(i);
            workload.schedule(first, Event::Arrive(i));
        }
        workload
    }

    /// The next step and its stream time, never earlier than the one before.
    pub fn next_step(&mut self) -> (EpochMillis, Step) {
        loop {
            if let Some(step) = self.ready.pop_front() {
                return step;
            }
            let Some(Reverse(Scheduled { at, event, .. })) = self.queue.pop() else {
                unreachable!("every arrival schedules the next one");
            };
            self.handle(at, event);
        }
    }

    /// Faults running now (flapping ports and legacy alarms included).
    pub fn running(&self) -> usize {
        self.faults.len()
    }

    /// Events waiting in the workload's own queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    fn schedule(&mut self, at: EpochMillis, event: Event) {
        self.scheduled += 1;
        self.queue.push(Reverse(Scheduled { at, seq: self.scheduled, event }));
    }

    /// A time to the next arrival of `ARRIVALS[i]`: uniform, averaging its interval.
    fn interval(&mut self, i: usize) -> EpochMillis {
        1 + self.rng.below(2 * self.intervals[i] as usize) as EpochMillis
    }

    /// A duration between `low` and `high`, as likely in each doubling (log-uniform).
    fn duration(&mut self, low: EpochMillis, high: EpochMillis) -> EpochMillis {
        let mut doublings = 0;
        while low << (doublings + 1) <= high {
            doublings += 1;
        }
        let base = low << self.rng.below(doublings.max(1));
        (base + self.rng.below(base as usize) as EpochMillis).min(high)
    }

    fn handle(&mut self, at: EpochMillis, event: Event) {
        match event {
            Event::Arrive(i) => {
                let next = at + self.interval(i);
                self.schedule(next, Event::Arrive(i));
                self.arrive(at, ARRIVALS[i].0);
            }
            Event::Repeat(id) => self.repeat(at, id),
            Event::Clear(id) => {
                let Some(mut fault) = self.faults.remove(&id) else { return };
                for script in &mut fault.alarms {
                    let alarm = notification(&mut self.notification, at, script, &fault.source, true, false);
                    self.ready.push_back((at, Step::Alarm(alarm)));
                }
                self.release(&fault);
            }
            Event::Toggle(id) => self.toggle(at, id),
        }
    }

    fn arrive(&mut self, at: EpochMillis, arrival: Arrival) {
        match arrival {
            Arrival::Legacy => return self.legacy(at),
            Arrival::StrayClear => return self.stray_clear(at),
            Arrival::Operator => return self.operator(at),
            _ => {}
        }
        let mut alarms: Vec<Scripted> = Vec::new();
        let Some(duration) = self.fault(arrival, &mut alarms) else { return };
        // The root must be free; symptoms another fault already reports stay with it.
        let Some(&(root, root_type, ..)) = alarms.first() else { return };
        if self.owned.contains(&(u64::from(root), root_type)) {
            return;
        }
        alarms.retain(|&(ci, alarm_type, ..)| self.owned.insert((u64::from(ci), alarm_type)));
        let fault = Fault {
            alarms: alarms
                .iter()
                .map(|&(ci, alarm_type, severity, event_type)| Script {
                    resource: self.topology.ci(ci).id.clone(),
                    alarm_type,
                    severity,
                    event_type,
                    notification: 0,
                })
                .collect(),
            source: self.managers[(root % MANAGERS) as usize].clone(),
            owned: alarms.iter().map(|&(ci, alarm_type, ..)| (u64::from(ci), alarm_type)).collect(),
            repeat_every: MINUTE + self.rng.below(4 * MINUTE as usize) as EpochMillis,
            flap: (arrival == Arrival::Flap).then_some((false, at + duration)),
        };
        self.start(at, fault, duration);
    }

    /// The alarms of a new fault of kind `arrival` (root first) and how long it lasts;
    /// `None` if the topology has nothing it could strike.
    fn fault(&mut self, arrival: Arrival, alarms: &mut Vec<Scripted>) -> Option<EpochMillis> {
        use EventType::{Communications, Equipment, QualityOfService};
        let duration = match arrival {
            Arrival::PortFault => {
                let port = pick(&mut self.rng, &self.ports)?;
                alarms.push((port, "LOS", Severity::Critical, Communications));
                self.fibre_symptoms(port, alarms);
                self.duration(2 * MINUTE, 4 * HOUR)
            }
            Arrival::Degradation => {
                let port = pick(&mut self.rng, &self.ports)?;
                alarms.push((port, "HIGH_BER", Severity::Minor, QualityOfService));
                self.duration(MINUTE, 8 * HOUR)
            }
            Arrival::CardFault => {
                let card = pick(&mut self.rng, &self.cards)?;
                alarms.push((card, "EQPT_FAIL", Severity::Critical, Equipment));
                for port in self.dependents_of(card, CiClass::Port) {
                    alarms.push((port, "LOS", Severity::Major, Communications));
                }
                self.duration(5 * MINUTE, 2 * HOUR)
            }
            Arrival::FibreCut => {
                let link = pick(&mut self.rng, &self.links)?;
                alarms.push((link, "LINK_DOWN", Severity::Major, Communications));
                for &port in self.topology.dependencies(link) {
                    alarms.push((port, "LOS", Severity::Critical, Communications));
                }
                self.duration(10 * MINUTE, 6 * HOUR)
            }
            Arrival::DeviceFault => {
                let device = pick(&mut self.rng, &self.devices)?;
                alarms.push((device, "NODE_UNREACHABLE", Severity::Critical, Communications));
                for card in self.dependents_of(device, CiClass::Card) {
                    for port in self.dependents_of(card, CiClass::Port) {
                        self.fibre_symptoms(port, alarms);
                    }
                }
                self.duration(5 * MINUTE, HOUR)
            }
            Arrival::Flap => {
                let port = pick(&mut self.rng, &self.ports)?;
                alarms.push((port, "LOS", Severity::Major, Communications));
                self.duration(2 * MINUTE, 30 * MINUTE)
            }
            Arrival::Legacy | Arrival::StrayClear | Arrival::Operator => return None,
        };
        Some(duration)
    }

    fn operator(&mut self, at: EpochMillis) {
        let action = match self.rng.below(100) {
            0..45 => OperatorAction::Acknowledge,
            45..85 => OperatorAction::Note,
            85..95 => OperatorAction::Resolve,
            _ => OperatorAction::ForceResolve,
        };
        let pick = self.rng.next();
        self.ready.push_back((at, Step::Operator { action, pick }));
    }

    /// Raises a fault's alarms at `at` and schedules what follows: its repeats and its
    /// clear after `duration`, or for a flapping port its next toggle.
    fn start(&mut self, at: EpochMillis, mut fault: Fault, duration: EpochMillis) {
        let id = self.next_fault;
        self.next_fault += 1;
        if let Some((up, _)) = &mut fault.flap {
            *up = true;
            let next = at + self.toggle_interval();
            self.schedule(next, Event::Toggle(id));
        } else {
            self.schedule(at + fault.repeat_every, Event::Repeat(id));
            self.schedule(at + duration, Event::Clear(id));
        }
        for script in &mut fault.alarms {
            let alarm = notification(&mut self.notification, at, script, &fault.source, false, false);
            self.ready.push_back((at, Step::Alarm(alarm)));
        }
        self.faults.insert(id, fault);
    }

    /// An element manager's periodic report of a fault's active alarms: each repeated,
    /// now and then at another severity (a threshold crossed) or as a retransmission.
    fn repeat(&mut self, at: EpochMillis, id: u64) {
        let Some(fault) = self.faults.get_mut(&id) else { return };
        for script in &mut fault.alarms {
            let roll = self.rng.below(100);
            if roll < 3 {
                script.severity = match script.severity {
                    Severity::Critical => Severity::Major,
                    Severity::Major => Severity::Critical,
                    Severity::Minor => Severity::Warning,
                    _ => Severity::Minor,
                };
            }
            let retransmit = roll == 99 && script.notification != 0;
            let alarm = notification(&mut self.notification, at, script, &fault.source, false, retransmit);
            self.ready.push_back((at, Step::Alarm(alarm)));
        }
        let next = at + fault.repeat_every;
        self.schedule(next, Event::Repeat(id));
    }

    /// A flapping port's alarm raised or cleared again; cleared for good once its time is up.
    fn toggle(&mut self, at: EpochMillis, id: u64) {
        let Some(fault) = self.faults.get_mut(&id) else { return };
        let Some((up, until)) = fault.flap else { return };
        fault.flap = Some((!up, until));
        let alarm = notification(&mut self.notification, at, &mut fault.alarms[0], &fault.source, up, false);
        self.ready.push_back((at, Step::Alarm(alarm)));
        if up && at >= until {
            if let Some(fault) = self.faults.remove(&id) {
                self.release(&fault);
            }
            return;
        }
        let next = at + self.toggle_interval();
        self.schedule(next, Event::Toggle(id));
    }

    fn toggle_interval(&mut self) -> EpochMillis {
        2 * SECOND + self.rng.below(8 * SECOND as usize) as EpochMillis
    }

    /// An alarm of the legacy system on a resource the topology does not know: one of
    /// many, cleared after a while, or (one in [`NEVER_CLEARED`]) never cleared nor repeated.
    fn legacy(&mut self, at: EpochMillis) {
        let n = self.rng.below(LEGACY_RESOURCES);
        let alarm_type = LEGACY_TYPES[self.rng.below(LEGACY_TYPES.len())];
        let severity = [Severity::Minor, Severity::Major, Severity::Critical][self.rng.below(3)];
        let mut script = Script {
            resource: Arc::from(format!("{LEGACY_SOURCE}/ne-{n:06}")),
            alarm_type,
            severity,
            event_type: EventType::Equipment,
            notification: 0,
        };
        if self.rng.below(NEVER_CLEARED) == 0 {
            // The source lost track of it: only ageing clears it. Not held either: a later
            // fault on the same alarm repeats it, and its clear clears it.
            let alarm = notification(&mut self.notification, at, &mut script, &self.legacy, false, false);
            self.ready.push_back((at, Step::Alarm(alarm)));
            return;
        }
        let key = (legacy_key(n), alarm_type);
        if !self.owned.insert(key) {
            return;
        }
        let duration = self.duration(MINUTE, 12 * HOUR);
        let fault = Fault {
            alarms: vec![script],
            source: self.legacy.clone(),
            owned: vec![key],
            repeat_every: MINUTE + self.rng.below(4 * MINUTE as usize) as EpochMillis,
            flap: None,
        };
        self.start(at, fault, duration);
    }

    /// A clear of an alarm no fault holds: of a legacy resource or of a port's signal.
    fn stray_clear(&mut self, at: EpochMillis) {
        let (key, resource, source, alarm_type): (Owned, Arc<str>, Arc<str>, &'static str) = if self.rng.below(2) == 0 {
            let n = self.rng.below(LEGACY_RESOURCES);
            let alarm_type = LEGACY_TYPES[self.rng.below(LEGACY_TYPES.len())];
            let resource = Arc::from(format!("{LEGACY_SOURCE}/ne-{n:06}"));
            ((legacy_key(n), alarm_type), resource, self.legacy.clone(), alarm_type)
        } else {
            let Some(port) = pick(&mut self.rng, &self.ports) else { return };
            let source = self.managers[(port % MANAGERS) as usize].clone();
            ((u64::from(port), "LOS"), self.topology.ci(port).id.clone(), source, "LOS")
        };
        if self.owned.contains(&key) {
            return;
        }
        let mut script = Script {
            resource,
            alarm_type,
            severity: Severity::Major,
            event_type: EventType::Communications,
            notification: 0,
        };
        let alarm = notification(&mut self.notification, at, &mut script, &source, true, false);
        self.ready.push_back((at, Step::Alarm(alarm)));
    }

    fn release(&mut self, fault: &Fault) {
        for key in &fault.owned {
            self.owned.remove(key);
        }
    }

    fn dependents_of(&self, ci: CiIdx, class: CiClass) -> Vec<CiIdx> {
        self.topology.dependents(ci).iter().copied().filter(|&d| self.topology.ci(d).class == class).collect()
    }

    /// What the network reports when a port goes dark: each fibre on it down, and loss of
    /// signal at the fibre's other end.
    fn fibre_symptoms(&self, port: CiIdx, alarms: &mut Vec<Scripted>) {
        for link in self.dependents_of(port, CiClass::Link) {
            alarms.push((link, "LINK_DOWN", Severity::Major, EventType::Communications));
            for &far in self.topology.dependencies(link).iter().filter(|&&p| p != port) {
                alarms.push((far, "LOS", Severity::Major, EventType::Communications));
            }
        }
    }
}

/// An alarm a fault raises on a CI: the CI, its type, severity and event type.
type Scripted = (CiIdx, &'static str, Severity, EventType);

fn pick(rng: &mut Rng, from: &[CiIdx]) -> Option<CiIdx> {
    (!from.is_empty()).then(|| from[rng.below(from.len())])
}

/// The next notification of `script` at `at`: a new one (a raise, repeat, severity change
/// or clear), or the last one again (`retransmit`).
fn notification(
    counter: &mut u64,
    at: EpochMillis,
    script: &mut Script,
    source: &str,
    cleared: bool,
    retransmit: bool,
) -> Alarm {
    if !retransmit || script.notification == 0 {
        *counter += 1;
        script.notification = *counter;
    }
    let text = if cleared { String::new() } else { format!("{} on {}", script.alarm_type, script.resource) };
    Alarm {
        resource: script.resource.to_string(),
        alarm_type: script.alarm_type.to_owned(),
        qualifier: String::new(),
        severity: if cleared { Severity::Indeterminate } else { script.severity },
        cleared,
        event_type: script.event_type,
        probable_cause: String::new(),
        specific_problem: String::new(),
        text,
        event_time: at,
        source_system: source.to_owned(),
        notification_id: format!("n-{}", script.notification),
        sequence: script.notification,
    }
}
