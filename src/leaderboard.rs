//! The buyers' leaderboard of a sale, served from Redis.
//!
//! The purchase script adds a buyer to `{sale:<id>}:lb` at their first
//! purchase, scored by that order's sequence number, so ranks are exact and a
//! page is one ZRANGE (O(log n + limit)) plus one HMGET for totals and first
//! purchase times. Names and emails come from an in-process cache filled with
//! one MongoDB query per page for the users it does not hold yet.

use std::collections::HashMap;
use std::sync::Mutex;

use fred::prelude::*;
use mongodb::bson::oid::ObjectId;
use serde::Serialize;

use crate::auth::UserStore;
use crate::engine::SaleKeys;
use crate::error::StoreError;
use crate::ids::SaleId;

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

#[derive(Debug)]
pub struct Leaderboard {
    pool: Pool,
    users: UserStore,
    profiles: Mutex<HashMap<ObjectId, (String, String)>>,
}

impl Leaderboard {
    pub fn new(pool: Pool, users: UserStore) -> Self {
        Self {
            pool,
            users,
            profiles: Mutex::new(HashMap::new()),
        }
    }

    pub async fn page(
        &self,
        sale: SaleId,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<LeaderboardEntry>, StoreError> {
        let keys = SaleKeys::new(sale);
        let client = self.pool.next();
        let stop = (offset + limit).saturating_sub(1) as i64;
        let members: Vec<String> = client
            .zrange(
                &keys.leaderboard,
                offset as i64,
                stop,
                None,
                false,
                None,
                false,
            )
            .await?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let mut fields = Vec::with_capacity(members.len() * 2);
        for m in &members {
            fields.push(m.clone());
            fields.push(format!("t:{m}"));
        }
        let values: Vec<Option<i64>> = client.hmget(&keys.buyers, fields).await?;
        self.fill_cache(&members).await?;
        let cache = self
            .profiles
            .lock()
            .map_err(|_| StoreError::Corrupt("profile cache poisoned".into()))?;
        Ok(members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let profile = ObjectId::parse_str(m).ok().and_then(|id| cache.get(&id));
                let first = values.get(i * 2 + 1).copied().flatten().unwrap_or(0);
                LeaderboardEntry {
                    rank: offset + i as u64 + 1,
                    user_id: m.clone(),
                    name: profile.map(|p| p.0.clone()),
                    email: profile.map(|p| p.1.clone()),
                    total_purchases: values.get(i * 2).copied().flatten().unwrap_or(0),
                    first_purchase_at: crate::sales::model_rfc3339(
                        mongodb::bson::DateTime::from_millis(first),
                    ),
                }
            })
            .collect())
    }

    async fn fill_cache(&self, members: &[String]) -> Result<(), StoreError> {
        let missing: Vec<ObjectId> = {
            let cache = self
                .profiles
                .lock()
                .map_err(|_| StoreError::Corrupt("profile cache poisoned".into()))?;
            members
                .iter()
                .filter_map(|m| ObjectId::parse_str(m).ok())
                .filter(|id| !cache.contains_key(id))
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let found = self.users.profiles(&missing).await?;
        let mut cache = self
            .profiles
            .lock()
            .map_err(|_| StoreError::Corrupt("profile cache poisoned".into()))?;
        if cache.len() + found.len() > CACHE_CAP {
            cache.clear();
        }
        for (id, name, email) in found {
            cache.insert(id, (name, email));
        }
        Ok(())
    }
}
