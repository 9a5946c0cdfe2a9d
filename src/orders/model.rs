//! An order: its MongoDB document (`_id` is the order id, `<sale>-<seq>`, so
//! writing it twice is harmless) and its JSON view.

use mongodb::bson::{DateTime, RawBsonRef, RawDocumentBuf, oid::ObjectId};
use serde::{Deserialize, Serialize};

use crate::catalog::cents_to_units;
use crate::clock::rfc3339;
use crate::ids::SaleId;

/// An accepted order as MongoDB stores it. `_id` is `<saleId>-<seq>`, assigned
/// by the purchase script, so writing it twice is harmless.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Order {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "flashSaleId")]
    pub flash_sale_id: ObjectId,
    #[serde(rename = "userId")]
    pub user_id: ObjectId,
    pub quantity: i64,
    #[serde(rename = "unitPriceCents")]
    pub unit_price_cents: i64,
    #[serde(rename = "purchasedAt")]
    pub purchased_at: DateTime,
    pub seq: i64,
    #[serde(default)]
    pub ip: String,
}

impl Order {
    /// The order's BSON document, appended field by field: the bytes serde
    /// would give (a test holds them equal), for a fraction of its cost. The
    /// write-behind builds one per order, and serialising through serde was
    /// most of what it spent on each.
    pub fn to_raw(&self) -> RawDocumentBuf {
        let mut d = RawDocumentBuf::new();
        d.append_ref("_id", self.id.as_str());
        d.append_ref("flashSaleId", RawBsonRef::ObjectId(self.flash_sale_id));
        d.append_ref("userId", RawBsonRef::ObjectId(self.user_id));
        d.append_ref("quantity", RawBsonRef::Int64(self.quantity));
        d.append_ref("unitPriceCents", RawBsonRef::Int64(self.unit_price_cents));
        d.append_ref("purchasedAt", RawBsonRef::DateTime(self.purchased_at));
        d.append_ref("seq", RawBsonRef::Int64(self.seq));
        d.append_ref("ip", self.ip.as_str());
        d
    }
}

/// The order id of the `seq`-th order of a sale.
pub fn order_id(sale: SaleId, seq: i64) -> String {
    format!("{}-{seq}", sale.hex())
}

/// Where an order is: still in the write-behind (its sale's Redis stream
/// holds it, MongoDB not yet), or in MongoDB, the system of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    Pending,
    Recorded,
}

/// The JSON shape of an order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub id: String,
    pub user_id: String,
    pub flash_sale_id: String,
    pub quantity: i64,
    pub unit_price: f64,
    pub total_price: f64,
    pub purchased_at: String,
    pub status: OrderStatus,
}

impl OrderView {
    pub fn new(o: &Order, status: OrderStatus) -> Self {
        Self {
            id: o.id.clone(),
            user_id: crate::ids::hex24(&o.user_id),
            flash_sale_id: crate::ids::hex24(&o.flash_sale_id),
            quantity: o.quantity,
            unit_price: cents_to_units(o.unit_price_cents),
            total_price: cents_to_units(o.unit_price_cents * o.quantity),
            purchased_at: rfc3339(o.purchased_at),
            status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_document_is_the_one_serde_writes() {
        for ip in ["", "127.0.0.1", "2001:db8::1"] {
            let o = Order {
                id: "0123456789abcdef01234567-42".to_owned(),
                flash_sale_id: ObjectId::new(),
                user_id: ObjectId::new(),
                quantity: 3,
                unit_price_cents: -1,
                purchased_at: DateTime::from_millis(1_700_000_000_123),
                seq: i64::MAX,
                ip: ip.to_owned(),
            };
            let serde = mongodb::bson::to_raw_document_buf(&o).unwrap();
            assert_eq!(o.to_raw().as_bytes(), serde.as_bytes(), "ip {ip:?}");
            let back: Order = mongodb::bson::from_slice(o.to_raw().as_bytes()).unwrap();
            assert_eq!(back, o);
        }
    }
}
