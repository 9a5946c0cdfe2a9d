use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use flashsale::engine::{PurchaseOutcome, PurchaseRequest, Refusal};
use flashsale::ids::{SaleId, UserId};
use futures_util::StreamExt;
use mongodb::bson::doc;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::helpers::{TestApp, assert_error, redis_time_ms, spawn_app, units, xlen};

fn sid(v: &Value) -> SaleId {
    SaleId::parse(v["id"].as_str().unwrap()).unwrap()
}

fn evalsha_calls(app: &TestApp) -> u64 {
    let info = app.redis().cli(&["INFO", "commandstats"]);
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn signup_many(app: &TestApp, n: usize) -> Vec<(String, String)> {
    futures_util::stream::iter(0..n)
        .map(|i| async move { app.customer(&format!("buyer{i}@x.io")).await })
        .buffered(16)
        .collect()
        .await
}

#[tokio::test]
async fn concurrent_buyers_sell_exactly_the_stock_and_nothing_is_lost() {
    // Arrange: 300 buyers, 1,500 attempts of 1-3 units at a 200-unit sale.
    let app = Arc::new(spawn_app().await);
    let sale = app.open_sale(200, 3, 3).await;
    let sale_id = sale["id"].as_str().unwrap().to_owned();
    let buyers = Arc::new(signup_many(&app, 300).await);
    let attempts: Vec<(usize, i64)> = (0..1500)
        .map(|i| ((i * 7919) % 300, (i % 3) as i64 + 1))
        .collect();
    let queue = Arc::new(Mutex::new(attempts.into_iter()));
    let results = Arc::new(Mutex::new(Vec::new()));

    // Act: 64 concurrent connections.
    let mut workers = Vec::new();
    for _ in 0..64 {
        let (app, queue, results, buyers, sale_id) = (
            app.clone(),
            queue.clone(),
            results.clone(),
            buyers.clone(),
            sale_id.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let Some((u, q)) = queue.lock().await.next() else {
                    break;
                };
                let r = app.purchase(&buyers[u].1, &sale_id, json!(q)).await;
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap();
                results.lock().await.push((u, q, status, body));
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }

    // Assert: exactly the stock sold, nobody above 3, every refusal a known 4xx.
    let results = results.lock().await;
    assert_eq!(results.len(), 1500);
    let known = [
        "SOLD_OUT",
        "INSUFFICIENT_STOCK",
        "USER_PURCHASE_LIMIT_REACHED",
        "TRANSACTION_LIMIT_EXCEEDED",
    ];
    let mut per_user: HashMap<String, i64> = HashMap::new();
    let mut first_seq: HashMap<String, i64> = HashMap::new();
    let mut order_ids = HashSet::new();
    let mut sold = 0;
    for (u, q, status, body) in results.iter() {
        match status {
            201 => {
                assert_eq!(body["quantity"], *q);
                let user = buyers[*u].0.clone();
                assert_eq!(body["userId"], user.as_str());
                sold += q;
                *per_user.entry(user.clone()).or_default() += q;
                let id = body["id"].as_str().unwrap().to_owned();
                let seq: i64 = id.rsplit('-').next().unwrap().parse().unwrap();
                let e = first_seq.entry(user).or_insert(seq);
                *e = (*e).min(seq);
                assert!(order_ids.insert(id), "order id given twice");
            }
            400..=499 => {
                let code = body["error"]["code"].as_str().unwrap();
                assert!(known.contains(&code), "unexpected refusal {status} {body}");
            }
            _ => panic!("unexpected status {status}: {body}"),
        }
    }
    assert_eq!(sold, 200, "exactly the stock is sold");
    assert!(per_user.values().all(|&n| n <= 3), "a buyer exceeded 3");
    assert_eq!(app.get_sale(&sale_id).await["availableUnits"], 0);

    // Every accepted order reaches MongoDB exactly once.
    app.flush().await;
    let docs = app
        .stored_orders(doc! { "flashSaleId": sid(&sale).oid() })
        .await;
    let mongo_ids: HashSet<String> = docs
        .iter()
        .map(|d| d.get_str("_id").unwrap().to_owned())
        .collect();
    assert_eq!(docs.len(), order_ids.len());
    assert_eq!(mongo_ids, order_ids);
    assert_eq!(units(&docs), 200);

    // The leaderboard lists exactly the buyers, in first-purchase order.
    let lb: Value = app
        .leaderboard(&sale_id, 0, 1000)
        .await
        .json()
        .await
        .unwrap();
    let lb = lb.as_array().unwrap();
    assert_eq!(lb.len(), per_user.len());
    let mut expected: Vec<(&String, &i64)> = first_seq.iter().collect();
    expected.sort_by_key(|(_, s)| **s);
    for (i, (entry, (user, _))) in lb.iter().zip(expected).enumerate() {
        assert_eq!(entry["rank"], i as u64 + 1);
        assert_eq!(entry["userId"], user.as_str());
        assert_eq!(entry["totalPurchases"], per_user[user]);
        assert_eq!(entry["name"], "Buyer");
        assert!(entry["email"].as_str().unwrap().ends_with("@x.io"));
        assert!(entry["firstPurchaseAt"].is_string());
    }
    // Pages are slices of the same ranking.
    let page: Value = app.leaderboard(&sale_id, 5, 3).await.json().await.unwrap();
    assert_eq!(page.as_array().unwrap().len(), 3);
    assert_eq!(page[0], lb[5]);

    // Reconcile finds no difference.
    let rec: Value = app
        .get(
            &format!("/api/admin/reconcile?flashSaleId={sale_id}"),
            Some(&app.admin_token),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rec[0]["redisSold"], 200);
    assert_eq!(rec[0]["mongoSold"], 200);
    assert_eq!(rec[0]["difference"], 0);
    assert_eq!(rec[0]["pendingWriteBehind"], 0);
    assert_eq!(rec[0]["consistent"], true);
}

fn req(sale: SaleId, user: UserId, quantity: u32, key: Option<&str>) -> PurchaseRequest<'_> {
    PurchaseRequest {
        sale,
        user,
        quantity,
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        idempotency_key: key,
    }
}

#[tokio::test]
async fn the_purchase_script_reply_has_every_documented_position() {
    let app = spawn_app().await;
    let e = &app.state.engine;
    let sale = app.open_sale(5, 3, 2).await; // price 100 at 20% off = 8000 cents
    let s = sid(&sale);
    let (alice, bob) = (UserId::new(), UserId::new());

    let redis_now = redis_time_ms(app.redis());
    let PurchaseOutcome::Accepted { order, user_total } =
        e.purchase(&req(s, alice, 2, None)).await.unwrap()
    else {
        panic!("expected accepted")
    };
    assert_eq!(
        (
            order.seq,
            order.remaining,
            order.unit_price_cents,
            order.quantity,
            user_total
        ),
        (1, 3, 8000, 2, 2)
    );
    assert!(
        (order.purchased_at_ms - redis_now).abs() < 5_000,
        "time comes from Redis"
    );

    assert_eq!(
        e.purchase(&req(s, alice, 3, None)).await.unwrap(),
        PurchaseOutcome::Refused(Refusal::TransactionLimit {
            max_per_transaction: 2
        })
    );
    assert_eq!(
        e.purchase(&req(s, alice, 2, None)).await.unwrap(),
        PurchaseOutcome::Refused(Refusal::UserLimit {
            remaining: 1,
            max_per_user: 3
        })
    );
    assert!(matches!(
        e.purchase(&req(s, bob, 2, None)).await.unwrap(),
        PurchaseOutcome::Accepted { .. }
    ));
    let carol = UserId::new();
    assert_eq!(
        e.purchase(&req(s, carol, 2, None)).await.unwrap(),
        PurchaseOutcome::Refused(Refusal::InsufficientStock { available: 1 })
    );
    let PurchaseOutcome::Accepted {
        order: last,
        user_total,
    } = e.purchase(&req(s, carol, 1, None)).await.unwrap()
    else {
        panic!("expected accepted")
    };
    assert_eq!((last.seq, last.remaining, user_total), (3, 0, 1));
    assert_eq!(
        e.purchase(&req(s, UserId::new(), 1, None)).await.unwrap(),
        PurchaseOutcome::Refused(Refusal::SoldOut)
    );
    assert_eq!(
        e.purchase(&req(SaleId::new(), alice, 1, None))
            .await
            .unwrap(),
        PurchaseOutcome::Refused(Refusal::NotFound)
    );
    // Refusals wrote nothing: three orders in the stream, stock 0.
    assert_eq!(xlen(app.redis(), &s.hex()), 3);
    assert_eq!(app.state.hot.available(s).await.unwrap(), Some(0));

    // Cancelled: ENDED with the cancelled flag.
    let other = app.open_sale(5, 3, 2).await;
    let o = sid(&other);
    app.state.hot.cancel(o).await.unwrap();
    assert!(matches!(
        e.purchase(&req(o, alice, 1, Some("k"))).await.unwrap(),
        PurchaseOutcome::Refused(Refusal::Ended {
            cancelled: true,
            ..
        })
    ));
}

#[tokio::test]
async fn the_sale_window_is_decided_by_redis_time() {
    let app = spawn_app().await;
    let product = app.create_product(10.0).await;
    let sale = app.sale_for(&product, 3600, 7200, 10, 2, 2).await;
    let id = sale["id"].as_str().unwrap();
    let (_, token) = app.customer("b@x.io").await;
    let e = assert_error(
        app.purchase(&token, id, json!(1)).await,
        409,
        "FLASH_SALE_NOT_STARTED",
    )
    .await;
    assert_eq!(e["error"]["details"]["startTime"], sale["startTime"]);

    // Move the window in Redis only: MongoDB still says the sale starts in an
    // hour, but Redis's clock and hot state decide.
    let redis_ms = redis_time_ms(app.redis());
    let meta = format!("{{sale:{id}}}:meta");
    app.redis()
        .cli(&["HSET", &meta, "start", &(redis_ms - 10_000).to_string()]);
    assert_eq!(app.purchase(&token, id, json!(1)).await.status(), 201);
    app.redis()
        .cli(&["HSET", &meta, "end", &(redis_ms - 5_000).to_string()]);
    let e = assert_error(
        app.purchase(&token, id, json!(1)).await,
        409,
        "FLASH_SALE_ENDED",
    )
    .await;
    assert_eq!(e["error"]["details"]["reason"], "time-ended");
}

#[tokio::test]
async fn an_idempotent_replay_returns_the_first_order_and_sells_nothing_more() {
    let app = spawn_app().await;
    let sale = app.open_sale(10, 5, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (_, token) = app.customer("b@x.io").await;
    let first = app.purchase_keyed(&token, id, 2, "order-abc-1").await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = app.purchase_keyed(&token, id, 2, "order-abc-1").await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(first, again);
    assert_eq!(app.get_sale(id).await["availableUnits"], 8);
    assert_eq!(xlen(app.redis(), id), 1);
    // Same key, other quantity: 422 and nothing sold.
    assert_error(
        app.purchase_keyed(&token, id, 1, "order-abc-1").await,
        422,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
    // Keys are per user: another buyer's identical key is a new purchase.
    let (_, other) = app.customer("o@x.io").await;
    let r: Value = app
        .purchase_keyed(&other, id, 2, "order-abc-1")
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(r["id"], first["id"]);
    assert_eq!(app.get_sale(id).await["availableUnits"], 6);
    // A malformed key is refused.
    assert_error(
        app.purchase_keyed(&token, id, 1, &"k".repeat(200)).await,
        400,
        "VALIDATION_FAILED",
    )
    .await;
}

#[tokio::test]
async fn a_keyed_retry_gets_its_first_order_after_the_attempts_window_is_spent() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.insert("PURCHASE_ATTEMPTS_PER_WINDOW", "2".to_owned());
        s.insert("PURCHASE_ATTEMPTS_WINDOW_MS", "600000".to_owned());
    })
    .await;
    let sale = app.open_sale(10, 5, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (_, token) = app.customer("b@x.io").await;
    let first = app.purchase_keyed(&token, id, 1, "retry-me").await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(app.purchase(&token, id, json!(1)).await.status(), 201);
    let e = assert_error(
        app.purchase(&token, id, json!(1)).await,
        429,
        "RATE_LIMITED",
    )
    .await;
    assert_eq!(e["error"]["details"]["limit"], "attempts-per-sale");

    // The window is spent, yet the retry of the first order gets it back.
    let again = app.purchase_keyed(&token, id, 1, "retry-me").await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
    // A new key is a new attempt, and still refused.
    assert_error(
        app.purchase_keyed(&token, id, 1, "a-new-one").await,
        429,
        "RATE_LIMITED",
    )
    .await;
    assert_eq!(app.get_sale(id).await["availableUnits"], 8);
    assert_eq!(xlen(app.redis(), id), 2);
}

#[tokio::test]
async fn the_same_key_on_another_sale_is_refused_and_sells_nothing_there() {
    let app = spawn_app().await;
    let a = app.open_sale(10, 5, 5).await;
    let b = app.open_sale(10, 5, 5).await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let (_, token) = app.customer("b@x.io").await;
    let first = app.purchase_keyed(&token, a, 1, "one-order").await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();

    let e = assert_error(
        app.purchase_keyed(&token, b, 1, "one-order").await,
        422,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
    assert_eq!(e["error"]["details"]["flashSaleId"], a);
    assert_eq!(app.get_sale(b).await["availableUnits"], 10);
    assert_eq!(xlen(app.redis(), b), 0);
    // The key still names its first order on its own sale.
    let again = app.purchase_keyed(&token, a, 1, "one-order").await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(app.get_sale(a).await["availableUnits"], 9);
    // Keys are per user: another buyer may use the same key on sale b.
    let (_, other) = app.customer("o@x.io").await;
    assert_eq!(
        app.purchase_keyed(&other, b, 1, "one-order").await.status(),
        201
    );
}

#[tokio::test]
async fn a_key_bound_to_its_sale_before_the_script_ran_still_buys_on_a_retry() {
    // The per-user record is written before the purchase script; if the
    // script then failed (Redis gone, a timeout), the retry must still buy.
    let app = spawn_app().await;
    let sale = app.open_sale(10, 5, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (uid, token) = app.customer("b@x.io").await;
    let record = format!("{{user:{uid}}}:idem:half-done");
    assert_eq!(app.redis().cli(&["SET", &record, id, "EX", "600"]), "OK");
    let r = app.purchase_keyed(&token, id, 2, "half-done").await;
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.get_sale(id).await["availableUnits"], 8);
    let ttl: i64 = app.redis().cli(&["TTL", &record]).parse().unwrap();
    assert!(ttl > 0, "the record keeps an expiry: {ttl}");
}

#[tokio::test]
async fn a_keyed_retry_refused_by_the_per_user_rate_limit_gets_its_order_once_allowed() {
    // Documented: the in-process limits answer before Redis, keyed or not;
    // the refusal sells nothing and the retry after Retry-After replays.
    let app = crate::helpers::spawn_app_with(|s| {
        s.insert("RATE_PURCHASE_PER_USER", "1".to_owned());
    })
    .await;
    let sale = app.open_sale(10, 5, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (_, token) = app.customer("b@x.io").await;
    let first: Value = app
        .purchase_keyed(&token, id, 1, "k")
        .await
        .json()
        .await
        .unwrap();
    let r = app.purchase_keyed(&token, id, 1, "k").await;
    assert_eq!(r.headers()["retry-after"], "1");
    assert_error(r, 429, "RATE_LIMITED").await;
    let replayed = crate::helpers::eventually(std::time::Duration::from_secs(10), || async {
        let r = app.purchase_keyed(&token, id, 1, "k").await;
        r.status() == 201 && r.json::<Value>().await.unwrap() == first
    })
    .await;
    assert!(replayed);
    assert_eq!(app.get_sale(id).await["availableUnits"], 9);
}

#[tokio::test]
async fn a_purchase_without_quantity_is_400_naming_the_field_and_sells_nothing() {
    let app = spawn_app().await;
    let sale = app.open_sale(10, 5, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (_, token) = app.customer("b@x.io").await;
    let e = assert_error(
        app.post(
            "/api/purchase-product",
            Some(&token),
            &json!({ "flashSaleId": id }),
        )
        .await,
        400,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(e["error"]["details"]["field"], "quantity", "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("quantity"));
    assert_eq!(app.get_sale(id).await["availableUnits"], 10);
    assert_eq!(xlen(app.redis(), id), 0);
}

#[tokio::test]
async fn invalid_quantities_change_nothing() {
    let app = spawn_app().await;
    let sale = app.open_sale(10, 5, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (_, token) = app.customer("b@x.io").await;
    for q in [
        json!(0),
        json!(-1),
        json!(1.5),
        json!("2"),
        json!(1_000_000_000_000i64),
        json!(null),
        json!([1]),
    ] {
        let r = app.purchase(&token, id, q.clone()).await;
        assert_error(r, 400, "VALIDATION_FAILED").await;
    }
    for body in [
        json!({ "flashSaleId": id, "quantity": 1, "price": 0 }),
        json!({ "quantity": 1 }),
        json!({ "flashSaleId": "x", "quantity": 1 }),
    ] {
        let r = app.post("/api/purchase-product", Some(&token), &body).await;
        assert_error(r, 400, "VALIDATION_FAILED").await;
    }
    assert_eq!(app.get_sale(id).await["availableUnits"], 10);
    assert_eq!(xlen(app.redis(), id), 0);
    assert_error(
        app.purchase(&token, "0123456789abcdef01234567", json!(1))
            .await,
        404,
        "FLASH_SALE_NOT_FOUND",
    )
    .await;
    assert_error(
        app.purchase(&app.admin_token, id, json!(1)).await,
        403,
        "FORBIDDEN",
    )
    .await;
    assert_error(
        app.post(
            "/api/purchase-product",
            None,
            &json!({ "flashSaleId": id, "quantity": 1 }),
        )
        .await,
        401,
        "UNAUTHORIZED",
    )
    .await;
}

#[tokio::test]
async fn after_sell_out_purchases_are_answered_from_memory() {
    // The scheduler's lease script is also an EVALSHA: let it tick once, then
    // not again during the test, so the count below is the purchases' alone.
    let app = crate::helpers::spawn_app_with(|s| {
        s.insert("SCHEDULER_TICK_MS", "3600000".to_owned());
        s.insert("SCHEDULER_LEASE_MS", "7200000".to_owned());
    })
    .await;
    let leads = crate::support::eventually(std::time::Duration::from_secs(10), || async {
        !app.redis()
            .cli(&["GET", "{flashsale:scheduler:lease}"])
            .is_empty()
    })
    .await;
    assert!(leads, "the scheduler took its lease");
    let sale = app.open_sale(2, 2, 2).await;
    let id = sale["id"].as_str().unwrap();
    let (_, token) = app.customer("b@x.io").await;
    let (_, other) = app.customer("o@x.io").await;
    assert_eq!(app.purchase(&token, id, json!(2)).await.status(), 201);
    let before = evalsha_calls(&app);
    for _ in 0..20 {
        let e = assert_error(app.purchase(&other, id, json!(1)).await, 409, "SOLD_OUT").await;
        assert_eq!(e["error"]["details"]["availableUnits"], 0);
    }
    assert_eq!(evalsha_calls(&app), before, "no script call after sell-out");
    // An idempotent replay still reaches Redis and gets its first order.
    let r = app.purchase_keyed(&other, id, 1, "late").await;
    assert_error(r, 409, "SOLD_OUT").await;
    assert_eq!(evalsha_calls(&app), before + 1);
}

#[tokio::test]
async fn customers_see_only_their_own_orders() {
    let app = spawn_app().await;
    let sale = app.open_sale(10, 5, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (a_id, a) = app.customer("a@x.io").await;
    let (_, b) = app.customer("b@x.io").await;
    app.purchase(&a, id, json!(2)).await;
    app.purchase(&b, id, json!(1)).await;
    app.flush().await;
    let mine: Value = app.orders(&a, "").await.json().await.unwrap();
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_eq!(mine[0]["userId"], a_id.as_str());
    assert_eq!(mine[0]["quantity"], 2);
    let mine: Value = app
        .orders(&a, &format!("?flashSaleId={id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_error(
        app.orders(&a, "?userId=0123456789abcdef01234567").await,
        403,
        "FORBIDDEN",
    )
    .await;
    let all: Value = app
        .orders(&app.admin_token, &format!("?flashSaleId={id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);
}
