//! The one place module errors and refusals become the client's error: each
//! module returns its own enum with a stable code (`crate::error::ErrorCode`),
//! and the `From` impls here give it its message, details and headers.
//! Unexpected causes are logged here with their chain and counted, and reach
//! the client only as `INTERNAL` (or `UNAVAILABLE` for an outage).
//! `http::response` renders the result.

use std::error::Error as StdError;
use std::fmt;

use serde_json::{Value, json};

use crate::auth::{AuthError, PasswordError, UserError};
use crate::engine::Refusal;
use crate::error::{ErrorChain, ErrorCode, StoreError};
use crate::fraud::{Denied, Limited};
use crate::realtime::Refused;
use crate::sales::SaleError;

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

// === impl From<module errors> for ApiError ===

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

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::EmailTaken => Self::new(e.code(), e.to_string()),
            UserError::Store(s) => s.into(),
        }
    }
}

impl From<PasswordError> for ApiError {
    /// A busy hasher is an overload (503 with Retry-After); anything else is
    /// unexpected.
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Busy => {
                crate::metrics::hash_refused();
                Self::new(
                    ErrorCode::Unavailable,
                    "too many sign-ins at once, retry shortly",
                )
                .with_retry_after(1)
            }
            other => ApiError::internal("password hashing failed", &other),
        }
    }
}

impl From<Refused> for ApiError {
    /// A WebSocket handshake past a cap: the instance's is an overload (503,
    /// another instance may have room), the user's and the address's are
    /// rate limits (429). Either way, retry in a few seconds.
    fn from(r: Refused) -> Self {
        const RETRY_AFTER_SECS: u64 = 5;
        let (code, message, limit) = match r {
            Refused::Full => (
                ErrorCode::Unavailable,
                "this instance holds as many WebSockets as it may; retry shortly",
                "ws-per-instance",
            ),
            Refused::User => (
                ErrorCode::RateLimited,
                "too many WebSocket connections for this account",
                "ws-per-user",
            ),
            Refused::Address => (
                ErrorCode::RateLimited,
                "too many WebSocket connections from this address",
                "ws-per-ip",
            ),
        };
        let e = Self::new(code, message).with_retry_after(RETRY_AFTER_SECS);
        if code == ErrorCode::RateLimited {
            e.with_details(json!({ "limit": limit }))
        } else {
            e
        }
    }
}

impl From<Limited> for ApiError {
    /// 429 RATE_LIMITED with Retry-After and the IETF RateLimit fields.
    fn from(l: Limited) -> Self {
        Self::new(ErrorCode::RateLimited, "too many requests, slow down")
            .with_details(json!({ "limit": l.name, "retryAfterSeconds": l.retry_after_secs }))
            .with_retry_after(l.retry_after_secs)
            .with_header(
                "ratelimit-policy",
                format!("\"{}\";q={};w={}", l.name, l.limit, l.window_secs),
            )
            .with_header(
                "ratelimit",
                format!("\"{}\";r=0;t={}", l.name, l.retry_after_secs.max(1)),
            )
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Blocked { rule, message } => {
                Self::new(ErrorCode::Blocked, message).with_details(json!({ "rule": rule }))
            }
            Denied::Limited(l) => l.into(),
        }
    }
}

impl From<SaleError> for ApiError {
    fn from(e: SaleError) -> Self {
        match e {
            SaleError::Invalid(f, m) => ApiError::field(f, m),
            SaleError::Overlap(ref ids) => {
                let details = json!({ "overlapping": ids });
                Self::new(e.code(), e.to_string()).with_details(details)
            }
            SaleError::Busy => ApiError::unavailable(),
            SaleError::Store(s) => s.into(),
            other => Self::new(other.code(), other.to_string()),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let details: Value;
        let message: String;
        let mut retry_after = None;
        match r {
            Refusal::NotFound => return Self::new(r.code(), "flash sale not found"),
            Refusal::NotStarted { start_ms } => {
                message = "the flash sale has not started yet".to_owned();
                details = json!({ "startTime": crate::clock::rfc3339_ms(start_ms) });
            }
            Refusal::Ended { cancelled, .. } => {
                message = "the flash sale has ended".to_owned();
                details = json!({ "reason": if cancelled { "cancelled" } else { "time-ended" } });
            }
            Refusal::SoldOut => {
                message = "the flash sale is sold out".to_owned();
                details = json!({ "availableUnits": 0 });
            }
            Refusal::InsufficientStock { available } => {
                message = format!("only {available} units are left");
                details = json!({ "availableUnits": available });
            }
            Refusal::TransactionLimit {
                max_per_transaction,
            } => {
                message = format!("at most {max_per_transaction} units per purchase");
                details = json!({ "maxPerTransaction": max_per_transaction });
            }
            Refusal::UserLimit {
                remaining,
                max_per_user,
            } => {
                message = format!("you may buy {remaining} more units of this sale");
                details =
                    json!({ "remainingAllowance": remaining.max(0), "maxPerUser": max_per_user });
            }
            Refusal::IdempotencyMismatch { first_quantity } => {
                message = "this Idempotency-Key was used for a different purchase".to_owned();
                details = json!({ "firstQuantity": first_quantity });
            }
            Refusal::IdempotencyOtherSale { sale } => {
                message = "this Idempotency-Key was used on another flash sale".to_owned();
                details = json!({ "flashSaleId": sale.hex() });
            }
            Refusal::AttemptLimit {
                limit,
                retry_after_ms,
            } => {
                message = format!("at most {limit} purchase attempts per window for this sale");
                details = json!({ "limit": "attempts-per-sale", "max": limit });
                retry_after = Some((retry_after_ms as u64).div_ceil(1000));
            }
            Refusal::IpAccountLimit { max_accounts } => {
                message = "too many accounts have bought this sale from your address".to_owned();
                details = json!({ "rule": "multi-account-ip", "maxAccountsPerIp": max_accounts });
            }
        }
        let e = Self::new(r.code(), message).with_details(details);
        match retry_after {
            Some(secs) => e.with_retry_after(secs),
            None => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_at_least_one_second() {
        assert_eq!(
            ApiError::new(ErrorCode::RateLimited, "x")
                .with_retry_after(0)
                .retry_after,
            Some(1)
        );
    }

    #[test]
    fn a_rate_limit_is_429_with_retry_after_and_ratelimit_fields() {
        let e = ApiError::from(Limited {
            name: "signin-ip",
            limit: 30,
            window_secs: 60,
            retry_after_secs: 4,
        });
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert_eq!(e.retry_after, Some(4));
        let headers = e.headers.as_deref().cloned().unwrap_or_default();
        assert!(
            headers
                .iter()
                .any(|(n, v)| *n == "ratelimit-policy" && v == "\"signin-ip\";q=30;w=60")
        );
    }

    #[test]
    fn every_refusal_keeps_its_code_and_status() {
        let cases = [
            (Refusal::NotFound, "FLASH_SALE_NOT_FOUND", 404),
            (Refusal::SoldOut, "SOLD_OUT", 409),
            (
                Refusal::InsufficientStock { available: 1 },
                "INSUFFICIENT_STOCK",
                409,
            ),
            (
                Refusal::TransactionLimit {
                    max_per_transaction: 2,
                },
                "TRANSACTION_LIMIT_EXCEEDED",
                403,
            ),
            (
                Refusal::UserLimit {
                    remaining: 0,
                    max_per_user: 2,
                },
                "USER_PURCHASE_LIMIT_REACHED",
                403,
            ),
            (
                Refusal::IdempotencyMismatch { first_quantity: 1 },
                "IDEMPOTENCY_KEY_REUSED",
                422,
            ),
            (
                Refusal::IdempotencyOtherSale {
                    sale: crate::ids::SaleId::new(),
                },
                "IDEMPOTENCY_KEY_REUSED",
                422,
            ),
            (
                Refusal::AttemptLimit {
                    limit: 3,
                    retry_after_ms: 1500,
                },
                "RATE_LIMITED",
                429,
            ),
            (Refusal::IpAccountLimit { max_accounts: 2 }, "BLOCKED", 403),
        ];
        for (r, code, status) in cases {
            let e = ApiError::from(r);
            assert_eq!((e.code.as_str(), e.code.status().as_u16()), (code, status));
        }
        assert_eq!(
            ApiError::from(Refusal::AttemptLimit {
                limit: 3,
                retry_after_ms: 1500
            })
            .retry_after,
            Some(2)
        );
    }
}
