//! `ws`: N WebSocket watchers of one sale, then P purchases while all of them
//! are connected. Measures the handshakes, the server's memory per idle
//! connection (VmRSS of `--server-pid`) and the delay from sending each
//! purchase to each watcher receiving the `stockUpdate` that covers it.
//!
//! Stock updates are coalesced by the server (one per sale per tick), so one
//! update may cover several purchases: purchase *k*, answered 201 with
//! `remainingUnits` r, is delivered to a watcher by the first `stockUpdate`
//! with `availableUnits <= r` that watcher receives.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use crate::args::WsArgs;
use crate::http::{Client, bearer};
use crate::purchase::{PURCHASE_PATH, admin_token, create_sale, get_sale, purchase_body};
use crate::stats::{Percentiles, micros, new_histogram, percentiles};
use crate::token::{self, Minter};
use crate::util::Rng;

/// File descriptors the generator needs besides one per watcher.
const SPARE_FDS: u64 = 64;
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Kept free at the end of `--max-time` for collecting and reporting.
const END_MARGIN: Duration = Duration::from_secs(5);

/// What every watcher task shares.
#[derive(Debug)]
struct Shared {
    addr: SocketAddr,
    /// `ws://HOST:PORT/ws?token=`; the token is appended per watcher.
    url_prefix: String,
    join: Utf8Bytes,
    config: WebSocketConfig,
    timeout: Duration,
    /// Handshakes (connect + upgrade + join) in flight at once.
    gate: Semaphore,
    connect_rate: Option<f64>,
    /// Time zero of every `*_us` value.
    t0: Instant,
    joined: AtomicUsize,
    failed: AtomicUsize,
    /// Joined watchers whose connection ended before the run stopped it.
    ended: AtomicUsize,
}

impl Shared {
    fn since_t0(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.t0).as_micros()).unwrap_or(u64::MAX)
    }
}

/// What one watcher saw.
#[derive(Debug, Default)]
struct WatcherOut {
    /// Why the watcher never joined (None: it joined).
    failure: Option<String>,
    /// TCP connect, µs.
    connect_us: u64,
    /// TCP connect + WebSocket upgrade, µs.
    handshake_us: u64,
    /// `joinFlashSale` sent to `flashSaleStatus` received, µs.
    join_us: u64,
    /// `availableUnits` of each `stockUpdate` and when it arrived (µs since t0).
    updates: Vec<(i64, u64)>,
    /// How and when (µs since t0) a joined connection ended before the stop.
    ended: Option<(String, u64)>,
    /// `error` events after the join.
    errors: u32,
    /// Names of other events after the join (`flashSaleStarted`, ...).
    other: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ServerEvent {
    event: String,
    #[serde(default)]
    data: EventData,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventData {
    #[serde(default)]
    available_units: Option<i64>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

fn parse_event(text: &str) -> Option<ServerEvent> {
    serde_json::from_str(text).ok()
}

fn connect_label(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(24) => "connect:EMFILE (raise the open-files limit: ulimit -n 65536)".to_owned(),
        Some(23) => "connect:ENFILE (system-wide open-files limit)".to_owned(),
        Some(99) => "connect:EADDRNOTAVAIL (out of ephemeral ports)".to_owned(),
        Some(111) => "connect:refused".to_owned(),
        Some(110) => "connect:timed out".to_owned(),
        _ => format!("connect:{:?}", e.kind()),
    }
}

fn ws_label(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Http(r) => format!("upgrade:HTTP {}", r.status().as_u16()),
        tungstenite::Error::Io(io) if io.raw_os_error().is_some() => {
            format!("upgrade:{}", connect_label(io))
        }
        tungstenite::Error::Io(io) => format!("upgrade:io {:?}", io.kind()),
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            "upgrade:closed".to_owned()
        }
        tungstenite::Error::Protocol(p) => format!("upgrade:protocol ({p})"),
        other => format!("upgrade:{other}"),
    }
}

type Ws = WebSocketStream<TcpStream>;

/// Connects, upgrades and joins; returns the stream once the snapshot came.
async fn open(sh: &Shared, token: &str, out: &mut WatcherOut) -> Result<Ws, String> {
    let start = Instant::now();
    let mut connect_us = 0;
    let upgrade = async {
        let tcp = TcpStream::connect(sh.addr)
            .await
            .map_err(|e| connect_label(&e))?;
        connect_us = micros(start.elapsed());
        let _ = tcp.set_nodelay(true);
        let url = format!("{}{token}", sh.url_prefix);
        tokio_tungstenite::client_async_with_config(url, tcp, Some(sh.config))
            .await
            .map(|(ws, _)| ws)
            .map_err(|e| ws_label(&e))
    };
    let mut ws = tokio::time::timeout(sh.timeout, upgrade)
        .await
        .map_err(|_| "timeout:connect+upgrade".to_owned())??;
    out.handshake_us = micros(start.elapsed());
    out.connect_us = connect_us;

    let start = Instant::now();
    let join = async {
        ws.send(Message::Text(sh.join.clone()))
            .await
            .map_err(|e| format!("join:send {}", ws_label(&e)))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => match parse_event(t.as_str()) {
                    Some(ev) if ev.event == "flashSaleStatus" => {
                        return Ok(ev.data.status.unwrap_or_default());
                    }
                    Some(ev) if ev.event == "error" => {
                        return Err(format!(
                            "join:error {}",
                            ev.data.code.unwrap_or_else(|| "?".to_owned())
                        ));
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(f))) => {
                    return Err(format!(
                        "join:closed {}",
                        f.map_or_else(|| "-".to_owned(), |f| u16::from(f.code).to_string())
                    ));
                }
                None => return Err("join:closed eof".to_owned()),
                Some(Err(e)) => return Err(format!("join:{}", ws_label(&e))),
                Some(Ok(_)) => {}
            }
        }
    };
    let status = tokio::time::timeout(sh.timeout, join)
        .await
        .map_err(|_| "timeout:join (no flashSaleStatus)".to_owned())??;
    out.join_us = micros(start.elapsed());
    if status != "active" {
        return Err(format!("join:sale status `{status}`, not active"));
    }
    Ok(ws)
}

/// One watcher: waits for its turn, opens its connection, then records
/// every `stockUpdate` until told to stop.
async fn watcher(
    i: usize,
    token: String,
    sh: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> WatcherOut {
    let mut out = WatcherOut::default();
    let opened = async {
        if let Some(rate) = sh.connect_rate {
            tokio::time::sleep_until(sh.t0 + Duration::from_secs_f64(i as f64 / rate)).await;
        }
        let _permit = sh
            .gate
            .acquire()
            .await
            .map_err(|_| "gate closed".to_owned())?;
        open(&sh, &token, &mut out).await
    };
    let opened = tokio::select! {
        biased;
        _ = stop.changed() => Err("not connected when the connect phase ended".to_owned()),
        r = opened => r,
    };
    drop(token);
    let mut ws = match opened {
        Ok(ws) => ws,
        Err(label) => {
            out.failure = Some(label);
            sh.failed.fetch_add(1, Ordering::Relaxed);
            return out;
        }
    };
    sh.joined.fetch_add(1, Ordering::Relaxed);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            m = ws.next() => {
                let at = sh.since_t0(Instant::now());
                let end = match m {
                    Some(Ok(Message::Text(t))) => {
                        match parse_event(t.as_str()) {
                            Some(ev) if ev.event == "stockUpdate" => {
                                if let Some(u) = ev.data.available_units {
                                    out.updates.push((u, at));
                                }
                            }
                            Some(ev) if ev.event == "error" => out.errors += 1,
                            Some(ev) => out.other.push(ev.event),
                            None => out.other.push("unreadable".to_owned()),
                        }
                        None
                    }
                    Some(Ok(Message::Close(f))) => Some(format!(
                        "closed by the server ({})",
                        f.map_or_else(|| "no code".to_owned(), |f| u16::from(f.code).to_string())
                    )),
                    Some(Ok(_)) => None,
                    Some(Err(e)) => Some(format!("read error: {}", ws_label(&e))),
                    None => Some("eof".to_owned()),
                };
                if let Some(why) = end {
                    out.ended = Some((why, at));
                    sh.ended.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
    out
}

/// One purchase made while every watcher was connected.
#[derive(Debug)]
struct PurchaseRec {
    sent_us: u64,
    took_us: u64,
    status: Option<u16>,
    /// `remainingUnits` of a 201.
    remaining: Option<i64>,
    outcome: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PurchaseReply {
    remaining_units: i64,
}

/// For each purchase `(sent µs, remainingUnits)`: the delay until the first
/// update (in arrival order) with `availableUnits <= remainingUnits`, or None
/// when no such update arrived. An update that arrived before the purchase
/// was sent (someone else bought) counts as a zero delay.
fn delivery_delays(updates: &[(i64, u64)], purchases: &[(u64, i64)]) -> Vec<Option<u64>> {
    purchases
        .iter()
        .map(|&(sent, remaining)| {
            updates
                .iter()
                .find(|(units, _)| *units <= remaining)
                .map(|&(_, at)| at.saturating_sub(sent))
        })
        .collect()
}

/// Whether the updates never increase (the protocol promises it).
fn monotonic(updates: &[(i64, u64)]) -> bool {
    updates.windows(2).all(|w| w[1].0 <= w[0].0)
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB.
fn proc_status_kib(pid: &str, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The soft and hard open-files limits of a process, from `/proc/PID/limits`
/// (`None` for unlimited).
fn open_files_limit(pid: &str) -> Option<(Option<u64>, Option<u64>)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    let mut it = line["Max open files".len()..].split_whitespace();
    let soft = it.next()?.parse().ok();
    let hard = it.next()?.parse().ok();
    Some((soft, hard))
}

/// Memory readings of the server (and of this generator), KiB.
#[derive(Debug, Clone, Copy, Default)]
struct Rss {
    server: Option<u64>,
    client: Option<u64>,
}

fn read_rss(server_pid: Option<u32>) -> Rss {
    Rss {
        server: server_pid.and_then(|p| proc_status_kib(&p.to_string(), "VmRSS")),
        client: proc_status_kib("self", "VmRSS"),
    }
}

fn per_conn(before: Option<u64>, after: Option<u64>, n: usize) -> Option<f64> {
    let (b, a) = (before?, after?);
    (n > 0).then(|| (a as f64 - b as f64) / n as f64)
}

fn fmt_opt_kib(v: Option<u64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |k| format!("{k} KiB"))
}

fn fmt_opt_f(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "n/a".to_owned(), |k| format!("{k:.2} {unit}"))
}

fn pct_json(p: &Percentiles) -> Value {
    let r = |x: f64| (x * 1000.0).round() / 1000.0;
    json!({ "p50": r(p.p50), "p90": r(p.p90), "p99": r(p.p99), "max": r(p.max), "mean": r(p.mean) })
}

fn check_fd_limit(watchers: usize) -> Result<(), String> {
    let need = watchers as u64 + SPARE_FDS;
    match open_files_limit("self") {
        Some((Some(soft), hard)) if soft < need => Err(format!(
            "--watchers {watchers} needs about {need} open files but this process may open {soft} \
             (hard limit {}); raise it first, e.g. `ulimit -n 65536` (or as high as the hard limit allows)",
            hard.map_or_else(|| "unlimited".to_owned(), |h| h.to_string())
        )),
        _ => Ok(()),
    }
}

/// Runs `ws`; returns whether every check held.
pub(crate) async fn run(a: &WsArgs) -> Result<bool, String> {
    let started = Instant::now();
    let deadline = started + a.max_time;
    check_fd_limit(a.watchers)?;
    let mut context = Vec::new();
    if let Some(pid) = a.server_pid {
        let p = pid.to_string();
        if proc_status_kib(&p, "VmRSS").is_none() {
            return Err(format!(
                "--server-pid {pid}: cannot read VmRSS from /proc/{pid}/status"
            ));
        }
        if let Some((Some(soft), _)) = open_files_limit(&p)
            && soft < a.watchers as u64 + 100
        {
            context.push(format!(
                "warning: the server's open-files limit is {soft}, below --watchers {} + its own sockets",
                a.watchers
            ));
        }
    }
    let target = &a.target;
    let args = &a.sale;
    let ttl = a.max_time + Duration::from_secs(3_600);
    let minter = Minter::new(args.secret.as_bytes(), &args.issuer, ttl.as_secs());
    let (admin, how) = admin_token(target, args, &minter).await?;
    let sale = match &args.sale {
        Some(id) => get_sale(target, &admin, id).await?,
        None => create_sale(target, &admin, args, ttl).await?,
    };
    let need_units = args.quantity * a.purchases as i64;
    if sale.available_units < need_units {
        return Err(format!(
            "sale {} has {} units left; {} purchases of {} need {need_units}",
            sale.id, sale.available_units, a.purchases, args.quantity
        ));
    }
    context.push(format!(
        "sale {} ({}): availableUnits {} before, status {}; admin token {how}",
        sale.id,
        if args.sale.is_some() {
            "reused"
        } else {
            "created"
        },
        sale.available_units,
        sale.status
    ));

    let t = std::time::Instant::now();
    let tokens = token::customers(&minter, a.watchers)?;
    context.push(format!(
        "{} watcher tokens minted in {:.0} ms",
        a.watchers,
        t.elapsed().as_secs_f64() * 1000.0
    ));

    // The purchase connection is opened before any watcher.
    let mut http = Client::new(target.clone(), Duration::from_secs(10));
    let _ = http.warm_up_connection().await;

    let authority = target
        .host
        .to_str()
        .map_err(|_| "--target: bad host".to_owned())?
        .to_owned();
    let join = json!({ "event": "joinFlashSale", "data": { "flashSaleId": sale.id } }).to_string();
    let (stop_tx, stop_rx) = watch::channel(false);
    let rss_before = read_rss(a.server_pid);
    let sh = Arc::new(Shared {
        addr: target.addr,
        url_prefix: format!("ws://{authority}/ws?token="),
        join: Utf8Bytes::from(join),
        // Small buffers: messages are ~100 bytes; the read buffer is
        // allocated up front for every connection.
        config: WebSocketConfig::default()
            .read_buffer_size(1024)
            .write_buffer_size(0)
            .max_write_buffer_size(4096)
            .max_message_size(Some(64 * 1024))
            .max_frame_size(Some(64 * 1024)),
        timeout: a.timeout,
        gate: Semaphore::new(a.connect_concurrency),
        connect_rate: a.connect_rate,
        t0: Instant::now(),
        joined: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        ended: AtomicUsize::new(0),
    });

    // --- connect phase ---
    let n = a.watchers;
    let mut handles = Vec::with_capacity(n);
    for (i, (_, token)) in tokens.into_iter().enumerate() {
        handles.push(tokio::spawn(watcher(
            i,
            token,
            Arc::clone(&sh),
            stop_rx.clone(),
        )));
    }
    drop(stop_rx);
    let purchase_phase =
        a.interval * u32::try_from(a.purchases.saturating_sub(1)).unwrap_or(u32::MAX) + a.jitter;
    let connect_deadline = deadline
        .checked_sub(a.idle_wait + purchase_phase + a.settle + END_MARGIN + Duration::from_secs(2))
        .unwrap_or(started)
        .max(started + Duration::from_secs(1));
    let mut next_progress = sh.t0 + PROGRESS_EVERY;
    let mut cut_short = false;
    loop {
        let (j, f) = (
            sh.joined.load(Ordering::Relaxed),
            sh.failed.load(Ordering::Relaxed),
        );
        let now = Instant::now();
        if j + f >= n {
            break;
        }
        if now >= connect_deadline {
            cut_short = true;
            break;
        }
        if now >= next_progress {
            eprintln!(
                "ws: {:.0} s: {j} joined, {f} failed of {n}",
                now.duration_since(sh.t0).as_secs_f64()
            );
            next_progress += PROGRESS_EVERY;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_s = sh.t0.elapsed().as_secs_f64();
    let joined_connect = sh.joined.load(Ordering::Relaxed);
    if cut_short {
        context.push(format!(
            "connect phase cut short by --max-time after {connect_s:.1} s: {joined_connect} of {n} joined"
        ));
    }

    // --- idle ---
    tokio::time::sleep(a.idle_wait).await;
    let held_idle = sh.joined.load(Ordering::Relaxed) - sh.ended.load(Ordering::Relaxed);
    let rss_idle = read_rss(a.server_pid);

    // --- purchases ---
    let mut purchases: Vec<PurchaseRec> = Vec::with_capacity(a.purchases);
    let mut rng = Rng::from_entropy();
    let body = purchase_body(&sale.id, args.quantity);
    let p0 = Instant::now();
    for k in 0..a.purchases {
        // Jitter: a fixed interval that is a multiple of the server's tick
        // would put every purchase at the same phase of the tick.
        let jitter = a
            .jitter
            .mul_f64((rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64);
        let at = p0 + a.interval * u32::try_from(k).unwrap_or(u32::MAX) + jitter;
        if at + a.settle + END_MARGIN > deadline {
            context.push(format!("purchases stopped after {k} by --max-time"));
            break;
        }
        tokio::time::sleep_until(at).await;
        let auth = bearer(&minter.mint(&rng.object_id(), "customer")?)?;
        let req = http.request(
            Method::POST,
            PURCHASE_PATH,
            Some(&auth),
            Some(Bytes::clone(&body)),
        );
        let sent = Instant::now();
        let res = http.send(req).await;
        let took_us = micros(sent.elapsed());
        let sent_us = sh.since_t0(sent);
        let rec = match res {
            Ok(r) => {
                let remaining = (r.status == StatusCode::CREATED)
                    .then(|| serde_json::from_slice::<PurchaseReply>(&r.body).ok())
                    .flatten()
                    .map(|p| p.remaining_units);
                let outcome = match crate::stats::error_code(&r.body) {
                    Some(code) => format!("{} {code}", r.status.as_u16()),
                    None => r.status.as_u16().to_string(),
                };
                PurchaseRec {
                    sent_us,
                    took_us,
                    status: Some(r.status.as_u16()),
                    remaining,
                    outcome,
                }
            }
            Err(e) => PurchaseRec {
                sent_us,
                took_us,
                status: None,
                remaining: None,
                outcome: format!("transport:{}", e.label()),
            },
        };
        purchases.push(rec);
    }
    let settle_until = (Instant::now() + a.settle).min(deadline - END_MARGIN);
    tokio::time::sleep_until(settle_until).await;
    let rss_after = read_rss(a.server_pid);
    let hwm = a
        .server_pid
        .and_then(|p| proc_status_kib(&p.to_string(), "VmHWM"));
    let _ = stop_tx.send(true);

    let mut outs = Vec::with_capacity(n);
    for h in handles {
        match h.await {
            Ok(o) => outs.push(o),
            Err(e) => outs.push(WatcherOut {
                failure: Some(format!("task failed: {e}")),
                ..WatcherOut::default()
            }),
        }
    }
    drop(sh);

    let s = Summary::compute(a, &outs, &purchases, held_idle, connect_s);
    let mem = Memory {
        before: rss_before,
        idle: rss_idle,
        after: rss_after,
        server_hwm: hwm,
        held_idle,
    };
    let report = WsReport {
        a,
        context,
        s,
        mem,
        purchases: &purchases,
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    if a.json {
        eprint!("{}", report.human());
        println!("{}", report.json());
    } else {
        print!("{}", report.human());
    }
    Ok(report.passed())
}

#[derive(Debug)]
struct PerPurchase {
    delivered: u64,
    missed: u64,
    delay: Histogram<u64>,
}

#[derive(Debug)]
struct Summary {
    attempted: usize,
    joined: usize,
    failures: BTreeMap<String, u64>,
    ended: BTreeMap<String, u64>,
    held_idle: usize,
    held_end: usize,
    connect: Histogram<u64>,
    handshake: Histogram<u64>,
    join: Histogram<u64>,
    delay: Histogram<u64>,
    delivered: u64,
    missed: u64,
    watchers_missing: usize,
    not_monotonic: usize,
    updates: u64,
    errors: u64,
    other: BTreeMap<String, u64>,
    per_purchase: Vec<PerPurchase>,
    purchases_ok: usize,
    connect_s: f64,
}

impl Summary {
    fn compute(
        a: &WsArgs,
        outs: &[WatcherOut],
        purchases: &[PurchaseRec],
        held_idle: usize,
        connect_s: f64,
    ) -> Self {
        let ok: Vec<(usize, (u64, i64))> = purchases
            .iter()
            .enumerate()
            .filter_map(|(k, p)| p.remaining.map(|r| (k, (p.sent_us, r))))
            .collect();
        let keys: Vec<(u64, i64)> = ok.iter().map(|(_, p)| *p).collect();
        let mut per_purchase: Vec<PerPurchase> = purchases
            .iter()
            .map(|_| PerPurchase {
                delivered: 0,
                missed: 0,
                delay: new_histogram(),
            })
            .collect();
        let mut s = Self {
            attempted: a.watchers,
            joined: 0,
            failures: BTreeMap::new(),
            ended: BTreeMap::new(),
            held_idle,
            held_end: 0,
            connect: new_histogram(),
            handshake: new_histogram(),
            join: new_histogram(),
            delay: new_histogram(),
            delivered: 0,
            missed: 0,
            watchers_missing: 0,
            not_monotonic: 0,
            updates: 0,
            errors: 0,
            other: BTreeMap::new(),
            per_purchase: Vec::new(),
            purchases_ok: ok.len(),
            connect_s,
        };
        for o in outs {
            if let Some(f) = &o.failure {
                *s.failures.entry(f.clone()).or_default() += 1;
                continue;
            }
            s.joined += 1;
            s.connect.saturating_record(o.connect_us.max(1));
            s.handshake.saturating_record(o.handshake_us.max(1));
            s.join.saturating_record(o.join_us.max(1));
            match &o.ended {
                Some((why, _)) => *s.ended.entry(why.clone()).or_default() += 1,
                None => s.held_end += 1,
            }
            s.updates += o.updates.len() as u64;
            s.errors += u64::from(o.errors);
            for e in &o.other {
                *s.other.entry(e.clone()).or_default() += 1;
            }
            if !monotonic(&o.updates) {
                s.not_monotonic += 1;
            }
            let mut missing = false;
            for ((k, _), d) in ok.iter().zip(delivery_delays(&o.updates, &keys)) {
                let pp = &mut per_purchase[*k];
                match d {
                    Some(us) => {
                        s.delay.saturating_record(us.max(1));
                        pp.delay.saturating_record(us.max(1));
                        pp.delivered += 1;
                        s.delivered += 1;
                    }
                    None => {
                        pp.missed += 1;
                        s.missed += 1;
                        missing = true;
                    }
                }
            }
            if missing {
                s.watchers_missing += 1;
            }
        }
        s.per_purchase = per_purchase;
        s
    }
}

#[derive(Debug)]
struct Memory {
    before: Rss,
    idle: Rss,
    after: Rss,
    server_hwm: Option<u64>,
    held_idle: usize,
}

impl Memory {
    fn server_per_conn(&self) -> Option<f64> {
        per_conn(self.before.server, self.idle.server, self.held_idle)
    }

    fn client_per_conn(&self) -> Option<f64> {
        per_conn(self.before.client, self.idle.client, self.held_idle)
    }
}

#[derive(Debug)]
struct WsReport<'a> {
    a: &'a WsArgs,
    context: Vec<String>,
    s: Summary,
    mem: Memory,
    purchases: &'a [PurchaseRec],
    elapsed_s: f64,
}

impl WsReport<'_> {
    fn checks(&self) -> Vec<(&'static str, bool, String)> {
        let s = &self.s;
        vec![
            (
                "all joined",
                s.joined == s.attempted,
                format!("{} of {} watchers joined", s.joined, s.attempted),
            ),
            (
                "all held",
                s.held_end == s.joined,
                format!(
                    "{} of {} joined connections still open at the end",
                    s.held_end, s.joined
                ),
            ),
            (
                "purchases answered 201",
                s.purchases_ok == self.a.purchases,
                format!("{} of {} purchases", s.purchases_ok, self.a.purchases),
            ),
            (
                "every update delivered",
                s.missed == 0,
                format!(
                    "{} (watcher, purchase) pairs missed, {} watchers missed at least one",
                    s.missed, s.watchers_missing
                ),
            ),
            (
                "stock never increases",
                s.not_monotonic == 0,
                format!("{} watchers saw availableUnits rise", s.not_monotonic),
            ),
        ]
    }

    fn passed(&self) -> bool {
        self.checks().iter().all(|c| c.1)
    }

    fn human(&self) -> String {
        let (a, s, m) = (self.a, &self.s, &self.mem);
        let mut o = String::new();
        let _ = writeln!(
            o,
            "ws: {} watchers of one sale, {} purchases every {:.0} ms (+ 0..{:.0} ms jitter), target {} ({:.1} s in all)",
            a.watchers,
            a.purchases,
            a.interval.as_secs_f64() * 1000.0,
            a.jitter.as_secs_f64() * 1000.0,
            a.target.display,
            self.elapsed_s
        );
        for l in &self.context {
            let _ = writeln!(o, "{l}");
        }
        let _ = writeln!(
            o,
            "connections: attempted {}, joined {} in {:.2} s (concurrency {}, rate {}), held idle {}, held at the end {}, failed {}",
            s.attempted,
            s.joined,
            s.connect_s,
            a.connect_concurrency,
            a.connect_rate
                .map_or_else(|| "unpaced".to_owned(), |r| format!("{r}/s")),
            s.held_idle,
            s.held_end,
            s.attempted - s.joined
        );
        for (k, v) in &s.failures {
            let _ = writeln!(o, "  failed: {k:<60} {v:>7}");
        }
        for (k, v) in &s.ended {
            let _ = writeln!(o, "  ended early: {k:<55} {v:>7}");
        }
        let h = percentiles(&s.handshake);
        let c = percentiles(&s.connect);
        let j = percentiles(&s.join);
        let _ = writeln!(
            o,
            "handshake ms (connect + upgrade): p50 {:.3}  p99 {:.3}  max {:.3}; of which TCP connect: p50 {:.3}  p99 {:.3}  max {:.3}",
            h.p50, h.p99, h.max, c.p50, c.p99, c.max
        );
        let _ = writeln!(
            o,
            "join ms (joinFlashSale -> flashSaleStatus): p50 {:.3}  p99 {:.3}  max {:.3}",
            j.p50, j.p99, j.max
        );
        let _ = writeln!(
            o,
            "server VmRSS: before {}, idle ({} held) {}, after purchases {}, peak {}",
            fmt_opt_kib(m.before.server),
            m.held_idle,
            fmt_opt_kib(m.idle.server),
            fmt_opt_kib(m.after.server),
            fmt_opt_kib(m.server_hwm)
        );
        let _ = writeln!(
            o,
            "memory per idle connection: server {}, this generator {}",
            fmt_opt_f(m.server_per_conn(), "KiB"),
            fmt_opt_f(m.client_per_conn(), "KiB")
        );
        let d = percentiles(&s.delay);
        let _ = writeln!(
            o,
            "purchase -> stockUpdate ms (over {} watcher x purchase pairs): p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  mean {:.3}",
            s.delivered, d.p50, d.p90, d.p99, d.max, d.mean
        );
        let _ = writeln!(
            o,
            "updates received {} ({:.1} per joined watcher; coalesced per tick), error events {}, other events {:?}",
            s.updates,
            if s.joined > 0 {
                s.updates as f64 / s.joined as f64
            } else {
                0.0
            },
            s.errors,
            s.other
        );
        let _ = writeln!(
            o,
            "per purchase:   #  outcome                      http ms  remaining  delivered  missed   p50 ms   max ms"
        );
        for (k, (p, pp)) in self.purchases.iter().zip(&s.per_purchase).enumerate() {
            let pd = percentiles(&pp.delay);
            let _ = writeln!(
                o,
                "              {:>3}  {:<26} {:>9.3}  {:>9}  {:>9}  {:>6} {:>8.1} {:>8.1}",
                k + 1,
                p.outcome,
                p.took_us as f64 / 1000.0,
                p.remaining
                    .map_or_else(|| "-".to_owned(), |r| r.to_string()),
                pp.delivered,
                pp.missed,
                pd.p50,
                pd.max
            );
        }
        let _ = writeln!(o, "checks:");
        for (name, pass, detail) in self.checks() {
            let _ = writeln!(
                o,
                "  {} {name}: {detail}",
                if pass { "PASS" } else { "FAIL" }
            );
        }
        let _ = writeln!(o, "result: {}", if self.passed() { "PASS" } else { "FAIL" });
        o
    }

    fn json(&self) -> String {
        let (a, s, m) = (self.a, &self.s, &self.mem);
        let r2 = |v: Option<f64>| v.map(|x| (x * 100.0).round() / 100.0);
        json!({
            "command": "ws",
            "target": a.target.display,
            "watchers": a.watchers,
            "attempted": s.attempted,
            "joined": s.joined,
            "failed": s.attempted - s.joined,
            "failures": s.failures,
            "held_idle": s.held_idle,
            "held_end": s.held_end,
            "ended_early": s.ended,
            "connect_s": (s.connect_s * 100.0).round() / 100.0,
            "connect_concurrency": a.connect_concurrency,
            "connect_rate": a.connect_rate,
            "handshake_ms": pct_json(&percentiles(&s.handshake)),
            "connect_ms": pct_json(&percentiles(&s.connect)),
            "join_ms": pct_json(&percentiles(&s.join)),
            "purchases": a.purchases,
            "interval_s": a.interval.as_secs_f64(),
            "jitter_s": a.jitter.as_secs_f64(),
            "purchases_ok": s.purchases_ok,
            "purchase_outcomes": self.purchases.iter().map(|p| p.outcome.clone()).collect::<Vec<_>>(),
            "purchase_statuses": self.purchases.iter().map(|p| p.status).collect::<Vec<_>>(),
            "delay_ms": pct_json(&percentiles(&s.delay)),
            "delivered": s.delivered,
            "missed_updates": s.missed,
            "watchers_missing": s.watchers_missing,
            "updates_received": s.updates,
            "error_events": s.errors,
            "other_events": s.other,
            "not_monotonic": s.not_monotonic,
            "server_rss_kib": {
                "before": m.before.server, "idle": m.idle.server,
                "after": m.after.server, "peak": m.server_hwm,
            },
            "server_kib_per_conn": r2(m.server_per_conn()),
            "client_rss_kib": {
                "before": m.before.client, "idle": m.idle.client, "after": m.after.client,
            },
            "client_kib_per_conn": r2(m.client_per_conn()),
            "elapsed_s": (self.elapsed_s * 10.0).round() / 10.0,
            "checks": self.checks().iter().map(|(n, p, d)| json!({
                "name": n, "pass": p, "detail": d,
            })).collect::<Vec<_>>(),
            "pass": self.passed(),
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_coalesced_update_covers_several_purchases() {
        // Stock 100; purchases at 0, 50 and 400 ms leave 99, 98, 97. The
        // first tick coalesces the first two into one update at 120 ms.
        let updates = [(98, 120_000), (97, 510_000)];
        let purchases = [(0, 99), (50_000, 98), (400_000, 97)];
        assert_eq!(
            delivery_delays(&updates, &purchases),
            [Some(120_000), Some(70_000), Some(110_000)]
        );
    }

    #[test]
    fn a_missing_update_is_none_and_early_ones_count_as_zero() {
        let updates = [(99, 100)];
        assert_eq!(
            delivery_delays(&updates, &[(50, 99), (200, 98), (300, 99)]),
            [Some(50), None, Some(0)]
        );
        assert!(monotonic(&[(5, 1), (5, 2), (3, 3)]));
        assert!(!monotonic(&[(5, 1), (6, 2)]));
    }

    #[test]
    fn proc_files_are_read() {
        assert!(proc_status_kib("self", "VmRSS").is_some_and(|k| k > 0));
        assert!(proc_status_kib("self", "NoSuchKey").is_none());
        let (soft, _) = open_files_limit("self").expect("limits");
        assert!(soft.is_none_or(|s| s > 0));
        assert_eq!(per_conn(Some(1000), Some(3000), 1000), Some(2.0));
        assert_eq!(per_conn(Some(1000), None, 1000), None);
    }
}
