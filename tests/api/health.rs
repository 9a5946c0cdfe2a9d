use std::time::Duration;

use serde_json::Value;

use crate::helpers::{assert_error, eventually, spawn_app};

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
