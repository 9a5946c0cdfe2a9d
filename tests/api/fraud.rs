use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    Settings, TestApp, assert_error, assert_limited, client_from, iso_in, purchase_via, spawn_app,
    spawn_app_on, spawn_app_with, xlen,
};
use crate::support::eventually;

const PATIENCE: Duration = Duration::from_secs(10);

fn set(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&mut Settings) + Copy {
    move |s| {
        for (k, v) in pairs {
            s.insert(k, (*v).to_owned());
        }
    }
}

/// A purchase that says it was forwarded for `xff`.
async fn purchase_from(
    app: &TestApp,
    token: &str,
    sale: &str,
    qty: i64,
    xff: &str,
) -> reqwest::Response {
    app.purchase_with(token, sale, qty, ("x-forwarded-for", xff))
        .await
}

#[tokio::test]
async fn a_denied_network_is_refused_before_any_work_on_every_route() {
    let app = spawn_app_with(set(&[
        ("IP_DENY", "10.0.0.0/8"),
        ("TRUST_PROXY", "1"),
        ("TRUST_PROXY_FROM", "127.0.0.1"),
    ]))
    .await;
    let sale = app.open_sale(10, 2, 2).await;
    let id = sale["id"].as_str().unwrap();
    let (_, buyer) = app.customer("b@x.io").await;
    let e = assert_error(
        purchase_from(&app, &buyer, id, 1, "10.1.2.3").await,
        403,
        "BLOCKED",
    )
    .await;
    assert_eq!(e["error"]["details"]["rule"], "ip-deny");
    let signin = app
        .client
        .post(app.url("/api/signin"))
        .header("x-forwarded-for", "10.200.0.1")
        .json(&json!({ "email": "b@x.io", "password": "buyer-password" }))
        .send()
        .await
        .unwrap();
    assert_error(signin, 403, "BLOCKED").await;
    let probe = app
        .client
        .get(app.url("/healthz"))
        .header("x-forwarded-for", "10.1.2.3")
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status(), 200, "probes still answer");
    assert_eq!(app.get_sale(id).await["availableUnits"], 10);
    assert_eq!(xlen(app.redis(), id), 0);
    // Other addresses are served.
    assert_eq!(
        purchase_from(&app, &buyer, id, 1, "192.0.2.7")
            .await
            .status(),
        201
    );
}

#[tokio::test]
async fn a_blocklisted_user_is_refused_on_another_instance_within_a_second() {
    let a = spawn_app_with(|_| {}).await;
    let mut b = spawn_app_on(&a.redis_url, &a.mongo_url, &a.db_name, |_| {}).await;
    b.redis = None;
    let sale = a.open_sale(10, 5, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (uid, buyer) = a.customer("b@x.io").await;
    assert_eq!(b.purchase(&buyer, id, json!(1)).await.status(), 201);

    // Block on instance A; instance B learns it through pub/sub.
    let r = a
        .post(
            "/api/admin/blocklist",
            Some(&a.admin_token),
            &json!({ "type": "user", "value": uid, "reason": "scalper" }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let added = std::time::Instant::now();
    let user = flashsale::ids::UserId::parse(&uid).unwrap();
    let refused = eventually(PATIENCE, || async {
        b.state.fraud.blocklist.is_user_blocked(user)
    })
    .await;
    assert!(refused, "instance B never applied the block");
    eprintln!(
        "blocklist reached the other instance after {:?}",
        added.elapsed()
    );
    let e = assert_error(b.purchase(&buyer, id, json!(1)).await, 403, "BLOCKED").await;
    assert_eq!(e["error"]["details"]["rule"], "blocklist-user");
    assert_eq!(
        a.get_sale(id).await["availableUnits"],
        9,
        "nothing sold while blocked"
    );

    let list: Value = a
        .get("/api/admin/blocklist", Some(&a.admin_token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["value"], uid.as_str());
    assert_eq!(list[0]["reason"], "scalper");
    let r = a
        .client
        .delete(a.url(&format!("/api/admin/blocklist?type=user&value={uid}")))
        .bearer_auth(&a.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        eventually(PATIENCE, || async {
            b.purchase(&buyer, id, json!(1)).await.status() == 201
        })
        .await,
        "unblocking reaches the other instance"
    );
}

#[tokio::test]
async fn blocklist_entries_are_validated_and_expire() {
    let app = spawn_app_with(|_| {}).await;
    let t = Some(app.admin_token.as_str());
    for body in [
        json!({ "type": "robot", "value": "1.2.3.4" }),
        json!({ "type": "ip", "value": "1.2.3.4.5" }),
        json!({ "type": "user", "value": "nope" }),
        json!({ "type": "ip", "value": "1.2.3.4", "ttlSeconds": 0 }),
        json!({ "type": "ip", "value": "1.2.3.4", "extra": true }),
    ] {
        assert_error(
            app.post("/api/admin/blocklist", t, &body).await,
            400,
            "VALIDATION_FAILED",
        )
        .await;
    }
    let (_, customer) = app.customer("c@x.io").await;
    assert_error(
        app.get("/api/admin/blocklist", Some(&customer)).await,
        403,
        "FORBIDDEN",
    )
    .await;
    // A customer can neither add nor remove an entry.
    let kept = app
        .post(
            "/api/admin/blocklist",
            t,
            &json!({ "type": "ip", "value": "10.1.1.1", "reason": "kept" }),
        )
        .await;
    assert_eq!(kept.status(), 201);
    assert_error(
        app.post(
            "/api/admin/blocklist",
            Some(&customer),
            &json!({ "type": "ip", "value": "10.2.2.2" }),
        )
        .await,
        403,
        "FORBIDDEN",
    )
    .await;
    let r = app
        .client
        .delete(app.url("/api/admin/blocklist?type=ip&value=10.1.1.1"))
        .bearer_auth(&customer)
        .send()
        .await
        .unwrap();
    assert_error(r, 403, "FORBIDDEN").await;
    let l: Value = app
        .get("/api/admin/blocklist", t)
        .await
        .json()
        .await
        .unwrap();
    let values: Vec<&str> = l
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["value"].as_str())
        .collect();
    assert_eq!(values, ["10.1.1.1/32"], "the customer changed nothing");
    let r = app
        .client
        .delete(app.url("/api/admin/blocklist?type=ip&value=10.1.1.1"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .post(
            "/api/admin/blocklist",
            t,
            &json!({ "type": "ip", "value": "10.9.8.7", "ttlSeconds": 1 }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["value"], "10.9.8.7/32");
    assert!(e["expiresAtMs"].as_i64().unwrap() > e["createdAtMs"].as_i64().unwrap());
    let gone = eventually(PATIENCE, || async {
        let l: Value = app
            .get("/api/admin/blocklist", t)
            .await
            .json()
            .await
            .unwrap();
        l.as_array().unwrap().is_empty()
    })
    .await;
    assert!(gone, "an expired entry is no longer listed");
    let r = app
        .client
        .delete(app.url("/api/admin/blocklist?type=ip&value=10.9.8.7"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "NOT_FOUND").await;
}

#[tokio::test]
async fn per_user_rate_limit_answers_429_with_retry_after_and_moves_nothing() {
    let app = spawn_app_with(set(&[("RATE_PURCHASE_PER_USER", "2")])).await;
    let sale = app.open_sale(100, 50, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (_, buyer) = app.customer("b@x.io").await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..6 {
        let r = app.purchase(&buyer, id, json!(1)).await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 && limited.is_none() {
            limited = Some(r);
        }
    }
    let accepted = statuses.iter().filter(|s| **s == 201).count() as i64;
    let r = limited.expect("a request was rate limited");
    assert_limited(r, "purchase-user").await;
    assert_eq!(
        app.get_sale(id).await["availableUnits"],
        100 - accepted,
        "only accepted purchases moved stock"
    );
    assert_eq!(xlen(app.redis(), id), accepted);
}

#[tokio::test]
async fn a_flood_from_one_ip_with_spoofed_forwarded_for_is_limited_and_memory_stays_bounded() {
    let app = spawn_app_with(set(&[
        ("RATE_PURCHASE_PER_IP", "5"),
        ("RATE_LIMIT_MAX_KEYS", "100"),
    ]))
    .await;
    let sale = app.open_sale(10_000, 1000, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (_, buyer) = app.customer("b@x.io").await;
    let mut ok = 0;
    let mut limited = 0;
    for i in 0..300u32 {
        let spoofed = format!("{}.{}.{}.{}", 1 + i % 200, i % 251, i % 13, i % 7);
        match purchase_from(&app, &buyer, id, 1, &spoofed)
            .await
            .status()
            .as_u16()
        {
            201 => ok += 1,
            429 => limited += 1,
            s => panic!("unexpected {s}"),
        }
    }
    assert!(limited > 0, "the flood was never limited");
    assert!(ok < 300);
    // TRUST_PROXY is unset, so X-Forwarded-For is ignored: one key only.
    assert_eq!(app.state.fraud.purchase_ip.len(), 1);
    assert_eq!(app.get_sale(id).await["availableUnits"], 10_000 - ok);
}

#[tokio::test]
async fn rotating_trusted_forwarded_addresses_cannot_grow_the_limiter_past_its_cap() {
    let app = spawn_app_with(set(&[
        ("RATE_PURCHASE_PER_IP", "1000"),
        ("RATE_LIMIT_MAX_KEYS", "100"),
        ("TRUST_PROXY", "1"),
        ("TRUST_PROXY_FROM", "127.0.0.1"),
    ]))
    .await;
    let sale = app.open_sale(10_000, 1000, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (_, buyer) = app.customer("b@x.io").await;
    for i in 0..400u32 {
        let ip = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
        let s = purchase_from(&app, &buyer, id, 1, &ip)
            .await
            .status()
            .as_u16();
        assert!(s == 201 || s == 429, "{s}");
    }
    assert!(
        app.state.fraud.purchase_ip.len() <= 100,
        "{} keys",
        app.state.fraud.purchase_ip.len()
    );
}

#[tokio::test]
async fn the_per_ip_account_cap_holds_across_instances_and_moves_nothing() {
    let a = spawn_app_with(|_| {}).await;
    let mut b = spawn_app_on(&a.redis_url, &a.mongo_url, &a.db_name, |_| {}).await;
    b.redis = None;
    let product = a.create_product(10.0).await;
    let r = a
        .create_sale_raw(&json!({
            "productId": product, "startTime": iso_in(-60), "endTime": iso_in(3600), "discount": 0,
            "totalUnits": 20, "maxPerUser": 2, "maxPerTransaction": 2, "maxAccountsPerIp": 2,
        }))
        .await;
    assert_eq!(r.status(), 201);
    let sale: Value = r.json().await.unwrap();
    assert_eq!(sale["maxAccountsPerIp"], 2);
    let id = sale["id"].as_str().unwrap();
    let (_, u1) = a.customer("u1@x.io").await;
    let (_, u2) = a.customer("u2@x.io").await;
    let (u3_id, u3) = a.customer("u3@x.io").await;
    assert_eq!(a.purchase(&u1, id, json!(1)).await.status(), 201);
    assert_eq!(b.purchase(&u2, id, json!(1)).await.status(), 201);
    // A third account from the same address, on either instance.
    for app in [&a, &b] {
        let e = assert_error(app.purchase(&u3, id, json!(1)).await, 403, "BLOCKED").await;
        assert_eq!(e["error"]["details"]["rule"], "multi-account-ip");
    }
    // Accounts already counted may still buy.
    assert_eq!(a.purchase(&u1, id, json!(1)).await.status(), 201);
    assert_eq!(a.get_sale(id).await["availableUnits"], 17);
    assert_eq!(xlen(a.redis(), id), 3);

    // The block is in the fraud log, through the write-behind.
    let logged = eventually(PATIENCE, || async {
        a.flush().await;
        let v: Value = a
            .get(
                &format!("/api/fraud/events?rule=multi-account-ip&flashSaleId={id}"),
                Some(&a.admin_token),
            )
            .await
            .json()
            .await
            .unwrap();
        v.as_array()
            .is_some_and(|l| l.iter().any(|e| e["userId"] == u3_id.as_str()))
    })
    .await;
    assert!(logged, "fraud event stored");
    let v: Value = a
        .get(
            &format!("/api/fraud/events?userId={u3_id}&limit=1"),
            Some(&a.admin_token),
        )
        .await
        .json()
        .await
        .unwrap();
    let ev = &v[0];
    assert_eq!(
        (ev["action"].as_str(), ev["ip"].as_str()),
        (Some("blocked"), Some("127.0.0.1"))
    );
    assert_eq!(ev["flashSaleId"], id);
    assert_eq!(ev["details"]["maxAccountsPerIp"], 2);
    let (_, customer) = a.customer("c@x.io").await;
    assert_error(
        a.get("/api/fraud/events", Some(&customer)).await,
        403,
        "FORBIDDEN",
    )
    .await;
    assert_error(
        a.get("/api/fraud/events?rule=$gt", Some(&a.admin_token))
            .await,
        400,
        "VALIDATION_FAILED",
    )
    .await;
}

#[tokio::test]
async fn purchase_attempts_per_buyer_are_counted_in_redis_across_instances() {
    let limits = set(&[
        ("PURCHASE_ATTEMPTS_PER_WINDOW", "3"),
        ("PURCHASE_ATTEMPTS_WINDOW_MS", "600000"),
    ]);
    let a = spawn_app_with(limits).await;
    let mut b = spawn_app_on(&a.redis_url, &a.mongo_url, &a.db_name, limits).await;
    b.redis = None;
    let sale = a.open_sale(100, 2, 2).await;
    let id = sale["id"].as_str().unwrap();
    let (_, buyer) = a.customer("b@x.io").await;
    assert_eq!(a.purchase(&buyer, id, json!(1)).await.status(), 201);
    assert_eq!(
        b.purchase(&buyer, id, json!(5)).await.status(),
        403,
        "transaction limit, still an attempt"
    );
    assert_eq!(a.purchase(&buyer, id, json!(1)).await.status(), 201);
    for app in [&b, &a] {
        let r = app.purchase(&buyer, id, json!(1)).await;
        assert!(
            r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                >= 1
        );
        let e = assert_error(r, 429, "RATE_LIMITED").await;
        assert_eq!(e["error"]["details"]["limit"], "attempts-per-sale");
    }
    assert_eq!(a.get_sale(id).await["availableUnits"], 98);
}

#[tokio::test]
async fn a_brand_new_account_is_blocked_when_the_rule_says_block() {
    let app = spawn_app_with(set(&[
        ("FRAUD_RULE_NEW_ACCOUNT", "block"),
        ("FRAUD_NEW_ACCOUNT_SECONDS", "3600"),
    ]))
    .await;
    let sale = app.open_sale(10, 2, 2).await;
    let id = sale["id"].as_str().unwrap();
    let (_, fresh) = app.customer("new@x.io").await;
    let e = assert_error(app.purchase(&fresh, id, json!(1)).await, 403, "BLOCKED").await;
    assert_eq!(e["error"]["details"]["rule"], "new-account");
    assert_eq!(app.get_sale(id).await["availableUnits"], 10);
}

#[tokio::test]
async fn a_new_account_is_only_recorded_when_the_rule_says_record() {
    let app = spawn_app_with(set(&[
        ("FRAUD_RULE_NEW_ACCOUNT", "record"),
        ("FRAUD_NEW_ACCOUNT_SECONDS", "3600"),
    ]))
    .await;
    let sale = app.open_sale(10, 2, 2).await;
    let id = sale["id"].as_str().unwrap();
    let (uid, fresh) = app.customer("new@x.io").await;
    assert_eq!(app.purchase(&fresh, id, json!(1)).await.status(), 201);
    let flagged = eventually(PATIENCE, || async {
        app.flush().await;
        let v: Value = app
            .get(
                &format!("/api/fraud/events?rule=new-account&userId={uid}"),
                Some(&app.admin_token),
            )
            .await
            .json()
            .await
            .unwrap();
        v.as_array()
            .is_some_and(|l| l.len() == 1 && l[0]["action"] == "flagged")
    })
    .await;
    assert!(flagged);
}

#[tokio::test]
async fn a_burst_of_refused_attempts_blocks_the_account() {
    let app = spawn_app_with(set(&[
        ("FRAUD_RULE_REFUSAL_BURST", "block"),
        ("FRAUD_REFUSAL_BURST", "3"),
        ("FRAUD_REFUSAL_WINDOW_MS", "600000"),
    ]))
    .await;
    let sale = app.open_sale(10, 2, 2).await;
    let id = sale["id"].as_str().unwrap();
    let (_, bot) = app.customer("bot@x.io").await;
    for _ in 0..4 {
        assert_error(
            app.purchase(&bot, id, json!(3)).await,
            403,
            "TRANSACTION_LIMIT_EXCEEDED",
        )
        .await;
    }
    let e = assert_error(app.purchase(&bot, id, json!(1)).await, 403, "BLOCKED").await;
    assert_eq!(e["error"]["details"]["rule"], "refusal-burst");
    assert_eq!(app.get_sale(id).await["availableUnits"], 10);
}

/// Velocity rules are per instance, on purpose (README "Security notes"):
/// a burst refused on one instance does not count on another, and
/// `/metrics` says the limit's scope is the instance.
#[tokio::test]
async fn velocity_limits_are_per_instance_and_the_metrics_say_so() {
    let rules = set(&[
        ("FRAUD_RULE_REFUSAL_BURST", "block"),
        ("FRAUD_REFUSAL_BURST", "3"),
        ("FRAUD_REFUSAL_WINDOW_MS", "600000"),
    ]);
    let a = spawn_app_with(rules).await;
    let mut b = spawn_app_on(&a.redis_url, &a.mongo_url, &a.db_name, rules).await;
    b.redis = None;
    let sale = a.open_sale(10, 2, 2).await;
    let id = sale["id"].as_str().unwrap();
    let (_, bot) = a.customer("bot@x.io").await;
    for _ in 0..4 {
        assert_error(
            a.purchase(&bot, id, json!(3)).await,
            403,
            "TRANSACTION_LIMIT_EXCEEDED",
        )
        .await;
    }
    let e = assert_error(a.purchase(&bot, id, json!(1)).await, 403, "BLOCKED").await;
    assert_eq!(e["error"]["details"]["rule"], "refusal-burst");

    // The other instance has seen none of those refusals.
    assert_eq!(b.purchase(&bot, id, json!(1)).await.status(), 201);

    let page = a.get("/metrics", None).await.text().await.unwrap();
    assert!(
        page.lines().any(|l| l.starts_with(
            "flashsale_fraud_velocity_limit{rule=\"refusal-burst\",scope=\"instance\"}"
        )),
        "the per-instance limit is exported: {}",
        page.lines()
            .filter(|l| l.contains("velocity"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn one_account_from_many_addresses_is_blocked_when_the_rule_says_block() {
    let app = spawn_app_with(set(&[
        ("FRAUD_RULE_MANY_IPS", "block"),
        ("FRAUD_MANY_IPS", "2"),
        ("TRUST_PROXY", "1"),
        ("TRUST_PROXY_FROM", "127.0.0.1"),
    ]))
    .await;
    let sale = app.open_sale(10, 5, 1).await;
    let id = sale["id"].as_str().unwrap();
    let (_, user) = app.customer("u@x.io").await;
    assert_eq!(
        purchase_from(&app, &user, id, 1, "1.1.1.1").await.status(),
        201
    );
    assert_eq!(
        purchase_from(&app, &user, id, 1, "2.2.2.2").await.status(),
        201
    );
    let e = assert_error(
        purchase_from(&app, &user, id, 1, "3.3.3.3").await,
        403,
        "BLOCKED",
    )
    .await;
    assert_eq!(e["error"]["details"]["rule"], "many-ips");
    assert_eq!(app.get_sale(id).await["availableUnits"], 8);
}

#[tokio::test]
async fn signin_is_limited_per_account_and_per_ip() {
    let app = spawn_app_with(set(&[("RATE_SIGNIN_PER_ACCOUNT", "3")])).await;
    app.customer("t@x.io").await; // one sign-in used
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(
            app.signin("t@x.io", "wrong-password")
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(codes, vec![401, 401, 429, 429]);
    // Another account from the same address is unaffected.
    assert_eq!(
        app.signin(crate::helpers::ADMIN_EMAIL, crate::helpers::ADMIN_PASSWORD)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_direct_client_outside_trust_proxy_from_cannot_pick_its_address() {
    // The proxy connects from 127.0.0.1; 127.0.0.2 and 127.0.0.3 reach the
    // app port directly and claim to be forwarded for someone else.
    let app = spawn_app_with(set(&[
        ("TRUST_PROXY", "1"),
        ("TRUST_PROXY_FROM", "127.0.0.1"),
        ("IP_DENY", "127.0.0.2"),
        ("RATE_PURCHASE_PER_IP", "2"),
    ]))
    .await;
    let sale = app.open_sale(100, 100, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (_, buyer) = app.customer("b@x.io").await;

    // A denied address stays denied whatever it forwards.
    let denied = client_from("127.0.0.2");
    let xff = [("x-forwarded-for", "192.0.2.7")];
    let e = assert_error(
        purchase_via(&denied, &app, &buyer, id, 1, &xff).await,
        403,
        "BLOCKED",
    )
    .await;
    assert_eq!(e["error"]["details"]["rule"], "ip-deny");

    // A direct client rotating forged addresses still meets its own per-IP limit.
    let direct = client_from("127.0.0.3");
    let mut statuses = Vec::new();
    for i in 0..10 {
        let forged = format!("198.51.100.{i}");
        let r = purchase_via(
            &direct,
            &app,
            &buyer,
            id,
            1,
            &[("x-forwarded-for", &forged)],
        )
        .await;
        statuses.push(r.status().as_u16());
    }
    assert!(statuses.contains(&429), "never limited: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 429),
        "{statuses:?}"
    );
    let sold = statuses.iter().filter(|s| **s == 201).count() as i64;
    assert_eq!(
        app.state.fraud.purchase_ip.len(),
        1,
        "one key: the socket address"
    );

    // The trusted proxy's header is still believed.
    let e = assert_error(
        purchase_from(&app, &buyer, id, 1, "127.0.0.2").await,
        403,
        "BLOCKED",
    )
    .await;
    assert_eq!(e["error"]["details"]["rule"], "ip-deny");
    assert_eq!(
        purchase_from(&app, &buyer, id, 1, "192.0.2.7")
            .await
            .status(),
        201
    );
    assert_eq!(app.get_sale(id).await["availableUnits"], 100 - sold - 1);
}

#[tokio::test]
async fn an_address_blocked_through_the_admin_api_is_refused_a_purchase_and_others_are_not() {
    let app = spawn_app().await;
    let sale = app.open_sale(10, 5, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (_, buyer) = app.customer("b@x.io").await;
    let other_machine = client_from("127.0.0.2");
    assert_eq!(
        purchase_via(&other_machine, &app, &buyer, id, 1, &[])
            .await
            .status(),
        201,
        "served before the block"
    );

    let r = app
        .post(
            "/api/admin/blocklist",
            Some(&app.admin_token),
            &json!({ "type": "ip", "value": "127.0.0.2", "reason": "bot farm" }),
        )
        .await;
    assert_eq!(r.status(), 201);
    let ip: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let applied = eventually(PATIENCE, || async {
        app.state.fraud.blocklist.is_ip_blocked(ip)
    })
    .await;
    assert!(applied, "the block never applied");

    let e = assert_error(
        purchase_via(&other_machine, &app, &buyer, id, 1, &[]).await,
        403,
        "BLOCKED",
    )
    .await;
    assert_eq!(e["error"]["details"]["rule"], "blocklist-ip");
    // The same account from another address is still served.
    assert_eq!(app.purchase(&buyer, id, json!(1)).await.status(), 201);
    assert_eq!(app.get_sale(id).await["availableUnits"], 8);
    assert_eq!(xlen(app.redis(), id), 2);
}

#[tokio::test]
async fn an_allowed_address_skips_the_per_ip_limit_that_refuses_another() {
    let app = spawn_app_with(set(&[
        ("RATE_PURCHASE_PER_IP", "1"),
        ("IP_ALLOW", "127.0.0.2"),
    ]))
    .await;
    let sale = app.open_sale(100, 100, 5).await;
    let id = sale["id"].as_str().unwrap();
    let (_, buyer) = app.customer("b@x.io").await;
    let allowed = client_from("127.0.0.2");
    let mut limited = Vec::new();
    let mut exempt = Vec::new();
    for _ in 0..5 {
        limited.push(app.purchase(&buyer, id, json!(1)).await.status().as_u16());
        exempt.push(
            purchase_via(&allowed, &app, &buyer, id, 1, &[])
                .await
                .status()
                .as_u16(),
        );
    }
    assert!(
        limited.contains(&429),
        "127.0.0.1 was never limited: {limited:?}"
    );
    assert_eq!(exempt, [201; 5], "the allowed address is never limited");
    let sold = limited.iter().filter(|s| **s == 201).count() as i64 + 5;
    assert_eq!(app.get_sale(id).await["availableUnits"], 100 - sold);
}

#[tokio::test]
async fn the_sign_up_limit_answers_429_with_retry_after_and_creates_nobody() {
    let app = spawn_app_with(set(&[("RATE_SIGNUP_PER_IP", "2")])).await;
    assert_eq!(
        app.signup("A", "a@x.io", "long-password").await.status(),
        201
    );
    assert_eq!(
        app.signup("B", "b@x.io", "long-password").await.status(),
        201
    );
    let r = app.signup("C", "c@x.io", "long-password").await;
    assert_limited(r, "signup-ip").await;
    // A taken email is refused by the limit too, before it can answer 409.
    assert_error(
        app.signup("A", "a@x.io", "long-password").await,
        429,
        "RATE_LIMITED",
    )
    .await;
    let users = app
        .mongo()
        .await
        .collection::<mongodb::bson::Document>("users");
    let c = users
        .count_documents(mongodb::bson::doc! { "email": "c@x.io" })
        .await
        .unwrap();
    assert_eq!(c, 0, "the refused sign-up created nobody");
    // Another address has its own allowance.
    let r = client_from("127.0.0.2")
        .post(app.url("/api/signup"))
        .json(&json!({ "name": "D", "email": "d@x.io", "password": "long-password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn a_wrong_password_flood_from_one_address_does_not_lock_the_victim_out_elsewhere() {
    let app = spawn_app_with(set(&[
        ("RATE_SIGNIN_PER_ACCOUNT", "3"),
        ("RATE_SIGNIN_PER_ACCOUNT_GLOBAL", "8"),
    ]))
    .await;
    app.customer("victim@x.io").await; // one sign-in from 127.0.0.1
    let signin = |from: &'static str, password: &'static str| {
        let url = app.url("/api/signin");
        async move {
            client_from(from)
                .post(url)
                .json(&json!({ "email": "victim@x.io", "password": password }))
                .send()
                .await
                .unwrap()
        }
    };
    let mut codes = Vec::new();
    for _ in 0..10 {
        codes.push(
            signin("127.0.0.2", "wrong-password")
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(codes[..3], [401, 401, 401]);
    assert!(codes[3..].iter().all(|c| *c == 429), "{codes:?}");
    // The victim, from their own address, is not locked out.
    assert_eq!(signin("127.0.0.3", "buyer-password").await.status(), 200);

    // Guessing spread over addresses meets the gentler per-account limit:
    // 5 of its 8 are spent (1 + 3 + 1), 3 more from a new address...
    for _ in 0..3 {
        assert_eq!(signin("127.0.0.4", "wrong-password").await.status(), 401);
    }
    // ...and then every address waits.
    let r = signin("127.0.0.5", "wrong-password").await;
    assert_limited(r, "signin-account-global").await;
}

/// Every refusal is recorded, none sampled away, and a flood is one
/// document per kind with its count (README "Security notes").
#[tokio::test]
async fn a_thousand_refusals_of_a_blocked_address_are_one_event_counted_1000_times() {
    let app = spawn_app_with(set(&[("IP_DENY", "127.0.0.41,127.0.0.42")])).await;
    let url = app.url("/api/products");
    let flood = client_from("127.0.0.41");
    let other = client_from("127.0.0.42");
    let blocked = client_from("127.0.0.43");
    let r = app
        .post(
            "/api/admin/blocklist",
            Some(&app.admin_token),
            &json!({ "type": "ip", "value": "127.0.0.43" }),
        )
        .await;
    assert_eq!(r.status(), 201);
    assert!(
        eventually(PATIENCE, || async {
            app.state
                .fraud
                .blocklist
                .is_ip_blocked("127.0.0.43".parse().unwrap())
        })
        .await
    );

    for (client, n) in [(&flood, 1000), (&other, 3), (&blocked, 2)] {
        for _ in 0..n {
            let r = client.get(&url).send().await.unwrap();
            assert_eq!(r.status(), 403);
        }
    }
    // The first of each kind went out at once; the repeats are folded.
    assert_eq!(
        app.state.fraud.log.flush().await,
        3,
        "one folded event per kind"
    );

    let expected = [
        ("ip-deny", "127.0.0.41", 1000),
        ("ip-deny", "127.0.0.42", 3),
        ("blocklist-ip", "127.0.0.43", 2),
    ];
    let listing = || async {
        let v: Value = app
            .get("/api/fraud/events?limit=1000", Some(&app.admin_token))
            .await
            .json()
            .await
            .unwrap();
        v.as_array().cloned().unwrap_or_default()
    };
    let stored = eventually(PATIENCE, || async {
        app.flush().await;
        let total: i64 = listing()
            .await
            .iter()
            .map(|e| e["count"].as_i64().unwrap_or(0))
            .sum();
        total == 1005
    })
    .await;
    let events = listing().await;
    assert!(stored, "every refusal is counted: {events:?}");
    assert_eq!(events.len(), 3, "one document per kind: {events:?}");
    for (rule, ip, count) in expected {
        let e = events
            .iter()
            .find(|e| e["rule"] == rule && e["ip"] == ip)
            .unwrap_or_else(|| panic!("{rule} {ip}: {events:?}"));
        assert_eq!(e["count"], count, "{e}");
        assert_eq!(e["action"], "blocked");
        assert!(e["firstAt"].as_str().unwrap() <= e["lastAt"].as_str().unwrap());
    }

    // An entry delivered twice (a consumer died before XACK) counts once.
    let ev =
        flashsale::fraud::FraudEvent::blocked("ip-deny", None, "127.0.0.44".parse().unwrap(), None);
    let occ = flashsale::fraud::Occurrences {
        entry: "1-1".into(),
        event: ev,
    };
    let store = &app.state.fraud_store;
    assert_eq!(
        store.apply(std::slice::from_ref(&occ)).await.unwrap().new,
        1
    );
    assert_eq!(store.apply(&[occ]).await.unwrap().new, 0);
    let listed = store
        .list(None, None, Some("ip-deny"), 0, 100)
        .await
        .unwrap();
    let e = listed.iter().find(|e| e.ip == "127.0.0.44").unwrap();
    assert_eq!(e.count, 1);
}

#[tokio::test]
async fn the_fraud_event_and_order_listings_have_their_indexes() {
    let app = spawn_app().await;
    let db = app.mongo().await;
    let keys = |coll: &'static str| {
        let db = db.clone();
        async move {
            use futures_util::TryStreamExt;
            let idx: Vec<mongodb::IndexModel> = db
                .collection::<mongodb::bson::Document>(coll)
                .list_indexes()
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            idx.into_iter().map(|i| i.keys).collect::<Vec<_>>()
        }
    };
    use mongodb::bson::doc;
    let fraud = keys("fraud_events").await;
    for want in [
        doc! { "lastAt": -1, "_id": -1 },
        doc! { "flashSaleId": 1, "lastAt": -1, "_id": -1 },
        doc! { "userId": 1, "lastAt": -1, "_id": -1 },
        doc! { "rule": 1, "lastAt": -1, "_id": -1 },
    ] {
        assert!(
            fraud.contains(&want),
            "fraud_events lacks {want}: {fraud:?}"
        );
    }
    let orders = keys("orders").await;
    for want in [
        doc! { "flashSaleId": 1, "seq": 1 },
        doc! { "flashSaleId": 1, "userId": 1, "seq": 1 },
        doc! { "userId": 1, "purchasedAt": -1, "_id": -1 },
        doc! { "purchasedAt": -1, "_id": -1 },
    ] {
        assert!(orders.contains(&want), "orders lacks {want}: {orders:?}");
    }
}
