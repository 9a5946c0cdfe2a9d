//! Prometheus metrics: every name as a constant, the process-wide recorder,
//! and the `/metrics` rendering (served by our own router, no extra listener).
//!
//! Names follow the Prometheus conventions: the `flashsale_` namespace, base
//! units in the name, `_total` on counters. Labels come from bounded sets
//! only: route templates, outcome codes, rule names, and sale ids only for
//! sales that are running (their series expire a minute after they stop
//! being updated).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

pub const HTTP_REQUESTS_TOTAL: &str = "flashsale_http_requests_total";
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "flashsale_http_request_duration_seconds";
pub const PURCHASES_TOTAL: &str = "flashsale_purchases_total";
pub const PURCHASE_SCRIPT_DURATION_SECONDS: &str = "flashsale_purchase_script_duration_seconds";
pub const UNITS_SOLD_TOTAL: &str = "flashsale_units_sold_total";
pub const SALE_STOCK_UNITS: &str = "flashsale_sale_stock_units";
pub const SALE_SOLD_UNITS: &str = "flashsale_sale_sold_units";
pub const WRITE_BEHIND_PENDING: &str = "flashsale_write_behind_pending";
pub const WRITE_BEHIND_LAG_SECONDS: &str = "flashsale_write_behind_lag_seconds";
pub const WRITE_BEHIND_BATCH_SIZE: &str = "flashsale_write_behind_batch_size";
pub const WRITE_BEHIND_FLUSHED_TOTAL: &str = "flashsale_write_behind_flushed_total";
pub const WRITE_BEHIND_FAILED_TOTAL: &str = "flashsale_write_behind_failed_total";
pub const WRITE_BEHIND_DEAD_LETTERED_TOTAL: &str = "flashsale_write_behind_dead_lettered_total";
pub const WS_CONNECTIONS: &str = "flashsale_ws_connections";
pub const WS_MESSAGES_SENT_TOTAL: &str = "flashsale_ws_messages_sent_total";
pub const WS_SLOW_CLIENTS_DROPPED_TOTAL: &str = "flashsale_ws_slow_clients_dropped_total";
pub const WS_RATE_LIMITED_TOTAL: &str = "flashsale_ws_rate_limited_total";
pub const WS_REVOKED_TOTAL: &str = "flashsale_ws_revoked_total";
pub const WS_SNAPSHOT_READS_TOTAL: &str = "flashsale_ws_snapshot_reads_total";
pub const SCHEDULER_LEADER: &str = "flashsale_scheduler_leader";
pub const SCHEDULER_TRANSITIONS_TOTAL: &str = "flashsale_scheduler_transitions_total";
pub const RATE_LIMITED_TOTAL: &str = "flashsale_rate_limited_total";
pub const FRAUD_EVENTS_TOTAL: &str = "flashsale_fraud_events_total";
pub const FRAUD_VELOCITY_LIMIT: &str = "flashsale_fraud_velocity_limit";
pub const REDIS_ERRORS_TOTAL: &str = "flashsale_redis_errors_total";
pub const REDIS_UNCONFIRMED_TOTAL: &str = "flashsale_redis_unconfirmed_writes_total";
pub const REDIS_FAILOVERS_TOTAL: &str = "flashsale_redis_failovers_total";
pub const MONGODB_ERRORS_TOTAL: &str = "flashsale_mongodb_errors_total";
pub const REDIS_PERSISTENCE: &str = "flashsale_redis_persistence_info";
pub const ADMISSION_REJECTED_TOTAL: &str = "flashsale_admission_rejected_total";
pub const PASSWORD_HASH_REFUSED_TOTAL: &str = "flashsale_password_hash_refused_total";
pub const SIGNIN_PENALIZED_TOTAL: &str = "flashsale_signin_penalized_total";

/// Every metric name above: what dashboards and alerts may query.
pub const NAMES: &[&str] = &[
    HTTP_REQUESTS_TOTAL,
    HTTP_REQUEST_DURATION_SECONDS,
    PURCHASES_TOTAL,
    PURCHASE_SCRIPT_DURATION_SECONDS,
    UNITS_SOLD_TOTAL,
    SALE_STOCK_UNITS,
    SALE_SOLD_UNITS,
    WRITE_BEHIND_PENDING,
    WRITE_BEHIND_LAG_SECONDS,
    WRITE_BEHIND_BATCH_SIZE,
    WRITE_BEHIND_FLUSHED_TOTAL,
    WRITE_BEHIND_FAILED_TOTAL,
    WRITE_BEHIND_DEAD_LETTERED_TOTAL,
    WS_CONNECTIONS,
    WS_MESSAGES_SENT_TOTAL,
    WS_SLOW_CLIENTS_DROPPED_TOTAL,
    SCHEDULER_LEADER,
    SCHEDULER_TRANSITIONS_TOTAL,
    RATE_LIMITED_TOTAL,
    FRAUD_EVENTS_TOTAL,
    FRAUD_VELOCITY_LIMIT,
    REDIS_ERRORS_TOTAL,
    REDIS_UNCONFIRMED_TOTAL,
    REDIS_FAILOVERS_TOTAL,
    MONGODB_ERRORS_TOTAL,
    REDIS_PERSISTENCE,
    ADMISSION_REJECTED_TOTAL,
    PASSWORD_HASH_REFUSED_TOTAL,
    SIGNIN_PENALIZED_TOTAL,
    WS_RATE_LIMITED_TOTAL,
    WS_REVOKED_TOTAL,
    WS_SNAPSHOT_READS_TOTAL,
];

/// Histograms among [`NAMES`]: exported as `_bucket`, `_sum` and `_count`.
pub const HISTOGRAMS: &[&str] = &[
    HTTP_REQUEST_DURATION_SECONDS,
    PURCHASE_SCRIPT_DURATION_SECONDS,
    WRITE_BEHIND_BATCH_SIZE,
];

const LATENCY_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
const BATCH_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0,
];

/// The process-wide recorder, installed on first use. Every `App` in a
/// process shares it (the `metrics` facade has one global recorder).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(WRITE_BEHIND_BATCH_SIZE.to_owned()),
                    BATCH_BUCKETS,
                )
            })
            .expect("bucket lists are not empty")
            // Per-sale gauges of finished sales disappear instead of lingering.
            .idle_timeout(MetricKindMask::GAUGE, Some(Duration::from_secs(60)))
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
        }
        describe();
        handle
    })
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS_TOTAL,
        "HTTP requests by route template, method and status"
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "HTTP request duration by route template"
    );
    describe_counter!(PURCHASES_TOTAL, "Purchase attempts by outcome");
    describe_histogram!(
        PURCHASE_SCRIPT_DURATION_SECONDS,
        Unit::Seconds,
        "Round trip of the purchase script"
    );
    describe_counter!(UNITS_SOLD_TOTAL, "Units sold through this instance");
    describe_gauge!(
        SALE_STOCK_UNITS,
        "Units left per running sale (reported by the scheduler leader)"
    );
    describe_gauge!(
        SALE_SOLD_UNITS,
        "Units sold per running sale (reported by the scheduler leader)"
    );
    describe_gauge!(
        WRITE_BEHIND_PENDING,
        "Orders accepted but not yet in MongoDB"
    );
    describe_gauge!(
        WRITE_BEHIND_LAG_SECONDS,
        Unit::Seconds,
        "Age of the oldest order not yet in MongoDB"
    );
    describe_histogram!(WRITE_BEHIND_BATCH_SIZE, "Orders per MongoDB batch");
    describe_counter!(
        WRITE_BEHIND_FLUSHED_TOTAL,
        "Orders written to MongoDB by this instance"
    );
    describe_counter!(
        WRITE_BEHIND_FAILED_TOTAL,
        "Write-behind passes that failed (orders stay in Redis)"
    );
    describe_counter!(
        WRITE_BEHIND_DEAD_LETTERED_TOTAL,
        "Stream entries moved to a dead-letter stream, by kind (order, fraud event) and reason (malformed, rejected: MongoDB refused it WRITE_BEHIND_MAX_DELIVERIES times)"
    );
    describe_gauge!(WS_CONNECTIONS, "Open WebSocket connections");
    describe_counter!(WS_MESSAGES_SENT_TOTAL, "WebSocket frames sent");
    describe_counter!(
        WS_SLOW_CLIENTS_DROPPED_TOTAL,
        "WebSocket clients dropped for not reading"
    );
    describe_counter!(
        WS_RATE_LIMITED_TOTAL,
        "WebSockets closed (1008) for sending faster than WS_MESSAGES_PER_SECOND"
    );
    describe_counter!(
        WS_REVOKED_TOTAL,
        "WebSockets closed (1008) because the token expired or was revoked, or the user was blocked"
    );
    describe_counter!(
        WS_SNAPSHOT_READS_TOTAL,
        "Sale snapshots read from Redis for WebSocket joins (one per sale per room)"
    );
    describe_gauge!(
        SCHEDULER_LEADER,
        "1 while this instance holds the scheduler lease"
    );
    describe_counter!(
        SCHEDULER_TRANSITIONS_TOTAL,
        "Sale status transitions made by this instance"
    );
    describe_counter!(
        RATE_LIMITED_TOTAL,
        "Requests refused by a rate limit, by limit"
    );
    describe_counter!(FRAUD_EVENTS_TOTAL, "Fraud rules fired, by rule and action");
    describe_gauge!(
        FRAUD_VELOCITY_LIMIT,
        "Limit of each velocity rule that is on, by rule; scope=\"instance\": each instance counts alone, so N instances behind a balancer let one account reach up to N times it"
    );
    describe_counter!(REDIS_ERRORS_TOTAL, "Redis commands that failed");
    describe_counter!(
        REDIS_FAILOVERS_TOTAL,
        "Sentinel promotions this instance followed (+switch-master)"
    );
    describe_counter!(
        REDIS_UNCONFIRMED_TOTAL,
        "Writes too few replicas confirmed in time (REDIS_ACK_REPLICAS): purchases answered 503, write-behind passes retried"
    );
    describe_counter!(MONGODB_ERRORS_TOTAL, "MongoDB operations that failed");
    describe_gauge!(
        REDIS_PERSISTENCE,
        "Redis persistence settings seen at start-up (value 1)"
    );
    describe_counter!(
        ADMISSION_REJECTED_TOTAL,
        "Requests refused with 503 because too many were in flight, by class (all: the instance's limit; auth: sign-in and sign-up's share)"
    );
    describe_counter!(
        PASSWORD_HASH_REFUSED_TOTAL,
        "Sign-ins and sign-ups refused with 503 because the password hash queue was full or too slow"
    );
    describe_counter!(
        SIGNIN_PENALIZED_TOTAL,
        "Sign-ins refused with 429 before any work because their address failed too many sign-ins"
    );
}

/// The text exposition of every metric.
pub fn render() -> String {
    handle().render()
}

/// Housekeeping the exporter needs (histogram rotation, idle series); run on a timer.
pub fn upkeep() {
    handle().run_upkeep();
}

/// Counts a store failure under its store.
pub fn store_error(e: &crate::error::StoreError) {
    use crate::error::StoreError;
    match e {
        StoreError::Redis(_) => metrics::counter!(REDIS_ERRORS_TOTAL).increment(1),
        StoreError::Mongo(_) => metrics::counter!(MONGODB_ERRORS_TOTAL).increment(1),
        StoreError::Corrupt(_) => {}
        StoreError::Unconfirmed(_) => metrics::counter!(REDIS_UNCONFIRMED_TOTAL).increment(1),
    }
}

/// Handles of the per-request series, kept once looked up: building a
/// labelled key allocates and the registry lookup hashes every label, on
/// every request. Counters and histograms never expire (only gauges do), so
/// a kept handle stays the series `/metrics` renders.
type Labels3 = (&'static str, &'static str, &'static str);

fn kept<K, H>(
    cache: &std::sync::RwLock<std::collections::HashMap<K, H>>,
    key: K,
    make: impl FnOnce() -> H,
) -> H
where
    K: std::hash::Hash + Eq,
    H: Clone,
{
    if let Ok(map) = cache.read()
        && let Some(h) = map.get(&key)
    {
        return h.clone();
    }
    let h = make();
    if let Ok(mut map) = cache.write() {
        map.entry(key).or_insert_with(|| h.clone());
    }
    h
}

/// Counts one HTTP request and records its duration (labels are bounded:
/// route templates, methods and status labels are static sets).
pub fn http_request(route: &'static str, method: &'static str, status: &'static str, secs: f64) {
    use std::collections::HashMap;
    use std::sync::{LazyLock, RwLock};
    static COUNTERS: LazyLock<RwLock<HashMap<Labels3, metrics::Counter>>> =
        LazyLock::new(Default::default);
    static DURATIONS: LazyLock<RwLock<HashMap<&'static str, metrics::Histogram>>> =
        LazyLock::new(Default::default);
    kept(&COUNTERS, (route, method, status), || {
        metrics::counter!(HTTP_REQUESTS_TOTAL, "route" => route, "method" => method, "status" => status)
    })
    .increment(1);
    kept(
        &DURATIONS,
        route,
        || metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "route" => route),
    )
    .record(secs);
}

/// Counts a request refused by admission control; `class` is `all` (the
/// instance's in-flight limit) or `auth` (sign-in and sign-up's share).
pub fn admission_rejected(class: &'static str) {
    metrics::counter!(ADMISSION_REJECTED_TOTAL, "class" => class).increment(1);
}

/// Counts a stream entry moved to a dead-letter stream; `kind` is the
/// sink's (`order`, `fraud event`), `reason` `malformed` or `rejected`.
pub fn dead_lettered(kind: &'static str, reason: &'static str) {
    metrics::counter!(WRITE_BEHIND_DEAD_LETTERED_TOTAL, "kind" => kind, "reason" => reason)
        .increment(1);
}

/// Counts a sign-in or sign-up refused because hashing was busy.
pub fn hash_refused() {
    metrics::counter!(PASSWORD_HASH_REFUSED_TOTAL).increment(1);
}

/// Counts a sign-in refused because its address failed too many.
pub fn signin_penalized() {
    metrics::counter!(SIGNIN_PENALIZED_TOTAL).increment(1);
}

/// Counts one purchase attempt under its outcome label.
pub fn purchase_outcome(outcome: &'static str) {
    use std::collections::HashMap;
    use std::sync::{LazyLock, RwLock};
    static COUNTERS: LazyLock<RwLock<HashMap<&'static str, metrics::Counter>>> =
        LazyLock::new(Default::default);
    kept(
        &COUNTERS,
        outcome,
        || metrics::counter!(PURCHASES_TOTAL, "outcome" => outcome),
    )
    .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lists_every_metric_constant_of_this_file() {
        let source = include_str!("metrics.rs");
        let declared: Vec<&str> = source
            .lines()
            .filter(|l| l.starts_with("pub const ") && l.contains(": &str = \"flashsale_"))
            .filter_map(|l| l.split('"').nth(1))
            .collect();
        assert!(declared.len() >= 20, "found {declared:?}");
        for name in &declared {
            assert!(NAMES.contains(name), "{name} is missing from NAMES");
        }
        assert_eq!(declared.len(), NAMES.len(), "NAMES lists each once");
        for h in HISTOGRAMS {
            assert!(NAMES.contains(h));
        }
    }
}
