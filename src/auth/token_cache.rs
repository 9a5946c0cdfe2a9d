//! Access tokens already verified, remembered so a buyer's repeated requests
//! skip the base64, JSON and HMAC work of verifying the same token again.
//!
//! An entry is keyed by a 128-bit keyed hash of the whole token (SipHash-1-3
//! with this process's random key, over two domain-separated inputs), so it
//! takes the same few dozen bytes whatever the token's length, and a token
//! cannot be made to hit another token's entry without that key. Only tokens
//! that passed full verification are stored, and expiry is checked again on
//! every hit with the verifier's leeway.

use std::hash::{BuildHasher, RandomState};
use std::time::{SystemTime, UNIX_EPOCH};

use super::CurrentUser;

/// Tokens remembered at most; a few MB when full.
pub(crate) const TOKEN_CACHE_ENTRIES: usize = 100_000;

pub struct TokenCache {
    map: quick_cache::sync::Cache<u128, (CurrentUser, u64)>,
    hasher: RandomState,
    leeway_secs: u64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.map.len())
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl TokenCache {
    pub fn new(capacity: usize, leeway_secs: u64) -> Self {
        Self {
            map: quick_cache::sync::Cache::new(capacity.max(1)),
            hasher: RandomState::new(),
            leeway_secs,
        }
    }

    fn key(&self, token: &str) -> u128 {
        let hi = self.hasher.hash_one((0u8, token));
        let lo = self.hasher.hash_one((1u8, token));
        (u128::from(hi) << 64) | u128::from(lo)
    }

    /// The caller a verified, unexpired token stands for, if remembered.
    pub fn get(&self, token: &str) -> Option<CurrentUser> {
        self.get_at(token, now_secs())
    }

    fn get_at(&self, token: &str, now: u64) -> Option<CurrentUser> {
        let key = self.key(token);
        let (user, exp) = self.map.get(&key)?;
        // The verifier accepts a token until `exp + leeway`; so does the cache.
        if exp.saturating_add(self.leeway_secs) < now {
            self.map.remove(&key);
            return None;
        }
        Some(user)
    }

    /// Remembers a token that passed full verification; `exp` is its claim.
    pub fn insert(&self, token: &str, user: &CurrentUser, exp: u64) {
        self.map.insert(self.key(token), (user.clone(), exp));
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use crate::ids::UserId;

    fn user() -> CurrentUser {
        CurrentUser {
            id: UserId::new(),
            role: Role::Customer,
            created_at: Some(1),
            epoch: 0,
            expires_at: u64::MAX,
        }
    }

    #[test]
    fn remembers_only_the_exact_token() {
        let c = TokenCache::new(16, 5);
        let u = user();
        c.insert("a.b.c", &u, 1_000);
        assert_eq!(c.get_at("a.b.c", 900).map(|x| x.id), Some(u.id));
        assert!(c.get_at("a.b.d", 900).is_none());
        assert!(c.get_at("a.b.c ", 900).is_none());
    }

    #[test]
    fn expiry_is_checked_on_every_hit_with_the_leeway() {
        let c = TokenCache::new(16, 5);
        c.insert("t", &user(), 1_000);
        assert!(c.get_at("t", 1_005).is_some(), "inside the leeway");
        assert!(c.get_at("t", 1_006).is_none(), "past exp + leeway");
        assert!(c.is_empty(), "an expired entry is dropped");
    }

    #[test]
    fn stays_within_its_capacity() {
        let c = TokenCache::new(100, 5);
        for i in 0..1_000 {
            c.insert(&format!("token-{i}"), &user(), u64::MAX);
        }
        assert!(c.len() <= 100, "{} entries", c.len());
    }
}
