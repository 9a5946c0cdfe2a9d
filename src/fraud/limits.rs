//! In-process rate limits (governor, GCRA), keyed per IP, user or account,
//! and failure budgets (so many failures per key per window).
//!
//! Keyed state is swept on a timer; when an IP-rotation flood fills the map
//! to its cap anyway, it is swept at once, and if still full new requests are
//! refused, so memory stays bounded.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// A refused request: which limit and when to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub name: &'static str,
    pub limit: u32,
    pub window_secs: u64,
    pub retry_after_secs: u64,
}

#[derive(Debug)]
pub struct Limiter<K: Hash + Eq + Clone> {
    name: &'static str,
    limiter: Option<DefaultKeyedRateLimiter<K>>,
    limit: u32,
    window_secs: u64,
    max_keys: usize,
    last_sweep: Mutex<Instant>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    fn new(
        name: &'static str,
        limit: u32,
        window_secs: u64,
        quota: Option<Quota>,
        max_keys: usize,
    ) -> Self {
        Self {
            name,
            limiter: quota.map(RateLimiter::keyed),
            limit,
            window_secs,
            max_keys,
            last_sweep: Mutex::new(Instant::now()),
        }
    }

    /// `n` per second with a burst of `n`; 0 disables the limit.
    pub fn per_second(name: &'static str, n: u32, max_keys: usize) -> Self {
        Self::new(
            name,
            n,
            1,
            NonZeroU32::new(n).map(Quota::per_second),
            max_keys,
        )
    }

    /// `n` per minute with a burst of `n`; 0 disables the limit.
    pub fn per_minute(name: &'static str, n: u32, max_keys: usize) -> Self {
        Self::new(
            name,
            n,
            60,
            NonZeroU32::new(n).map(Quota::per_minute),
            max_keys,
        )
    }

    pub fn check(&self, key: &K) -> Result<(), Limited> {
        let Some(l) = &self.limiter else {
            return Ok(());
        };
        if l.len() >= self.max_keys {
            self.sweep_at_most_every(Duration::from_millis(100));
            if l.len() >= self.max_keys {
                return Err(self.refusal(Duration::from_secs(1)));
            }
        }
        l.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            self.refusal(wait)
        })
    }

    fn refusal(&self, wait: Duration) -> Limited {
        Limited {
            name: self.name,
            limit: self.limit,
            window_secs: self.window_secs,
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        }
    }

    fn sweep_at_most_every(&self, every: Duration) {
        let due = self
            .last_sweep
            .lock()
            .map(|mut t| {
                if t.elapsed() >= every {
                    *t = Instant::now();
                    true
                } else {
                    false
                }
            })
            .unwrap_or(false);
        if due {
            self.sweep();
        }
    }

    /// Forgets keys whose limit has fully recovered.
    pub fn sweep(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.limiter.as_ref().map_or(0, |l| l.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Failures counted per key in a fixed window: a key that used up its
/// budget is refused until its window ends. Checking costs no budget, so it
/// can run before any work; only failures spend it.
#[derive(Debug)]
pub struct FailureBudget<K: Hash + Eq + Clone> {
    name: &'static str,
    /// Failures allowed per window; 0 disables the budget.
    budget: u32,
    window: Duration,
    max_keys: usize,
    /// Per key: failures so far and when its window started.
    entries: dashmap::DashMap<K, (u32, Instant)>,
}

impl<K: Hash + Eq + Clone> FailureBudget<K> {
    pub fn new(name: &'static str, budget: u32, window: Duration, max_keys: usize) -> Self {
        Self {
            name,
            budget,
            window,
            max_keys,
            entries: dashmap::DashMap::new(),
        }
    }

    /// Refused when `key` has used up its budget in its current window.
    pub fn check(&self, key: &K) -> Result<(), Limited> {
        if self.budget == 0 {
            return Ok(());
        }
        let Some(entry) = self.entries.get(key) else {
            return Ok(());
        };
        let (failures, since) = *entry;
        let elapsed = since.elapsed();
        if failures < self.budget || elapsed >= self.window {
            return Ok(());
        }
        Err(Limited {
            name: self.name,
            limit: self.budget,
            window_secs: self.window.as_secs(),
            retry_after_secs: (self.window - elapsed).as_secs_f64().ceil().max(1.0) as u64,
        })
    }

    /// Failures of `key` in its current window.
    pub fn failures(&self, key: &K) -> u32 {
        self.entries
            .get(key)
            .filter(|e| e.1.elapsed() < self.window)
            .map_or(0, |e| e.0)
    }

    /// Spends one failure of `key`'s budget.
    pub fn record(&self, key: &K) {
        if self.budget == 0 {
            return;
        }
        if !self.entries.contains_key(key) && self.entries.len() >= self.max_keys {
            self.sweep();
            if self.entries.len() >= self.max_keys {
                // Full of keys still in their window: the new key goes
                // uncounted rather than memory growing without bound.
                return;
            }
        }
        let mut entry = self
            .entries
            .entry(key.clone())
            .or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        entry.0 = entry.0.saturating_add(1);
    }

    /// Gives back one failure of `key`'s budget: for callers that spend it
    /// up front, when the attempt turned out well.
    pub fn refund(&self, key: &K) {
        if let Some(mut entry) = self.entries.get_mut(key) {
            entry.0 = entry.0.saturating_sub(1);
        }
    }

    /// Forgets keys whose window has ended.
    pub fn sweep(&self) {
        self.entries
            .retain(|_, (_, since)| since.elapsed() < self.window);
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_refused_after_its_burst_with_a_retry_time() {
        let l: Limiter<u32> = Limiter::per_minute("t", 3, 100);
        for _ in 0..3 {
            assert!(l.check(&1).is_ok());
        }
        let e = l.check(&1).unwrap_err();
        assert_eq!(e.name, "t");
        assert!(e.retry_after_secs >= 1);
        assert!(l.check(&2).is_ok(), "other keys are independent");
    }

    #[test]
    fn zero_disables_a_limit() {
        let l: Limiter<u32> = Limiter::per_second("t", 0, 100);
        for _ in 0..1000 {
            assert!(l.check(&1).is_ok());
        }
    }

    #[test]
    fn keys_stay_bounded_under_rotation() {
        let l: Limiter<u32> = Limiter::per_minute("t", 1, 100);
        let mut refused = 0;
        for k in 0..10_000 {
            if l.check(&k).is_err() {
                refused += 1;
            }
        }
        assert!(l.len() <= 100, "{} keys", l.len());
        assert!(refused > 0);
    }

    #[test]
    fn a_failure_budget_refuses_only_once_spent_and_checks_cost_nothing() {
        let b: FailureBudget<u32> = FailureBudget::new("f", 2, Duration::from_secs(60), 100);
        for _ in 0..10 {
            assert!(b.check(&1).is_ok(), "checking spends nothing");
        }
        b.record(&1);
        assert!(b.check(&1).is_ok());
        b.record(&1);
        let e = b.check(&1).unwrap_err();
        assert_eq!((e.name, e.limit, e.window_secs), ("f", 2, 60));
        assert!((1..=60).contains(&e.retry_after_secs));
        assert!(b.check(&2).is_ok(), "other keys are independent");
    }

    #[test]
    fn a_failure_budget_comes_back_after_its_window_and_stays_bounded() {
        let b: FailureBudget<u32> = FailureBudget::new("f", 1, Duration::from_millis(1), 100);
        b.record(&1);
        // The window is one millisecond: wait it out (not a synchronisation).
        std::thread::sleep(Duration::from_millis(5));
        assert!(b.check(&1).is_ok(), "a new window");
        let big: FailureBudget<u32> = FailureBudget::new("f", 1, Duration::from_secs(60), 100);
        for k in 0..10_000 {
            big.record(&k);
        }
        assert!(big.len() <= 100, "{} keys", big.len());
    }
}
