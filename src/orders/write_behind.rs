//! The write-behind: drains every sale's order stream into MongoDB.
//!
//! Each instance reads the streams with one consumer group. A batch is written
//! with `insert_many` (unordered, the order id as `_id`) and acknowledged only
//! after MongoDB accepted it, so a crash at any point loses nothing: entries
//! stay pending, are re-read by this consumer or claimed by another one after
//! `claim_idle` (XAUTOCLAIM), and writing them twice is harmless. Acknowledged
//! entries are trimmed. While MongoDB is down, orders wait in Redis and the
//! loop backs off.

use std::time::Duration;

use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};
use mongodb::bson::{DateTime, oid::ObjectId};
use tokio_util::sync::CancellationToken;

use super::{Order, OrderStore, order_id};
use crate::engine::{ORDERS_GROUP, SALES_REGISTRY, SaleKeys};
use crate::error::{ErrorChain, StoreError};
use crate::ids::SaleId;

#[derive(Debug, thiserror::Error)]
pub enum WriteBehindError {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("mongodb: {0}")]
    Store(#[from] StoreError),
}

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Stream entries read (own pending, claimed and new).
    pub read: usize,
    /// Entries taken over from another consumer.
    pub claimed: usize,
    /// Orders MongoDB did not have before.
    pub written: usize,
    /// Entries acknowledged.
    pub acked: usize,
    /// Malformed entries moved to the dead-letter stream.
    pub dead: usize,
}

impl std::ops::AddAssign for FlushReport {
    fn add_assign(&mut self, o: Self) {
        self.read += o.read;
        self.claimed += o.claimed;
        self.written += o.written;
        self.acked += o.acked;
        self.dead += o.dead;
    }
}

/// One stream entry: its id and its fields (None when the entry was deleted).
type RawEntry = (String, Option<Vec<Value>>);

#[derive(Debug, Clone)]
pub struct WriteBehind {
    pool: Pool,
    orders: OrderStore,
    fraud: crate::fraud::FraudStore,
    consumer: String,
    batch: usize,
    claim_idle: Duration,
    interval: Duration,
}

fn cmd(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, false)
}

impl WriteBehind {
    pub fn new(
        pool: Pool,
        orders: OrderStore,
        fraud: crate::fraud::FraudStore,
        consumer: String,
        batch: usize,
        claim_idle: Duration,
        interval: Duration,
    ) -> Self {
        Self {
            pool,
            orders,
            fraud,
            consumer,
            batch: batch.max(1),
            claim_idle,
            interval,
        }
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// One pass over every sale stream: read up to a batch per sale, write it
    /// to MongoDB, acknowledge and trim.
    pub async fn flush_once(&self) -> Result<FlushReport, WriteBehindError> {
        let sales: Vec<String> = self.pool.smembers(SALES_REGISTRY).await?;
        let mut report = FlushReport::default();
        let mut first_err = None;
        for hex in sales {
            let Ok(sale) = SaleId::parse(&hex) else {
                continue;
            };
            match self.flush_sale(sale).await {
                Ok(r) => report += r,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match self.flush_fraud().await {
            Ok(r) => report += r,
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Orders accepted but not yet in MongoDB, and the time of the oldest
    /// (unix ms), over every sale stream.
    pub async fn backlog(&self) -> Result<(i64, Option<i64>), fred::error::Error> {
        let sales: Vec<String> = self.pool.smembers(SALES_REGISTRY).await?;
        let client = self.pool.next();
        let mut total = 0;
        let mut oldest: Option<u64> = None;
        for hex in sales {
            let Ok(sale) = SaleId::parse(&hex) else {
                continue;
            };
            let key = SaleKeys::new(sale).orders;
            let Some((pending, lag, last)) = group_info(client, &key).await? else {
                continue;
            };
            total += pending + lag;
            let first = if pending > 0 {
                let v: Value = client
                    .custom(cmd("XPENDING"), vec![key.as_str(), ORDERS_GROUP])
                    .await?;
                match v {
                    Value::Array(p) if p.len() >= 2 => p[1].as_str().and_then(|s| parse_id(&s)),
                    _ => None,
                }
            } else if lag > 0 {
                let from = format!("({last}");
                let v: Value = client
                    .custom(
                        cmd("XRANGE"),
                        vec![key.as_str(), from.as_str(), "+", "COUNT", "1"],
                    )
                    .await?;
                parse_entries(v).first().and_then(|(id, _)| parse_id(id))
            } else {
                None
            };
            if let Some((ms, _)) = first {
                oldest = Some(oldest.map_or(ms, |o| o.min(ms)));
            }
        }
        Ok((total, oldest.map(|ms| ms as i64)))
    }

    /// Sets the pending and lag gauges.
    pub async fn report_backlog(&self) {
        match self.backlog().await {
            Ok((pending, oldest)) => {
                metrics::gauge!(crate::metrics::WRITE_BEHIND_PENDING).set(pending as f64);
                let lag = oldest.map_or(0.0, |ms| {
                    ((crate::clock::now_ms() - ms).max(0) as f64) / 1000.0
                });
                metrics::gauge!(crate::metrics::WRITE_BEHIND_LAG_SECONDS).set(lag);
            }
            Err(e) => {
                metrics::counter!(crate::metrics::REDIS_ERRORS_TOTAL).increment(1);
                tracing::warn!(error = %e, "could not measure the write-behind backlog");
            }
        }
    }

    /// Flushes until a pass reads nothing, or `deadline` passes.
    pub async fn drain(&self, deadline: Duration) -> Result<FlushReport, WriteBehindError> {
        let until = tokio::time::Instant::now() + deadline;
        let mut total = FlushReport::default();
        loop {
            let r = self.flush_once().await?;
            total += r;
            if r.read == 0 || tokio::time::Instant::now() >= until {
                return Ok(total);
            }
        }
    }

    /// Runs until `stop` is cancelled, then drains what is left.
    pub async fn run_until_stopped(self, stop: CancellationToken, drain_deadline: Duration) {
        let max_backoff = Duration::from_secs(5);
        let mut delay = self.interval;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
            match self.flush_once().await {
                Ok(r) if r.read >= self.batch => delay = Duration::ZERO,
                Ok(_) => delay = self.interval,
                Err(e) => {
                    metrics::counter!(crate::metrics::WRITE_BEHIND_FAILED_TOTAL).increment(1);
                    match &e {
                        WriteBehindError::Redis(_) => {
                            metrics::counter!(crate::metrics::REDIS_ERRORS_TOTAL).increment(1)
                        }
                        WriteBehindError::Store(s) => crate::metrics::store_error(s),
                    }
                    tracing::warn!(error = %ErrorChain(&e), "write-behind flush failed; orders wait in Redis");
                    delay = (delay * 2).clamp(Duration::from_millis(100), max_backoff);
                }
            }
        }
        match self.drain(drain_deadline).await {
            Ok(r) => tracing::info!(written = r.written, acked = r.acked, "write-behind drained"),
            Err(e) => {
                tracing::warn!(error = %ErrorChain(&e), "write-behind could not drain; orders stay in Redis")
            }
        }
    }

    async fn flush_sale(&self, sale: SaleId) -> Result<FlushReport, WriteBehindError> {
        let key = SaleKeys::new(sale).orders;
        let client = self.pool.next();
        let (entries, claimed) = self.collect(client, &key).await?;
        let mut report = FlushReport {
            read: entries.len(),
            claimed,
            ..FlushReport::default()
        };
        if entries.is_empty() {
            return Ok(report);
        }
        let mut orders = Vec::with_capacity(entries.len());
        let mut bad = Vec::new();
        let mut ids = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            match fields.as_deref().and_then(|f| decode_order(f, sale)) {
                Some(o) => orders.push(o),
                None => bad.push(id.clone()),
            }
            ids.push(id);
        }
        metrics::histogram!(crate::metrics::WRITE_BEHIND_BATCH_SIZE).record(orders.len() as f64);
        report.written = self.orders.insert_batch(&orders).await?;
        metrics::counter!(crate::metrics::WRITE_BEHIND_FLUSHED_TOTAL)
            .increment(report.written as u64);
        if !bad.is_empty() {
            let dead_key = format!("{key}:dead");
            for id in &bad {
                tracing::error!(sale = %sale, entry = %id, "malformed order entry moved to the dead-letter stream");
                let _: String = client
                    .xadd(&dead_key, false, None, "*", vec![("entry", id.as_str())])
                    .await?;
            }
            report.dead = bad.len();
        }
        report.acked = self.finish(client, &key, &ids).await?;
        Ok(report)
    }

    /// Drains the fraud log stream into `fraud_events`.
    async fn flush_fraud(&self) -> Result<FlushReport, WriteBehindError> {
        let key = crate::fraud::FRAUD_STREAM;
        let client = self.pool.next();
        let (entries, claimed) = self.collect(client, key).await?;
        let mut report = FlushReport {
            read: entries.len(),
            claimed,
            ..FlushReport::default()
        };
        if entries.is_empty() {
            return Ok(report);
        }
        let mut events = Vec::with_capacity(entries.len());
        let mut ids = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            match fields
                .as_deref()
                .and_then(|f| crate::fraud::decode_event(&id, f))
            {
                Some(ev) => events.push(ev),
                None => {
                    tracing::error!(entry = %id, "malformed fraud event dropped");
                    report.dead += 1;
                }
            }
            ids.push(id);
        }
        report.written = self.fraud.insert_batch(&events).await?;
        report.acked = self.finish(client, key, &ids).await?;
        Ok(report)
    }

    /// Own pending entries, then entries claimed from dead consumers, then
    /// new ones, up to a batch. Returns them and how many were claimed.
    async fn collect(
        &self,
        client: &Client,
        key: &str,
    ) -> Result<(Vec<RawEntry>, usize), WriteBehindError> {
        // 1. Our own pending entries: read before a failure, not yet acknowledged.
        let mut entries = match self.read_group(client, key, "0").await {
            Err(e) if e.details().starts_with("NOGROUP") => {
                let r: Result<(), _> = client.xgroup_create(key, ORDERS_GROUP, "0", true).await;
                if let Err(e) = r
                    && !e.details().starts_with("BUSYGROUP")
                {
                    return Err(e.into());
                }
                Vec::new()
            }
            other => other?,
        };
        // 2. Entries a dead consumer left pending.
        let mut claimed = 0;
        if entries.len() < self.batch {
            let c = self
                .autoclaim(client, key, self.batch - entries.len())
                .await?;
            claimed = c.len();
            entries.extend(c);
        }
        // 3. New entries.
        if entries.len() < self.batch {
            entries.extend(self.read_group(client, key, ">").await?);
        }
        Ok((entries, claimed))
    }

    /// Acknowledges what MongoDB accepted and trims the stream.
    async fn finish(
        &self,
        client: &Client,
        key: &str,
        ids: &[String],
    ) -> Result<usize, WriteBehindError> {
        let acked: i64 = client.xack(key, ORDERS_GROUP, ids.to_vec()).await?;
        self.trim(client, key, ids).await?;
        Ok(usize::try_from(acked).unwrap_or(0))
    }

    async fn read_group(
        &self,
        client: &Client,
        key: &str,
        from: &str,
    ) -> Result<Vec<RawEntry>, fred::error::Error> {
        let v: Value = client
            .xreadgroup(
                ORDERS_GROUP,
                self.consumer.as_str(),
                Some(self.batch as u64),
                None,
                false,
                key,
                from,
            )
            .await?;
        // [[key, [[id, [field, value, ...]], ...]]] or nil
        let mut out = Vec::new();
        if let Value::Array(streams) = v {
            for s in streams {
                if let Value::Array(mut kv) = s
                    && kv.len() == 2
                {
                    out.extend(parse_entries(kv.swap_remove(1)));
                }
            }
        }
        Ok(out)
    }

    async fn autoclaim(
        &self,
        client: &Client,
        key: &str,
        count: usize,
    ) -> Result<Vec<RawEntry>, fred::error::Error> {
        let idle_ms = self.claim_idle.as_millis().to_string();
        let v: Value = client
            .custom(
                cmd("XAUTOCLAIM"),
                vec![
                    key,
                    ORDERS_GROUP,
                    self.consumer.as_str(),
                    idle_ms.as_str(),
                    "0-0",
                    "COUNT",
                    &count.to_string(),
                ],
            )
            .await?;
        // [next-id, [[id, [fields]] ...], [deleted ids]]
        match v {
            Value::Array(mut parts) if parts.len() >= 2 => Ok(parse_entries(parts.swap_remove(1))),
            _ => Ok(Vec::new()),
        }
    }

    /// Trims entries below the oldest one that may still be needed.
    async fn trim(
        &self,
        client: &Client,
        key: &str,
        acked: &[String],
    ) -> Result<(), fred::error::Error> {
        let Some(max_acked) = acked.iter().filter_map(|id| parse_id(id)).max() else {
            return Ok(());
        };
        let v: Value = client
            .custom(cmd("XPENDING"), vec![key, ORDERS_GROUP])
            .await?;
        // [count, min-id, max-id, consumers]
        let min_pending = match &v {
            Value::Array(p) if p.len() >= 2 && p[0].as_i64().unwrap_or(0) > 0 => {
                p[1].as_str().and_then(|s| parse_id(&s))
            }
            _ => None,
        };
        let keep_from = min_pending.map_or(max_acked, |p| p.min(max_acked));
        let minid = format!("{}-{}", keep_from.0, keep_from.1);
        let _: Value = client
            .custom(cmd("XTRIM"), vec![key, "MINID", minid.as_str()])
            .await?;
        Ok(())
    }
}

/// (pending, lag, last-delivered-id) of the write-behind group on `key`.
pub(crate) async fn group_info(
    client: &Client,
    key: &str,
) -> Result<Option<(i64, i64, String)>, fred::error::Error> {
    let v: Value = match client.xinfo_groups(key).await {
        Ok(v) => v,
        Err(e) if e.details().contains("no such key") => return Ok(None),
        Err(e) => return Err(e),
    };
    let Value::Array(groups) = v else {
        return Ok(None);
    };
    for g in groups {
        let pairs: Vec<Value> = match g {
            Value::Array(a) => a,
            Value::Map(m) => m
                .inner()
                .into_iter()
                .flat_map(|(k, v)| [Value::from(k), v])
                .collect(),
            _ => continue,
        };
        let (mut name, mut pending, mut lag, mut last) = (None, 0, 0, String::from("0-0"));
        for kv in pairs.chunks(2) {
            if let [k, v] = kv {
                match k.as_str().as_deref() {
                    Some("name") => name = v.as_string(),
                    Some("pending") => pending = v.as_i64().unwrap_or(0),
                    Some("lag") => lag = v.as_i64().unwrap_or(0),
                    Some("last-delivered-id") => last = v.as_string().unwrap_or(last),
                    _ => {}
                }
            }
        }
        if name.as_deref() == Some(ORDERS_GROUP) {
            return Ok(Some((pending, lag, last)));
        }
    }
    Ok(None)
}

fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

fn parse_entries(v: Value) -> Vec<RawEntry> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let Value::Array(mut pair) = item else {
                return None;
            };
            if pair.len() != 2 {
                return None;
            }
            let fields = match pair.pop()? {
                Value::Array(f) => Some(f),
                _ => None, // deleted entry still pending
            };
            let id = pair.pop()?.as_string()?;
            Some((id, fields))
        })
        .collect()
}

fn decode_order(fields: &[Value], sale: SaleId) -> Option<Order> {
    let mut seq = None;
    let mut user = None;
    let mut qty = None;
    let mut price = None;
    let mut ts = None;
    let mut ip = String::new();
    for kv in fields.chunks(2) {
        let [k, v] = kv else { return None };
        let v = v.as_string()?;
        match k.as_str()?.as_ref() {
            "seq" => seq = v.parse::<i64>().ok(),
            "user" => user = ObjectId::parse_str(&v).ok(),
            "qty" => qty = v.parse::<i64>().ok(),
            "price" => price = v.parse::<i64>().ok(),
            "ts" => ts = v.parse::<i64>().ok(),
            "ip" => ip = v,
            _ => {}
        }
    }
    let seq = seq?;
    Some(Order {
        id: order_id(sale, seq),
        flash_sale_id: sale.oid(),
        user_id: user?,
        quantity: qty.filter(|q| *q > 0)?,
        unit_price_cents: price?,
        purchased_at: DateTime::from_millis(ts?),
        seq,
        ip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::String(x.into())
    }

    #[test]
    fn stream_entries_decode_into_orders() {
        let sale = SaleId::new();
        let user = ObjectId::new();
        let entries = Value::Array(vec![
            Value::Array(vec![
                s("1-0"),
                Value::Array(vec![
                    s("seq"),
                    s("3"),
                    s("user"),
                    s(&user.to_hex()),
                    s("qty"),
                    s("2"),
                    s("price"),
                    s("1599"),
                    s("ts"),
                    s("1700000000000"),
                    s("ip"),
                    s("127.0.0.1"),
                ]),
            ]),
            Value::Array(vec![s("2-0"), Value::Null]),
            Value::Array(vec![s("3-0"), Value::Array(vec![s("seq"), s("x")])]),
        ]);
        let out = parse_entries(entries);
        assert_eq!(out.len(), 3);
        let o = decode_order(out[0].1.as_ref().unwrap(), sale).unwrap();
        assert_eq!(o.id, format!("{}-3", sale.hex()));
        assert_eq!((o.quantity, o.unit_price_cents, o.user_id), (2, 1599, user));
        assert!(out[1].1.is_none());
        assert!(decode_order(out[2].1.as_ref().unwrap(), sale).is_none());
    }

    #[test]
    fn stream_ids_parse() {
        assert_eq!(parse_id("17-3"), Some((17, 3)));
        assert_eq!(parse_id("x"), None);
    }
}
