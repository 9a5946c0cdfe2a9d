//! PBKDF2-HMAC-SHA256 password hashes, computed off the async threads.
//!
//! Stored form: `pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>`, so the
//! iteration count can be raised later without breaking old hashes.
//!
//! Hashing is the most expensive thing a request can ask for, so it is
//! rationed: at most `concurrency` derivations run at once, at most `queue`
//! requests wait for one, and none waits longer than `wait`; past either
//! bound the caller gets [`PasswordError::Busy`] at once (a 503 with
//! Retry-After). Sign-ins for emails nobody holds (the dummy hash that keeps
//! their timing equal) go through a lane of their own, limited to half the
//! derivations, a quarter of the queue, `unknown_per_second` derivations
//! started per second and a CPU budget (`unknown_cpu_percent` of one core on
//! average, from the derivation time measured at start-up, after a burst of
//! [`DUMMY_BURST`]), so a flood of made-up emails can neither keep real
//! customers from signing in nor keep a core busy hashing.
//!
//! Derivations run on threads of their own at a lower CPU priority
//! (`HASH_NICE`, default 10): on a busy host they take what the request path
//! leaves, so the hashes a sign-in flood still reaches cannot queue
//! purchases behind them. Linux keeps a nice value per thread.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::{Semaphore, SemaphorePermit};

pub use crate::config::HashLimits;

const SCHEME: &str = "pbkdf2-sha256";
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;
/// Dummy hashes the CPU budget lets start at once before its pace applies:
/// a few people mistyping their email at the same moment still get 401.
const DUMMY_BURST: u32 = 4;
static ALGORITHM: pbkdf2::Algorithm = pbkdf2::PBKDF2_HMAC_SHA256;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("stored password hash is malformed")]
    Malformed,
    #[error("random number generator failed")]
    Rng,
    #[error("hashing thread failed")]
    Task,
    #[error("hashing pool closed")]
    Closed,
    /// Too many hashes waiting, or this one waited too long: retry shortly.
    #[error("password hashing is busy")]
    Busy,
}

/// Which lane a hash waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// Sign-up, and sign-in of an account that exists.
    Account,
    /// The dummy hash of a sign-in for an email nobody holds.
    Unknown,
}

/// Hashes and verifies passwords on the hashing threads, rationed as the
/// module doc says.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    iterations: NonZeroU32,
    rng: SystemRandom,
    /// A hash of a random password at the configured count, verified against
    /// on unknown emails so that both failures cost the same time. Stored
    /// hashes converge on the same count: a sign-in whose hash has another
    /// count stores a new one ([`Self::needs_rehash`]).
    dummy: Arc<String>,
    gate: Arc<Gate>,
    pool: Arc<Pool>,
}

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads: as many as derivations may run at once (the gate
/// admits no more), each at the configured nice value.
#[derive(Debug)]
struct Pool {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Pool {
    fn new(threads: usize, nice: i32) -> Result<Self, PasswordError> {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || {
                    if nice > 0 {
                        lower_priority(nice);
                    }
                    loop {
                        // The lock is held only to take a job, never while one runs.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            // The hasher is gone: the thread ends.
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|_| PasswordError::Task)?;
        }
        Ok(Self { jobs: tx })
    }

    async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, PasswordError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs.send(job).map_err(|_| PasswordError::Closed)?;
        rx.await.map_err(|_| PasswordError::Task)
    }
}

/// Sets the calling thread's nice value (Linux: per thread). A refusal only
/// costs the priority, so it is logged, not fatal.
fn lower_priority(nice: i32) {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
        tracing::warn!(error = %e, nice, "could not lower the password hashing thread's priority");
    }
}

/// The nice value of the calling thread.
#[cfg(test)]
fn current_nice() -> i32 {
    rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap_or(i32::MIN)
}

/// The rationing: one semaphore for derivations, one more in front of it
/// for the unknown-email lane, and a count of waiters per lane.
#[derive(Debug)]
struct Gate {
    derivations: Semaphore,
    unknown_derivations: Semaphore,
    /// Dummy hashes started: the stricter of the per-second rate and the
    /// CPU budget's pace ([`dummy_quota`]; `None`: neither is set).
    unknown_pace: Option<governor::DefaultDirectRateLimiter>,
    waiting: [AtomicUsize; 2],
    queue: [usize; 2],
    wait: Duration,
}

/// A derivation slot; released on drop.
#[derive(Debug)]
struct Slot<'a> {
    _unknown: Option<SemaphorePermit<'a>>,
    _derivation: SemaphorePermit<'a>,
}

/// How often one dummy hash may start so that dummy hashes of `derivation`
/// each take `percent` of one core on average (`None`: no budget).
fn budget_period(derivation: Duration, percent: u32) -> Option<Duration> {
    if percent == 0 {
        return None;
    }
    let period = derivation.saturating_mul(100) / percent;
    Some(period.max(Duration::from_micros(1)))
}

/// One quota for dummy hashes that holds both limits: `per_second` starts a
/// second (0: none, burst of as many) and one start per `budget_period`
/// (after a burst of [`DUMMY_BURST`]). The longer period and the smaller
/// burst are stricter than each, and a single limiter spends no token of
/// one limit on a start the other refuses.
fn dummy_quota(per_second: u32, budget_period: Option<Duration>) -> Option<governor::Quota> {
    let rate = NonZeroU32::new(per_second).map(|n| (Duration::from_secs(1) / n.get(), n));
    let budget = budget_period.map(|p| (p, NonZeroU32::new(DUMMY_BURST).expect("non-zero")));
    let (period, burst) = match (rate, budget) {
        (Some((a, burst_a)), Some((b, burst_b))) => (a.max(b), burst_a.min(burst_b)),
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => return None,
    };
    Some(governor::Quota::with_period(period)?.allow_burst(burst))
}

impl Gate {
    /// `dummy_period`: how often one dummy hash may start under the CPU
    /// budget ([`budget_period`]; `None`: no budget).
    fn new(limits: HashLimits, dummy_period: Option<Duration>) -> Self {
        let concurrency = limits.concurrency.max(1);
        let queue = limits.queue.max(1);
        Self {
            derivations: Semaphore::new(concurrency),
            unknown_derivations: Semaphore::new((concurrency / 2).max(1)),
            unknown_pace: dummy_quota(limits.unknown_per_second, dummy_period)
                .map(governor::RateLimiter::direct),
            waiting: [AtomicUsize::new(0), AtomicUsize::new(0)],
            queue: [queue, (queue / 4).max(1)],
            wait: limits.wait,
        }
    }

    async fn slot(&self, lane: Lane) -> Result<Slot<'_>, PasswordError> {
        if lane == Lane::Unknown
            && let Some(pace) = &self.unknown_pace
            && pace.check().is_err()
        {
            return Err(PasswordError::Busy);
        }
        let i = lane as usize;
        // Counted from the moment the request asks until it holds a slot.
        let waiting = &self.waiting[i];
        if waiting.fetch_add(1, Ordering::AcqRel) >= self.queue[i] {
            waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(PasswordError::Busy);
        }
        let acquired = tokio::time::timeout(self.wait, async {
            let unknown = match lane {
                Lane::Unknown => Some(self.unknown_derivations.acquire().await?),
                Lane::Account => None,
            };
            let derivation = self.derivations.acquire().await?;
            Ok::<_, tokio::sync::AcquireError>(Slot {
                _unknown: unknown,
                _derivation: derivation,
            })
        })
        .await;
        waiting.fetch_sub(1, Ordering::AcqRel);
        match acquired {
            Ok(Ok(slot)) => Ok(slot),
            Ok(Err(_)) => Err(PasswordError::Closed),
            Err(_) => Err(PasswordError::Busy),
        }
    }
}

impl PasswordHasher {
    pub fn new(iterations: u32, limits: HashLimits) -> Result<Self, PasswordError> {
        let iterations = NonZeroU32::new(iterations.max(1)).expect("non-zero");
        let rng = SystemRandom::new();
        let mut pw = [0u8; 16];
        rng.fill(&mut pw).map_err(|_| PasswordError::Rng)?;
        // The dummy's own derivation, on an idle start-up thread, is the
        // measure of what one costs this host.
        let started = std::time::Instant::now();
        let dummy = hash_blocking(&rng, iterations, &B64.encode(pw))?;
        let derivation = started.elapsed();
        let dummy_period = budget_period(derivation, limits.unknown_cpu_percent);
        tracing::info!(
            iterations = iterations.get(),
            derivation_ms = derivation.as_secs_f64() * 1e3,
            dummy_hash_period_ms = dummy_period.map(|p| p.as_secs_f64() * 1e3),
            "password hashing measured"
        );
        Ok(Self {
            iterations,
            rng,
            dummy: Arc::new(dummy),
            gate: Arc::new(Gate::new(limits, dummy_period)),
            pool: Arc::new(Pool::new(limits.concurrency, limits.nice)?),
        })
    }

    /// The iteration count of new hashes (`PASSWORD_ITERATIONS`).
    pub fn iterations(&self) -> u32 {
        self.iterations.get()
    }

    /// True when `stored` was hashed with another iteration count than the
    /// configured one: after a successful verification the caller re-hashes
    /// the password, so every account (and the dummy) costs the same.
    pub fn needs_rehash(&self, stored: &str) -> bool {
        iterations_of(stored) != Some(self.iterations.get())
    }

    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let _slot = self.gate.slot(Lane::Account).await?;
        let (rng, iterations, pw) = (self.rng.clone(), self.iterations, password.to_owned());
        self.pool
            .run(move || hash_blocking(&rng, iterations, &pw))
            .await?
    }

    /// Verifies `password` against `stored` in constant time; `None` runs the
    /// same work against a dummy hash (in the unknown-email lane) and returns
    /// false.
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> Result<bool, PasswordError> {
        let (stored, known) = match stored {
            Some(s) => (s.to_owned(), true),
            None => (self.dummy.as_str().to_owned(), false),
        };
        let lane = if known { Lane::Account } else { Lane::Unknown };
        let _slot = self.gate.slot(lane).await?;
        let pw = password.to_owned();
        let ok = self
            .pool
            .run(move || verify_blocking(&pw, &stored))
            .await??;
        Ok(ok && known)
    }
}

fn hash_blocking(
    rng: &SystemRandom,
    iterations: NonZeroU32,
    password: &str,
) -> Result<String, PasswordError> {
    let mut salt = [0u8; SALT_LEN];
    rng.fill(&mut salt).map_err(|_| PasswordError::Rng)?;
    let mut out = [0u8; HASH_LEN];
    pbkdf2::derive(ALGORITHM, iterations, &salt, password.as_bytes(), &mut out);
    Ok(format!(
        "{SCHEME}${iterations}${}${}",
        B64.encode(salt),
        B64.encode(out)
    ))
}

fn verify_blocking(password: &str, stored: &str) -> Result<bool, PasswordError> {
    let mut parts = stored.split('$');
    let (Some(SCHEME), Some(iter), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(PasswordError::Malformed);
    };
    let iterations: NonZeroU32 = iter.parse().map_err(|_| PasswordError::Malformed)?;
    let salt = B64.decode(salt).map_err(|_| PasswordError::Malformed)?;
    let hash = B64.decode(hash).map_err(|_| PasswordError::Malformed)?;
    Ok(pbkdf2::verify(ALGORITHM, iterations, &salt, password.as_bytes(), &hash).is_ok())
}

/// The iteration count recorded in a stored hash.
pub fn iterations_of(stored: &str) -> Option<u32> {
    stored.split('$').nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(concurrency: usize, queue: usize, wait_ms: u64) -> HashLimits {
        HashLimits {
            concurrency,
            queue,
            wait: Duration::from_millis(wait_ms),
            unknown_per_second: 0,
            unknown_cpu_percent: 0,
            nice: 0,
        }
    }

    #[tokio::test]
    async fn hashes_are_derived_on_threads_at_the_configured_nice_value() {
        let h = PasswordHasher::new(
            1_000,
            HashLimits {
                nice: 7,
                ..limits(2, 8, 5_000)
            },
        )
        .unwrap();
        let own = current_nice();
        let seen = h.pool.run(current_nice).await.unwrap();
        // Raising a thread's nice value is always allowed (the value is
        // absolute: a process already above 7 keeps its own)...
        assert!(seen >= 7, "hashing thread at nice {seen}");
        if own < 7 {
            assert_eq!(seen, 7);
        }
        // ...and it stays on the hashing thread.
        assert_eq!(current_nice(), own);
        let name = h
            .pool
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(name.is_some_and(|n| n.starts_with("password-hash-")));
        // And the hasher still works there.
        let stored = h.hash("pw").await.unwrap();
        assert!(h.verify("pw", Some(&stored)).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_verify_and_differ_per_user() {
        let h = PasswordHasher::new(1_000, limits(2, 8, 5_000)).unwrap();
        let a = h.hash("correct horse").await.unwrap();
        let b = h.hash("correct horse").await.unwrap();
        assert_ne!(a, b, "salts must differ");
        assert_eq!(iterations_of(&a), Some(1_000));
        assert!(h.verify("correct horse", Some(&a)).await.unwrap());
        assert!(!h.verify("wrong", Some(&a)).await.unwrap());
        assert!(!h.verify("correct horse", None).await.unwrap());
        let salt = a.split('$').nth(2).unwrap();
        assert_eq!(B64.decode(salt).unwrap().len(), SALT_LEN);
    }

    #[tokio::test]
    async fn the_dummy_costs_the_configured_count_and_older_counts_are_rehashed() {
        let old = PasswordHasher::new(1_000, limits(1, 8, 5_000)).unwrap();
        let h = PasswordHasher::new(2_000, limits(1, 8, 5_000)).unwrap();
        assert_eq!(iterations_of(&h.dummy), Some(2_000));
        assert_eq!(h.iterations(), 2_000);
        let stored = old.hash("correct horse").await.unwrap();
        // An older count still verifies (it is stored in the hash)...
        assert!(h.verify("correct horse", Some(&stored)).await.unwrap());
        // ...and is due a re-hash at the configured one.
        assert!(h.needs_rehash(&stored));
        let fresh = h.hash("correct horse").await.unwrap();
        assert!(!h.needs_rehash(&fresh));
        assert!(h.needs_rehash("garbage"));
    }

    #[test]
    fn malformed_hashes_are_errors() {
        assert!(verify_blocking("x", "nope").is_err());
        assert!(verify_blocking("x", "pbkdf2-sha256$0$AA$AA").is_err());
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_at_once() {
        let gate = Gate::new(limits(1, 1, 60_000), None);
        let held = gate.slot(Lane::Account).await.unwrap();
        // One may wait...
        let waiter = gate.slot(Lane::Account);
        tokio::pin!(waiter);
        assert!(futures_util::poll!(&mut waiter).is_pending());
        // ...the next is refused without waiting.
        assert!(matches!(
            gate.slot(Lane::Account).await,
            Err(PasswordError::Busy)
        ));
        drop(held);
        assert!(waiter.await.is_ok(), "the waiter gets the slot");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_past_the_deadline_is_refused() {
        let gate = Gate::new(limits(1, 8, 2_000), None);
        let _held = gate.slot(Lane::Account).await.unwrap();
        let started = tokio::time::Instant::now();
        assert!(matches!(
            gate.slot(Lane::Account).await,
            Err(PasswordError::Busy)
        ));
        assert_eq!(started.elapsed(), Duration::from_millis(2_000));
        assert_eq!(
            gate.waiting[0].load(Ordering::Acquire),
            0,
            "the waiter left the count"
        );
    }

    #[tokio::test]
    async fn unknown_emails_cannot_take_every_derivation_or_the_queue() {
        let gate = Gate::new(limits(2, 8, 60_000), None);
        // The unknown lane gets one of the two derivations...
        let unknown = gate.slot(Lane::Unknown).await.unwrap();
        let mut more_unknown = Box::pin(gate.slot(Lane::Unknown));
        assert!(futures_util::poll!(&mut more_unknown).is_pending());
        // ...and two waiters (a quarter of 8): a third is refused at once.
        let mut third = Box::pin(gate.slot(Lane::Unknown));
        assert!(futures_util::poll!(&mut third).is_pending());
        assert!(matches!(
            gate.slot(Lane::Unknown).await,
            Err(PasswordError::Busy)
        ));
        // A real account still gets the other derivation at once.
        let account = gate.slot(Lane::Account);
        tokio::pin!(account);
        assert!(futures_util::poll!(&mut account).is_ready());
        drop(unknown);
        assert!(more_unknown.await.is_ok());
    }

    #[test]
    fn the_budget_paces_dummy_hashes_by_their_cost() {
        // 145 ms derivations at 5 % of a core: one every 2.9 s.
        assert_eq!(
            budget_period(Duration::from_millis(145), 5),
            Some(Duration::from_millis(2_900))
        );
        // At 100 % one may start as often as one takes.
        assert_eq!(
            budget_period(Duration::from_millis(145), 100),
            Some(Duration::from_millis(145))
        );
        assert_eq!(budget_period(Duration::from_millis(145), 0), None);
        assert_eq!(
            budget_period(Duration::ZERO, 5),
            Some(Duration::from_micros(1))
        );
    }

    #[test]
    fn the_dummy_quota_is_the_stricter_of_the_rate_and_the_budget() {
        let quota = |per_second, budget| {
            dummy_quota(per_second, budget).map(|q| (q.replenish_interval(), q.burst_size().get()))
        };
        assert_eq!(quota(0, None), None);
        assert_eq!(quota(2, None), Some((Duration::from_millis(500), 2)));
        let slow = Some(Duration::from_millis(2_900));
        assert_eq!(
            quota(0, slow),
            Some((Duration::from_millis(2_900), DUMMY_BURST))
        );
        assert_eq!(quota(2, slow), Some((Duration::from_millis(2_900), 2)));
        let fast = Some(Duration::from_millis(100));
        assert_eq!(quota(2, fast), Some((Duration::from_millis(500), 2)));
        assert_eq!(
            quota(10, fast),
            Some((Duration::from_millis(100), DUMMY_BURST))
        );
    }

    #[tokio::test]
    async fn unknown_emails_get_at_most_their_cpu_budget_of_dummy_hashes() {
        // 100 ms derivations at 1 % of a core: one per 10 s after the burst.
        let gate = Gate::new(
            limits(2, 8, 60_000),
            budget_period(Duration::from_millis(100), 1),
        );
        for _ in 0..DUMMY_BURST {
            drop(gate.slot(Lane::Unknown).await.unwrap());
        }
        assert!(matches!(
            gate.slot(Lane::Unknown).await,
            Err(PasswordError::Busy)
        ));
        // Real accounts are not budgeted.
        for _ in 0..8 {
            drop(gate.slot(Lane::Account).await.unwrap());
        }
    }

    #[tokio::test]
    async fn unknown_emails_start_at_most_their_rate_of_dummy_hashes() {
        let gate = Gate::new(
            HashLimits {
                unknown_per_second: 1,
                ..limits(2, 8, 60_000)
            },
            None,
        );
        drop(gate.slot(Lane::Unknown).await.unwrap());
        // The derivation is free again, but the second in this second is refused...
        assert!(matches!(
            gate.slot(Lane::Unknown).await,
            Err(PasswordError::Busy)
        ));
        // ...while real accounts are not rated.
        for _ in 0..3 {
            drop(gate.slot(Lane::Account).await.unwrap());
        }
    }
}
