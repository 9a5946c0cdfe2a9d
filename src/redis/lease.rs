//! Exclusive holds in Redis: a short lock (one writer of a product's sales at
//! a time) and a renewable lease with a fencing epoch (one scheduler leader
//! among all instances). Both expire by themselves when their holder dies.

use std::sync::LazyLock;
use std::time::Duration;

use fred::prelude::*;

use super::script::Script;

pub static UNLOCK: LazyLock<Script> =
    LazyLock::new(|| Script::new("unlock", include_str!("../../lua/unlock.lua")));
pub static LEASE_ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new("lease_acquire", include_str!("../../lua/lease_acquire.lua")));
pub static LEASE_RENEW: LazyLock<Script> =
    LazyLock::new(|| Script::new("lease_renew", include_str!("../../lua/lease_renew.lua")));

/// Takes a short lock, waiting up to `wait` for it. Returns the token that
/// [`unlock`] needs, or `None` when someone else held it all along.
pub async fn lock(
    pool: &Pool,
    key: &str,
    ttl: Duration,
    wait: Duration,
) -> Result<Option<String>, Error> {
    let token = mongodb::bson::oid::ObjectId::new().to_hex();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let set: Option<String> = pool
            .set(
                key,
                token.as_str(),
                Some(Expiration::PX(ttl.as_millis() as i64)),
                Some(SetOptions::NX),
                false,
            )
            .await?;
        if set.is_some() {
            return Ok(Some(token));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        // Retry pacing while another writer holds the lock (10 ms steps).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Releases a lock (or a lease) only while it still holds `token`.
pub async fn unlock(pool: &Pool, key: &str, token: &str) -> Result<(), Error> {
    let _: i64 = UNLOCK
        .call(pool, vec![key.to_owned()], vec![token.to_owned()])
        .await?;
    Ok(())
}

/// A renewable lease: at most one holder at a time, and every new holder
/// gets a higher epoch, so writes fenced by the epoch cannot come from a
/// holder that lost the lease.
#[derive(Debug)]
pub struct Lease {
    pool: Pool,
    key: String,
    epoch_key: String,
    holder: String,
    ttl: Duration,
    /// The token and epoch while this process holds the lease.
    held: Option<(String, i64)>,
}

impl Lease {
    /// `name` is the lease key (`REDIS_LOCK_KEY`); it and its epoch counter
    /// share one hash tag, so they live in one Cluster slot.
    pub fn new(pool: Pool, name: &str, holder: String, ttl: Duration) -> Self {
        let key = if name.contains('{') {
            name.to_owned()
        } else {
            format!("{{{name}}}")
        };
        Self {
            pool,
            epoch_key: format!("{key}:epoch"),
            key,
            holder,
            ttl,
            held: None,
        }
    }

    /// Renews the lease when held, takes it when free. Returns the epoch
    /// while this process holds it.
    pub async fn keep(&mut self) -> Result<Option<i64>, Error> {
        let ttl = self.ttl.as_millis().to_string();
        if let Some((token, _)) = &self.held {
            let renewed: i64 = LEASE_RENEW
                .call(
                    &self.pool,
                    vec![self.key.clone()],
                    vec![token.clone(), ttl.clone()],
                )
                .await?;
            if renewed != 1 {
                tracing::warn!(holder = %self.holder, "lease lost");
                self.held = None;
            }
        }
        if self.held.is_none() {
            let epoch: i64 = LEASE_ACQUIRE
                .call(
                    &self.pool,
                    vec![self.key.clone(), self.epoch_key.clone()],
                    vec![self.holder.clone(), ttl],
                )
                .await?;
            if epoch > 0 {
                tracing::info!(holder = %self.holder, epoch, "lease taken");
                self.held = Some((format!("{}:{epoch}", self.holder), epoch));
            }
        }
        Ok(self.held.as_ref().map(|(_, epoch)| *epoch))
    }

    /// Gives the lease up so another process can take it at once.
    pub async fn release(&mut self) -> Result<(), Error> {
        match self.held.take() {
            Some((token, _)) => unlock(&self.pool, &self.key, &token).await,
            None => Ok(()),
        }
    }
}
