//! Token epochs: revoking every token of one user at once. Each account has
//! an epoch (MongoDB's `tokenEpoch`, raised together with the role), each
//! token carries the epoch it was issued at (claim `epoch`), and a token
//! below its user's current epoch is refused (`TOKEN_REVOKED`).
//!
//! Raised epochs live in one Redis sorted set ([`EPOCHS_KEY`], member the
//! user id, score the epoch; `ZADD GT`, so it never goes down). Every
//! instance holds all of them in memory (only users ever revoked have one),
//! so a request is checked without a round trip; a raise is announced on
//! [`EPOCH_CHANGED`] and re-read every few seconds in case a message was lost.

use std::collections::HashMap;
use std::sync::RwLock;

use fred::prelude::*;
use fred::types::sorted_sets::Ordering as ZOrdering;
use tokio::sync::watch;

use super::CurrentUser;
use crate::error::StoreError;
use crate::ids::UserId;

/// The sorted set of raised epochs (member: user id hex; score: epoch).
pub const EPOCHS_KEY: &str = "{auth}:epochs";
/// The pub/sub channel announcing a raised epoch: `<user id hex>:<epoch>`.
pub const EPOCH_CHANGED: &str = "flashsale:auth:epoch";

/// Every raised epoch, in memory.
#[derive(Debug)]
pub struct TokenEpochs {
    pool: Pool,
    /// Users with an epoch above 0; entries only ever rise.
    current: RwLock<HashMap<UserId, u64>>,
    /// Bumped whenever an epoch rises here, so open WebSockets re-check.
    changes: watch::Sender<u64>,
}

impl TokenEpochs {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            current: RwLock::new(HashMap::new()),
            changes: watch::channel(0).0,
        }
    }

    /// The user's current epoch (0 when it was never raised).
    pub fn current(&self, user: UserId) -> u64 {
        self.current
            .read()
            .map(|m| m.get(&user).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// True when `user`'s token was issued before its epoch was raised.
    pub fn is_revoked(&self, user: &CurrentUser) -> bool {
        user.epoch < self.current(user.id)
    }

    /// Fires after any epoch rose on this instance.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Records `epoch` for `user` unless a higher one is known; true when it rose.
    fn apply(&self, user: UserId, epoch: u64) -> bool {
        let raised = match self.current.write() {
            Ok(mut m) => {
                let e = m.entry(user).or_insert(0);
                if epoch > *e {
                    *e = epoch;
                    true
                } else {
                    false
                }
            }
            Err(_) => false,
        };
        if raised {
            self.changes.send_modify(|g| *g += 1);
        }
        raised
    }

    /// Applies an [`EPOCH_CHANGED`] message; malformed ones are ignored.
    pub fn on_message(&self, payload: &str) -> bool {
        let Some((user, epoch)) = payload.split_once(':') else {
            return false;
        };
        match (UserId::parse(user), epoch.parse::<u64>()) {
            (Ok(u), Ok(e)) => self.apply(u, e),
            _ => false,
        }
    }

    /// Reads every raised epoch from Redis (the fallback for lost messages).
    pub async fn reload(&self) -> Result<usize, StoreError> {
        let all: Vec<(String, f64)> = self
            .pool
            .next()
            .zrange(EPOCHS_KEY, 0, -1, None, false, None, true)
            .await?;
        for (user, epoch) in &all {
            if let Ok(u) = UserId::parse(user) {
                self.apply(u, *epoch as u64);
            }
        }
        Ok(all.len())
    }

    /// Makes `epoch` the user's current epoch (never lowering it) in Redis,
    /// here at once, and on every instance through pub/sub.
    pub async fn raise(&self, user: UserId, epoch: u64) -> Result<(), StoreError> {
        let _: i64 = self
            .pool
            .next()
            .zadd(
                EPOCHS_KEY,
                None,
                Some(ZOrdering::GreaterThan),
                false,
                false,
                (epoch as f64, user.hex()),
            )
            .await?;
        self.apply(user, epoch);
        let _: i64 = self
            .pool
            .next()
            .publish(EPOCH_CHANGED, format!("{}:{epoch}", user.hex()))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn user(id: UserId, epoch: u64) -> CurrentUser {
        CurrentUser {
            id,
            role: Role::Admin,
            created_at: None,
            epoch,
            expires_at: u64::MAX,
        }
    }

    fn epochs() -> TokenEpochs {
        let pool = Builder::default_centralized().build_pool(1).unwrap();
        TokenEpochs::new(pool)
    }

    #[test]
    fn a_token_below_its_users_epoch_is_revoked_and_epochs_never_fall() {
        let e = epochs();
        let id = UserId::new();
        let changes = e.changes();
        assert!(!e.is_revoked(&user(id, 0)), "no epoch: nothing revoked");
        assert!(e.on_message(&format!("{}:2", id.hex())));
        assert!(changes.has_changed().unwrap());
        assert!(e.is_revoked(&user(id, 1)));
        assert!(!e.is_revoked(&user(id, 2)));
        assert!(!e.on_message(&format!("{}:1", id.hex())), "never lowered");
        assert_eq!(e.current(id), 2);
        assert!(!e.is_revoked(&user(UserId::new(), 0)), "others unaffected");
        assert!(!e.on_message("garbage"));
        assert!(!e.on_message("nope:1"));
    }
}
