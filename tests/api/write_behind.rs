use std::collections::HashSet;
use std::time::Duration;

use mongodb::bson::doc;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, spawn_app, spawn_app_on, spawn_app_with, stored_order_ids, unique_db, units, xlen,
};
use crate::support::eventually;
use crate::support::mongo::MongoServer;
use crate::support::redis::RedisServer;

/// The lines of `XRANGE <stream>:dead - +`: ids, field names and values.
fn dead_letters(app: &TestApp, stream: &str) -> Vec<String> {
    let out = app
        .redis()
        .cli(&["XRANGE", &format!("{stream}:dead"), "-", "+"]);
    out.lines().map(str::to_owned).collect()
}

/// The value after the first field named `name` in `dead_letters`' lines.
fn field_of<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    let i = lines.iter().position(|l| l == name)?;
    lines.get(i + 1).map(String::as_str)
}

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
    assert_eq!(
        read.lines().filter(|l| l.trim() == "o").count(),
        3,
        "the dead consumer read the three entries: {read}"
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
    let dead = dead_letters(&app, &stream);
    let field = |name: &str| field_of(&dead, name);
    assert_eq!(
        field("entry"),
        Some(bad_order.as_str()),
        "the order entry's id is dead-lettered: {dead:?}"
    );
    assert_eq!(field("reason"), Some("malformed"));
    assert_eq!(field("seq"), Some("x"), "with its payload: {dead:?}");
    for key in [stream.as_str(), "flashsale:fraud"] {
        let pending = app.redis().cli(&["XPENDING", key, "write-behind"]);
        assert!(
            pending.starts_with('0'),
            "{key}: nothing pending: {pending}"
        );
    }
}

#[tokio::test]
async fn an_order_mongodb_keeps_refusing_is_dead_lettered_after_max_deliveries_and_the_rest_flow() {
    let app = spawn_app_with(|s| {
        s.insert("WRITE_BEHIND_MAX_DELIVERIES", "3".to_owned());
    })
    .await;
    let sale = app.open_sale(100, 10, 5).await;
    let id = sale["id"].as_str().unwrap();
    let stream = format!("{{sale:{id}}}:orders");
    let (buyer_id, buyer) = app.customer("a@x.io").await;
    // MongoDB refuses one order, and only that one: a validator on `orders`
    // (a real rejection, code 121, not a duplicate key).
    app.mongo()
        .await
        .run_command(doc! { "collMod": "orders", "validator": { "seq": { "$ne": 2 } } })
        .await
        .expect("collMod with a validator");
    for q in [1, 2, 3] {
        assert_eq!(app.purchase(&buyer, id, json!(q)).await.status(), 201);
    }

    // Passes 1 and 2: the others are written, the refused one stays pending.
    let wb = &app.state.write_behind;
    let first = wb
        .flush_once()
        .await
        .expect("a refused order fails no pass");
    assert_eq!(
        (
            first.read,
            first.written,
            first.rejected,
            first.acked,
            first.dead_lettered
        ),
        (3, 2, 1, 2, 0)
    );
    let pending = app.redis().cli(&["XPENDING", &stream, "write-behind"]);
    let poison = pending.lines().nth(1).unwrap_or_default().to_owned();
    assert!(
        pending.starts_with('1'),
        "only the refused order waits: {pending}"
    );
    // Orders accepted meanwhile still reach MongoDB.
    assert_eq!(app.purchase(&buyer, id, json!(4)).await.status(), 201);
    let second = wb.flush_once().await.unwrap();
    assert_eq!(
        (
            second.read,
            second.written,
            second.rejected,
            second.dead_lettered
        ),
        (2, 1, 1, 0)
    );

    // Pass 3, its third delivery: moved to the dead-letter stream, acknowledged.
    let third = wb.flush_once().await.unwrap();
    assert_eq!(
        (third.read, third.rejected, third.dead_lettered, third.acked),
        (1, 1, 1, 1)
    );
    let dead = dead_letters(&app, &stream);
    let field = |name: &str| field_of(&dead, name);
    assert_eq!(field("entry"), Some(poison.as_str()), "{dead:?}");
    assert!(
        field("reason").is_some_and(|r| r.contains("121")),
        "{dead:?}"
    );
    assert_eq!(field("deliveries"), Some("3"));
    // The full payload, as the purchase script wrote it.
    let order = field("o").unwrap_or_default();
    assert!(
        order.starts_with(&format!("2:{buyer_id}:2:")),
        "seq 2, the buyer, quantity 2: {dead:?}"
    );

    // Nothing is pending any more, the stream is trimmed, the rest is in MongoDB.
    let pending = app.redis().cli(&["XPENDING", &stream, "write-behind"]);
    assert!(pending.starts_with('0'), "{pending}");
    let after = wb.flush_once().await.unwrap();
    assert_eq!((after.read, after.rejected), (0, 0));
    assert!(xlen(app.redis(), id) <= 1, "the stream is trimmed");
    let mut ids = order_ids(&app).await;
    ids.sort();
    assert_eq!(
        ids,
        vec![format!("{id}-1"), format!("{id}-3"), format!("{id}-4")]
    );

    // Reconcile says so instead of looking consistent.
    let r: Value = app
        .get(
            &format!("/api/admin/reconcile?flashSaleId={id}"),
            Some(&app.admin_token),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r[0]["deadLettered"], 1, "{r}");
    assert_eq!(r[0]["difference"], 2, "{r}");
    assert_eq!(r[0]["pendingWriteBehind"], 0, "{r}");
    assert_eq!(r[0]["consistent"], false, "{r}");
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains(
            "flashsale_write_behind_dead_lettered_total{kind=\"order\",reason=\"rejected\"}"
        ),
        "the dead letter is counted"
    );
}

#[tokio::test]
async fn an_ended_drained_sale_leaves_the_registry_and_one_with_pending_orders_stays() {
    let app = spawn_app().await;
    let (_, buyer) = app.customer("a@x.io").await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let sale = app.open_sale(100, 10, 5).await;
        ids.push(sale["id"].as_str().unwrap().to_owned());
    }
    let (drained, pending, open) = (&ids[0], &ids[1], &ids[2]);
    for sale in [drained, pending] {
        assert_eq!(app.purchase(&buyer, sale, json!(1)).await.status(), 201);
    }
    // A consumer reads the second sale's order and dies before writing it.
    let read = app.redis().cli(&[
        "XREADGROUP",
        "GROUP",
        "write-behind",
        "dead-instance",
        "COUNT",
        "10",
        "STREAMS",
        &format!("{{sale:{pending}}}:orders"),
        ">",
    ]);
    assert!(read.lines().any(|l| l.trim() == "o"), "{read}");
    for sale in [drained, pending] {
        let r = app
            .post(
                &format!("/api/flash-sales/{sale}/cancel"),
                Some(&app.admin_token),
                &json!({}),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let registered = |sale: &str| app.redis().cli(&["SISMEMBER", "flashsale:sales", sale]) == "1";
    assert!(ids.iter().all(|s| registered(s)), "all three are scanned");

    let retired = std::sync::atomic::AtomicUsize::new(0);
    let gone = eventually(Duration::from_secs(10), || async {
        let r = app.state.write_behind.flush_once().await.unwrap();
        retired.fetch_add(r.retired, std::sync::atomic::Ordering::Relaxed);
        !registered(drained)
    })
    .await;

    assert!(gone, "the ended, drained sale is no longer scanned");
    assert_eq!(retired.into_inner(), 1);
    assert_eq!(order_ids(&app).await, vec![format!("{drained}-1")]);
    assert!(
        registered(pending),
        "an ended sale with a pending order is kept"
    );
    assert!(registered(open), "an open sale is kept");
}

/// Redis's count of calls of one command since the last CONFIG RESETSTAT.
fn calls(app: &TestApp, command: &str) -> u64 {
    let stats = app.redis().cli(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn an_idle_stream_costs_one_read_per_pass_once_its_own_entries_are_written() {
    let app = spawn_app().await;
    let sale = app.open_sale(100, 10, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (_, a) = app.customer("idle@x.io").await;
    assert_eq!(app.purchase(&a, id, json!(1)).await.status(), 201);
    // The first pass reads its own pending entries, looks for idle ones to
    // claim and reads the new order.
    let first = app.state.write_behind.flush_once().await.unwrap();
    assert_eq!(first.written, 1);
    app.redis().cli(&["CONFIG", "RESETSTAT"]);
    let passes = 5;
    for _ in 0..passes {
        let r = app.state.write_behind.flush_once().await.unwrap();
        assert_eq!(r.read, 0);
    }
    // Every stream drained (the sale's orders, the fraud events) is read
    // once per pass for new entries, and nothing more: no re-read of own
    // pending entries, no claim (the claim look-up waits a quarter of
    // WRITE_BEHIND_CLAIM_IDLE_MS, 30 s here).
    let reads = calls(&app, "xreadgroup");
    assert!(reads >= passes, "{reads} reads in {passes} passes");
    assert_eq!(reads % passes, 0, "{reads} reads in {passes} passes");
    let streams = reads / passes;
    assert!(streams <= 2, "{streams} streams read per pass");
    assert_eq!(calls(&app, "xautoclaim"), 0);
    // A new order is still read at once.
    assert_eq!(app.purchase(&a, id, json!(1)).await.status(), 201);
    let r = app.state.write_behind.flush_once().await.unwrap();
    assert_eq!((r.read, r.written), (1, 1));
}
