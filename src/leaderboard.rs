//! The buyers' leaderboard of a sale, served from Redis.
//!
//! The purchase script adds a buyer to `{sale:<id>}:lb` at their first
//! purchase, scored by that order's sequence number, so ranks are exact. A
//! page is one read-only script call (`lua/leaderboard.lua`: ZRANGE + HMGET,
//! O(log n + limit)). Names and emails come from an in-process cache filled
//! with one MongoDB query per page for the users it does not know yet;
//! unknown users are cached too, so a page never queries MongoDB twice.

use std::collections::HashMap;
use std::sync::Mutex;

use fred::prelude::*;
use mongodb::bson::oid::ObjectId;
use serde::Serialize;

use crate::auth::UserStore;
use crate::engine::SaleKeys;
use crate::error::StoreError;
use crate::ids::SaleId;
use crate::redis::Script;

/// `lua/leaderboard.lua`: one page of buyers by first purchase, read-only.
pub static LEADERBOARD: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new("leaderboard", include_str!("../lua/leaderboard.lua")));

/// Most profiles kept; the cache is cleared when it grows past this.
const CACHE_CAP: usize = 200_000;

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeaderboardEntry {
    pub rank: u64,
    pub user_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub total_purchases: i64,
    pub first_purchase_at: String,
}

type Profile = Option<(String, String)>;

#[derive(Debug)]
pub struct Leaderboard {
    pool: fred::prelude::Pool,
    users: UserStore,
    profiles: Mutex<HashMap<ObjectId, Profile>>,
}

impl Leaderboard {
    pub fn new(pool: fred::prelude::Pool, users: UserStore) -> Self {
        Self {
            pool,
            users,
            profiles: Mutex::new(HashMap::new()),
        }
    }

    /// One page, or `None` when Redis holds no such sale.
    pub async fn page(
        &self,
        sale: SaleId,
        offset: u64,
        limit: u64,
    ) -> Result<Option<Vec<LeaderboardEntry>>, StoreError> {
        let keys = SaleKeys::new(sale);
        let reply: Vec<Value> = LEADERBOARD
            .call(
                &self.pool,
                vec![keys.stock, keys.leaderboard, keys.buyers],
                vec![offset.to_string(), limit.to_string()],
            )
            .await?;
        let Some(exists) = reply.first().and_then(Value::as_i64) else {
            return Err(StoreError::Corrupt("empty leaderboard reply".into()));
        };
        if exists == 0 {
            return Ok(None);
        }
        let rows: Vec<(String, i64, i64)> = reply[1..]
            .chunks(3)
            .filter_map(|c| match c {
                [u, n, t] => Some((
                    u.as_string()?,
                    n.as_i64().unwrap_or(0),
                    t.as_i64().unwrap_or(0),
                )),
                _ => None,
            })
            .collect();
        let ids: Vec<ObjectId> = rows
            .iter()
            .filter_map(|(u, _, _)| ObjectId::parse_str(u).ok())
            .collect();
        self.fill_cache(&ids).await?;
        let cache = self
            .profiles
            .lock()
            .map_err(|_| StoreError::Corrupt("profile cache poisoned".into()))?;
        Ok(Some(
            rows.into_iter()
                .enumerate()
                .map(|(i, (user, total, first))| {
                    let profile = ObjectId::parse_str(&user)
                        .ok()
                        .and_then(|id| cache.get(&id).cloned().flatten());
                    LeaderboardEntry {
                        rank: offset + i as u64 + 1,
                        user_id: user,
                        name: profile.as_ref().map(|p| p.0.clone()),
                        email: profile.map(|p| p.1),
                        total_purchases: total,
                        first_purchase_at: crate::clock::rfc3339(
                            mongodb::bson::DateTime::from_millis(first),
                        ),
                    }
                })
                .collect(),
        ))
    }

    async fn fill_cache(&self, ids: &[ObjectId]) -> Result<(), StoreError> {
        let missing: Vec<ObjectId> = {
            let cache = self
                .profiles
                .lock()
                .map_err(|_| StoreError::Corrupt("profile cache poisoned".into()))?;
            ids.iter()
                .filter(|id| !cache.contains_key(id))
                .copied()
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let found: HashMap<ObjectId, (String, String)> = self
            .users
            .profiles(&missing)
            .await?
            .into_iter()
            .map(|(id, name, email)| (id, (name, email)))
            .collect();
        let mut cache = self
            .profiles
            .lock()
            .map_err(|_| StoreError::Corrupt("profile cache poisoned".into()))?;
        if cache.len() + missing.len() > CACHE_CAP {
            cache.clear();
        }
        for id in missing {
            cache.insert(id, found.get(&id).cloned());
        }
        Ok(())
    }
}
