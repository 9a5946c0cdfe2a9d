//! `signin-flood`: sign-ins with made-up emails from many loopback
//! addresses at once, the attack of the opening second of a sale. Each
//! address is one client sending its sign-ins one after another; rounds of
//! fresh addresses follow each other until the duration is up, so the
//! per-address limits never quiet the flood down. Reports the answers by
//! status; the bench measures the purchase path while it runs.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use serde_json::json;

use crate::http::{Client, Target};

/// What `signin-flood` does.
#[derive(Debug, Clone)]
pub(crate) struct FloodArgs {
    pub(crate) target: Target,
    /// Addresses per round (each a client of its own).
    pub(crate) addresses: u16,
    /// Sign-ins each address sends per round.
    pub(crate) per_address: u32,
    /// Rounds follow each other until this is up (at least one round).
    pub(crate) duration: Duration,
    pub(crate) timeout: Duration,
    pub(crate) threads: Option<usize>,
    pub(crate) json: bool,
}

/// The flood's `n`-th address of round `round`: 127.(64 + round).x.y, never
/// 127.0.0.0/16 (where the buyers and the service are).
fn address(round: u32, n: u16) -> Ipv4Addr {
    let [hi, lo] = (n + 1).to_be_bytes();
    Ipv4Addr::new(127, 64 + (round % 160) as u8, hi, lo)
}

pub(crate) async fn run(args: &FloodArgs) -> Result<bool, String> {
    let started = Instant::now();
    let statuses: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let mut round = 0u32;
    loop {
        let tasks: Vec<_> = (0..args.addresses)
            .map(|n| {
                let ip = address(round, n);
                let mut client = Client::from_address(args.target.clone(), args.timeout, ip);
                let statuses = Arc::clone(&statuses);
                let per_address = args.per_address;
                tokio::spawn(async move {
                    for i in 0..per_address {
                        let body = json!({
                            "email": format!("flood-{round}-{ip}-{i}@flood.example"),
                            "password": "not-the-password",
                        });
                        let req = client.request(
                            Method::POST,
                            "/api/signin",
                            None,
                            Some(Bytes::from(body.to_string())),
                        );
                        let label = match client.send(req).await {
                            Ok(reply) => reply.status.as_u16().to_string(),
                            Err(e) => e.label().to_owned(),
                        };
                        *statuses.lock().unwrap().entry(label).or_default() += 1;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.map_err(|e| format!("a flood client failed: {e}"))?;
        }
        round += 1;
        if started.elapsed() >= args.duration {
            break;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let statuses = statuses.lock().unwrap().clone();
    let sent: u64 = statuses.values().sum();
    if args.json {
        println!(
            "{}",
            json!({
                "command": "signin-flood",
                "rounds": round,
                "addresses_per_round": args.addresses,
                "sent": sent,
                "seconds": (elapsed * 1000.0).round() / 1000.0,
                "outcomes": statuses,
            })
        );
    }
    eprintln!(
        "signin-flood: {sent} sign-ins in {round} rounds of {} addresses x {} in {elapsed:.1} s; answers {statuses:?}",
        args.addresses, args.per_address
    );
    // The flood is the point; it passes unless the server stopped answering.
    Ok(statuses.keys().any(|k| k.parse::<u16>().is_ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_addresses_are_distinct_loopback_and_away_from_the_buyers() {
        let a = address(0, 0);
        assert_eq!(a, Ipv4Addr::new(127, 64, 0, 1));
        assert_eq!(address(0, 299), Ipv4Addr::new(127, 64, 1, 44));
        assert_eq!(address(1, 0), Ipv4Addr::new(127, 65, 0, 1));
        for round in 0..400 {
            for n in [0, 1, 65_534] {
                let ip = address(round, n);
                assert!(ip.is_loopback());
                assert_ne!(ip.octets()[1], 0, "never 127.0.x.x");
            }
        }
    }
}
