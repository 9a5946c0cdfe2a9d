//! The order sink of the write-behind: every registered sale's order stream,
//! decoded into [`Order`]s and written to the `orders` collection. A sale
//! that ended (its window is past by Redis's clock, or it was cancelled) can
//! take no more orders, so once its stream is drained it leaves the registry.

use std::time::{Duration, Instant};

use fred::prelude::*;
use mongodb::bson::{DateTime, oid::ObjectId};

use super::{Order, OrderStore, order_id};
use crate::engine::{SALES_REGISTRY, SaleKeys};
use crate::error::StoreError;
use crate::ids::SaleId;
use crate::write_behind::{Malformed, Sink, Written};

/// How long a sale's window read from Redis is trusted before it is read
/// again (a cancel is noticed within this).
const WINDOW_RECHECK: Duration = Duration::from_secs(1);

impl Sink for OrderStore {
    type Item = Order;
    type Stream = SaleId;

    const KIND: &'static str = "order";
    const MALFORMED: Malformed = Malformed::DeadLetter;
    const IN_BACKLOG: bool = true;

    async fn streams(&self, redis: &Client) -> Result<Vec<(String, SaleId)>, fred::error::Error> {
        let sales: Vec<String> = redis.smembers(SALES_REGISTRY).await?;
        Ok(sales
            .iter()
            .filter_map(|hex| SaleId::parse(hex).ok())
            .map(|sale| (SaleKeys::new(sale).orders, sale))
            .collect())
    }

    fn decode(&self, sale: &SaleId, _id: &str, fields: &[Value]) -> Option<Order> {
        decode_order(fields, *sale)
    }

    async fn write(&self, orders: &[Order]) -> Result<Written, StoreError> {
        metrics::histogram!(crate::metrics::WRITE_BEHIND_BATCH_SIZE).record(orders.len() as f64);
        let written = self.insert_batch(orders).await?;
        metrics::counter!(crate::metrics::WRITE_BEHIND_FLUSHED_TOTAL).increment(written.new as u64);
        Ok(written)
    }

    /// The sale ended: cancelled, or its end is past by Redis's clock (the
    /// one the purchase script refuses by), or Redis holds no such sale. An
    /// open sale costs no round trip until its end is near on this clock,
    /// beyond one read of its window a second.
    async fn finished(&self, redis: &Client, sale: &SaleId) -> Result<bool, fred::error::Error> {
        let now = crate::clock::now_ms();
        if let Some(w) = self.windows.get(sale)
            && w.1.elapsed() < WINDOW_RECHECK
            && now < w.0
        {
            return Ok(false);
        }
        let keys = SaleKeys::new(*sale);
        let (end, state): (Option<i64>, Option<String>) =
            redis.hmget(&keys.meta, vec!["end", "state"]).await?;
        let Some(end) = end else {
            return Ok(true);
        };
        if state.as_deref() == Some("cancelled")
            || crate::redis::client_time_ms(redis).await? >= end
        {
            return Ok(true);
        }
        self.windows.insert(*sale, (end, Instant::now()));
        Ok(false)
    }

    async fn retire(&self, redis: &Client, sale: &SaleId) -> Result<(), fred::error::Error> {
        let _: i64 = redis.srem(SALES_REGISTRY, sale.hex()).await?;
        self.windows.remove(sale);
        Ok(())
    }
}

/// An order stream entry, as the purchase script appends it: one field
/// `o`, `<seq>:<userId>:<qty>:<unit price cents>:<unix ms>:<ip>`. Entries of
/// the earlier six-field form (`seq`, `user`, `qty`, `price`, `ts`, `ip`),
/// which a stream may still hold after an upgrade, decode too.
pub(super) fn decode_order(fields: &[Value], sale: SaleId) -> Option<Order> {
    if let [k, v] = fields
        && k.as_str().is_some_and(|k| k == "o")
    {
        return decode_packed(&v.as_str()?, sale);
    }
    decode_fields(fields, sale)
}

fn decode_packed(o: &str, sale: SaleId) -> Option<Order> {
    let mut parts = o.splitn(6, ':');
    let seq = parts.next()?.parse::<i64>().ok()?;
    let user = crate::ids::parse_oid(parts.next()?).ok()?;
    let qty = parts.next()?.parse::<i64>().ok()?;
    let price = parts.next()?.parse::<i64>().ok()?;
    let ts = parts.next()?.parse::<i64>().ok()?;
    let ip = parts.next()?.to_owned();
    order(sale, seq, user, qty, price, ts, ip)
}

fn decode_fields(fields: &[Value], sale: SaleId) -> Option<Order> {
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
    order(sale, seq?, user?, qty?, price?, ts?, ip)
}

fn order(
    sale: SaleId,
    seq: i64,
    user: ObjectId,
    qty: i64,
    price: i64,
    ts: i64,
    ip: String,
) -> Option<Order> {
    Some(Order {
        id: order_id(sale, seq),
        flash_sale_id: sale.oid(),
        user_id: user,
        quantity: Some(qty).filter(|q| *q > 0)?,
        unit_price_cents: price,
        purchased_at: DateTime::from_millis(ts),
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
    fn packed_order_entries_decode_into_orders_with_ipv6_addresses() {
        let sale = SaleId::new();
        let user = ObjectId::new();
        let o = format!("7:{}:3:250:1700000000123:2001:db8::1", user.to_hex());
        let o = decode_order(&[s("o"), s(&o)], sale).unwrap();
        assert_eq!(o.id, format!("{}-7", sale.hex()));
        assert_eq!((o.quantity, o.unit_price_cents, o.user_id), (3, 250, user));
        assert_eq!(o.purchased_at.timestamp_millis(), 1_700_000_000_123);
        assert_eq!(o.ip, "2001:db8::1");
        for bad in ["", "7", "x:y", &format!("7:{}:0:250:1:ip", user.to_hex())] {
            assert!(decode_order(&[s("o"), s(bad)], sale).is_none(), "{bad}");
        }
    }

    #[test]
    fn order_entries_decode_into_orders() {
        let sale = SaleId::new();
        let user = ObjectId::new();
        let fields = [
            ("seq", "3"),
            ("user", user.to_hex().as_str()),
            ("qty", "2"),
            ("price", "1599"),
            ("ts", "1700000000000"),
            ("ip", "127.0.0.1"),
        ]
        .iter()
        .flat_map(|(k, v)| [s(k), s(v)])
        .collect::<Vec<_>>();
        let o = decode_order(&fields, sale).unwrap();
        assert_eq!(o.id, format!("{}-3", sale.hex()));
        assert_eq!((o.quantity, o.unit_price_cents, o.user_id), (2, 1599, user));
        assert_eq!(o.ip, "127.0.0.1");
    }

    #[test]
    fn order_entries_missing_fields_are_malformed() {
        let sale = SaleId::new();
        assert!(decode_order(&[s("seq"), s("x")], sale).is_none());
        assert!(decode_order(&[s("seq")], sale).is_none());
    }
}
