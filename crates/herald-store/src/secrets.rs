//! Signing-secret rotation: a fresh secret signs from now on, the active ones keep signing
//! beside it for a grace period, so receivers can switch over without missing a delivery.

use std::time::Duration;

use herald_core::{EndpointId, Secret};

use crate::endpoints::EndpointSecret;
use crate::error::Result;
use crate::{Store, StoreError};

/// The longest grace period a rotation may give the previous secrets: long enough for any
/// receiver's roll-out, short enough that a leaked secret does not sign for years.
pub const MAX_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

impl Store {
    /// Puts a generated secret first and lets the active ones expire after `grace`; secrets
    /// already expired are dropped. Returns the new secret (`whsec_…`), to be shown once. Made
    /// against the stored configuration ([`Store::update_endpoint`]): a concurrent change is
    /// kept, and an endpoint deleted meanwhile is refused, not brought back. A grace beyond
    /// [`MAX_GRACE`] is refused.
    pub async fn rotate_secret(&self, id: &EndpointId, grace: Duration) -> Result<String> {
        if grace > MAX_GRACE {
            return Err(StoreError::InvalidArgument(format!(
                "the grace period of a rotation is at most {}, not {}",
                humantime::format_duration(MAX_GRACE),
                humantime::format_duration(grace)
            )));
        }
        let secret = Secret::generate().expose();
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        self.update_endpoint(id, |record, now| {
            let expires = now.saturating_add(grace_ms);
            record
                .secrets
                .retain(|s| s.expires_at_ms.is_none_or(|t| t > now));
            for s in &mut record.secrets {
                s.expires_at_ms = Some(s.expires_at_ms.map_or(expires, |t| t.min(expires)));
            }
            record.secrets.insert(
                0,
                EndpointSecret {
                    secret: secret.clone(),
                    expires_at_ms: None,
                },
            );
            record.updated_at_ms = now;
        })
        .await?;
        Ok(secret)
    }
}
