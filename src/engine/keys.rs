//! Every Redis key of the service. All keys of one sale share the hash tag
//! `{sale:<id>}`, so every script touches a single Redis Cluster slot.

use fred::types::Key;

use crate::ids::SaleId;

/// The consumer group the write-behind reads order streams with.
pub const ORDERS_GROUP: &str = "write-behind";
/// Set of sale ids whose order streams the write-behind drains.
pub const SALES_REGISTRY: &str = "flashsale:sales";

/// The keys of one sale.
#[derive(Debug, Clone)]
pub struct SaleKeys {
    pub tag: String,
    pub meta: String,
    pub stock: String,
    pub buyers: String,
    pub leaderboard: String,
    pub seq: String,
    pub orders: String,
}

impl SaleKeys {
    pub fn new(sale: SaleId) -> Self {
        let tag = format!("{{sale:{}}}", sale.hex());
        Self {
            meta: format!("{tag}:meta"),
            stock: format!("{tag}:stock"),
            buyers: format!("{tag}:buyers"),
            leaderboard: format!("{tag}:lb"),
            seq: format!("{tag}:seq"),
            orders: format!("{tag}:orders"),
            tag,
        }
    }

    /// The key remembering the first reply for a user's Idempotency-Key.
    pub fn idempotency(&self, user: &str, key: Option<&str>) -> String {
        match key {
            Some(k) => format!("{}:idem:{user}:{k}", self.tag),
            None => format!("{}:idem:-", self.tag),
        }
    }

    /// The set of accounts that bought from one client IP.
    pub fn ip_accounts(&self, ip_key: &str) -> String {
        format!("{}:ip:{ip_key}", self.tag)
    }

    /// A buyer's attempt counter for the current window.
    pub fn attempts(&self, user: &str) -> String {
        format!("{}:att:{user}", self.tag)
    }
}

/// A sale's keys in the form the purchase call sends them, built once per
/// sale and shared (cloning a [`Key`] is a reference-count increment).
#[derive(Debug)]
pub struct CallKeys {
    pub names: SaleKeys,
    /// KEYS[1..=6] of `lua/purchase.lua`: meta, stock, buyers, lb, seq, orders.
    pub fixed: [Key; 6],
    /// KEYS[7] when the request has no Idempotency-Key.
    pub no_idempotency: Key,
}

impl CallKeys {
    pub fn new(sale: SaleId) -> Self {
        let names = SaleKeys::new(sale);
        Self {
            fixed: [
                Key::from(names.meta.as_str()),
                Key::from(names.stock.as_str()),
                Key::from(names.buyers.as_str()),
                Key::from(names.leaderboard.as_str()),
                Key::from(names.seq.as_str()),
                Key::from(names.orders.as_str()),
            ],
            no_idempotency: Key::from(names.idempotency("", None)),
            names,
        }
    }
}

/// The sale an Idempotency-Key of `user` was first used on. Tagged by user,
/// not sale, so a key is seen from every sale (another slot than the sale's,
/// hence written before the purchase script and not inside it).
pub fn user_idempotency(user: &str, key: &str) -> String {
    format!("{{user:{user}}}:idem:{key}")
}

/// A per-product lock key serialising sale creation for one product.
pub fn product_lock(product_hex: &str) -> String {
    format!("flashsale:lock:product:{product_hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_sale_keys_share_one_hash_tag() {
        let id = SaleId::new();
        let k = SaleKeys::new(id);
        let tag = format!("{{sale:{}}}", id.hex());
        for key in [
            &k.meta,
            &k.stock,
            &k.buyers,
            &k.leaderboard,
            &k.seq,
            &k.orders,
        ] {
            assert!(key.starts_with(&tag), "{key}");
        }
        assert!(k.idempotency("u", Some("abc")).starts_with(&tag));
        assert!(k.idempotency("u", None).starts_with(&tag));
        let call = CallKeys::new(id);
        let fixed: Vec<&str> = call.fixed.iter().filter_map(Key::as_str).collect();
        assert_eq!(
            fixed,
            [
                &k.meta,
                &k.stock,
                &k.buyers,
                &k.leaderboard,
                &k.seq,
                &k.orders
            ]
        );
        assert_eq!(
            call.no_idempotency.as_str(),
            Some(k.idempotency("u", None).as_str())
        );
    }
}
