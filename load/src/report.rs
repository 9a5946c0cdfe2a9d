//! The human report and the one-line JSON summary.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::args::Common;
use crate::driver::RunResult;
use crate::stats::{Percentiles, percentiles};

/// One checked invariant.
#[derive(Debug, Clone)]
pub(crate) struct Invariant {
    pub(crate) name: &'static str,
    pub(crate) pass: bool,
    pub(crate) detail: String,
}

impl Invariant {
    pub(crate) fn new(name: &'static str, pass: bool, detail: impl Into<String>) -> Self {
        Self {
            name,
            pass,
            detail: detail.into(),
        }
    }
}

/// Everything printed about one run.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    pub(crate) command: &'static str,
    pub(crate) what: String,
    pub(crate) mode: Option<&'static str>,
    pub(crate) common: &'a Common,
    pub(crate) result: &'a RunResult,
    /// Extra lines printed before the results (the sale and its settings).
    pub(crate) context: Vec<String>,
    pub(crate) sale: Option<Value>,
    pub(crate) invariants: Vec<Invariant>,
}

fn pct_json(p: &Percentiles) -> Value {
    let r = |x: f64| (x * 1000.0).round() / 1000.0;
    json!({
        "p50": r(p.p50), "p90": r(p.p90), "p99": r(p.p99), "p999": r(p.p999),
        "max": r(p.max), "mean": r(p.mean),
    })
}

impl Report<'_> {
    pub(crate) fn passed(&self) -> bool {
        self.invariants.iter().all(|i| i.pass)
    }

    fn achieved(&self) -> f64 {
        let s = self.result.elapsed.as_secs_f64();
        if s > 0.0 {
            self.result.measured.completed as f64 / s
        } else {
            0.0
        }
    }

    fn model(&self) -> &'static str {
        if self.common.rate.is_some() {
            "open"
        } else {
            "closed"
        }
    }

    /// The human-readable report.
    pub(crate) fn human(&self) -> String {
        let c = self.common;
        let m = &self.result.measured;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} {} ({} model): {} connections, {:.1} s measured after {:.1} s warm-up, target {}",
            self.command,
            self.what,
            self.model(),
            c.connections,
            c.duration.as_secs_f64(),
            c.warmup.as_secs_f64(),
            c.target.display
        );
        for line in &self.context {
            let _ = writeln!(s, "{line}");
        }
        let offered = match c.rate {
            Some(r) => format!("{r:.1} req/s"),
            None => "n/a (closed model: each client sends when its reply arrives)".to_owned(),
        };
        let _ = writeln!(s, "throughput:");
        let _ = writeln!(s, "  offered   {offered}");
        let _ = writeln!(
            s,
            "  achieved  {:.1} req/s ({} responses in {:.2} s)",
            self.achieved(),
            m.completed,
            self.result.elapsed.as_secs_f64()
        );
        let p = percentiles(&m.latency);
        let basis = if c.rate.is_some() {
            "from intended send time"
        } else {
            "from actual send time"
        };
        let _ = writeln!(
            s,
            "latency ms ({basis}): p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
            p.p50, p.p90, p.p99, p.p999, p.max, p.mean
        );
        if c.rate.is_some() {
            let v = percentiles(&m.service);
            let _ = writeln!(
                s,
                "service ms (from actual send time):  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
                v.p50, v.p90, v.p99, v.p999, v.max
            );
            let l = percentiles(&m.send_lag);
            let _ = writeln!(
                s,
                "send lag ms (actual - intended send): p50 {:.3}  p99 {:.3}  max {:.3}; unsent (behind schedule at the end): {}",
                l.p50, l.p99, l.max, m.unsent
            );
        }
        let _ = writeln!(s, "outcomes:");
        for (k, v) in m.outcome_table() {
            let _ = writeln!(s, "  {k:<40} {v:>10}");
        }
        let _ = writeln!(
            s,
            "transport errors: {}   connections opened: {}",
            m.transport_errors(),
            self.result.connects
        );
        if let Some(procs) = self.result.cpu["processes"].as_object() {
            let parts: Vec<String> = procs
                .iter()
                .map(
                    |(name, v)| match (v["us_per_request"].as_f64(), v["cores"].as_f64()) {
                        (Some(us), Some(cores)) => format!("{name} {us:.1} us ({cores:.2} cores)"),
                        _ => format!("{name} unreadable"),
                    },
                )
                .collect();
            let _ = writeln!(s, "cpu per request: {}", parts.join(", "));
        }
        if !self.invariants.is_empty() {
            let _ = writeln!(s, "invariants:");
            for i in &self.invariants {
                let _ = writeln!(
                    s,
                    "  {} {}: {}",
                    if i.pass { "PASS" } else { "FAIL" },
                    i.name,
                    i.detail
                );
            }
        }
        let _ = writeln!(s, "result: {}", if self.passed() { "PASS" } else { "FAIL" });
        s
    }

    /// The one-line machine-readable summary.
    pub(crate) fn json(&self) -> String {
        let c = self.common;
        let m = &self.result.measured;
        let mut v = json!({
            "command": self.command,
            "what": self.what,
            "mode": self.mode,
            "model": self.model(),
            "target": c.target.display,
            "connections": c.connections,
            "warmup_s": c.warmup.as_secs_f64(),
            "duration_s": c.duration.as_secs_f64(),
            "requests_limit": c.requests,
            "offered_rps": c.rate,
            "achieved_rps": (self.achieved() * 10.0).round() / 10.0,
            "completed": m.completed,
            "elapsed_s": self.result.elapsed.as_secs_f64(),
            "latency_ms": pct_json(&percentiles(&m.latency)),
            "outcomes": m.outcome_table(),
            "transport_errors": m.transport_errors(),
            "connections_opened": self.result.connects,
            "cpu": self.result.cpu,
            "sale": self.sale,
            "invariants": self.invariants.iter().map(|i| json!({
                "name": i.name, "pass": i.pass, "detail": i.detail,
            })).collect::<Vec<_>>(),
            "pass": self.passed(),
        });
        if c.rate.is_some() {
            v["send_lag_ms"] = pct_json(&percentiles(&m.send_lag));
            v["service_ms"] = pct_json(&percentiles(&m.service));
            v["unsent"] = json!(m.unsent);
        }
        v.to_string()
    }

    /// Prints the report: human text on stdout, or on stderr with the JSON
    /// line on stdout when `--json` is set.
    pub(crate) fn print(&self) {
        if self.common.json {
            eprint!("{}", self.human());
            println!("{}", self.json());
        } else {
            print!("{}", self.human());
        }
    }
}
