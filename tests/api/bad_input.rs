//! A table of hostile and malformed requests against every endpoint: each
//! gets a 4xx with the error body, none a 5xx, and nothing changes.

use mongodb::bson::{Document, doc};
use serde_json::Value;

use crate::helpers::{SECRET, TestApp, claims, forge, spawn_app, tampered, unsigned, xlen};

/// Documents per collection plus the sale's stock and order stream length.
async fn snapshot(app: &TestApp, sale: &str) -> Vec<i64> {
    let db = app.mongo().await;
    let mut out = Vec::new();
    for c in ["users", "products", "flash_sales", "orders"] {
        out.push(
            db.collection::<Document>(c)
                .count_documents(doc! {})
                .await
                .unwrap() as i64,
        );
    }
    out.push(
        app.redis()
            .cli(&["GET", &format!("{{sale:{sale}}}:stock")])
            .parse()
            .unwrap(),
    );
    out.push(xlen(app.redis(), sale));
    out.push(
        app.redis()
            .cli(&["HLEN", "flashsale:blocklist"])
            .parse()
            .unwrap(),
    );
    // 1 while the sale is open, 0 once cancelled.
    let state = app
        .redis()
        .cli(&["HGET", &format!("{{sale:{sale}}}:meta"), "state"]);
    out.push(i64::from(state.trim() != "cancelled"));
    out
}

struct Case {
    name: String,
    method: &'static str,
    path: String,
    token: Option<String>,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
}

fn case(name: &str, method: &'static str, path: &str, token: Option<&str>, body: &[u8]) -> Case {
    Case {
        name: name.to_owned(),
        method,
        path: path.to_owned(),
        token: token.map(str::to_owned),
        headers: Vec::new(),
        body: Some(body.to_vec()),
    }
}

#[tokio::test]
async fn every_endpoint_answers_hostile_input_with_a_4xx_and_changes_nothing() {
    let app = spawn_app().await;
    let sale = app.open_sale(10, 2, 2).await;
    let id = sale["id"].as_str().unwrap().to_owned();
    let product = sale["productId"].as_str().unwrap().to_owned();
    let (uid, customer) = app.customer("c@x.io").await;
    let admin = app.admin_token.clone();
    let (a, c) = (Some(admin.as_str()), Some(customer.as_str()));

    let json_posts: Vec<(&str, Option<&str>)> = vec![
        ("/api/signup", None),
        ("/api/signin", None),
        ("/api/products", a),
        ("/api/create-product", a),
        ("/api/flash-sales", a),
        ("/api/create-flash-sale", a),
        ("/api/purchase-product", c),
        ("/api/admin/blocklist", a),
    ];
    let rerun = format!("/api/flash-sales/{id}/rerun");
    let mut cases = Vec::new();
    let generic: Vec<(&str, Vec<u8>)> = vec![
        ("malformed", b"{".to_vec()),
        ("truncated", br#"{"name":"A","email":"#.to_vec()),
        ("array", b"[]".to_vec()),
        ("number", b"42".to_vec()),
        ("string", br#""hello""#.to_vec()),
        ("null", b"null".to_vec()),
        ("unknown field", br#"{"zzz":1}"#.to_vec()),
        ("invalid utf-8", b"{\"name\":\"\xff\xfe\"}".to_vec()),
        (
            "nested operator",
            br#"{"email":{"$gt":""},"password":{"$ne":null},"name":{"$where":"1"}}"#.to_vec(),
        ),
        (
            "huge number",
            br#"{"price":1e400,"quantity":99999999999999999999999,"discount":1e309}"#.to_vec(),
        ),
        (
            "deep nesting",
            format!("{}{}", "[".repeat(200), "]".repeat(200)).into_bytes(),
        ),
        (
            "oversized",
            format!(r#"{{"name":"{}"}}"#, "x".repeat(20_000)).into_bytes(),
        ),
    ];
    for (path, tok) in json_posts.iter().chain([(rerun.as_str(), a)].iter()) {
        for (what, body) in &generic {
            cases.push(case(&format!("{what} to {path}"), "POST", path, *tok, body));
        }
    }
    let q = |v: &str| format!(r#"{{"flashSaleId":"{id}","quantity":{v}}}"#);
    for v in [
        "0",
        "-1",
        "1.5",
        "\"2\"",
        "1000000000000",
        "true",
        "{\"$gt\":0}",
    ] {
        cases.push(case(
            &format!("quantity {v}"),
            "POST",
            "/api/purchase-product",
            c,
            q(v).as_bytes(),
        ));
    }
    let long = "y".repeat(10_000);
    for (what, body) in [
        (
            "long name",
            format!(r#"{{"name":"{long}","email":"l@x.io","password":"long-password"}}"#),
        ),
        (
            "long password",
            format!(r#"{{"name":"L","email":"l@x.io","password":"{long}"}}"#),
        ),
        (
            "operator email",
            r#"{"name":"L","email":{"$gt":""},"password":"long-password"}"#.to_owned(),
        ),
        (
            "control chars",
            "{\"name\":\"a\\u0000b\",\"email\":\"l@x.io\",\"password\":\"long-password\"}"
                .to_owned(),
        ),
    ] {
        cases.push(case(what, "POST", "/api/signup", None, body.as_bytes()));
    }
    for (what, body) in [
        ("sale long product id", format!(r#"{{"productId":"{long}","startTime":"2030-01-01T00:00:00Z","endTime":"2030-01-01T01:00:00Z","discount":1}}"#)),
        ("sale operator product", r#"{"productId":{"$ne":""},"startTime":"2030-01-01T00:00:00Z","endTime":"2030-01-01T01:00:00Z","discount":1}"#.to_owned()),
        ("sale negative discount", format!(r#"{{"productId":"{product}","startTime":"2030-01-01T00:00:00Z","endTime":"2030-01-01T01:00:00Z","discount":-0.5}}"#)),
        ("sale NaN-ish date", format!(r#"{{"productId":"{product}","startTime":"2030-13-45T99:00:00Z","endTime":"2030-01-01T01:00:00Z","discount":1}}"#)),
    ] {
        cases.push(case(what, "POST", "/api/flash-sales", a, body.as_bytes()));
    }
    // Path tricks and query abuse.
    for path in [
        "/api/products/../admin/blocklist",
        "/api/flash-sales/%2e%2e",
        "/api/flash-sales/..%2F..%2Fadmin",
        "//api//products",
        "/api/products/%00",
        "/api/flash-sales/{\"$gt\":\"\"}",
        "/api/orders?flashSaleId[$ne]=x",
        "/api/orders?limit=-1",
        "/api/orders?limit=99999999999999999999",
        "/api/orders?offset=1e3",
        "/api/leaderboard?flashSaleId=%00",
        "/api/fraud/events?rule=%24where",
    ] {
        // A customer's token: whatever the path resolves to, it must not
        // reach an admin resource or succeed.
        let mut k = case(path, "GET", path, c, b"");
        k.body = None;
        cases.push(k);
    }
    // Cancel, DELETE of a blocklist entry and reconcile: a customer is
    // refused, and an admin's malformed or unknown target changes nothing.
    let cancel = format!("/api/flash-sales/{id}/cancel");
    let mut cancels = vec![case("customer cancels", "POST", &cancel, c, b"")];
    for (what, path) in [
        ("cancel non-hex id", "/api/flash-sales/not-an-id/cancel"),
        (
            "cancel unknown id",
            "/api/flash-sales/0123456789abcdef01234567/cancel",
        ),
        ("cancel operator id", "/api/flash-sales/{\"$ne\":1}/cancel"),
        ("cancel NUL id", "/api/flash-sales/%00/cancel"),
        ("cancel long id", &format!("/api/flash-sales/{long}/cancel")),
    ] {
        cancels.push(case(what, "POST", path, a, b""));
    }
    for mut k in cancels {
        k.body = None;
        cases.push(k);
    }
    let blocklisted = "type=ip&value=10.9.9.9";
    for (what, query, tok) in [
        ("customer deletes", blocklisted, c),
        ("no token deletes", blocklisted, None),
        ("delete without type", "value=10.9.9.9", a),
        ("delete without value", "type=ip", a),
        ("delete unknown type", "type=robot&value=10.9.9.9", a),
        ("delete bad address", "type=ip&value=10.9.9.9.9", a),
        ("delete bad user id", "type=user&value=nope", a),
        ("delete operator value", "type=ip&value[$ne]=x", a),
        (
            "delete repeated type",
            "type=ip&type=user&value=10.9.9.9",
            a,
        ),
        (
            "delete unknown parameter",
            "type=ip&value=10.9.9.9&all=1",
            a,
        ),
        ("delete absent entry", "type=ip&value=10.8.8.8", a),
    ] {
        let mut k = case(
            what,
            "DELETE",
            &format!("/api/admin/blocklist?{query}"),
            tok,
            b"",
        );
        k.body = None;
        cases.push(k);
    }
    for (what, query, tok) in [
        ("customer reconciles", format!("flashSaleId={id}"), c),
        ("reconcile bad id", "flashSaleId=zzz".to_owned(), a),
        ("reconcile operator id", "flashSaleId[$ne]=x".to_owned(), a),
        (
            "reconcile repeated id",
            format!("flashSaleId={id}&flashSaleId={id}"),
            a,
        ),
        ("reconcile unknown parameter", "fix=true".to_owned(), a),
        ("reconcile long id", format!("flashSaleId={long}"), a),
    ] {
        let mut k = case(
            what,
            "GET",
            &format!("/api/admin/reconcile?{query}"),
            tok,
            b"",
        );
        k.body = None;
        cases.push(k);
    }
    let long_path = format!("/api/products/{}", "a".repeat(5_000));
    let mut k = case("very long path", "GET", &long_path, a, b"");
    k.body = None;
    cases.push(k);
    // Headers: duplicated or missing credentials, duplicated content types and keys.
    let mut k = case(
        "two bearer tokens",
        "POST",
        "/api/purchase-product",
        None,
        q("1").as_bytes(),
    );
    k.headers = vec![
        ("authorization", format!("Bearer {customer}")),
        ("authorization", format!("Bearer {admin}")),
    ];
    cases.push(k);
    let mut k = case(
        "no token",
        "POST",
        "/api/purchase-product",
        None,
        q("1").as_bytes(),
    );
    k.headers = vec![];
    cases.push(k);
    let mut k = case(
        "basic auth",
        "POST",
        "/api/purchase-product",
        None,
        q("1").as_bytes(),
    );
    k.headers = vec![("authorization", "Basic YTpi".to_owned())];
    cases.push(k);
    let mut k = case(
        "two content types",
        "POST",
        "/api/purchase-product",
        c,
        q("1").as_bytes(),
    );
    k.headers = vec![
        ("content-type", "application/json".to_owned()),
        ("content-type", "text/plain".to_owned()),
    ];
    cases.push(k);
    let mut k = case(
        "xml content type",
        "POST",
        "/api/purchase-product",
        c,
        b"<x/>",
    );
    k.headers = vec![("content-type", "application/xml".to_owned())];
    cases.push(k);
    let mut k = case(
        "two idempotency keys",
        "POST",
        "/api/purchase-product",
        c,
        q("1").as_bytes(),
    );
    k.headers = vec![
        ("idempotency-key", "a".to_owned()),
        ("idempotency-key", "b".to_owned()),
    ];
    cases.push(k);
    let mut k = case(
        "idempotency key with spaces",
        "POST",
        "/api/purchase-product",
        c,
        q("1").as_bytes(),
    );
    k.headers = vec![("idempotency-key", "a b".to_owned())];
    cases.push(k);
    // Tokens: tampered, expired, alg none, wrong key, wrong role claim.
    let far = 99_999_999_999u64;
    let claims_of = |role: &str, exp: u64| claims(&uid, role, "flashsale", exp);
    for (what, token) in [
        (
            "tampered token",
            tampered(&customer, &claims_of("admin", far)),
        ),
        (
            "expired token",
            forge("HS256", &claims_of("customer", 1_000), SECRET.as_bytes()),
        ),
        ("alg none", unsigned(&claims_of("admin", far))),
        (
            "wrong key",
            forge(
                "HS256",
                &claims_of("admin", far),
                b"some-other-key-that-is-32-bytes-long!",
            ),
        ),
        (
            "alg confusion",
            forge("RS256", &claims_of("admin", far), SECRET.as_bytes()),
        ),
    ] {
        cases.push(case(
            what,
            "POST",
            "/api/products",
            Some(&token),
            br#"{"name":"P","price":1}"#,
        ));
        cases.push(case(
            what,
            "POST",
            "/api/purchase-product",
            Some(&token),
            q("1").as_bytes(),
        ));
    }

    // An entry the hostile DELETEs must leave in place.
    let r = app
        .post(
            "/api/admin/blocklist",
            a,
            &serde_json::json!({ "type": "ip", "value": "10.9.9.9" }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let before = snapshot(&app, &id).await;
    let mut failures = Vec::new();
    for k in &cases {
        let method = reqwest::Method::from_bytes(k.method.as_bytes()).unwrap();
        let mut r = app.client.request(method, app.url(&k.path));
        if let Some(t) = &k.token {
            r = r.bearer_auth(t);
        }
        let has_ct = k.headers.iter().any(|(h, _)| *h == "content-type");
        for (h, v) in &k.headers {
            r = r.header(*h, v);
        }
        if let Some(b) = &k.body {
            if !has_ct {
                r = r.header("content-type", "application/json");
            }
            r = r.body(b.clone());
        }
        let res = r.send().await.expect("request");
        let status = res.status().as_u16();
        let body: Option<Value> = res.json().await.ok();
        let well_formed = body
            .as_ref()
            .is_some_and(|v| v["error"]["code"].is_string() && v["error"]["message"].is_string());
        if !(400..500).contains(&status) || !well_formed {
            failures.push(format!(
                "{} {} ({}): {status} {body:?}",
                k.method, k.path, k.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(
        snapshot(&app, &id).await,
        before,
        "hostile input changed nothing"
    );
    eprintln!("{} hostile requests, all 4xx", cases.len());
}
