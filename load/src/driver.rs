//! The two load models.
//!
//! Closed: each of `connections` clients sends its next request as soon as the
//! previous reply arrives; latency is reply time minus send time.
//!
//! Open: the target arrival rate `R` is split over the clients; client `i`
//! owns the schedule `start + i/R + k*C/R` and latency is measured from each
//! request's INTENDED send time, so a server that falls behind shows up as
//! queueing delay instead of fewer, faster samples (coordinated omission).
//! Because tokio's timer ticks every millisecond, a client arms its timer one
//! tick early; a request that goes out before its intended time is timed from
//! its actual send, one that goes out late from its intended time.
//!
//! Warm-up requests (sent, or scheduled, before the warm-up ends) are not
//! measured but still reach the [`Tally`] used for the invariants.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use hyper::header::HeaderValue;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Barrier;
use tokio::time::Instant;

use crate::args::Common;
use crate::cpu::Probe;
use crate::http::{Client, Reply, Target, TransportError};
use crate::stats::{Measured, micros, outcome_of};

/// How early the open model arms its timer (tokio's timer has 1 ms ticks).
const TIMER_SLACK: Duration = Duration::from_millis(1);

/// What each request looks like.
#[derive(Debug)]
pub(crate) struct Workload {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) body: Option<Bytes>,
    /// Authorization values, one per buyer; empty for no auth.
    pub(crate) auth: Vec<HeaderValue>,
    /// For purchases: the sale and the user id behind each token.
    pub(crate) purchase: Option<PurchaseCheck>,
}

#[derive(Debug)]
pub(crate) struct PurchaseCheck {
    pub(crate) sale: String,
    pub(crate) users: Vec<String>,
}

impl Workload {
    /// Client `i`'s buyer for its `seq`-th request: clients walk disjoint
    /// strides of the buyer list.
    pub(crate) fn buyer(&self, i: usize, seq: u64, connections: usize) -> usize {
        if self.auth.is_empty() {
            return 0;
        }
        let n = self.auth.len() as u64;
        ((i as u64 + seq.wrapping_mul(connections as u64)) % n) as usize
    }

    pub(crate) fn build(
        &self,
        client: &Client,
        buyer: usize,
        body: Option<Bytes>,
    ) -> hyper::Request<http_body_util::Full<Bytes>> {
        client.request(
            self.method.clone(),
            &self.path,
            self.auth.get(buyer),
            body.or_else(|| self.body.clone()),
        )
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PurchaseReply {
    user_id: String,
    flash_sale_id: String,
    quantity: i64,
}

/// Everything the invariants need, over every phase (warm-up included).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Sum of `quantity` over 201 replies.
    pub(crate) units: i64,
    pub(crate) orders: u64,
    /// Units per `userId` of the 201 replies.
    pub(crate) per_user: HashMap<String, i64>,
    /// 201 replies naming another user or sale than the request's.
    pub(crate) mismatched: u64,
    /// 201 replies whose body could not be read.
    pub(crate) unreadable: u64,
}

impl Tally {
    pub(crate) fn observe(
        &mut self,
        check: Option<&PurchaseCheck>,
        buyer: usize,
        res: &Result<Reply, TransportError>,
    ) {
        let (Some(check), Ok(reply)) = (check, res) else {
            return;
        };
        if reply.status.as_u16() != 201 {
            return;
        }
        match serde_json::from_slice::<PurchaseReply>(&reply.body) {
            Ok(p) => {
                self.units += p.quantity;
                self.orders += 1;
                if check.users.get(buyer) != Some(&p.user_id) || p.flash_sale_id != check.sale {
                    self.mismatched += 1;
                }
                *self.per_user.entry(p.user_id).or_default() += p.quantity;
            }
            Err(_) => self.unreadable += 1,
        }
    }

    pub(crate) fn merge(&mut self, other: Self) {
        self.units += other.units;
        self.orders += other.orders;
        self.mismatched += other.mismatched;
        self.unreadable += other.unreadable;
        for (k, v) in other.per_user {
            *self.per_user.entry(k).or_default() += v;
        }
    }
}

/// How to drive the load.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) connections: usize,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    /// Closed model: stop after this many measured requests.
    pub(crate) requests: Option<u64>,
    /// Open model: target arrivals per second.
    pub(crate) rate: Option<f64>,
    pub(crate) timeout: Duration,
    /// The processes whose CPU time the measured window is charged with.
    pub(crate) cpu: Probe,
    /// Closed model: wait out a refusal's Retry-After before asking again.
    pub(crate) honor_retry_after: bool,
}

impl Plan {
    pub(crate) fn of(c: &Common) -> Self {
        Self {
            connections: c.connections,
            warmup: c.warmup,
            duration: c.duration,
            requests: c.requests,
            rate: c.rate,
            timeout: c.timeout,
            cpu: Probe::new(c.cpu_pids.clone()),
            honor_retry_after: c.honor_retry_after,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    start: Instant,
    measure_start: Instant,
    end: Instant,
}

/// The merged result of one run.
#[derive(Debug)]
pub(crate) struct RunResult {
    pub(crate) measured: Measured,
    pub(crate) tally: Tally,
    /// The measured window the throughput is computed over.
    pub(crate) elapsed: Duration,
    pub(crate) connects: u64,
    /// CPU per request of the watched processes over the measured window.
    pub(crate) cpu: Value,
}

struct ClientOut {
    measured: Measured,
    tally: Tally,
    last_done: Option<Instant>,
    connects: u64,
}

/// Runs the plan: connects every client, starts them together, merges.
pub(crate) async fn run(target: &Target, workload: Arc<Workload>, plan: &Plan) -> RunResult {
    let n = plan.connections;
    let barrier = Arc::new(Barrier::new(n + 1));
    let timing = Arc::new(OnceLock::<Timing>::new());
    let claimed = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let target = target.clone();
        let workload = Arc::clone(&workload);
        let plan = plan.clone();
        let barrier = Arc::clone(&barrier);
        let timing = Arc::clone(&timing);
        let claimed = Arc::clone(&claimed);
        handles.push(tokio::spawn(async move {
            let mut client = Client::new(target, plan.timeout);
            // Connect before the clock starts; a failure is retried (and
            // counted) inside the loop.
            let _ = client.warm_up_connection().await;
            barrier.wait().await;
            barrier.wait().await;
            let t = *timing.get().expect("timing set before the second barrier");
            match plan.rate {
                None => closed_client(i, client, &workload, &plan, t, &claimed).await,
                Some(rate) => open_client(i, client, &workload, &plan, t, rate).await,
            }
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    let t = Timing {
        start,
        measure_start: start + plan.warmup,
        end: start + plan.warmup + plan.duration,
    };
    let _ = timing.set(t);
    barrier.wait().await;
    // The CPU clock starts with the measured window, and stops when the last
    // client is done.
    let probe = plan.cpu.clone();
    let opening = tokio::spawn(async move {
        tokio::time::sleep_until(t.measure_start).await;
        probe.sample()
    });

    let mut measured = Measured::default();
    let mut tally = Tally::default();
    let mut last_done: Option<Instant> = None;
    let mut connects = 0;
    for h in handles {
        match h.await {
            Ok(out) => {
                measured.merge(&out.measured);
                tally.merge(out.tally);
                last_done = last_done.max(out.last_done);
                connects += out.connects;
            }
            Err(e) => eprintln!("flashsale-load: a client task failed: {e}"),
        }
    }
    let closing = plan.cpu.sample();
    let cpu = match opening.await {
        Ok(opening) => plan.cpu.report(&opening, &closing, measured.completed),
        Err(_) => Value::Null,
    };
    let window = last_done.map_or(plan.duration, |d| {
        d.saturating_duration_since(t.measure_start)
    });
    let elapsed = if plan.rate.is_some() {
        window.max(plan.duration)
    } else if window.is_zero() {
        plan.duration
    } else {
        window
    };
    RunResult {
        measured,
        tally,
        elapsed,
        connects,
        cpu,
    }
}

async fn closed_client(
    i: usize,
    mut client: Client,
    wl: &Workload,
    plan: &Plan,
    t: Timing,
    claimed: &AtomicU64,
) -> ClientOut {
    let mut m = Measured::default();
    let mut tally = Tally::default();
    let mut last_done = None;
    let mut seq = 0u64;
    loop {
        let start = Instant::now();
        if start >= t.end {
            break;
        }
        let measured = start >= t.measure_start;
        if measured
            && let Some(limit) = plan.requests
            && claimed.fetch_add(1, Ordering::Relaxed) >= limit
        {
            break;
        }
        let buyer = wl.buyer(i, seq, plan.connections);
        seq += 1;
        let req = wl.build(&client, buyer, None);
        let res = client.send(req).await;
        let done = Instant::now();
        tally.observe(wl.purchase.as_ref(), buyer, &res);
        if measured {
            m.record(done - start, outcome_of(&res));
            last_done = Some(done);
        }
        if matches!(res, Err(TransportError::Connect)) {
            // Do not spin on a refused connection.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if plan.honor_retry_after
            && let Ok(reply) = &res
            && matches!(reply.status.as_u16(), 429 | 503)
            && let Some(secs) = reply.retry_after
        {
            let until = Instant::now() + Duration::from_secs(secs.min(5));
            tokio::time::sleep_until(until.min(t.end)).await;
        }
    }
    ClientOut {
        measured: m,
        tally,
        last_done,
        connects: client.connects,
    }
}

async fn open_client(
    i: usize,
    mut client: Client,
    wl: &Workload,
    plan: &Plan,
    t: Timing,
    rate: f64,
) -> ClientOut {
    let mut m = Measured::default();
    let mut tally = Tally::default();
    let mut last_done = None;
    let interval = plan.connections as f64 / rate;
    let offset = i as f64 / rate;
    let intended_at = |k: u64| t.start + Duration::from_secs_f64(offset + k as f64 * interval);
    let mut k = 0u64;
    loop {
        let intended = intended_at(k);
        if intended >= t.end {
            break;
        }
        if Instant::now() >= t.end {
            // Behind schedule when the run ended: count what was never sent.
            let mut j = k;
            loop {
                let at = intended_at(j);
                if at >= t.end {
                    break;
                }
                if at >= t.measure_start {
                    m.unsent += 1;
                }
                j += 1;
            }
            break;
        }
        // The timer fires on the first 1 ms tick at or after its deadline (and
        // later still on a busy box), so aim one tick early; a request sent
        // early is timed from its actual send, a late one from its intended
        // time.
        tokio::time::sleep_until(intended.checked_sub(TIMER_SLACK).unwrap_or(intended)).await;
        let sent = Instant::now();
        let from = sent.min(intended);
        let buyer = wl.buyer(i, k, plan.connections);
        k += 1;
        let req = wl.build(&client, buyer, None);
        let res = client.send(req).await;
        let done = Instant::now();
        tally.observe(wl.purchase.as_ref(), buyer, &res);
        if intended >= t.measure_start {
            m.send_lag
                .saturating_record(micros(sent.saturating_duration_since(intended)));
            m.service.saturating_record(micros(done - sent));
            m.record(done - from, outcome_of(&res));
            last_done = Some(done);
        }
    }
    ClientOut {
        measured: m,
        tally,
        last_done,
        connects: client.connects,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_walk_disjoint_buyers() {
        let wl = Workload {
            method: Method::GET,
            path: "/".to_owned(),
            body: None,
            auth: (0..10)
                .map(|i| HeaderValue::from_str(&i.to_string()).unwrap())
                .collect(),
            purchase: None,
        };
        let a: Vec<usize> = (0..5).map(|s| wl.buyer(0, s, 2)).collect();
        let b: Vec<usize> = (0..5).map(|s| wl.buyer(1, s, 2)).collect();
        assert_eq!(a, [0, 2, 4, 6, 8]);
        assert_eq!(b, [1, 3, 5, 7, 9]);
    }
}
