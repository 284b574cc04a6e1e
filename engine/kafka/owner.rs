//! Which engine owns a state topic. Two engines with different `kafka.instance_id`s on one
//! state topic would each restore the other's records and both write their own
//! `INC-000001`: the second one must not start. The first engine to start on a state topic
//! writes a claim, `owner/<instance_id>`, to its partition 0; the earliest live claim there
//! owns the topic, and an engine of another instance id is refused at start, naming it.
//!
//! Two engines started on a new topic at the same moment both claim it; each then reads
//! the claims back and the one whose claim came second withdraws it (a tombstone) and is
//! refused. The claims have a key each, so compaction keeps the owner's.

use super::changelog::{self, ChangelogError};
use super::output::TxnProducer;
use crate::config::KafkaConfig;
use rdkafka::producer::{BaseRecord, Producer};
use std::time::Duration;

pub const PREFIX: &str = "owner/";
/// Claims are written here, so that their order is the partition's.
const PARTITION: i32 = 0;

/// The live claims read from a state topic, earliest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claims(Vec<((i32, i64), String)>);

impl Claims {
    /// Notes the claim record of `instance` at `partition`/`offset` (`live`: not a tombstone).
    pub fn record(&mut self, instance: &str, partition: i32, offset: i64, live: bool) {
        self.0.retain(|(_, claimant)| claimant != instance);
        if live {
            self.0.push(((partition, offset), instance.to_owned()));
        }
    }

    /// The instance that owns the topic: the earliest live claim.
    pub fn owner(&self) -> Option<&str> {
        self.0.iter().min().map(|(_, instance)| instance.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error(
        "the state topic {topic} belongs to the engine with kafka.instance_id `{owner}`; this engine is `{mine}`. \
         Two instances on one state topic would mix their incidents and state: start this one with \
         kafka.instance_id = \"{owner}\" to take its place, or give it its own kafka.state_topic"
    )]
    Owned { topic: String, owner: String, mine: String },
    #[error("cannot claim the state topic {topic}: {message}")]
    Claim { topic: String, message: String },
    #[error(transparent)]
    Read(#[from] ChangelogError),
}

/// Makes sure this engine owns the state topic, claiming it when nobody has. `claims` are
/// those the restore read. Blocking.
pub fn settle(
    producer: &TxnProducer,
    kafka: &KafkaConfig,
    brokers: &str,
    claims: &Claims,
    timeout: Duration,
) -> Result<(), OwnerError> {
    let mine = kafka.instance_id.as_str();
    let owned = |owner: &str| OwnerError::Owned {
        topic: kafka.state_topic.clone(),
        owner: owner.to_owned(),
        mine: mine.to_owned(),
    };
    match claims.owner() {
        Some(owner) if owner == mine => return Ok(()),
        Some(owner) => return Err(owned(owner)),
        None => {}
    }
    write(producer, kafka, true, timeout)?;
    tracing::info!(topic = kafka.state_topic, instance_id = mine, "claimed the state topic");
    // A committed transaction's records become readable once its markers are written,
    // which the commit does not wait for: read until the claim shows.
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let (_, read) = changelog::read(kafka, brokers, timeout)?;
        match read.claims.owner() {
            Some(owner) if owner == mine => return Ok(()),
            Some(owner) => {
                // Another engine claimed it a moment before: withdraw.
                write(producer, kafka, false, timeout)?;
                return Err(owned(owner));
            }
            None if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            None => {
                return Err(OwnerError::Claim {
                    topic: kafka.state_topic.clone(),
                    message: format!(
                        "the claim was written but is not read back within {timeout:?} (kafka.restore_timeout_secs)"
                    ),
                });
            }
        }
    }
}

/// Writes this instance's claim (or its tombstone) in a transaction of its own.
fn write(producer: &TxnProducer, kafka: &KafkaConfig, live: bool, timeout: Duration) -> Result<(), OwnerError> {
    let failed =
        |e: rdkafka::error::KafkaError| OwnerError::Claim { topic: kafka.state_topic.clone(), message: e.to_string() };
    let key = format!("{PREFIX}{}", kafka.instance_id);
    let value = kafka.instance_id.as_bytes();
    producer.begin_transaction().map_err(failed)?;
    let mut record = BaseRecord::<str, [u8]>::to(&kafka.state_topic).key(&key).partition(PARTITION);
    if live {
        record = record.payload(value);
    }
    let sent = super::send_waiting(producer, record).and_then(|()| producer.commit_transaction(timeout));
    if let Err(error) = sent {
        let _ = producer.abort_transaction(timeout);
        return Err(failed(error));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_live_claim_owns_the_topic() {
        let mut claims = Claims::default();
        assert_eq!(claims.owner(), None);
        claims.record("b", 0, 7, true);
        claims.record("a", 0, 3, true);
        assert_eq!(claims.owner(), Some("a"));
        // Withdrawn: the next claim owns it.
        claims.record("a", 0, 9, false);
        assert_eq!(claims.owner(), Some("b"));
        // Claimed again later: still after b.
        claims.record("a", 0, 11, true);
        assert_eq!(claims.owner(), Some("b"));
    }
}
