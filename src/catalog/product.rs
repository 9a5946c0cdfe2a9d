//! A product: its MongoDB document, its JSON view, and the price parser
//! (integer cents, so a sale price rounds exactly once).

use mongodb::bson::{DateTime, oid::ObjectId};
use serde::{Deserialize, Serialize};

/// Highest accepted price: ten million units of currency.
pub(super) const MAX_PRICE_CENTS: i64 = 1_000_000_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Product {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub name: String,
    pub description: String,
    #[serde(rename = "priceCents")]
    pub price_cents: i64,
    #[serde(rename = "createdAt")]
    pub created_at: DateTime,
}

/// The JSON shape of a product.
#[derive(Debug, Serialize)]
pub struct ProductView {
    pub id: String,
    pub name: String,
    pub description: String,
    pub price: f64,
}

impl From<&Product> for ProductView {
    fn from(p: &Product) -> Self {
        Self {
            id: p.id.to_hex(),
            name: p.name.clone(),
            description: p.description.clone(),
            price: cents_to_units(p.price_cents),
        }
    }
}

/// A validated product to create.
#[derive(Debug, Clone)]
pub struct NewProduct {
    pub name: String,
    pub description: String,
    pub price_cents: i64,
}

impl NewProduct {
    pub fn parse(
        name: &str,
        description: Option<&str>,
        price: f64,
    ) -> Result<Self, (&'static str, &'static str)> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(("name", "must be 1 to 200 characters"));
        }
        let description = description.unwrap_or("").trim();
        if description.chars().count() > 5_000 {
            return Err(("description", "must be at most 5000 characters"));
        }
        let price_cents = parse_price_cents(price)?;
        Ok(Self {
            name: name.to_owned(),
            description: description.to_owned(),
            price_cents,
        })
    }
}

/// A price in currency units with at most two decimals, as cents.
pub fn parse_price_cents(price: f64) -> Result<i64, (&'static str, &'static str)> {
    if !price.is_finite() || price <= 0.0 {
        return Err(("price", "must be a positive number"));
    }
    let cents = (price * 100.0).round();
    if (price * 100.0 - cents).abs() > 1e-6 {
        return Err(("price", "must have at most two decimals"));
    }
    if cents < 1.0 {
        return Err(("price", "must be at least 0.01"));
    }
    if cents > MAX_PRICE_CENTS as f64 {
        return Err(("price", "must be at most 10000000"));
    }
    Ok(cents as i64)
}

pub fn cents_to_units(cents: i64) -> f64 {
    cents as f64 / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_positive_with_two_decimals() {
        assert_eq!(parse_price_cents(19.99), Ok(1999));
        assert_eq!(parse_price_cents(1.0), Ok(100));
        assert!(parse_price_cents(0.0).is_err());
        assert!(parse_price_cents(-1.0).is_err());
        assert!(parse_price_cents(1.234).is_err());
        assert!(parse_price_cents(f64::NAN).is_err());
        assert!(parse_price_cents(1e12).is_err());
        assert!(parse_price_cents(5e-324).is_err(), "rounds to zero cents");
        assert!(parse_price_cents(0.004).is_err());
    }
}
