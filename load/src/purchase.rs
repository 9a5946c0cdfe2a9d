//! `purchase`: set up (or reuse) a sale, drive purchases, check invariants.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::args::{Common, Mode, PurchaseArgs};
use crate::driver::{self, PurchaseCheck, Tally, Workload};
use crate::http::{Client, Target, bearer};
use crate::report::{Invariant, Report};
use crate::stats::error_code;
use crate::token::{self, Minter};
use crate::util::{Rng, rfc3339, unix_secs};

pub(crate) const PURCHASE_PATH: &str = "/api/purchase-product";
const PRESELL_LIMIT: Duration = Duration::from_secs(120);

/// One admin call on a fresh connection: status and JSON body.
async fn call(
    target: &Target,
    method: Method,
    path: &str,
    auth: Option<&HeaderValue>,
    body: Option<Value>,
) -> Result<(StatusCode, Value), String> {
    // Generous: the reconcile report aggregates every order of the sale.
    let mut c = Client::new(target.clone(), Duration::from_secs(120));
    let body = body.map(|b| Bytes::from(b.to_string()));
    let req = c.request(method.clone(), path, auth, body);
    let r = c
        .send(req)
        .await
        .map_err(|e| format!("{method} {path}: transport error ({})", e.label()))?;
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    Ok((r.status, v))
}

async fn expect(
    target: &Target,
    method: Method,
    path: &str,
    auth: Option<&HeaderValue>,
    body: Option<Value>,
    want: StatusCode,
) -> Result<Value, String> {
    let (status, v) = call(target, method.clone(), path, auth, body).await?;
    if status != want {
        return Err(format!(
            "{method} {path}: expected {want}, got {status}: {v}"
        ));
    }
    Ok(v)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SaleView {
    pub(crate) id: String,
    pub(crate) total_units: i64,
    pub(crate) available_units: i64,
    pub(crate) max_per_user: i64,
    pub(crate) max_per_transaction: i64,
    /// Absent on servers without the per-IP account cap.
    #[serde(default)]
    pub(crate) max_accounts_per_ip: Option<i64>,
    #[serde(default)]
    pub(crate) status: String,
}

pub(crate) async fn get_sale(
    target: &Target,
    admin: &HeaderValue,
    id: &str,
) -> Result<SaleView, String> {
    let v = expect(
        target,
        Method::GET,
        &format!("/api/flash-sales/{id}"),
        Some(admin),
        None,
        StatusCode::OK,
    )
    .await?;
    serde_json::from_value(v.clone()).map_err(|e| format!("unexpected sale body {v}: {e}"))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reconcile {
    redis_sold: i64,
    mongo_sold: i64,
    pending_write_behind: i64,
    difference: i64,
    consistent: bool,
}

async fn reconcile(target: &Target, admin: &HeaderValue, id: &str) -> Result<Reconcile, String> {
    let v = expect(
        target,
        Method::GET,
        &format!("/api/admin/reconcile?flashSaleId={id}"),
        Some(admin),
        None,
        StatusCode::OK,
    )
    .await?;
    let first = v
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .ok_or_else(|| format!("empty reconcile report: {v}"))?;
    serde_json::from_value(first.clone())
        .map_err(|e| format!("unexpected reconcile body {first}: {e}"))
}

async fn timed_reconcile(
    target: &Target,
    admin: &HeaderValue,
    id: &str,
) -> (Result<Reconcile, String>, Duration) {
    let t = Instant::now();
    let r = reconcile(target, admin, id).await;
    (r, t.elapsed())
}

pub(crate) async fn admin_token(
    target: &Target,
    args: &PurchaseArgs,
    minter: &Minter,
) -> Result<(HeaderValue, &'static str), String> {
    if let Some((email, password)) = &args.admin {
        let v = expect(
            target,
            Method::POST,
            "/api/signin",
            None,
            Some(json!({ "email": email, "password": password })),
            StatusCode::OK,
        )
        .await
        .map_err(|e| format!("admin sign-in failed: {e}"))?;
        let t = v["accessToken"]
            .as_str()
            .ok_or_else(|| format!("sign-in reply without accessToken: {v}"))?;
        return Ok((bearer(t)?, "signed in"));
    }
    let id = Rng::from_entropy().object_id();
    Ok((bearer(&minter.mint(&id, "admin")?)?, "minted"))
}

pub(crate) async fn create_sale(
    target: &Target,
    admin: &HeaderValue,
    args: &PurchaseArgs,
    open_for: Duration,
) -> Result<SaleView, String> {
    let product = expect(
        target,
        Method::POST,
        "/api/products",
        Some(admin),
        Some(json!({
            "name": "flashsale-load product",
            "description": "created by flashsale-load",
            "price": 100.0,
        })),
        StatusCode::CREATED,
    )
    .await?;
    let product_id = product["id"]
        .as_str()
        .ok_or_else(|| format!("product reply without id: {product}"))?;
    let now = unix_secs();
    let v = expect(
        target,
        Method::POST,
        "/api/flash-sales",
        Some(admin),
        Some(json!({
            "productId": product_id,
            "startTime": rfc3339(now - 60),
            "endTime": rfc3339(now + open_for.as_secs() + 1),
            "discount": 20,
            "totalUnits": args.units,
            "maxPerUser": args.max_per_user,
            "maxPerTransaction": args.max_per_tx,
            "maxAccountsPerIp": args.max_accounts_per_ip,
        })),
        StatusCode::CREATED,
    )
    .await?;
    serde_json::from_value(v.clone()).map_err(|e| format!("unexpected sale body {v}: {e}"))
}

pub(crate) fn purchase_body(sale: &str, quantity: i64) -> Bytes {
    Bytes::from(json!({ "flashSaleId": sale, "quantity": quantity }).to_string())
}

/// Sells the sale out with `workers` clients. Buyers take turns; each buys
/// as much as one transaction and its remaining allowance permit. Stops at
/// the first SOLD_OUT.
async fn sell_out(
    target: &Target,
    wl: &Arc<Workload>,
    sale: &SaleView,
    workers: usize,
    timeout: Duration,
) -> Result<Tally, String> {
    let buyers = wl.auth.len();
    let capacity = i64::try_from(buyers)
        .unwrap_or(i64::MAX)
        .saturating_mul(sale.max_per_user);
    if capacity < sale.available_units {
        return Err(format!(
            "sold-out mode: {buyers} buyers x maxPerUser {} cannot buy the {} units left; raise --buyers",
            sale.max_per_user, sale.available_units
        ));
    }
    let done = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let bought: Arc<Vec<AtomicI64>> = Arc::new((0..buyers).map(|_| AtomicI64::new(0)).collect());
    let cap = Arc::new(AtomicI64::new(sale.max_per_transaction.max(1)));
    let unexpected = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + PRESELL_LIMIT;
    let mut handles = Vec::new();
    for _ in 0..workers {
        let (target, wl, done, next, bought, cap, unexpected) = (
            target.clone(),
            Arc::clone(wl),
            Arc::clone(&done),
            Arc::clone(&next),
            Arc::clone(&bought),
            Arc::clone(&cap),
            Arc::clone(&unexpected),
        );
        let (sale_id, max_user) = (sale.id.clone(), sale.max_per_user);
        handles.push(tokio::spawn(async move {
            let mut client = Client::new(target, timeout);
            let mut tally = Tally::default();
            let mut skipped = 0;
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                let buyer = next.fetch_add(1, Ordering::Relaxed) % buyers;
                let q = cap
                    .load(Ordering::Relaxed)
                    .min(max_user - bought[buyer].load(Ordering::Relaxed));
                if q <= 0 {
                    skipped += 1;
                    if skipped > buyers {
                        // Every buyer is at its limit (another worker may
                        // still be finishing); nothing left to try here.
                        break;
                    }
                    continue;
                }
                skipped = 0;
                let req = wl.build(&client, buyer, Some(purchase_body(&sale_id, q)));
                let res = client.send(req).await;
                tally.observe(wl.purchase.as_ref(), buyer, &res);
                let Ok(reply) = &res else {
                    unexpected.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                if reply.status == StatusCode::CREATED {
                    bought[buyer].fetch_add(q, Ordering::Relaxed);
                    continue;
                }
                let details = || {
                    serde_json::from_slice::<Value>(&reply.body)
                        .unwrap_or_default()
                        .pointer("/error/details/availableUnits")
                        .and_then(Value::as_i64)
                };
                match error_code(&reply.body).as_deref() {
                    Some("SOLD_OUT") => done.store(true, Ordering::Relaxed),
                    Some("INSUFFICIENT_STOCK") => {
                        if let Some(a) = details()
                            && a > 0
                        {
                            cap.fetch_min(a, Ordering::Relaxed);
                        }
                    }
                    // A race between two workers on one buyer.
                    Some("USER_PURCHASE_LIMIT_REACHED") => {}
                    _ => {
                        if unexpected.fetch_add(1, Ordering::Relaxed) > 1_000 {
                            done.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
            tally
        }));
    }
    let mut tally = Tally::default();
    for h in handles {
        tally.merge(h.await.map_err(|e| format!("sell-out task failed: {e}"))?);
    }
    let unexpected = unexpected.load(Ordering::Relaxed);
    if !done.load(Ordering::Relaxed) || unexpected > 1_000 {
        return Err(format!(
            "could not sell the sale out ({} units bought in {} orders, {unexpected} unexpected replies)",
            tally.units, tally.orders
        ));
    }
    Ok(tally)
}

/// Runs `purchase`; returns whether every invariant held.
pub(crate) async fn run(c: &Common, args: &PurchaseArgs) -> Result<bool, String> {
    let target = &c.target;
    let run_for = c.warmup + c.duration;
    // Tokens outlive the run, the sell-out and the drain wait.
    let ttl = run_for + args.drain_timeout + PRESELL_LIMIT + Duration::from_secs(3_600);
    let minter = Minter::new(args.secret.as_bytes(), &args.issuer, ttl.as_secs());
    let (admin, how) = admin_token(target, args, &minter).await?;

    let sale = match &args.sale {
        Some(id) => get_sale(target, &admin, id).await?,
        None => create_sale(target, &admin, args, ttl).await?,
    };
    let sold_before = sale.total_units - sale.available_units;

    let t0 = std::time::Instant::now();
    let customers = token::customers(&minter, args.buyers)?;
    let mint_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let mut auth = Vec::with_capacity(customers.len());
    let mut users = Vec::with_capacity(customers.len());
    for (id, t) in customers {
        auth.push(bearer(&t)?);
        users.push(id);
    }
    let wl = Arc::new(Workload {
        method: Method::POST,
        path: PURCHASE_PATH.to_owned(),
        body: Some(purchase_body(&sale.id, args.quantity)),
        auth,
        purchase: Some(PurchaseCheck {
            sale: sale.id.clone(),
            users,
        }),
    });

    let mut context = vec![
        format!(
            "sale {} ({}): totalUnits {}, availableUnits {} before, maxPerUser {}, maxPerTransaction {}, maxAccountsPerIp {}, status {}",
            sale.id,
            if args.sale.is_some() {
                "reused"
            } else {
                "created"
            },
            sale.total_units,
            sale.available_units,
            sale.max_per_user,
            sale.max_per_transaction,
            sale.max_accounts_per_ip
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            sale.status
        ),
        format!(
            "buyers {} (tokens minted in {mint_ms:.0} ms), quantity {} per request, admin token {how}",
            args.buyers, args.quantity
        ),
    ];

    let mut tally = Tally::default();
    if args.mode == Mode::SoldOut {
        let t = Instant::now();
        let pre = sell_out(target, &wl, &sale, c.connections.min(32), c.timeout).await?;
        let after = get_sale(target, &admin, &sale.id).await?;
        context.push(format!(
            "sold out first: {} units in {} orders in {:.2} s; availableUnits now {}",
            pre.units,
            pre.orders,
            t.elapsed().as_secs_f64(),
            after.available_units
        ));
        tally.merge(pre);
    }

    let plan = driver::Plan::of(c);
    let mut result = driver::run(target, Arc::clone(&wl), &plan).await;
    tally.merge(std::mem::take(&mut result.tally));

    // --- invariants ---
    let mut inv = Vec::new();
    let after = get_sale(target, &admin, &sale.id).await?;
    let sold_after = after.total_units - after.available_units;
    let sold_now = sold_after - sold_before;
    inv.push(Invariant::new(
        "units sold",
        sold_now == tally.units,
        format!(
            "sum of 201 quantities {} == (totalUnits - availableUnits) {sold_after} - {sold_before} before = {sold_now} ({} orders)",
            tally.units, tally.orders
        ),
    ));
    let (top_user, top) = tally
        .per_user
        .iter()
        .max_by_key(|(_, v)| **v)
        .map_or(("-", 0), |(k, v)| (k.as_str(), *v));
    let over = tally
        .per_user
        .values()
        .filter(|v| **v > sale.max_per_user)
        .count();
    inv.push(Invariant::new(
        "per-user limit",
        over == 0,
        format!(
            "{} buyers bought; most by one buyer {top} ({top_user}) <= maxPerUser {}; {over} over the limit",
            tally.per_user.len(),
            sale.max_per_user
        ),
    ));
    inv.push(Invariant::new(
        "201 bodies",
        tally.mismatched == 0 && tally.unreadable == 0,
        format!(
            "{} replies named another user or sale, {} unreadable",
            tally.mismatched, tally.unreadable
        ),
    ));

    // Each reconcile call aggregates the sale's orders in MongoDB, which
    // competes with the write-behind it waits for: poll with a growing
    // interval, at least twice as long as the last call took.
    // The CPU spent while only the write-behind has work left, per order it
    // still had to write when the storm ended.
    let drain_from = plan.cpu.sample();
    let t = Instant::now();
    let deadline = t + args.drain_timeout;
    let mut calls = 0u32;
    let mut backoff = Duration::from_millis(250);
    let (mut last, mut took) = timed_reconcile(target, &admin, &sale.id).await;
    let pending_at_end = last.as_ref().map_or(0, |r| r.pending_write_behind.max(0));
    calls += 1;
    loop {
        if let Ok(r) = &last
            && r.pending_write_behind == 0
            && r.consistent
            && r.difference == 0
        {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let pause = backoff.max(took * 2).min(Duration::from_secs(15));
        tokio::time::sleep_until((now + pause).min(deadline)).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
        (last, took) = timed_reconcile(target, &admin, &sale.id).await;
        calls += 1;
    }
    let waited = t.elapsed().as_secs_f64();
    let drain_cpu = plan
        .cpu
        .report(&drain_from, &plan.cpu.sample(), pending_at_end as u64);
    let sale_json = json!({
        "id": sale.id,
        "totalUnits": after.total_units,
        "availableUnits": after.available_units,
        "maxPerUser": after.max_per_user,
        "maxPerTransaction": after.max_per_transaction,
        "unitsBoughtThisRun": tally.units,
        "ordersThisRun": tally.orders,
        "pendingWriteBehindAtEnd": pending_at_end,
        "drainSeconds": (waited * 1000.0).round() / 1000.0,
        "drainCpu": drain_cpu,
    });
    match last {
        Ok(r) => {
            inv.push(Invariant::new(
                "no oversell",
                (0..=after.total_units).contains(&r.redis_sold) && r.redis_sold == sold_after,
                format!(
                    "redisSold {} within 0..={} and equal to the sale's sold {sold_after}",
                    r.redis_sold, after.total_units
                ),
            ));
            inv.push(Invariant::new(
                "write-behind drained",
                r.pending_write_behind == 0,
                format!(
                    "pendingWriteBehind {} after {waited:.1} s (deadline {:.0} s; {calls} reconcile calls, the last took {:.2} s)",
                    r.pending_write_behind,
                    args.drain_timeout.as_secs_f64(),
                    took.as_secs_f64()
                ),
            ));
            inv.push(Invariant::new(
                "mongo holds every order",
                r.consistent && r.difference == 0,
                format!(
                    "consistent {}, difference {} (redisSold {}, mongoSold {})",
                    r.consistent, r.difference, r.redis_sold, r.mongo_sold
                ),
            ));
        }
        Err(e) => inv.push(Invariant::new("reconcile", false, e)),
    }

    let report = Report {
        command: "purchase",
        what: format!("POST {PURCHASE_PATH}"),
        mode: Some(args.mode.as_str()),
        common: c,
        result: &result,
        context,
        sale: Some(sale_json),
        invariants: inv,
    };
    report.print();
    Ok(report.passed())
}

/// Runs `get`; passes when at least one reply was a 2xx.
pub(crate) async fn run_get(c: &Common, path: &str) -> Result<bool, String> {
    // LOAD_BEARER: a token to send (for admin-only paths such as the leaderboard).
    let auth = match std::env::var("LOAD_BEARER") {
        Ok(t) => vec![
            hyper::header::HeaderValue::from_str(&format!("Bearer {t}"))
                .map_err(|_| "LOAD_BEARER is not a valid header value".to_owned())?,
        ],
        Err(_) => Vec::new(),
    };
    let wl = Arc::new(Workload {
        method: Method::GET,
        path: path.to_owned(),
        body: None,
        auth,
        purchase: None,
    });
    let plan = driver::Plan::of(c);
    let result = driver::run(&c.target, wl, &plan).await;
    let ok: u64 = result
        .measured
        .outcomes
        .iter()
        .filter(|(k, _)| matches!(k, crate::stats::Outcome::Http(s, _) if (200..300).contains(s)))
        .map(|(_, v)| v)
        .sum();
    let report = Report {
        command: "get",
        what: format!("GET {path}"),
        mode: None,
        common: c,
        result: &result,
        context: Vec::new(),
        sale: None,
        invariants: vec![Invariant::new(
            "answers",
            ok > 0,
            format!("{ok} 2xx replies measured"),
        )],
    };
    report.print();
    Ok(report.passed())
}
