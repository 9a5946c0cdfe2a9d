//! In-process rate limits (governor, GCRA), keyed per IP, user or account.
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
}
