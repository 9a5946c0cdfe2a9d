use serde_json::{Value, json};

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn admin_creates_products_that_users_can_list_and_get() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/api/create-product",
            Some(&app.admin_token),
            &json!({ "name": "Phone", "description": "Fast", "price": 199.99 }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["price"], 199.99);
    assert_eq!(p["description"], "Fast");
    let (_, token) = app.customer("c@x.io").await;
    let list: Value = app
        .get("/api/products", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], p["id"]);
    let id = p["id"].as_str().unwrap();
    let got: Value = app
        .get(&format!("/api/products/{id}"), Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got, p);
}

#[tokio::test]
async fn product_validation_and_missing_products() {
    let app = spawn_app().await;
    let t = Some(app.admin_token.as_str());
    for body in [
        json!({ "name": "", "price": 1 }),
        json!({ "name": "A", "price": 0 }),
        json!({ "name": "A", "price": -5 }),
        json!({ "name": "A", "price": 1.234 }),
        json!({ "name": "A", "price": "1" }),
        json!({ "name": "A" }),
        json!({ "name": "A", "price": 1, "stock": 5 }),
    ] {
        assert_error(
            app.post("/api/products", t, &body).await,
            400,
            "VALIDATION_FAILED",
        )
        .await;
    }
    assert_error(
        app.get("/api/products/0123456789abcdef01234567", t).await,
        404,
        "PRODUCT_NOT_FOUND",
    )
    .await;
    assert_error(
        app.get("/api/products/zzz", t).await,
        404,
        "PRODUCT_NOT_FOUND",
    )
    .await;
    assert_error(
        app.get("/api/products?limit=0", t).await,
        400,
        "VALIDATION_FAILED",
    )
    .await;
    assert_error(
        app.get("/api/products?bogus=1", t).await,
        400,
        "VALIDATION_FAILED",
    )
    .await;
    let list: Value = app.get("/api/products", t).await.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 0);
}
