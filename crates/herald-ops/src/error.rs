//! [`OpError`]: why an operation failed, with its [`ErrorKind`]. The API maps the kind to an
//! HTTP status, the CLI to an exit code; neither reads the message.

use herald_core::EndpointId;
use herald_producer::ProduceError;
use herald_store::{ErrorKind, StoreError};

/// An operation's result.
pub type OpResult<T> = Result<T, OpError>;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The input is refused before the store is asked (an id, a duration, a bound).
    #[error("{0}")]
    Invalid(String),
    /// The endpoint named does not exist.
    #[error("endpoint {0} not found")]
    UnknownEndpoint(EndpointId),
    /// What the input names (a job, a dead letter, a subscription) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else: a defect, not the caller's doing.
    #[error("{0}")]
    Internal(String),
}

impl OpError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            OpError::Invalid(_) => ErrorKind::BadInput,
            OpError::UnknownEndpoint(_) | OpError::NotFound(_) => ErrorKind::NotFound,
            OpError::Store(e) => e.kind(),
            OpError::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl From<ProduceError> for OpError {
    fn from(e: ProduceError) -> Self {
        match e {
            ProduceError::Store(e) => OpError::Store(e),
            e @ ProduceError::InvalidJson(_) => OpError::Invalid(e.to_string()),
            e => OpError::Internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_the_kind_of_its_cause() {
        let id = EndpointId::new("dash-1").unwrap();
        assert_eq!(OpError::Invalid("x".into()).kind(), ErrorKind::BadInput);
        assert_eq!(OpError::UnknownEndpoint(id).kind(), ErrorKind::NotFound);
        assert_eq!(OpError::NotFound("x".into()).kind(), ErrorKind::NotFound);
        assert_eq!(OpError::Internal("x".into()).kind(), ErrorKind::Internal);
        let store = StoreError::InvalidArgument("bad cursor".into());
        assert_eq!(OpError::from(store).kind(), ErrorKind::BadInput);
        let json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let produce = ProduceError::InvalidJson(json);
        assert_eq!(OpError::from(produce).kind(), ErrorKind::BadInput);
    }
}
