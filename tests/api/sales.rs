use serde_json::{Value, json};

use crate::helpers::{assert_error, iso_in, spawn_app};

#[tokio::test]
async fn create_sale_returns_the_documented_shape() {
    let app = spawn_app().await;
    let product = app.create_product(199.99).await;
    let r = app
        .post(
            "/api/create-flash-sale",
            Some(&app.admin_token),
            &json!({
                "productId": product,
                "startTime": iso_in(600),
                "endTime": iso_in(4200),
                "discount": 25,
                "maxPerUser": 3,
                "maxPerTransaction": 2,
            }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let s: Value = r.json().await.unwrap();
    for f in [
        "id",
        "productId",
        "startTime",
        "endTime",
        "discount",
        "salePrice",
        "totalUnits",
        "availableUnits",
        "maxPerUser",
        "maxPerTransaction",
        "status",
    ] {
        assert!(s.get(f).is_some(), "missing {f} in {s}");
    }
    assert_eq!(s["status"], "pending");
    assert_eq!(s["totalUnits"], 200);
    assert_eq!(s["availableUnits"], 200);
    assert_eq!(s["salePrice"], 149.99);
    assert_eq!(s["productId"], product.as_str());
}

#[tokio::test]
async fn each_sale_validation_rule_is_enforced() {
    let app = spawn_app().await;
    let product = app.create_product(10.0).await;
    let base = json!({
        "productId": product, "startTime": iso_in(60), "endTime": iso_in(3600),
        "discount": 10, "totalUnits": 100, "maxPerUser": 2, "maxPerTransaction": 1,
    });
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let cases = vec![
        ("end before start", with("endTime", json!(iso_in(30)))),
        (
            "end equals start",
            with("endTime", base["startTime"].clone()),
        ),
        ("end in the past", {
            let mut b = with("startTime", json!(iso_in(-7200)));
            b["endTime"] = json!(iso_in(-3600));
            b
        }),
        ("discount over 100", with("discount", json!(100.5))),
        ("discount negative", with("discount", json!(-1))),
        ("zero units", with("totalUnits", json!(0))),
        ("too many units", with("totalUnits", json!(10_000_001))),
        ("fractional units", with("totalUnits", json!(1.5))),
        ("zero per user", with("maxPerUser", json!(0))),
        (
            "negative per transaction",
            with("maxPerTransaction", json!(-1)),
        ),
        (
            "per transaction above per user",
            with("maxPerTransaction", json!(3)),
        ),
        ("bad date", with("startTime", json!("next tuesday"))),
        ("bad product id", with("productId", json!("abc"))),
        ("unknown field", with("price", json!(1))),
    ];
    for (name, body) in cases {
        let r = app.create_sale_raw(&body).await;
        let v = assert_error(r, 400, "VALIDATION_FAILED").await;
        assert!(v["error"]["message"].is_string(), "{name}");
    }
    let missing = with("productId", json!("0123456789abcdef01234567"));
    assert_error(
        app.create_sale_raw(&missing).await,
        404,
        "PRODUCT_NOT_FOUND",
    )
    .await;
    let list: Value = app
        .get("/api/flash-sales", Some(&app.admin_token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 0, "no sale was created");
    // The valid body works.
    assert_eq!(app.create_sale_raw(&base).await.status(), 201);
}

#[tokio::test]
async fn overlapping_sales_of_one_product_are_refused() {
    let app = spawn_app().await;
    let product = app.create_product(10.0).await;
    app.sale_for(&product, 600, 3600, 10, 1, 1).await;
    let r = app
        .create_sale_raw(&json!({
            "productId": product, "startTime": iso_in(1800), "endTime": iso_in(7200), "discount": 5,
        }))
        .await;
    assert_error(r, 409, "FLASH_SALE_OVERLAP").await;
    // Back to back is fine, and so is another product at the same time.
    app.sale_for(&product, 3600, 7200, 10, 1, 1).await;
    let other = app.create_product(5.0).await;
    app.sale_for(&other, 600, 3600, 10, 1, 1).await;
}

#[tokio::test]
async fn available_units_are_read_live_from_redis() {
    let app = spawn_app().await;
    let sale = app.open_sale(50, 5, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (_, token) = app.customer("b@x.io").await;
    assert_eq!(app.purchase(&token, id, json!(3)).await.status(), 201);
    assert_eq!(app.get_sale(id).await["availableUnits"], 47);
    // A change made in Redis alone shows up at once.
    app.redis()
        .cli(&["SET", &format!("{{sale:{id}}}:stock"), "12"]);
    assert_eq!(app.get_sale(id).await["availableUnits"], 12);
    let list: Value = app
        .get("/api/flash-sales?status=active", Some(&app.admin_token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["availableUnits"], 12);
}

#[tokio::test]
async fn reseeding_after_a_redis_flush_restores_open_sales_without_reselling() {
    let app = spawn_app().await;
    let active = app.open_sale(10, 3, 3).await;
    let product = app.create_product(10.0).await;
    let pending = app.sale_for(&product, 600, 3600, 7, 1, 1).await;
    let (aid, pid) = (
        active["id"].as_str().unwrap(),
        pending["id"].as_str().unwrap(),
    );
    let (_, token) = app.customer("b@x.io").await;
    assert_eq!(app.purchase(&token, aid, json!(3)).await.status(), 201);
    app.flush().await;

    app.redis().cli(&["FLUSHALL"]);
    assert!(
        app.state
            .hot
            .available(flashsale::ids::SaleId::parse(aid).unwrap())
            .await
            .unwrap()
            .is_none()
    );
    let n = app.state.sales.reseed_missing().await.unwrap();
    assert_eq!(n, 2);
    assert_eq!(
        app.get_sale(aid).await["availableUnits"],
        7,
        "sold units stay sold"
    );
    assert_eq!(app.get_sale(pid).await["availableUnits"], 7);
    // The buyer's allowance survived too: they already hold 3 of 3.
    let r = app.purchase(&token, aid, json!(1)).await;
    assert_error(r, 403, "USER_PURCHASE_LIMIT_REACHED").await;
    // Re-seeding again never resets stock Redis holds.
    app.redis()
        .cli(&["SET", &format!("{{sale:{aid}}}:stock"), "2"]);
    assert_eq!(app.state.sales.reseed_missing().await.unwrap(), 0);
    assert_eq!(app.get_sale(aid).await["availableUnits"], 2);
    // A new buyer's order continues the sequence instead of reusing an id.
    let (_, other) = app.customer("o@x.io").await;
    let r = app.purchase(&other, aid, json!(1)).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], format!("{aid}-2"));
}

#[tokio::test]
async fn rerun_creates_a_new_event_with_fresh_inventory() {
    let app = spawn_app().await;
    let sale = app.open_sale(2, 2, 2).await;
    let id = sale["id"].as_str().unwrap();
    let (_, token) = app.customer("b@x.io").await;
    assert_eq!(app.purchase(&token, id, json!(2)).await.status(), 201);
    let r = app
        .post(
            &format!("/api/flash-sales/{id}/rerun"),
            Some(&app.admin_token),
            &json!({ "startTime": iso_in(-1), "endTime": iso_in(600), "totalUnits": 5 }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let new: Value = r.json().await.unwrap();
    assert_ne!(new["id"], sale["id"]);
    assert_eq!(new["productId"], sale["productId"]);
    assert_eq!(new["availableUnits"], 5);
    assert_eq!(new["maxPerUser"], 2);
    let nid = new["id"].as_str().unwrap();
    assert_eq!(
        app.purchase(&token, nid, json!(2)).await.status(),
        201,
        "fresh allowance"
    );
    assert_error(
        app.post(
            "/api/flash-sales/0123456789abcdef01234567/rerun",
            Some(&app.admin_token),
            &json!({ "startTime": iso_in(1), "endTime": iso_in(60) }),
        )
        .await,
        404,
        "FLASH_SALE_NOT_FOUND",
    )
    .await;
}

#[tokio::test]
async fn cancel_ends_a_sale_and_refuses_purchases() {
    let app = spawn_app().await;
    let sale = app.open_sale(10, 2, 2).await;
    let id = sale["id"].as_str().unwrap();
    let r = app
        .post(
            &format!("/api/flash-sales/{id}/cancel"),
            Some(&app.admin_token),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "cancelled");
    assert_eq!(v["endReason"], "cancelled");
    let (_, token) = app.customer("b@x.io").await;
    let e = assert_error(
        app.purchase(&token, id, json!(1)).await,
        409,
        "FLASH_SALE_ENDED",
    )
    .await;
    assert_eq!(e["error"]["details"]["reason"], "cancelled");
    assert_eq!(app.get_sale(id).await["availableUnits"], 10);
    assert_error(
        app.post(
            &format!("/api/flash-sales/{id}/cancel"),
            Some(&app.admin_token),
            &json!({}),
        )
        .await,
        409,
        "FLASH_SALE_ENDED",
    )
    .await;
    let cancelled: Value = app
        .get("/api/flash-sales?status=cancelled", Some(&app.admin_token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(cancelled.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn sale_lookups_validate_ids_and_status() {
    let app = spawn_app().await;
    let t = Some(app.admin_token.as_str());
    assert_error(
        app.get("/api/flash-sales/0123456789abcdef01234567", t)
            .await,
        404,
        "FLASH_SALE_NOT_FOUND",
    )
    .await;
    assert_error(
        app.get("/api/flash-sales/nope", t).await,
        404,
        "FLASH_SALE_NOT_FOUND",
    )
    .await;
    assert_error(
        app.get("/api/flash-sales?status=weird", t).await,
        400,
        "VALIDATION_FAILED",
    )
    .await;
}
