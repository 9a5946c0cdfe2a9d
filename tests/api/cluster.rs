//! Redis Cluster: sales spread over three primaries, two app instances.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use mongodb::bson::doc;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::helpers::{TestApp, spawn_app_on, unique_db, units};
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
