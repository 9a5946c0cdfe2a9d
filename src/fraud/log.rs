//! The fraud log: every block and flag becomes an event appended to a Redis
//! stream, which the write-behind drains into MongoDB's `fraud_events` (the
//! same path as orders). Floods of one kind are sampled: at most one event
//! per rule and key every few seconds.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use fred::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{SaleId, UserId};

/// The stream fraud events wait in until the write-behind stores them.
pub const FRAUD_STREAM: &str = "flashsale:fraud";
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const MAX_SAMPLE_KEYS: usize = 100_000;

/// What a fraud rule did to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FraudAction {
    /// The request was refused.
    Blocked,
    /// The request went on; the event is kept for review.
    Flagged,
}

impl FraudAction {
    /// The serialized name, also the `action` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Blocked => "blocked",
            Self::Flagged => "flagged",
        }
    }
}

impl std::fmt::Display for FraudAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FraudEvent {
    pub rule: String,
    pub action: FraudAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub ip: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flash_sale_id: Option<String>,
    pub at_ms: i64,
    #[serde(default)]
    pub details: serde_json::Value,
}

impl FraudEvent {
    /// An event that happened now.
    fn new(
        action: FraudAction,
        rule: &str,
        user: Option<UserId>,
        ip: IpAddr,
        sale: Option<SaleId>,
        details: serde_json::Value,
    ) -> Self {
        Self {
            rule: rule.to_owned(),
            action,
            user_id: user.map(UserId::hex),
            ip: ip.to_string(),
            flash_sale_id: sale.map(SaleId::hex),
            at_ms: crate::clock::now_ms(),
            details,
        }
    }

    /// A refused request, without details (IP rules, limits, the blocklist).
    pub fn blocked(rule: &str, user: Option<UserId>, ip: IpAddr, sale: Option<SaleId>) -> Self {
        Self::new(
            FraudAction::Blocked,
            rule,
            user,
            ip,
            sale,
            serde_json::Value::Null,
        )
    }

    /// A purchase a velocity rule let through but recorded.
    pub fn flagged(
        rule: &str,
        user: UserId,
        ip: IpAddr,
        sale: SaleId,
        details: serde_json::Value,
    ) -> Self {
        Self::new(
            FraudAction::Flagged,
            rule,
            Some(user),
            ip,
            Some(sale),
            details,
        )
    }

    /// The same event with what the rule measured.
    pub fn with_details(self, details: serde_json::Value) -> Self {
        Self { details, ..self }
    }
}

#[derive(Debug)]
pub struct FraudLog {
    pool: Pool,
    sampled: DashMap<String, Instant>,
}

impl FraudLog {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            sampled: DashMap::new(),
        }
    }

    /// Appends an event in the background (the request does not wait).
    pub fn record(&self, ev: FraudEvent) {
        self.count(&ev);
        self.append(ev);
    }

    fn count(&self, ev: &FraudEvent) {
        metrics::counter!(
            crate::metrics::FRAUD_EVENTS_TOTAL,
            "rule" => ev.rule.clone(),
            "action" => ev.action.as_str(),
        )
        .increment(1);
    }

    fn append(&self, ev: FraudEvent) {
        tracing::info!(rule = %ev.rule, action = %ev.action, user = ?ev.user_id, ip = %ev.ip, sale = ?ev.flash_sale_id, "fraud rule fired");
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let Ok(json) = serde_json::to_string(&ev) else {
                return;
            };
            let r: Result<String, _> = pool
                .next()
                .xadd(FRAUD_STREAM, false, None, "*", vec![("event", json)])
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "failed to append a fraud event");
            }
        });
    }

    /// Like [`record`](Self::record), but at most once per rule, user and IP
    /// every few seconds, so a flood cannot flood the log.
    pub fn record_sampled(&self, ev: FraudEvent) {
        // Every firing is counted; only the log entries are sampled.
        self.count(&ev);
        let key = format!(
            "{}|{}|{}",
            ev.rule,
            ev.user_id.as_deref().unwrap_or("-"),
            ev.ip
        );
        let now = Instant::now();
        if self.sampled.len() >= MAX_SAMPLE_KEYS && !self.sampled.contains_key(&key) {
            return;
        }
        let mut fresh = false;
        self.sampled
            .entry(key)
            .and_modify(|t| {
                if now.duration_since(*t) >= SAMPLE_EVERY {
                    *t = now;
                    fresh = true;
                }
            })
            .or_insert_with(|| {
                fresh = true;
                now
            });
        if fresh {
            self.append(ev);
        }
    }

    pub fn sweep(&self) {
        let now = Instant::now();
        self.sampled
            .retain(|_, t| now.duration_since(*t) < SAMPLE_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_serialize_to_the_strings_the_api_and_mongodb_hold() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let details = serde_json::json!({ "distinctIps": 3 });
        let flagged = FraudEvent::flagged("many-ips", UserId::new(), ip, SaleId::new(), details);
        let blocked = FraudEvent::blocked("ip-deny", None, ip, None);

        let json = serde_json::to_value(&flagged).unwrap();
        assert_eq!(json["action"], "flagged");
        assert_eq!(json["details"]["distinctIps"], 3);
        assert_eq!(serde_json::to_value(&blocked).unwrap()["action"], "blocked");
        assert_eq!(
            mongodb::bson::to_bson(&FraudAction::Flagged).unwrap(),
            mongodb::bson::Bson::String("flagged".into())
        );
        let back: FraudEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, flagged);
    }
}
