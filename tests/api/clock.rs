//! Redis decides time: a server whose own clock is hours off still refuses
//! purchases before a sale's start and after its end. The server runs as a
//! child process under `faketime` (Debian package faketime, installed by
//! scripts/setup.sh).

use std::process::Command;

use serde_json::json;

use crate::helpers::{Api, assert_error, start_binary_via, unique_db};
use crate::support::{free_port, mongo, redis::RedisServer};

/// `faketime` must be there: the test fails, naming the package, rather than skip.
fn require_faketime() {
    let found = Command::new("faketime").arg("--version").output().is_ok();
    assert!(
        found,
        "faketime not found: install the Debian package faketime (scripts/setup.sh does)"
    );
}

async fn server_with_clock(offset: &str, redis: &RedisServer) -> (crate::helpers::Binary, Api) {
    require_faketime();
    let binary = start_binary_via(
        &["faketime", "-f", offset],
        &redis.url(),
        &mongo::shared_url(),
        &unique_db(),
        free_port(),
        |_| {},
    )
    .await;
    let api = Api::connect(binary.base.clone()).await;
    (binary, api)
}

#[tokio::test]
async fn a_server_clock_hours_ahead_cannot_open_a_sale_early() {
    let redis = RedisServer::start();
    let (_binary, api) = server_with_clock("+3h", &redis).await;
    let product = api.create_product(10.0).await;
    // Starts in 1 h and ends in 5 h by the real clock: to the server,
    // 3 h ahead, it has been running for 2 h.
    let sale = api.sale_for(&product, 3_600, 5 * 3_600, 10, 2, 2).await;
    let id = sale["id"].as_str().unwrap();
    assert_eq!(sale["status"], "active", "the server's own clock is ahead");
    let (_, token) = api.customer("early@example.com").await;
    let r = api.purchase(&token, id, json!(1)).await;
    assert_error(r, 409, "FLASH_SALE_NOT_STARTED").await;
    assert_eq!(api.get_sale(id).await["availableUnits"], 10);
}

#[tokio::test]
async fn a_server_clock_hours_behind_cannot_keep_a_sale_open_late() {
    let redis = RedisServer::start();
    let (_binary, api) = server_with_clock("-3h", &redis).await;
    let product = api.create_product(10.0).await;
    // Ran from 4 h to 1 h ago by the real clock: to the server, 3 h behind,
    // it still has 2 h to go.
    let sale = api.sale_for(&product, -4 * 3_600, -3_600, 10, 2, 2).await;
    let id = sale["id"].as_str().unwrap();
    assert_eq!(sale["status"], "active", "the server's own clock is behind");
    let (_, token) = api.customer("late@example.com").await;
    let r = api.purchase(&token, id, json!(1)).await;
    assert_error(r, 409, "FLASH_SALE_ENDED").await;
    assert_eq!(api.get_sale(id).await["availableUnits"], 10);
}
