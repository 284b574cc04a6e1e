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
