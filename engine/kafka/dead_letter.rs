//! The dead-letter topic: the original key and bytes, untouched, with headers that say why
//! the message was refused and where it came from. Nothing refused is ever lost: a refused
//! message is written in the same transaction that commits its input offset.

use rdkafka::Message;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

pub const REASON_HEADER: &str = "faultline.reason";
pub const DETAIL_HEADER: &str = "faultline.detail";
pub const SOURCE_HEADER: &str = "faultline.source";
/// The original payload's size in bytes, on a dead letter whose payload was cut to fit.
pub const ORIGINAL_SIZE_HEADER: &str = "faultline.original_size";

/// Room kept for the headers and the record's framing within `kafka.max_record_bytes`.
const HEADERS_ROOM: usize = 4096;
/// Keys longer than this are cut (a key is only a partitioning hint for a dead letter).
const MAX_KEY: usize = 1024;

/// Why a record of a keyed topic (topology, changes) is refused: a stable, low-cardinality
/// code (the dead-letter reason) and a readable detail.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub detail: String,
}

pub fn refused(reason: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal { reason, detail: detail.into() }
}

/// A record of a compacted topic keyed by what it names: its key as text (required: `names`
/// says what it must be), and its value, `None` for a tombstone (null or empty). A value
/// over `max_bytes` is refused as `oversized`.
pub fn keyed<'a>(
    key: Option<&'a [u8]>,
    payload: Option<&'a [u8]>,
    max_bytes: usize,
    names: &str,
) -> Result<(&'a str, Option<&'a [u8]>), Refusal> {
    let key = match key.map(std::str::from_utf8) {
        Some(Ok(key)) if !key.trim().is_empty() => key,
        Some(Err(_)) => return Err(refused("invalid_key", "the key is not UTF-8")),
        _ => return Err(refused("missing_key", format!("the record needs {names} as key"))),
    };
    match payload.filter(|p| !p.is_empty()) {
        Some(p) if p.len() > max_bytes => {
            Err(refused("oversized", format!("a value of {} bytes exceeds the limit of {max_bytes} bytes", p.len())))
        }
        value => Ok((key, value)),
    }
}

/// An input message the decoder refused, on its way from the consumer thread to the core
/// thread, which writes it inside its transaction.
#[derive(Clone, Debug)]
pub struct Refused {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// A stable, low-cardinality code (`undecodable`, `oversized`, ...).
    pub reason: &'static str,
    /// A readable explanation.
    pub detail: String,
    /// `topic/partition/offset` of the original.
    pub source: String,
    /// The original payload's size when `payload` holds only its beginning.
    pub original_size: Option<usize>,
}

impl Refused {
    /// The dead letter of `message`, within `max_record_bytes` all told: a payload too large
    /// to be written whole keeps its beginning and says its original size, so that one
    /// message can never make a record the engine cannot write.
    pub fn new(
        message: &BorrowedMessage<'_>,
        reason: &'static str,
        detail: String,
        max_record_bytes: usize,
    ) -> Refused {
        let source = format!("{}/{}/{}", message.topic(), message.partition(), message.offset());
        let original = (message.key(), message.payload().unwrap_or_default());
        Refused::cut(original, reason, detail, source, max_record_bytes)
    }

    /// A dead letter of a key and payload, cut to fit as [`Refused::new`] cuts a message's.
    pub fn cut(
        (key, original): (Option<&[u8]>, &[u8]),
        reason: &'static str,
        mut detail: String,
        source: String,
        max_record_bytes: usize,
    ) -> Refused {
        cut_at_char(&mut detail, MAX_KEY);
        let key = key.map(|key| key[..key.len().min(MAX_KEY)].to_vec());
        let room = max_record_bytes.saturating_sub(HEADERS_ROOM + key.as_ref().map_or(0, Vec::len) + detail.len());
        let (payload, original_size) = if original.len() > room {
            (original[..room].to_vec(), Some(original.len()))
        } else {
            (original.to_vec(), None)
        };
        Refused { key, payload, reason, detail, source, original_size }
    }

    /// The dead-letter record, with the original key and payload.
    pub fn record<'a>(&'a self, topic: &'a str) -> BaseRecord<'a, [u8], [u8]> {
        let mut headers = OwnedHeaders::new_with_capacity(4)
            .insert(Header { key: REASON_HEADER, value: Some(self.reason) })
            .insert(Header { key: DETAIL_HEADER, value: Some(self.detail.as_str()) })
            .insert(Header { key: SOURCE_HEADER, value: Some(self.source.as_str()) });
        if let Some(size) = self.original_size {
            headers = headers.insert(Header { key: ORIGINAL_SIZE_HEADER, value: Some(size.to_string().as_str()) });
        }
        let mut record = BaseRecord::to(topic).payload(self.payload.as_slice()).headers(headers);
        if let Some(key) = &self.key {
            record = record.key(key.as_slice());
        }
        record
    }
}

/// Cuts `text` to at most `limit` bytes, at a character boundary.
fn cut_at_char(text: &mut String, limit: usize) {
    if text.len() > limit {
        let mut at = limit;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_never_exceeds_the_record_limit_and_says_what_it_cut() {
        let limit = 100_000;
        let whole = Refused::cut((Some(b"k"), &[7; 500]), "undecodable", "bad".into(), "t/0/1".into(), limit);
        assert_eq!((whole.payload.len(), whole.original_size), (500, None));

        let huge = vec![7u8; 1_040_000];
        let long_key = vec![b'k'; 50_000];
        let detail = "é".repeat(10_000);
        let cut = Refused::cut((Some(&long_key), &huge), "oversized", detail, "t/0/2".into(), limit);
        let size = cut.key.as_ref().map_or(0, Vec::len) + cut.payload.len() + cut.detail.len() + cut.source.len();
        assert!(size + 64 <= limit, "{size} bytes with headers");
        assert_eq!(cut.original_size, Some(1_040_000));
        assert_eq!(&cut.payload[..], &huge[..cut.payload.len()], "the beginning is kept");
        assert!(cut.payload.len() > limit / 2, "as much as fits is kept: {}", cut.payload.len());
        assert!(cut.detail.len() <= MAX_KEY && cut.detail.chars().all(|c| c == 'é'), "cut at a character");
    }
}
