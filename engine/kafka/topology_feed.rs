//! The topology feed's edge: records of the CMDB's compacted topic (`kafka.topology_topic`)
//! decoded into CI changes for the core ([`crate::correlate::feed`] applies them), and, at
//! start, an empty topic seeded with the engine's topology.
//!
//! A record's key is the CI id; its value the CI record of the topology file format (one
//! JSON object) or a protobuf `faultline.v1.ConfigurationItem`, told apart by the first byte
//! (`{` opens JSON; it is no valid protobuf field tag); a tombstone (null value, or empty)
//! deletes the CI. A record whose id is missing takes the key's; one whose id differs from
//! its key is refused: compaction keeps one record per key, so a key naming another CI
//! would keep the wrong one.

use super::dead_letter::{Refusal, keyed, refused};
use crate::config::KafkaConfig;
use crate::model::topology::{CiChange, CiRecord, Topology};
use crate::proto::{self, v1};
use prost::Message as _;
use rdkafka::ClientContext;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The change a feed record asks for. `max_bytes`: the largest CI record the engine keeps
/// (the changelog must hold it).
pub fn decode(key: Option<&[u8]>, payload: Option<&[u8]>, max_bytes: usize) -> Result<CiChange, Refusal> {
    let (key, payload) = match keyed(key, payload, max_bytes, "its CI id")? {
        (key, None) => return Ok(CiChange::Delete(key.to_owned())),
        (key, Some(payload)) => (key, payload),
    };
    let protobuf = |json_error: Option<serde_json::Error>| -> Result<CiRecord, Refusal> {
        let message = v1::ConfigurationItem::decode(payload).map_err(|e| {
            let json = json_error.map(|j| format!(" (as JSON: {j})")).unwrap_or_default();
            refused("undecodable", format!("not a CI record: not a faultline.v1.ConfigurationItem: {e}{json}"))
        })?;
        proto::record_from_proto(message).map_err(|e| refused("invalid", e))
    };
    // `{` first is JSON: no protobuf field has that tag. Whitespace first may open either
    // (a protobuf whose first field's id is 9 to 13 or 32 bytes long starts so).
    let mut record: CiRecord = match payload.iter().position(|b| !b.is_ascii_whitespace()) {
        Some(0) if payload[0] == b'{' => serde_json::from_slice(payload)
            .map_err(|e| refused("undecodable", format!("not a CI record (JSON): {e}")))?,
        Some(at) if payload[at] == b'{' => match serde_json::from_slice(payload) {
            Ok(record) => record,
            Err(e) => protobuf(Some(e))?,
        },
        _ => protobuf(None)?,
    };
    if record.id.is_empty() {
        record.id = key.to_owned();
    } else if record.id != key {
        return Err(refused(
            "key_mismatch",
            format!("the record is of CI `{}` but its key is `{key}`: the key must be the CI id", record.id),
        ));
    }
    Ok(CiChange::Upsert(record))
}

/// The header that marks a record the engine wrote to seed the topic, naming its consumer
/// group: that engine has the topology already and skips these records; any other reader
/// (another deployment, a tool) takes them as any record.
pub const SEEDED_BY_HEADER: &str = "faultline.seeded-by";

/// Whether a consumed record is the seed this engine's group wrote.
pub fn is_own_seed(message: &impl Message, group_id: &str) -> bool {
    message.headers().is_some_and(|headers| {
        headers.iter().any(|h| h.key == SEEDED_BY_HEADER && h.value == Some(group_id.as_bytes()))
    })
}

/// Counts the seed's records the brokers refused.
#[derive(Default)]
struct SeedContext {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for SeedContext {}

impl ProducerContext for SeedContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            self.first_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| error.to_string());
        }
    }
}

/// Writes every CI of `topology` to the topology topic when that topic holds no record at
/// all (its first start), so that the CMDB's tools and other readers find the whole
/// topology there. The records carry [`SEEDED_BY_HEADER`]: the engine, which has all of it
/// already, skips them, so a change made between the seed and its consumption is not
/// undone by it. They are partitioned as Kafka's Java clients partition (murmur2), so that
/// a CMDB producing the same keys later lands on the same partitions and compaction keeps
/// its records, not the seed's. A topic that has ever held a record is left alone.
/// Returns the CIs written.
pub fn seed(kafka: &KafkaConfig, brokers: &str, topology: &Topology, timeout: Duration) -> Result<usize, String> {
    let Some(topic) = kafka.topology_topic() else { return Ok(0) };
    if topology.is_empty() {
        return Ok(0);
    }
    let consumer: BaseConsumer =
        super::client_config(kafka, brokers, &[]).create().map_err(|e| format!("cannot create a consumer: {e}"))?;
    let deadline = Instant::now() + timeout;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| format!("cannot read the metadata of topic {topic}: {e}"))?;
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let left = deadline.saturating_duration_since(Instant::now());
        let (_, high) = consumer
            .fetch_watermarks(topic, partition.id(), left)
            .map_err(|e| format!("cannot read the offsets of topic {topic}: {e}"))?;
        if high > 0 {
            return Ok(0);
        }
    }
    let defaults = [("enable.idempotence", "true"), ("linger.ms", "20"), ("partitioner", "murmur2_random")];
    let producer: ThreadedProducer<SeedContext> = super::client_config(kafka, brokers, &defaults)
        .create_with_context(SeedContext::default())
        .map_err(|e| format!("cannot create a producer: {e}"))?;
    let headers = OwnedHeaders::new().insert(Header { key: SEEDED_BY_HEADER, value: Some(kafka.group_id.as_str()) });
    let mut written = 0;
    let mut value = Vec::new();
    for (idx, ci) in topology.iter() {
        value.clear();
        serde_json::to_writer(&mut value, &topology.record(idx)).map_err(|e| e.to_string())?;
        let record = BaseRecord::to(topic).key(&*ci.id).payload(&value).headers(headers.clone());
        super::send_waiting(&producer, record).map_err(|e| format!("cannot write to topic {topic}: {e}"))?;
        written += 1;
    }
    producer.flush(timeout).map_err(|e| format!("cannot write to topic {topic}: {e}"))?;
    let context = producer.context();
    let failed = context.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let error = context.first_error.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default();
        return Err(format!("{failed} of {written} records not written to topic {topic}: {error}"));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::topology::CiClass;

    const MAX: usize = 4096;

    #[test]
    fn records_decode_from_json_and_protobuf_and_tombstones_delete() {
        let json = br#"{"id":"p1","class":"port","depends_on":["c1"]}"#;
        let Ok(CiChange::Upsert(record)) = decode(Some(b"p1"), Some(json), MAX) else { panic!() };
        assert_eq!((record.class, record.depends_on.as_slice()), (CiClass::Port, &["c1".to_owned()][..]));

        let message = v1::ConfigurationItem { class: v1::CiClass::Card as i32, ..Default::default() };
        let Ok(CiChange::Upsert(record)) = decode(Some(b"c1"), Some(&message.encode_to_vec()), MAX) else { panic!() };
        assert_eq!((record.id.as_str(), record.class), ("c1", CiClass::Card), "an id left out is the key's");

        // A protobuf whose bytes open with whitespace, then `{`: an id 10 bytes long.
        let odd =
            v1::ConfigurationItem { id: "{port-0001".into(), class: v1::CiClass::Port as i32, ..Default::default() };
        let bytes = odd.encode_to_vec();
        assert_eq!(&bytes[..3], b"\n\n{");
        let Ok(CiChange::Upsert(record)) = decode(Some(b"{port-0001"), Some(&bytes), MAX) else { panic!() };
        assert_eq!(record.class, CiClass::Port);
        // JSON after whitespace is JSON.
        let spaced = b"  \n{\"id\":\"p1\",\"class\":\"port\"}";
        assert!(matches!(decode(Some(b"p1"), Some(spaced), MAX), Ok(CiChange::Upsert(_))));

        assert_eq!(decode(Some(b"p1"), None, MAX), Ok(CiChange::Delete("p1".into())));
        assert_eq!(decode(Some(b"p1"), Some(b""), MAX), Ok(CiChange::Delete("p1".into())));
    }

    #[test]
    fn bad_records_are_refused_with_a_reason() {
        let reason = |key: Option<&[u8]>, payload: &[u8]| decode(key, Some(payload), MAX).unwrap_err().reason;
        assert_eq!(reason(None, b"{}"), "missing_key");
        assert_eq!(reason(Some(b" "), b"{}"), "missing_key");
        assert_eq!(reason(Some(&[0xff, 0xfe]), b"{}"), "invalid_key");
        assert_eq!(reason(Some(b"p1"), br#"{"id":"p2","class":"port"}"#), "key_mismatch");
        assert_eq!(reason(Some(b"p1"), br#"{"id":"p1","class":"router"}"#), "undecodable");
        assert_eq!(reason(Some(b"p1"), br#"{"id":"p1","class":"port","colour":"red"}"#), "undecodable");
        assert_eq!(reason(Some(b"p1"), &[0x0a, 0xff]), "undecodable");
        let classless = v1::ConfigurationItem { id: "p1".into(), ..Default::default() };
        assert_eq!(reason(Some(b"p1"), &classless.encode_to_vec()), "invalid");
        let big = format!(r#"{{"id":"p1","class":"port","name":"{}"}}"#, "x".repeat(MAX));
        assert_eq!(reason(Some(b"p1"), big.as_bytes()), "oversized");
        let at_limit = format!(r#"{{"id":"p1","class":"port","name":"{}"}}"#, "x".repeat(MAX - 36));
        assert_eq!(at_limit.len(), MAX);
        assert!(decode(Some(b"p1"), Some(at_limit.as_bytes()), MAX).is_ok());
    }
}
