//! How a command's failure ends: an error caused by the input ([`Refused`], exit code 2) or
//! any other (exit code 1), and the operations' and the store's errors sorted by their kind.

use std::fmt;

use herald_store::{ErrorKind, StoreError};

/// An error caused by the input (bad argument, unknown id): exit code 2.
#[derive(Debug)]
pub struct Refused(pub String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Turns a store error into the command's error, by its kind: refusals keep exit code 2, an
/// outage says where to look.
pub fn store_error(e: StoreError) -> anyhow::Error {
    match e.kind() {
        ErrorKind::BadInput | ErrorKind::NotFound | ErrorKind::Conflict => {
            Refused(e.to_string()).into()
        }
        ErrorKind::Unavailable if e.is_refused_credentials() => anyhow::Error::new(e)
            .context("Redis refused the credentials (the user and password in HERALD_REDIS_URL)"),
        // The writes were made; the error says so and what it means.
        ErrorKind::Unavailable if matches!(e, StoreError::NotReplicated { .. }) => e.into(),
        ErrorKind::Unavailable => {
            anyhow::Error::new(e).context("cannot reach Redis (check HERALD_REDIS_URL)")
        }
        ErrorKind::Internal => e.into(),
    }
}

/// Turns an operation's error into the command's error, by its kind: refusals keep exit code 2.
pub fn op_error(e: herald_ops::OpError) -> anyhow::Error {
    match e {
        herald_ops::OpError::Store(e) => store_error(e),
        e => match e.kind() {
            ErrorKind::BadInput | ErrorKind::NotFound | ErrorKind::Conflict => {
                Refused(e.to_string()).into()
            }
            ErrorKind::Unavailable | ErrorKind::Internal => e.into(),
        },
    }
}

/// The exit code of a failed command: 2 when the input was refused, 1 otherwise.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Refused>().is_some() {
        2
    } else {
        1
    }
}
