//! Incident changes as the live stream sends them: each change is encoded at most once,
//! off the core thread, by the first subscriber that sends it; every other subscriber sends
//! the same bytes. The latest encoding of each incident is kept ([`EncodedIncidents`]), so a
//! new subscriber's initial snapshot costs no encoding for incidents already sent.
//!
//! `SubscribeIncidentsResponse` carries the incident in field 2, length-delimited. A
//! `bytes` field 2 is length-delimited too, so [`EncodedChange`] holding the incident's
//! encoding is, byte for byte, the message a client decodes as `SubscribeIncidentsResponse`.

use crate::model::incident::{Incident, IncidentChange, IncidentId};
use crate::proto::delta::IncidentDelta;
use crate::proto::{self, v1};
use crate::runtime::resume::ResumeToken;
use prost::bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// `faultline.v1.SubscribeIncidentsResponse` with its incident already encoded.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EncodedChange {
    /// A `faultline.v1.ChangeKind`.
    #[prost(int32, tag = "1")]
    pub kind: i32,
    /// An encoded `faultline.v1.Incident`; absent on SNAPSHOT_COMPLETE.
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub incident: Option<Bytes>,
    /// An encoded `faultline.v1.IncidentDelta` (`INCIDENT_VIEW_DELTA`), `incident` then
    /// being the summary.
    #[prost(bytes = "bytes", optional, tag = "3")]
    pub delta: Option<Bytes>,
    /// The resume token (a `string` on the wire), on live changes and SNAPSHOT_COMPLETE.
    #[prost(bytes = "bytes", optional, tag = "4")]
    pub resume_token: Option<Bytes>,
}

impl EncodedChange {
    pub fn snapshot_complete(point: ResumeToken) -> EncodedChange {
        EncodedChange {
            kind: v1::ChangeKind::SnapshotComplete as i32,
            incident: None,
            delta: None,
            resume_token: Some(Bytes::from(point.to_string())),
        }
    }

    /// An incident closed while a resuming subscriber was away: its id and state only.
    pub fn closed_while_away(id: IncidentId) -> EncodedChange {
        let incident =
            v1::Incident { id: id.to_string(), state: v1::IncidentState::Closed as i32, ..Default::default() };
        EncodedChange {
            kind: v1::ChangeKind::Closed as i32,
            incident: Some(Bytes::from(prost::Message::encode_to_vec(&incident))),
            delta: None,
            resume_token: None,
        }
    }
}

/// How much of each incident a subscriber receives (`faultline.v1.IncidentView`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Full,
    /// Without its lists (alarms, impacted services and customers, timeline, notes), their
    /// sizes given.
    Summary,
    /// The summary and what the lists did since the version the subscriber holds.
    Delta,
}

impl View {
    pub fn of(view: i32) -> View {
        match v1::IncidentView::try_from(view) {
            Ok(v1::IncidentView::Summary) => View::Summary,
            Ok(v1::IncidentView::Delta) => View::Delta,
            _ => View::Full,
        }
    }
}

/// One published change, shared by every subscriber through the broadcast channel.
pub struct PublishedChange {
    kind: v1::ChangeKind,
    incident: Arc<Incident>,
    /// Where the stream resumes after this change; none on a snapshot's incidents. Written
    /// out by the first subscriber that sends the change, not by the core.
    resume_token: Option<ResumeToken>,
    token_text: OnceLock<Bytes>,
    encoded: OnceLock<Bytes>,
    summary: OnceLock<Bytes>,
    /// The delta from the version before, with that version's number; `None` when the
    /// change is not expressible as one.
    delta: OnceLock<Option<(u64, Bytes)>>,
}

impl PublishedChange {
    /// A change published at the point `token` names.
    pub fn new(change: &IncidentChange, token: ResumeToken) -> PublishedChange {
        PublishedChange::of(proto::change_kind_to_proto(change.kind), change.incident.clone(), Some(token))
    }

    /// An incident of a subscriber's initial snapshot.
    pub fn snapshot(incident: Arc<Incident>) -> PublishedChange {
        PublishedChange::of(v1::ChangeKind::Snapshot, incident, None)
    }

    fn of(kind: v1::ChangeKind, incident: Arc<Incident>, resume_token: Option<ResumeToken>) -> PublishedChange {
        PublishedChange {
            kind,
            incident,
            resume_token,
            token_text: OnceLock::new(),
            encoded: OnceLock::new(),
            summary: OnceLock::new(),
            delta: OnceLock::new(),
        }
    }

    pub fn incident(&self) -> &Arc<Incident> {
        &self.incident
    }

    /// The change to send in `view` to a subscriber that holds `held`, the version of the
    /// incident it was sent last, if any (`View::Delta` only): encoded by the first caller,
    /// shared after. In `View::Delta` the whole incident goes to a subscriber that holds no
    /// earlier version, or when the change is not expressible as a delta.
    pub fn encoded(&self, known: &EncodedIncidents, view: View, held: Option<&Arc<Incident>>) -> EncodedChange {
        let kind = self.kind as i32;
        let resume_token =
            self.resume_token.map(|token| self.token_text.get_or_init(|| Bytes::from(token.to_string())).clone());
        match (view, held) {
            (View::Summary, _) => {
                return EncodedChange { kind, incident: Some(self.summary()), delta: None, resume_token };
            }
            (View::Delta, Some(held)) if held.version < self.incident.version => {
                if let Some(delta) = self.delta_from(held) {
                    return EncodedChange { kind, incident: Some(self.summary()), delta: Some(delta), resume_token };
                }
            }
            _ => {}
        }
        let incident = self.encoded.get_or_init(|| {
            let bytes = known.get(&self.incident);
            // A closed incident has left the core: its encoding need not be kept either.
            if self.kind == v1::ChangeKind::Closed {
                known.forget(self.incident.id);
            }
            bytes
        });
        EncodedChange { kind, incident: Some(incident.clone()), delta: None, resume_token }
    }

    fn summary(&self) -> Bytes {
        let summary = self.summary.get_or_init(|| {
            let mut bytes = Vec::new();
            proto::encode::incident_summary(&self.incident, &mut bytes);
            Bytes::from(bytes)
        });
        summary.clone()
    }

    /// The encoded delta from `held`. Every subscriber following the incident holds the
    /// version published before this one, so it is made once; another base (not expected)
    /// is served without keeping it.
    fn delta_from(&self, held: &Incident) -> Option<Bytes> {
        let encode = |held: &Incident| {
            let delta = IncidentDelta::between(held, &self.incident)?;
            let mut bytes = Vec::new();
            proto::encode::incident_delta(&delta, &mut bytes);
            Some(Bytes::from(bytes))
        };
        match self.delta.get_or_init(|| encode(held).map(|bytes| (held.version, bytes))) {
            Some((base, bytes)) if *base == held.version => Some(bytes.clone()),
            Some(_) => encode(held),
            None => None,
        }
    }
}

/// The latest encoding of each incident the stream has sent. An entry holds the very
/// `Arc` it encodes: while it does, the core cannot change that incident in place (it
/// copies on write), so an entry whose `Arc` is the one asked about is always current.
#[derive(Default)]
pub struct EncodedIncidents(Mutex<HashMap<IncidentId, (Arc<Incident>, Bytes)>>);

impl EncodedIncidents {
    /// `incident`'s encoding: the kept one if it is of this very version, else made now.
    pub fn get(&self, incident: &Arc<Incident>) -> Bytes {
        if let Some((held, bytes)) = self.lock().get(&incident.id)
            && Arc::ptr_eq(held, incident)
        {
            return bytes.clone();
        }
        let mut encoded = Vec::new();
        proto::encode::incident(incident, &mut encoded);
        let bytes = Bytes::from(encoded);
        self.lock().insert(incident.id, (incident.clone(), bytes.clone()));
        bytes
    }

    pub fn forget(&self, id: IncidentId) {
        self.lock().remove(&id);
    }

    /// Forgets every incident `live` does not name (closed ones).
    pub fn retain(&self, live: impl Fn(IncidentId) -> bool) {
        self.lock().retain(|&id, _| live(id));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IncidentId, (Arc<Incident>, Bytes)>> {
        // A panic while holding the lock leaves a map that is still valid.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{play, ring};
    use crate::model::incident::ChangeKind;
    use prost::Message as _;

    #[test]
    fn an_encoded_change_is_the_response_a_client_decodes() {
        // Real incidents, with services, customers, alarms and a timeline.
        let (_, changes, _) = play(&ring(6), 2_000, 3, &mut |_| {});
        let change = changes
            .iter()
            .rev()
            .find(|c| c.kind == ChangeKind::Updated && !c.incident.symptom_alarms.is_empty())
            .expect("the storm updated an incident with symptoms");
        let incident = &change.incident;
        assert!(!incident.timeline.is_empty() && !incident.services.is_empty() && !incident.customers.is_empty());

        let known = EncodedIncidents::default();
        let token = crate::runtime::resume::ResumeLog::new(1, 1).record(change);
        let sent = PublishedChange::new(change, token).encoded(&known, View::Full, None).encode_to_vec();
        // Sent again (another subscriber's snapshot): the same bytes, kept, not re-encoded.
        let kept = known.get(incident);
        assert_eq!(
            PublishedChange::snapshot(incident.clone()).encoded(&known, View::Full, None).incident,
            Some(kept.clone())
        );
        assert_eq!(kept.as_ptr(), known.get(incident).as_ptr(), "one encoding, shared");
        // A new version of the incident is encoded afresh.
        let mut next = Incident::clone(incident);
        next.version += 1;
        let next = Arc::new(next);
        assert_eq!(known.get(&next).to_vec(), proto::incident_to_proto(&next).encode_to_vec());
        // Once an incident closes, its encoding is not kept.
        let closed = IncidentChange { kind: ChangeKind::Closed, incident: next.clone() };
        assert!(PublishedChange::new(&closed, token).encoded(&known, View::Full, None).incident.is_some());
        assert!(!known.lock().contains_key(&next.id), "a closed incident's encoding is let go");
        let expected = v1::SubscribeIncidentsResponse {
            kind: v1::ChangeKind::Updated as i32,
            incident: Some(proto::incident_to_proto(incident)),
            delta: None,
            resume_token: token.to_string(),
        };
        assert_eq!(sent, expected.encode_to_vec(), "the same bytes on the wire");
        assert_eq!(v1::SubscribeIncidentsResponse::decode(sent.as_slice()).unwrap(), expected);

        // The summary: the same response without the lists.
        let summary = PublishedChange::new(change, token).encoded(&known, View::Summary, None).encode_to_vec();
        let mut expected = expected;
        let whole = expected.incident.as_mut().unwrap();
        (whole.root_cause_alarms, whole.symptom_alarms, whole.timeline) = (vec![], vec![], vec![]);
        (whole.impacted_services, whole.impacted_customers) = (vec![], vec![]);
        assert_eq!(v1::SubscribeIncidentsResponse::decode(summary.as_slice()).unwrap(), expected);
        assert!(summary.len() * 4 < sent.len(), "{} bytes against {}", summary.len(), sent.len());

        let complete = EncodedChange::snapshot_complete(token).encode_to_vec();
        let decoded = v1::SubscribeIncidentsResponse::decode(complete.as_slice()).unwrap();
        assert_eq!(
            decoded,
            v1::SubscribeIncidentsResponse {
                kind: v1::ChangeKind::SnapshotComplete as i32,
                incident: None,
                delta: None,
                resume_token: token.to_string(),
            }
        );
    }
}
