//! Orders still in the write-behind: accepted by the purchase script, in
//! their sale's Redis stream, not yet acknowledged into MongoDB. Read by
//! `GET /api/orders` so a buyer sees an order the moment it is accepted.
//!
//! Which streams: the write-behind's registry of sales (it drains the same
//! ones). For one buyer, one `HGET {sale}:buyers <user>` per sale first, so
//! only the streams of sales they bought from are read; the purchase script
//! keeps that hash already, so the hot path pays nothing for this. A stream
//! holds only what MongoDB does not yet have (acknowledged entries are
//! trimmed), at most one entry per unit sold, and at most
//! [`MAX_ENTRIES_PER_SALE`] of its newest entries are read.
//!
//! Whether an entry is written is read from the consumer group, after the
//! entries: delivered (at or below `last-delivered-id`) and no longer in the
//! pending list means acknowledged, so MongoDB held it before the caller's
//! MongoDB read, which comes after this one.

use std::collections::HashSet;

use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};
use futures_util::future::try_join_all;

use super::Order;
use super::sink::decode_order;
use crate::engine::{ORDERS_GROUP, SALES_REGISTRY, SaleKeys};
use crate::error::StoreError;
use crate::ids::{SaleId, UserId};
use crate::write_behind::group_info;
use crate::write_behind::stream::{self, EntryId};

/// The newest entries of one sale's stream read per request. A backlog
/// longer than this (MongoDB down for a long time during a big sale) shows
/// its newest orders only.
pub const MAX_ENTRIES_PER_SALE: u64 = 2_000;

fn cmd(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, false)
}

/// Reads the orders waiting in the sales' streams.
#[derive(Debug, Clone)]
pub struct PendingOrders {
    pool: Pool,
}

impl PendingOrders {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    /// The orders of `sale` (of every registered sale when `None`) that
    /// MongoDB does not hold yet, of `user` only when given; in sequence
    /// order within each sale.
    pub async fn find(
        &self,
        sale: Option<SaleId>,
        user: Option<UserId>,
    ) -> Result<Vec<Order>, StoreError> {
        let client = self.pool.next();
        let sales: Vec<SaleId> = match sale {
            Some(s) => vec![s],
            None => {
                let ids: Vec<String> = client.smembers(SALES_REGISTRY).await?;
                ids.iter().filter_map(|s| SaleId::parse(s).ok()).collect()
            }
        };
        let sales = match user {
            Some(u) => {
                let hex = u.hex();
                let units = try_join_all(sales.iter().map(|s| {
                    let buyers = SaleKeys::new(*s).buyers;
                    let hex = hex.clone();
                    async move { client.hget::<Option<i64>, _, _>(buyers, hex).await }
                }))
                .await?;
                sales
                    .into_iter()
                    .zip(units)
                    .filter(|(_, n)| n.unwrap_or(0) > 0)
                    .map(|(s, _)| s)
                    .collect()
            }
            None => sales,
        };
        let per_sale = try_join_all(sales.iter().map(|s| unwritten(client, *s, user))).await?;
        Ok(per_sale.into_iter().flatten().collect())
    }
}

/// The orders of one sale's stream (of `user` when given) not yet written.
async fn unwritten(
    client: &Client,
    sale: SaleId,
    user: Option<UserId>,
) -> Result<Vec<Order>, fred::error::Error> {
    let key = SaleKeys::new(sale).orders;
    let count = MAX_ENTRIES_PER_SALE.to_string();
    let v: Value = client
        .custom(
            cmd("XREVRANGE"),
            vec![key.as_str(), "+", "-", "COUNT", count.as_str()],
        )
        .await?;
    let mut found: Vec<(EntryId, Order)> = stream::entries(v)
        .into_iter()
        .filter_map(|e| {
            let id = EntryId::parse(&e.id)?;
            let order = decode_order(e.fields.as_deref()?, sale)?;
            user.is_none_or(|u| order.user_id == u.oid())
                .then_some((id, order))
        })
        .collect();
    if found.is_empty() {
        return Ok(Vec::new());
    }
    // No group yet: nothing was ever delivered, so nothing written.
    if let Some(info) = group_info(client, &key).await? {
        let last = EntryId::parse(&info.last_delivered).unwrap_or(EntryId { ms: 0, seq: 0 });
        let in_flight = if info.pending > 0 {
            pending_ids(client, &key, &found).await?
        } else {
            HashSet::new()
        };
        found.retain(|(id, _)| *id > last || in_flight.contains(id));
    }
    let mut orders: Vec<Order> = found.into_iter().map(|(_, o)| o).collect();
    orders.sort_by_key(|o| o.seq);
    Ok(orders)
}

/// The ids in the group's pending list (delivered, not acknowledged)
/// between the oldest and newest of `found`.
async fn pending_ids(
    client: &Client,
    key: &str,
    found: &[(EntryId, Order)],
) -> Result<HashSet<EntryId>, fred::error::Error> {
    let (Some(lo), Some(hi)) = (
        found.iter().map(|(id, _)| *id).min(),
        found.iter().map(|(id, _)| *id).max(),
    ) else {
        return Ok(HashSet::new());
    };
    let (lo, hi, count) = (
        lo.to_string(),
        hi.to_string(),
        MAX_ENTRIES_PER_SALE.to_string(),
    );
    let v: Value = client
        .custom(
            cmd("XPENDING"),
            vec![key, ORDERS_GROUP, lo.as_str(), hi.as_str(), count.as_str()],
        )
        .await?;
    Ok(stream::pending_ids(v).into_iter().collect())
}
