//! HTTP: the hyper server, the router, request extraction, handlers, and the
//! one place errors become responses (`error`, rendered by `response`).

pub mod error;
pub mod extract;
pub mod handlers;
pub mod response;
pub mod router;
pub mod server;

pub use router::{ROUTES, RouteSpec};
