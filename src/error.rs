//! The one table of error codes and the error body every endpoint returns.
//!
//! Codes are a contract with clients (they match on them); messages are not.
//! Module errors convert into [`ApiError`] here, and `http::response` renders
//! it as `{"error":{"code","message","details"}}`. Unexpected errors are logged
//! with their cause chain once and reach the client only as `INTERNAL`.

use std::error::Error as StdError;
use std::fmt;

use http::StatusCode;
use serde_json::Value;

/// Every stable error code with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    ValidationFailed,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unauthorized,
    InvalidToken,
    InvalidCredentials,
    Forbidden,
    RouteNotFound,
    MethodNotAllowed,
    UpgradeRequired,
    NotFound,
    EmailAlreadyExists,
    ProductNotFound,
    FlashSaleNotFound,
    FlashSaleOverlap,
    FlashSaleNotStarted,
    FlashSaleEnded,
    SoldOut,
    InsufficientStock,
    TransactionLimitExceeded,
    UserPurchaseLimitReached,
    IdempotencyKeyReused,
    RateLimited,
    Blocked,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ValidationFailed => "VALIDATION_FAILED",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::InvalidToken => "INVALID_TOKEN",
            Self::InvalidCredentials => "INVALID_CREDENTIALS",
            Self::Forbidden => "FORBIDDEN",
            Self::RouteNotFound => "ROUTE_NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::UpgradeRequired => "UPGRADE_REQUIRED",
            Self::NotFound => "NOT_FOUND",
            Self::EmailAlreadyExists => "EMAIL_ALREADY_EXISTS",
            Self::ProductNotFound => "PRODUCT_NOT_FOUND",
            Self::FlashSaleNotFound => "FLASH_SALE_NOT_FOUND",
            Self::FlashSaleOverlap => "FLASH_SALE_OVERLAP",
            Self::FlashSaleNotStarted => "FLASH_SALE_NOT_STARTED",
            Self::FlashSaleEnded => "FLASH_SALE_ENDED",
            Self::SoldOut => "SOLD_OUT",
            Self::InsufficientStock => "INSUFFICIENT_STOCK",
            Self::TransactionLimitExceeded => "TRANSACTION_LIMIT_EXCEEDED",
            Self::UserPurchaseLimitReached => "USER_PURCHASE_LIMIT_REACHED",
            Self::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Self::RateLimited => "RATE_LIMITED",
            Self::Blocked => "BLOCKED",
            Self::Unavailable => "UNAVAILABLE",
            Self::Internal => "INTERNAL",
        }
    }

    pub const fn status(self) -> StatusCode {
        match self {
            Self::ValidationFailed => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized | Self::InvalidToken | Self::InvalidCredentials => {
                StatusCode::UNAUTHORIZED
            }
            Self::Forbidden
            | Self::TransactionLimitExceeded
            | Self::UserPurchaseLimitReached
            | Self::Blocked => StatusCode::FORBIDDEN,
            Self::RouteNotFound
            | Self::NotFound
            | Self::ProductNotFound
            | Self::FlashSaleNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
            Self::EmailAlreadyExists
            | Self::FlashSaleOverlap
            | Self::FlashSaleNotStarted
            | Self::FlashSaleEnded
            | Self::SoldOut
            | Self::InsufficientStock => StatusCode::CONFLICT,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Every code, for documentation and tests.
    pub const ALL: [ErrorCode; 26] = [
        Self::ValidationFailed,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::Unauthorized,
        Self::InvalidToken,
        Self::InvalidCredentials,
        Self::Forbidden,
        Self::RouteNotFound,
        Self::MethodNotAllowed,
        Self::UpgradeRequired,
        Self::NotFound,
        Self::EmailAlreadyExists,
        Self::ProductNotFound,
        Self::FlashSaleNotFound,
        Self::FlashSaleOverlap,
        Self::FlashSaleNotStarted,
        Self::FlashSaleEnded,
        Self::SoldOut,
        Self::InsufficientStock,
        Self::TransactionLimitExceeded,
        Self::UserPurchaseLimitReached,
        Self::IdempotencyKeyReused,
        Self::RateLimited,
        Self::Blocked,
        Self::Unavailable,
        Self::Internal,
    ];
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Box<Value>>,
    /// Seconds for a `Retry-After` header (429 and 503).
    pub retry_after: Option<u64>,
    /// Further response headers (the RateLimit fields of a 429). Boxed, like
    /// the details, to keep the error small on the hot path.
    pub headers: Option<Box<Vec<(&'static str, String)>>>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
            retry_after: None,
            headers: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(Box::new(details));
        self
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers
            .get_or_insert_with(Default::default)
            .push((name, value));
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationFailed, message)
    }

    /// A validation failure on one field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(ErrorCode::ValidationFailed, format!("{field}: {message}"))
            .with_details(serde_json::json!({ "field": field }))
    }

    pub fn unavailable() -> Self {
        Self::new(
            ErrorCode::Unavailable,
            "the service is temporarily unavailable, retry shortly",
        )
        .with_retry_after(1)
    }

    /// Logs an unexpected error with its cause chain and hides it from the client.
    pub fn internal(context: &str, err: &(dyn StdError + 'static)) -> Self {
        tracing::error!(error = %ErrorChain(err), "{context}");
        Self::new(ErrorCode::Internal, "internal error")
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl StdError for ApiError {}

/// Formats an error with every `source()` in one line: `a: b: c`.
#[derive(Debug)]
pub struct ErrorChain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = self.0.source();
        while let Some(e) = cur {
            write!(f, ": {e}")?;
            cur = e.source();
        }
        Ok(())
    }
}

/// Infrastructure failures of the stores, mapped to 503 (not the client's fault,
/// and retrying later can succeed) or 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    #[error("{0}")]
    Corrupt(String),
}

impl StoreError {
    /// True when the store could not be reached (as opposed to a logic error).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Redis(e) => {
                use fred::error::ErrorKind as K;
                matches!(
                    e.kind(),
                    K::IO | K::Timeout | K::Canceled | K::Backpressure | K::Cluster | K::Routing
                ) || e.details().starts_with("BUSY")
                    || e.details().starts_with("LOADING")
                    || e.details().starts_with("MASTERDOWN")
                    || e.details().starts_with("NOREPLICAS")
                    || e.details().starts_with("TRYAGAIN")
                    || e.details().starts_with("CLUSTERDOWN")
                    // fred's answer while it has no connection to send on
                    // (Redis restarting): kind Unknown, but it is an outage.
                    || e.details().starts_with("Failed to route command")
            }
            Self::Mongo(e) => {
                use mongodb::error::ErrorKind as K;
                matches!(
                    *e.kind,
                    K::Io(_) | K::ServerSelection { .. } | K::ConnectionPoolCleared { .. }
                )
            }
            Self::Corrupt(_) => false,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        crate::metrics::store_error(&e);
        if e.is_unavailable() {
            tracing::warn!(error = %ErrorChain(&e), "store unavailable");
            ApiError::unavailable()
        } else {
            ApiError::internal("store error", &e)
        }
    }
}

impl From<fred::error::Error> for ApiError {
    fn from(e: fred::error::Error) -> Self {
        StoreError::from(e).into()
    }
}

impl From<mongodb::error::Error> for ApiError {
    fn from(e: mongodb::error::Error) -> Self {
        StoreError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn redis_outages_are_unavailable_and_script_errors_are_not() {
        use fred::error::{Error, ErrorKind};
        let outage =
            |kind, msg: &'static str| StoreError::Redis(Error::new(kind, msg)).is_unavailable();
        assert!(outage(ErrorKind::Unknown, "Failed to route command."));
        assert!(outage(ErrorKind::Routing, "Failed to route command."));
        assert!(outage(ErrorKind::IO, "connection reset"));
        assert!(outage(
            ErrorKind::Unknown,
            "LOADING Redis is loading the dataset"
        ));
        assert!(!outage(
            ErrorKind::Unknown,
            "ERR user_script:1: bad argument"
        ));
    }

    #[test]
    fn codes_are_unique_upper_snake() {
        let mut seen = HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "duplicate {c}");
            assert!(
                c.as_str()
                    .chars()
                    .all(|ch| ch.is_ascii_uppercase() || ch == '_')
            );
        }
    }

    #[test]
    fn purchase_codes_keep_their_statuses() {
        assert_eq!(ErrorCode::SoldOut.status(), 409);
        assert_eq!(ErrorCode::FlashSaleNotFound.status(), 404);
        assert_eq!(ErrorCode::TransactionLimitExceeded.status(), 403);
        assert_eq!(ErrorCode::UserPurchaseLimitReached.status(), 403);
        assert_eq!(ErrorCode::RateLimited.status(), 429);
        assert_eq!(ErrorCode::Unavailable.status(), 503);
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        assert_eq!(
            ApiError::new(ErrorCode::RateLimited, "x")
                .with_retry_after(0)
                .retry_after,
            Some(1)
        );
    }
}
