//! GET /metrics: the Prometheus text exposition of `crate::metrics`.

use http::StatusCode;
use http::header::HeaderValue;

use crate::http::response::{HttpResult, bytes};

/// The Prometheus text exposition.
pub fn metrics() -> HttpResult {
    Ok(bytes(
        StatusCode::OK,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        ::bytes::Bytes::from(crate::metrics::render()),
    ))
}
