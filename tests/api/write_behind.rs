use std::collections::HashSet;

use mongodb::bson::doc;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_on, stored_order_ids, unique_db, units, xlen};
use crate::support::mongo::MongoServer;
use crate::support::redis::RedisServer;

async fn order_ids(app: &TestApp) -> Vec<String> {
    stored_order_ids(&app.mongo_url, &app.db_name).await
}

#[tokio::test]
async fn orders_accepted_while_mongodb_is_down_are_written_exactly_once_after_it_returns() {
    let redis = RedisServer::start();
    let mut mongo = MongoServer::start();
    let app = spawn_app_on(&redis.url(), &mongo.url(), &unique_db(), |_| {}).await;
    let sale = app.open_sale(100, 10, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (_, a) = app.customer("a@x.io").await;
    let (_, b) = app.customer("b@x.io").await;
    assert_eq!(app.purchase(&a, id, json!(2)).await.status(), 201);

    // Act: MongoDB goes away; purchases keep being accepted.
    mongo.stop();
    let mut accepted = HashSet::new();
    accepted.insert(format!("{id}-1"));
    for (token, q) in [(&a, 3), (&b, 5), (&b, 1), (&a, 4)] {
        let r = app.purchase(token, id, json!(q)).await;
        assert_eq!(r.status(), 201, "purchase with MongoDB down");
        let v: Value = r.json().await.unwrap();
        accepted.insert(v["id"].as_str().unwrap().to_owned());
    }
    // The write-behind fails and keeps the orders in Redis.
    assert!(app.state.write_behind.flush_once().await.is_err());
    assert!(
        app.state.write_behind.flush_once().await.is_err(),
        "retries fail the same way"
    );
    let pending = redis.cli(&["XPENDING", &format!("{{sale:{id}}}:orders"), "write-behind"]);
    assert!(
        pending.starts_with('5'),
        "five orders wait in Redis: {pending}"
    );

    mongo.start_again();
    let report = app.flush().await;
    assert_eq!(report.written, 5);
    let ids = order_ids(&app).await;
    assert_eq!(ids.len(), 5, "each order exactly once");
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), accepted);
    // A further flush writes nothing new and the stream is trimmed.
    let again = app.state.write_behind.flush_once().await.unwrap();
    assert_eq!((again.read, again.written), (0, 0));
    let len = xlen(&redis, id);
    assert!(len <= 1, "acknowledged entries are trimmed, {len} left");
}

#[tokio::test]
async fn orders_read_by_an_instance_that_died_are_written_by_another() {
    let app = spawn_app().await;
    let sale = app.open_sale(100, 10, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (_, a) = app.customer("a@x.io").await;
    for q in [1, 2, 3] {
        assert_eq!(app.purchase(&a, id, json!(q)).await.status(), 201);
    }
    // A consumer reads the entries and dies before writing or acknowledging.
    let stream = format!("{{sale:{id}}}:orders");
    let read = app.redis().cli(&[
        "XREADGROUP",
        "GROUP",
        "write-behind",
        "dead-instance",
        "COUNT",
        "10",
        "STREAMS",
        &stream,
        ">",
    ]);
    assert!(
        read.contains("seq"),
        "the dead consumer read the entries: {read}"
    );
    // This instance's normal pass does not steal them while they are fresh...
    let r = app.state.write_behind.flush_once().await.unwrap();
    assert_eq!(r.read, 0);
    assert!(order_ids(&app).await.is_empty());

    // ...but another instance configured to claim idle entries at once does.
    let other = spawn_app_on(&app.redis_url, &app.mongo_url, &app.db_name, |s| {
        s.insert("WRITE_BEHIND_CLAIM_IDLE_MS", "0".to_owned());
    })
    .await;
    let r = other.flush().await;
    assert_eq!((r.claimed, r.written), (3, 3));
    let mut ids = order_ids(&app).await;
    ids.sort();
    assert_eq!(
        ids,
        vec![format!("{id}-1"), format!("{id}-2"), format!("{id}-3")]
    );
    assert_eq!(units(&app.stored_orders(doc! {}).await), 6);
    let pending = app.redis().cli(&["XPENDING", &stream, "write-behind"]);
    assert!(pending.starts_with('0'), "nothing left pending: {pending}");
}

#[tokio::test]
async fn shutdown_drains_the_write_behind() {
    let mut app = spawn_app().await;
    let sale = app.open_sale(100, 10, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (_, a) = app.customer("a@x.io").await;
    for q in [1, 2] {
        assert_eq!(app.purchase(&a, id, json!(q)).await.status(), 201);
    }
    assert!(order_ids(&app).await.is_empty(), "nothing flushed yet");
    app.shutdown().await;
    assert_eq!(order_ids(&app).await.len(), 2);
}

#[tokio::test]
async fn malformed_order_entries_are_dead_lettered_and_malformed_fraud_events_dropped() {
    let app = spawn_app().await;
    let sale = app.open_sale(100, 10, 5).await;
    let id = sale["id"].as_str().unwrap();
    let stream = format!("{{sale:{id}}}:orders");
    let bad_order = app.redis().cli(&["XADD", &stream, "*", "seq", "x"]);
    app.redis()
        .cli(&["XADD", "flashsale:fraud", "*", "event", "not json"]);

    let r = app.flush().await;

    assert_eq!(
        (r.read, r.written, r.acked, r.dead_lettered, r.dropped),
        (2, 0, 2, 1, 1)
    );
    let dead = app
        .redis()
        .cli(&["XRANGE", &format!("{stream}:dead"), "-", "+"]);
    assert!(
        dead.contains(&bad_order),
        "the order entry's id is dead-lettered: {dead}"
    );
    for key in [stream.as_str(), "flashsale:fraud"] {
        let pending = app.redis().cli(&["XPENDING", key, "write-behind"]);
        assert!(
            pending.starts_with('0'),
            "{key}: nothing pending: {pending}"
        );
    }
}
