//! Orders: the MongoDB record of accepted purchases, the write-behind sink
//! that moves them there from the sales' Redis streams, and the reader of
//! the orders still waiting in those streams.

mod model;
mod pending;
mod sink;
mod store;

pub use model::{Order, OrderStatus, OrderView, order_id};
pub use pending::{MAX_ENTRIES_PER_SALE, PendingOrders};
pub use store::{BuyerSummary, OrderStore, SaleSummary};
