use mongodb::bson::doc;
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_EMAIL, SECRET, assert_error, claims, forge, spawn_app, tampered, unsigned,
};

async fn user_count(app: &crate::helpers::TestApp) -> u64 {
    app.mongo()
        .await
        .collection::<mongodb::bson::Document>("users")
        .count_documents(doc! {})
        .await
        .unwrap()
}

#[tokio::test]
async fn signup_then_signin_returns_a_working_token() {
    let app = spawn_app().await;
    let r = app
        .signup("Alice", "  Alice@Example.COM ", "long-password")
        .await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["email"], "alice@example.com");
    assert_eq!(v["role"], "customer");
    assert_eq!(v["name"], "Alice");
    assert_eq!(v["id"].as_str().unwrap().len(), 24);
    assert!(v.get("password").is_none() && v.get("passwordHash").is_none());

    let r = app.signin("ALICE@example.com", "long-password").await;
    assert_eq!(r.status(), 200);
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["user"]["id"], v["id"]);
    assert_eq!(s["expiresIn"], 3600);
    let token = s["accessToken"].as_str().unwrap();
    assert_eq!(app.get("/api/products", Some(token)).await.status(), 200);
}

#[tokio::test]
async fn passwords_are_stored_as_salted_pbkdf2_with_their_iteration_count() {
    let app = spawn_app().await;
    app.signup("A", "a@x.io", "same-password").await;
    app.signup("B", "b@x.io", "same-password").await;
    let users = app
        .mongo()
        .await
        .collection::<mongodb::bson::Document>("users");
    let a = users
        .find_one(doc! { "email": "a@x.io" })
        .await
        .unwrap()
        .unwrap();
    let b = users
        .find_one(doc! { "email": "b@x.io" })
        .await
        .unwrap()
        .unwrap();
    let (ha, hb) = (
        a.get_str("passwordHash").unwrap(),
        b.get_str("passwordHash").unwrap(),
    );
    assert!(ha.starts_with("pbkdf2-sha256$1000$"), "{ha}");
    assert_ne!(ha, hb);
    assert!(!ha.contains("same-password"));
    assert_eq!(flashsale::auth::iterations_of(ha), Some(1000));
}

#[tokio::test]
async fn self_assigned_admin_is_refused_and_creates_nobody() {
    let app = spawn_app().await;
    let before = user_count(&app).await;
    let body = json!({ "name": "Mallory", "email": "m@x.io", "password": "long-password", "role": "admin" });
    assert_error(app.post("/api/signup", None, &body).await, 403, "FORBIDDEN").await;
    let (_, customer) = app.customer("c@x.io").await;
    assert_error(
        app.post("/api/signup", Some(&customer), &body).await,
        403,
        "FORBIDDEN",
    )
    .await;
    assert_eq!(
        user_count(&app).await,
        before + 1,
        "only the customer was created"
    );
    assert_error(
        app.signin("m@x.io", "long-password").await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;

    // An admin may create another admin.
    let r = app.post("/api/signup", Some(&app.admin_token), &body).await;
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["role"], "admin");
}

#[tokio::test]
async fn duplicate_email_is_409_whatever_its_case() {
    let app = spawn_app().await;
    assert_eq!(
        app.signup("A", "dup@x.io", "long-password").await.status(),
        201
    );
    assert_error(
        app.signup("B", "DUP@x.io", "other-password").await,
        409,
        "EMAIL_ALREADY_EXISTS",
    )
    .await;
    assert_error(
        app.signup("B", ADMIN_EMAIL, "other-password").await,
        409,
        "EMAIL_ALREADY_EXISTS",
    )
    .await;
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_answer() {
    let app = spawn_app().await;
    app.signup("A", "known@x.io", "long-password").await;
    let wrong = app.signin("known@x.io", "not-the-password").await;
    let unknown = app.signin("nobody@x.io", "not-the-password").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.status(), 401);
    let (a, b): (Value, Value) = (wrong.json().await.unwrap(), unknown.json().await.unwrap());
    assert_eq!(a, b);
    assert_eq!(a["error"]["code"], "INVALID_CREDENTIALS");
}

#[tokio::test]
async fn tampered_expired_and_alg_none_tokens_are_401() {
    let app = spawn_app().await;
    let (id, token) = app.customer("t@x.io").await;
    let far = 99_999_999_999u64;
    let key = SECRET.as_bytes();
    // Sanity: a correctly forged token with the real secret works.
    let ok = forge("HS256", &claims(&id, "customer", "flashsale", far), key);
    assert_eq!(app.get("/api/products", Some(&ok)).await.status(), 200);

    let admin = claims(&id, "admin", "flashsale", far);
    let tampered = tampered(&token, &admin);
    let expired = forge("HS256", &claims(&id, "customer", "flashsale", 1000), key);
    let none = unsigned(&admin);
    let wrong_key = forge("HS256", &admin, b"another-secret-key-of-enough-length!!");
    let hs512 = forge("HS512", &admin, key);
    let wrong_issuer = forge("HS256", &claims(&id, "admin", "evil", far), key);
    for (name, t) in [
        ("tampered", tampered),
        ("expired", expired),
        ("alg none", none),
        ("wrong key", wrong_key),
        ("HS512", hs512),
        ("wrong issuer", wrong_issuer),
        ("garbage", "a.b.c".to_owned()),
    ] {
        let r = app.get("/api/products", Some(&t)).await;
        assert_eq!(r.status(), 401, "{name}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "INVALID_TOKEN", "{name}");
    }
    assert_error(app.get("/api/products", None).await, 401, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn customers_get_403_on_every_admin_route() {
    let app = spawn_app().await;
    let (_, token) = app.customer("c@x.io").await;
    let sale = app.open_sale(10, 2, 2).await;
    let id = sale["id"].as_str().unwrap();
    let t = Some(token.as_str());
    let body = json!({});
    for path in [
        "/api/products",
        "/api/create-product",
        "/api/flash-sales",
        "/api/create-flash-sale",
    ] {
        assert_error(app.post(path, t, &body).await, 403, "FORBIDDEN").await;
    }
    assert_error(
        app.post(&format!("/api/flash-sales/{id}/cancel"), t, &body)
            .await,
        403,
        "FORBIDDEN",
    )
    .await;
    assert_error(
        app.post(&format!("/api/flash-sales/{id}/rerun"), t, &body)
            .await,
        403,
        "FORBIDDEN",
    )
    .await;
    assert_error(
        app.get(&format!("/api/leaderboard?flashSaleId={id}"), t)
            .await,
        403,
        "FORBIDDEN",
    )
    .await;
    assert_error(app.get("/api/admin/reconcile", t).await, 403, "FORBIDDEN").await;
    // The sale is untouched.
    assert_eq!(app.get_sale(id).await["status"], "active");
}

#[tokio::test]
async fn bad_bodies_get_400_or_413_and_change_nothing() {
    let app = spawn_app().await;
    let before = user_count(&app).await;
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"{".to_vec(), 400),
        (b"not json".to_vec(), 400),
        (
            br#"{"name":"A","email":"a@x.io","password":"long-password","extra":1}"#.to_vec(),
            400,
        ),
        (
            br#"{"name":1,"email":"a@x.io","password":"long-password"}"#.to_vec(),
            400,
        ),
        (
            br#"{"name":"A","email":"a@x.io","password":"long-password","role":"root"}"#.to_vec(),
            400,
        ),
        (br#"{"name":"A","email":"a@x.io"}"#.to_vec(), 400),
        (br#"[]"#.to_vec(), 400),
        (
            br#"{"name":"A","email":"not-an-email","password":"long-password"}"#.to_vec(),
            400,
        ),
        (
            br#"{"name":"A","email":"a@x.io","password":"short"}"#.to_vec(),
            400,
        ),
        (
            format!(
                r#"{{"name":"{}","email":"a@x.io","password":"long-password"}}"#,
                "x".repeat(40_000)
            )
            .into_bytes(),
            413,
        ),
    ];
    for (body, status) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        let r = app.post_raw("/api/signup", None, body).await;
        let code = if status == 413 {
            "PAYLOAD_TOO_LARGE"
        } else {
            "VALIDATION_FAILED"
        };
        let got = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (got, v["error"]["code"].as_str().unwrap()),
            (status, code),
            "{shown}: {v}"
        );
    }
    // A non-JSON content type is refused too.
    let r = app
        .client
        .post(app.url("/api/signup"))
        .header("content-type", "text/plain")
        .body("name=A")
        .send()
        .await
        .unwrap();
    assert_error(r, 415, "UNSUPPORTED_MEDIA_TYPE").await;
    assert_eq!(user_count(&app).await, before);
}

#[tokio::test]
async fn a_sign_in_rehashes_an_older_iteration_count_at_the_configured_one() {
    let old = spawn_app().await; // PASSWORD_ITERATIONS 1000
    assert_eq!(
        old.signup("A", "a@x.io", "long-password").await.status(),
        201
    );
    let users = old
        .mongo()
        .await
        .collection::<mongodb::bson::Document>("users");
    let hash = || async {
        users
            .find_one(doc! { "email": "a@x.io" })
            .await
            .unwrap()
            .unwrap()
            .get_str("passwordHash")
            .unwrap()
            .to_owned()
    };
    let before = hash().await;
    assert_eq!(flashsale::auth::iterations_of(&before), Some(1000));

    // The same accounts, served by an instance configured with more.
    let new = crate::helpers::spawn_app_on(&old.redis_url, &old.mongo_url, &old.db_name, |s| {
        s.insert("PASSWORD_ITERATIONS", "2000".to_owned());
    })
    .await;
    assert_eq!(new.signin("a@x.io", "wrong-password").await.status(), 401);
    assert_eq!(hash().await, before, "a failed sign-in changes nothing");
    assert_eq!(new.signin("a@x.io", "long-password").await.status(), 200);
    let after = hash().await;
    assert_eq!(flashsale::auth::iterations_of(&after), Some(2000));
    assert_ne!(after, before);
    // The new hash verifies on either instance.
    assert_eq!(new.signin("a@x.io", "long-password").await.status(), 200);
    assert_eq!(old.signin("a@x.io", "long-password").await.status(), 200);
}
