//! The admin blocklist: users and IP addresses/networks to refuse, and
//! networks to trust, each with an optional expiry.
//!
//! Entries live in one Redis hash; every instance keeps an in-process copy,
//! used on the hot path without a round trip, and reloads it when any
//! instance publishes on [`BLOCKLIST_CHANGED`] (and every few seconds as a
//! fallback), so a change takes effect everywhere within a second.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use fred::prelude::*;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::StoreError;
use crate::ids::UserId;

const HASH: &str = "flashsale:blocklist";
/// The pub/sub channel announcing a blocklist change.
pub const BLOCKLIST_CHANGED: &str = "flashsale:blocklist:changed";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// An account that may not purchase.
    User,
    /// An address or network whose requests are refused.
    Ip,
    /// An address or network exempt from IP rules and rate limits.
    Allow,
}

impl EntryKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Self::User),
            "ip" => Some(Self::Ip),
            "allow" => Some(Self::Allow),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Ip => "ip",
            Self::Allow => "allow",
        }
    }
}

/// One entry as stored and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlocklistEntry {
    #[serde(rename = "type")]
    pub kind: EntryKind,
    pub value: String,
    #[serde(default)]
    pub reason: String,
    /// Unix ms; absent for entries that never expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    pub created_at_ms: i64,
    pub created_by: String,
}

/// A validated entry to add.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub kind: EntryKind,
    pub value: String,
    pub reason: String,
    pub ttl_secs: Option<u64>,
}

impl NewEntry {
    /// Checks and normalises the value: a 24-hex user id, or an IP/CIDR.
    pub fn parse(
        kind: &str,
        value: &str,
        reason: Option<&str>,
        ttl_secs: Option<u64>,
    ) -> Result<Self, (&'static str, String)> {
        let kind =
            EntryKind::parse(kind).ok_or(("type", "must be user, ip or allow".to_owned()))?;
        let value = match kind {
            EntryKind::User => UserId::parse(value.trim())
                .map_err(|_| ("value", "must be a 24-hex-digit user id".to_owned()))?
                .hex(),
            EntryKind::Ip | EntryKind::Allow => parse_net(value)
                .ok_or(("value", "must be an IP address or CIDR network".to_owned()))?
                .to_string(),
        };
        let reason = reason.unwrap_or("").trim();
        if reason.chars().count() > 500 {
            return Err(("reason", "must be at most 500 characters".to_owned()));
        }
        if let Some(t) = ttl_secs
            && (t == 0 || t > 10 * 365 * 24 * 3_600)
        {
            return Err(("ttlSeconds", "must be from 1 to 315360000".to_owned()));
        }
        Ok(Self {
            kind,
            value,
            reason: reason.to_owned(),
            ttl_secs,
        })
    }
}

fn parse_net(v: &str) -> Option<IpNet> {
    crate::config::parse_net(v).map(|n| n.trunc())
}

fn field(kind: EntryKind, value: &str) -> String {
    format!("{}:{value}", kind.as_str())
}

#[derive(Debug, Default, PartialEq)]
struct Entries {
    users: HashMap<UserId, Option<i64>>,
    blocked: Vec<(IpNet, Option<i64>)>,
    allowed: Vec<(IpNet, Option<i64>)>,
}

fn live(expiry: Option<i64>, now: i64) -> bool {
    expiry.is_none_or(|e| e > now)
}

#[derive(Debug)]
pub struct Blocklist {
    pool: Pool,
    current: RwLock<Arc<Entries>>,
    /// Bumped whenever a reload changes the entries, so open WebSockets re-check.
    changes: watch::Sender<u64>,
}

impl Blocklist {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            current: RwLock::new(Arc::new(Entries::default())),
            changes: watch::channel(0).0,
        }
    }

    /// Fires after a reload changed the entries.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn snapshot(&self) -> Arc<Entries> {
        self.current.read().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn is_user_blocked(&self, user: UserId) -> bool {
        let e = self.snapshot();
        e.users
            .get(&user)
            .is_some_and(|exp| live(*exp, crate::clock::now_ms()))
    }

    pub fn is_ip_blocked(&self, ip: IpAddr) -> bool {
        let e = self.snapshot();
        if e.blocked.is_empty() {
            return false;
        }
        let now = crate::clock::now_ms();
        e.blocked
            .iter()
            .any(|(n, exp)| live(*exp, now) && n.contains(&ip))
    }

    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        let e = self.snapshot();
        if e.allowed.is_empty() {
            return false;
        }
        let now = crate::clock::now_ms();
        e.allowed
            .iter()
            .any(|(n, exp)| live(*exp, now) && n.contains(&ip))
    }

    /// Reads every entry from Redis and swaps the in-process copy; expired
    /// entries are removed from Redis on the way.
    pub async fn reload(&self) -> Result<usize, StoreError> {
        let all: HashMap<String, String> = self.pool.next().hgetall(HASH).await?;
        let now = crate::clock::now_ms();
        let mut entries = Entries::default();
        let mut expired = Vec::new();
        for (k, v) in &all {
            let Ok(e) = serde_json::from_str::<BlocklistEntry>(v) else {
                continue;
            };
            if !live(e.expires_at_ms, now) {
                expired.push(k.clone());
                continue;
            }
            match e.kind {
                EntryKind::User => {
                    if let Ok(u) = UserId::parse(&e.value) {
                        entries.users.insert(u, e.expires_at_ms);
                    }
                }
                EntryKind::Ip => {
                    if let Some(n) = parse_net(&e.value) {
                        entries.blocked.push((n, e.expires_at_ms));
                    }
                }
                EntryKind::Allow => {
                    if let Some(n) = parse_net(&e.value) {
                        entries.allowed.push((n, e.expires_at_ms));
                    }
                }
            }
        }
        if !expired.is_empty() {
            let _: i64 = self.pool.next().hdel(HASH, expired).await?;
        }
        let n = entries.users.len() + entries.blocked.len() + entries.allowed.len();
        let changed = match self.current.write() {
            Ok(mut c) if **c != entries => {
                *c = Arc::new(entries);
                true
            }
            _ => false,
        };
        if changed {
            self.changes.send_modify(|g| *g += 1);
        }
        Ok(n)
    }

    /// Every live entry.
    pub async fn list(&self) -> Result<Vec<BlocklistEntry>, StoreError> {
        let all: HashMap<String, String> = self.pool.next().hgetall(HASH).await?;
        let now = crate::clock::now_ms();
        let mut out: Vec<BlocklistEntry> = all
            .values()
            .filter_map(|v| serde_json::from_str::<BlocklistEntry>(v).ok())
            .filter(|e| live(e.expires_at_ms, now))
            .collect();
        out.sort_by(|a, b| (a.created_at_ms, &a.value).cmp(&(b.created_at_ms, &b.value)));
        Ok(out)
    }

    /// Adds (or replaces) an entry, applies it here at once and tells every instance.
    pub async fn add(&self, new: NewEntry, by: &str) -> Result<BlocklistEntry, StoreError> {
        let now = crate::clock::now_ms();
        let entry = BlocklistEntry {
            kind: new.kind,
            value: new.value,
            reason: new.reason,
            expires_at_ms: new.ttl_secs.map(|t| now + (t as i64) * 1000),
            created_at_ms: now,
            created_by: by.to_owned(),
        };
        let json = serde_json::to_string(&entry).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let _: i64 = self
            .pool
            .next()
            .hset(HASH, (field(entry.kind, &entry.value), json))
            .await?;
        self.changed().await?;
        Ok(entry)
    }

    /// Removes an entry; false when there was none.
    pub async fn remove(&self, kind: EntryKind, value: &str) -> Result<bool, StoreError> {
        let key = field(kind, value);
        let stored: Option<String> = self.pool.next().hget(HASH, &key).await?;
        let was_live = stored
            .and_then(|s| serde_json::from_str::<BlocklistEntry>(&s).ok())
            .is_some_and(|e| live(e.expires_at_ms, crate::clock::now_ms()));
        let _: i64 = self.pool.next().hdel(HASH, key).await?;
        self.changed().await?;
        Ok(was_live)
    }

    async fn changed(&self) -> Result<(), StoreError> {
        self.reload().await?;
        let _: i64 = self
            .pool
            .next()
            .publish(BLOCKLIST_CHANGED, "changed")
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_validated_and_normalised() {
        let e = NewEntry::parse("ip", " 10.1.2.3/8 ", None, None).unwrap();
        assert_eq!(e.value, "10.0.0.0/8");
        assert_eq!(
            NewEntry::parse("ip", "1.2.3.4", None, Some(60))
                .unwrap()
                .value,
            "1.2.3.4/32"
        );
        assert!(NewEntry::parse("ip", "nope", None, None).is_err());
        assert!(NewEntry::parse("user", "nope", None, None).is_err());
        assert!(NewEntry::parse("robot", "1.2.3.4", None, None).is_err());
        assert!(NewEntry::parse("ip", "1.2.3.4", None, Some(0)).is_err());
        let u = UserId::new();
        assert_eq!(
            NewEntry::parse("user", &u.hex().to_uppercase(), Some("x"), None)
                .unwrap()
                .value,
            u.hex()
        );
    }
}
