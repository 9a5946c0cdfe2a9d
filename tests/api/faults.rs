//! Faults under load, against real processes: an app instance killed with
//! SIGKILL, MongoDB stopped for a while, Redis crashed and restarted with
//! `appendfsync always`. After each, every order acknowledged to a client is
//! in MongoDB exactly once and Redis never sold more than the stock.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{SECRET, TestApp, base_settings, spawn_app_on, unique_db};
use crate::support::mongo::MongoServer;
use crate::support::redis::RedisServer;
use crate::support::{eventually, free_port, mongo};

/// How long MongoDB stays down (the issue asks for 30 s; FAULT_MONGO_OUTAGE_SECS shortens it locally).
fn mongo_outage() -> Duration {
    let secs = std::env::var("FAULT_MONGO_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// Concurrent buyers hammering one sale through one or more instances.
struct Storm {
    accepted: Arc<Mutex<Vec<String>>>,
    statuses: Arc<Mutex<HashMap<u16, usize>>>,
    unavailable_without_retry_after: Arc<AtomicUsize>,
    transport_errors: Arc<AtomicUsize>,
    timeouts: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Storm {
    fn start(bases: &[String], sale: &str, workers: usize) -> Self {
        let keys =
            flashsale::auth::Keys::new(SECRET.as_bytes(), "flashsale", Duration::from_secs(3600));
        let s = Storm {
            accepted: Arc::default(),
            statuses: Arc::default(),
            unavailable_without_retry_after: Arc::default(),
            transport_errors: Arc::default(),
            timeouts: Arc::default(),
            stop: Arc::default(),
            workers: Vec::new(),
        };
        let mut s = s;
        for w in 0..workers {
            let token = keys
                .issue(
                    &mongodb::bson::oid::ObjectId::new().to_hex(),
                    flashsale::auth::Role::Customer,
                )
                .unwrap();
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let bases = bases.to_vec();
            let sale = sale.to_owned();
            let (accepted, statuses, no_ra, transport, timeouts, stop) = (
                s.accepted.clone(),
                s.statuses.clone(),
                s.unavailable_without_retry_after.clone(),
                s.transport_errors.clone(),
                s.timeouts.clone(),
                s.stop.clone(),
            );
            s.workers.push(tokio::spawn(async move {
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let base = &bases[i % bases.len()];
                    let r = client
                        .post(format!("{base}/api/purchase-product"))
                        .bearer_auth(&token)
                        .json(&json!({ "flashSaleId": sale, "quantity": 1 }))
                        .send()
                        .await;
                    let r = match r {
                        Ok(r) => r,
                        Err(e) => {
                            if e.is_timeout() {
                                timeouts.fetch_add(1, Ordering::Relaxed);
                            } else {
                                transport.fetch_add(1, Ordering::Relaxed);
                            }
                            // A refused connection (instance down): back off a little.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    };
                    let status = r.status().as_u16();
                    if status == 503 && !r.headers().contains_key("retry-after") {
                        no_ra.fetch_add(1, Ordering::Relaxed);
                    }
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    if status == 201 {
                        accepted
                            .lock()
                            .unwrap()
                            .push(body["id"].as_str().unwrap().to_owned());
                    }
                    *statuses.lock().unwrap().entry(status).or_default() += 1;
                    if status == 503 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }));
        }
        s
    }

    fn accepted(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }

    fn count(&self, status: u16) -> usize {
        self.statuses
            .lock()
            .unwrap()
            .get(&status)
            .copied()
            .unwrap_or(0)
    }

    async fn stop(self) -> StormResult {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.await.unwrap();
        }
        let accepted = self.accepted.lock().unwrap().clone();
        StormResult {
            accepted,
            statuses: self.statuses.lock().unwrap().clone(),
            unavailable_without_retry_after: self
                .unavailable_without_retry_after
                .load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug)]
struct StormResult {
    accepted: Vec<String>,
    statuses: HashMap<u16, usize>,
    unavailable_without_retry_after: usize,
    timeouts: usize,
}

impl StormResult {
    fn assert_clean(&self) {
        let five_hundreds: usize = self
            .statuses
            .iter()
            .filter(|(s, _)| **s >= 500 && **s != 503)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(
            five_hundreds, 0,
            "no 5xx other than 503: {:?}",
            self.statuses
        );
        assert_eq!(
            self.unavailable_without_retry_after, 0,
            "every 503 carries Retry-After"
        );
        assert_eq!(self.timeouts, 0, "no request hung until the client timeout");
    }
}

/// Waits until reconcile reports the sale fully written and consistent, then
/// checks MongoDB holds every acknowledged order exactly once.
async fn assert_all_written(
    state: &flashsale::AppState,
    mongo_url: &str,
    db: &str,
    sale: &str,
    accepted: &[String],
) {
    let id = flashsale::ids::SaleId::parse(sale).unwrap();
    let last = RefCell::new(None);
    let settled = eventually(Duration::from_secs(90), || async {
        let Ok(r) = state.reconciler.sale(id).await else {
            return false; // a store is still coming back
        };
        let done = r.pending_write_behind == 0 && r.consistent;
        last.replace(Some(r));
        done
    })
    .await;
    let report = last.into_inner();
    assert!(settled, "reconcile never settled: {report:?}");
    let report = report.unwrap();
    assert!(
        report.redis_sold <= report.total_units,
        "never oversold: {report:?}"
    );
    let stored = crate::helpers::stored_order_ids(mongo_url, db).await;
    let stored_set: HashSet<&String> = stored.iter().collect();
    assert_eq!(stored.len(), stored_set.len(), "no order stored twice");
    let missing: Vec<&String> = accepted
        .iter()
        .filter(|a| !stored_set.contains(a))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged orders missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(stored.len() as i64, report.mongo_orders);
    assert_eq!(
        report.redis_orders, report.mongo_orders,
        "every order Redis allocated reached MongoDB: {report:?}"
    );
}

async fn big_sale(app: &TestApp) -> String {
    let product = app.create_product(5.0).await;
    let sale = app
        .sale_for(&product, -60, 3600, 1_000_000, 1_000_000, 1)
        .await;
    sale["id"].as_str().unwrap().to_owned()
}

fn background_write_behind(s: &mut HashMap<&'static str, String>) {
    s.insert("WRITE_BEHIND_INTERVAL_MS", "50".to_owned());
    s.insert("WRITE_BEHIND_CLAIM_IDLE_MS", "1000".to_owned());
    s.insert("REDIS_COMMAND_TIMEOUT_MS", "1000".to_owned());
}

#[tokio::test]
async fn mongodb_down_during_a_storm_loses_nothing_and_readyz_says_degraded() {
    let redis = RedisServer::start();
    let mut mongo = MongoServer::start();
    let db = unique_db();
    let app = spawn_app_on(&redis.url(), &mongo.url(), &db, background_write_behind).await;
    let sale = big_sale(&app).await;
    // Few buyers: MongoDB (a single-threaded Python server in tests) must
    // later absorb everything accepted during the outage.
    let storm = Storm::start(std::slice::from_ref(&app.base), &sale, 3);
    assert!(
        eventually(Duration::from_secs(30), || async {
            storm.accepted() >= 100
        })
        .await
    );

    mongo.stop();
    let at_stop = storm.accepted();
    let degraded = eventually(Duration::from_secs(10), || async {
        let r = app.get("/readyz", None).await;
        r.status() == 503
            && r.json::<Value>()
                .await
                .is_ok_and(|v| v["mongodb"] == "down" && v["redis"] == "up")
    })
    .await;
    assert!(degraded, "/readyz reports MongoDB down");
    // The outage lasts its full length (the fault, not a synchronisation).
    tokio::time::sleep(mongo_outage()).await;
    let during = storm.accepted() - at_stop;
    assert!(
        during > 0,
        "purchases kept being accepted while MongoDB was down"
    );
    mongo.start_again();
    let more = storm.accepted();
    assert!(
        eventually(Duration::from_secs(30), || async {
            storm.accepted() > more
        })
        .await
    );
    let result = storm.stop().await;
    result.assert_clean();
    eprintln!(
        "MongoDB outage: {during} orders accepted while it was down; statuses {:?}",
        result.statuses
    );
    assert_all_written(&app.state, &mongo.url(), &db, &sale, &result.accepted).await;
    assert_eq!(app.get("/readyz", None).await.status(), 200);
}

#[tokio::test]
async fn redis_crash_and_restart_with_appendfsync_always_loses_no_acknowledged_order() {
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let db = unique_db();
    let mongo_url = mongo::shared_url();
    let app = spawn_app_on(&redis.url(), &mongo_url, &db, background_write_behind).await;
    let sale = big_sale(&app).await;
    let storm = Storm::start(std::slice::from_ref(&app.base), &sale, 8);
    assert!(
        eventually(Duration::from_secs(30), || async {
            storm.accepted() >= 200
        })
        .await
    );

    redis.kill(); // SIGKILL: a crash, not a clean shutdown
    let unavailable_before = storm.count(503);
    let answered_503 = eventually(Duration::from_secs(20), || async {
        storm.count(503) >= unavailable_before + 20
    })
    .await;
    assert!(answered_503, "clients get 503 while Redis is down");
    redis.restart();
    let resumed_from = storm.accepted();
    let resumed = eventually(Duration::from_secs(30), || async {
        storm.accepted() > resumed_from + 50
    })
    .await;
    assert!(resumed, "the service reconnected by itself");
    let result = storm.stop().await;
    result.assert_clean();
    eprintln!("Redis crash: statuses {:?}", result.statuses);
    assert_all_written(&app.state, &mongo_url, &db, &sale, &result.accepted).await;
    let stock: i64 = redis
        .cli(&["GET", &format!("{{sale:{sale}}}:stock")])
        .parse()
        .unwrap();
    assert!(stock >= 0);
}

fn spawn_instance(redis_url: &str, mongo_url: &str, db: &str, port: u16) -> Child {
    let mut settings = base_settings(redis_url, mongo_url, db);
    background_write_behind(&mut settings);
    Command::new(env!("CARGO_BIN_EXE_flashsale"))
        .envs(settings)
        .env("PORT", port.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("flashsale binary starts")
}

async fn wait_ready(base: &str) {
    let client = reqwest::Client::new();
    let ok = eventually(Duration::from_secs(60), || async {
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ok, "{base} became ready");
}

#[tokio::test]
async fn an_instance_killed_mid_storm_loses_no_acknowledged_order() {
    let redis = RedisServer::start();
    let mongo_url = mongo::shared_url();
    let db = unique_db();
    // The test's own in-process instance creates the sale and reads reconcile.
    let app = spawn_app_on(&redis.url(), &mongo_url, &db, background_write_behind).await;
    let sale = big_sale(&app).await;
    let (pa, pb) = (free_port(), free_port());
    let mut a = spawn_instance(&redis.url(), &mongo_url, &db, pa);
    let mut b = spawn_instance(&redis.url(), &mongo_url, &db, pb);
    let (base_a, base_b) = (
        format!("http://127.0.0.1:{pa}"),
        format!("http://127.0.0.1:{pb}"),
    );
    wait_ready(&base_a).await;
    wait_ready(&base_b).await;
    let storm = Storm::start(&[base_a.clone(), base_b.clone()], &sale, 12);
    assert!(
        eventually(Duration::from_secs(30), || async {
            storm.accepted() >= 300
        })
        .await
    );

    a.kill().unwrap(); // SIGKILL
    a.wait().unwrap();
    let at_kill = storm.accepted();
    let survivors = eventually(Duration::from_secs(30), || async {
        storm.accepted() >= at_kill + 200
    })
    .await;
    assert!(survivors, "the surviving instance kept serving");
    a = spawn_instance(&redis.url(), &mongo_url, &db, pa);
    wait_ready(&base_a).await;
    let result = storm.stop().await;
    let _ = a.kill();
    let _ = b.kill();
    let _ = a.wait();
    let _ = b.wait();
    result.assert_clean();
    eprintln!(
        "instance kill: {} acknowledged; statuses {:?}",
        result.accepted.len(),
        result.statuses
    );
    assert_all_written(&app.state, &mongo_url, &db, &sale, &result.accepted).await;
}
