//! Attacks on the opening second of a sale that must cost only the
//! attacker: a sign-in flood (hundreds of addresses signing in with made-up
//! emails while buyers purchase and real customers sign in: buyers get their
//! real outcome, never a 503, and real customers get in), made-up emails
//! past the dummy hashes' CPU budget (503 at once, real accounts unaffected),
//! and request bodies sent a byte at a time, over HTTP/1.1 or as HTTP/2
//! streams up to the advertised stream limit (they hold no in-flight slot;
//! over HTTP/1.1 they end with a 408).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{TestApp, customer_token, spawn_app_with};
use crate::storm::big_sale;
use crate::support::eventually;

/// Addresses the flood comes from in one round, and sign-ins per address
/// (9,000 in all, each address within the per-address sign-in rate).
const FLOOD_ADDRESSES: u8 = 150;
const FLOOD_ADDRESS_BLOCKS: u8 = 2;
const SIGNINS_PER_ADDRESS: usize = 30;
const BUYERS: usize = 24;
const CUSTOMERS: usize = 5;
const ROUNDS: u8 = 3;

/// A client whose connections come from `ip` (any 127.0.0.0/8 address is
/// local here), so the server sees a distinct peer per flood address.
fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(ip))
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// What one round saw, by who sent it.
#[derive(Debug, Default)]
struct Seen {
    flood: Mutex<HashMap<u16, usize>>,
    buyers: Mutex<HashMap<String, usize>>,
    /// Per real customer: time to a successful sign-in and the messages of
    /// the 503s on the way.
    customers: Mutex<Vec<(Duration, Vec<String>)>>,
    flood_answers: AtomicUsize,
}

fn count<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, usize>>, key: K) {
    *map.lock().unwrap().entry(key).or_default() += 1;
}

async fn flood_from(base: String, ip: Ipv4Addr, round: u8, seen: Arc<Seen>) {
    let client = client_from(ip);
    for i in 0..SIGNINS_PER_ADDRESS {
        let email = format!("nobody-{round}-{ip}-{i}@flood.example");
        let sent = client
            .post(format!("{base}/api/signin"))
            .json(&json!({ "email": email, "password": "not-a-real-password" }))
            .send()
            .await;
        let status = sent.map_or(0, |r| r.status().as_u16());
        count(&seen.flood, status);
        seen.flood_answers.fetch_add(1, Ordering::Relaxed);
    }
}

async fn buy_until(base: String, sale: String, stop: Arc<AtomicBool>, seen: Arc<Seen>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let token = customer_token();
    while !stop.load(Ordering::Relaxed) {
        let r = client
            .post(format!("{base}/api/purchase-product"))
            .bearer_auth(&token)
            .json(&json!({ "flashSaleId": sale, "quantity": 1 }))
            .send()
            .await;
        let outcome = match r {
            Ok(r) => {
                let status = r.status().as_u16();
                let code = r
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
                format!("{status} {}", code.unwrap_or_default())
            }
            Err(e) => format!("no answer: {e}"),
        };
        count(&seen.buyers, outcome);
    }
}

/// A real customer signing in the way a client should: on 503 it waits as
/// Retry-After asks and tries again, for up to 30 s.
async fn real_signin(base: String, ip: Ipv4Addr, email: String, seen: Arc<Seen>) {
    let client = client_from(ip);
    let started = Instant::now();
    let mut unavailable = Vec::new();
    loop {
        let r = client
            .post(format!("{base}/api/signin"))
            .json(&json!({ "email": email, "password": "real-customer-password" }))
            .send()
            .await
            .expect("the server answers a real customer");
        match r.status().as_u16() {
            200 => break,
            503 if started.elapsed() < Duration::from_secs(30) => {
                let wait: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let body: Value = r.json().await.unwrap();
                unavailable.push(body["error"]["message"].as_str().unwrap().to_owned());
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            other => panic!(
                "a real customer's sign-in got {other}: {}",
                r.text().await.unwrap_or_default()
            ),
        }
    }
    seen.customers
        .lock()
        .unwrap()
        .push((started.elapsed(), unavailable));
}

async fn one_round(app: &TestApp, sale: &str, round: u8) -> Seen {
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let buyers: Vec<_> = (0..BUYERS)
        .map(|_| {
            tokio::spawn(buy_until(
                app.base.clone(),
                sale.to_owned(),
                stop.clone(),
                seen.clone(),
            ))
        })
        .collect();
    // Each round floods from addresses of its own, so every round is a
    // full flood (addresses of an earlier round are already penalised).
    let flood: Vec<_> = (0..FLOOD_ADDRESS_BLOCKS)
        .flat_map(|block| (1..=FLOOD_ADDRESSES).map(move |host| (block, host)))
        .map(|(block, host)| {
            let ip = Ipv4Addr::new(127, 10 + round, block, host);
            tokio::spawn(flood_from(app.base.clone(), ip, round, seen.clone()))
        })
        .collect();
    // Real customers sign in once the flood is in full swing.
    let swinging = eventually(Duration::from_secs(60), || async {
        seen.flood_answers.load(Ordering::Relaxed) >= 300
    })
    .await;
    assert!(swinging, "the flood got going");
    let customers: Vec<_> = (0..CUSTOMERS)
        .map(|c| {
            let ip = Ipv4Addr::new(127, 20 + round, 0, c as u8 + 1);
            tokio::spawn(real_signin(
                app.base.clone(),
                ip,
                customer_email(c),
                seen.clone(),
            ))
        })
        .collect();
    for c in customers {
        c.await.unwrap();
    }
    for f in flood {
        f.await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for b in buyers {
        b.await.unwrap();
    }
    Arc::try_unwrap(seen).unwrap()
}

fn customer_email(c: usize) -> String {
    format!("real-customer-{c}@example.com")
}

#[tokio::test]
async fn a_signin_flood_neither_starves_buyers_nor_locks_real_customers_out() {
    let app = spawn_app_with(|s| {
        // A real hash cost and a real share of the in-flight limit, as in
        // production; of the abuse controls, the per-address sign-in rate,
        // the failure budget, the dummy-hash rate and its CPU budget are on
        // (at their defaults).
        s.insert("PASSWORD_ITERATIONS", "100000".to_owned());
        s.insert("HASH_CONCURRENCY", "2".to_owned());
        s.insert("MAX_IN_FLIGHT", "1024".to_owned());
        s.insert("RATE_SIGNIN_PER_IP", "30".to_owned());
        s.insert("SIGNIN_FAILURES_PER_IP", "10".to_owned());
        s.insert("HASH_UNKNOWN_PER_SECOND", "2".to_owned());
        s.insert("HASH_UNKNOWN_CPU_PERCENT", "5".to_owned());
    })
    .await;
    for c in 0..CUSTOMERS {
        let r = app
            .signup("Real", &customer_email(c), "real-customer-password")
            .await;
        assert_eq!(r.status(), 201);
    }
    let sale = big_sale(&app).await;

    for round in 0..ROUNDS {
        let seen = one_round(&app, &sale, round).await;
        let flood = seen.flood.lock().unwrap().clone();
        let buyers = seen.buyers.lock().unwrap().clone();
        let customers = seen.customers.lock().unwrap().clone();
        eprintln!(
            "flood round {round}: flood answers {flood:?}; buyers {buyers:?}; real sign-ins (time, 503s) {customers:?}"
        );
        // The flood got only refusals: wrong credentials, its own rate and
        // failure limits, or busy; it never broke the server.
        let flood_total: usize = flood.values().sum();
        assert_eq!(
            flood_total,
            usize::from(FLOOD_ADDRESSES) * usize::from(FLOOD_ADDRESS_BLOCKS) * SIGNINS_PER_ADDRESS
        );
        for status in flood.keys() {
            assert!(
                matches!(status, 401 | 429 | 503),
                "the flood got {status}: {flood:?}"
            );
        }
        // Every buyer got its real outcome: an order, never a 503 or 429.
        let bought = buyers.get("201 ").copied().unwrap_or(0);
        assert!(bought > 0, "buyers bought during the flood: {buyers:?}");
        for outcome in buyers.keys() {
            assert!(
                outcome == "201 " || outcome.starts_with("409 ") || outcome.starts_with("403 "),
                "a buyer got {outcome} during the flood: {buyers:?}"
            );
        }
        // Every real customer signed in.
        assert_eq!(customers.len(), CUSTOMERS, "every real customer got in");
    }
}

/// Opens a connection that sends a purchase's headers and the first byte of
/// its body, then nothing more.
async fn slow_body(addr: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/purchase-product HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 64\r\n\r\n{{",
        customer_token()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

#[tokio::test]
async fn bodies_sent_a_byte_at_a_time_hold_no_slot_and_end_with_408() {
    let app = spawn_app_with(|s| {
        s.insert("MAX_IN_FLIGHT", "1".to_owned());
        s.insert("BODY_READ_TIMEOUT_MS", "1500".to_owned());
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    // Five slow senders, more than the one in-flight slot...
    let mut slow = Vec::new();
    for _ in 0..5 {
        slow.push(slow_body(&addr).await);
    }
    // ...and the slot is still free for a real request meanwhile.
    let r = app.get("/api/products", Some(&app.admin_token)).await;
    assert_eq!(r.status(), 200, "slow bodies hold no in-flight slot");
    // Each slow sender gets a 408 with the error body once its time is up.
    for mut stream in slow {
        use tokio::io::AsyncReadExt;
        // The server answers and closes: the rest of the body never came.
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
        assert!(
            read.is_ok_and(|r| r.is_ok()),
            "the slow sender got an answer and the connection closed"
        );
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("\"REQUEST_TIMEOUT\""), "{text}");
    }
    assert_eq!(app.state.admission.available_permits(), 1);
}

#[tokio::test]
async fn an_http2_connection_gets_its_stream_limit_and_its_slow_streams_hold_no_slot() {
    let app = spawn_app_with(|s| {
        s.insert("HTTP2_MAX_STREAMS", "4".to_owned());
        s.insert("MAX_IN_FLIGHT", "1".to_owned());
        s.insert("BODY_READ_TIMEOUT_MS", "30000".to_owned());
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut h2c, conn) = h2::client::handshake(tcp).await.unwrap();
    let mut conn = Box::pin(conn);
    // As many purchases as the connection may carry, each sending the
    // first byte of its body and then nothing more.
    let mut streams = Vec::new();
    for _ in 0..4 {
        let req = http::Request::post(format!("http://{addr}/api/purchase-product"))
            .header("authorization", format!("Bearer {}", customer_token()))
            .header("content-type", "application/json")
            .header("content-length", "64")
            .body(())
            .unwrap();
        let (answer, mut body) = h2c.send_request(req, false).unwrap();
        body.send_data(bytes::Bytes::from_static(b"{"), false)
            .unwrap();
        streams.push((answer, body));
    }
    // The server's SETTINGS say how many streams a connection may open.
    let limit = tokio::time::timeout(
        Duration::from_secs(10),
        std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(r) = conn.as_mut().poll(cx) {
                panic!("the connection ended: {r:?}");
            }
            match conn.max_concurrent_send_streams() {
                4 => std::task::Poll::Ready(4),
                _ => std::task::Poll::Pending,
            }
        }),
    )
    .await
    .expect("the server's SETTINGS arrive");
    assert_eq!(limit, 4);
    // The connection is driven in the background from here on.
    let driver = tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| conn.as_mut().poll(cx)).await;
    });
    // The slow streams hold no in-flight slot: the one there is serves a
    // real request meanwhile.
    let r = app.get("/api/products", Some(&app.admin_token)).await;
    assert_eq!(
        r.status(),
        200,
        "slow HTTP/2 streams hold no in-flight slot"
    );
    assert_eq!(app.state.admission.available_permits(), 1);
    drop(streams);
    drop(h2c);
    driver.abort();
}

#[tokio::test]
async fn dummy_hashes_stop_at_their_cpu_budget_and_real_accounts_still_sign_in() {
    // 1 % of a core: after the burst of 4, one dummy hash per 100
    // derivations' time, far longer than this test takes.
    let app = spawn_app_with(|s| {
        s.insert("PASSWORD_ITERATIONS", "100000".to_owned());
        s.insert("HASH_UNKNOWN_CPU_PERCENT", "1".to_owned());
    })
    .await;
    let r = app
        .signup("Real", "budget-real@example.com", "real-customer-password")
        .await;
    assert_eq!(r.status(), 201);
    let mut answers = Vec::new();
    for i in 0..10 {
        let r = app
            .signin(&format!("made-up-{i}@example.com"), "not-the-password")
            .await;
        let status = r.status().as_u16();
        let retry_after = r.headers().get("retry-after").is_some();
        let v: Value = r.json().await.unwrap();
        answers.push((
            status,
            v["error"]["code"].as_str().unwrap_or("").to_owned(),
            retry_after,
        ));
    }
    // The burst pays its dummy hashes and gets the wrong-credentials answer...
    for a in &answers[..4] {
        assert_eq!(
            (a.0, a.1.as_str()),
            (401, "INVALID_CREDENTIALS"),
            "{answers:?}"
        );
    }
    // ...past the budget a made-up email is refused at once, with Retry-After.
    for a in &answers[4..] {
        assert_eq!(a.0, 503, "{answers:?}");
        assert!(a.2, "503 without Retry-After: {answers:?}");
    }
    // A real account is not budgeted.
    let r = app
        .signin("budget-real@example.com", "real-customer-password")
        .await;
    assert_eq!(r.status(), 200);
}

/// Signs in from `ip` and returns the status and the error code.
async fn signin_from(base: &str, ip: Ipv4Addr, email: &str, password: &str) -> (u16, String) {
    let r = client_from(ip)
        .post(format!("{base}/api/signin"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (status, v["error"]["code"].as_str().unwrap_or("").to_owned())
}

#[tokio::test]
async fn refusals_count_against_an_address_that_keeps_failing_but_not_a_customer_who_mistyped() {
    let app = spawn_app_with(|s| {
        s.insert("SIGNIN_FAILURES_PER_IP", "6".to_owned());
    })
    .await;
    let base = app.api.base.clone();
    let attacker = Ipv4Addr::new(127, 0, 9, 1);
    let customer = Ipv4Addr::new(127, 0, 9, 2);
    let r = app
        .signup("Mistyped", "mistyped@example.com", "the-right-password")
        .await;
    assert_eq!(r.status(), 201);
    // The customer mistypes once; the attacker names three made-up emails.
    let first = signin_from(&base, customer, "mistyped@example.com", "wrong").await;
    assert_eq!(first.0, 401, "{first:?}");
    for i in 0..3 {
        let a = signin_from(&base, attacker, &format!("made-up-{i}@x.example"), "pw").await;
        assert_eq!(a.0, 401, "{a:?}");
    }
    // The sign-in lane for failing addresses is full, as during a flood.
    let lane = Arc::clone(&app.state.auth_admission.failing);
    let held = lane
        .clone()
        .acquire_many_owned(u32::try_from(lane.available_permits()).unwrap())
        .await
        .unwrap();
    // The attacker's refusals are charged: 3 failures + 3 refusals spend its
    // budget of 6, and the next sign-in is refused in memory (429).
    let mut attacker_seen = Vec::new();
    for i in 3..8 {
        let a = signin_from(&base, attacker, &format!("made-up-{i}@x.example"), "pw").await;
        attacker_seen.push(a.0);
    }
    assert_eq!(attacker_seen, [503, 503, 503, 429, 429]);
    // The customer's refusals are given back: well past the budget, still
    // 503 (come back later), never locked out.
    let customer_signs_in = || {
        signin_from(
            &base,
            customer,
            "mistyped@example.com",
            "the-right-password",
        )
    };
    for _ in 0..8 {
        let c = customer_signs_in().await;
        assert_eq!(c.0, 503, "{c:?}");
    }
    drop(held);
    let c = customer_signs_in().await;
    assert_eq!(c.0, 200, "{c:?}");
    let a = signin_from(&base, attacker, "made-up-9@x.example", "pw").await;
    assert_eq!(a, (429, "RATE_LIMITED".to_owned()));
}
