//! The state changelog topic (`kafka.state_topic`, compacted): what the core exports at each
//! commit ([`CoreChanges`]) as keyed protobuf records (`proto/faultline/v1/changelog.proto`),
//! written in the same transaction as the incident snapshots and the input offsets; and, at
//! start, the whole topic read back (read_committed) into a [`CoreSnapshot`].
//!
//! Keys: `resource/<ci id>`, `incident/<INC-…>`, `ci/<ci id>`, `held/<ci id>`,
//! `window/<change>`, `meta`, and the owner's claim ([`super::owner`]). A tombstone deletes a key, so the compacted topic
//! holds just the live state: its size follows the active alarms and open incidents, not
//! the history.

use super::owner::{self, Claims};
use crate::config::KafkaConfig;
use crate::correlate::Stats;
use crate::correlate::alarm_stage::RememberedClear;
use crate::correlate::changelog::{CoreChanges, CoreMeta, CoreSnapshot, IncidentRecord, ResourceRecord, TopologyEntry};
use crate::correlate::feed::HeldChange;
use crate::correlate::incidents::IncidentStats;
use crate::model::EpochMillis;
use crate::model::incident::{Incident, IncidentId};
use crate::model::topology::CiChange;
use crate::proto::{self, v1};
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RESOURCE: &str = "resource/";
const INCIDENT: &str = "incident/";
const META: &str = "meta";
const CI: &str = "ci/";
const HELD: &str = "held/";
const WINDOW: &str = "window/";

#[derive(Debug, thiserror::Error)]
pub enum ChangelogError {
    #[error("state changelog record with unknown key `{0}`")]
    Key(String),
    #[error("state changelog record `{key}` does not decode: {source}")]
    Decode { key: String, source: prost::DecodeError },
    #[error("state changelog record `{key}`: {source}")]
    Incident { key: String, source: proto::IncidentFieldError },
    #[error("state changelog record `{key}`: {reason}")]
    Topology { key: String, reason: String },
    #[error("cannot read the state changelog topic {topic}: {message}")]
    Read { topic: String, message: String },
    #[error(
        "the state changelog topic {topic} has a record this engine cannot read, at partition {partition} offset \
         {offset}: {source}"
    )]
    At { topic: String, partition: i32, offset: i64, source: Box<ChangelogError> },
}

/// Encodes `changes` as keyed records (`None`: a tombstone), handing each to `emit`.
/// `encoded` gives an incident's bytes when they are at hand already (the incidents
/// topic's snapshot of the same version); others are encoded here. No record exceeds
/// `max_record_bytes`: an incident that would is written trimmed (and `trimmed` told), a
/// resource's alarm list keeps what fits.
pub fn encode<'a>(
    changes: &CoreChanges,
    max_record_bytes: usize,
    encoded: impl Fn(&Incident) -> Option<&'a [u8]>,
    trimmed: impl Fn(&Incident, usize),
    mut emit: impl FnMut(&str, Option<&[u8]>),
) {
    let mut key = String::new();
    let mut value = Vec::new();
    let mut incident = Vec::new();
    for (resource, record) in &changes.resources {
        key.clear();
        key.push_str(RESOURCE);
        key.push_str(resource);
        if record.is_empty() {
            emit(&key, None);
            continue;
        }
        let mut message = v1::ResourceAlarms {
            active: record.active.iter().map(proto::alarm_ref_to_proto).collect(),
            reported: record
                .reported
                .iter()
                .map(|&(tally, last_seen)| v1::ReportedAlarm {
                    tally,
                    last_seen_time: Some(proto::timestamp(last_seen)),
                })
                .collect(),
            last_notifications: record.notifications.clone(),
            last_sequences: record.sequences.clone(),
            sources: record.sources.iter().map(|s| s.to_string()).collect(),
            remembered_clears: record
                .clears
                .iter()
                .map(|c| v1::RememberedClear {
                    alarm_type: c.alarm_type.to_string(),
                    qualifier: c.qualifier.to_string(),
                    notification: c.notification,
                    sequence: c.sequence,
                    event_time: Some(proto::timestamp(c.event_time)),
                    until: Some(proto::timestamp(c.until)),
                })
                .collect(),
        };
        value.clear();
        message.encode(&mut value).expect("a Vec grows as needed");
        while key.len() + value.len() > max_record_bytes && !message.remembered_clears.is_empty() {
            // Remembered clears go first: they only guard against late raises.
            let keep = message.remembered_clears.len() / 2;
            message.remembered_clears.truncate(keep);
            value.clear();
            message.encode(&mut value).expect("a Vec grows as needed");
        }
        while key.len() + value.len() > max_record_bytes && !message.active.is_empty() {
            // Bounded upstream (alarms per resource, text lengths): never expected.
            let keep = message.active.len() / 2;
            tracing::error!(resource = %resource, alarms = message.active.len(), keep, "resource record too large; keeping part");
            message.active.truncate(keep);
            message.reported.truncate(keep);
            message.last_notifications.truncate(keep);
            message.last_sequences.truncate(keep);
            message.sources.truncate(keep);
            value.clear();
            message.encode(&mut value).expect("a Vec grows as needed");
        }
        emit(&key, Some(&value));
    }
    for (id, record) in &changes.incidents {
        key.clear();
        key.push_str(INCIDENT);
        key.push_str(&id.to_string());
        match record {
            None => emit(&key, None),
            Some(record) => {
                let bytes = match encoded(&record.incident) {
                    Some(bytes) => bytes,
                    None => {
                        incident.clear();
                        proto::encode::incident(&record.incident, &mut incident);
                        &incident
                    }
                };
                value.clear();
                proto::encode::incident_record(record, bytes, &mut value);
                if key.len() + value.len() > max_record_bytes {
                    trimmed(&record.incident, value.len());
                    // What the record holds besides the snapshot: the room the snapshot may take.
                    let room = (max_record_bytes + bytes.len()).saturating_sub(key.len() + value.len());
                    let mut smaller = Vec::new();
                    super::output::fitted(&record.incident, room, &mut smaller, proto::encode::incident);
                    value.clear();
                    proto::encode::incident_record(record, &smaller, &mut value);
                    // The bookkeeping alone too large (tens of thousands of roots or
                    // services): cut its lists by halves until the record fits. A restore
                    // from it then knows only part of them; never a record the producer
                    // refuses.
                    let mut cut = record.clone();
                    while key.len() + value.len() > max_record_bytes {
                        if !halve_bookkeeping(&mut cut) {
                            break;
                        }
                        tracing::error!(
                            incident = %id,
                            roots = cut.roots.len(),
                            services = cut.services.len(),
                            "incident record too large for a changelog record even trimmed; keeping part of its bookkeeping"
                        );
                        value.clear();
                        proto::encode::incident_record(&cut, &smaller, &mut value);
                    }
                }
                emit(&key, Some(&value));
            }
        }
    }
    for (id, entry) in &changes.topology {
        key.clear();
        key.push_str(CI);
        key.push_str(id);
        let Some(entry) = entry else {
            emit(&key, None);
            continue;
        };
        let message = v1::TopologyEntry {
            ci: Some(proto::record_to_proto(&entry.record)),
            deleted: entry.deleted,
            slot: entry.slot,
            released: entry.released,
        };
        value.clear();
        message.encode(&mut value).expect("a Vec grows as needed");
        if key.len() + value.len() > max_record_bytes {
            // Bounded upstream (a CI record's size is checked where it comes in).
            tracing::error!(ci = %id, bytes = value.len(), "topology entry too large for a changelog record; not kept");
            continue;
        }
        emit(&key, Some(&value));
    }
    for (id, held) in &changes.held {
        key.clear();
        key.push_str(HELD);
        key.push_str(id);
        let Some(held) = held else {
            emit(&key, None);
            continue;
        };
        value.clear();
        held_to_proto(held).encode(&mut value).expect("a Vec grows as needed");
        if key.len() + value.len() > max_record_bytes {
            // Bounded upstream, as for topology entries.
            tracing::error!(ci = %id, bytes = value.len(), "held topology change too large for a changelog record; not kept");
            continue;
        }
        emit(&key, Some(&value));
    }
    for (id, window) in &changes.windows {
        key.clear();
        key.push_str(WINDOW);
        key.push_str(id);
        let Some(window) = window else {
            emit(&key, None);
            continue;
        };
        value.clear();
        v1::WindowEntry { window: Some(proto::window_to_proto(window)) }
            .encode(&mut value)
            .expect("a Vec grows as needed");
        // Bounded where windows come in (CIs, reference and reason lengths).
        emit(&key, Some(&value));
    }
    value.clear();
    meta_to_proto(&changes.meta).encode(&mut value).expect("a Vec grows as needed");
    emit(META, Some(&value));
}

fn held_to_proto(held: &HeldChange) -> v1::HeldCiChange {
    let change = match &held.change {
        CiChange::Upsert(record) => v1::held_ci_change::Change::Upsert(proto::record_to_proto(record)),
        CiChange::Delete(id) => v1::held_ci_change::Change::Delete(id.clone()),
    };
    v1::HeldCiChange {
        change: Some(change),
        waits_for: held.waits_for.clone(),
        reason: held.reason.clone(),
        since: Some(proto::timestamp(held.since)),
        order: held.order,
        source: held.source.clone(),
    }
}

fn held_from_proto(message: v1::HeldCiChange) -> Result<HeldChange, String> {
    let change = match message.change {
        Some(v1::held_ci_change::Change::Upsert(ci)) => CiChange::Upsert(proto::record_from_proto(ci)?),
        Some(v1::held_ci_change::Change::Delete(id)) => CiChange::Delete(id),
        None => return Err("a held change with neither an upsert nor a delete".to_owned()),
    };
    Ok(HeldChange {
        change,
        waits_for: message.waits_for,
        reason: message.reason,
        since: message.since.as_ref().map(proto::millis).unwrap_or_default(),
        order: message.order,
        source: message.source,
    })
}

/// Halves every list of an incident record's bookkeeping; false when they are all empty.
fn halve_bookkeeping(record: &mut IncidentRecord) -> bool {
    let r = record;
    let lengths = [
        r.roots.len(),
        r.registered_roots.len(),
        r.services.len(),
        r.symptoms.len(),
        r.owned_services.len(),
        r.owned_symptoms.len(),
    ];
    if lengths.iter().all(|&n| n == 0) {
        return false;
    }
    r.roots.truncate(r.roots.len() / 2);
    r.root_registration.truncate(r.roots.len());
    r.registered_roots.truncate(r.registered_roots.len() / 2);
    r.weak_roots.retain(|w| r.registered_roots.contains(w));
    r.services.truncate(r.services.len() / 2);
    r.symptoms.truncate(r.symptoms.len() / 2);
    r.owned_services.truncate(r.owned_services.len() / 2);
    r.owned_symptoms.truncate(r.owned_symptoms.len() / 2);
    true
}

/// Folds one record into `snapshot`, as compaction would: the latest value of a key wins.
pub fn fold(snapshot: &mut CoreSnapshot, key: &[u8], value: Option<&[u8]>) -> Result<(), ChangelogError> {
    let key = String::from_utf8_lossy(key);
    let decode_error = |source| ChangelogError::Decode { key: key.to_string(), source };
    if let Some(resource) = key.strip_prefix(RESOURCE) {
        match value {
            None => {
                snapshot.resources.remove(resource);
            }
            Some(bytes) => {
                let message = v1::ResourceAlarms::decode(bytes).map_err(decode_error)?;
                let record = ResourceRecord {
                    active: message.active.iter().map(proto::alarm_ref_from_proto).collect(),
                    reported: message
                        .reported
                        .iter()
                        .map(|r| (r.tally, r.last_seen_time.as_ref().map(proto::millis).unwrap_or_default()))
                        .collect(),
                    notifications: message.last_notifications,
                    sequences: message.last_sequences,
                    sources: message.sources.into_iter().map(Arc::from).collect(),
                    clears: message
                        .remembered_clears
                        .iter()
                        .map(|c| RememberedClear {
                            alarm_type: c.alarm_type.as_str().into(),
                            qualifier: c.qualifier.as_str().into(),
                            notification: c.notification,
                            sequence: c.sequence,
                            event_time: c.event_time.as_ref().map(proto::millis).unwrap_or_default(),
                            until: c.until.as_ref().map(proto::millis).unwrap_or_default(),
                        })
                        .collect(),
                };
                snapshot.resources.insert(resource.into(), record);
            }
        }
    } else if let Some(id) = key.strip_prefix(INCIDENT) {
        let id: IncidentId = id.parse().map_err(|_| ChangelogError::Key(key.to_string()))?;
        match value {
            None => {
                snapshot.incidents.remove(&id);
            }
            Some(bytes) => {
                let message = v1::IncidentRecord::decode(bytes).map_err(decode_error)?;
                let record = incident_record_from_proto(&message)
                    .map_err(|source| ChangelogError::Incident { key: key.to_string(), source })?;
                snapshot.incidents.insert(id, record);
            }
        }
    } else if let Some(id) = key.strip_prefix(CI) {
        match value {
            None => {
                snapshot.topology.remove(id);
            }
            Some(bytes) => {
                let message = v1::TopologyEntry::decode(bytes).map_err(decode_error)?;
                let record = proto::record_from_proto(message.ci.unwrap_or_default())
                    .map_err(|reason| ChangelogError::Topology { key: key.to_string(), reason })?;
                let entry =
                    TopologyEntry { record, deleted: message.deleted, released: message.released, slot: message.slot };
                snapshot.topology.insert(id.into(), entry);
            }
        }
    } else if let Some(id) = key.strip_prefix(HELD) {
        match value {
            None => {
                snapshot.held.remove(id);
            }
            Some(bytes) => {
                let message = v1::HeldCiChange::decode(bytes).map_err(decode_error)?;
                let held = held_from_proto(message)
                    .map_err(|reason| ChangelogError::Topology { key: key.to_string(), reason })?;
                snapshot.held.insert(id.into(), held);
            }
        }
    } else if let Some(id) = key.strip_prefix(WINDOW) {
        match value {
            None => {
                snapshot.windows.remove(id);
            }
            Some(bytes) => {
                let message = v1::WindowEntry::decode(bytes).map_err(decode_error)?;
                let window = proto::window_from_proto(&message.window.unwrap_or_default())
                    .map_err(|reason| ChangelogError::Topology { key: key.to_string(), reason })?;
                snapshot.windows.insert(id.into(), window);
            }
        }
    } else if key == META {
        if let Some(bytes) = value {
            snapshot.meta = meta_from_proto(&v1::EngineMeta::decode(bytes).map_err(decode_error)?);
        }
    } else if key.starts_with(owner::PREFIX) {
        // Who owns the topic, not the core's state: [`read`] takes the claims apart.
    } else {
        return Err(ChangelogError::Key(key.to_string()));
    }
    Ok(())
}

/// How much a restore read, and who owns the topic.
#[derive(Clone, Debug, Default)]
pub struct ReadSummary {
    pub records: u64,
    pub bytes: u64,
    pub claims: Claims,
}

/// Reads the whole changelog topic, read_committed, from the beginning to the end of every
/// partition. Blocking: run it on a thread of its own.
pub fn read(
    kafka: &KafkaConfig,
    brokers: &str,
    timeout: Duration,
) -> Result<(CoreSnapshot, ReadSummary), ChangelogError> {
    let topic = kafka.state_topic.as_str();
    let read_error = |message: String| ChangelogError::Read { topic: topic.to_owned(), message };
    let consumer: BaseConsumer = super::client_config(
        kafka,
        brokers,
        &[
            ("group.id", &format!("{}-restore", kafka.group_id)),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("isolation.level", "read_committed"),
            ("fetch.max.bytes", "52428800"),
        ],
    )
    .create()
    .map_err(|e: KafkaError| read_error(e.to_string()))?;
    let deadline = Instant::now() + timeout;
    let mut assignment = TopicPartitionList::new();
    let mut remaining = std::collections::BTreeSet::new();
    for (partition, low, high) in partition_bounds(&consumer, topic, deadline).map_err(read_error)? {
        if high > low {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .map_err(|e| read_error(e.to_string()))?;
            remaining.insert(partition);
        }
    }
    let mut snapshot = CoreSnapshot::default();
    let mut summary = ReadSummary::default();
    if remaining.is_empty() {
        return Ok((snapshot, summary));
    }
    consumer.assign(&assignment).map_err(|e| read_error(e.to_string()))?;
    while !remaining.is_empty() {
        if Instant::now() >= deadline {
            return Err(read_error(format!("not read to its end within {timeout:?}")));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(message)) => {
                summary.records += 1;
                summary.bytes += message.payload_len() as u64;
                let key = message.key().unwrap_or_default();
                if let Some(instance) = key.strip_prefix(owner::PREFIX.as_bytes()) {
                    let instance = String::from_utf8_lossy(instance);
                    let live = message.payload().is_some();
                    summary.claims.record(&instance, message.partition(), message.offset(), live);
                    continue;
                }
                fold(&mut snapshot, key, message.payload()).map_err(|source| ChangelogError::At {
                    topic: topic.to_owned(),
                    partition: message.partition(),
                    offset: message.offset(),
                    source: Box::new(source),
                })?;
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                remaining.remove(&partition);
            }
            Some(Err(error)) => tracing::warn!(%error, topic, "while reading the state changelog"),
        }
    }
    Ok((snapshot, summary))
}

/// A partition and its low and high watermarks.
pub(super) type Bounds = (i32, i64, i64);

/// Every partition of `topic` with its low and high watermarks. A topic created a moment ago
/// may have no leader yet (the broker answers "not leader" or "leader not available", or the
/// metadata does not know the topic): those answers are retried until `deadline`, as a
/// client's own requests would be; any other error is returned at once.
pub(super) fn partition_bounds<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    deadline: Instant,
) -> Result<Vec<Bounds>, String> {
    let transient = |code: RDKafkaErrorCode| {
        matches!(
            code,
            RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownPartition
                | RDKafkaErrorCode::UnknownTopic
        )
    };
    // An error says whether it is worth retrying.
    let attempt = || -> Result<Vec<Bounds>, (bool, String)> {
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        let failed = |e: KafkaError| (e.rdkafka_error_code().is_some_and(transient), e.to_string());
        let metadata = consumer.fetch_metadata(Some(topic), left).map_err(failed)?;
        let Some(meta) = metadata.topics().first() else {
            return Err((true, "the metadata does not list the topic".to_owned()));
        };
        if let Some(error) = meta.error() {
            let code = RDKafkaErrorCode::from(error);
            return Err((transient(code), format!("topic metadata: {code}")));
        }
        let mut bounds = Vec::with_capacity(meta.partitions().len());
        for partition in meta.partitions() {
            if partition.leader() < 0 {
                return Err((true, format!("partition {} has no leader", partition.id())));
            }
            let (low, high) = consumer.fetch_watermarks(topic, partition.id(), left).map_err(failed)?;
            bounds.push((partition.id(), low, high));
        }
        Ok(bounds)
    };
    loop {
        match attempt() {
            Ok(bounds) => return Ok(bounds),
            Err((true, message)) if Instant::now() + Duration::from_millis(200) < deadline => {
                tracing::debug!(topic, message, "the state changelog topic is not ready yet; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err((_, message)) => return Err(message),
        }
    }
}

#[cfg(test)]
fn ids(list: &[std::sync::Arc<str>]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The record as prost types; records are written by [`proto::encode::incident_record`],
/// which the tests check against this.
#[cfg(test)]
pub(crate) fn incident_record_to_proto(r: &IncidentRecord) -> v1::IncidentRecord {
    v1::IncidentRecord {
        incident: Some(proto::incident_to_proto(&r.incident)),
        roots: ids(&r.roots),
        registered_roots: ids(&r.registered_roots),
        services: r
            .services
            .iter()
            .map(|(id, state)| v1::ServiceImpactRecord {
                service_id: id.to_string(),
                state: proto::state_to_proto(*state) as i32,
            })
            .collect(),
        symptoms: ids(&r.symptoms),
        owned_services: ids(&r.owned_services),
        owned_symptoms: ids(&r.owned_symptoms),
        restored_since: r.restored_since.map(proto::timestamp),
        weak_roots: ids(&r.weak_roots),
        root_registration: r.root_registration.clone(),
    }
}

fn incident_record_from_proto(r: &v1::IncidentRecord) -> Result<IncidentRecord, proto::IncidentFieldError> {
    let incident = proto::incident_from_proto(&r.incident.clone().unwrap_or_default())?;
    let arcs = |list: &[String]| list.iter().map(|s| s.as_str().into()).collect();
    Ok(IncidentRecord {
        incident: Arc::new(incident),
        roots: arcs(&r.roots),
        registered_roots: arcs(&r.registered_roots),
        services: r
            .services
            .iter()
            .map(|s| {
                let state = proto::state_from_proto(v1::ServiceState::try_from(s.state).unwrap_or_default());
                (s.service_id.as_str().into(), state)
            })
            .collect(),
        symptoms: arcs(&r.symptoms),
        owned_services: arcs(&r.owned_services),
        owned_symptoms: arcs(&r.owned_symptoms),
        restored_since: r.restored_since.as_ref().map(proto::millis),
        weak_roots: arcs(&r.weak_roots),
        root_registration: r.root_registration.clone(),
    })
}

fn meta_to_proto(meta: &CoreMeta) -> v1::EngineMeta {
    let s = &meta.stats;
    v1::EngineMeta {
        next_incident: meta.next_incident,
        clock: (meta.clock != EpochMillis::MIN).then(|| proto::timestamp(meta.clock)),
        topology_version: meta.topology_version,
        counters: Some(v1::EngineCounters {
            alarms_in: s.alarms_in,
            raised: s.raised,
            duplicates: s.duplicates,
            severity_changes: s.severity_changes,
            cleared: s.cleared,
            clears_without_raise: s.clears_without_raise,
            unmapped: s.unmapped,
            refused: s.refused,
            incidents_opened: s.incidents.opened,
            incidents_resolved: s.incidents.resolved,
            incidents_reopened: s.incidents.reopened,
            incidents_closed: s.incidents.closed,
            symptoms_attached: s.incidents.symptoms_attached,
            duplicate_notifications: s.duplicate_notifications,
            stale: s.stale,
            cleared_by_resync: s.cleared_by_resync,
            aged: s.aged,
            dropped: s.dropped,
        }),
    }
}

fn meta_from_proto(meta: &v1::EngineMeta) -> CoreMeta {
    let c = meta.counters.unwrap_or_default();
    CoreMeta {
        next_incident: meta.next_incident,
        clock: meta.clock.as_ref().map_or(EpochMillis::MIN, proto::millis),
        topology_version: meta.topology_version,
        stats: Stats {
            alarms_in: c.alarms_in,
            raised: c.raised,
            duplicates: c.duplicates,
            severity_changes: c.severity_changes,
            cleared: c.cleared,
            clears_without_raise: c.clears_without_raise,
            unmapped: c.unmapped,
            refused: c.refused,
            duplicate_notifications: c.duplicate_notifications,
            stale: c.stale,
            cleared_by_resync: c.cleared_by_resync,
            aged: c.aged,
            dropped: c.dropped,
            active_alarms: 0,
            unmapped_resources: 0,
            topology_held: 0,
            incidents: IncidentStats {
                opened: c.incidents_opened,
                resolved: c.incidents_resolved,
                reopened: c.incidents_reopened,
                closed: c.incidents_closed,
                symptoms_attached: c.symptoms_attached,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::{Correlator, CorrelatorConfig};
    use crate::model::alarm::{Alarm, Severity};
    use crate::topology_file;
    use std::sync::Arc;

    /// Writes `changes` as records and folds them back into `read_back`, and folds them as
    /// the core hands them into `expected`.
    fn write_and_fold(changes: CoreChanges, read_back: &mut CoreSnapshot, expected: &mut CoreSnapshot) {
        encode(
            &changes,
            1_000_000,
            |_| None,
            |_, _| panic!("trimmed"),
            |key, value| fold(read_back, key.as_bytes(), value).unwrap(),
        );
        expected.fold(changes);
    }

    /// What a storm on the sample network writes reads back to the very snapshot the core
    /// folded: the wire format loses nothing, tombstones included.
    #[test]
    fn records_read_back_to_the_same_snapshot() {
        let text = include_str!("../../config/sample-network.jsonl");
        let topology = Arc::new(topology_file::parse(text, "sample").unwrap());
        let mut correlator = Correlator::new(topology, CorrelatorConfig::default());
        let mut out = Vec::new();
        let mut expected = CoreSnapshot::default();
        let mut read_back = CoreSnapshot::default();
        let steps: &[(&str, &str, Option<Severity>)] = &[
            ("mrs-r1/card-1", "EQPT_FAIL", Some(Severity::Critical)),
            ("mrs-r1/1/1", "LOS", Some(Severity::Major)),
            ("mrs-r1/1/1", "LOS", Some(Severity::Major)),
            ("unknown-box", "LOS", Some(Severity::Minor)),
            ("par-r1/1/1", "LOS", Some(Severity::Critical)),
            ("par-r1/1/1", "LOS", None),
        ];
        for (at, (resource, alarm_type, severity)) in steps.iter().enumerate() {
            let now = 1_000 * at as i64;
            let alarm = match severity {
                Some(s) => Alarm::raise(resource, alarm_type, *s, now),
                None => Alarm::clear(resource, alarm_type, now),
            };
            correlator.apply(&alarm, now, &mut out);
            if let Some(id) = out.first().map(|c| c.incident.id) {
                correlator.add_note(id, "noc", "looking", "", now).unwrap();
            }
            let changes = correlator.take_changes().expect("every step changes something");
            write_and_fold(changes, &mut read_back, &mut expected);
        }
        // Topology batches: a CI added, one changed, one deleted.
        use crate::model::topology::{CiChange, CiClass, CiRecord};
        let topology = correlator.topology().clone();
        let mut router = topology.record(topology.lookup("mrs-r1").unwrap());
        router.attributes.insert("site".into(), "Marseille".into());
        let mut service = topology.record(topology.lookup("cfs-umbrella-backhaul").unwrap());
        service.id = "cfs-umbrella-backup".into();
        service.sla = Some(crate::model::topology::SlaTier::Gold);
        let port = CiRecord { id: "mrs-r1/9/9".into(), class: CiClass::Port, ..router.clone() };
        let batches = [
            vec![CiChange::Upsert(router), CiChange::Upsert(service), CiChange::Upsert(port)],
            vec![CiChange::Delete("mrs-r1/9/9".into())],
        ];
        for batch in batches {
            correlator.apply_topology(batch, 10_000, &mut out).unwrap();
            let changes = correlator.take_changes().expect("a batch changes something");
            write_and_fold(changes, &mut read_back, &mut expected);
        }
        // A feed change held, then released; another held; maintenance windows set, ended.
        use crate::correlate::feed::FeedChange;
        use crate::correlate::maintenance::{Scope, WindowSpec};
        let feed = |record: CiRecord| vec![FeedChange { change: CiChange::Upsert(record), source: "t/0/1".into() }];
        let waiting = |id: &str, dep: &str| CiRecord {
            id: id.into(),
            class: CiClass::Rfs,
            name: String::new(),
            depends_on: vec![dep.into()],
            rule: Default::default(),
            customer: None,
            sla: None,
            incidents: None,
            attributes: Default::default(),
        };
        correlator.apply_feed(feed(waiting("rfs-a", "port-x")), 11_000, &mut out);
        correlator.apply_feed(feed(waiting("rfs-b", "port-y")), 11_000, &mut out);
        let window = |change: &str, scope| WindowSpec {
            change: change.into(),
            reason: "card swap".into(),
            cis: vec!["mrs-r1/card-2".into()],
            scope,
            start: 11_000,
            end: 50_000,
            by: "alice".into(),
        };
        correlator.create_window(window("CHG1", Scope::Ci), false, 11_000, &mut out).unwrap();
        correlator.create_window(window("CHG2", Scope::Dependents), false, 11_000, &mut out).unwrap();
        write_and_fold(correlator.take_changes().unwrap(), &mut read_back, &mut expected);
        let port_x = CiRecord { id: "port-x".into(), class: CiClass::Port, ..waiting("port-x", "mrs-r1/card-2") };
        correlator.apply_feed(feed(port_x), 12_000, &mut out);
        correlator.finish_window("CHG1", true, "bob", 12_000, &mut out).unwrap();
        write_and_fold(correlator.take_changes().unwrap(), &mut read_back, &mut expected);
        assert_eq!(expected.held.keys().map(|k| &**k).collect::<Vec<_>>(), ["rfs-b"]);
        let states: Vec<_> = expected.windows.values().map(|w| w.state.as_str()).collect();
        assert_eq!(states, ["cancelled", "active"]);

        assert_eq!(read_back, expected);
        assert!(!expected.incidents.is_empty() && expected.resources.contains_key("unknown-box"));
        assert_eq!(expected.meta.stats.alarms_in, steps.len() as u64);
        assert_eq!(expected.meta.topology_version, 3);
        // The port deleted at run time was released at the next batch (nothing named it).
        let entries: Vec<(&str, bool, bool)> =
            expected.topology.iter().map(|(id, e)| (&**id, e.deleted, e.released)).collect();
        assert_eq!(
            entries,
            [
                ("cfs-umbrella-backup", false, false),
                ("mrs-r1", false, false),
                ("mrs-r1/9/9", true, true),
                ("port-x", false, false),
                ("rfs-a", false, false)
            ]
        );
    }

    /// An incident whose bookkeeping alone passes the record limit (a national outage: 100,000
    /// roots and as many services) is still written within it, never refused by the producer.
    #[test]
    fn an_incident_record_never_passes_the_limit() {
        use crate::correlate::changelog::{CoreChanges, IncidentRecord};
        use crate::model::incident::{Incident, IncidentId};
        use crate::model::state::State;
        let names =
            |prefix: &str| (0..100_000).map(|i| Arc::from(format!("{prefix}-{i:08}"))).collect::<Vec<Arc<str>>>();
        let roots = names("national-port");
        let record = IncidentRecord {
            incident: Arc::new(Incident::new(IncidentId(9), 0)),
            root_registration: vec![1; roots.len()],
            roots,
            registered_roots: Vec::new(),
            weak_roots: Vec::new(),
            services: names("national-service").into_iter().map(|s| (s, State::Down)).collect(),
            symptoms: Vec::new(),
            owned_services: names("national-service"),
            owned_symptoms: Vec::new(),
            restored_since: None,
        };
        let changes = CoreChanges { incidents: vec![(IncidentId(9), Some(record))], ..CoreChanges::default() };
        let limit = 1_000_000;
        let mut snapshot = CoreSnapshot::default();
        let told = std::cell::Cell::new(false);
        encode(
            &changes,
            limit,
            |_| None,
            |_, _| told.set(true),
            |key, value| {
                assert!(key.len() + value.map_or(0, <[u8]>::len) <= limit, "{key}: a record over the limit");
                fold(&mut snapshot, key.as_bytes(), value).unwrap();
            },
        );
        assert!(told.get(), "the trimming is told");
        let kept = &snapshot.incidents[&IncidentId(9)];
        assert!(kept.roots.len() > 1_000 && kept.roots.len() < 100_000, "{} roots kept", kept.roots.len());
    }

    #[test]
    fn unknown_keys_and_corrupt_values_are_errors_that_name_the_key() {
        let mut snapshot = CoreSnapshot::default();
        let err = fold(&mut snapshot, b"stray", Some(b"x")).unwrap_err();
        assert!(err.to_string().contains("stray"), "{err}");
        let err = fold(&mut snapshot, b"incident/INC-000001", Some(b"\xff\xff")).unwrap_err();
        assert!(err.to_string().contains("incident/INC-000001"), "{err}");
    }
}
