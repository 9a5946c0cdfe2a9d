//! Operations, in a test binary of their own: the metrics test needs the
//! process-wide metrics recorder to itself, and the shutdown test runs the
//! real `flashsale` binary as a child process and sends it SIGTERM.

#![allow(unreachable_pub)]
// a test binary exports nothing
// The shared helpers are written for the api binary; this one uses a part.
#![allow(dead_code)]

#[path = "api/helpers.rs"]
mod helpers;
#[path = "api/storm.rs"]
mod storm;
#[path = "api/support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use helpers::{Api, spawn_app, start_binary};
use storm::{Storm, big_sale};
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

    // promtool accepts the exposition (scripts/setup.sh installs it).
    let exposition = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(exposition.path(), &text).unwrap();
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(exposition.path()).unwrap())
        .output()
        .expect(
            "promtool not found: install the Debian package prometheus (scripts/setup.sh does)",
        );
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every `flashsale_*` name in the PromQL of `deploy/grafana/dashboards/*.json`.
fn dashboard_metric_names() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/dashboards");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut exprs = Vec::new();
        collect_exprs(&json, &mut exprs);
        assert!(!exprs.is_empty(), "{} has no queries", path.display());
        for expr in exprs {
            let mut rest = expr.as_str();
            while let Some(i) = rest.find("flashsale_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                names.push((name, path.display().to_string()));
            }
        }
    }
    names
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn the_grafana_dashboard_queries_only_metrics_the_service_exports() {
    use flashsale::metrics::{HISTOGRAMS, NAMES};
    let names = dashboard_metric_names();
    assert!(names.len() >= 20, "the dashboard queries {names:?}");
    for (name, file) in &names {
        let exported = NAMES.contains(&name.as_str())
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|base| HISTOGRAMS.contains(&base))
            });
        assert!(
            exported,
            "{file} queries {name}, which /metrics does not export (src/metrics.rs NAMES)"
        );
    }
}

#[tokio::test]
async fn sigterm_during_a_purchase_storm_finishes_requests_flushes_orders_and_exits_zero() {
    let redis = RedisServer::start();
    let mongo = support::mongo::shared_url();
    let db = helpers::unique_db();
    let mut binary = start_binary(&redis.url(), &mongo, &db, support::free_port(), |s| {
        s.insert("WRITE_BEHIND_INTERVAL_MS", "50".to_owned());
        s.insert("SHUTDOWN_GRACE_MS", "5000".to_owned());
    })
    .await;

    // Arrange: a sale, a watcher, and buyers.
    let api = Api::connect(binary.base.clone()).await;
    let sale = big_sale(&api).await;
    let mut ws = api.ws(&api.admin_token).await;
    ws.join(&sale).await;

    // Act: 32 buyers hammer the endpoint; SIGTERM lands in the middle.
    let storm = Storm::start(std::slice::from_ref(&binary.base), &sale, 32);
    assert!(storm.reaches(200).await, "the storm got going");
    binary.process.terminate();
    let close = ws.close_code(Duration::from_secs(15)).await;
    let status = binary.process.exit_status(Duration::from_secs(15)).await;
    let result = storm.stop().await;

    // Assert: clean exit, 1001 for the watcher, no broken responses, and every
    // accepted order in MongoDB exactly once.
    assert_eq!(status.and_then(|s| s.code()), Some(0), "exit status");
    assert_eq!(close, Some(1001));
    assert_eq!(
        result.malformed, 0,
        "every answered request got a whole response"
    );
    let accepted: HashSet<String> = result.accepted.iter().cloned().collect();
    let stored = helpers::stored_order_ids(&mongo, &db).await;
    let stored_set: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), stored_set.len(), "no order twice");
    assert_eq!(stored_set, accepted, "every accepted order is in MongoDB");
    eprintln!(
        "SIGTERM after {} answered requests; {} orders accepted and stored",
        result.answered(),
        accepted.len()
    );
}

/// deploy/nginx.conf with local upstreams and paths under `dir` (as
/// scripts/cluster-local.sh derives it), its access log in `dir/access.log`.
fn local_nginx_conf(dir: &std::path::Path, upstream: &str, port: u16) -> String {
    let conf = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx.conf"))
        .expect("deploy/nginx.conf");
    let d = dir.display();
    let mut conf = conf;
    for (from, to) in [
        ("server app1:5050", format!("server {upstream}")),
        ("server app2:5050", format!("server {upstream}")),
        ("listen 5050;", format!("listen 127.0.0.1:{port};")),
        (
            "worker_processes auto;",
            format!("worker_processes 1;\npid {d}/nginx.pid;"),
        ),
        (
            "http {",
            format!(
                "http {{\n    client_body_temp_path {d}/client_body;\n    proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;"
            ),
        ),
        (
            "access_log /dev/stdout upstream_json;",
            format!("access_log {d}/access.log upstream_json;"),
        ),
    ] {
        assert!(
            conf.contains(from),
            "deploy/nginx.conf changed shape: no `{from}`"
        );
        conf = conf.replacen(from, &to, 2);
    }
    conf
}

/// nginx with deploy/nginx.conf in front of one app, as one process under a
/// guard; `base` is its address, `dir` holds its config and logs.
struct LocalNginx {
    base: String,
    dir: tempfile::TempDir,
    _process: support::ChildGuard,
}

impl LocalNginx {
    async fn start(app: &helpers::TestApp) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = support::free_port();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(
            &conf,
            local_nginx_conf(dir.path(), app.base.trim_start_matches("http://"), port),
        )
        .unwrap();
        let args = |extra: &[&str]| {
            let mut c = Command::new("nginx");
            c.arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .args(extra);
            c
        };
        let check = args(&["-t", "-q"])
            .output()
            .expect("nginx (Debian package nginx; scripts/setup.sh installs it)");
        assert!(
            check.status.success(),
            "nginx -t refuses the config: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        // One process (no workers to leave behind when the guard kills it).
        let process = support::ChildGuard::spawn(
            args(&["-g", "daemon off; master_process off;"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        )
        .expect("nginx starts");
        assert!(
            support::eventually(Duration::from_secs(10), || async {
                support::port_open(port)
            })
            .await,
            "nginx listens on {port}"
        );
        Self {
            base: format!("http://127.0.0.1:{port}"),
            dir,
            _process: process,
        }
    }
}

#[tokio::test]
async fn the_load_balancer_logs_paths_without_query_strings() {
    let app = spawn_app().await;
    let nginx = LocalNginx::start(&app).await;
    let lb = &nginx.base;
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{lb}/api/products?offset=0&secret=QUERY-SECRET-1"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "the request went through to the app");
    let r = client
        .get(format!("{lb}/ws?ticket=QUERY-SECRET-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 426, "the request went through to the app");

    let log = nginx.dir.path().join("access.log");
    let logged = support::eventually(Duration::from_secs(10), || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().count() >= 2
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(logged, "both requests are logged:\n{text}");
    assert!(
        !text.contains("QUERY-SECRET"),
        "a query string reached the access log:\n{text}"
    );
    assert!(
        text.contains("\"path\":\"/api/products\"") && text.contains("\"path\":\"/ws\""),
        "each request is logged by its path:\n{text}"
    );
}

/// `n` POSTs of `body(i)` to `url` from `ip`, one after another: each
/// status, with the refusals' error code, limit name and Retry-After.
async fn posts_from(
    ip: &str,
    url: &str,
    n: usize,
    body: impl Fn(usize) -> serde_json::Value,
) -> Vec<(u16, String, String, Option<String>)> {
    let client = helpers::client_from(ip);
    let mut seen = Vec::new();
    for i in 0..n {
        let r = client.post(url).json(&body(i)).send().await.unwrap();
        let status = r.status().as_u16();
        let retry_after = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        seen.push((
            status,
            v["error"]["code"].as_str().unwrap_or("").to_owned(),
            v["error"]["details"]["limit"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
            retry_after,
        ));
    }
    seen
}

#[tokio::test]
async fn the_load_balancer_refuses_sign_ins_and_sign_ups_past_an_address_rate_itself() {
    // The app's own sign-in and sign-up limits are off here (every test
    // client shares 127.0.0.1), so every 429 below is nginx's.
    let app = spawn_app().await;
    let nginx = LocalNginx::start(&app).await;
    let signin = format!("{}/api/signin", nginx.base);
    let flooder = "127.0.7.1";
    let started = std::time::Instant::now();
    let seen = posts_from(
        flooder,
        &signin,
        45,
        |i| json!({ "email": format!("edge-{i}@flood.example"), "password": "not-the-password" }),
    )
    .await;
    // The burst of 30 and the first go through (401 from the app); the
    // bucket gains one more every 2 s.
    let through = seen.iter().filter(|s| s.0 == 401).count();
    let leaked = usize::try_from(started.elapsed().as_secs() / 2).unwrap() + 1;
    assert!(
        (31..=31 + leaked).contains(&through),
        "{through} sign-ins reached the app: {seen:?}"
    );
    assert!(seen[..31].iter().all(|s| s.0 == 401), "{seen:?}");
    // The rest: nginx's 429 in the services' error shape, with Retry-After.
    for s in seen.iter().filter(|s| s.0 != 401) {
        assert_eq!(
            (s.0, s.1.as_str(), s.2.as_str(), s.3.as_deref()),
            (429, "RATE_LIMITED", "edge-signin-ip", Some("2")),
            "{seen:?}"
        );
    }
    // Another address is not held up by it.
    let other = posts_from(
        "127.0.7.2",
        &signin,
        1,
        |_| json!({ "email": "someone@example.com", "password": "not-the-password" }),
    )
    .await;
    assert_eq!(other[0].0, 401, "{other:?}");
    // Sign-ups: a burst of 10 and the first, then nginx's 429.
    let signup = format!("{}/api/signup", nginx.base);
    let seen = posts_from("127.0.7.3", &signup, 14, |i| {
        json!({
            "name": "Edge",
            "email": format!("edge-signup-{i}@example.com"),
            "password": "a-long-enough-password",
        })
    })
    .await;
    assert!(seen[..11].iter().all(|s| s.0 == 201), "{seen:?}");
    assert!(
        seen.iter().any(|s| s.0 == 429),
        "no sign-up was refused: {seen:?}"
    );
    for s in seen.iter().filter(|s| s.0 != 201) {
        assert_eq!(
            (s.0, s.1.as_str(), s.2.as_str(), s.3.as_deref()),
            (429, "RATE_LIMITED", "edge-signup-ip", Some("6")),
            "{seen:?}"
        );
    }
}
