//! The one table of stable error codes (HTTP and WebSocket), the store
//! failures every module shares, and the cause-chain formatter. A leaf.
//!
//! Codes are a contract with clients (they match on them); messages are not.
//! Each module returns its own error or outcome enum that names its code;
//! only `http::error` turns them into the `{"error":{..}}` body, logs the
//! cause chain of unexpected ones and counts them.

use std::error::Error as StdError;
use std::fmt;

use http::StatusCode;

/// Declares the code table once: the enum, its strings, its statuses and `ALL`.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $code:ident => $text:literal, $status:ident;)*) => {
        /// Every stable error code with its HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $code,)*
        }

        impl ErrorCode {
            /// Every code, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[$(Self::$code,)*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$code => $text,)*
                }
            }

            pub const fn status(self) -> StatusCode {
                match self {
                    $(Self::$code => StatusCode::$status,)*
                }
            }
        }
    };
}

error_codes! {
    ValidationFailed => "VALIDATION_FAILED", BAD_REQUEST;
    PayloadTooLarge => "PAYLOAD_TOO_LARGE", PAYLOAD_TOO_LARGE;
    /// The request body did not fully arrive within `BODY_READ_TIMEOUT_MS`.
    RequestTimeout => "REQUEST_TIMEOUT", REQUEST_TIMEOUT;
    UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE", UNSUPPORTED_MEDIA_TYPE;
    Unauthorized => "UNAUTHORIZED", UNAUTHORIZED;
    InvalidToken => "INVALID_TOKEN", UNAUTHORIZED;
    InvalidCredentials => "INVALID_CREDENTIALS", UNAUTHORIZED;
    /// A valid token issued before its user's role changed or sessions
    /// were revoked: sign in again.
    TokenRevoked => "TOKEN_REVOKED", UNAUTHORIZED;
    Forbidden => "FORBIDDEN", FORBIDDEN;
    RouteNotFound => "ROUTE_NOT_FOUND", NOT_FOUND;
    MethodNotAllowed => "METHOD_NOT_ALLOWED", METHOD_NOT_ALLOWED;
    UpgradeRequired => "UPGRADE_REQUIRED", UPGRADE_REQUIRED;
    NotFound => "NOT_FOUND", NOT_FOUND;
    EmailAlreadyExists => "EMAIL_ALREADY_EXISTS", CONFLICT;
    ProductNotFound => "PRODUCT_NOT_FOUND", NOT_FOUND;
    FlashSaleNotFound => "FLASH_SALE_NOT_FOUND", NOT_FOUND;
    FlashSaleOverlap => "FLASH_SALE_OVERLAP", CONFLICT;
    FlashSaleNotStarted => "FLASH_SALE_NOT_STARTED", CONFLICT;
    FlashSaleEnded => "FLASH_SALE_ENDED", CONFLICT;
    SoldOut => "SOLD_OUT", CONFLICT;
    InsufficientStock => "INSUFFICIENT_STOCK", CONFLICT;
    TransactionLimitExceeded => "TRANSACTION_LIMIT_EXCEEDED", FORBIDDEN;
    UserPurchaseLimitReached => "USER_PURCHASE_LIMIT_REACHED", FORBIDDEN;
    IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED", UNPROCESSABLE_ENTITY;
    RateLimited => "RATE_LIMITED", TOO_MANY_REQUESTS;
    Blocked => "BLOCKED", FORBIDDEN;
    Unavailable => "UNAVAILABLE", SERVICE_UNAVAILABLE;
    Internal => "INTERNAL", INTERNAL_SERVER_ERROR;
    /// WebSocket only: a client message that is not a known event.
    BadMessage => "BAD_MESSAGE", BAD_REQUEST;
    /// WebSocket only: joining one more room than a connection may hold.
    RoomLimit => "ROOM_LIMIT", BAD_REQUEST;
    /// WebSocket only: a client message over the size limit.
    MessageTooLarge => "MESSAGE_TOO_LARGE", PAYLOAD_TOO_LARGE;
}

impl ErrorCode {
    /// Codes only sent in WebSocket `error` events, never in an HTTP answer.
    pub const fn is_websocket_only(self) -> bool {
        matches!(
            self,
            Self::BadMessage | Self::RoomLimit | Self::MessageTooLarge
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// The write happened on the primary but too few replicas confirmed it
    /// in time (`REDIS_ACK_REPLICAS`): answered 503 so the client retries
    /// with its Idempotency-Key.
    #[error("redis replication: {0}")]
    Unconfirmed(#[from] AckError),
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
                    // A demoted primary (failover) refuses writes until
                    // the client follows the new one.
                    || e.details().starts_with("READONLY")
                    || e.details().starts_with("TRYAGAIN")
                    || e.details().starts_with("CLUSTERDOWN")
                    // fred's answer while it has no connection to send on
                    // (Redis restarting): kind Unknown, but it is an outage.
                    || e.details().starts_with("Failed to route command")
                    // A command in flight when the connection was replaced
                    // (a failover): fred gives up after max_command_attempts.
                    || e.details().starts_with("Too many failed write attempts")
            }
            Self::Mongo(e) => {
                use mongodb::error::ErrorKind as K;
                matches!(
                    *e.kind,
                    K::Io(_) | K::ServerSelection { .. } | K::ConnectionPoolCleared { .. }
                )
            }
            Self::Corrupt(_) => false,
            Self::Unconfirmed(_) => true,
        }
    }
}

/// What a confirmation of a write by replicas came to (`redis::ack`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckError {
    /// WAIT timed out with fewer replicas than required holding the write.
    Short { acked: i64, wanted: u32 },
    /// WAIT itself failed (connection lost, server down).
    Failed(String),
}

impl std::fmt::Display for AckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Short { acked, wanted } => {
                write!(
                    f,
                    "{acked} of {wanted} replicas confirmed the write in time"
                )
            }
            Self::Failed(e) => write!(f, "WAIT failed: {e}"),
        }
    }
}

impl std::error::Error for AckError {}

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
        assert!(outage(
            ErrorKind::Unknown,
            "Too many failed write attempts."
        ));
        assert!(outage(ErrorKind::IO, "connection reset"));
        assert!(outage(
            ErrorKind::Unknown,
            "LOADING Redis is loading the dataset"
        ));
        assert!(outage(
            ErrorKind::Unknown,
            "NOREPLICAS Not enough good replicas to write."
        ));
        assert!(outage(
            ErrorKind::Unknown,
            "READONLY You can't write against a read only replica."
        ));
        assert!(outage(
            ErrorKind::Unknown,
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."
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
}
