//! Incidents encoded straight from the model, to the bytes prost writes for
//! [`super::incident_to_proto`]: no intermediate `v1::Incident`, so no string copied into
//! an owned field and freed again. An incident changed in a transaction is encoded for the
//! incidents topic, the state changelog and the live stream, and copying hundreds of
//! timeline and alarm texts into owned strings first was most of what a commit cost.
//!
//! Each message is written by one function over a [`Sink`]: run on a [`Len`] it measures,
//! on a `Vec<u8>` it writes, so a nested message's length prefix comes from the same code
//! that writes its body. The tests check the bytes against prost's on real incidents.

use super::delta::{EditKind, IncidentDelta, ListEdit};
use super::{incident_state_to_proto, level_to_proto, severity_to_proto, sla_to_proto, state_to_proto};
use crate::correlate::changelog::IncidentRecord;
use crate::model::EpochMillis;
use crate::model::alarm::AlarmRef;
use crate::model::incident::{Acknowledgement, ImpactedCustomer, ImpactedService, Incident, Note, TimelineEntry};
use crate::model::state::State;
use prost::encoding::{encode_varint, encoded_len_varint};
use std::sync::Arc;

const VARINT: u64 = 0;
const LEN: u64 = 2;

/// Where encoded bytes go: counted ([`Len`]) or written (`Vec<u8>`).
pub trait Sink {
    fn varint(&mut self, value: u64);
    fn bytes(&mut self, bytes: &[u8]);
}

/// Counts the bytes an encoding takes.
#[derive(Default)]
pub struct Len(pub usize);

impl Sink for Len {
    fn varint(&mut self, value: u64) {
        self.0 += encoded_len_varint(value);
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

impl Sink for Vec<u8> {
    fn varint(&mut self, value: u64) {
        encode_varint(value, self);
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A protobuf message written field by field.
trait Message {
    fn fields<S: Sink>(&self, out: &mut S);
}

fn key<S: Sink>(out: &mut S, tag: u32, wire_type: u64) {
    out.varint(u64::from(tag) << 3 | wire_type);
}

/// A length-delimited field, written even when empty (an element of a repeated field).
fn delimited<S: Sink>(out: &mut S, tag: u32, bytes: &[u8]) {
    key(out, tag, LEN);
    out.varint(bytes.len() as u64);
    out.bytes(bytes);
}

/// A singular string field: proto3 leaves the empty string out.
fn string<S: Sink>(out: &mut S, tag: u32, value: &str) {
    if !value.is_empty() {
        delimited(out, tag, value.as_bytes());
    }
}

/// A singular integer or enum field (int32 and enums sign-extend, as prost does).
fn int<S: Sink>(out: &mut S, tag: u32, value: i64) {
    if value != 0 {
        key(out, tag, VARINT);
        out.varint(value as u64);
    }
}

fn message<S: Sink, M: Message>(out: &mut S, tag: u32, message: &M) {
    let mut len = Len::default();
    message.fields(&mut len);
    key(out, tag, LEN);
    out.varint(len.0 as u64);
    message.fields(out);
}

/// `google.protobuf.Timestamp`, as [`super::timestamp`] makes it.
struct Timestamp(EpochMillis);

impl Message for Timestamp {
    fn fields<S: Sink>(&self, out: &mut S) {
        let ts = super::timestamp(self.0);
        int(out, 1, ts.seconds);
        int(out, 2, i64::from(ts.nanos));
    }
}

impl Message for AlarmRef {
    fn fields<S: Sink>(&self, out: &mut S) {
        string(out, 1, &self.resource);
        string(out, 2, &self.alarm_type);
        string(out, 3, &self.qualifier);
        int(out, 4, severity_to_proto(self.severity) as i64);
        string(out, 5, &self.text);
        message(out, 6, &Timestamp(self.raised_at));
        message(out, 7, &Timestamp(self.last_seen));
        int(out, 8, self.tally as i64);
        if let Some(cleared) = self.cleared_at {
            message(out, 9, &Timestamp(cleared));
        }
    }
}

impl Message for ImpactedService {
    fn fields<S: Sink>(&self, out: &mut S) {
        string(out, 1, &self.id);
        string(out, 2, &self.name);
        int(out, 3, state_to_proto(self.impact) as i64);
        string(out, 4, self.customer.as_deref().unwrap_or_default());
    }
}

impl Message for ImpactedCustomer {
    fn fields<S: Sink>(&self, out: &mut S) {
        string(out, 1, &self.id);
        string(out, 2, &self.name);
        int(out, 3, sla_to_proto(self.sla) as i64);
        int(out, 4, state_to_proto(self.impact) as i64);
    }
}

impl Message for TimelineEntry {
    fn fields<S: Sink>(&self, out: &mut S) {
        message(out, 1, &Timestamp(self.time));
        string(out, 2, self.kind.as_str());
        string(out, 3, &self.text);
    }
}

impl Message for Acknowledgement {
    fn fields<S: Sink>(&self, out: &mut S) {
        string(out, 1, &self.by);
        message(out, 2, &Timestamp(self.time));
    }
}

impl Message for Note {
    fn fields<S: Sink>(&self, out: &mut S) {
        string(out, 1, &self.author);
        string(out, 2, &self.text);
        message(out, 3, &Timestamp(self.time));
        string(out, 4, &self.request_id);
    }
}

/// An incident with its id already formatted (`INC-000042`); with `whole` false, without
/// its lists (`INCIDENT_VIEW_SUMMARY`: alarms, services, customers, timeline, notes).
struct IncidentFields<'a>(&'a Incident, &'a str, bool);

impl Message for IncidentFields<'_> {
    fn fields<S: Sink>(&self, out: &mut S) {
        let IncidentFields(i, id, whole) = *self;
        let (root_cause_alarms, symptom_alarms, services, customers, notes) = if whole {
            (&i.root_cause_alarms[..], &i.symptom_alarms[..], &i.services[..], &i.customers[..], &i.notes[..])
        } else {
            (&[][..], &[][..], &[][..], &[][..], &[][..])
        };
        string(out, 1, id);
        string(out, 2, &i.title);
        int(out, 3, incident_state_to_proto(i.state) as i64);
        int(out, 4, i64::from(i.priority.0));
        int(out, 5, level_to_proto(i.impact) as i64);
        int(out, 6, level_to_proto(i.urgency) as i64);
        for root in &i.root_causes {
            delimited(out, 7, root.as_bytes());
        }
        for alarm in root_cause_alarms {
            message(out, 8, alarm);
        }
        for alarm in symptom_alarms {
            message(out, 9, alarm);
        }
        for service in services {
            message(out, 10, service);
        }
        for customer in customers {
            message(out, 11, customer);
        }
        if whole {
            for entry in i.timeline.iter() {
                message(out, 12, entry);
            }
        }
        if let Some(acknowledgement) = &i.acknowledgement {
            message(out, 13, acknowledgement);
        }
        for note in notes {
            message(out, 14, note);
        }
        message(out, 15, &Timestamp(i.opened_at));
        message(out, 16, &Timestamp(i.updated_at));
        if let Some(resolved) = i.resolved_at {
            message(out, 17, &Timestamp(resolved));
        }
        int(out, 18, i.version as i64);
        int(out, 19, i.root_cause_alarms.len() as i64);
        int(out, 20, i.symptom_alarms.len() as i64);
        int(out, 21, i.services.len() as i64);
        int(out, 22, i.customers.len() as i64);
        int(out, 23, i64::from(i.omitted.root_causes));
        int(out, 24, i64::from(i.omitted.root_cause_alarms));
        int(out, 25, i64::from(i.omitted.symptom_alarms));
        int(out, 26, i64::from(i.omitted.cleared_alarms));
        int(out, 27, i.topology_version as i64);
    }
}

/// Appends `incident` encoded as a `faultline.v1.Incident`.
pub fn incident(incident: &Incident, out: &mut Vec<u8>) {
    encode_incident(incident, true, out);
}

/// Appends `incident` encoded as a `faultline.v1.Incident` in `INCIDENT_VIEW_SUMMARY`:
/// without its lists, their sizes given.
pub fn incident_summary(incident: &Incident, out: &mut Vec<u8>) {
    encode_incident(incident, false, out);
}

fn encode_incident(incident: &Incident, whole: bool, out: &mut Vec<u8>) {
    let id = incident.id.to_string();
    let fields = IncidentFields(incident, &id, whole);
    let mut len = Len::default();
    fields.fields(&mut len);
    out.reserve(len.0);
    fields.fields(out);
}

/// An entry's state alone (`EDIT_KIND_UPDATED`), the rest left out.
trait StateFields {
    fn state_fields<S: Sink>(&self, out: &mut S);
}

impl StateFields for AlarmRef {
    fn state_fields<S: Sink>(&self, out: &mut S) {
        int(out, 4, severity_to_proto(self.severity) as i64);
        message(out, 7, &Timestamp(self.last_seen));
        int(out, 8, self.tally as i64);
        if let Some(cleared) = self.cleared_at {
            message(out, 9, &Timestamp(cleared));
        }
    }
}

impl StateFields for ImpactedService {
    fn state_fields<S: Sink>(&self, out: &mut S) {
        int(out, 3, state_to_proto(self.impact) as i64);
    }
}

impl StateFields for ImpactedCustomer {
    fn state_fields<S: Sink>(&self, out: &mut S) {
        int(out, 4, state_to_proto(self.impact) as i64);
    }
}

struct StateOf<'a, T>(&'a T);

impl<T: StateFields> Message for StateOf<'_, T> {
    fn fields<S: Sink>(&self, out: &mut S) {
        self.0.state_fields(out);
    }
}

/// An `AlarmEdit`, `ServiceEdit` or `CustomerEdit`: a list entry placed at a position.
struct Edit<'a, T>(u32, EditKind, &'a T);

impl<T: Message + StateFields> Message for Edit<'_, T> {
    fn fields<S: Sink>(&self, out: &mut S) {
        let Edit(index, kind, entry) = *self;
        int(out, 1, i64::from(index));
        int(out, 2, kind as i64);
        match kind {
            EditKind::Updated => message(out, 3, &StateOf(entry)),
            EditKind::Inserted | EditKind::Replaced => message(out, 3, entry),
        }
    }
}

/// A list's removals (a packed `repeated uint32`) and edits.
fn list_edit<S: Sink, T: Message + StateFields>(out: &mut S, tags: (u32, u32), edit: &ListEdit<'_, T>) {
    if !edit.removed.is_empty() {
        let mut len = Len::default();
        for &index in &edit.removed {
            len.varint(u64::from(index));
        }
        key(out, tags.0, LEN);
        out.varint(len.0 as u64);
        for &index in &edit.removed {
            out.varint(u64::from(index));
        }
    }
    for &(index, kind, entry) in &edit.edits {
        message(out, tags.1, &Edit(index, kind, entry));
    }
}

impl Message for IncidentDelta<'_> {
    fn fields<S: Sink>(&self, out: &mut S) {
        int(out, 1, self.base_version as i64);
        list_edit(out, (2, 3), &self.root_cause_alarms);
        list_edit(out, (4, 5), &self.symptom_alarms);
        list_edit(out, (6, 7), &self.services);
        list_edit(out, (8, 9), &self.customers);
        int(out, 10, self.timeline_dropped as i64);
        for entry in &self.timeline_added {
            message(out, 11, *entry);
        }
        for note in self.notes_added {
            message(out, 12, note);
        }
    }
}

/// Appends `delta` encoded as a `faultline.v1.IncidentDelta`.
pub fn incident_delta(delta: &IncidentDelta<'_>, out: &mut Vec<u8>) {
    let mut len = Len::default();
    delta.fields(&mut len);
    out.reserve(len.0);
    delta.fields(out);
}

fn strings<S: Sink>(out: &mut S, tag: u32, list: &[Arc<str>]) {
    for item in list {
        delimited(out, tag, item.as_bytes());
    }
}

/// `faultline.v1.ServiceImpactRecord`.
struct ServiceImpact<'a>(&'a str, State);

impl Message for ServiceImpact<'_> {
    fn fields<S: Sink>(&self, out: &mut S) {
        string(out, 1, self.0);
        int(out, 2, state_to_proto(self.1) as i64);
    }
}

/// A changelog record with its incident already encoded.
struct RecordFields<'a>(&'a IncidentRecord, &'a [u8]);

impl Message for RecordFields<'_> {
    fn fields<S: Sink>(&self, out: &mut S) {
        let RecordFields(r, incident) = *self;
        delimited(out, 1, incident);
        strings(out, 2, &r.roots);
        strings(out, 3, &r.registered_roots);
        for (service, state) in &r.services {
            message(out, 4, &ServiceImpact(service, *state));
        }
        strings(out, 5, &r.symptoms);
        strings(out, 6, &r.owned_services);
        strings(out, 7, &r.owned_symptoms);
        if let Some(since) = r.restored_since {
            message(out, 8, &Timestamp(since));
        }
        strings(out, 9, &r.weak_roots);
        if !r.root_registration.is_empty() {
            delimited(out, 10, &r.root_registration);
        }
    }
}

/// Appends `record` encoded as a `faultline.v1.IncidentRecord`, its incident given already
/// encoded (by [`incident`]: the same bytes the incidents topic gets).
pub fn incident_record(record: &IncidentRecord, incident: &[u8], out: &mut Vec<u8>) {
    RecordFields(record, incident).fields(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::Correlator;
    use crate::generate::{play, ring};
    use crate::model::incident::IncidentChange;
    use prost::Message as _;
    use std::sync::Arc;

    fn storm_changes() -> Vec<IncidentChange> {
        let (mut correlator, mut changes, mut now) = play(&ring(8), 3_000, 11, &mut |_| {});
        // Resolutions and closures come with time.
        for _ in 0..200 {
            now += 1_000;
            correlator.tick(now, &mut changes);
        }
        changes
    }

    #[test]
    fn incidents_encode_to_the_bytes_prost_writes() {
        let changes = storm_changes();
        assert!(changes.len() > 100, "{} changes", changes.len());
        let has = |f: &dyn Fn(&Incident) -> bool| changes.iter().any(|c| f(&c.incident));
        // Every optional part appears somewhere, so every branch is compared.
        assert!(has(&|i| i.resolved_at.is_some()) && has(&|i| i.symptom_alarms.iter().any(|a| a.cleared_at.is_some())));
        assert!(has(&|i| i.customers.iter().any(|c| c.sla.is_some())) && has(&|i| !i.timeline.is_empty()));

        let mut with_operator = (*changes.last().unwrap().incident).clone();
        with_operator.acknowledgement = Some(Acknowledgement { by: "noc-1".into(), time: 1_700_000_000_123 });
        with_operator.notes.push(Note {
            author: "noc-1".into(),
            text: "fibre team on site".into(),
            time: -1,
            request_id: "r-7".into(),
        });
        let extra = [Arc::new(with_operator)];
        let mut checked = 0;

        for incident in changes.iter().map(|c| &c.incident).chain(&extra) {
            checked += 1;
            let mut ours = Vec::new();
            super::incident(incident, &mut ours);
            let mut expected = super::super::incident_to_proto(incident);
            assert_eq!(ours, expected.encode_to_vec(), "{} version {}", incident.id, incident.version);

            let mut summary = Vec::new();
            super::incident_summary(incident, &mut summary);
            expected.root_cause_alarms.clear();
            expected.symptom_alarms.clear();
            expected.impacted_services.clear();
            expected.impacted_customers.clear();
            expected.timeline.clear();
            expected.notes.clear();
            assert_eq!(summary, expected.encode_to_vec(), "summary of {} version {}", incident.id, incident.version);
        }
        assert_eq!(checked, changes.len() + 1);
    }

    #[test]
    fn incident_records_encode_to_the_bytes_prost_writes() {
        let mut records = 0;
        let mut compare = |correlator: &mut Correlator| {
            for record in correlator.take_changes().iter().flat_map(|c| &c.incidents).filter_map(|(_, r)| r.as_ref()) {
                records += 1;
                let mut incident = Vec::new();
                super::incident(&record.incident, &mut incident);
                let mut ours = Vec::new();
                super::incident_record(record, &incident, &mut ours);
                let expected = crate::kafka::changelog::incident_record_to_proto(record).encode_to_vec();
                assert_eq!(ours, expected, "{} version {}", record.incident.id, record.incident.version);
            }
        };
        // Records taken as a commit takes them: during the storm, then as incidents resolve.
        let (mut correlator, mut changes, mut now) = play(&ring(8), 4_000, 5, &mut compare);
        for _ in 0..30 {
            now += 5_000;
            correlator.tick(now, &mut changes);
            compare(&mut correlator);
        }
        assert!(records > 100, "{records} records compared");
    }
}
