//! Errors of the store crate.

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

impl StoreError {
    /// True when the error comes from Redis being unreachable or failing, as opposed to a
    /// refusal of the request itself; the worker retries these with backoff.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Redis(_) | Self::Pool(_) | Self::WaitTimeout(_))
    }
}
