//! Products: created by admins, listed and read by any signed-in user.
//! Prices are kept in integer cents so sale prices round exactly once.

mod product;
mod store;

pub use product::{NewProduct, Product, ProductView, cents_to_units, parse_price_cents};
pub use store::ProductStore;
