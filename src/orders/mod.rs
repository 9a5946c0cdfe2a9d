//! Orders: the MongoDB record of accepted purchases and the write-behind that
//! moves them there from the sales' Redis streams.

mod model;
mod reconcile;
pub(crate) mod store;
pub(crate) mod write_behind;

pub use model::{Order, OrderView, order_id};
pub use reconcile::{ReconcileReport, Reconciler};
pub use store::{BuyerSummary, OrderStore, SaleSummary};
pub use write_behind::{FlushReport, WriteBehind, WriteBehindError};
