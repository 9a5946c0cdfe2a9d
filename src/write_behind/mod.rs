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

mod sink;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

pub use sink::{Malformed, Sink};
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
    /// Malformed entries whose ids went to the dead-letter stream
    /// ([`Malformed::DeadLetter`] sinks).
    pub dead_lettered: usize,
    /// Malformed entries logged and dropped ([`Malformed::Drop`] sinks).
    pub dropped: usize,
}

impl std::ops::AddAssign for FlushReport {
    fn add_assign(&mut self, o: Self) {
        self.read += o.read;
        self.claimed += o.claimed;
        self.written += o.written;
        self.acked += o.acked;
        self.dead_lettered += o.dead_lettered;
        self.dropped += o.dropped;
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
    /// Drained in order, each pass.
    sinks: Vec<Arc<dyn Lane>>,
}

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
            sinks: Vec::new(),
        }
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

    /// One batch of one stream: collect, decode, write, set malformed
    /// entries aside, and only then acknowledge and trim.
    async fn flush_stream<S: Sink>(
        &self,
        sink: &S,
        key: &str,
        stream: &S::Stream,
    ) -> Result<FlushReport, WriteBehindError> {
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
        self.replicated(client, key).await?;
        let mut items = Vec::with_capacity(entries.len());
        let mut bad = Vec::new();
        let mut ids = Vec::with_capacity(entries.len());
        for Entry { id, fields } in entries {
            match fields.as_deref().and_then(|f| sink.decode(stream, &id, f)) {
                Some(item) => items.push(item),
                None => bad.push(id.clone()),
            }
            ids.push(id);
        }
        report.written = sink.write(&items).await?;
        match S::MALFORMED {
            Malformed::DeadLetter => {
                let dead_key = format!("{key}:dead");
                for id in &bad {
                    tracing::error!(stream = %key, entry = %id, kind = S::KIND, "malformed entry moved to the dead-letter stream");
                    let _: String = client
                        .xadd(&dead_key, false, None, "*", vec![("entry", id.as_str())])
                        .await?;
                }
                report.dead_lettered = bad.len();
            }
            Malformed::Drop => {
                for id in &bad {
                    tracing::error!(stream = %key, entry = %id, kind = S::KIND, "malformed entry dropped");
                }
                report.dropped = bad.len();
            }
        }
        report.acked = self.finish(client, key, &ids).await?;
        Ok(report)
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
        // 1. Our own pending entries: read before a failure, not yet acknowledged.
        let mut entries = match self.read_group(client, key, "0").await {
            Err(e) if e.details().starts_with("NOGROUP") => {
                let r: Result<(), _> = client.xgroup_create(key, GROUP, "0", true).await;
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

    /// Trims entries below the oldest one that may still be needed.
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
        let keep_from = stream::min_pending(&v).map_or(max_acked, |p| p.min(max_acked));
        let minid = keep_from.to_string();
        let _: Value = client
            .custom(cmd("XTRIM"), vec![key, "MINID", minid.as_str()])
            .await?;
        Ok(())
    }
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
