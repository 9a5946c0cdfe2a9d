//! CPU accounting over the measured window: the user + system CPU time of
//! named processes (`--cpu-pids server=PID,redis=PID`) and of the load
//! generator itself, read from `/proc/<pid>/stat` when the measured window
//! opens and when the last client is done, so a report can say what each
//! request cost each process in CPU microseconds.

use std::time::Instant;

use serde_json::{Value, json};

/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, which Linux fixes at
/// 100 per second on every architecture it exports to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// A process whose CPU time is sampled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Watched {
    pub(crate) name: String,
    /// `None`: the load generator itself (`/proc/self`).
    pub(crate) pid: Option<u32>,
}

/// Parses `name=pid,name=pid`: names are short words, pids positive.
pub(crate) fn parse_pids(s: &str) -> Result<Vec<Watched>, String> {
    let mut out: Vec<Watched> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, pid) = part
            .split_once('=')
            .ok_or_else(|| format!("`--cpu-pids`: `{part}` is not NAME=PID"))?;
        let ok_name = !name.is_empty()
            && name.len() <= 32
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok_name || name == "load" {
            return Err(format!(
                "`--cpu-pids`: `{name}` is not a usable name (letters, digits, - and _; `load` is this process)"
            ));
        }
        let pid: u32 = pid
            .trim()
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("`--cpu-pids`: `{pid}` is not a process id"))?;
        if out.iter().any(|w| w.name == name) {
            return Err(format!("`--cpu-pids`: `{name}` given twice"));
        }
        out.push(Watched {
            name: name.to_owned(),
            pid: Some(pid),
        });
    }
    Ok(out)
}

/// User + system ticks of a process, from the fields after the command name
/// (which may itself hold spaces and parentheses, so split at the last `)`).
fn ticks_of_stat(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the line, utime 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn ticks(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    ticks_of_stat(&std::fs::read_to_string(path).ok()?)
}

/// One reading of every watched process.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    at: Instant,
    ticks: Vec<Option<u64>>,
}

/// The processes to sample: the named ones, then this load generator.
#[derive(Debug, Clone, Default)]
pub(crate) struct Probe {
    watched: Vec<Watched>,
}

impl Probe {
    pub(crate) fn new(mut named: Vec<Watched>) -> Self {
        named.push(Watched {
            name: "load".to_owned(),
            pid: None,
        });
        Self { watched: named }
    }

    pub(crate) fn sample(&self) -> Sample {
        Sample {
            at: Instant::now(),
            ticks: self.watched.iter().map(|w| ticks(w.pid)).collect(),
        }
    }

    /// What each process spent between two samples, per request: a JSON
    /// object of name -> {cpu_s, cores, us_per_request}; a process that was
    /// gone at either reading is reported as null.
    pub(crate) fn report(&self, from: &Sample, to: &Sample, requests: u64) -> Value {
        let wall = to.at.saturating_duration_since(from.at).as_secs_f64();
        let mut out = serde_json::Map::new();
        for (i, w) in self.watched.iter().enumerate() {
            let v = match (from.ticks[i], to.ticks[i]) {
                (Some(a), Some(b)) if b >= a => {
                    let cpu = (b - a) as f64 / TICKS_PER_SECOND;
                    json!({
                        "cpu_s": round3(cpu),
                        "cores": if wall > 0.0 { round3(cpu / wall) } else { 0.0 },
                        "us_per_request": if requests > 0 {
                            round3(cpu * 1e6 / requests as f64)
                        } else {
                            0.0
                        },
                    })
                }
                _ => Value::Null,
            };
            out.insert(w.name.clone(), v);
        }
        json!({ "window_s": round3(wall), "requests": requests, "processes": out })
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_are_utime_plus_stime_even_with_odd_names() {
        let line =
            "4242 (weird ) name) S 1 4242 4242 0 -1 4194560 500 0 0 0 1234 56 0 0 20 0 8 0 100 0 0";
        assert_eq!(ticks_of_stat(line), Some(1290));
        assert_eq!(ticks_of_stat("garbage"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        assert!(ticks(None).is_some());
    }

    #[test]
    fn pid_lists_parse_and_refuse_nonsense() {
        let w = parse_pids("server=12, redis=34").unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[1].name, "redis");
        assert_eq!(w[1].pid, Some(34));
        for bad in [
            "server", "server=0", "server=x", "a b=1", "load=5", "s=1,s=2",
        ] {
            assert!(parse_pids(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_report_divides_by_requests() {
        let p = Probe::new(vec![]);
        let t = Instant::now();
        let a = Sample {
            at: t,
            ticks: vec![Some(100)],
        };
        let b = Sample {
            at: t + std::time::Duration::from_secs(2),
            ticks: vec![Some(150)],
        };
        let r = p.report(&a, &b, 10_000);
        assert_eq!(r["processes"]["load"]["cpu_s"], 0.5);
        assert_eq!(r["processes"]["load"]["cores"], 0.25);
        assert_eq!(r["processes"]["load"]["us_per_request"], 50.0);
    }
}
