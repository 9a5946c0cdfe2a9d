//! The fraud log: every block and flag is recorded, none sampled away. The
//! first decision of a kind (rule, user, address, sale, action) is appended
//! to a Redis stream at once; repeats are folded into a count that
//! [`FraudLog::flush`] appends every few seconds. The write-behind drains the
//! stream into MongoDB's `fraud_events`, one document per kind and hour
//! whose `count` adds up every repeat (see `store.rs`).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use fred::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ids::{SaleId, UserId};

/// The stream fraud events wait in until the write-behind stores them.
pub const FRAUD_STREAM: &str = "flashsale:fraud";
/// How long a kind stays in the coalescer after its last occurrence; the
/// next one after that is appended at once again.
const IDLE_AFTER: Duration = Duration::from_secs(60);
/// Kinds held at most; past it, a new kind is appended uncoalesced (never
/// dropped).
const MAX_KINDS: usize = 100_000;

/// What a fraud rule did to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// Time of the last occurrence this event stands for.
    pub at_ms: i64,
    /// Occurrences it stands for (1, or the repeats folded since the last
    /// flush).
    #[serde(default = "one")]
    pub count: u64,
    #[serde(default)]
    pub details: serde_json::Value,
}

fn one() -> u64 {
    1
}

/// What makes two decisions the same kind: they are counted together.
pub(crate) type Kind = (String, FraudAction, Option<String>, String, Option<String>);

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
            count: 1,
            details,
        }
    }

    /// Rule, action, user, address and sale.
    pub(crate) fn kind(&self) -> Kind {
        (
            self.rule.clone(),
            self.action,
            self.user_id.clone(),
            self.ip.clone(),
            self.flash_sale_id.clone(),
        )
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

/// Repeats of one kind since its last flush.
#[derive(Debug)]
struct Folded {
    /// The last occurrence (its details and time go out with the count).
    last: FraudEvent,
    /// Occurrences not yet appended.
    count: u64,
    seen: Instant,
}

#[derive(Debug)]
pub struct FraudLog {
    pool: Pool,
    /// Kinds seen recently, with their repeats not yet appended.
    folded: DashMap<Kind, Folded>,
}

impl FraudLog {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            folded: DashMap::new(),
        }
    }

    /// Records a decision: the first of its kind is appended now (in the
    /// background, the request does not wait), a repeat is folded into its
    /// kind's count for the next [`flush`](Self::flush).
    pub fn record(&self, ev: FraudEvent) {
        metrics::counter!(
            crate::metrics::FRAUD_EVENTS_TOTAL,
            "rule" => ev.rule.clone(),
            "action" => ev.action.as_str(),
        )
        .increment(1);
        let kind = ev.kind();
        if let Some(mut f) = self.folded.get_mut(&kind) {
            f.count += 1;
            f.seen = Instant::now();
            f.last = ev;
            return;
        }
        if self.folded.len() < MAX_KINDS {
            self.folded.insert(
                kind,
                Folded {
                    last: ev.clone(),
                    count: 0,
                    seen: Instant::now(),
                },
            );
        }
        tracing::info!(rule = %ev.rule, action = %ev.action, user = ?ev.user_id, ip = %ev.ip, sale = ?ev.flash_sale_id, "fraud rule fired");
        let pool = self.pool.clone();
        tokio::spawn(async move {
            if let Err(e) = append(&pool, vec![ev]).await {
                tracing::warn!(error = %e, "failed to append a fraud event");
            }
        });
    }

    /// Appends every kind's folded repeats as one event with their count;
    /// run every few seconds, and by tests. Returns the events appended.
    pub async fn flush(&self) -> usize {
        let mut out = Vec::new();
        for mut f in self.folded.iter_mut() {
            if f.count > 0 {
                let mut ev = f.last.clone();
                ev.count = f.count;
                f.count = 0;
                out.push(ev);
            }
        }
        let n = out.len();
        if let Err(e) = append(&self.pool, out.clone()).await {
            tracing::warn!(error = %e, events = n, "failed to append folded fraud events; kept for the next flush");
            // Folded back, so no decision goes unrecorded.
            for ev in out {
                self.folded
                    .entry(ev.kind())
                    .or_insert_with(|| Folded {
                        last: ev.clone(),
                        count: 0,
                        seen: Instant::now(),
                    })
                    .count += ev.count;
            }
            return 0;
        }
        n
    }

    /// Forgets kinds idle for a while whose repeats were all appended.
    pub fn sweep(&self) {
        self.folded
            .retain(|_, f| f.count > 0 || f.seen.elapsed() < IDLE_AFTER);
    }
}

/// Appends events to the fraud stream, in one pipeline.
async fn append(pool: &Pool, events: Vec<FraudEvent>) -> Result<(), fred::error::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let pipe = pool.next().pipeline();
    for ev in &events {
        let Ok(json) = serde_json::to_string(ev) else {
            continue;
        };
        let _: () = pipe
            .xadd(FRAUD_STREAM, false, None, "*", vec![("event", json)])
            .await?;
    }
    let _: Vec<Value> = pipe.all().await?;
    Ok(())
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
