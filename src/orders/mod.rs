//! Orders: the MongoDB record of accepted purchases and the write-behind that
//! moves them there from the sales' Redis streams.

mod model;
pub(crate) mod store;
pub(crate) mod write_behind;

pub use model::{Order, OrderView, order_id};
pub use store::{BuyerSummary, OrderStore, SaleSummary};
pub use write_behind::{FlushReport, WriteBehind, WriteBehindError};
