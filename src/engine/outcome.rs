//! The purchase script's reply, decoded into an outcome enum.
//! Business refusals are outcomes, not errors.

use crate::error::ErrorCode;
use crate::ids::SaleId;

/// An accepted (or replayed) order as the script recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    pub seq: i64,
    pub remaining: i64,
    pub purchased_at_ms: i64,
    pub unit_price_cents: i64,
    pub quantity: i64,
}

/// What a purchase came to: an order (new or replayed), or a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurchaseOutcome {
    Accepted {
        order: Placed,
        user_total: i64,
    },
    /// A retry with the same Idempotency-Key: the first order, nothing sold.
    Duplicate {
        order: Placed,
    },
    Refused(Refusal),
}

/// Why a purchase sold nothing. A type of its own, so code that renders a
/// refusal cannot be handed a success. All but `IdempotencyOtherSale` come
/// from the script; that one (the key already names a purchase on another
/// sale) from the check on `{user:<id>}:idem:<key>` before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    NotStarted { start_ms: i64 },
    Ended { end_ms: i64, cancelled: bool },
    SoldOut,
    InsufficientStock { available: i64 },
    TransactionLimit { max_per_transaction: i64 },
    UserLimit { remaining: i64, max_per_user: i64 },
    IdempotencyMismatch { first_quantity: i64 },
    IdempotencyOtherSale { sale: SaleId },
    AttemptLimit { limit: i64, retry_after_ms: i64 },
    IpAccountLimit { max_accounts: i64 },
}

/// The reply did not have the documented shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected purchase script reply: {0:?}")]
pub struct BadReply(pub Vec<i64>);

impl PurchaseOutcome {
    /// Decodes the reply documented at the top of `lua/purchase.lua`.
    pub fn decode(r: &[i64], quantity: i64) -> Result<Self, BadReply> {
        let bad = || BadReply(r.to_vec());
        let at = |i: usize| r.get(i).copied().ok_or_else(bad);
        Ok(match at(0)? {
            0 => Self::Accepted {
                order: Placed {
                    seq: at(1)?,
                    remaining: at(2)?,
                    purchased_at_ms: at(3)?,
                    unit_price_cents: at(4)?,
                    quantity,
                },
                user_total: at(5)?,
            },
            1 => Self::Refused(Refusal::NotFound),
            2 => Self::Refused(Refusal::NotStarted { start_ms: at(1)? }),
            3 => Self::Refused(Refusal::Ended {
                end_ms: at(1)?,
                cancelled: at(2)? == 1,
            }),
            4 => Self::Refused(Refusal::SoldOut),
            5 => Self::Refused(Refusal::InsufficientStock { available: at(1)? }),
            6 => Self::Refused(Refusal::TransactionLimit {
                max_per_transaction: at(1)?,
            }),
            7 => Self::Refused(Refusal::UserLimit {
                remaining: at(1)?,
                max_per_user: at(2)?,
            }),
            8 => Self::Duplicate {
                order: Placed {
                    seq: at(1)?,
                    remaining: at(2)?,
                    purchased_at_ms: at(3)?,
                    unit_price_cents: at(4)?,
                    quantity: at(5)?,
                },
            },
            9 => Self::Refused(Refusal::IdempotencyMismatch {
                first_quantity: at(1)?,
            }),
            10 => Self::Refused(Refusal::AttemptLimit {
                limit: at(1)?,
                retry_after_ms: at(2)?,
            }),
            11 => Self::Refused(Refusal::IpAccountLimit {
                max_accounts: at(1)?,
            }),
            _ => return Err(bad()),
        })
    }

    /// The metric/log label of this outcome.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Accepted { .. } => "accepted",
            Self::Duplicate { .. } => "duplicate",
            Self::Refused(r) => r.label(),
        }
    }
}

impl Refusal {
    /// The stable error code the client sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound => ErrorCode::FlashSaleNotFound,
            Self::NotStarted { .. } => ErrorCode::FlashSaleNotStarted,
            Self::Ended { .. } => ErrorCode::FlashSaleEnded,
            Self::SoldOut => ErrorCode::SoldOut,
            Self::InsufficientStock { .. } => ErrorCode::InsufficientStock,
            Self::TransactionLimit { .. } => ErrorCode::TransactionLimitExceeded,
            Self::UserLimit { .. } => ErrorCode::UserPurchaseLimitReached,
            Self::IdempotencyMismatch { .. } | Self::IdempotencyOtherSale { .. } => {
                ErrorCode::IdempotencyKeyReused
            }
            Self::AttemptLimit { .. } => ErrorCode::RateLimited,
            Self::IpAccountLimit { .. } => ErrorCode::Blocked,
        }
    }

    /// The metric/log label of this refusal.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::NotStarted { .. } => "not_started",
            Self::Ended { .. } => "ended",
            Self::SoldOut => "sold_out",
            Self::InsufficientStock { .. } => "insufficient_stock",
            Self::TransactionLimit { .. } => "transaction_limit",
            Self::UserLimit { .. } => "user_limit",
            Self::IdempotencyMismatch { .. } => "idempotency_mismatch",
            Self::IdempotencyOtherSale { .. } => "idempotency_other_sale",
            Self::AttemptLimit { .. } => "attempt_limit",
            Self::IpAccountLimit { .. } => "ip_account_limit",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reply_shape_decodes() {
        let placed = Placed {
            seq: 7,
            remaining: 3,
            purchased_at_ms: 99,
            unit_price_cents: 500,
            quantity: 2,
        };
        assert_eq!(
            PurchaseOutcome::decode(&[0, 7, 3, 99, 500, 2], 2).unwrap(),
            PurchaseOutcome::Accepted {
                order: placed,
                user_total: 2
            }
        );
        assert_eq!(
            PurchaseOutcome::decode(&[1], 1).unwrap(),
            PurchaseOutcome::Refused(Refusal::NotFound)
        );
        assert_eq!(
            PurchaseOutcome::decode(&[2, 10, 5], 1).unwrap(),
            PurchaseOutcome::Refused(Refusal::NotStarted { start_ms: 10 })
        );
        assert_eq!(
            PurchaseOutcome::decode(&[3, 10, 1], 1).unwrap(),
            PurchaseOutcome::Refused(Refusal::Ended {
                end_ms: 10,
                cancelled: true
            })
        );
        assert_eq!(
            PurchaseOutcome::decode(&[4], 1).unwrap(),
            PurchaseOutcome::Refused(Refusal::SoldOut)
        );
        assert_eq!(
            PurchaseOutcome::decode(&[5, 1], 2).unwrap(),
            PurchaseOutcome::Refused(Refusal::InsufficientStock { available: 1 })
        );
        assert_eq!(
            PurchaseOutcome::decode(&[6, 2], 3).unwrap(),
            PurchaseOutcome::Refused(Refusal::TransactionLimit {
                max_per_transaction: 2
            })
        );
        assert_eq!(
            PurchaseOutcome::decode(&[7, 1, 3], 2).unwrap(),
            PurchaseOutcome::Refused(Refusal::UserLimit {
                remaining: 1,
                max_per_user: 3
            })
        );
        assert_eq!(
            PurchaseOutcome::decode(&[8, 7, 3, 99, 500, 2], 2).unwrap(),
            PurchaseOutcome::Duplicate { order: placed }
        );
        assert_eq!(
            PurchaseOutcome::decode(&[10, 30, 900], 1).unwrap(),
            PurchaseOutcome::Refused(Refusal::AttemptLimit {
                limit: 30,
                retry_after_ms: 900
            })
        );
        assert_eq!(
            PurchaseOutcome::decode(&[11, 4], 1).unwrap(),
            PurchaseOutcome::Refused(Refusal::IpAccountLimit { max_accounts: 4 })
        );
        assert_eq!(
            PurchaseOutcome::decode(&[9, 1], 2).unwrap(),
            PurchaseOutcome::Refused(Refusal::IdempotencyMismatch { first_quantity: 1 })
        );
    }

    #[test]
    fn malformed_replies_are_errors() {
        assert!(PurchaseOutcome::decode(&[], 1).is_err());
        assert!(PurchaseOutcome::decode(&[0, 1], 1).is_err());
        assert!(PurchaseOutcome::decode(&[42], 1).is_err());
    }
}
