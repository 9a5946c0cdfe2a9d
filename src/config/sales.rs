//! The `sales` section: the limits a new sale gets when its request leaves
//! them out, and how long purchase idempotency keys are remembered.

use std::time::Duration;

use super::{ConfigError, Reader, Source};

pub const ENV_DEFAULT_MAX_PER_USER: &str = "DEFAULT_MAX_PER_USER";
pub const DEFAULT_MAX_PER_USER: u32 = 2;
pub const ENV_DEFAULT_MAX_PER_TRANSACTION: &str = "DEFAULT_MAX_PER_TRANSACTION";
pub const DEFAULT_MAX_PER_TRANSACTION: u32 = 2;
pub const ENV_DEFAULT_MAX_ACCOUNTS_PER_IP: &str = "DEFAULT_MAX_ACCOUNTS_PER_IP";
pub const DEFAULT_MAX_ACCOUNTS_PER_IP: u32 = 10;
pub const ENV_IDEMPOTENCY_TTL_SECONDS: &str = "IDEMPOTENCY_TTL_SECONDS";
pub const DEFAULT_IDEMPOTENCY_TTL_SECONDS: u64 = 24 * 3_600;

#[derive(Debug, Clone)]
pub struct SalesConfig {
    pub default_max_per_user: u32,
    pub default_max_per_transaction: u32,
    pub default_max_accounts_per_ip: u32,
    pub idempotency_ttl: Duration,
}

/// Reads `DEFAULT_MAX_PER_USER`, `DEFAULT_MAX_PER_TRANSACTION` (at most the
/// former), `DEFAULT_MAX_ACCOUNTS_PER_IP` and `IDEMPOTENCY_TTL_SECONDS`.
pub(super) fn read(src: &dyn Source) -> Result<SalesConfig, ConfigError> {
    let r = Reader::new(src);
    let limit = |var, default, min| r.ranged(var, default, min, 1_000_000);
    let sales = SalesConfig {
        default_max_per_user: limit(ENV_DEFAULT_MAX_PER_USER, DEFAULT_MAX_PER_USER, 1)?,
        default_max_per_transaction: limit(
            ENV_DEFAULT_MAX_PER_TRANSACTION,
            DEFAULT_MAX_PER_TRANSACTION,
            1,
        )?,
        default_max_accounts_per_ip: limit(
            ENV_DEFAULT_MAX_ACCOUNTS_PER_IP,
            DEFAULT_MAX_ACCOUNTS_PER_IP,
            0,
        )?,
        idempotency_ttl: Duration::from_secs(r.ranged(
            ENV_IDEMPOTENCY_TTL_SECONDS,
            DEFAULT_IDEMPOTENCY_TTL_SECONDS,
            1,
            30 * 24 * 3_600,
        )?),
    };
    if sales.default_max_per_transaction > sales.default_max_per_user {
        return Err(ConfigError::new(
            ENV_DEFAULT_MAX_PER_TRANSACTION,
            "must not exceed DEFAULT_MAX_PER_USER",
        ));
    }
    Ok(sales)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{map, refused};
    use super::*;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = read(&map(&[])).unwrap();
        assert_eq!(c.default_max_per_user, DEFAULT_MAX_PER_USER);
        assert_eq!(c.default_max_per_transaction, DEFAULT_MAX_PER_TRANSACTION);
        assert_eq!(c.default_max_accounts_per_ip, DEFAULT_MAX_ACCOUNTS_PER_IP);
        assert_eq!(c.idempotency_ttl, Duration::from_secs(86_400));
    }

    #[test]
    fn per_transaction_above_per_user_is_refused() {
        let m = [
            (ENV_DEFAULT_MAX_PER_USER, "3"),
            (ENV_DEFAULT_MAX_PER_TRANSACTION, "4"),
        ];
        assert_eq!(refused(read, &m), ENV_DEFAULT_MAX_PER_TRANSACTION);
    }

    #[test]
    fn each_bad_sales_value_names_its_variable() {
        for (var, bad) in [
            (ENV_DEFAULT_MAX_PER_USER, "0"),
            (ENV_DEFAULT_MAX_ACCOUNTS_PER_IP, "-1"),
            (ENV_IDEMPOTENCY_TTL_SECONDS, "0"),
        ] {
            assert_eq!(refused(read, &[(var, bad)]), var);
        }
    }
}
