//! GET /openapi.json: the API description, the repository's `openapi.json`
//! compiled into the binary (`tests/openapi.rs` checks it against the router).

use bytes::Bytes;
use http::StatusCode;
use http::header::HeaderValue;

use crate::http::response::{self, HttpResult};

/// The OpenAPI 3.1 document of every route.
pub const DOCUMENT: &str = include_str!("../../../openapi.json");

pub fn document() -> HttpResult {
    Ok(response::bytes(
        StatusCode::OK,
        HeaderValue::from_static("application/json"),
        Bytes::from_static(DOCUMENT.as_bytes()),
    ))
}
