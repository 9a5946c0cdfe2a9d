//! Operations, in a test binary of their own: the metrics test needs the
//! process-wide metrics recorder to itself, and the shutdown test runs the
//! real `flashsale` binary as a child process and sends it SIGTERM.

#![allow(unreachable_pub)]
// a test binary exports nothing
// The shared helpers are written for the api binary; this one uses a part.
#![allow(dead_code)]

#[path = "api/helpers.rs"]
mod helpers;
#[path = "api/support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use helpers::{ADMIN_EMAIL, ADMIN_PASSWORD, SECRET, spawn_app};
use support::eventually;
use support::redis::RedisServer;

/// The value of the series whose name and labels are exactly these.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_show_purchases_http_and_write_behind_after_a_purchase_run() {
    let app = spawn_app().await;
    let sale = app.open_sale(3, 2, 2).await;
    let id = sale["id"].as_str().unwrap();
    let (_, a) = app.customer("a@x.io").await;
    let (_, b) = app.customer("b@x.io").await;
    assert_eq!(app.purchase(&a, id, json!(2)).await.status(), 201);
    assert_eq!(app.purchase(&a, id, json!(1)).await.status(), 403); // user limit
    assert_eq!(app.purchase(&b, id, json!(2)).await.status(), 409); // insufficient
    assert_eq!(app.purchase(&b, id, json!(1)).await.status(), 201); // last unit
    assert_eq!(app.purchase(&b, id, json!(1)).await.status(), 409); // sold out, from memory
    let report = app.flush().await;
    assert_eq!(report.written, 2);

    let r = app.get("/metrics", None).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().await.unwrap();
    let get = |s: &str| sample(&text, s).unwrap_or_else(|| panic!("no series {s} in\n{text}"));
    assert_eq!(get(r#"flashsale_purchases_total{outcome="accepted"}"#), 2.0);
    assert_eq!(
        get(r#"flashsale_purchases_total{outcome="user_limit"}"#),
        1.0
    );
    assert_eq!(
        get(r#"flashsale_purchases_total{outcome="insufficient_stock"}"#),
        1.0
    );
    assert_eq!(get(r#"flashsale_purchases_total{outcome="sold_out"}"#), 1.0);
    assert_eq!(get("flashsale_units_sold_total"), 3.0);
    assert_eq!(
        get(
            r#"flashsale_http_requests_total{route="/api/purchase-product",method="POST",status="201"}"#
        ),
        2.0
    );
    assert_eq!(
        get(
            r#"flashsale_http_requests_total{route="/api/purchase-product",method="POST",status="409"}"#
        ),
        2.0
    );
    assert_eq!(
        get(r#"flashsale_http_request_duration_seconds_count{route="/api/purchase-product"}"#),
        5.0
    );
    assert_eq!(
        get(
            r#"flashsale_http_request_duration_seconds_bucket{route="/api/purchase-product",le="+Inf"}"#
        ),
        5.0
    );
    // Four purchases reached Redis; the sold-out one was answered from memory.
    assert_eq!(get("flashsale_purchase_script_duration_seconds_count"), 4.0);
    assert_eq!(get("flashsale_write_behind_flushed_total"), 2.0);
    assert!(get("flashsale_write_behind_batch_size_count") >= 1.0);
    assert!(text.contains("# TYPE flashsale_http_request_duration_seconds histogram"));
    assert!(text.contains("# TYPE flashsale_purchases_total counter"));

    // promtool, when installed, accepts the exposition.
    if Command::new("promtool").arg("--version").output().is_ok() {
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("promtool not installed; skipped `promtool check metrics`");
    }
}

/// A customer token for a user that needs no account (purchases are stateless).
fn mint(keys: &flashsale::auth::Keys) -> String {
    keys.issue(
        &mongodb::bson::oid::ObjectId::new().to_hex(),
        flashsale::auth::Role::Customer,
    )
    .unwrap()
}

#[tokio::test]
async fn sigterm_during_a_purchase_storm_finishes_requests_flushes_orders_and_exits_zero() {
    let redis = RedisServer::start();
    let mongo = support::mongo::shared_url();
    let db = helpers::unique_db();
    let port = support::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flashsale"))
        .envs(helpers::base_settings(&redis.url(), &mongo, &db))
        .env("PORT", port.to_string())
        .env("WRITE_BEHIND_INTERVAL_MS", "50")
        .env("SHUTDOWN_GRACE_MS", "5000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("flashsale binary starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let ready = eventually(Duration::from_secs(60), || async {
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ready, "the binary became ready");

    // Arrange: a sale, a watcher, and buyers.
    let signin: Value = client
        .post(format!("{base}/api/signin"))
        .json(&json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin = signin["accessToken"].as_str().unwrap().to_owned();
    let product: Value = client
        .post(format!("{base}/api/products"))
        .bearer_auth(&admin)
        .json(&json!({ "name": "P", "price": 10 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sale: Value = client
        .post(format!("{base}/api/flash-sales"))
        .bearer_auth(&admin)
        .json(&json!({
            "productId": product["id"], "startTime": helpers::iso_in(-60), "endTime": helpers::iso_in(3600),
            "discount": 0, "totalUnits": 1_000_000, "maxPerUser": 10, "maxPerTransaction": 1,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sale_id = sale["id"].as_str().unwrap().to_owned();
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws?token={admin}"))
            .await
            .unwrap();
    {
        use futures_util::SinkExt;
        ws.send(tokio_tungstenite::tungstenite::Message::text(
            json!({ "event": "joinFlashSale", "data": { "flashSaleId": sale_id } }).to_string(),
        ))
        .await
        .unwrap();
    }
    let keys =
        flashsale::auth::Keys::new(SECRET.as_bytes(), "flashsale", Duration::from_secs(3600));

    // Act: 32 buyers hammer the endpoint; SIGTERM lands in the middle.
    let accepted = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let completed = Arc::new(AtomicUsize::new(0));
    let malformed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..32 {
        let (client, base, sale_id) = (reqwest::Client::new(), base.clone(), sale_id.clone());
        let token = mint(&keys);
        let (accepted, completed, malformed, stop) = (
            accepted.clone(),
            completed.clone(),
            malformed.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .post(format!("{base}/api/purchase-product"))
                    .bearer_auth(&token)
                    .json(&json!({ "flashSaleId": sale_id, "quantity": 1 }))
                    .send()
                    .await;
                let Ok(r) = r else { break }; // refused: the server stopped accepting
                let status = r.status().as_u16();
                match r.json::<Value>().await {
                    Ok(v) if status == 201 => accepted
                        .lock()
                        .unwrap()
                        .push(v["id"].as_str().unwrap().to_owned()),
                    Ok(v) if v["error"]["code"].is_string() => {}
                    _ => {
                        malformed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                completed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let busy = eventually(Duration::from_secs(30), || async {
        accepted.lock().unwrap().len() >= 200
    })
    .await;
    assert!(busy, "the storm got going");
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let close = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(m) = ws.next().await {
            if let Ok(tokio_tungstenite::tungstenite::Message::Close(f)) = m {
                return f.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .expect("the socket closed in time");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }

    // Assert: clean exit, 1001 for the watcher, no broken responses, and every
    // accepted order in MongoDB exactly once.
    assert_eq!(status.code(), Some(0), "exit status");
    assert_eq!(close, Some(1001));
    assert_eq!(
        malformed.load(Ordering::Relaxed),
        0,
        "every answered request got a whole response"
    );
    let accepted: HashSet<String> = accepted.lock().unwrap().iter().cloned().collect();
    let stored = helpers::stored_order_ids(&mongo, &db).await;
    let stored_set: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), stored_set.len(), "no order twice");
    assert_eq!(stored_set, accepted, "every accepted order is in MongoDB");
    eprintln!(
        "SIGTERM after {} completed requests; {} orders accepted and stored",
        completed.load(Ordering::Relaxed),
        accepted.len()
    );
}
