//! Latency histograms and outcome counts, per client and merged.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Deserialize;

use crate::http::{Reply, TransportError};

/// Latencies are recorded in microseconds, up to an hour, 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// What happened to one request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Outcome {
    /// HTTP status and the error code of an error body, if any.
    Http(u16, Option<String>),
    Transport(&'static str),
}

impl Outcome {
    pub(crate) fn label(&self) -> String {
        match self {
            Self::Http(s, None) => s.to_string(),
            Self::Http(s, Some(code)) => format!("{s} {code}"),
            Self::Transport(k) => format!("transport:{k}"),
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorInner,
}

#[derive(Deserialize)]
struct ErrorInner {
    code: String,
}

/// The error code of an `{"error":{"code":...}}` body.
pub(crate) fn error_code(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|b| b.error.code)
}

pub(crate) fn outcome_of(r: &Result<Reply, TransportError>) -> Outcome {
    match r {
        Ok(reply) if reply.status.is_success() => Outcome::Http(reply.status.as_u16(), None),
        Ok(reply) => Outcome::Http(reply.status.as_u16(), error_code(&reply.body)),
        Err(e) => Outcome::Transport(e.label()),
    }
}

/// What one client measured (only requests inside the measured window).
#[derive(Debug)]
pub(crate) struct Measured {
    pub(crate) latency: Histogram<u64>,
    /// Open model only: how late the generator itself sent each request.
    pub(crate) send_lag: Histogram<u64>,
    /// Open model only: reply time minus actual send time.
    pub(crate) service: Histogram<u64>,
    pub(crate) outcomes: HashMap<Outcome, u64>,
    pub(crate) completed: u64,
    /// Open model: requests scheduled inside the run but never sent.
    pub(crate) unsent: u64,
}

impl Default for Measured {
    fn default() -> Self {
        Self {
            latency: new_histogram(),
            send_lag: new_histogram(),
            service: new_histogram(),
            outcomes: HashMap::new(),
            completed: 0,
            unsent: 0,
        }
    }
}

impl Measured {
    pub(crate) fn record(&mut self, latency: Duration, outcome: Outcome) {
        self.latency.saturating_record(micros(latency));
        *self.outcomes.entry(outcome).or_default() += 1;
        self.completed += 1;
    }

    pub(crate) fn merge(&mut self, other: &Self) {
        self.latency
            .add(&other.latency)
            .expect("histograms with the same bounds");
        self.send_lag
            .add(&other.send_lag)
            .expect("histograms with the same bounds");
        self.service
            .add(&other.service)
            .expect("histograms with the same bounds");
        for (k, v) in &other.outcomes {
            *self.outcomes.entry(k.clone()).or_default() += v;
        }
        self.completed += other.completed;
        self.unsent += other.unsent;
    }

    pub(crate) fn transport_errors(&self) -> u64 {
        self.outcomes
            .iter()
            .filter(|(k, _)| matches!(k, Outcome::Transport(_)))
            .map(|(_, v)| v)
            .sum()
    }

    /// Outcome labels and counts, sorted by label.
    pub(crate) fn outcome_table(&self) -> BTreeMap<String, u64> {
        self.outcomes.iter().map(|(k, v)| (k.label(), *v)).collect()
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
}

pub(crate) fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Percentiles {
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        mean: h.mean() / 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_read_from_error_bodies() {
        assert_eq!(
            error_code(br#"{"error":{"code":"SOLD_OUT","message":"x","details":{}}}"#).as_deref(),
            Some("SOLD_OUT")
        );
        assert_eq!(error_code(b"not json"), None);
        assert_eq!(
            Outcome::Http(409, Some("SOLD_OUT".into())).label(),
            "409 SOLD_OUT"
        );
        assert_eq!(Outcome::Transport("timeout").label(), "transport:timeout");
    }

    #[test]
    fn merged_percentiles_cover_both_clients() {
        let mut a = Measured::default();
        let mut b = Measured::default();
        for i in 1..=100u64 {
            a.record(Duration::from_millis(i), Outcome::Http(201, None));
        }
        b.record(Duration::from_secs(2), Outcome::Transport("timeout"));
        a.merge(&b);
        assert_eq!(a.completed, 101);
        assert_eq!(a.transport_errors(), 1);
        let p = percentiles(&a.latency);
        assert!((p.p50 - 51.0).abs() < 0.5, "{p:?}");
        assert!((p.max - 2000.0).abs() < 2.0, "{p:?}");
    }
}
