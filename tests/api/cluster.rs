//! Redis Cluster: sales spread over three primaries, two app instances.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mongodb::bson::doc;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::helpers::{TestApp, eventually, spawn_app_on, unique_db, units};
use crate::storm::{Storm, big_sale};
use crate::support::cluster::RedisCluster;
use crate::support::mongo;

#[tokio::test]
async fn sales_on_every_primary_sell_exactly_their_stock_through_two_instances() {
    let cluster = RedisCluster::start(3);
    let (mongo_url, db) = (mongo::shared_url(), unique_db());
    let a = Arc::new(spawn_app_on(&cluster.url(), &mongo_url, &db, |_| {}).await);
    let b = Arc::new(spawn_app_on(&cluster.url(), &mongo_url, &db, |_| {}).await);

    // Enough sales that every primary holds some (slots follow the sale ids).
    let mut sales: Vec<String> = Vec::new();
    let mut owners: HashMap<u16, Vec<String>> = HashMap::new();
    while owners.len() < 3 || sales.len() < 6 {
        assert!(sales.len() < 60, "sales never spread over all primaries");
        let s = a.open_sale(20, 3, 3).await;
        let id = s["id"].as_str().unwrap().to_owned();
        owners
            .entry(cluster.owner_of(&format!("{{sale:{id}}}:stock")))
            .or_default()
            .push(id.clone());
        sales.push(id);
    }

    // A watcher on each instance joins one sale of each primary.
    let (_, watcher) = a.customer("watch@x.io").await;
    let watched: Vec<String> = owners.values().map(|v| v[0].clone()).collect();
    let mut ws_a = a.ws(&watcher).await;
    let mut ws_b = b.ws(&watcher).await;
    for id in &watched {
        ws_a.join(id).await;
        ws_b.join(id).await;
    }

    // 40 buyers, each sale, both instances, concurrently.
    let buyers: Vec<String> = futures_util::stream::iter(0..40)
        .map(|i| {
            let a = a.clone();
            async move { a.customer(&format!("buyer{i}@x.io")).await.1 }
        })
        .buffered(8)
        .collect()
        .await;
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (i, token) in buyers.into_iter().enumerate() {
        let (apps, sales, results) = ([a.clone(), b.clone()], sales.clone(), results.clone());
        tasks.push(tokio::spawn(async move {
            for (j, sale) in sales.iter().enumerate() {
                let app: &TestApp = &apps[(i + j) % 2];
                let r = app.purchase(&token, sale, json!(1 + (i + j) % 3)).await;
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap();
                results.lock().await.push((sale.clone(), status, body));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut sold: HashMap<String, i64> = HashMap::new();
    for (sale, status, body) in results.lock().await.iter() {
        match status {
            201 => *sold.entry(sale.clone()).or_default() += body["quantity"].as_i64().unwrap(),
            409 | 403 => {}
            s => panic!("unexpected {s}: {body}"),
        }
    }
    for s in &sales {
        assert_eq!(
            sold.get(s).copied().unwrap_or(0),
            20,
            "sale {s} sold exactly its stock"
        );
    }

    // Watchers on both instances saw sales on every primary reach 0.
    for ws in [&mut ws_a, &mut ws_b] {
        let mut zero: HashSet<String> = HashSet::new();
        while zero.len() < watched.len() {
            let ev = ws
                .next_event(Duration::from_secs(10))
                .await
                .expect("updates for every watched sale");
            if ev["event"] == "stockUpdate" && ev["data"]["availableUnits"] == 0 {
                zero.insert(ev["data"]["flashSaleId"].as_str().unwrap().to_owned());
            }
        }
    }

    // Every order reaches MongoDB.
    a.flush().await;
    for s in &sales {
        let oid = mongodb::bson::oid::ObjectId::parse_str(s).unwrap();
        let orders = a.stored_orders(doc! { "flashSaleId": oid }).await;
        assert_eq!(units(&orders), 20, "orders of sale {s} in MongoDB");
        let rec = a
            .state
            .reconciler
            .sale(flashsale::ids::SaleId::parse(s).unwrap())
            .await
            .unwrap();
        assert!(rec.consistent, "{rec:?}");
    }
}

#[tokio::test]
async fn a_primary_killed_mid_storm_is_replaced_by_its_replica_and_no_acknowledged_order_is_lost() {
    // Three primaries with a replica each; orders confirmed by the replica.
    let mut cluster = RedisCluster::start_with_replicas(3, 1, &[]);
    let (mongo_url, db) = (mongo::shared_url(), unique_db());
    let ack = |s: &mut crate::helpers::Settings| {
        s.insert("REDIS_ACK_REPLICAS", "1".to_owned());
        s.insert("REDIS_ACK_TIMEOUT_MS", "500".to_owned());
    };
    let a = spawn_app_on(&cluster.url(), &mongo_url, &db, ack).await;
    let b = spawn_app_on(&cluster.url(), &mongo_url, &db, ack).await;
    // One sale on each primary.
    let mut by_primary: HashMap<u16, String> = HashMap::new();
    for _ in 0..60 {
        let sale = big_sale(&a).await;
        let owner = cluster.owner_of(&format!("{{sale:{sale}}}:stock"));
        by_primary.entry(owner).or_insert(sale);
        if by_primary.len() == 3 {
            break;
        }
    }
    assert_eq!(by_primary.len(), 3, "sales never spread over all primaries");
    let bases = [a.base.clone(), b.base.clone()];
    let storms: Vec<(String, Storm)> = by_primary
        .values()
        .map(|sale| (sale.clone(), Storm::start(&bases, sale, 4)))
        .collect();
    for (_, storm) in &storms {
        assert!(storm.reaches(100).await, "every storm got going");
    }

    // Act: kill one primary; its replica takes over its slots.
    let (&victim, victim_sale) = by_primary.iter().next().unwrap();
    let victim_sale = victim_sale.clone();
    let killed_at = Instant::now();
    cluster.kill(victim);
    let victim_storm = &storms.iter().find(|(s, _)| *s == victim_sale).unwrap().1;
    // The replica takes the slots over; it has no replica of its own until
    // the killed node comes back (as a supervisor restarts it) and rejoins
    // as its replica: until then its orders cannot be confirmed (503).
    assert!(
        eventually(Duration::from_secs(30), || async {
            cluster
                .primary_of(&format!("{{sale:{victim_sale}}}:stock"))
                .is_some_and(|p| p != victim)
        })
        .await,
        "the replica took over the killed primary's slots"
    );
    cluster.restart(victim);
    assert!(
        eventually(Duration::from_secs(40), || async {
            victim_storm
                .first_accepted_after(killed_at, bases.len())
                .iter()
                .all(Option::is_some)
        })
        .await,
        "the killed primary's sale sells again on both instances"
    );
    let recovered: Vec<f64> = victim_storm
        .first_accepted_after(killed_at, bases.len())
        .iter()
        .map(|t| t.unwrap().duration_since(killed_at).as_secs_f64())
        .collect();
    for (_, storm) in &storms {
        let more = storm.accepted() + 100;
        assert!(storm.reaches(more).await, "every sale keeps selling");
    }
    let mut accepted: Vec<(String, Vec<String>)> = Vec::new();
    for (sale, storm) in storms {
        let result = storm.stop().await;
        result.assert_clean();
        accepted.push((sale, result.accepted));
    }
    println!(
        "cluster failover with REDIS_ACK_REPLICAS=1: first 201 on the killed primary's sale {recovered:?} s after the kill"
    );

    // Assert: every acknowledged order in MongoDB once; each sale's units
    // sold in Redis equal its orders in MongoDB.
    a.flush().await;
    let stored: HashSet<String> = crate::helpers::stored_order_ids(&mongo_url, &db)
        .await
        .into_iter()
        .collect();
    for (sale, ids) in &accepted {
        let distinct: HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "no order id acknowledged twice");
        let lost: Vec<&&String> = distinct
            .iter()
            .filter(|id| !stored.contains(**id))
            .collect();
        assert!(
            lost.is_empty(),
            "{sale}: acknowledged orders lost: {lost:?}"
        );
        let sale_id = flashsale::ids::SaleId::parse(sale).unwrap();
        let report = a.state.reconciler.sale(sale_id).await.unwrap();
        assert!(report.consistent && report.difference == 0, "{report:?}");
        let in_mongo = stored
            .iter()
            .filter(|id| id.starts_with(sale.as_str()))
            .count();
        assert_eq!(report.redis_sold, in_mongo as i64, "{sale}");
    }
}
