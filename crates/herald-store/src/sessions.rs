//! Console sessions of `herald serve`: one small hash per session, named by the hash of the
//! session id its cookie holds (so whoever reads Redis cannot take a session over), expiring
//! with the session. Kept in Redis so that any number of `herald serve` processes share them.

use std::time::Duration;

use crate::error::Result;
use crate::Store;

/// A console session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The hashed form of the token the session was opened with; the server checks at every
    /// request that it still lists that token.
    pub token: String,
    /// The form token every console form carries back (CSRF protection).
    pub csrf: String,
}

impl Store {
    /// Stores a new session for `ttl`.
    pub async fn create_session(
        &self,
        id_hash: &str,
        session: &Session,
        ttl: Duration,
    ) -> Result<()> {
        let key = self.inner.namespace.session_key(id_hash);
        let mut conn = self.conn().await?;
        let _: () = redis::pipe()
            .atomic()
            .hset_multiple(&key, &[("token", &session.token), ("csrf", &session.csrf)])
            .ignore()
            .pexpire(&key, ttl.as_millis() as i64)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// A session, if it exists and has not expired.
    pub async fn session(&self, id_hash: &str) -> Result<Option<Session>> {
        let key = self.inner.namespace.session_key(id_hash);
        let mut conn = self.conn().await?;
        let (token, csrf): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(&key)
            .arg("token")
            .arg("csrf")
            .query_async(&mut conn)
            .await?;
        Ok(match (token, csrf) {
            (Some(token), Some(csrf)) => Some(Session { token, csrf }),
            _ => None,
        })
    }

    /// Leaves a notice for the session's next page (the outcome of a form), replacing any.
    pub async fn set_session_notice(&self, id_hash: &str, text: &str) -> Result<()> {
        let key = self.inner.namespace.session_key(id_hash);
        let mut conn = self.conn().await?;
        // A session that expired meanwhile gets a hash without token: never a valid session,
        // and gone once it expires too.
        let (ttl,): (i64,) = redis::pipe()
            .atomic()
            .hset(&key, "notice", text)
            .ignore()
            .pttl(&key)
            .query_async(&mut conn)
            .await?;
        if ttl < 0 {
            let _: () = redis::cmd("PEXPIRE")
                .arg(&key)
                .arg(60_000)
                .query_async(&mut conn)
                .await?;
        }
        Ok(())
    }

    /// Takes the session's notice, if any: it is shown once.
    pub async fn take_session_notice(&self, id_hash: &str) -> Result<Option<String>> {
        let key = self.inner.namespace.session_key(id_hash);
        let mut conn = self.conn().await?;
        let (notice,): (Option<String>,) = redis::pipe()
            .atomic()
            .hget(&key, "notice")
            .hdel(&key, "notice")
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(notice)
    }

    /// Ends a session.
    pub async fn delete_session(&self, id_hash: &str) -> Result<()> {
        let key = self.inner.namespace.session_key(id_hash);
        let mut conn = self.conn().await?;
        let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
        Ok(())
    }
}
