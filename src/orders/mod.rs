//! Orders: the MongoDB record of accepted purchases, and the write-behind
//! sink that moves them there from the sales' Redis streams.

mod model;
mod sink;
mod store;

pub use model::{Order, OrderView, order_id};
pub use store::{BuyerSummary, OrderStore, SaleSummary};
