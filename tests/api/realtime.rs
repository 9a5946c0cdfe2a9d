use std::time::Duration;

use flashsale::ids::SaleId;
use flashsale::sales::{EndReason, SaleStatus};
use flashsale::scheduler::TickOutcome;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, iso_in, spawn_app, spawn_app_on, spawn_app_with, spawn_app_with_idle_scheduler,
    tick_until, transitions,
};
use crate::support::eventually;

const PATIENCE: Duration = Duration::from_secs(10);
/// The lease of the schedulers these tests step.
const LEASE: Duration = Duration::from_secs(1);

/// The sale as MongoDB holds it: status, end reason, and the epoch of the
/// leader that last moved it.
async fn stored(app: &TestApp, id: &str) -> (SaleStatus, Option<EndReason>, i64) {
    let sid = SaleId::parse(id).unwrap();
    let sale = app.state.sales.store.get(sid).await.unwrap().unwrap();
    let raw = app.stored_sale(id).await;
    (
        sale.status,
        sale.end_reason,
        raw.get_i64("epoch").unwrap_or(0),
    )
}

#[tokio::test]
async fn watchers_get_a_snapshot_then_falling_stock_then_sold_out() {
    let app = spawn_app_with_idle_scheduler().await;
    let mut scheduler = app.scheduler("leader", LEASE);
    let sale = app.open_sale(5, 5, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (_, buyer) = app.customer("b@x.io").await;
    let mut ws = app.ws(&buyer).await;

    let snap = ws.join(id).await;
    assert_eq!(snap["event"], "flashSaleStatus");
    assert_eq!(snap["data"]["flashSaleId"], id);
    assert_eq!(snap["data"]["status"], "active");
    assert_eq!(snap["data"]["availableUnits"], 5);
    assert_eq!(snap["data"]["startTime"], sale["startTime"]);
    assert_eq!(snap["data"]["endTime"], sale["endTime"]);

    assert_eq!(app.purchase(&buyer, id, json!(2)).await.status(), 201);
    let mut last = 5;
    loop {
        let ev = ws.next_event(PATIENCE).await.expect("a stock update");
        assert_eq!(ev["event"], "stockUpdate", "{ev}");
        let units = ev["data"]["availableUnits"].as_i64().unwrap();
        assert!(units < last, "stock never goes up: {units} after {last}");
        last = units;
        if units == 3 {
            break;
        }
    }
    assert_eq!(app.purchase(&buyer, id, json!(3)).await.status(), 201);
    // The last stock update says 0 (it comes on the next stock tick).
    let (last_stock, _) = ws.wait_for("stockUpdate", PATIENCE).await;
    assert_eq!(last_stock["data"]["availableUnits"], 0);
    // One tick starts the sale (it opened a minute ago) and ends it, sold out.
    let tick = scheduler.tick_once().await.unwrap();
    assert_eq!(transitions(&tick), 2, "{tick:?}");
    let (ended, before) = ws.wait_for("flashSaleEnded", PATIENCE).await;
    assert_eq!(ended["data"]["reason"], "sold-out");
    assert!(
        before.iter().all(|e| e["event"] != "stockUpdate"),
        "no stock update after the one that said 0: {before:?}"
    );
    assert_eq!(app.get_sale(id).await["status"], "ended");
    assert_eq!(app.get_sale(id).await["endReason"], "sold-out");
    let again = scheduler.tick_once().await.unwrap();
    assert_eq!(transitions(&again), 0, "a sale is ended once");
}

#[tokio::test]
async fn sales_announce_their_start_and_their_time_end_exactly_once() {
    let app = spawn_app_with_idle_scheduler().await;
    let mut scheduler = app.scheduler("leader", LEASE);
    let product = app.create_product(10.0).await;
    // Opened a minute ago; ends a second after it is created.
    let sale = app.sale_for(&product, -60, 1, 10, 1, 1).await;
    let id = sale["id"].as_str().unwrap();
    assert_eq!(stored(&app, id).await.0, SaleStatus::Pending);
    let mut ws = app.ws(&app.admin_token).await;
    ws.join(id).await;

    // The first tick starts it (and ends it too, on a machine slow enough
    // that Redis's clock has already passed the end).
    let first = scheduler.tick_once().await.unwrap();
    let TickOutcome::Leader { epoch, .. } = first else {
        panic!("a lone scheduler leads: {first:?}")
    };
    assert!(transitions(&first) >= 1, "the due start: {first:?}");
    let (started, _) = ws.wait_for("flashSaleStarted", PATIENCE).await;
    assert_eq!(started["data"]["flashSaleId"], id);
    // Then ticks until Redis's clock passes the end: two transitions in all.
    if transitions(&first) == 1 {
        let ticks = tick_until(&mut scheduler, PATIENCE, |t| transitions(t) > 0).await;
        assert_eq!(transitions(ticks.last().unwrap()), 1, "{ticks:?}");
    }
    let (ended, between) = ws.wait_for("flashSaleEnded", PATIENCE).await;
    assert_eq!(ended["data"]["reason"], "time-ended");
    assert!(
        between.iter().all(|e| e["event"] != "flashSaleStarted"),
        "started once: {between:?}"
    );
    let after = scheduler.tick_once().await.unwrap();
    assert_eq!(
        after,
        TickOutcome::Leader {
            epoch,
            transitions: 0
        },
        "nothing happens twice"
    );
    assert_eq!(
        stored(&app, id).await,
        (SaleStatus::Ended, Some(EndReason::TimeEnded), epoch)
    );
    let v = app.get_sale(id).await;
    assert_eq!(
        (v["status"].as_str(), v["endReason"].as_str()),
        (Some("ended"), Some("time-ended"))
    );
}

#[tokio::test]
async fn cancelling_a_sale_tells_its_watchers() {
    let app = spawn_app().await;
    let sale = app.open_sale(5, 1, 1).await;
    let id = sale["id"].as_str().unwrap();
    let mut ws = app.ws(&app.admin_token).await;
    ws.join(id).await;
    app.post(
        &format!("/api/flash-sales/{id}/cancel"),
        Some(&app.admin_token),
        &json!({}),
    )
    .await;
    let (ended, _) = ws.wait_for("flashSaleEnded", PATIENCE).await;
    assert_eq!(ended["data"]["reason"], "cancelled");
}

#[tokio::test]
async fn leaving_a_sale_stops_its_updates() {
    let app = spawn_app().await;
    let a = app.open_sale(10, 5, 5).await;
    let b = app.open_sale(10, 5, 5).await;
    let (aid, bid) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let (_, buyer) = app.customer("b@x.io").await;
    let mut ws = app.ws(&buyer).await;
    ws.join(aid).await;
    ws.send(&json!({ "event": "leaveFlashSale", "data": { "flashSaleId": aid } }))
        .await;
    ws.join(bid).await;
    app.purchase(&buyer, aid, json!(1)).await;
    app.purchase(&buyer, bid, json!(1)).await;
    // B's update arrives; nothing about A came before it (or after, up to it).
    let (update, before) = ws.wait_for("stockUpdate", PATIENCE).await;
    assert_eq!(update["data"]["flashSaleId"], bid);
    assert!(
        before.iter().all(|e| e["data"]["flashSaleId"] != aid),
        "{before:?}"
    );
}

#[tokio::test]
async fn bad_handshakes_and_bad_messages_are_refused_and_others_keep_being_served() {
    let app = spawn_app().await;
    let sale = app.open_sale(10, 5, 5).await;
    let id = sale["id"].as_str().unwrap();
    let host = app.base.trim_start_matches("http://").to_owned();

    // No token, a bad token: the handshake is refused with 401.
    for url in [
        format!("ws://{host}/ws"),
        format!("ws://{host}/?token=not-a-jwt"),
    ] {
        match tokio_tungstenite::connect_async(url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
            other => panic!("handshake should be refused, got {other:?}"),
        }
    }
    // A plain GET on the WebSocket path is told to upgrade.
    assert_eq!(app.get("/ws", None).await.status(), 426);

    let (_, buyer) = app.customer("b@x.io").await;
    let mut ws = app.ws(&buyer).await;
    ws.send(&json!("not an event")).await;
    let e = ws.next_event(PATIENCE).await.unwrap();
    assert_eq!(
        (e["event"].as_str(), e["data"]["code"].as_str()),
        (Some("error"), Some("BAD_MESSAGE"))
    );
    ws.send(&json!({ "event": "dance", "data": {} })).await;
    assert_eq!(
        ws.next_event(PATIENCE).await.unwrap()["data"]["code"],
        "BAD_MESSAGE"
    );
    let e = ws.join("0123456789abcdef01234567").await;
    assert_eq!(e["data"]["code"], "FLASH_SALE_NOT_FOUND");
    // The same connection still works after those errors.
    assert_eq!(ws.join(id).await["event"], "flashSaleStatus");

    // An oversized message gets an error and the connection is closed.
    let mut big = app.ws(&buyer).await;
    big.send(&json!({ "event": "joinFlashSale", "data": { "flashSaleId": "x".repeat(10_000) } }))
        .await;
    let e = big.next_event(PATIENCE).await.unwrap();
    assert_eq!(e["data"]["code"], "MESSAGE_TOO_LARGE");
    assert_eq!(big.close_code(PATIENCE).await, Some(1009));

    // Others are still served.
    app.purchase(&buyer, id, json!(1)).await;
    let (update, _) = ws.wait_for("stockUpdate", PATIENCE).await;
    assert_eq!(update["data"]["availableUnits"], 9);
    let mut fresh = app.ws(&buyer).await;
    assert_eq!(fresh.join(id).await["data"]["availableUnits"], 9);
}

#[tokio::test]
async fn rooms_per_connection_are_limited() {
    let app = spawn_app_with(|s| {
        s.insert("WS_MAX_ROOMS", "2".to_owned());
    })
    .await;
    let ids: Vec<Value> = [
        app.open_sale(5, 1, 1).await,
        app.open_sale(5, 1, 1).await,
        app.open_sale(5, 1, 1).await,
    ]
    .to_vec();
    let mut ws = app.ws(&app.admin_token).await;
    assert_eq!(
        ws.join(ids[0]["id"].as_str().unwrap()).await["event"],
        "flashSaleStatus"
    );
    assert_eq!(
        ws.join(ids[1]["id"].as_str().unwrap()).await["event"],
        "flashSaleStatus"
    );
    assert_eq!(
        ws.join(ids[2]["id"].as_str().unwrap()).await["data"]["code"],
        "ROOM_LIMIT"
    );
}

#[tokio::test]
async fn a_client_on_one_instance_sees_purchases_made_on_another() {
    let a = spawn_app().await;
    let b = spawn_app_on(&a.redis_url, &a.mongo_url, &a.db_name, |_| {}).await;
    let sale = a.open_sale(20, 5, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (_, buyer) = a.customer("b@x.io").await;
    let mut ws = a.ws(&buyer).await;
    ws.join(id).await;
    assert_eq!(b.purchase(&buyer, id, json!(4)).await.status(), 201);
    let (update, _) = ws.wait_for("stockUpdate", PATIENCE).await;
    assert_eq!(update["data"]["availableUnits"], 16);
}

#[tokio::test]
async fn one_scheduler_leads_and_a_dead_leader_is_replaced_within_the_lease() {
    let app = spawn_app_with_idle_scheduler().await;
    let (mut a, mut b) = (app.scheduler("a", LEASE), app.scheduler("b", LEASE));
    let TickOutcome::Leader { epoch, .. } = a.tick_once().await.unwrap() else {
        panic!("the first to tick leads")
    };
    assert_eq!(b.tick_once().await.unwrap(), TickOutcome::Follower);
    let renewed = a.tick_once().await.unwrap();
    assert_eq!(
        renewed,
        TickOutcome::Leader {
            epoch,
            transitions: 0
        },
        "the leader keeps its lease and epoch"
    );

    // A sale due now, after the leader's last tick: it stops ticking (dead
    // or stalled), so the sale must be started by the survivor, once.
    let product = app.create_product(10.0).await;
    let sale = app.sale_for(&product, -60, 600, 10, 1, 1).await;
    let id = sale["id"].as_str().unwrap();
    let mut ws = app.ws(&app.admin_token).await;
    ws.join(id).await;
    let dead_at = tokio::time::Instant::now();
    let ticks = tick_until(&mut b, PATIENCE, |t| *t != TickOutcome::Follower).await;
    // Reported, not asserted (tests never assert wall-clock times): the
    // handover waits for the dead leader's lease to expire in Redis.
    eprintln!(
        "scheduler handover took {:?} (lease {LEASE:?})",
        dead_at.elapsed()
    );
    let (took_over, waited) = ticks.split_last().unwrap();
    assert!(waited.iter().all(|t| *t == TickOutcome::Follower));
    assert_eq!(
        *took_over,
        TickOutcome::Leader {
            epoch: epoch + 1,
            transitions: 1
        },
        "the survivor leads with a new epoch and starts the sale"
    );
    let (started, _) = ws.wait_for("flashSaleStarted", PATIENCE).await;
    assert_eq!(started["data"]["flashSaleId"], id);
    assert_eq!(
        stored(&app, id).await,
        (SaleStatus::Active, None, epoch + 1)
    );
    // The old leader, back, follows and moves nothing; the new one has
    // nothing left to do.
    assert_eq!(a.tick_once().await.unwrap(), TickOutcome::Follower);
    assert_eq!(transitions(&b.tick_once().await.unwrap()), 0);

    // Exactly once: cancelling produces the next lifecycle event, and no
    // second start came before it.
    app.post(
        &format!("/api/flash-sales/{id}/cancel"),
        Some(&app.admin_token),
        &json!({}),
    )
    .await;
    let (_, between) = ws.wait_for("flashSaleEnded", PATIENCE).await;
    assert!(
        between.iter().all(|e| e["event"] != "flashSaleStarted"),
        "{between:?}"
    );

    // A leader that gives its lease up is replaced at once.
    b.release().await;
    assert_eq!(
        a.tick_once().await.unwrap(),
        TickOutcome::Leader {
            epoch: epoch + 2,
            transitions: 0
        }
    );
}

#[tokio::test]
async fn a_slow_client_is_dropped_while_a_normal_one_keeps_up() {
    let app = spawn_app_with(|s| {
        s.insert("WS_QUEUE", "16".to_owned());
        s.insert("WS_SEND_TIMEOUT_MS", "500".to_owned());
    })
    .await;
    let sale = app.open_sale(100, 5, 5).await;
    let id = sale["id"].as_str().unwrap();
    let sid = flashsale::ids::SaleId::parse(id).unwrap();
    let (_, buyer) = app.customer("b@x.io").await;
    let mut normal = app.ws(&buyer).await;
    let mut slow = app.ws(&buyer).await;
    normal.join(id).await;
    slow.join(id).await;

    // Flood the room while `slow` never reads; `normal` reads everything.
    let stats = &app.state.hub.stats;
    let before = stats
        .slow_dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    let reader = tokio::spawn(async move {
        let mut n = 0u64;
        while let Some(ev) = normal.next_event(PATIENCE).await {
            n += 1;
            if ev["event"] == "stockUpdate" {
                return (normal, n, ev);
            }
        }
        panic!("normal client stopped receiving after {n} events");
    });
    let padding = "x".repeat(900);
    let dropped = eventually(Duration::from_secs(30), || async {
        for _ in 0..200 {
            let msg = flashsale::realtime::ServerMessage::Error {
                message: padding.clone(),
                code: "FLOOD".into(),
            };
            app.state.hub.publish_event(sid, &msg);
        }
        tokio::task::yield_now().await;
        stats
            .slow_dropped
            .load(std::sync::atomic::Ordering::Relaxed)
            > before
    })
    .await;
    assert!(dropped, "the slow client was never dropped");
    // The normal client still gets a real update promptly.
    app.purchase(&buyer, id, json!(1)).await;
    let (_normal, received, update) = reader.await.unwrap();
    assert!(received > 1);
    assert_eq!(update["data"]["availableUnits"], 99);
    drop(slow);
}

#[tokio::test]
async fn shutdown_closes_websockets_with_going_away() {
    let mut app = spawn_app().await;
    let mut ws = app.ws(&app.admin_token).await;
    let sale = app.open_sale(5, 1, 1).await;
    ws.join(sale["id"].as_str().unwrap()).await;
    let closer = tokio::spawn(async move { ws.close_code(PATIENCE).await });
    app.shutdown().await;
    assert_eq!(closer.await.unwrap(), Some(1001));
}

#[tokio::test]
async fn status_snapshot_uses_iso_times() {
    let app = spawn_app().await;
    let product = app.create_product(10.0).await;
    let sale = app.sale_for(&product, 600, 1200, 10, 1, 1).await;
    let mut ws = app.ws(&app.admin_token).await;
    let snap = ws.join(sale["id"].as_str().unwrap()).await;
    assert_eq!(snap["data"]["status"], "pending");
    assert!(snap["data"]["startTime"].as_str().unwrap() > iso_in(0).as_str());
}

#[tokio::test]
async fn connections_per_ip_and_origins_are_limited_at_the_handshake() {
    let app = spawn_app_with(|s| {
        s.insert("WS_MAX_CONNECTIONS_PER_IP", "2".to_owned());
        s.insert("WS_ALLOWED_ORIGINS", "https://shop.example".to_owned());
    })
    .await;
    let host = app.base.trim_start_matches("http://").to_owned();
    let token = app.admin_token.clone();
    let request = |origin: Option<&str>| {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut r = format!("ws://{host}/ws?token={token}")
            .into_client_request()
            .unwrap();
        if let Some(o) = origin {
            r.headers_mut().insert("origin", o.parse().unwrap());
        }
        r
    };
    // A browser from another site is refused; no Origin (a non-browser client) is fine.
    match tokio_tungstenite::connect_async(request(Some("https://evil.example"))).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("foreign origin should be refused, got {other:?}"),
    }
    let (a, _) = tokio_tungstenite::connect_async(request(Some("https://shop.example")))
        .await
        .unwrap();
    let (b, _) = tokio_tungstenite::connect_async(request(None))
        .await
        .unwrap();
    // A third connection from the same address is refused with 429.
    match tokio_tungstenite::connect_async(request(None)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 429);
            assert!(r.headers().contains_key("retry-after"));
        }
        other => panic!("third connection should be refused, got {other:?}"),
    }
    // Closing one frees a slot.
    drop(a);
    let freed = eventually(PATIENCE, || async {
        tokio_tungstenite::connect_async(request(None))
            .await
            .is_ok()
    })
    .await;
    assert!(freed, "a closed connection frees its slot");
    drop(b);
}
