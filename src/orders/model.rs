//! An order: its MongoDB document (`_id` is the order id, `<sale>-<seq>`, so
//! writing it twice is harmless) and its JSON view.

use mongodb::bson::{DateTime, oid::ObjectId};
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
            user_id: o.user_id.to_hex(),
            flash_sale_id: o.flash_sale_id.to_hex(),
            quantity: o.quantity,
            unit_price: cents_to_units(o.unit_price_cents),
            total_price: cents_to_units(o.unit_price_cents * o.quantity),
            purchased_at: rfc3339(o.purchased_at),
            status,
        }
    }
}
