//! `Storm`: concurrent buyers hammering one sale through one or more
//! instances, recording every answer; for the fault tests and the SIGTERM
//! test. Each buyer is a fresh user with a minted token and behaves as
//! DESIGN.md asks of a client: every purchase carries an Idempotency-Key, and
//! an answer that leaves the outcome unknown (503, a timeout, a dropped
//! connection) is retried with the same key until a definite answer comes,
//! also after `stop` (for a bounded time), so an order that Redis executed
//! but could not answer is still counted once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Api, customer_token};
use crate::support::eventually;

/// A sale no storm sells out or runs past: a million units, a million per
/// buyer, one per purchase, open for an hour. Returns its id.
pub async fn big_sale(api: &Api) -> String {
    let product = api.create_product(5.0).await;
    let sale = api
        .sale_for(&product, -60, 3600, 1_000_000, 1_000_000, 1)
        .await;
    sale["id"].as_str().unwrap().to_owned()
}

/// How long buyers go on retrying an attempt of unknown outcome after
/// `stop`.
const SETTLE: Duration = Duration::from_secs(15);

/// What the buyers saw, shared by the workers.
#[derive(Debug, Default)]
struct Tally {
    accepted: Mutex<Vec<String>>,
    /// Each accepted order: through which of the bases, when its request
    /// was sent and when the 201 came.
    accepted_at: Mutex<Vec<(usize, Instant, Instant)>>,
    statuses: Mutex<HashMap<u16, usize>>,
    unavailable_without_retry_after: AtomicUsize,
    /// Answers that are neither an order (201) nor an error body.
    malformed: AtomicUsize,
    /// Requests that got no answer (refused, reset) other than by timing out.
    transport_errors: AtomicUsize,
    timeouts: AtomicUsize,
    /// Buyers whose last attempt still had an unknown outcome when the
    /// settling time after `stop` ran out.
    unresolved: AtomicUsize,
    /// The longest a request took to get its answer.
    slowest: Mutex<Duration>,
    /// The longest a 429 or 503 took to come back.
    slowest_refusal: Mutex<Duration>,
}

#[derive(Debug)]
pub struct Storm {
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Storm {
    /// Starts `workers` buyers, each sending to `bases` in turn; a buyer
    /// that got a 503 waits 20 ms before it tries again.
    pub fn start(bases: &[String], sale: &str, workers: usize) -> Self {
        Self::start_paced(bases, sale, workers, Duration::from_millis(20))
    }

    /// As `start`, but a buyer sends its next request the moment an answer
    /// comes, 503 or not: the heaviest load that many clients can offer.
    pub fn start_unpaced(bases: &[String], sale: &str, workers: usize) -> Self {
        Self::start_paced(bases, sale, workers, Duration::ZERO)
    }

    fn start_paced(bases: &[String], sale: &str, workers: usize, pacing: Duration) -> Self {
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..workers)
            .map(|w| {
                let (tally, stop) = (tally.clone(), stop.clone());
                let (bases, sale) = (bases.to_vec(), sale.to_owned());
                tokio::spawn(async move {
                    buy_until_stopped(w, &bases, &sale, &tally, &stop, pacing).await
                })
            })
            .collect();
        Self {
            tally,
            stop,
            workers,
        }
    }

    /// Orders accepted so far.
    pub fn accepted(&self) -> usize {
        self.tally.accepted.lock().unwrap().len()
    }

    /// Waits (up to 30 s) until `n` orders in all have been accepted.
    pub async fn reaches(&self, n: usize) -> bool {
        eventually(Duration::from_secs(30), || async { self.accepted() >= n }).await
    }

    /// For each base, when the first 201 came to a request sent after
    /// `since` (answers to requests already in flight do not count).
    pub fn first_accepted_after(&self, since: Instant, bases: usize) -> Vec<Option<Instant>> {
        let at = self.tally.accepted_at.lock().unwrap();
        (0..bases)
            .map(|b| {
                at.iter()
                    .filter(|(base, sent, _)| *base == b && *sent >= since)
                    .map(|(_, _, answered)| *answered)
                    .min()
            })
            .collect()
    }

    /// Answers with `status` so far.
    pub fn count(&self, status: u16) -> usize {
        let statuses = self.tally.statuses.lock().unwrap();
        statuses.get(&status).copied().unwrap_or(0)
    }

    /// Stops every buyer (each finishes its request) and returns the tally.
    pub async fn stop(self) -> StormResult {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.await.unwrap();
        }
        let t = &self.tally;
        StormResult {
            accepted: t.accepted.lock().unwrap().clone(),
            statuses: t.statuses.lock().unwrap().clone(),
            unavailable_without_retry_after: t
                .unavailable_without_retry_after
                .load(Ordering::Relaxed),
            malformed: t.malformed.load(Ordering::Relaxed),
            transport_errors: t.transport_errors.load(Ordering::Relaxed),
            timeouts: t.timeouts.load(Ordering::Relaxed),
            unresolved: t.unresolved.load(Ordering::Relaxed),
            slowest: *t.slowest.lock().unwrap(),
            slowest_refusal: *t.slowest_refusal.lock().unwrap(),
        }
    }
}

async fn buy_until_stopped(
    w: usize,
    bases: &[String],
    sale: &str,
    tally: &Tally,
    stop: &AtomicBool,
    pacing: Duration,
) {
    let token = customer_token();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut i = w;
    let mut attempts = 0u64;
    // The key of an attempt whose outcome is unknown, to send again.
    let mut pending: Option<String> = None;
    let mut settle_until: Option<Instant> = None;
    loop {
        if stop.load(Ordering::Relaxed) {
            let until = *settle_until.get_or_insert_with(|| Instant::now() + SETTLE);
            if pending.is_none() {
                break;
            }
            if Instant::now() >= until {
                tally.unresolved.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        i += 1;
        let which = i % bases.len();
        let base = &bases[which];
        let key = pending.take().unwrap_or_else(|| {
            attempts += 1;
            format!("storm-{w}-{attempts}")
        });
        let sent_at = Instant::now();
        let sent = client
            .post(format!("{base}/api/purchase-product"))
            .bearer_auth(&token)
            .header("Idempotency-Key", &key)
            .json(&json!({ "flashSaleId": sale, "quantity": 1 }))
            .send()
            .await;
        let r = match sent {
            Ok(r) => r,
            Err(e) => {
                let counter = if e.is_timeout() {
                    &tally.timeouts
                } else {
                    &tally.transport_errors
                };
                counter.fetch_add(1, Ordering::Relaxed);
                pending = Some(key);
                // Pacing, not synchronisation: an instance that is down
                // refuses at once, so back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let status = r.status().as_u16();
        {
            let took = sent_at.elapsed();
            let mut slowest = tally.slowest.lock().unwrap();
            *slowest = (*slowest).max(took);
            if matches!(status, 429 | 503) {
                let mut slowest = tally.slowest_refusal.lock().unwrap();
                *slowest = (*slowest).max(took);
            }
        }
        if status == 503 && !r.headers().contains_key("retry-after") {
            tally
                .unavailable_without_retry_after
                .fetch_add(1, Ordering::Relaxed);
        }
        match r.json::<Value>().await {
            Ok(v) if status == 201 && v["id"].is_string() => {
                let now = Instant::now();
                tally
                    .accepted
                    .lock()
                    .unwrap()
                    .push(v["id"].as_str().unwrap().to_owned());
                tally
                    .accepted_at
                    .lock()
                    .unwrap()
                    .push((which, sent_at, now));
            }
            Ok(v) if status != 201 && v["error"]["code"].is_string() => {}
            _ => {
                tally.malformed.fetch_add(1, Ordering::Relaxed);
            }
        }
        *tally.statuses.lock().unwrap().entry(status).or_default() += 1;
        if status == 503 {
            pending = Some(key);
            // Pacing, as above: Retry-After asks clients to slow down.
            if !pacing.is_zero() {
                tokio::time::sleep(pacing).await;
            }
        }
    }
}

#[derive(Debug)]
pub struct StormResult {
    pub accepted: Vec<String>,
    pub statuses: HashMap<u16, usize>,
    pub unavailable_without_retry_after: usize,
    pub malformed: usize,
    pub transport_errors: usize,
    pub timeouts: usize,
    /// Buyers left with an attempt of unknown outcome after `stop`.
    pub unresolved: usize,
    /// The longest a request took to get its answer.
    pub slowest: Duration,
    /// The longest a 429 or 503 took to come back.
    pub slowest_refusal: Duration,
}

impl StormResult {
    /// Answers received, of any status.
    pub fn answered(&self) -> usize {
        self.statuses.values().sum()
    }

    /// No 5xx but 503, every 503 with Retry-After, every answer whole, no
    /// request left hanging, no attempt left with an unknown outcome.
    pub fn assert_clean(&self) {
        let five_hundreds: usize = self
            .statuses
            .iter()
            .filter(|(s, _)| **s >= 500 && **s != 503)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(
            five_hundreds, 0,
            "no 5xx other than 503: {:?}",
            self.statuses
        );
        assert_eq!(
            self.unavailable_without_retry_after, 0,
            "every 503 carries Retry-After"
        );
        assert_eq!(
            self.malformed, 0,
            "every answer is an order or an error body"
        );
        assert_eq!(self.timeouts, 0, "no request hung until the client timeout");
        assert_eq!(
            self.unresolved, 0,
            "every attempt of unknown outcome got a definite answer on retry"
        );
    }
}
