//! Revoking access: blocking a user and changing a role take effect on
//! every route and every instance, open WebSockets included (issue 15,
//! finding 4).

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, spawn_app, spawn_app_on};
use crate::support::eventually;

/// Revocations reach every instance by pub/sub within about a second; the
/// patience is generous so a loaded CI machine does not fail the test.
const PATIENCE: Duration = Duration::from_secs(5);

/// A second instance on the first one's stores.
async fn second_instance(a: &TestApp) -> TestApp {
    spawn_app_on(&a.redis_url, &a.mongo_url, &a.db_name, |_| {}).await
}

async fn status_of(app: &TestApp, path: &str, token: &str) -> u16 {
    app.get(path, Some(token)).await.status().as_u16()
}

#[tokio::test]
async fn a_blocked_admin_loses_admin_routes_on_another_instance_and_unblocking_restores_them() {
    let a = spawn_app().await;
    let b = second_instance(&a).await;
    let (id, token) = a.second_admin("admin2@x.io").await;
    assert_eq!(status_of(&b, "/api/admin/blocklist", &token).await, 200);

    a.block_user(&id).await;
    let started = std::time::Instant::now();
    let cut = eventually(PATIENCE, || async {
        status_of(&b, "/api/admin/blocklist", &token).await == 403
    })
    .await;
    assert!(cut, "the blocked admin still reaches admin routes on B");
    eprintln!("block reached instance B after {:?}", started.elapsed());
    let e = assert_error(
        b.get("/api/fraud/events", Some(&token)).await,
        403,
        "BLOCKED",
    )
    .await;
    assert_eq!(e["error"]["details"]["rule"], "blocklist-user");
    // Nor can it act: creating a product is refused and creates nothing.
    let r = b
        .post(
            "/api/products",
            Some(&token),
            &json!({ "name": "X", "price": 1.0 }),
        )
        .await;
    assert_error(r, 403, "BLOCKED").await;
    let products: Value = a
        .get("/api/products", Some(&a.admin_token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(products.as_array().map(Vec::len), Some(0), "{products}");

    a.unblock_user(&id).await;
    assert!(
        eventually(PATIENCE, || async {
            status_of(&b, "/api/admin/blocklist", &token).await == 200
        })
        .await,
        "unblocking restores the same token's access on B"
    );
}

#[tokio::test]
async fn a_demoted_admins_old_token_is_refused_everywhere_and_a_new_one_is_a_customers() {
    let a = spawn_app().await;
    let b = second_instance(&a).await;
    let (id, old) = a.second_admin("admin2@x.io").await;
    assert_eq!(status_of(&b, "/api/admin/blocklist", &old).await, 200);
    let mut ws = b.ws(&old).await;

    let r = a.set_role(&id, "customer").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["id"].as_str(), v["role"].as_str()),
        (Some(id.as_str()), Some("customer"))
    );

    let revoked = eventually(PATIENCE, || async {
        status_of(&b, "/api/admin/blocklist", &old).await == 401
    })
    .await;
    assert!(revoked, "the demoted admin's token still works on B");
    assert_error(
        b.get("/api/admin/blocklist", Some(&old)).await,
        401,
        "TOKEN_REVOKED",
    )
    .await;
    // Every route, not only admin ones, and the instance that changed it.
    assert_error(
        a.get("/api/products", Some(&old)).await,
        401,
        "TOKEN_REVOKED",
    )
    .await;
    // The open WebSocket is closed too.
    assert_eq!(
        ws.close_frame(PATIENCE).await,
        Some((1008, "token revoked".to_owned()))
    );

    // Signing in again gives a customer's token: reads work, admin routes don't.
    let new = b.token_for("admin2@x.io", "admin2-password").await;
    assert_eq!(status_of(&b, "/api/products", &new).await, 200);
    assert_error(
        b.get("/api/admin/blocklist", Some(&new)).await,
        403,
        "FORBIDDEN",
    )
    .await;

    // Promoting again revokes the customer token and a new sign-in is admin.
    assert_eq!(a.set_role(&id, "admin").await.status(), 200);
    assert!(
        eventually(PATIENCE, || async {
            status_of(&b, "/api/products", &new).await == 401
        })
        .await,
        "the promotion revokes the customer token on B"
    );
    let again = b.token_for("admin2@x.io", "admin2-password").await;
    assert_eq!(status_of(&b, "/api/admin/blocklist", &again).await, 200);
}

#[tokio::test]
async fn a_blocked_customer_loses_reads_and_its_open_websocket_and_gets_them_back_when_unblocked() {
    let a = spawn_app().await;
    let b = second_instance(&a).await;
    let sale = a.open_sale(5, 1, 1).await;
    let sale_id = sale["id"].as_str().unwrap();
    let (id, token) = a.customer("c@x.io").await;
    let mut ws = b.ws(&token).await;
    assert_eq!(ws.join(sale_id).await["event"], "flashSaleStatus");
    let mut bystander = b.ws(&a.admin_token).await;
    bystander.join(sale_id).await;

    a.block_user(&id).await;
    assert_eq!(
        ws.close_frame(PATIENCE).await,
        Some((1008, "blocked".to_owned())),
        "the blocked customer's socket on B is closed"
    );
    assert_error(b.get("/api/products", Some(&token)).await, 403, "BLOCKED").await;
    assert_error(b.orders(&token, "").await, 403, "BLOCKED").await;
    let (status, body, _) = b
        .try_ws(&format!("token={token}"), &[])
        .await
        .expect_err("a blocked user cannot open a socket");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("BLOCKED"))
    );
    // Other sockets are not touched.
    bystander
        .send(&json!({ "event": "joinFlashSale", "data": { "flashSaleId": sale_id } }))
        .await;
    bystander.wait_for("flashSaleStatus", PATIENCE).await;

    a.unblock_user(&id).await;
    assert!(
        eventually(PATIENCE, || async {
            status_of(&b, "/api/products", &token).await == 200
        })
        .await,
        "unblocking restores reads on B"
    );
    let mut back = b.ws(&token).await;
    assert_eq!(back.join(sale_id).await["event"], "flashSaleStatus");
}

#[tokio::test]
async fn role_changes_need_an_admin_and_valid_input_and_change_nothing_otherwise() {
    let app = spawn_app().await;
    let (id, customer) = app.customer("c@x.io").await;
    let path = format!("/api/admin/users/{id}/role");
    let post = |token: Option<String>, path: String, body: Value| {
        let app = &app;
        async move { app.post(&path, token.as_deref(), &body).await }
    };
    let admin = Some(app.admin_token.clone());
    assert_error(
        post(None, path.clone(), json!({ "role": "admin" })).await,
        401,
        "UNAUTHORIZED",
    )
    .await;
    assert_error(
        post(
            Some(customer.clone()),
            path.clone(),
            json!({ "role": "admin" }),
        )
        .await,
        403,
        "FORBIDDEN",
    )
    .await;
    for body in [
        json!({ "role": "root" }),
        json!({}),
        json!({ "role": "admin", "extra": 1 }),
        json!({ "role": 1 }),
    ] {
        assert_error(
            post(admin.clone(), path.clone(), body).await,
            400,
            "VALIDATION_FAILED",
        )
        .await;
    }
    assert_error(
        post(
            admin.clone(),
            "/api/admin/users/nope/role".to_owned(),
            json!({ "role": "admin" }),
        )
        .await,
        400,
        "VALIDATION_FAILED",
    )
    .await;
    assert_error(
        post(
            admin.clone(),
            "/api/admin/users/0123456789abcdef01234567/role".to_owned(),
            json!({ "role": "admin" }),
        )
        .await,
        404,
        "NOT_FOUND",
    )
    .await;
    // None of those changed the customer: its token still works, as a customer's.
    assert_eq!(status_of(&app, "/api/products", &customer).await, 200);
    assert_error(
        app.get("/api/admin/blocklist", Some(&customer)).await,
        403,
        "FORBIDDEN",
    )
    .await;
    assert_eq!(
        app.redis().cli(&["ZCARD", "{auth}:epochs"]),
        "0",
        "no epoch was raised"
    );
}
