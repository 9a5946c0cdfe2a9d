//! Velocity rules kept per instance: bursts of refused attempts by one
//! account, and one account buying from many addresses.
//!
//! Per instance by choice: each limit holds on one instance, so behind a
//! balancer that spreads one account over N instances it can reach up to N
//! times the limit before a rule fires. Holding them in Redis would cost a
//! round trip per purchase in the user's slot (not the sale's, so it cannot
//! join the purchase script). The limits that must hold globally (attempts
//! per buyer per sale, accounts per address per sale) live in the purchase
//! script. [`Velocity::report`] exports each active limit as
//! `flashsale_fraud_velocity_limit{rule, scope="instance"}` so dashboards
//! say so too.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::config::{FraudConfig, RuleAction};
use crate::ids::UserId;

/// Users tracked at most; beyond this the oldest state is dropped first by the sweep.
const MAX_USERS: usize = 200_000;
const MAX_IPS_PER_USER: usize = 64;

#[derive(Debug, Default)]
struct Activity {
    refusals: VecDeque<Instant>,
    ips: Vec<(IpAddr, Instant)>,
}

#[derive(Debug)]
pub struct Velocity {
    users: DashMap<UserId, Activity>,
    refusal_burst: u32,
    refusal_window: Duration,
    many_ips: u32,
    many_ips_window: Duration,
    /// Whether each rule is on (its limit is reported only then).
    refusal_burst_on: bool,
    many_ips_on: bool,
}

impl Velocity {
    pub fn new(cfg: &FraudConfig) -> Self {
        Self {
            users: DashMap::new(),
            refusal_burst: cfg.refusal_burst,
            refusal_window: cfg.refusal_window,
            many_ips: cfg.many_ips,
            many_ips_window: cfg.many_ips_window,
            refusal_burst_on: cfg.rule_refusal_burst != RuleAction::Off,
            many_ips_on: cfg.rule_many_ips != RuleAction::Off,
        }
    }

    /// Sets the per-instance limit gauge of each rule that is on. Run at
    /// start-up and on every sweep (gauges not set for a minute expire).
    pub fn report(&self) {
        let rules = [
            ("refusal-burst", self.refusal_burst_on, self.refusal_burst),
            ("many-ips", self.many_ips_on, self.many_ips),
        ];
        for (rule, on, limit) in rules {
            if on {
                metrics::gauge!(
                    crate::metrics::FRAUD_VELOCITY_LIMIT,
                    "rule" => rule,
                    "scope" => "instance",
                )
                .set(f64::from(limit));
            }
        }
    }

    pub fn note_refusal(&self, user: UserId) {
        if self.users.len() >= MAX_USERS && !self.users.contains_key(&user) {
            return;
        }
        let mut a = self.users.entry(user).or_default();
        let now = Instant::now();
        a.refusals.push_back(now);
        while a
            .refusals
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.refusal_window)
        {
            a.refusals.pop_front();
        }
        while a.refusals.len() > self.refusal_burst as usize + 1 {
            a.refusals.pop_front();
        }
    }

    /// The number of recent refusals when it exceeds the burst limit.
    pub fn refusals_over_limit(&self, user: UserId) -> Option<usize> {
        let a = self.users.get(&user)?;
        let now = Instant::now();
        let n = a
            .refusals
            .iter()
            .filter(|t| now.duration_since(**t) <= self.refusal_window)
            .count();
        (n > self.refusal_burst as usize).then_some(n)
    }

    /// Records the address a user buys from; returns the count of distinct
    /// recent addresses when it exceeds the limit.
    pub fn note_ip(&self, user: UserId, ip: IpAddr) -> Option<usize> {
        if self.users.len() >= MAX_USERS && !self.users.contains_key(&user) {
            return None;
        }
        let mut a = self.users.entry(user).or_default();
        let now = Instant::now();
        a.ips
            .retain(|(_, t)| now.duration_since(*t) <= self.many_ips_window);
        match a.ips.iter_mut().find(|(i, _)| *i == ip) {
            Some(e) => e.1 = now,
            None => {
                if a.ips.len() >= MAX_IPS_PER_USER {
                    a.ips.remove(0);
                }
                a.ips.push((ip, now));
            }
        }
        let n = a.ips.len();
        (n > self.many_ips as usize).then_some(n)
    }

    /// Drops users with nothing recent, and reports the limits again.
    pub fn sweep(&self) {
        self.report();
        let now = Instant::now();
        let (rw, iw) = (self.refusal_window, self.many_ips_window);
        self.users.retain(|_, a| {
            a.refusals
                .back()
                .is_some_and(|t| now.duration_since(*t) <= rw)
                || a.ips.iter().any(|(_, t)| now.duration_since(*t) <= iw)
        });
    }
}
