//! Errors of the store crate.

/// The store's results.
pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What went wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis could not be reached, or a command failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered something that does not have the expected shape.
    #[error("unexpected redis reply: {0}")]
    Reply(#[from] redis::ParsingError),
    /// Redis did not answer a blocking wait by its deadline: the connection is presumed dead
    /// (a dropped flow answers nothing) and should be dropped.
    #[error("redis: no answer to a blocking wait within {0:?}; the connection is presumed dead")]
    WaitTimeout(std::time::Duration),
    /// No connection could be taken from the pool.
    #[error("redis connection pool: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    /// Writes were made but fewer replicas than asked acknowledged them in time
    /// (`HERALD_ENQUEUE_WAIT_REPLICAS`): a failover now could lose them.
    #[error("the writes were made, but only {acked} of {wanted} replicas acknowledged them in time (HERALD_ENQUEUE_WAIT_REPLICAS): a failover now could lose them")]
    NotReplicated { acked: u32, wanted: u32 },
    /// The Redis URL or pool settings are unusable.
    #[error("redis configuration: {0}")]
    Config(String),
    /// The endpoint does not exist.
    #[error("unknown endpoint {0:?}")]
    UnknownEndpoint(String),
    /// The job id is already in use.
    #[error("job id {0} already exists")]
    DuplicateJobId(String),
    /// The store refused an argument (the message says which).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The deployment was set up with another shard count.
    #[error("namespace {namespace:?} was created with {stored} shards, this process is configured with {configured}; shards are fixed per deployment (HERALD_SHARDS)")]
    ShardMismatch {
        namespace: String,
        stored: u16,
        configured: u16,
    },
    /// The namespace holds data of another key format than this process's.
    #[error("namespace {namespace:?} holds herald data of format {stored}, but this herald reads and writes format {ours}: run a herald of format {stored} against it, or use another namespace (HERALD_NAMESPACE) for this one")]
    FormatMismatch {
        namespace: String,
        stored: String,
        ours: u32,
    },
    /// A script answered something its contract does not allow.
    #[error("unexpected reply from script {script}: {detail}")]
    Protocol {
        script: &'static str,
        detail: String,
    },
    /// Stored endpoint JSON could not be read.
    #[error("stored endpoint {id:?} is unreadable: {source}")]
    BadEndpoint {
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A reply that breaks its script's or command's contract.
pub(crate) fn protocol(script: &'static str, detail: impl Into<String>) -> StoreError {
    StoreError::Protocol {
        script,
        detail: detail.into(),
    }
}

/// What kind of failure an error is: the one thing the front-ends decide by (the API's
/// status, the CLI's exit code), so that none of them reads a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request or the settings were refused: trying again unchanged fails again.
    BadInput,
    /// What the request names does not exist.
    NotFound,
    /// What the request would create exists already.
    Conflict,
    /// Redis could not be reached, did not answer in time, or could not keep the write safe
    /// yet: the same request may succeed later.
    Unavailable,
    /// Something that should not happen: a reply of the wrong shape, an unreadable record, a
    /// command Redis refused as wrong.
    Internal,
}

impl StoreError {
    /// The kind of this failure, from the store's own variants and, for a Redis error, from
    /// its [`redis::ErrorKind`] and error code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidArgument(_)
            | Self::Config(_)
            | Self::ShardMismatch { .. }
            | Self::FormatMismatch { .. } => ErrorKind::BadInput,
            Self::UnknownEndpoint(_) => ErrorKind::NotFound,
            Self::DuplicateJobId(_) => ErrorKind::Conflict,
            Self::Pool(_) | Self::WaitTimeout(_) | Self::NotReplicated { .. } => {
                ErrorKind::Unavailable
            }
            Self::Redis(e) => redis_kind(e),
            Self::Reply(_) | Self::Protocol { .. } | Self::BadEndpoint { .. } => {
                ErrorKind::Internal
            }
        }
    }

    /// True when Redis refused this process's credentials (the user and password of the Redis
    /// URL): at the handshake (of a pooled connection too), or a command sent without them
    /// (`NOAUTH`).
    pub fn is_refused_credentials(&self) -> bool {
        match self {
            Self::Redis(e) | Self::Pool(deadpool_redis::PoolError::Backend(e)) => {
                refused_credentials(e)
            }
            _ => false,
        }
    }
}

/// Whether a Redis error is Redis refusing the credentials: by its kind, or by its code.
pub(crate) fn refused_credentials(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
}

/// The kind of a Redis error. Whatever is not known to be the request's or herald's own fault
/// is taken for an outage, as before: a lost connection, a failover, a node loading its data, a
/// full memory, refused credentials.
fn redis_kind(e: &redis::RedisError) -> ErrorKind {
    use redis::{ErrorKind as K, ServerErrorKind as S};
    match e.kind() {
        K::Parse | K::UnexpectedReturnType | K::Client => ErrorKind::Internal,
        K::Server(S::ResponseError | S::ExecAbort | S::NoScript | S::CrossSlot | S::NoPerm) => {
            ErrorKind::Internal
        }
        K::Extension if e.code() == Some("WRONGTYPE") => ErrorKind::Internal,
        K::InvalidClientConfig => ErrorKind::BadInput,
        _ => ErrorKind::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis_error(kind: redis::ErrorKind) -> StoreError {
        StoreError::Redis(redis::RedisError::from((kind, "test")))
    }

    #[test]
    fn every_error_has_the_kind_its_front_ends_need() {
        use redis::{ErrorKind as K, ServerErrorKind as S};
        let cases = [
            (StoreError::InvalidArgument("x".into()), ErrorKind::BadInput),
            (StoreError::Config("x".into()), ErrorKind::BadInput),
            (StoreError::UnknownEndpoint("e".into()), ErrorKind::NotFound),
            (StoreError::DuplicateJobId("j".into()), ErrorKind::Conflict),
            (
                StoreError::WaitTimeout(std::time::Duration::from_secs(1)),
                ErrorKind::Unavailable,
            ),
            (
                StoreError::NotReplicated {
                    acked: 0,
                    wanted: 1,
                },
                ErrorKind::Unavailable,
            ),
            (redis_error(K::Io), ErrorKind::Unavailable),
            (redis_error(K::AuthenticationFailed), ErrorKind::Unavailable),
            (
                redis_error(K::Server(S::ClusterDown)),
                ErrorKind::Unavailable,
            ),
            (
                redis_error(K::Server(S::BusyLoading)),
                ErrorKind::Unavailable,
            ),
            (
                redis_error(K::Server(S::ResponseError)),
                ErrorKind::Internal,
            ),
            (redis_error(K::Server(S::CrossSlot)), ErrorKind::Internal),
            (
                StoreError::Protocol {
                    script: "claim",
                    detail: "x".into(),
                },
                ErrorKind::Internal,
            ),
        ];
        for (e, kind) in cases {
            assert_eq!(e.kind(), kind, "{e}");
        }
    }

    #[test]
    fn refused_credentials_are_told_by_the_error_kind_and_code() {
        assert!(redis_error(redis::ErrorKind::AuthenticationFailed).is_refused_credentials());
        let noauth =
            redis::make_extension_error("NOAUTH".into(), Some("Authentication required.".into()));
        assert!(StoreError::Redis(noauth).is_refused_credentials());
        assert!(!redis_error(redis::ErrorKind::Io).is_refused_credentials());
        assert!(!StoreError::Config("WRONGPASS".into()).is_refused_credentials());
    }
}
