//! GET /api/orders reads its own writes: orders still in the write-behind
//! (the sale's Redis stream) are listed as "pending", and "recorded" once
//! MongoDB holds them, each order once.

use std::time::Duration;

use reqwest::Response;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_on, unique_db, xlen};
use crate::support::eventually;
use crate::support::mongo::MongoServer;
use crate::support::redis::RedisServer;

/// `(id, status)` of each order of a listing, in order.
async fn listed(r: Response) -> Vec<(String, String)> {
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v.as_array()
        .expect("an array of orders")
        .iter()
        .map(|o| {
            (
                o["id"].as_str().unwrap().to_owned(),
                o["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn buy(app: &TestApp, token: &str, sale: &str, qty: i64) -> String {
    let r = app.purchase(token, sale, json!(qty)).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

fn with(ids: &[&String], status: &str) -> Vec<(String, String)> {
    ids.iter()
        .map(|id| ((*id).clone(), status.to_owned()))
        .collect()
}

#[tokio::test]
async fn orders_waiting_in_the_write_behind_are_listed_pending_then_recorded_once() {
    // Arrange: one recorded order, then MongoDB stops.
    let redis = RedisServer::start();
    let mut mongo = MongoServer::start();
    let app = spawn_app_on(&redis.url(), &mongo.url(), &unique_db(), |_| {}).await;
    let sale = app.open_sale(100, 10, 5).await;
    let sale = sale["id"].as_str().unwrap();
    let (_, a) = app.customer("a@x.io").await;
    let (_, b) = app.customer("b@x.io").await;
    let first = buy(&app, &a, sale, 2).await;
    assert_eq!(app.flush().await.written, 1);
    mongo.stop();

    // Act: purchases while MongoDB is down. The failed flush leaves the
    // first two delivered but unacknowledged; the last one is undelivered.
    let second = buy(&app, &a, sale, 3).await;
    let others = buy(&app, &b, sale, 1).await;
    assert!(app.state.write_behind.flush_once().await.is_err());
    let third = buy(&app, &a, sale, 1).await;

    // Assert: the buyer sees their waiting orders at once, newest first,
    // and is told the recorded ones could not be read.
    let r = app.orders(&a, "").await;
    assert_eq!(
        r.headers()
            .get("x-orders-recorded")
            .map(|v| v.to_str().unwrap()),
        Some("unavailable")
    );
    assert_eq!(listed(r).await, with(&[&third, &second], "pending"));

    // MongoDB is back, the write-behind has not run: both sources, one page.
    mongo.start_again();
    let back = eventually(Duration::from_secs(30), || async {
        app.orders(&a, "")
            .await
            .headers()
            .get("x-orders-recorded")
            .is_none()
    })
    .await;
    assert!(back, "the listing reads MongoDB again");
    let mut expected = with(&[&third, &second], "pending");
    expected.extend(with(&[&first], "recorded"));
    assert_eq!(listed(app.orders(&a, "").await).await, expected);
    assert_eq!(
        listed(app.orders(&a, "?offset=1&limit=2").await).await,
        expected[1..].to_vec(),
        "pages run over the pending orders into the recorded ones"
    );
    // The admin's listing of the sale, by sequence: recorded, then pending.
    let mut by_sale = with(&[&first], "recorded");
    by_sale.extend(with(&[&second, &others, &third], "pending"));
    let admin_query = format!("?flashSaleId={sale}");
    assert_eq!(
        listed(app.orders(&app.admin_token, &admin_query).await).await,
        by_sale
    );
    assert_eq!(
        listed(
            app.orders(&app.admin_token, &format!("{admin_query}&offset=2"))
                .await
        )
        .await,
        by_sale[2..].to_vec()
    );

    // The write-behind flushes: every order recorded, each listed once,
    // though the stream still holds the last acknowledged entry.
    assert_eq!(app.flush().await.written, 3);
    assert_eq!(xlen(&redis, sale), 1, "the newest written entry stays");
    assert_eq!(
        listed(app.orders(&a, "").await).await,
        with(&[&third, &second, &first], "recorded")
    );
    assert_eq!(
        listed(app.orders(&app.admin_token, &admin_query).await).await,
        with(&[&first, &second, &others, &third], "recorded")
    );
}
