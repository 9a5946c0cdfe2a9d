//! Abuse controls that act before any stock moves: client IP rules, rate
//! limits (in process, and in Redis where a rule must hold across
//! instances), the admin blocklist, velocity rules, and the fraud log.
//!
//! The purchase handler calls [`Fraud::check_purchase`] before the script;
//! the per-IP account cap and the attempts window live inside the purchase
//! script itself, in the sale's slot, so they cost no extra round trip.

mod blocklist;
mod limits;
mod log;
mod store;
mod velocity;

use std::net::IpAddr;
use std::sync::Arc;

pub use blocklist::{BLOCKLIST_CHANGED, Blocklist, BlocklistEntry, EntryKind, NewEntry};
pub use limits::{FailureBudget, Limited, Limiter};
pub use log::{FRAUD_STREAM, FraudAction, FraudEvent, FraudLog};
pub use store::{EventView, FraudStore, Occurrences, StoredEvent, decode_event};
pub use velocity::Velocity;

use ipnet::IpNet;

use crate::auth::CurrentUser;
use crate::config::{FraudConfig, RuleAction};
use crate::engine::{PurchaseOutcome, Refusal};
use crate::error::ErrorCode;
use crate::ids::{SaleId, UserId};
use crate::net::ip_key;

/// Every abuse control of one instance.
#[derive(Debug)]
pub struct Fraud {
    pub purchase_ip: Limiter<IpAddr>,
    pub purchase_user: Limiter<UserId>,
    pub signin_ip: Limiter<IpAddr>,
    /// Per account (normalised email) and address key: wrong passwords from
    /// one address cannot lock the owner out of the account elsewhere.
    pub signin_account: Limiter<(String, IpAddr)>,
    /// Per account alone, higher: guessing spread over many addresses.
    pub signin_account_global: Limiter<String>,
    pub signup_ip: Limiter<IpAddr>,
    /// Sign-ins per address (IPv6 by /64) that did not succeed, counted up
    /// front: past the budget, the address is refused until its window ends.
    pub signin_failures: FailureBudget<IpAddr>,
    /// Sign-ins per address that named an unknown email or a wrong
    /// password: an address with any is served from the failing half of
    /// sign-in's admission share. Never refuses by itself.
    pub signin_failed: FailureBudget<IpAddr>,
    pub blocklist: Arc<Blocklist>,
    pub velocity: Velocity,
    pub log: FraudLog,
    deny: Vec<IpNet>,
    allow: Vec<IpNet>,
    cfg: FraudConfig,
}

/// Failed sign-ins (unknown email or wrong password) an address may have in
/// its window before a sign-in of its that admission refuses still counts
/// against its failure budget.
pub const SIGNIN_REFUSALS_COUNT_AFTER: u32 = 3;

/// What the cheap gate of a sign-in knows of its address: how many of its
/// sign-ins in the window named an unknown email or a wrong password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigninStanding {
    failures: u32,
}

impl SigninStanding {
    /// No failure in the window: served from the larger part of sign-in's
    /// admission share.
    pub fn is_clean(self) -> bool {
        self.failures == 0
    }

    /// Whether a refusal by admission (503, no work done) still counts as
    /// one of the address's failures. A customer who mistyped once or twice
    /// gets it back; an address that keeps failing does not, so a flood
    /// from it reaches its in-memory 429 after its budget of attempts
    /// instead of after its budget of MongoDB lookups.
    pub fn keeps_refusals(self) -> bool {
        self.failures >= SIGNIN_REFUSALS_COUNT_AFTER
    }
}

/// Why an abuse control refused a request before any work was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// A deny rule, the blocklist or a blocking fraud rule (`BLOCKED`, 403).
    Blocked { rule: String, message: &'static str },
    /// A rate limit (`RATE_LIMITED`, 429 with Retry-After).
    Limited(Limited),
}

impl Denied {
    /// The stable error code the client sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Blocked { .. } => ErrorCode::Blocked,
            Self::Limited(_) => ErrorCode::RateLimited,
        }
    }
}

fn blocked(rule: &str, message: &'static str) -> Denied {
    Denied::Blocked {
        rule: rule.to_owned(),
        message,
    }
}

impl Fraud {
    pub fn new(cfg: &FraudConfig, blocklist: Arc<Blocklist>, log: FraudLog) -> Self {
        let max = cfg.limiter_max_keys;
        Self {
            purchase_ip: Limiter::per_second("purchase-ip", cfg.purchase_per_ip, max),
            purchase_user: Limiter::per_second("purchase-user", cfg.purchase_per_user, max),
            signin_ip: Limiter::per_minute("signin-ip", cfg.signin_per_ip, max),
            signin_account: Limiter::per_minute("signin-account", cfg.signin_per_account, max),
            signin_account_global: Limiter::per_minute(
                "signin-account-global",
                cfg.signin_per_account_global,
                max,
            ),
            signup_ip: Limiter::per_minute("signup-ip", cfg.signup_per_ip, max),
            signin_failures: FailureBudget::new(
                "signin-failures-ip",
                cfg.signin_failures_per_ip,
                cfg.signin_failure_window,
                max,
            ),
            signin_failed: FailureBudget::new(
                "signin-failed-ip",
                u32::MAX,
                cfg.signin_failure_window,
                max,
            ),
            blocklist,
            velocity: {
                let v = Velocity::new(cfg);
                v.report();
                v
            },
            log,
            deny: cfg.ip_deny.clone(),
            allow: cfg.ip_allow.clone(),
            cfg: cfg.clone(),
        }
    }

    /// True for addresses on the allow list: exempt from deny rules and limits.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|n| n.contains(&ip)) || self.blocklist.is_allowed(ip)
    }

    /// IP rules, applied to every request before any work.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Denied> {
        if self.is_trusted(ip) {
            return Ok(());
        }
        let rule = if self.deny.iter().any(|n| n.contains(&ip)) {
            "ip-deny"
        } else if self.blocklist.is_ip_blocked(ip) {
            "blocklist-ip"
        } else {
            return Ok(());
        };
        self.log.record(FraudEvent::blocked(rule, None, ip, None));
        Err(blocked(rule, "requests from this address are blocked"))
    }

    /// The cheap gate of a sign-in, before it takes an in-flight slot: the
    /// per-address sign-in rate, then the address's failure budget. A
    /// sign-in that passes is counted as a failure until it succeeds (see
    /// [`Fraud::signin_succeeded`]), so a flood spends the budget with its
    /// first requests, not only once their lookups and hashes are done.
    ///
    /// Returns the address's standing: its failed sign-ins in the window
    /// before this one (trusted addresses always stand clean).
    pub fn admit_signin(&self, ip: IpAddr) -> Result<SigninStanding, Denied> {
        if self.is_trusted(ip) {
            return Ok(SigninStanding { failures: 0 });
        }
        let key = ip_key(ip);
        self.limited(self.signin_ip.check(&key), ip, None, None)?;
        self.limited(self.signin_failures.check(&key), ip, None, None)?;
        self.signin_failures.record(&key);
        Ok(SigninStanding {
            failures: self.signin_failed.failures(&key),
        })
    }

    /// Marks `ip` as an address whose sign-in named an unknown email or a
    /// wrong password.
    pub fn signin_failed(&self, ip: IpAddr) {
        if !self.is_trusted(ip) {
            self.signin_failed.record(&ip_key(ip));
        }
    }

    /// Gives back the failure [`Fraud::admit_signin`] counted in advance:
    /// the sign-in succeeded, or it was refused before any work (503) and
    /// its address does not keep failing ([`SigninStanding::keeps_refusals`]).
    pub fn signin_succeeded(&self, ip: IpAddr) {
        if !self.is_trusted(ip) {
            self.signin_failures.refund(&ip_key(ip));
        }
    }

    /// The user blocklist, applied wherever a token becomes a caller (every
    /// route and the WebSocket). No fraud event: the block is already on
    /// record, and a blocked user's every read would flood the log.
    pub fn check_user(&self, user: UserId) -> Result<(), Denied> {
        if self.blocklist.is_user_blocked(user) {
            return Err(blocked("blocklist-user", "this account is blocked"));
        }
        Ok(())
    }

    /// A rate limit outcome as the 429 response, with its fraud event.
    pub fn limited(
        &self,
        result: Result<(), Limited>,
        ip: IpAddr,
        user: Option<UserId>,
        sale: Option<SaleId>,
    ) -> Result<(), Denied> {
        result.map_err(|l| {
            metrics::counter!(crate::metrics::RATE_LIMITED_TOTAL, "limit" => l.name).increment(1);
            self.log.record(FraudEvent::blocked(l.name, user, ip, sale));
            Denied::Limited(l)
        })
    }

    /// The per-account sign-in limits: per account and address, then per
    /// account alone (a refused first check spends nothing of the second).
    pub fn check_signin_account(&self, email: String, ip: IpAddr) -> Result<(), Denied> {
        let here = (email, ip_key(ip));
        self.limited(self.signin_account.check(&here), ip, None, None)?;
        self.limited(self.signin_account_global.check(&here.0), ip, None, None)
    }

    /// Everything that must pass before a purchase reaches Redis (a blocked
    /// user never gets here: see [`Fraud::check_user`]).
    pub fn check_purchase(
        &self,
        user: &CurrentUser,
        ip: IpAddr,
        sale: SaleId,
    ) -> Result<(), Denied> {
        if !self.is_trusted(ip) {
            let key = ip_key(ip);
            self.limited(self.purchase_ip.check(&key), ip, Some(user.id), Some(sale))?;
        }
        self.limited(
            self.purchase_user.check(&user.id),
            ip,
            Some(user.id),
            Some(sale),
        )?;

        // Velocity rules: each blocks or records as configured.
        if let Some(created) = user.created_at {
            let age = crate::clock::now_ms() / 1000 - created;
            if age >= 0 && (age as u64) < self.cfg.new_account_age.as_secs() {
                self.rule(
                    self.cfg.rule_new_account,
                    "new-account",
                    user.id,
                    ip,
                    sale,
                    serde_json::json!({ "accountAgeSeconds": age }),
                )?;
            }
        }
        if self.cfg.rule_refusal_burst != RuleAction::Off
            && let Some(n) = self.velocity.refusals_over_limit(user.id)
        {
            self.rule(
                self.cfg.rule_refusal_burst,
                "refusal-burst",
                user.id,
                ip,
                sale,
                serde_json::json!({ "refusals": n }),
            )?;
        }
        if self.cfg.rule_many_ips != RuleAction::Off
            && let Some(n) = self.velocity.note_ip(user.id, ip_key(ip))
        {
            self.rule(
                self.cfg.rule_many_ips,
                "many-ips",
                user.id,
                ip,
                sale,
                serde_json::json!({ "distinctIps": n }),
            )?;
        }
        Ok(())
    }

    /// Applies a velocity rule's configured action: a flagged event only, or
    /// a blocked event and the refusal.
    fn rule(
        &self,
        action: RuleAction,
        rule: &'static str,
        user: UserId,
        ip: IpAddr,
        sale: SaleId,
        details: serde_json::Value,
    ) -> Result<(), Denied> {
        match action {
            RuleAction::Off => Ok(()),
            RuleAction::Record => {
                let ev = FraudEvent::flagged(rule, user, ip, sale, details);
                self.log.record(ev);
                Ok(())
            }
            RuleAction::Block => {
                let ev =
                    FraudEvent::blocked(rule, Some(user), ip, Some(sale)).with_details(details);
                self.log.record(ev);
                Err(blocked(rule, "this purchase was refused by a fraud rule"))
            }
        }
    }

    /// Learns from the script's answer: refusals feed the burst rule, and the
    /// script's own fraud refusals are logged.
    pub fn after_purchase(
        &self,
        user: UserId,
        ip: IpAddr,
        sale: SaleId,
        outcome: &PurchaseOutcome,
    ) {
        let PurchaseOutcome::Refused(refusal) = outcome else {
            return;
        };
        match *refusal {
            Refusal::TransactionLimit { .. }
            | Refusal::UserLimit { .. }
            | Refusal::InsufficientStock { .. }
            | Refusal::NotStarted { .. }
            | Refusal::IdempotencyMismatch { .. }
            | Refusal::IdempotencyOtherSale { .. }
                if self.cfg.rule_refusal_burst != RuleAction::Off =>
            {
                self.velocity.note_refusal(user);
            }
            Refusal::IpAccountLimit { max_accounts } => {
                let ev = FraudEvent::blocked("multi-account-ip", Some(user), ip, Some(sale))
                    .with_details(serde_json::json!({ "maxAccountsPerIp": max_accounts }));
                self.log.record(ev);
            }
            Refusal::AttemptLimit { limit, .. } => {
                let ev = FraudEvent::blocked("attempts-per-sale", Some(user), ip, Some(sale))
                    .with_details(serde_json::json!({ "limit": limit }));
                self.log.record(ev);
            }
            _ => {}
        }
    }

    /// Drops idle limiter keys and velocity state; run on a timer.
    pub fn sweep(&self) {
        self.purchase_ip.sweep();
        self.purchase_user.sweep();
        self.signin_ip.sweep();
        self.signin_account.sweep();
        self.signin_account_global.sweep();
        self.signup_ip.sweep();
        self.signin_failures.sweep();
        self.signin_failed.sweep();
        self.velocity.sweep();
        self.log.sweep();
    }
}
