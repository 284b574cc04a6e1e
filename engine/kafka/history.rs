//! Closed incidents, for a SOC engineer opening last week's incident by id or listing those
//! closed in a time range, for a customer or a service. The store is the compacted
//! incidents topic itself, which keeps each incident's last snapshot (a closed incident's
//! says `closed`): a thread of its own reads it from the beginning at start and follows it,
//! keeping in memory only an index of the closed incidents (a summary, and where the
//! snapshot is), at most `history.max_incidents`, the most recently closed. A whole
//! incident is fetched from the topic when it is asked for. Nothing of it is in the core:
//! the core forgets an incident once it closes.

use super::changelog::partition_bounds;
use super::incident_json;
use crate::config::{IncidentFormat, KafkaConfig};
use crate::model::EpochMillis;
use crate::model::incident::IncidentId;
use crate::proto::{self, v1};
use prost::Message as _;
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The history's consumers reach the end of their partitions all the time (that is how
/// they follow the topic): librdkafka reports each time as an error, which is news to no
/// one here.
struct Following;

impl ClientContext for Following {
    fn error(&self, error: KafkaError, reason: &str) {
        let end = matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF);
        if !end {
            tracing::error!(%error, reason, "incident history consumer");
        }
    }
}

impl ConsumerContext for Following {}

type HistoryConsumer = BaseConsumer<Following>;

/// An incident snapshot's state alone: prost skips the other fields without keeping them.
#[derive(Clone, PartialEq, prost::Message)]
struct StateOnly {
    #[prost(int32, tag = "3")]
    state: i32,
}

/// How long a fetch of one snapshot may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// One closed incident in the index.
#[derive(Clone, Debug)]
struct Closed {
    /// The incident without its lists (their sizes kept), as a dashboard lists it.
    summary: v1::Incident,
    services: BTreeSet<String>,
    customers: BTreeSet<String>,
    closed_at: EpochMillis,
    partition: i32,
    offset: i64,
}

#[derive(Debug, Default)]
struct Index {
    by_id: BTreeMap<IncidentId, Closed>,
    /// The same incidents by close time, to let the oldest go past the limit.
    by_close: BTreeSet<(EpochMillis, IncidentId)>,
}

/// What a listing asks for.
#[derive(Clone, Debug, Default)]
pub struct Query {
    pub closed_after: Option<EpochMillis>,
    pub closed_before: Option<EpochMillis>,
    pub service: Option<String>,
    pub customer: Option<String>,
    /// Ids after this one only (paging).
    pub after: Option<IncidentId>,
    pub size: usize,
}

/// A page of closed incidents: summaries in id order, how many match in all, and the
/// token of the next page.
#[derive(Debug, Default)]
pub struct Page {
    pub incidents: Vec<v1::Incident>,
    pub total: usize,
    pub next: Option<IncidentId>,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("the history of closed incidents is still being read from {0}; retry shortly")]
    Loading(String),
    #[error("cannot fetch incident {id} from {topic}: {message}")]
    Fetch { id: IncidentId, topic: String, message: String },
}

pub struct History {
    topic: String,
    format: IncidentFormat,
    limit: usize,
    index: Mutex<Index>,
    /// Set once the topic has been read to the end it had at start.
    ready: AtomicBool,
    /// Fetches one snapshot at a time, by position.
    fetcher: Mutex<HistoryConsumer>,
}

impl History {
    /// Starts following the incidents topic on a thread of its own, until `stop`.
    pub fn start(
        kafka: &KafkaConfig,
        brokers: &str,
        limit: usize,
        stop: CancellationToken,
    ) -> Result<(Arc<History>, JoinHandle<()>), KafkaError> {
        let consumer = |purpose: &str| -> Result<HistoryConsumer, KafkaError> {
            super::client_config(
                kafka,
                brokers,
                &[
                    ("group.id", &format!("{}-{purpose}", kafka.group_id)),
                    ("enable.auto.commit", "false"),
                    ("enable.partition.eof", "true"),
                    ("isolation.level", "read_committed"),
                ],
            )
            .create_with_context(Following)
        };
        let history = Arc::new(History {
            topic: kafka.incidents_topic.clone(),
            format: kafka.incidents_format,
            limit,
            index: Mutex::default(),
            ready: AtomicBool::new(false),
            fetcher: Mutex::new(consumer("history-fetch")?),
        });
        let follower = consumer("history")?;
        let follow = history.clone();
        let thread = std::thread::Builder::new()
            .name("incident-history".into())
            .spawn(move || follow.follow(follower, stop))
            .map_err(|e| KafkaError::ClientCreation(e.to_string()))?;
        Ok((history, thread))
    }

    /// Whether the topic has been read to where it stood at start.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Closed incidents in the index.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn follow(&self, consumer: HistoryConsumer, stop: CancellationToken) {
        let mut remaining = BTreeSet::new();
        while !stop.is_cancelled() {
            let deadline = Instant::now() + Duration::from_secs(2);
            match partition_bounds(&consumer, &self.topic, deadline) {
                Ok(bounds) => {
                    let mut assignment = TopicPartitionList::new();
                    for (partition, low, high) in bounds {
                        let _ = assignment.add_partition_offset(&self.topic, partition, Offset::Beginning);
                        if high > low {
                            remaining.insert(partition);
                        }
                    }
                    if let Err(error) = consumer.assign(&assignment) {
                        tracing::warn!(%error, topic = self.topic, "cannot follow the incidents topic; retrying");
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                    break;
                }
                Err(message) => {
                    tracing::warn!(message, topic = self.topic, "cannot read the incidents topic yet; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        if remaining.is_empty() {
            self.ready.store(true, Ordering::Release);
        }
        while !stop.is_cancelled() {
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Ok(message)) => {
                    let id = message.key().and_then(|k| std::str::from_utf8(k).ok()).and_then(|k| k.parse().ok());
                    if let Some(id) = id {
                        self.take(id, message.payload(), message.partition(), message.offset());
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition)))
                    if remaining.remove(&partition) && remaining.is_empty() =>
                {
                    tracing::info!(closed = self.len(), topic = self.topic, "history of closed incidents read");
                    self.ready.store(true, Ordering::Release);
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(error)) => tracing::warn!(%error, topic = self.topic, "while following the incidents topic"),
            }
        }
    }

    fn decode(&self, payload: &[u8]) -> Option<v1::Incident> {
        match self.format {
            IncidentFormat::Protobuf => v1::Incident::decode(payload).ok(),
            IncidentFormat::Json => incident_json::from_json(payload),
        }
    }

    /// Notes one record of the topic: a closed incident joins the index; a tombstone
    /// removes one. Only a closed incident's snapshot is decoded whole (a protobuf one's
    /// state is read first), and never under the index's lock.
    fn take(&self, id: IncidentId, payload: Option<&[u8]>, partition: i32, offset: i64) {
        let closed = payload.filter(|p| match self.format {
            IncidentFormat::Protobuf => {
                StateOnly::decode(*p).is_ok_and(|s| s.state == v1::IncidentState::Closed as i32)
            }
            IncidentFormat::Json => true,
        });
        let incident = closed.and_then(|p| self.decode(p)).filter(|i| i.state == v1::IncidentState::Closed as i32);
        let mut index = self.lock();
        if let Some(old) = index.by_id.remove(&id) {
            index.by_close.remove(&(old.closed_at, id));
        }
        let Some(incident) = incident else { return };
        let closed_at = incident.update_time.as_ref().map(proto::millis).unwrap_or_default();
        let services = incident.impacted_services.iter().map(|s| s.service_id.clone()).collect();
        let customers = incident.impacted_customers.iter().map(|c| c.customer_id.clone()).collect();
        let summary = v1::Incident {
            root_cause_alarms: Vec::new(),
            symptom_alarms: Vec::new(),
            impacted_services: Vec::new(),
            impacted_customers: Vec::new(),
            timeline: Vec::new(),
            notes: Vec::new(),
            root_cause_alarm_count: incident.root_cause_alarms.len() as u32,
            symptom_alarm_count: incident.symptom_alarms.len() as u32,
            impacted_service_count: incident.impacted_services.len() as u32,
            impacted_customer_count: incident.impacted_customers.len() as u32,
            ..incident
        };
        index.by_close.insert((closed_at, id));
        index.by_id.insert(id, Closed { summary, services, customers, closed_at, partition, offset });
        while index.by_id.len() > self.limit {
            let Some((_, oldest)) = index.by_close.pop_first() else { break };
            index.by_id.remove(&oldest);
        }
    }

    /// The closed incidents a query asks for, as summaries.
    pub fn list(&self, query: &Query) -> Result<Page, HistoryError> {
        if !self.is_ready() {
            return Err(HistoryError::Loading(self.topic.clone()));
        }
        let index = self.lock();
        let mut page = Page::default();
        let matching = index.by_id.iter().filter(|(_, c)| {
            query.closed_after.is_none_or(|t| c.closed_at >= t)
                && query.closed_before.is_none_or(|t| c.closed_at < t)
                && query.service.as_ref().is_none_or(|s| c.services.contains(s))
                && query.customer.as_ref().is_none_or(|s| c.customers.contains(s))
        });
        for (&id, closed) in matching {
            page.total += 1;
            if query.after.is_some_and(|after| id <= after) {
                continue;
            }
            if page.incidents.len() == query.size {
                page.next = page.next.or(Some(IncidentId(0)));
                continue;
            }
            page.incidents.push(closed.summary.clone());
        }
        if page.next.is_some() {
            page.next = page.incidents.last().and_then(|i| i.id.parse().ok());
        }
        Ok(page)
    }

    /// A closed incident, whole, read back from the topic; `None` when the index does not
    /// know it. Blocking.
    pub fn get(&self, id: IncidentId) -> Result<Option<v1::Incident>, HistoryError> {
        let at = self.lock().by_id.get(&id).map(|c| (c.partition, c.offset));
        let Some((partition, offset)) = at else {
            return if self.is_ready() { Ok(None) } else { Err(HistoryError::Loading(self.topic.clone())) };
        };
        let failed = |message: String| HistoryError::Fetch { id, topic: self.topic.clone(), message };
        let fetcher = self.fetcher.lock().unwrap_or_else(|e| e.into_inner());
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&self.topic, partition, Offset::Offset(offset))
            .map_err(|e| failed(e.to_string()))?;
        fetcher.assign(&assignment).map_err(|e| failed(e.to_string()))?;
        let deadline = Instant::now() + FETCH_TIMEOUT;
        while Instant::now() < deadline {
            match fetcher.poll(Duration::from_millis(100)) {
                Some(Ok(message)) if message.offset() == offset => {
                    let incident = message.payload().and_then(|p| self.decode(p));
                    // Nothing more is fetched (nor held) until the next look-up.
                    let _ = fetcher.unassign();
                    return incident.map(Some).ok_or_else(|| failed("the snapshot does not decode".into()));
                }
                Some(Ok(_)) | None => {}
                Some(Err(KafkaError::PartitionEOF(_))) => return Err(failed("the snapshot is gone".into())),
                Some(Err(error)) => return Err(failed(error.to_string())),
            }
        }
        Err(failed(format!("no answer within {FETCH_TIMEOUT:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(limit: usize) -> History {
        let fetcher = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .create_with_context(Following)
            .unwrap();
        History {
            topic: "incidents".into(),
            format: IncidentFormat::Protobuf,
            limit,
            index: Mutex::default(),
            ready: AtomicBool::new(true),
            fetcher: Mutex::new(fetcher),
        }
    }

    fn snapshot(id: u64, state: v1::IncidentState, closed_at: EpochMillis, customer: &str) -> Vec<u8> {
        v1::Incident {
            id: IncidentId(id).to_string(),
            state: state as i32,
            update_time: Some(proto::timestamp(closed_at)),
            impacted_customers: vec![v1::ImpactedCustomer { customer_id: customer.into(), ..Default::default() }],
            timeline: vec![v1::TimelineEntry { kind: "closed".into(), ..Default::default() }],
            ..Default::default()
        }
        .encode_to_vec()
    }

    fn ids(page: &Page) -> Vec<String> {
        page.incidents.iter().map(|i| i.id.clone()).collect()
    }

    #[test]
    fn the_index_keeps_the_most_recently_closed_incidents_as_summaries() {
        let history = history(3);
        let closed = v1::IncidentState::Closed;
        for id in 1..=5 {
            let customer = if id % 2 == 0 { "cust-acme" } else { "cust-globex" };
            history.take(IncidentId(id), Some(&snapshot(id, closed, id as i64 * 1000, customer)), 0, id as i64);
        }
        history.take(IncidentId(6), Some(&snapshot(6, v1::IncidentState::Open, 0, "cust-acme")), 0, 6);
        let all = history.list(&Query { size: 10, ..Query::default() }).unwrap();
        assert_eq!(ids(&all), ["INC-000003", "INC-000004", "INC-000005"], "the three closed last; no open one");
        assert!(all.incidents.iter().all(|i| i.timeline.is_empty() && i.impacted_customer_count == 1));

        let acme = Query { customer: Some("cust-acme".into()), size: 10, ..Query::default() };
        assert_eq!(ids(&history.list(&acme).unwrap()), ["INC-000004"]);
        let window = Query { closed_after: Some(4000), closed_before: Some(5000), size: 10, ..Query::default() };
        assert_eq!(ids(&history.list(&window).unwrap()), ["INC-000004"]);
        let first = history.list(&Query { size: 2, ..Query::default() }).unwrap();
        assert_eq!(
            (ids(&first), first.total, first.next),
            (vec!["INC-000003".into(), "INC-000004".into()], 3, Some(IncidentId(4)))
        );
        let second = history.list(&Query { size: 2, after: first.next, ..Query::default() }).unwrap();
        assert_eq!((ids(&second), second.next), (vec!["INC-000005".to_owned()], None));

        history.take(IncidentId(4), None, 0, 7);
        assert_eq!(history.len(), 2, "a tombstone takes an incident out");
    }
}
