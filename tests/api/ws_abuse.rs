//! WebSocket abuse limits and one-use tickets (issue 15, findings 3 and 6):
//! caps per address (/64), per user and per instance; a message rate; joins
//! from a shared snapshot; sockets closed when their token expires; tickets
//! that work once, on any instance, for seconds.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    SECRET, assert_error, claims, forge, spawn_app, spawn_app_on, spawn_app_with,
    spawn_app_with_idle_scheduler,
};
use crate::support::eventually;

const PATIENCE: Duration = Duration::from_secs(10);

/// The calls Redis has counted for `command` (INFO commandstats).
fn calls(app: &crate::helpers::TestApp, command: &str) -> u64 {
    let info = app.redis().cli(&["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn connections_per_address_count_an_ipv6_64_as_one_address() {
    // The test client reaches the app from 127.0.0.1, trusted as a proxy, so
    // the address each socket counts under comes from X-Forwarded-For.
    let app = spawn_app_with(|s| {
        s.insert("TRUST_PROXY", "127.0.0.0/8".to_owned());
        s.insert("WS_MAX_CONNECTIONS_PER_IP", "1".to_owned());
    })
    .await;
    let token = format!("token={}", app.admin_token);
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    let _first = app
        .try_ws(&token, &from("2001:db8:1:2::1"))
        .await
        .expect("the first socket of a /64");
    let (status, body, retry) = app
        .try_ws(&token, &from("2001:db8:1:2:ffff:ffff:ffff:9"))
        .await
        .expect_err("another address of the same /64 is the same client");
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    assert!(retry.is_some(), "429 has Retry-After");
    let _other = app
        .try_ws(&token, &from("2001:db8:1:3::1"))
        .await
        .expect("another /64 is another client");
}

#[tokio::test]
async fn sockets_past_the_per_user_cap_get_429_and_past_the_instance_cap_503() {
    let app = spawn_app_with(|s| {
        s.insert("WS_MAX_CONNECTIONS", "3".to_owned());
        s.insert("WS_MAX_PER_USER", "2".to_owned());
    })
    .await;
    let (_, u) = app.customer("u@x.io").await;
    let (_, v) = app.customer("v@x.io").await;
    let (_, w) = app.customer("w@x.io").await;
    let q = |t: &str| format!("token={t}");

    let u1 = app.try_ws(&q(&u), &[]).await.expect("u's first");
    let _u2 = app.try_ws(&q(&u), &[]).await.expect("u's second");
    let (status, body, retry) = app.try_ws(&q(&u), &[]).await.expect_err("u's third");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "{body}"
    );
    assert_eq!(body["error"]["details"]["limit"], "ws-per-user");
    assert!(retry.is_some());

    let _v1 = app.try_ws(&q(&v), &[]).await.expect("v's first (3 in all)");
    let (status, body, retry) = app.try_ws(&q(&w), &[]).await.expect_err("a fourth");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("UNAVAILABLE")),
        "{body}"
    );
    assert!(retry.is_some(), "503 has Retry-After");

    // A closed socket frees its place in both counts.
    drop(u1);
    let freed = eventually(PATIENCE, || async { app.try_ws(&q(&w), &[]).await.is_ok() }).await;
    assert!(freed, "a closed socket frees its slot");
}

#[tokio::test]
async fn a_client_sending_past_its_message_rate_is_closed_with_1008() {
    let app = spawn_app_with(|s| {
        s.insert("WS_MESSAGES_PER_SECOND", "1".to_owned());
        s.insert("WS_MESSAGES_BURST", "3".to_owned());
    })
    .await;
    let sale = app.open_sale(5, 1, 1).await;
    let id = sale["id"].as_str().unwrap();
    let (_, token) = app.customer("c@x.io").await;
    let mut calm = app.ws(&token).await;
    assert_eq!(calm.join(id).await["event"], "flashSaleStatus");

    let mut flood = app.ws(&app.admin_token).await;
    let leave = json!({ "event": "leaveFlashSale", "data": { "flashSaleId": id } });
    for _ in 0..10 {
        flood.send(&leave).await;
    }
    assert_eq!(
        flood.close_frame(PATIENCE).await,
        Some((1008, "message rate limit exceeded".to_owned()))
    );
    // The calm client is still served.
    calm.send(&json!({ "event": "joinFlashSale", "data": { "flashSaleId": id } }))
        .await;
    calm.wait_for("flashSaleStatus", PATIENCE).await;
}

#[tokio::test]
async fn a_burst_of_joins_for_one_sale_reads_redis_once_and_later_joins_stay_current() {
    let app = spawn_app_with_idle_scheduler().await;
    let sale = app.open_sale(10, 5, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (_, buyer) = app.customer("b@x.io").await;
    let mut sockets = Vec::new();
    for i in 0..20 {
        let (_, t) = app.customer(&format!("w{i}@x.io")).await;
        sockets.push(app.ws(&t).await);
    }
    // The snapshot's meta read is the one HMGET outside the scripts.
    let before = calls(&app, "hmget");
    let joins = futures_util::future::join_all(sockets.iter_mut().map(|ws| ws.join(id))).await;
    for j in &joins {
        assert_eq!(j["event"], "flashSaleStatus", "{j}");
        assert_eq!(j["data"]["availableUnits"], 10, "{j}");
    }
    assert_eq!(
        calls(&app, "hmget") - before,
        1,
        "20 joins of one sale read its snapshot once"
    );

    // A later join sees the stock sold since, and a cancel: once a watcher
    // got the update, the room's snapshot has it too.
    let mut late = app.ws(&buyer).await;
    assert_eq!(app.purchase(&buyer, id, json!(3)).await.status(), 201);
    loop {
        let (update, _) = sockets[0].wait_for("stockUpdate", PATIENCE).await;
        if update["data"]["availableUnits"] == 7 {
            break;
        }
    }
    let snap = late.join(id).await;
    assert_eq!(snap["data"]["availableUnits"], 7, "{snap}");
    app.post(
        &format!("/api/flash-sales/{id}/cancel"),
        Some(&app.admin_token),
        &json!({}),
    )
    .await;
    let (ended, _) = sockets[0].wait_for("flashSaleEnded", PATIENCE).await;
    assert_eq!(ended["data"]["reason"], "cancelled");
    let (snap, _) = late.wait_for("flashSaleEnded", PATIENCE).await;
    assert_eq!(snap["data"]["reason"], "cancelled");
    let mut later = app.ws(&buyer).await;
    let snap = later.join(id).await;
    assert_eq!(snap["data"]["status"], "cancelled", "{snap}");
}

#[tokio::test]
async fn a_socket_is_closed_with_1008_when_its_token_expires() {
    let app = spawn_app().await;
    let sale = app.open_sale(5, 1, 1).await;
    let id = sale["id"].as_str().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sub = mongodb::bson::oid::ObjectId::new().to_hex();
    let short = forge(
        "HS256",
        &claims(&sub, "customer", "flashsale", now + 2),
        SECRET.as_bytes(),
    );
    let mut ws = app.ws(&short).await;
    assert_eq!(ws.join(id).await["event"], "flashSaleStatus");
    assert_eq!(
        ws.close_frame(PATIENCE).await,
        Some((1008, "token expired".to_owned()))
    );
}

#[tokio::test]
async fn a_ws_ticket_opens_one_socket_once_on_any_instance() {
    let a = spawn_app().await;
    let b = spawn_app_on(&a.redis_url, &a.mongo_url, &a.db_name, |_| {}).await;
    let sale = a.open_sale(5, 1, 1).await;
    let id = sale["id"].as_str().unwrap();
    let (_, token) = a.customer("c@x.io").await;

    assert_error(
        a.post("/api/ws-ticket", None, &json!({})).await,
        401,
        "UNAUTHORIZED",
    )
    .await;
    let r = a.post("/api/ws-ticket", Some(&token), &json!({})).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["expiresIn"], 30);
    let ticket = v["ticket"].as_str().unwrap().to_owned();
    assert!(ticket.len() >= 32, "{ticket}");

    // Issued on A, used on B.
    let mut ws = b
        .try_ws(&format!("ticket={ticket}"), &[])
        .await
        .expect("the ticket opens a socket on B");
    assert_eq!(ws.join(id).await["event"], "flashSaleStatus");
    // Once only, on either instance.
    for app in [&a, &b] {
        let (status, body, _) = app
            .try_ws(&format!("ticket={ticket}"), &[])
            .await
            .expect_err("a used ticket");
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("INVALID_TOKEN")),
            "{body}"
        );
    }
    let (status, _, _) = a
        .try_ws("ticket=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &[])
        .await
        .expect_err("an unknown ticket");
    assert_eq!(status, 401);
    let (status, _, _) = a
        .try_ws(&format!("ticket={ticket}&token={token}"), &[])
        .await
        .expect_err("a ticket and a token at once");
    assert_eq!(status, 400);
}

#[tokio::test]
async fn an_expired_ws_ticket_is_refused() {
    let app = spawn_app_with(|s| {
        s.insert("WS_TICKET_TTL_SECS", "1".to_owned());
    })
    .await;
    let r = app
        .post("/api/ws-ticket", Some(&app.admin_token), &json!({}))
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["expiresIn"], 1);
    let ticket = v["ticket"].as_str().unwrap().to_owned();
    let key = format!("flashsale:ws-ticket:{ticket}");
    assert_eq!(app.redis().cli(&["EXISTS", &key]), "1");
    let expired = eventually(PATIENCE, || async {
        app.redis().cli(&["EXISTS", &key]) == "0"
    })
    .await;
    assert!(expired, "Redis expires the ticket");
    let (status, body, _) = app
        .try_ws(&format!("ticket={ticket}"), &[])
        .await
        .expect_err("an expired ticket");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("INVALID_TOKEN"))
    );
}
