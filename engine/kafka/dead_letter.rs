//! The dead-letter topic: the original key and bytes, untouched, with headers that say why
//! the message was refused and where it came from. Nothing refused is ever lost.

use super::send_blocking;
use rdkafka::Message;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

pub const REASON_HEADER: &str = "faultline.reason";
pub const DETAIL_HEADER: &str = "faultline.detail";
pub const SOURCE_HEADER: &str = "faultline.source";

/// Produces a refused message to `topic`; `reason` is a stable code, `detail` readable.
pub fn send(
    producer: &FutureProducer,
    topic: &str,
    message: &BorrowedMessage<'_>,
    reason: &str,
    detail: &str,
) -> DeliveryFuture {
    let source = format!("{}/{}/{}", message.topic(), message.partition(), message.offset());
    let headers = OwnedHeaders::new_with_capacity(3)
        .insert(Header { key: REASON_HEADER, value: Some(reason) })
        .insert(Header { key: DETAIL_HEADER, value: Some(detail) })
        .insert(Header { key: SOURCE_HEADER, value: Some(source.as_str()) });
    let payload = message.payload().unwrap_or_default();
    let mut record = FutureRecord::<str, [u8]>::to(topic).payload(payload).headers(headers);
    let key = message.key().map(String::from_utf8_lossy);
    if let Some(key) = key.as_deref() {
        record = record.key(key);
    }
    send_blocking(producer, record)
}
