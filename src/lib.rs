//! flashsale: a Redis-first flash-sale purchase engine with MongoDB as the
//! system of record.
//!
//! # Layout
//!
//! - `config`: every setting, from the environment or a map in tests.
//! - `app`: builds the parts from a config and runs them (`App`).
//! - `http`: the hyper server, router, extraction and responses.
//! - `auth`: accounts, PBKDF2 passwords, HS256 tokens, roles.
//! - `catalog`: products.
//! - `sales`: flash sales in MongoDB and their hot state in Redis.
//! - `engine`: the one-script purchase and every Redis key of a sale.
//! - `orders`: the order record and its write-behind sink.
//! - `write_behind`: drains Redis streams into MongoDB through one sink per stream kind.
//! - `reconcile`: per sale, units sold in Redis against orders in MongoDB.
//! - `realtime`: WebSocket hub and its Redis sources (keyspace events, pub/sub).
//! - `scheduler`: one leader (Redis lease) moves sales through their lifecycle.
//! - `fraud`: IP rules, rate limits, blocklist, velocity rules, fraud log.
//! - `leaderboard`: buyers ranked by first purchase, from Redis.
//! - `error`: the one table of error codes and the error body.
//! - `mongo`: MongoDB helpers the stores share (idempotent insert, indexes, paging).
//!
//! A purchase: `http::router` → `http::handlers::purchase` → `engine::PurchaseEngine::purchase`
//! (one EVALSHA) → the order waits in the sale's stream → `write_behind::WriteBehind`
//! writes it to MongoDB through the `orders` sink.

pub mod app;
pub mod auth;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod engine;
pub mod error;
pub mod fraud;
pub mod hot;
pub mod http;
pub mod ids;
pub mod leaderboard;
pub mod metrics;
pub mod mongo;
pub mod net;
pub mod orders;
pub mod realtime;
pub mod reconcile;
pub mod redis;
pub mod sales;
pub mod scheduler;
pub mod shutdown;
pub mod state;
pub mod telemetry;
pub mod write_behind;

pub use app::App;
pub use config::Config;
pub use state::AppState;
