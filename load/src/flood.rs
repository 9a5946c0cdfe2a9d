//! `signin-flood`: sign-ins with made-up emails from many loopback
//! addresses at once, the attack of the opening second of a sale. Each
//! address is one client sending its sign-ins one after another; rounds of
//! fresh addresses follow each other until the duration is up, so the
//! per-address limits never quiet the flood down. With `--rate` the flood
//! is an open model instead: a fixed number of sign-ins per second, each on
//! a connection of its own, however slowly they are answered (so a faster
//! refusal never buys more flood). Reports the answers by
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
    /// The first round's number: a run from round N uses other addresses
    /// than runs before it from lower rounds, so each meets a server that
    /// has seen none of them (fresh attackers every run).
    pub(crate) first_round: u32,
    /// Rounds follow each other until this is up (at least one round).
    pub(crate) duration: Duration,
    /// Open model: sign-ins per second in all, whatever the answers take.
    pub(crate) rate: Option<f64>,
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

/// The made-up sign-in of the `i`-th request from `ip` in round `round`.
fn signin(
    client: &Client,
    round: u32,
    ip: Ipv4Addr,
    i: u32,
) -> hyper::Request<http_body_util::Full<Bytes>> {
    let body = json!({
        "email": format!("flood-{round}-{ip}-{i}@flood.example"),
        "password": "not-the-password",
    });
    client.request(
        Method::POST,
        "/api/signin",
        None,
        Some(Bytes::from(body.to_string())),
    )
}

type Statuses = Arc<Mutex<BTreeMap<String, u64>>>;

async fn send_one(client: &mut Client, round: u32, ip: Ipv4Addr, i: u32, statuses: &Statuses) {
    let req = signin(client, round, ip, i);
    let label = match client.send(req).await {
        Ok(reply) => reply.status.as_u16().to_string(),
        Err(e) => e.label().to_owned(),
    };
    *statuses.lock().unwrap().entry(label).or_default() += 1;
}

/// Closed model: each address of a round sends its sign-ins one after
/// another; the next round starts when every address is done.
async fn closed(args: &FloodArgs, statuses: &Statuses) -> Result<u32, String> {
    let started = Instant::now();
    let mut round = args.first_round;
    loop {
        let tasks: Vec<_> = (0..args.addresses)
            .map(|n| {
                let ip = address(round, n);
                let mut client = Client::from_address(args.target.clone(), args.timeout, ip);
                let statuses = Arc::clone(statuses);
                let per_address = args.per_address;
                tokio::spawn(async move {
                    for i in 0..per_address {
                        send_one(&mut client, round, ip, i, &statuses).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.map_err(|e| format!("a flood client failed: {e}"))?;
        }
        round += 1;
        if started.elapsed() >= args.duration {
            return Ok(round - args.first_round);
        }
    }
}

/// Sign-ins in flight at once in the open model; beyond it they are unsent.
const OPEN_IN_FLIGHT: usize = 4096;

/// Where the `k`-th sign-in of the open model comes from: a round holds
/// `addresses * per_address` sign-ins, its addresses taking turns.
fn open_slot(k: u64, addresses: u16, per_address: u32) -> (u32, u16, u32) {
    let per_round = u64::from(addresses) * u64::from(per_address);
    let round = (k / per_round) as u32;
    let j = k % per_round;
    let n = (j % u64::from(addresses)) as u16;
    let i = (j / u64::from(addresses)) as u32;
    (round, n, i)
}

/// Open model: sign-in `k` is sent at `k / rate` seconds, on a connection
/// of its own, whatever the earlier ones are waiting for.
async fn open(args: &FloodArgs, rate: f64, statuses: &Statuses) -> Result<(u32, u64), String> {
    let started = tokio::time::Instant::now();
    let slots = Arc::new(tokio::sync::Semaphore::new(OPEN_IN_FLIGHT));
    let mut unsent = 0u64;
    let mut rounds = 0u32;
    let mut k = 0u64;
    loop {
        let at = started + Duration::from_secs_f64(k as f64 / rate);
        if at.duration_since(started) >= args.duration {
            break;
        }
        tokio::time::sleep_until(at).await;
        let (round, n, i) = open_slot(k, args.addresses, args.per_address);
        rounds = rounds.max(round + 1);
        let round = args.first_round + round;
        k += 1;
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            unsent += 1;
            continue;
        };
        let ip = address(round, n);
        let mut client = Client::from_address(args.target.clone(), args.timeout, ip);
        let statuses = Arc::clone(statuses);
        tokio::spawn(async move {
            send_one(&mut client, round, ip, i, &statuses).await;
            drop(permit);
        });
    }
    // Every sign-in sent is answered (or times out) before the report.
    let _all = slots
        .acquire_many(OPEN_IN_FLIGHT as u32)
        .await
        .map_err(|e| format!("the flood's in-flight limit closed: {e}"))?;
    Ok((rounds, unsent))
}

pub(crate) async fn run(args: &FloodArgs) -> Result<bool, String> {
    let started = Instant::now();
    let statuses: Statuses = Arc::default();
    let (round, unsent) = match args.rate {
        None => (closed(args, &statuses).await?, 0),
        Some(rate) => open(args, rate, &statuses).await?,
    };
    let elapsed = started.elapsed().as_secs_f64();
    let statuses = statuses.lock().unwrap().clone();
    let sent: u64 = statuses.values().sum();
    if args.json {
        println!(
            "{}",
            json!({
                "command": "signin-flood",
                "model": if args.rate.is_some() { "open" } else { "closed" },
                "offered_per_second": args.rate,
                "unsent": unsent,
                "rounds": round,
                "addresses_per_round": args.addresses,
                "sent": sent,
                "seconds": (elapsed * 1000.0).round() / 1000.0,
                "outcomes": statuses,
            })
        );
    }
    eprintln!(
        "signin-flood: {sent} sign-ins in {round} rounds of {} addresses x {} in {elapsed:.1} s ({unsent} unsent); answers {statuses:?}",
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
        // The open model's addresses take turns, per_address each per round.
        assert_eq!(open_slot(0, 300, 30), (0, 0, 0));
        assert_eq!(open_slot(301, 300, 30), (0, 1, 1));
        assert_eq!(open_slot(8_999, 300, 30), (0, 299, 29));
        assert_eq!(open_slot(9_000, 300, 30), (1, 0, 0));
        for round in 0..400 {
            for n in [0, 1, 65_534] {
                let ip = address(round, n);
                assert!(ip.is_loopback());
                assert_ne!(ip.octets()[1], 0, "never 127.0.x.x");
            }
        }
    }
}
