//! flashsale: a Redis-first flash-sale purchase engine with MongoDB as the
//! system of record.
//!
//! # Layout
//!
//! Leaves (they use no other module of the crate, or only other leaves):
//!
//! - `config`: every setting, one reader per section, from the environment or a map in tests.
//! - `error`: the one table of stable error codes (HTTP and WebSocket) and `StoreError`.
//! - `ids`, `clock`, `net`: typed ids; now and RFC 3339; client addresses and their keys.
//! - `metrics`: every metric name and the `/metrics` rendering.
//! - `mongo`: MongoDB helpers the stores share (idempotent insert, indexes, paging).
//! - `redis`: the connection and the primitives every concern shares: scripts by SHA,
//!   locks and leases, confirmation by replicas (`redis::ack`), TIME, PING.
//!
//! Concerns, each in the file or folder named after it:
//!
//! - `auth`: accounts, PBKDF2 passwords, HS256 tokens, roles, `CurrentUser`, token
//!   epochs (revoking a user's tokens), one-use WebSocket tickets.
//! - `catalog`: products.
//! - `engine`: the purchase (one EVALSHA and its outcome), every Redis key of a sale,
//!   the in-memory answer for closed sales.
//! - `hot`: a sale's other hot state in Redis: seed, restore, snapshot, stock, cancel.
//! - `sales`: flash sales in MongoDB and their lifecycle (create, rerun, cancel, re-seed).
//! - `orders`: the order record, its store, its write-behind sink, and the orders
//!   still waiting in the sales' streams (listed as pending).
//! - `write_behind`: drains Redis streams into MongoDB, one sink per stream kind.
//! - `reconcile`: per sale, units sold in Redis against orders in MongoDB.
//! - `leaderboard`: buyers ranked by first purchase, from Redis.
//! - `fraud`: IP rules, rate limits, blocklist, velocity rules, the fraud log and its sink.
//! - `realtime`: WebSocket sockets, the per-sale hub (rooms, join snapshots, socket
//!   caps), and its Redis sources (stock, lifecycle, blocklist and epoch changes).
//! - `scheduler`: one leader (a Redis lease) moves sales through their lifecycle.
//!
//! Wiring, on top:
//!
//! - `state`: `AppState`, what every handler may use.
//! - `http`: the server, router, extraction, handlers, and `http::error`, the one
//!   place an error becomes a response.
//! - `app`: builds the state from a config and runs the server and background tasks.
//! - `shutdown`, `telemetry`: the stop signal and logging.
//!
//! No module imports a module that imports it back: `http` reads `state`,
//! and `app` builds `state` and runs `http::server`.
//!
//! A purchase: `http::router` → `http::handlers::purchase` (extract, `fraud`
//! checks) → `engine::PurchaseEngine::purchase` (one EVALSHA, and with
//! `REDIS_ACK_REPLICAS` one grouped WAIT) → a 201 or a `Refusal` rendered by
//! `http::error` → the order waits in the sale's stream → `write_behind`
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
