//! The one mapping from engine errors to gRPC status codes.

use crate::correlate::CoreError;
use crate::runtime::Unavailable;
use tonic::Status;

impl From<CoreError> for Status {
    fn from(error: CoreError) -> Status {
        match error {
            CoreError::NotFound(_) => Status::not_found(error.to_string()),
            CoreError::FailedPrecondition(_) => Status::failed_precondition(error.to_string()),
        }
    }
}

impl From<Unavailable> for Status {
    fn from(error: Unavailable) -> Status {
        Status::unavailable(error.to_string())
    }
}

pub fn incident_id(id: &str) -> Result<crate::model::incident::IncidentId, Status> {
    id.parse().map_err(|_| Status::invalid_argument(format!("`{id}` is not an incident id (expected e.g. INC-000001)")))
}

pub fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.trim().is_empty() { Err(Status::invalid_argument(format!("`{field}` is required"))) } else { Ok(value) }
}

/// The largest request the API decodes; a larger one is refused by the transport
/// (`OUT_OF_RANGE`, "decoded message length too large") before it is read into memory.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The longest note an operator may add, in bytes: an incident's notes travel in every
/// snapshot of it, which must fit one Kafka record.
pub const MAX_NOTE_BYTES: usize = 16 * 1024;

/// The longest name an action may carry (who acknowledged, resolved, wrote a note).
pub const MAX_NAME_BYTES: usize = 256;

/// `value` if it is at most `limit` bytes, else `INVALID_ARGUMENT` saying so.
pub fn bounded<'a>(field: &str, value: &'a str, limit: usize) -> Result<&'a str, Status> {
    if value.len() > limit {
        return Err(Status::invalid_argument(format!(
            "`{field}` is {} bytes, more than the {limit} allowed",
            value.len()
        )));
    }
    Ok(value)
}
