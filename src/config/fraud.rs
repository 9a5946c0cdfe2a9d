//! The `fraud` section: rate limits, purchase-attempt windows, IP deny/allow
//! lists and the behavioural rules with what each does when it fires.

use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

use super::{ConfigError, Reader, Source};

pub const ENV_RATE_PURCHASE_PER_IP: &str = "RATE_PURCHASE_PER_IP";
pub const DEFAULT_RATE_PURCHASE_PER_IP: u32 = 50;
pub const ENV_RATE_PURCHASE_PER_USER: &str = "RATE_PURCHASE_PER_USER";
pub const DEFAULT_RATE_PURCHASE_PER_USER: u32 = 5;
pub const ENV_RATE_SIGNIN_PER_IP: &str = "RATE_SIGNIN_PER_IP";
pub const DEFAULT_RATE_SIGNIN_PER_IP: u32 = 30;
/// Sign-ins per minute per account from one address (IPv6 by /64).
pub const ENV_RATE_SIGNIN_PER_ACCOUNT: &str = "RATE_SIGNIN_PER_ACCOUNT";
pub const DEFAULT_RATE_SIGNIN_PER_ACCOUNT: u32 = 5;
/// Sign-ins per minute per account from all addresses together: higher, so a
/// flood from a few addresses cannot lock the owner out.
pub const ENV_RATE_SIGNIN_PER_ACCOUNT_GLOBAL: &str = "RATE_SIGNIN_PER_ACCOUNT_GLOBAL";
pub const DEFAULT_RATE_SIGNIN_PER_ACCOUNT_GLOBAL: u32 = 50;
pub const ENV_RATE_SIGNUP_PER_IP: &str = "RATE_SIGNUP_PER_IP";
pub const DEFAULT_RATE_SIGNUP_PER_IP: u32 = 10;
/// Failed sign-ins one address may make per window before its sign-ins are
/// refused (429) until the window ends, with no lookup and no hash.
pub const ENV_SIGNIN_FAILURES_PER_IP: &str = "SIGNIN_FAILURES_PER_IP";
pub const DEFAULT_SIGNIN_FAILURES_PER_IP: u32 = 10;
pub const ENV_SIGNIN_FAILURE_WINDOW_SECS: &str = "SIGNIN_FAILURE_WINDOW_SECS";
pub const DEFAULT_SIGNIN_FAILURE_WINDOW_SECS: u64 = 300;
pub const ENV_RATE_LIMIT_MAX_KEYS: &str = "RATE_LIMIT_MAX_KEYS";
pub const DEFAULT_RATE_LIMIT_MAX_KEYS: usize = 100_000;
pub const ENV_PURCHASE_ATTEMPTS_PER_WINDOW: &str = "PURCHASE_ATTEMPTS_PER_WINDOW";
pub const DEFAULT_PURCHASE_ATTEMPTS_PER_WINDOW: u32 = 30;
pub const ENV_PURCHASE_ATTEMPTS_WINDOW_MS: &str = "PURCHASE_ATTEMPTS_WINDOW_MS";
pub const DEFAULT_PURCHASE_ATTEMPTS_WINDOW_MS: u64 = 60_000;
pub const ENV_IP_DENY: &str = "IP_DENY";
pub const ENV_IP_ALLOW: &str = "IP_ALLOW";
pub const ENV_FRAUD_NEW_ACCOUNT_SECONDS: &str = "FRAUD_NEW_ACCOUNT_SECONDS";
pub const DEFAULT_FRAUD_NEW_ACCOUNT_SECONDS: u64 = 60;
pub const ENV_FRAUD_RULE_NEW_ACCOUNT: &str = "FRAUD_RULE_NEW_ACCOUNT";
pub const ENV_FRAUD_REFUSAL_BURST: &str = "FRAUD_REFUSAL_BURST";
pub const DEFAULT_FRAUD_REFUSAL_BURST: u32 = 20;
pub const ENV_FRAUD_REFUSAL_WINDOW_MS: &str = "FRAUD_REFUSAL_WINDOW_MS";
pub const DEFAULT_FRAUD_REFUSAL_WINDOW_MS: u64 = 10_000;
pub const ENV_FRAUD_RULE_REFUSAL_BURST: &str = "FRAUD_RULE_REFUSAL_BURST";
pub const ENV_FRAUD_MANY_IPS: &str = "FRAUD_MANY_IPS";
pub const DEFAULT_FRAUD_MANY_IPS: u32 = 5;
pub const ENV_FRAUD_MANY_IPS_WINDOW_MS: &str = "FRAUD_MANY_IPS_WINDOW_MS";
pub const DEFAULT_FRAUD_MANY_IPS_WINDOW_MS: u64 = 600_000;
pub const ENV_FRAUD_RULE_MANY_IPS: &str = "FRAUD_RULE_MANY_IPS";

/// Abuse controls. Every rate is per key; 0 disables it.
#[derive(Debug, Clone)]
pub struct FraudConfig {
    /// Purchases per second per client IP (IPv6 by /64).
    pub purchase_per_ip: u32,
    pub purchase_per_user: u32,
    /// Sign-ins per minute.
    pub signin_per_ip: u32,
    /// Per account and address.
    pub signin_per_account: u32,
    /// Per account, all addresses together.
    pub signin_per_account_global: u32,
    /// Sign-ups per minute per IP.
    pub signup_per_ip: u32,
    /// Failed sign-ins per address per `signin_failure_window`.
    pub signin_failures_per_ip: u32,
    pub signin_failure_window: Duration,
    pub limiter_max_keys: usize,
    /// Purchase attempts per buyer per sale per window, held in Redis.
    pub attempts_per_window: u32,
    pub attempts_window: Duration,
    pub ip_deny: Vec<IpNet>,
    pub ip_allow: Vec<IpNet>,
    pub new_account_age: Duration,
    pub rule_new_account: RuleAction,
    pub refusal_burst: u32,
    pub refusal_window: Duration,
    pub rule_refusal_burst: RuleAction,
    pub many_ips: u32,
    pub many_ips_window: Duration,
    pub rule_many_ips: RuleAction,
}

/// What a fraud rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    Off,
    /// Write a fraud event and let the request through.
    Record,
    /// Refuse with 403 BLOCKED and write a fraud event.
    Block,
}

impl FromStr for RuleAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Self::Off),
            "record" => Ok(Self::Record),
            "block" => Ok(Self::Block),
            _ => Err("must be off, record or block".to_owned()),
        }
    }
}

/// Reads every `RATE_*` limit, `PURCHASE_ATTEMPTS_*`, `IP_DENY` / `IP_ALLOW`
/// (comma-separated addresses or CIDR networks) and each rule's
/// `FRAUD_*` threshold, window and `FRAUD_RULE_*` action.
pub(super) fn read(src: &dyn Source) -> Result<FraudConfig, ConfigError> {
    let r = Reader::new(src);
    let rate = |var, default| r.ranged(var, default, 0, 10_000_000);
    Ok(FraudConfig {
        purchase_per_ip: rate(ENV_RATE_PURCHASE_PER_IP, DEFAULT_RATE_PURCHASE_PER_IP)?,
        purchase_per_user: rate(ENV_RATE_PURCHASE_PER_USER, DEFAULT_RATE_PURCHASE_PER_USER)?,
        signin_per_ip: rate(ENV_RATE_SIGNIN_PER_IP, DEFAULT_RATE_SIGNIN_PER_IP)?,
        signin_per_account: rate(ENV_RATE_SIGNIN_PER_ACCOUNT, DEFAULT_RATE_SIGNIN_PER_ACCOUNT)?,
        signin_per_account_global: rate(
            ENV_RATE_SIGNIN_PER_ACCOUNT_GLOBAL,
            DEFAULT_RATE_SIGNIN_PER_ACCOUNT_GLOBAL,
        )?,
        signup_per_ip: rate(ENV_RATE_SIGNUP_PER_IP, DEFAULT_RATE_SIGNUP_PER_IP)?,
        signin_failures_per_ip: rate(ENV_SIGNIN_FAILURES_PER_IP, DEFAULT_SIGNIN_FAILURES_PER_IP)?,
        signin_failure_window: Duration::from_secs(r.ranged(
            ENV_SIGNIN_FAILURE_WINDOW_SECS,
            DEFAULT_SIGNIN_FAILURE_WINDOW_SECS,
            1,
            24 * 3_600,
        )?),
        limiter_max_keys: r.ranged(
            ENV_RATE_LIMIT_MAX_KEYS,
            DEFAULT_RATE_LIMIT_MAX_KEYS,
            100,
            100_000_000,
        )?,
        attempts_per_window: rate(
            ENV_PURCHASE_ATTEMPTS_PER_WINDOW,
            DEFAULT_PURCHASE_ATTEMPTS_PER_WINDOW,
        )?,
        attempts_window: r.positive_millis(
            ENV_PURCHASE_ATTEMPTS_WINDOW_MS,
            DEFAULT_PURCHASE_ATTEMPTS_WINDOW_MS,
        )?,
        ip_deny: r.nets(ENV_IP_DENY)?,
        ip_allow: r.nets(ENV_IP_ALLOW)?,
        new_account_age: Duration::from_secs(r.ranged(
            ENV_FRAUD_NEW_ACCOUNT_SECONDS,
            DEFAULT_FRAUD_NEW_ACCOUNT_SECONDS,
            0,
            30 * 24 * 3_600,
        )?),
        rule_new_account: r.parse_or(ENV_FRAUD_RULE_NEW_ACCOUNT, RuleAction::Record)?,
        refusal_burst: r.ranged(
            ENV_FRAUD_REFUSAL_BURST,
            DEFAULT_FRAUD_REFUSAL_BURST,
            1,
            1_000_000,
        )?,
        refusal_window: r
            .positive_millis(ENV_FRAUD_REFUSAL_WINDOW_MS, DEFAULT_FRAUD_REFUSAL_WINDOW_MS)?,
        rule_refusal_burst: r.parse_or(ENV_FRAUD_RULE_REFUSAL_BURST, RuleAction::Block)?,
        many_ips: r.ranged(ENV_FRAUD_MANY_IPS, DEFAULT_FRAUD_MANY_IPS, 1, 1_000_000)?,
        many_ips_window: r.positive_millis(
            ENV_FRAUD_MANY_IPS_WINDOW_MS,
            DEFAULT_FRAUD_MANY_IPS_WINDOW_MS,
        )?,
        rule_many_ips: r.parse_or(ENV_FRAUD_RULE_MANY_IPS, RuleAction::Record)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{map, refused};
    use super::*;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = read(&map(&[])).unwrap();
        assert_eq!(c.purchase_per_ip, DEFAULT_RATE_PURCHASE_PER_IP);
        assert_eq!(c.signin_per_account, DEFAULT_RATE_SIGNIN_PER_ACCOUNT);
        assert_eq!(
            c.signin_per_account_global,
            DEFAULT_RATE_SIGNIN_PER_ACCOUNT_GLOBAL
        );
        assert_eq!(c.limiter_max_keys, DEFAULT_RATE_LIMIT_MAX_KEYS);
        assert!(c.ip_deny.is_empty() && c.ip_allow.is_empty());
        assert_eq!(c.rule_new_account, RuleAction::Record);
        assert_eq!(c.rule_refusal_burst, RuleAction::Block);
        assert_eq!(c.rule_many_ips, RuleAction::Record);
    }

    #[test]
    fn ip_lists_take_addresses_and_networks() {
        let m = map(&[
            (ENV_IP_DENY, "10.0.0.0/8, 192.0.2.7"),
            (ENV_IP_ALLOW, "2001:db8::/32"),
        ]);
        let c = read(&m).unwrap();
        assert_eq!(c.ip_deny.len(), 2);
        assert!(c.ip_deny[1].contains(&"192.0.2.7".parse::<std::net::IpAddr>().unwrap()));
        assert_eq!(c.ip_allow.len(), 1);
    }

    #[test]
    fn each_bad_fraud_value_names_its_variable() {
        for (var, bad) in [
            (ENV_RATE_PURCHASE_PER_IP, "-1"),
            (ENV_RATE_SIGNUP_PER_IP, "10000001"),
            (ENV_RATE_SIGNIN_PER_ACCOUNT_GLOBAL, "many"),
            (ENV_RATE_LIMIT_MAX_KEYS, "99"),
            (ENV_PURCHASE_ATTEMPTS_WINDOW_MS, "0"),
            (ENV_IP_DENY, "10.0.0.0/8,nonsense"),
            (ENV_IP_ALLOW, "300.1.1.1"),
            (ENV_FRAUD_RULE_NEW_ACCOUNT, "maybe"),
            (ENV_FRAUD_REFUSAL_BURST, "0"),
            (ENV_FRAUD_MANY_IPS_WINDOW_MS, "0"),
            (ENV_FRAUD_RULE_MANY_IPS, "Block"),
        ] {
            assert_eq!(refused(read, &[(var, bad)]), var, "{var}={bad}");
        }
    }
}
