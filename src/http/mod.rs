//! HTTP: the hyper server, the router, request extraction and responses.

pub mod extract;
pub mod handlers;
pub mod response;
pub mod router;
pub mod server;

pub use router::{ROUTES, RouteSpec};
