//! Flash sales: validation, storage in MongoDB, hot state in Redis, and the
//! lifecycle operations (create, rerun, cancel, re-seed after Redis lost data).

mod model;
mod service;
pub(crate) mod store;

pub use model::{
    EndReason, FlashSale, NewFlashSale, SaleDefaults, SaleInput, SaleStatus, SaleView,
    rfc3339 as model_rfc3339,
};
pub use service::{RerunInput, now_ms};
pub use service::{SaleError, SaleService};
pub use store::SaleStore;
