//! The dead-letter topic: the original key and bytes, untouched, with headers that say why
//! the message was refused and where it came from. Nothing refused is ever lost: a refused
//! message is written in the same transaction that commits its input offset.

use rdkafka::Message;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

pub const REASON_HEADER: &str = "faultline.reason";
pub const DETAIL_HEADER: &str = "faultline.detail";
pub const SOURCE_HEADER: &str = "faultline.source";

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
}

impl Refused {
    pub fn new(message: &BorrowedMessage<'_>, reason: &'static str, detail: String) -> Refused {
        Refused {
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().unwrap_or_default().to_vec(),
            reason,
            detail,
            source: format!("{}/{}/{}", message.topic(), message.partition(), message.offset()),
        }
    }

    /// The dead-letter record, with the original key and payload.
    pub fn record<'a>(&'a self, topic: &'a str) -> BaseRecord<'a, [u8], [u8]> {
        let headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header { key: REASON_HEADER, value: Some(self.reason) })
            .insert(Header { key: DETAIL_HEADER, value: Some(self.detail.as_str()) })
            .insert(Header { key: SOURCE_HEADER, value: Some(self.source.as_str()) });
        let mut record = BaseRecord::to(topic).payload(self.payload.as_slice()).headers(headers);
        if let Some(key) = &self.key {
            record = record.key(key.as_slice());
        }
        record
    }
}
