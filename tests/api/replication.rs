//! Replicated Redis: purchases confirmed by replicas (`REDIS_ACK_REPLICAS`)
//! and Sentinel failover, against real `redis-server` primaries, replicas and
//! Sentinels.

use std::time::Duration;

use serde_json::json;

use flashsale::write_behind::WriteBehindError;

use crate::helpers::{assert_error, eventually, spawn_app_on, stored_order_ids, unique_db};
use crate::support::mongo;
use crate::support::redis::RedisServer;
use crate::support::sentinel::{SERVICE, SentinelSetup};

const PATIENCE: Duration = Duration::from_secs(20);

fn xlen(node: &RedisServer, sale: &str) -> i64 {
    node.cli(&["XLEN", &format!("{{sale:{sale}}}:orders")])
        .parse()
        .unwrap_or(-1)
}

#[tokio::test]
async fn an_order_is_answered_only_after_a_replica_holds_it_and_503_when_none_confirms() {
    // Arrange: a primary and its replica; the app waits for one replica.
    let primary = RedisServer::start();
    let primary_port = primary.port.to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &primary_port]);
    assert!(
        eventually(PATIENCE, || async {
            replica
                .cli(&["INFO", "replication"])
                .contains("master_link_status:up")
        })
        .await,
        "replica in sync"
    );
    let app = spawn_app_on(&primary.url(), &mongo::shared_url(), &unique_db(), |s| {
        s.insert("REDIS_ACK_REPLICAS", "1".into());
        s.insert("REDIS_ACK_TIMEOUT_MS", "300".into());
    })
    .await;
    let sale = app.open_sale(10, 5, 5).await;
    let sale = sale["id"].as_str().unwrap().to_owned();
    let (_, token) = app.customer("ack@example.com").await;

    // Act + Assert: a confirmed order is on the replica the moment it is answered.
    let r = app.purchase_keyed(&token, &sale, 1, "first").await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        xlen(&replica, &sale),
        1,
        "the replica held the order before the 201"
    );

    // The replica stops replicating: the next order is written on the
    // primary but cannot be confirmed, so it is 503 with Retry-After.
    assert_eq!(replica.cli(&["REPLICAOF", "NO", "ONE"]), "OK");
    let r = app.purchase_keyed(&token, &sale, 2, "second").await;
    assert_eq!(
        r.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned()),
        Some("1".to_owned())
    );
    assert_error(r, 503, "UNAVAILABLE").await;
    // The write-behind does not record what no replica holds.
    let flushed = app.state.write_behind.flush_once().await;
    assert!(
        matches!(
            flushed,
            Err(WriteBehindError::Unreplicated {
                acked: 0,
                wanted: 1
            })
        ),
        "{flushed:?}"
    );
    assert!(
        stored_order_ids(&app.mongo_url, &app.db_name)
            .await
            .is_empty()
    );

    // Replication resumes: the retry with the same key gets the one order
    // the primary kept, and nothing more is sold.
    assert_eq!(
        replica.cli(&["REPLICAOF", "127.0.0.1", &primary_port]),
        "OK"
    );
    assert!(
        eventually(PATIENCE, || async {
            replica
                .cli(&["INFO", "replication"])
                .contains("master_link_status:up")
        })
        .await
    );
    let r = app.purchase_keyed(&token, &sale, 2, "second").await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers().get("idempotent-replayed").unwrap(), "true");
    let order: serde_json::Value = r.json().await.unwrap();
    assert_eq!(order["id"], format!("{sale}-2"));
    assert_eq!(order["remainingUnits"], 7);
    assert_eq!(xlen(&replica, &sale), 2);
    assert_eq!(app.get_sale(&sale).await["availableUnits"], 7);
    let flushed = app.state.write_behind.flush_once().await.unwrap();
    assert_eq!(flushed.written, 2);
    let mut ids = stored_order_ids(&app.mongo_url, &app.db_name).await;
    ids.sort();
    assert_eq!(ids, [format!("{sale}-1"), format!("{sale}-2")]);
}

#[tokio::test]
async fn through_sentinel_the_service_follows_a_failover_by_itself() {
    // Arrange: primary + replica + three Sentinels; the app knows only the Sentinels.
    let setup = SentinelSetup::start(&[]);
    let first_primary = setup.primary_port().expect("a primary");
    let sentinels = setup.sentinels_var();
    let app = spawn_app_on("", &mongo::shared_url(), &unique_db(), |s| {
        s.remove("REDIS_URL");
        s.insert("REDIS_SENTINELS", sentinels);
        s.insert("REDIS_SENTINEL_SERVICE", SERVICE.into());
        s.insert("REDIS_ACK_REPLICAS", "1".into());
        s.insert("REDIS_ACK_TIMEOUT_MS", "500".into());
    })
    .await;
    let sale = app.open_sale(100, 100, 1).await;
    let sale = sale["id"].as_str().unwrap().to_owned();
    let (_, token) = app.customer("sentinel@example.com").await;
    assert_eq!(app.purchase(&token, &sale, json!(1)).await.status(), 201);

    // Act: Sentinel promotes the replica (as after a primary's crash).
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &setup.sentinel_ports[0].to_string()])
        .args(["SENTINEL", "failover", SERVICE])
        .output()
        .expect("redis-cli");
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    assert!(
        eventually(PATIENCE, || async {
            setup.primary_port().is_some_and(|p| p != first_primary)
        })
        .await,
        "Sentinel promoted the replica"
    );

    // Assert: purchases succeed again on the new primary with no restart,
    // and the stock there counts the order taken before the failover.
    let mut n = 1;
    assert!(
        eventually(PATIENCE, || {
            n += 1;
            let key = format!("after-{n}");
            let (app, token, sale) = (&app, &token, &sale);
            async move { app.purchase_keyed(token, sale, 1, &key).await.status() == 201 }
        })
        .await,
        "no 201 after the failover"
    );
    let new_primary = setup.node(setup.primary_port().unwrap());
    let stock: i64 = new_primary
        .cli(&["GET", &format!("{{sale:{sale}}}:stock")])
        .parse()
        .unwrap();
    let sold = 100 - stock;
    let orders = xlen(new_primary, &sale);
    assert_eq!(
        sold, orders,
        "units sold on the new primary match its orders"
    );
    assert!(orders >= 2);
}
