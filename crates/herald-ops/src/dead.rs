//! The dead-letter store: listing with filters (endpoint, reason, time range) and a cursor,
//! counting, replay or purge of chosen entries, and replay or purge in bulk by filter.

use herald_core::job_id_key;
use herald_store::{DeadCursor, DeadFilter};

use crate::model::{DeadLetterList, DeadListQuery, DeadSelection, Purged, Replayed};
use crate::{limit, OpError, OpResult, Ops};

/// Most entries one page of the store is asked for when a listing reads many pages.
const PAGE: usize = 500;

/// Which dead letters a replay or purge takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chosen {
    /// Every dead letter.
    All,
    /// These jobs (ids with or without the `msg_` prefix).
    Ids(Vec<String>),
    /// Those every condition of the filter holds for (a filter with at least one).
    Matching(DeadFilter),
}

impl TryFrom<DeadSelection> for Chosen {
    type Error = OpError;

    /// Conditions, or `all`, never both, never neither.
    fn try_from(s: DeadSelection) -> OpResult<Self> {
        let filter = DeadFilter::from_text(
            s.endpoint.as_deref(),
            s.reason.as_deref(),
            s.since.as_deref(),
            s.until.as_deref(),
        )?;
        match (s.all, filter.is_empty()) {
            (true, true) => Ok(Chosen::All),
            (false, false) => Ok(Chosen::Matching(filter)),
            (true, false) => Err(OpError::Invalid(
                "give either \"all\": true or conditions (endpoint, reason, since, until), not both"
                    .into(),
            )),
            (false, true) => Err(OpError::Invalid(
                "give conditions (endpoint, reason, since, until), or \"all\": true for every dead letter"
                    .into(),
            )),
        }
    }
}

/// The filter of a listing's query.
fn filter_of(q: &DeadListQuery) -> OpResult<DeadFilter> {
    Ok(DeadFilter::from_text(
        q.endpoint.as_deref(),
        q.reason.as_deref(),
        q.since.as_deref(),
        q.until.as_deref(),
    )?)
}

fn not_dead(id: &str) -> OpError {
    OpError::NotFound(format!("job {id} is not in the dead-letter store"))
}

impl Ops {
    /// A page of the dead-letter store, newest first.
    pub async fn dead_letters(&self, q: &DeadListQuery) -> OpResult<DeadLetterList> {
        let filter = filter_of(q)?;
        let after = q
            .cursor
            .as_deref()
            .map(str::parse::<DeadCursor>)
            .transpose()?;
        let page = self
            .store
            .dead_page(&filter, after.as_ref(), limit(q.limit))
            .await?;
        Ok(DeadLetterList {
            items: page.items.into_iter().map(Into::into).collect(),
            next_cursor: page.next.map(|c| c.to_string()),
        })
    }

    /// Up to `most` dead letters from the query's cursor on, as many pages as it takes; the
    /// list's `next_cursor` is where the rest starts.
    pub async fn dead_letters_up_to(
        &self,
        q: &DeadListQuery,
        most: usize,
    ) -> OpResult<DeadLetterList> {
        let mut q = q.clone();
        let mut items = Vec::new();
        let mut next_cursor = q.cursor.clone();
        while items.len() < most {
            q.limit = Some(PAGE.min(most - items.len()));
            let page = self.dead_letters(&q).await?;
            items.extend(page.items);
            next_cursor = page.next_cursor;
            match &next_cursor {
                Some(next) => q.cursor = Some(next.clone()),
                None => break,
            }
        }
        Ok(DeadLetterList { items, next_cursor })
    }

    /// How many dead letters a replay or purge of `chosen` would take now.
    pub async fn dead_count(&self, chosen: &Chosen) -> OpResult<u64> {
        Ok(match chosen {
            Chosen::All => {
                self.store
                    .dead_count_matching(&DeadFilter::default())
                    .await?
            }
            Chosen::Ids(ids) => ids.len() as u64,
            Chosen::Matching(filter) => self.store.dead_count_matching(filter).await?,
        })
    }

    /// Puts the chosen dead letters back in their queues, each due now with a fresh attempt
    /// count.
    pub async fn replay_dead(&self, chosen: &Chosen) -> OpResult<Replayed> {
        let replayed = match chosen {
            Chosen::All => self.store.dead_replay_all().await?,
            Chosen::Ids(ids) => self.store.dead_replay(&keys(ids)).await?,
            Chosen::Matching(filter) => self.store.dead_replay_matching(filter).await?,
        };
        Ok(Replayed { replayed })
    }

    /// Deletes the chosen dead letters.
    pub async fn purge_dead(&self, chosen: &Chosen) -> OpResult<Purged> {
        let purged = match chosen {
            Chosen::All => self.store.dead_purge_all().await?,
            Chosen::Ids(ids) => self.store.dead_purge(&keys(ids)).await?,
            Chosen::Matching(filter) => self.store.dead_purge_matching(filter).await?,
        };
        Ok(Purged { purged })
    }

    /// Replays one dead letter, or says it is not there.
    pub async fn replay_dead_one(&self, id: &str) -> OpResult<Replayed> {
        let done = self.replay_dead(&Chosen::Ids(vec![id.to_owned()])).await?;
        match done.replayed {
            0 => Err(not_dead(job_id_key(id))),
            _ => Ok(done),
        }
    }

    /// Purges one dead letter, or says it is not there.
    pub async fn purge_dead_one(&self, id: &str) -> OpResult<Purged> {
        let done = self.purge_dead(&Chosen::Ids(vec![id.to_owned()])).await?;
        match done.purged {
            0 => Err(not_dead(job_id_key(id))),
            _ => Ok(done),
        }
    }
}

/// Job ids as the store keys them (without the `msg_` prefix).
fn keys(ids: &[String]) -> Vec<String> {
    ids.iter().map(|id| job_id_key(id).to_owned()).collect()
}
