//! Rendering responses: JSON bodies, the error body and its headers.
//!
//! This is the one place an [`ApiError`] (built in `http::error`) becomes an
//! HTTP response.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use crate::error::ErrorCode;
use crate::http::error::ApiError;

pub type Body = Full<Bytes>;
pub type HttpResponse = Response<Body>;
pub type HttpResult = Result<HttpResponse, ApiError>;

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A JSON response with `status`.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> HttpResponse {
    match serde_json::to_vec(value) {
        Ok(buf) => bytes(status, JSON, Bytes::from(buf)),
        Err(e) => error(&ApiError::internal("failed to serialise a response", &e)),
    }
}

pub fn ok<T: Serialize + ?Sized>(value: &T) -> HttpResult {
    Ok(json(StatusCode::OK, value))
}

pub fn created<T: Serialize + ?Sized>(value: &T) -> HttpResult {
    Ok(json(StatusCode::CREATED, value))
}

pub fn bytes(status: StatusCode, content_type: HeaderValue, body: Bytes) -> HttpResponse {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, content_type);
    res
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorInner<'a>,
}

#[derive(Serialize)]
struct ErrorInner<'a> {
    code: &'static str,
    message: &'a str,
    details: &'a serde_json::Value,
}

static EMPTY_DETAILS: serde_json::Value = serde_json::Value::Null;

/// The `{"error":{"code","message","details"}}` body with the code's status.
pub fn error(e: &ApiError) -> HttpResponse {
    let mut res = error_bytes(e.code, error_body(e));
    if let Some(secs) = e.retry_after {
        res.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    for (name, value) in e.headers.iter().flat_map(|h| h.iter()) {
        if let Ok(v) = HeaderValue::from_str(value) {
            res.headers_mut().insert(*name, v);
        }
    }
    res
}

/// The JSON error body of `e`.
pub fn error_body(e: &ApiError) -> Bytes {
    let body = ErrorBody {
        error: ErrorInner {
            code: e.code.as_str(),
            message: &e.message,
            details: e.details.as_deref().unwrap_or(&EMPTY_DETAILS),
        },
    };
    let buf = serde_json::to_vec(&body).unwrap_or_else(|_| {
        br#"{"error":{"code":"INTERNAL","message":"internal error","details":null}}"#.to_vec()
    });
    Bytes::from(buf)
}

/// An error response from an already rendered body (see [`error_body`]);
/// carries no Retry-After or other extra headers.
pub fn error_bytes(code: ErrorCode, body: Bytes) -> HttpResponse {
    let mut res = bytes(code.status(), JSON, body);
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
