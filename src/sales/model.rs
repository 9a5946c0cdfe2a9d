//! A flash sale: the validated input (`NewFlashSale::parse`), its MongoDB
//! document, its status at a given time, and its JSON view.

use mongodb::bson::{DateTime, oid::ObjectId};
use serde::{Deserialize, Serialize};

use crate::catalog::cents_to_units;
use crate::clock::rfc3339;
use crate::ids::{ProductId, SaleId};

pub(super) const MAX_TOTAL_UNITS: i64 = 10_000_000;
pub(super) const MAX_DURATION_MS: i64 = 31 * 24 * 3_600_000;
pub(super) const MAX_START_AHEAD_MS: i64 = 366 * 24 * 3_600_000;
pub(super) const MAX_LIMIT: i64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaleStatus {
    Pending,
    Active,
    Ended,
    Cancelled,
}

impl SaleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Ended => "ended",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "active" => Self::Active,
            "ended" => Self::Ended,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndReason {
    #[serde(rename = "sold-out")]
    SoldOut,
    #[serde(rename = "time-ended")]
    TimeEnded,
    #[serde(rename = "cancelled")]
    Cancelled,
}

/// A stored flash sale event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlashSale {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    #[serde(rename = "productId")]
    pub product_id: ObjectId,
    #[serde(rename = "startTime")]
    pub start_time: DateTime,
    #[serde(rename = "endTime")]
    pub end_time: DateTime,
    pub discount: f64,
    #[serde(rename = "priceCents")]
    pub price_cents: i64,
    #[serde(rename = "salePriceCents")]
    pub sale_price_cents: i64,
    #[serde(rename = "totalUnits")]
    pub total_units: i64,
    #[serde(rename = "maxPerUser")]
    pub max_per_user: i64,
    #[serde(rename = "maxPerTransaction")]
    pub max_per_transaction: i64,
    /// Distinct accounts that may buy from one client IP (0: no cap).
    #[serde(rename = "maxAccountsPerIp", default)]
    pub max_accounts_per_ip: i64,
    pub status: SaleStatus,
    #[serde(rename = "endReason", default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<EndReason>,
    #[serde(rename = "rerunOf", default, skip_serializing_if = "Option::is_none")]
    pub rerun_of: Option<ObjectId>,
    #[serde(rename = "createdAt")]
    pub created_at: DateTime,
}

impl FlashSale {
    pub fn sale_id(&self) -> SaleId {
        SaleId(self.id)
    }

    /// The status as of `now_ms`: a stored terminal status, else the window.
    pub fn status_at(&self, now_ms: i64) -> SaleStatus {
        match self.status {
            SaleStatus::Ended | SaleStatus::Cancelled => self.status,
            _ if now_ms < self.start_time.timestamp_millis() => SaleStatus::Pending,
            _ if now_ms >= self.end_time.timestamp_millis() => SaleStatus::Ended,
            _ => SaleStatus::Active,
        }
    }

    pub fn view(&self, available: Option<i64>, now_ms: i64) -> SaleView {
        let status = self.status_at(now_ms);
        let end_reason = match status {
            SaleStatus::Ended => Some(self.end_reason.unwrap_or(EndReason::TimeEnded)),
            SaleStatus::Cancelled => Some(EndReason::Cancelled),
            _ => None,
        };
        SaleView {
            id: self.id.to_hex(),
            product_id: self.product_id.to_hex(),
            start_time: rfc3339(self.start_time),
            end_time: rfc3339(self.end_time),
            discount: self.discount,
            price: cents_to_units(self.price_cents),
            sale_price: cents_to_units(self.sale_price_cents),
            total_units: self.total_units,
            available_units: available.unwrap_or(0).max(0),
            max_per_user: self.max_per_user,
            max_per_transaction: self.max_per_transaction,
            max_accounts_per_ip: self.max_accounts_per_ip,
            status: status.as_str(),
            end_reason,
        }
    }
}

/// The JSON shape of a sale.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SaleView {
    pub id: String,
    pub product_id: String,
    pub start_time: String,
    pub end_time: String,
    pub discount: f64,
    pub price: f64,
    pub sale_price: f64,
    pub total_units: i64,
    pub available_units: i64,
    pub max_per_user: i64,
    pub max_per_transaction: i64,
    pub max_accounts_per_ip: i64,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<EndReason>,
}

/// The create-sale body as sent by the client.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SaleInput {
    pub product_id: String,
    pub start_time: String,
    pub end_time: String,
    pub discount: f64,
    pub total_units: Option<i64>,
    pub max_per_user: Option<i64>,
    pub max_per_transaction: Option<i64>,
    pub max_accounts_per_ip: Option<i64>,
}

/// A validated sale to create.
#[derive(Debug, Clone)]
pub struct NewFlashSale {
    pub product_id: ProductId,
    pub start_ms: i64,
    pub end_ms: i64,
    pub discount: f64,
    pub total_units: i64,
    pub max_per_user: i64,
    pub max_per_transaction: i64,
    pub max_accounts_per_ip: i64,
}

pub(super) type FieldError = (&'static str, String);

fn fe(field: &'static str, msg: impl Into<String>) -> FieldError {
    (field, msg.into())
}

/// Parses an RFC 3339 timestamp into unix milliseconds.
pub(super) fn parse_time(field: &'static str, s: &str) -> Result<i64, FieldError> {
    DateTime::parse_rfc3339_str(s.trim())
        .map(|d| d.timestamp_millis())
        .map_err(|_| {
            fe(
                field,
                "must be an RFC 3339 date-time such as 2026-11-24T18:00:00Z",
            )
        })
}

/// Limits a sale gets when its creator leaves them out.
#[derive(Debug, Clone, Copy)]
pub struct SaleDefaults {
    pub max_per_user: i64,
    pub max_per_transaction: i64,
    pub max_accounts_per_ip: i64,
}

impl NewFlashSale {
    /// Validates every rule that needs no database: window, discount, units, limits.
    pub fn parse(
        input: &SaleInput,
        now_ms: i64,
        defaults: SaleDefaults,
    ) -> Result<Self, FieldError> {
        let (default_max_per_user, default_max_per_tx) =
            (defaults.max_per_user, defaults.max_per_transaction);
        let product_id = ProductId::parse(input.product_id.trim())
            .map_err(|_| fe("productId", "must be a 24-hex-digit id"))?;
        let start_ms = parse_time("startTime", &input.start_time)?;
        let end_ms = parse_time("endTime", &input.end_time)?;
        Self::check_window(start_ms, end_ms, now_ms)?;
        if !input.discount.is_finite() || !(0.0..=100.0).contains(&input.discount) {
            return Err(fe("discount", "must be a number from 0 to 100"));
        }
        let total_units = input.total_units.unwrap_or(200);
        if !(1..=MAX_TOTAL_UNITS).contains(&total_units) {
            return Err(fe(
                "totalUnits",
                format!("must be an integer from 1 to {MAX_TOTAL_UNITS}"),
            ));
        }
        let (max_per_user, max_per_transaction) =
            match (input.max_per_user, input.max_per_transaction) {
                (Some(u), Some(t)) => (u, t),
                (Some(u), None) => (u, default_max_per_tx.min(u)),
                (None, Some(t)) => (default_max_per_user.max(t), t),
                (None, None) => (default_max_per_user, default_max_per_tx),
            };
        if !(1..=MAX_LIMIT).contains(&max_per_user) {
            return Err(fe(
                "maxPerUser",
                format!("must be an integer from 1 to {MAX_LIMIT}"),
            ));
        }
        if !(1..=MAX_LIMIT).contains(&max_per_transaction) {
            return Err(fe(
                "maxPerTransaction",
                format!("must be an integer from 1 to {MAX_LIMIT}"),
            ));
        }
        if max_per_transaction > max_per_user {
            return Err(fe("maxPerTransaction", "must not exceed maxPerUser"));
        }
        let max_accounts_per_ip = input
            .max_accounts_per_ip
            .unwrap_or(defaults.max_accounts_per_ip);
        if !(0..=MAX_LIMIT).contains(&max_accounts_per_ip) {
            return Err(fe(
                "maxAccountsPerIp",
                format!("must be an integer from 0 (no cap) to {MAX_LIMIT}"),
            ));
        }
        Ok(Self {
            product_id,
            start_ms,
            end_ms,
            discount: input.discount,
            total_units,
            max_per_user,
            max_per_transaction,
            max_accounts_per_ip,
        })
    }

    pub fn check_window(start_ms: i64, end_ms: i64, now_ms: i64) -> Result<(), FieldError> {
        if end_ms <= start_ms {
            return Err(fe("endTime", "must be after startTime"));
        }
        if end_ms <= now_ms {
            return Err(fe("endTime", "must be in the future"));
        }
        if end_ms - start_ms > MAX_DURATION_MS {
            return Err(fe("endTime", "a sale may last at most 31 days"));
        }
        if start_ms > now_ms + MAX_START_AHEAD_MS {
            return Err(fe("startTime", "must be within a year from now"));
        }
        Ok(())
    }
}

/// The sale price in cents: the discount applied once, rounded half up.
pub(super) fn sale_price_cents(price_cents: i64, discount: f64) -> i64 {
    ((price_cents as f64) * (100.0 - discount) / 100.0).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn input() -> SaleInput {
        SaleInput {
            product_id: ProductId::new().hex(),
            start_time: "2027-01-15T08:00:00Z".into(),
            end_time: "2027-01-15T09:00:00Z".into(),
            discount: 20.0,
            total_units: None,
            max_per_user: None,
            max_per_transaction: None,
            max_accounts_per_ip: None,
        }
    }

    const DEFAULTS: SaleDefaults = SaleDefaults {
        max_per_user: 2,
        max_per_transaction: 2,
        max_accounts_per_ip: 10,
    };

    fn field(i: &SaleInput) -> &'static str {
        NewFlashSale::parse(i, NOW, DEFAULTS).unwrap_err().0
    }

    #[test]
    fn defaults_fill_units_and_limits() {
        let defaults = SaleDefaults {
            max_per_transaction: 1,
            ..DEFAULTS
        };
        let s = NewFlashSale::parse(&input(), NOW, defaults).unwrap();
        assert_eq!(
            (
                s.total_units,
                s.max_per_user,
                s.max_per_transaction,
                s.max_accounts_per_ip
            ),
            (200, 2, 1, 10)
        );
    }

    #[test]
    fn each_rule_names_its_field() {
        let mut i = input();
        i.end_time = i.start_time.clone();
        assert_eq!(field(&i), "endTime");
        let mut i = input();
        i.discount = 101.0;
        assert_eq!(field(&i), "discount");
        let mut i = input();
        i.discount = -1.0;
        assert_eq!(field(&i), "discount");
        let mut i = input();
        i.total_units = Some(0);
        assert_eq!(field(&i), "totalUnits");
        let mut i = input();
        i.total_units = Some(10_000_001);
        assert_eq!(field(&i), "totalUnits");
        let mut i = input();
        i.max_per_user = Some(0);
        assert_eq!(field(&i), "maxPerUser");
        let mut i = input();
        i.max_per_user = Some(2);
        i.max_per_transaction = Some(3);
        assert_eq!(field(&i), "maxPerTransaction");
        let mut i = input();
        i.product_id = "nope".into();
        assert_eq!(field(&i), "productId");
        let mut i = input();
        i.start_time = "tomorrow".into();
        assert_eq!(field(&i), "startTime");
    }

    #[test]
    fn sale_price_rounds_once() {
        assert_eq!(sale_price_cents(1999, 20.0), 1599);
        assert_eq!(sale_price_cents(1000, 0.0), 1000);
        assert_eq!(sale_price_cents(1000, 100.0), 0);
    }
}
