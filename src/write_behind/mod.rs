//! The write-behind: drains Redis streams into MongoDB, one [`Sink`] per kind
//! of stream (app.rs wires in the orders and the fraud events). It knows
//! streams, not what is in them.
//!
//! Each instance reads the streams with one consumer group. A batch is
//! written by its sink idempotently (the entry decides the `_id`) and
//! acknowledged only after MongoDB accepted it, so a crash at any point loses
//! nothing: entries stay pending, are re-read by this consumer or claimed by
//! another one after `claim_idle` (XAUTOCLAIM), and writing them twice is
//! harmless. Acknowledged entries are trimmed. While MongoDB is down, entries
//! wait in Redis and the loop backs off.
//!
//! An entry MongoDB refuses (anything but a duplicate key: a validator, a
//! document too large) stays pending while the rest of its batch is written
//! and acknowledged; once it has been delivered `max_deliveries` times it is
//! moved, with its fields, to `<stream>:dead` and acknowledged, so one bad
//! entry cannot stop the stream from flowing or being trimmed. Malformed
//! entries go the same way at once (or are dropped, as their sink says). A
//! finished stream (a sale that ended) that is fully drained, with nothing
//! dead-lettered, is retired from its sink's list and no longer scanned.

mod sink;
pub mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

pub use sink::{Malformed, Rejected, Sink, Written};
use stream::{Entry, EntryId, GroupInfo};

// The one consumer group of every drained stream.
use crate::engine::ORDERS_GROUP as GROUP;
use crate::error::{ErrorChain, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum WriteBehindError {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("mongodb: {0}")]
    Store(#[from] StoreError),
    /// Too few replicas hold the entries read (`REDIS_ACK_REPLICAS`): they
    /// stay pending and are written on a later pass.
    #[error("redis replication: {acked} of {wanted} replicas hold the entries")]
    Unreplicated { acked: i64, wanted: u32 },
}

/// What one step did, over every stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Stream entries read (own pending, claimed and new).
    pub read: usize,
    /// Entries taken over from another consumer.
    pub claimed: usize,
    /// Items MongoDB did not have before.
    pub written: usize,
    /// Entries acknowledged.
    pub acked: usize,
    /// Entries moved to the dead-letter stream: malformed ones
    /// ([`Malformed::DeadLetter`] sinks) and ones MongoDB refused on their
    /// last allowed delivery.
    pub dead_lettered: usize,
    /// Malformed entries logged and dropped ([`Malformed::Drop`] sinks).
    pub dropped: usize,
    /// Entries MongoDB refused on this pass (left pending for another try,
    /// or dead-lettered when out of tries).
    pub rejected: usize,
    /// Finished, fully drained streams no longer scanned from now on.
    pub retired: usize,
}

impl std::ops::AddAssign for FlushReport {
    fn add_assign(&mut self, o: Self) {
        self.read += o.read;
        self.claimed += o.claimed;
        self.written += o.written;
        self.acked += o.acked;
        self.dead_lettered += o.dead_lettered;
        self.dropped += o.dropped;
        self.rejected += o.rejected;
        self.retired += o.retired;
    }
}

/// The drainer. Cheap to clone: the sinks are shared.
#[derive(Debug, Clone)]
pub struct WriteBehind {
    pool: Pool,
    /// This instance's name in the consumer group.
    consumer: String,
    batch: usize,
    /// How long an entry stays pending with another consumer before this
    /// one claims it.
    claim_idle: Duration,
    interval: Duration,
    /// Replicas that must hold entries before they go to MongoDB, and the
    /// WAIT timeout (`REDIS_ACK_REPLICAS`; 0: none).
    replicas: u32,
    ack_timeout: Duration,
    /// Deliveries after which an entry MongoDB keeps refusing is
    /// dead-lettered (`WRITE_BEHIND_MAX_DELIVERIES`).
    max_deliveries: u64,
    /// Drained in order, each pass.
    sinks: Vec<Arc<dyn Lane>>,
    /// What this consumer knows of each stream between passes, so an idle
    /// stream costs one read per pass, not three.
    memo: Arc<Mutex<HashMap<String, StreamMemo>>>,
}

/// This consumer's knowledge of one stream.
#[derive(Debug, Default)]
struct StreamMemo {
    /// Every entry delivered to this consumer has been acknowledged, so
    /// there is nothing of its own to re-read (false until a pass proves it,
    /// and again after any pass that failed or left an entry pending).
    clean: bool,
    /// When this consumer last looked for entries other consumers left
    /// idle; it looks again after a quarter of `claim_idle`.
    claimed_at: Option<Instant>,
}

/// The longest pause between passes while every stream is idle.
const IDLE_MAX_DELAY: Duration = Duration::from_millis(250);

fn cmd(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, false)
}

impl WriteBehind {
    /// A drainer with no sinks yet; add them with [`with_sink`](Self::with_sink).
    pub fn new(
        pool: Pool,
        consumer: String,
        batch: usize,
        claim_idle: Duration,
        interval: Duration,
    ) -> Self {
        Self {
            pool,
            consumer,
            batch: batch.max(1),
            claim_idle,
            interval,
            replicas: 0,
            ack_timeout: Duration::ZERO,
            max_deliveries: crate::config::DEFAULT_WRITE_BEHIND_MAX_DELIVERIES,
            sinks: Vec::new(),
            memo: Arc::default(),
        }
    }

    /// Dead-letters an entry MongoDB refused once it has been delivered
    /// `n` times (at least 1).
    pub fn with_max_deliveries(mut self, n: u64) -> Self {
        self.max_deliveries = n.max(1);
        self
    }

    /// Writes to MongoDB only entries that `replicas` replicas hold. An
    /// entry a failover could still discard never reaches the system of
    /// record, so MongoDB and the new primary cannot disagree about it.
    pub fn with_replica_ack(mut self, replicas: u32, timeout: Duration) -> Self {
        self.replicas = replicas;
        self.ack_timeout = timeout;
        self
    }

    pub fn with_sink(mut self, sink: impl Sink) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// One pass over every stream of every sink: read up to a batch per
    /// stream, write it to MongoDB, acknowledge and trim. A failing stream
    /// does not stop the others; the first error is returned.
    pub async fn flush_once(&self) -> Result<FlushReport, WriteBehindError> {
        let mut report = FlushReport::default();
        let mut first_err = None;
        for sink in &self.sinks {
            let (r, err) = sink.flush(self).await;
            report += r;
            if let Some(e) = err {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Entries not yet in MongoDB, and the time of the oldest (unix ms), over
    /// the streams of the sinks that count in the backlog.
    pub async fn backlog(&self) -> Result<(i64, Option<i64>), fred::error::Error> {
        let client = self.pool.next();
        let mut total = 0;
        let mut oldest: Option<u64> = None;
        for sink in &self.sinks {
            for key in sink.backlog_keys(client).await? {
                let Some(info) = group_info(client, &key).await? else {
                    continue;
                };
                total += info.pending + info.lag;
                if let Some(first) = oldest_unwritten(client, &key, &info).await? {
                    oldest = Some(oldest.map_or(first.ms, |o| o.min(first.ms)));
                }
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
                // Nothing anywhere: the pauses grow up to IDLE_MAX_DELAY, so
                // idle open sales cost little; the first entry read resets them.
                Ok(r) if r.read == 0 => {
                    delay = (delay * 2).clamp(self.interval, IDLE_MAX_DELAY.max(self.interval));
                }
                Ok(_) => delay = self.interval,
                Err(e) => {
                    metrics::counter!(crate::metrics::WRITE_BEHIND_FAILED_TOTAL).increment(1);
                    match &e {
                        WriteBehindError::Redis(_) => {
                            metrics::counter!(crate::metrics::REDIS_ERRORS_TOTAL).increment(1)
                        }
                        WriteBehindError::Store(s) => crate::metrics::store_error(s),
                        WriteBehindError::Unreplicated { .. } => {
                            metrics::counter!(crate::metrics::REDIS_UNCONFIRMED_TOTAL).increment(1)
                        }
                    }
                    tracing::warn!(error = %ErrorChain(&e), "write-behind flush failed; entries wait in Redis");
                    delay = (delay * 2).clamp(Duration::from_millis(100), max_backoff);
                }
            }
        }
        match self.drain(drain_deadline).await {
            Ok(r) => tracing::info!(written = r.written, acked = r.acked, "write-behind drained"),
            Err(e) => {
                tracing::warn!(error = %ErrorChain(&e), "write-behind could not drain; entries stay in Redis")
            }
        }
    }

    /// Every stream of one sink; a failing stream does not stop the others.
    async fn flush_sink<S: Sink>(&self, sink: &S) -> (FlushReport, Option<WriteBehindError>) {
        let streams = match sink.streams(self.pool.next()).await {
            Ok(s) => s,
            Err(e) => return (FlushReport::default(), Some(e.into())),
        };
        let mut report = FlushReport::default();
        let mut first_err = None;
        for (key, stream) in streams {
            match self.flush_stream(sink, &key, &stream).await {
                Ok(r) => report += r,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        (report, first_err)
    }

    /// One batch of one stream: collect, decode, write, set malformed and
    /// exhausted refused entries aside, and only then acknowledge and trim
    /// (entries MongoDB refused with tries left stay pending).
    async fn flush_stream<S: Sink>(
        &self,
        sink: &S,
        key: &str,
        stream: &S::Stream,
    ) -> Result<FlushReport, WriteBehindError> {
        let client = self.pool.next();
        let (entries, claimed) = self.collect(client, key).await?;
        // What was read is pending with this consumer until acknowledged.
        self.memo(key, |m| m.clean = false);
        let mut report = FlushReport {
            read: entries.len(),
            claimed,
            ..FlushReport::default()
        };
        if entries.is_empty() {
            // collect read its own pending entries unless it knew there were none.
            self.memo(key, |m| m.clean = true);
            report.retired = usize::from(self.retire_if_done(sink, client, key, stream).await?);
            if report.retired > 0 {
                self.forget(key);
            }
            return Ok(report);
        }
        self.replicated(client, key).await?;
        let mut items = Vec::with_capacity(entries.len());
        // The entry each item came from, by the item's index.
        let mut origin = Vec::with_capacity(entries.len());
        let mut bad = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            match e
                .fields
                .as_deref()
                .and_then(|f| sink.decode(stream, &e.id, f))
            {
                Some(item) => {
                    items.push(item);
                    origin.push(i);
                }
                None => bad.push(i),
            }
        }
        let written = sink.write(&items).await?;
        report.written = written.new;
        let dead_key = format!("{key}:dead");
        let mut retry = vec![false; entries.len()];
        for r in &written.rejected {
            let Some(&i) = origin.get(r.index) else {
                continue;
            };
            let entry = &entries[i];
            report.rejected += 1;
            let deliveries = self.deliveries(client, key, &entry.id).await?;
            if deliveries >= self.max_deliveries {
                let reason = format!("rejected by MongoDB (code {}): {}", r.code, r.message);
                dead_letter(client, &dead_key, entry, &reason, deliveries).await?;
                crate::metrics::dead_lettered(S::KIND, "rejected");
                tracing::error!(stream = %key, entry = %entry.id, kind = S::KIND, deliveries, code = r.code, error = %r.message, "entry MongoDB keeps refusing moved to the dead-letter stream");
                report.dead_lettered += 1;
            } else {
                tracing::warn!(stream = %key, entry = %entry.id, kind = S::KIND, deliveries, max = self.max_deliveries, code = r.code, error = %r.message, "MongoDB refused an entry; it stays pending and is tried again");
                retry[i] = true;
            }
        }
        match S::MALFORMED {
            Malformed::DeadLetter => {
                for &i in &bad {
                    let entry = &entries[i];
                    dead_letter(client, &dead_key, entry, "malformed", 1).await?;
                    crate::metrics::dead_lettered(S::KIND, "malformed");
                    tracing::error!(stream = %key, entry = %entry.id, kind = S::KIND, "malformed entry moved to the dead-letter stream");
                }
                report.dead_lettered += bad.len();
            }
            Malformed::Drop => {
                for &i in &bad {
                    tracing::error!(stream = %key, entry = %entries[i].id, kind = S::KIND, "malformed entry dropped");
                }
                report.dropped = bad.len();
            }
        }
        let left_pending = retry.iter().any(|again| *again);
        let ids: Vec<String> = entries
            .into_iter()
            .zip(retry)
            .filter(|(_, again)| !again)
            .map(|(e, _)| e.id)
            .collect();
        report.acked = self.finish(client, key, &ids).await?;
        // Everything read is acknowledged (or dead-lettered): nothing of ours
        // is pending unless an entry is left for another try.
        self.memo(key, |m| m.clean = !left_pending);
        Ok(report)
    }

    /// How many times the group has delivered a pending entry (XPENDING's
    /// extended form); 0 when it is not pending.
    async fn deliveries(
        &self,
        client: &Client,
        key: &str,
        id: &str,
    ) -> Result<u64, fred::error::Error> {
        let v: Value = client
            .custom(cmd("XPENDING"), vec![key, GROUP, id, id, "1"])
            .await?;
        Ok(stream::deliveries(&v).unwrap_or(0))
    }

    /// Retires a stream its sink says is finished, once nothing of it waits:
    /// no entry pending or unread, none dead-lettered (a sale with
    /// dead-lettered orders stays listed, so reconcile keeps showing it).
    async fn retire_if_done<S: Sink>(
        &self,
        sink: &S,
        client: &Client,
        key: &str,
        stream: &S::Stream,
    ) -> Result<bool, WriteBehindError> {
        if !sink.finished(client, stream).await? {
            return Ok(false);
        }
        // Checked after `finished`: no entry can be added any more, so what
        // is drained now stays drained.
        let drained = group_info(client, key)
            .await?
            .is_none_or(|g| g.pending == 0 && g.lag == 0);
        if !drained {
            return Ok(false);
        }
        let dead: i64 = client.xlen(format!("{key}:dead")).await?;
        if dead > 0 {
            return Ok(false);
        }
        sink.retire(client, stream).await?;
        tracing::info!(stream = %key, kind = S::KIND, "finished stream drained; no longer scanned");
        Ok(true)
    }

    /// With `REDIS_ACK_REPLICAS`, waits until enough replicas hold every
    /// write made before this point. WAIT measures from the connection's
    /// last write, and reading pending entries writes nothing, so a fence
    /// write in the stream's slot comes first.
    async fn replicated(&self, client: &Client, key: &str) -> Result<(), WriteBehindError> {
        if self.replicas == 0 {
            return Ok(());
        }
        let _: () = client
            .set(
                format!("{key}:fence"),
                crate::clock::now_ms(),
                Some(Expiration::PX(60_000)),
                None,
                false,
            )
            .await?;
        let slot = fred::util::redis_keyslot(key.as_bytes());
        let acked = crate::redis::ack::wait(client, slot, self.replicas, self.ack_timeout).await?;
        if acked < i64::from(self.replicas) {
            return Err(WriteBehindError::Unreplicated {
                acked,
                wanted: self.replicas,
            });
        }
        Ok(())
    }

    /// Own pending entries, then entries claimed from dead consumers, then
    /// new ones, up to a batch. Returns them and how many were claimed.
    async fn collect(
        &self,
        client: &Client,
        key: &str,
    ) -> Result<(Vec<Entry>, usize), WriteBehindError> {
        let (clean, claim_due) = self.memo(key, |m| {
            let due = m
                .claimed_at
                .is_none_or(|t| t.elapsed() >= self.claim_idle / 4);
            (m.clean, due)
        });
        // 1. Our own pending entries: read before a failure, not yet
        //    acknowledged (skipped while this consumer knows there are none).
        let mut entries = if clean {
            Vec::new()
        } else {
            self.read_or_create(client, key, "0").await?
        };
        // 2. Entries a dead consumer left pending: they must have been idle
        //    for `claim_idle`, so looking every quarter of it is enough.
        let mut claimed = 0;
        if entries.len() < self.batch && claim_due {
            let c = self
                .autoclaim(client, key, self.batch - entries.len())
                .await;
            let c = match c {
                Err(e) if e.details().starts_with("NOGROUP") => {
                    self.forget(key);
                    self.read_or_create(client, key, "0").await?
                }
                other => other?,
            };
            self.memo(key, |m| m.claimed_at = Some(Instant::now()));
            claimed = c.len();
            entries.extend(c);
        }
        // 3. New entries.
        if entries.len() < self.batch {
            entries.extend(self.read_or_create(client, key, ">").await?);
        }
        Ok((entries, claimed))
    }

    /// XREADGROUP from `from`; a stream or group that is missing (a new
    /// stream, or Redis lost it) gets the group and reads as empty.
    async fn read_or_create(
        &self,
        client: &Client,
        key: &str,
        from: &str,
    ) -> Result<Vec<Entry>, WriteBehindError> {
        match self.read_group(client, key, from).await {
            Err(e) if e.details().starts_with("NOGROUP") => {
                self.forget(key);
                let r: Result<(), _> = client.xgroup_create(key, GROUP, "0", true).await;
                if let Err(e) = r
                    && !e.details().starts_with("BUSYGROUP")
                {
                    return Err(e.into());
                }
                Ok(Vec::new())
            }
            other => Ok(other?),
        }
    }

    /// Reads or updates what this consumer remembers of `key`.
    fn memo<R>(&self, key: &str, f: impl FnOnce(&mut StreamMemo) -> R) -> R {
        let mut memo = self
            .memo
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(m) = memo.get_mut(key) {
            return f(m);
        }
        f(memo.entry(key.to_owned()).or_default())
    }

    /// Forgets `key` (retired, or its group is gone): the next pass starts
    /// from scratch, own pending entries first.
    fn forget(&self, key: &str) {
        self.memo
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }

    /// Acknowledges what MongoDB accepted and trims the stream.
    async fn finish(
        &self,
        client: &Client,
        key: &str,
        ids: &[String],
    ) -> Result<usize, WriteBehindError> {
        let acked: i64 = client.xack(key, GROUP, ids.to_vec()).await?;
        self.trim(client, key, ids).await?;
        Ok(usize::try_from(acked).unwrap_or(0))
    }

    async fn read_group(
        &self,
        client: &Client,
        key: &str,
        from: &str,
    ) -> Result<Vec<Entry>, fred::error::Error> {
        let v: Value = client
            .xreadgroup(
                GROUP,
                self.consumer.as_str(),
                Some(self.batch as u64),
                None,
                false,
                key,
                from,
            )
            .await?;
        Ok(stream::read_group(v))
    }

    async fn autoclaim(
        &self,
        client: &Client,
        key: &str,
        count: usize,
    ) -> Result<Vec<Entry>, fred::error::Error> {
        let idle_ms = self.claim_idle.as_millis().to_string();
        let v: Value = client
            .custom(
                cmd("XAUTOCLAIM"),
                vec![
                    key,
                    GROUP,
                    self.consumer.as_str(),
                    idle_ms.as_str(),
                    "0-0",
                    "COUNT",
                    &count.to_string(),
                ],
            )
            .await?;
        Ok(stream::autoclaim(v))
    }

    /// Trims entries below the oldest one that may still be needed: the
    /// oldest pending one, or when none is pending the last delivered one
    /// (everything delivered is then acknowledged; entries acknowledged on
    /// earlier passes while an older one was held back go too).
    async fn trim(
        &self,
        client: &Client,
        key: &str,
        acked: &[String],
    ) -> Result<(), fred::error::Error> {
        let Some(max_acked) = acked.iter().filter_map(|id| EntryId::parse(id)).max() else {
            return Ok(());
        };
        let v: Value = client.custom(cmd("XPENDING"), vec![key, GROUP]).await?;
        let keep_from = match stream::min_pending(&v) {
            Some(p) => p.min(max_acked),
            None => group_info(client, key)
                .await?
                .and_then(|g| EntryId::parse(&g.last_delivered))
                .map_or(max_acked, |d| d.max(max_acked)),
        };
        let minid = keep_from.to_string();
        let _: Value = client
            .custom(cmd("XTRIM"), vec![key, "MINID", minid.as_str()])
            .await?;
        Ok(())
    }
}

/// Appends `entry` to the dead-letter stream `dead_key`: its id, why, how
/// many deliveries it had, then its own fields as they were (the full
/// payload, so it can be replayed).
async fn dead_letter(
    client: &Client,
    dead_key: &str,
    entry: &Entry,
    reason: &str,
    deliveries: u64,
) -> Result<(), fred::error::Error> {
    let mut fields: Vec<(String, Value)> = vec![
        ("entry".to_owned(), Value::from(entry.id.as_str())),
        ("reason".to_owned(), Value::from(reason)),
        (
            "deliveries".to_owned(),
            Value::from(i64::try_from(deliveries).unwrap_or(i64::MAX)),
        ),
    ];
    for kv in entry.fields.as_deref().unwrap_or_default().chunks(2) {
        if let [k, v] = kv
            && let Some(k) = k.as_string()
        {
            fields.push((k, v.clone()));
        }
    }
    let _: String = client.xadd(dead_key, false, None, "*", fields).await?;
    Ok(())
}

/// The write-behind group's state on `key`; `None` when the stream or the
/// group does not exist.
pub async fn group_info(
    client: &Client,
    key: &str,
) -> Result<Option<GroupInfo>, fred::error::Error> {
    match client.xinfo_groups(key).await {
        Ok(v) => Ok(stream::group_info(v, GROUP)),
        Err(e) if e.details().contains("no such key") => Ok(None),
        Err(e) => Err(e),
    }
}

/// The id of the oldest entry of `key` not yet in MongoDB: the oldest pending
/// one, else the first one after the last delivered.
async fn oldest_unwritten(
    client: &Client,
    key: &str,
    info: &GroupInfo,
) -> Result<Option<EntryId>, fred::error::Error> {
    if info.pending > 0 {
        let v: Value = client.custom(cmd("XPENDING"), vec![key, GROUP]).await?;
        Ok(stream::min_pending(&v))
    } else if info.lag > 0 {
        let from = format!("({}", info.last_delivered);
        let v: Value = client
            .custom(cmd("XRANGE"), vec![key, from.as_str(), "+", "COUNT", "1"])
            .await?;
        Ok(stream::entries(v)
            .first()
            .and_then(|e| EntryId::parse(&e.id)))
    } else {
        Ok(None)
    }
}

// === impl Lane ===

/// A sink with its types erased, so one drainer holds sinks of every kind.
trait Lane: Send + Sync + std::fmt::Debug {
    fn flush<'a>(
        &'a self,
        wb: &'a WriteBehind,
    ) -> BoxFuture<'a, (FlushReport, Option<WriteBehindError>)>;

    /// The stream keys the backlog gauges count (none unless `IN_BACKLOG`).
    fn backlog_keys<'a>(
        &'a self,
        client: &'a Client,
    ) -> BoxFuture<'a, Result<Vec<String>, fred::error::Error>>;
}

impl<S: Sink> Lane for S {
    fn flush<'a>(
        &'a self,
        wb: &'a WriteBehind,
    ) -> BoxFuture<'a, (FlushReport, Option<WriteBehindError>)> {
        Box::pin(wb.flush_sink(self))
    }

    fn backlog_keys<'a>(
        &'a self,
        client: &'a Client,
    ) -> BoxFuture<'a, Result<Vec<String>, fred::error::Error>> {
        Box::pin(async move {
            if !S::IN_BACKLOG {
                return Ok(Vec::new());
            }
            let streams = self.streams(client).await?;
            Ok(streams.into_iter().map(|(key, _)| key).collect())
        })
    }
}
