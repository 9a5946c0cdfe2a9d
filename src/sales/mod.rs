//! Flash sales: validation, storage in MongoDB, and the lifecycle operations
//! (create, rerun, cancel, re-seed after Redis lost data); their hot state in
//! Redis is `crate::hot`.

mod model;
mod service;
pub(crate) mod store;

pub use model::{
    EndReason, FlashSale, NewFlashSale, SaleDefaults, SaleInput, SaleStatus, SaleView,
};
pub use service::RerunInput;
pub use service::{SaleError, SaleService};
pub use store::SaleStore;
