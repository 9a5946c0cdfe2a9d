//! `spawn_app()`: the application on port 0 against its own Redis and a fresh
//! MongoDB database; `Api`, a client with one method per endpoint, which
//! `TestApp` derefs to; `start_binary()`, the real binary as a child process;
//! schedulers a test steps with `tick_once`; token minting and forging; and
//! readers of what Redis and MongoDB hold.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use flashsale::scheduler::{Scheduler, TickOutcome};
use flashsale::{App, AppState, Config};
use mongodb::bson::{Document, doc};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub use crate::support::eventually;
use crate::support::redis::RedisServer;
use crate::support::{ChildGuard, mongo};

pub const ADMIN_EMAIL: &str = "admin@test.local";
pub const ADMIN_PASSWORD: &str = "admin-password-123";
pub const SECRET: &str = "test-secret-key-that-is-long-enough-0123456789";

/// Settings by name, as `Config::from_source` reads them.
pub type Settings = HashMap<&'static str, String>;

/// Settings every test app gets; tests override with `spawn_app_with`.
pub fn base_settings(redis_url: &str, mongo_url: &str, db: &str) -> Settings {
    HashMap::from([
        ("PORT", "0".to_owned()),
        ("BIND_ADDR", "127.0.0.1".to_owned()),
        ("REDIS_URL", redis_url.to_owned()),
        ("MONGO_URL", mongo_url.to_owned()),
        ("MONGO_DB", db.to_owned()),
        ("SECRET_KEY", SECRET.to_owned()),
        ("PASSWORD_ITERATIONS", "1000".to_owned()),
        // Cheap hashing keeps sign-ins fast; start-up refuses it without this.
        ("PASSWORD_ITERATIONS_INSECURE", "1".to_owned()),
        ("HASH_CONCURRENCY", "4".to_owned()),
        ("ADMIN_EMAIL", ADMIN_EMAIL.to_owned()),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
        // Tests drive the write-behind with flush_once().
        ("WRITE_BEHIND_INTERVAL_MS", "3600000".to_owned()),
        ("WRITE_BEHIND_CLAIM_IDLE_MS", "30000".to_owned()),
        ("SHUTDOWN_GRACE_MS", "3000".to_owned()),
        ("SCHEDULER_TICK_MS", "100".to_owned()),
        ("SCHEDULER_LEASE_MS", "2000".to_owned()),
        ("WS_TICK_MS", "50".to_owned()),
        // Abuse controls off unless a test turns one on: every test client
        // shares 127.0.0.1.
        ("RATE_PURCHASE_PER_IP", "0".to_owned()),
        ("RATE_PURCHASE_PER_USER", "0".to_owned()),
        ("RATE_SIGNIN_PER_IP", "0".to_owned()),
        ("RATE_SIGNIN_PER_ACCOUNT", "0".to_owned()),
        ("RATE_SIGNIN_PER_ACCOUNT_GLOBAL", "0".to_owned()),
        ("RATE_SIGNUP_PER_IP", "0".to_owned()),
        ("SIGNIN_FAILURES_PER_IP", "0".to_owned()),
        ("HASH_UNKNOWN_PER_SECOND", "0".to_owned()),
        ("HASH_UNKNOWN_CPU_PERCENT", "0".to_owned()),
        ("PURCHASE_ATTEMPTS_PER_WINDOW", "0".to_owned()),
        ("DEFAULT_MAX_ACCOUNTS_PER_IP", "0".to_owned()),
        ("FRAUD_RULE_NEW_ACCOUNT", "off".to_owned()),
        ("FRAUD_RULE_REFUSAL_BURST", "off".to_owned()),
        ("FRAUD_RULE_MANY_IPS", "off".to_owned()),
    ])
}

pub fn unique_db() -> String {
    format!("test_{}", mongodb::bson::oid::ObjectId::new().to_hex())
}

/// An instance in this process: its state, its stores, and (through `Deref`)
/// the [`Api`] client for it.
#[derive(Debug)]
pub struct TestApp {
    pub api: Api,
    pub state: Arc<AppState>,
    pub redis: Option<RedisServer>,
    pub redis_url: String,
    pub mongo_url: String,
    pub db_name: String,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts an app with its own Redis and the shared MongoDB, after `tweak`
/// adjusts the settings.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_owning(RedisServer::start(), tweak).await
}

/// The lease key of the app's own scheduler in [`spawn_app_with_idle_scheduler`].
const PARKED_LEASE_KEY: &str = "{test:parked-scheduler}";
/// The lease key of the schedulers tests build with [`TestApp::scheduler`].
const TEST_LEASE_KEY: &str = "{test:scheduler}";

/// An app whose own scheduler never leads: its lease is held, with no expiry,
/// by an owner that never ticks. Only schedulers the test steps with
/// `tick_once` (see [`TestApp::scheduler`]) move sales, so the test decides
/// when each tick happens.
pub async fn spawn_app_with_idle_scheduler() -> TestApp {
    let redis = RedisServer::start();
    assert_eq!(redis.cli(&["SET", PARKED_LEASE_KEY, "parked:0"]), "OK");
    spawn_app_owning(redis, |s| {
        s.insert("REDIS_LOCK_KEY", PARKED_LEASE_KEY.to_owned());
    })
    .await
}

async fn spawn_app_owning(redis: RedisServer, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let mut app = spawn_app_on(&redis.url(), &mongo::shared_url(), &unique_db(), tweak).await;
    app.redis = Some(redis);
    app
}

/// Starts an app on existing stores (a second instance, or a restart).
pub async fn spawn_app_on(
    redis_url: &str,
    mongo_url: &str,
    db: &str,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    if std::env::var_os("TEST_LOG").is_some() {
        flashsale::telemetry::init(false);
    }
    let mut settings = base_settings(redis_url, mongo_url, db);
    tweak(&mut settings);
    let config = Config::from_source(&settings).expect("valid test config");
    let app = App::build(config).await.expect("app builds");
    let addr = app.local_addr();
    let state = app.state();
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    TestApp {
        api: Api::connect(format!("http://{addr}")).await,
        state,
        redis: None,
        redis_url: redis_url.to_owned(),
        mongo_url: mongo_url.to_owned(),
        db_name: db.to_owned(),
        stop,
        task: Some(task),
    }
}

impl std::ops::Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl TestApp {
    /// Stops the server and waits for it (in-flight requests, write-behind drain).
    pub async fn shutdown(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            t.await.expect("app task");
        }
    }

    pub fn redis(&self) -> &RedisServer {
        self.redis.as_ref().expect("this app owns its redis")
    }

    /// Drains every stream (orders, fraud events) into MongoDB.
    pub async fn flush(&self) -> flashsale::write_behind::FlushReport {
        self.state
            .write_behind
            .drain(Duration::from_secs(30))
            .await
            .expect("flush")
    }

    pub async fn mongo(&self) -> mongodb::Database {
        mongodb::Client::with_uri_str(&self.mongo_url)
            .await
            .unwrap()
            .database(&self.db_name)
    }

    /// The sale's document as MongoDB holds it (status, end reason, the
    /// epoch of the scheduler leader that last moved it).
    pub async fn stored_sale(&self, id: &str) -> Document {
        let oid = mongodb::bson::oid::ObjectId::parse_str(id).expect("a sale id");
        self.mongo()
            .await
            .collection::<Document>("flash_sales")
            .find_one(mongodb::bson::doc! { "_id": oid })
            .await
            .expect("MongoDB answers")
            .expect("the sale is stored")
    }

    /// Every order MongoDB holds that matches `filter`.
    pub async fn stored_orders(&self, filter: Document) -> Vec<Document> {
        stored_orders(&self.mongo_url, &self.db_name, filter).await
    }

    /// A scheduler on this app's stores, stepped by the test with
    /// `tick_once`. All of them share one lease, so of several at most one
    /// leads; pair with [`spawn_app_with_idle_scheduler`] so the app's own
    /// scheduler stays out of the way.
    pub fn scheduler(&self, instance: &str, lease: Duration) -> Scheduler {
        Scheduler::new(
            self.state.redis.clone(),
            self.state.hot.clone(),
            self.state.sales.store.clone(),
            TEST_LEASE_KEY,
            instance.to_owned(),
            lease,
            lease / 4, // the tick period; unused by tick_once
        )
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A client for one running instance, in this process or a child process:
/// its base URL, an HTTP client, an admin token, and one method per endpoint.
#[derive(Debug)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    pub admin_token: String,
}

impl Api {
    /// A client for the instance at `base`, signed in as the admin.
    pub async fn connect(base: String) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(128)
            .build()
            .unwrap();
        let mut api = Self {
            base,
            client,
            admin_token: String::new(),
        };
        api.admin_token = api.token_for(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        api
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A WebSocket connected with `?token=`.
    pub async fn ws(&self, token: &str) -> Ws {
        self.try_ws(&format!("token={token}"), &[])
            .await
            .expect("websocket connects")
    }

    /// A WebSocket handshake on `/ws?<query>` with extra headers: the socket,
    /// or the refused handshake's status and JSON body.
    pub async fn try_ws(
        &self,
        query: &str,
        headers: &[(&'static str, &str)],
    ) -> Result<Ws, (u16, Value, Option<String>)> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!(
            "ws://{}/ws?{query}",
            self.base.trim_start_matches("http://")
        )
        .into_client_request()
        .unwrap();
        for (name, value) in headers {
            req.headers_mut().insert(*name, value.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(Ws { inner: ws }),
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                let body = r
                    .body()
                    .as_deref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or(Value::Null);
                Err((r.status().as_u16(), body, retry_after))
            }
            Err(e) => panic!("websocket handshake failed: {e}"),
        }
    }

    /// Changes a user's role as the admin.
    pub async fn set_role(&self, user: &str, role: &str) -> Response {
        self.post(
            &format!("/api/admin/users/{user}/role"),
            Some(&self.admin_token),
            &json!({ "role": role }),
        )
        .await
    }

    /// Adds a user to the blocklist as the admin.
    pub async fn block_user(&self, user: &str) {
        let r = self
            .post(
                "/api/admin/blocklist",
                Some(&self.admin_token),
                &json!({ "type": "user", "value": user }),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    /// Removes a user from the blocklist as the admin.
    pub async fn unblock_user(&self, user: &str) {
        let r = self
            .client
            .delete(self.url(&format!("/api/admin/blocklist?type=user&value={user}")))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    /// Signs up a second admin (created by the first) and returns (id, token).
    pub async fn second_admin(&self, email: &str) -> (String, String) {
        let r = self
            .post(
                "/api/signup",
                Some(&self.admin_token),
                &json!({ "name": "Admin 2", "email": email, "password": "admin2-password", "role": "admin" }),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED, "signup of {email}");
        let v: Value = r.json().await.unwrap();
        let token = self.token_for(email, "admin2-password").await;
        (v["id"].as_str().unwrap().to_owned(), token)
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        let mut r = self.client.post(self.url(path)).json(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.expect("request")
    }

    pub async fn post_raw(&self, path: &str, token: Option<&str>, body: Vec<u8>) -> Response {
        let mut r = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.expect("request")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut r = self.client.get(self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.expect("request")
    }

    pub async fn signup(&self, name: &str, email: &str, password: &str) -> Response {
        self.post(
            "/api/signup",
            None,
            &json!({ "name": name, "email": email, "password": password }),
        )
        .await
    }

    pub async fn signin(&self, email: &str, password: &str) -> Response {
        self.post(
            "/api/signin",
            None,
            &json!({ "email": email, "password": password }),
        )
        .await
    }

    pub async fn token_for(&self, email: &str, password: &str) -> String {
        let r = self.signin(email, password).await;
        assert_eq!(r.status(), StatusCode::OK, "signin of {email}");
        let v: Value = r.json().await.unwrap();
        v["accessToken"].as_str().unwrap().to_owned()
    }

    /// Signs up a customer and returns (user id, token).
    pub async fn customer(&self, email: &str) -> (String, String) {
        let r = self.signup("Buyer", email, "buyer-password").await;
        assert_eq!(r.status(), StatusCode::CREATED, "signup of {email}");
        let v: Value = r.json().await.unwrap();
        let token = self.token_for(email, "buyer-password").await;
        (v["id"].as_str().unwrap().to_owned(), token)
    }

    pub async fn create_product(&self, price: f64) -> String {
        let r = self
            .post(
                "/api/products",
                Some(&self.admin_token),
                &json!({ "name": "Phone", "description": "A phone", "price": price }),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    pub async fn create_sale_raw(&self, body: &Value) -> Response {
        self.post("/api/flash-sales", Some(&self.admin_token), body)
            .await
    }

    /// A sale open now (started a minute ago, ends in an hour).
    pub async fn open_sale(&self, total: i64, max_per_user: i64, max_per_tx: i64) -> Value {
        let product = self.create_product(100.0).await;
        self.sale_for(&product, -60, 3_600, total, max_per_user, max_per_tx)
            .await
    }

    /// A sale of `product` from now+start_s to now+end_s.
    pub async fn sale_for(
        &self,
        product: &str,
        start_s: i64,
        end_s: i64,
        total: i64,
        max_per_user: i64,
        max_per_tx: i64,
    ) -> Value {
        let r = self
            .create_sale_raw(&json!({
                "productId": product,
                "startTime": iso_in(start_s),
                "endTime": iso_in(end_s),
                "discount": 20,
                "totalUnits": total,
                "maxPerUser": max_per_user,
                "maxPerTransaction": max_per_tx,
            }))
            .await;
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v
    }

    pub async fn get_sale(&self, id: &str) -> Value {
        let r = self
            .get(&format!("/api/flash-sales/{id}"), Some(&self.admin_token))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    pub async fn purchase(&self, token: &str, sale: &str, quantity: Value) -> Response {
        self.post(
            "/api/purchase-product",
            Some(token),
            &json!({ "flashSaleId": sale, "quantity": quantity }),
        )
        .await
    }

    pub async fn purchase_keyed(
        &self,
        token: &str,
        sale: &str,
        quantity: i64,
        key: &str,
    ) -> Response {
        self.purchase_with(token, sale, quantity, ("Idempotency-Key", key))
            .await
    }

    /// A purchase with one extra request header.
    pub async fn purchase_with(
        &self,
        token: &str,
        sale: &str,
        quantity: i64,
        (name, value): (&str, &str),
    ) -> Response {
        self.client
            .post(self.url("/api/purchase-product"))
            .bearer_auth(token)
            .header(name, value)
            .json(&json!({ "flashSaleId": sale, "quantity": quantity }))
            .send()
            .await
            .expect("request")
    }

    pub async fn orders(&self, token: &str, query: &str) -> Response {
        self.get(&format!("/api/orders{query}"), Some(token)).await
    }

    pub async fn leaderboard(&self, sale: &str, offset: u64, limit: u64) -> Response {
        self.get(
            &format!("/api/leaderboard?flashSaleId={sale}&offset={offset}&limit={limit}"),
            Some(&self.admin_token),
        )
        .await
    }
}

/// An HTTP client whose connections leave from `source`, another loopback
/// address than 127.0.0.1 (all of 127.0.0.0/8 reaches the app on Linux), so a
/// test can stand for a second client machine.
pub fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .local_address(Some(source.parse().expect("a source address")))
        .build()
        .unwrap()
}

/// A purchase sent by `client` (see [`client_from`]) with extra headers.
pub async fn purchase_via(
    client: &reqwest::Client,
    app: &Api,
    token: &str,
    sale: &str,
    quantity: i64,
    headers: &[(&str, &str)],
) -> Response {
    let mut r = client
        .post(app.url("/api/purchase-product"))
        .bearer_auth(token)
        .json(&json!({ "flashSaleId": sale, "quantity": quantity }));
    for (name, value) in headers {
        r = r.header(*name, *value);
    }
    r.send().await.expect("request")
}

/// RFC 3339 time `secs` from now.
pub fn iso_in(secs: i64) -> String {
    let ms = mongodb::bson::DateTime::now().timestamp_millis() + secs * 1000;
    mongodb::bson::DateTime::from_millis(ms)
        .try_to_rfc3339_string()
        .unwrap()
}

/// Asserts an error body: status, code, and the body's shape.
pub async fn assert_error(r: Response, status: u16, code: &str) -> Value {
    let got = r.status().as_u16();
    let v: Value = r.json().await.expect("error body is JSON");
    assert_eq!(got, status, "body: {v}");
    assert_eq!(v["error"]["code"], code, "body: {v}");
    assert!(v["error"]["message"].is_string(), "body: {v}");
    assert!(v["error"].get("details").is_some(), "body: {v}");
    v
}

/// Asserts `r` is a 429 `RATE_LIMITED` from the limit named `policy`, with
/// Retry-After (at least 1 s) and the RateLimit fields.
pub async fn assert_limited(r: Response, policy: &str) -> Value {
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "{:?}", r.headers());
    let named = r.headers()["ratelimit-policy"].to_str().unwrap();
    assert!(named.contains(policy), "{policy} in {:?}", r.headers());
    assert!(r.headers().contains_key("ratelimit"), "{:?}", r.headers());
    assert_error(r, 429, "RATE_LIMITED").await
}

/// A test WebSocket client.
#[derive(Debug)]
pub struct Ws {
    pub inner: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Ws {
    pub async fn send(&mut self, v: &Value) {
        use futures_util::SinkExt;
        self.inner
            .send(tokio_tungstenite::tungstenite::Message::text(v.to_string()))
            .await
            .expect("send");
    }

    pub async fn join(&mut self, sale: &str) -> Value {
        self.send(&json!({ "event": "joinFlashSale", "data": { "flashSaleId": sale } }))
            .await;
        self.next_event(Duration::from_secs(10))
            .await
            .expect("join answer")
    }

    /// The next JSON event, skipping pings; None on close or after `patience`.
    pub async fn next_event(&mut self, patience: Duration) -> Option<Value> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let m = tokio::time::timeout_at(deadline, self.inner.next())
                .await
                .ok()??;
            match m {
                Ok(Message::Text(t)) => return Some(serde_json::from_str(&t).expect("JSON event")),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Waits for an event named `name`, returning it and every event seen before it.
    pub async fn wait_for(&mut self, name: &str, patience: Duration) -> (Value, Vec<Value>) {
        let deadline = tokio::time::Instant::now() + patience;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let ev = self
                .next_event(left)
                .await
                .unwrap_or_else(|| panic!("no {name} event; saw {seen:?}"));
            if ev["event"] == name {
                return (ev, seen);
            }
            seen.push(ev);
        }
    }

    /// The close code and reason the server ends the connection with.
    pub async fn close_frame(&mut self, patience: Duration) -> Option<(u16, String)> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match tokio::time::timeout_at(deadline, self.inner.next())
                .await
                .ok()??
            {
                Ok(Message::Close(Some(f))) => return Some((f.code.into(), f.reason.to_string())),
                Ok(Message::Close(None)) => return Some((1005, String::new())),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// The close code the server ends the connection with.
    pub async fn close_code(&mut self, patience: Duration) -> Option<u16> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match tokio::time::timeout_at(deadline, self.inner.next())
                .await
                .ok()??
            {
                Ok(Message::Close(Some(f))) => return Some(f.code.into()),
                Ok(Message::Close(None)) => return Some(1005),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }
}

// === the binary as a child process ===

/// The `flashsale` binary running as a child process (killed on drop).
#[derive(Debug)]
pub struct Binary {
    pub base: String,
    pub process: ChildGuard,
}

/// Starts the binary on `port` with [`base_settings`] as its environment
/// (after `tweak`), and waits until its `/readyz` answers 200.
pub async fn start_binary(
    redis_url: &str,
    mongo_url: &str,
    db: &str,
    port: u16,
    tweak: impl FnOnce(&mut Settings),
) -> Binary {
    start_binary_via(&[], redis_url, mongo_url, db, port, tweak).await
}

/// [`start_binary`] run through `wrapper` (e.g. `["faketime", "-f", "+3h"]`).
pub async fn start_binary_via(
    wrapper: &[&str],
    redis_url: &str,
    mongo_url: &str,
    db: &str,
    port: u16,
    tweak: impl FnOnce(&mut Settings),
) -> Binary {
    let mut settings = base_settings(redis_url, mongo_url, db);
    settings.insert("PORT", port.to_string());
    settings.insert("RUST_LOG", "warn".to_owned());
    tweak(&mut settings);
    let bin = env!("CARGO_BIN_EXE_flashsale");
    let mut command = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = std::process::Command::new(first);
            c.args(rest).arg(bin);
            c
        }
        None => std::process::Command::new(bin),
    };
    let process = ChildGuard::spawn(
        command
            .envs(settings)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )
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
    assert!(ready, "{base} became ready");
    Binary { base, process }
}

// === schedulers stepped by the test ===

/// How many sales a tick moved (0 for a follower).
pub fn transitions(outcome: &TickOutcome) -> usize {
    match outcome {
        TickOutcome::Leader { transitions, .. } => *transitions,
        TickOutcome::Follower => 0,
    }
}

/// Ticks `scheduler` until `done` holds for a tick's outcome or `patience`
/// passes, and returns every outcome in order (Redis's clock decides when a
/// sale is due, so a sale due a moment from now takes a few ticks).
pub async fn tick_until(
    scheduler: &mut Scheduler,
    patience: Duration,
    done: impl FnMut(&TickOutcome) -> bool,
) -> Vec<TickOutcome> {
    let scheduler = tokio::sync::Mutex::new(scheduler);
    let done = std::cell::RefCell::new(done);
    let outcomes = std::cell::RefCell::new(Vec::new());
    let reached = eventually(patience, || async {
        let outcome = scheduler.lock().await.tick_once().await.expect("tick");
        outcomes.borrow_mut().push(outcome);
        (done.borrow_mut())(&outcome)
    })
    .await;
    let outcomes = outcomes.into_inner();
    assert!(reached, "no tick did what was awaited: {outcomes:?}");
    outcomes
}

// === tokens ===

/// A valid customer token for a user with no account (purchases need none).
pub fn customer_token() -> String {
    flashsale::auth::Keys::new(SECRET.as_bytes(), "flashsale", Duration::from_secs(3600))
        .issue(
            &mongodb::bson::oid::ObjectId::new().to_hex(),
            flashsale::auth::Role::Customer,
        )
        .unwrap()
}

/// Claims like the service's own, for forged tokens.
pub fn claims(sub: &str, role: &str, issuer: &str, exp: u64) -> Value {
    json!({ "sub": sub, "role": role, "iss": issuer, "iat": 1, "exp": exp })
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWT with header `{"alg": alg}` and `claims`, signed with `key`:
/// HMAC-SHA512 for HS512, HMAC-SHA256 for any other `alg` (so "RS256" makes
/// an algorithm-confusion token).
pub fn forge(alg: &str, claims: &Value, key: &[u8]) -> String {
    use ring::hmac;
    let h = b64(json!({ "alg": alg, "typ": "JWT" }).to_string());
    let p = b64(claims.to_string());
    let hmac = if alg == "HS512" {
        hmac::HMAC_SHA512
    } else {
        hmac::HMAC_SHA256
    };
    let sig = hmac::sign(&hmac::Key::new(hmac, key), format!("{h}.{p}").as_bytes());
    format!("{h}.{p}.{}", b64(sig.as_ref()))
}

/// An unsigned token (`"alg": "none"`) with `claims`.
pub fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string())
    )
}

/// `token` with its claims replaced and its signature kept.
pub fn tampered(token: &str, claims: &Value) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = b64(claims.to_string());
    parts.join(".")
}

// === what the stores hold ===

/// Entries in the sale's order stream.
pub fn xlen(redis: &RedisServer, sale: &str) -> i64 {
    redis
        .cli(&["XLEN", &format!("{{sale:{sale}}}:orders")])
        .parse()
        .unwrap()
}

/// Redis's clock (TIME), in milliseconds.
pub fn redis_time_ms(redis: &RedisServer) -> i64 {
    let out = redis.cli(&["TIME"]);
    let secs: i64 = out.lines().next().unwrap().parse().unwrap();
    secs * 1000
}

/// Every order MongoDB holds in database `db` that matches `filter`.
pub async fn stored_orders(mongo_url: &str, db: &str, filter: Document) -> Vec<Document> {
    use futures_util::StreamExt;
    mongodb::Client::with_uri_str(mongo_url)
        .await
        .unwrap()
        .database(db)
        .collection::<Document>("orders")
        .find(filter)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await
}

/// The `_id` of every order MongoDB holds in database `db`.
pub async fn stored_order_ids(mongo_url: &str, db: &str) -> Vec<String> {
    stored_orders(mongo_url, db, doc! {})
        .await
        .iter()
        .map(|d| d.get_str("_id").unwrap().to_owned())
        .collect()
}

/// The units of `orders`, summed.
pub fn units(orders: &[Document]) -> i64 {
    orders.iter().map(|d| d.get_i64("quantity").unwrap()).sum()
}
