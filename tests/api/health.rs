use std::time::Duration;

use serde_json::Value;

use crate::helpers::{assert_error, spawn_app};
use crate::support::eventually;

#[tokio::test]
async fn healthz_and_readyz_answer_200_when_stores_are_up() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz", None).await.status(), 200);
    let r = app.get("/readyz", None).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["redis"], "up");
    assert_eq!(v["mongodb"], "up");
}

#[tokio::test]
async fn readyz_answers_503_when_redis_is_down() {
    let mut app = spawn_app().await;
    app.redis.as_mut().unwrap().kill();
    let ok = eventually(Duration::from_secs(10), || async {
        app.get("/readyz", None).await.status() == 503
    })
    .await;
    assert!(ok, "readyz never reported Redis down");
    let v: Value = app.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(v["redis"], "down");
    assert_eq!(v["status"], "degraded");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_the_error_body() {
    let app = spawn_app().await;
    assert_error(app.get("/api/nope", None).await, 404, "ROUTE_NOT_FOUND").await;
    let r = app
        .client
        .delete(app.url("/api/signup"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "POST");
    assert_error(r, 405, "METHOD_NOT_ALLOWED").await;
}

#[tokio::test]
async fn the_service_refuses_to_start_on_an_evicting_redis() {
    let redis =
        crate::support::redis::RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]);
    let settings = crate::helpers::base_settings(
        &redis.url(),
        &crate::support::mongo::shared_url(),
        &crate::helpers::unique_db(),
    );
    let config = flashsale::Config::from_source(&settings).unwrap();
    let err = flashsale::App::build(config)
        .await
        .expect_err("must refuse");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("maxmemory-policy") && msg.contains("noeviction"),
        "{msg}"
    );
}

#[tokio::test]
async fn past_the_in_flight_limit_requests_get_503_with_retry_after_at_once() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.insert("MAX_IN_FLIGHT", "1".to_owned());
        s.insert("PASSWORD_ITERATIONS", "300000".to_owned());
    })
    .await;
    // A slow sign-in (300k PBKDF2 iterations) holds the only permit...
    let slow = app.signin(crate::helpers::ADMIN_EMAIL, "wrong-password-xyz");
    let probe = async {
        let held = eventually(Duration::from_secs(10), || async {
            app.state.admission.available_permits() == 0
        })
        .await;
        assert!(held, "the slow request holds the permit");
        // ...so the next request is refused at once, and probes still answer.
        let r = app.get("/api/products", Some(&app.admin_token)).await;
        assert_eq!(r.headers()["retry-after"], "1");
        assert_error(r, 503, "UNAVAILABLE").await;
        assert_eq!(app.get("/healthz", None).await.status(), 200);
    };
    let (slow, ()) = tokio::join!(slow, probe);
    assert_eq!(slow.status(), 401);
}
