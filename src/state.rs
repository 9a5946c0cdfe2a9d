//! The application state every request handler may use, built by `app` and
//! shared behind an `Arc`. Its own module so that `http` (which reads it) and
//! `app` (which builds it and runs `http::server`) do not import each other.

use std::sync::Arc;

use fred::prelude::Pool;
use mongodb::Database;

use crate::auth::{Keys, PasswordHasher, TokenEpochs, UserStore, WsTickets};
use crate::catalog::ProductStore;
use crate::config::Config;
use crate::engine::PurchaseEngine;
use crate::fraud::{Fraud, FraudStore};
use crate::hot::HotSales;
use crate::leaderboard::Leaderboard;
use crate::orders::{OrderStore, PendingOrders};
use crate::realtime::{Hub, Sockets};
use crate::reconcile::Reconciler;
use crate::sales::SaleService;
use crate::write_behind::WriteBehind;

/// Everything a request handler may use. Shared behind an `Arc`.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    pub db: Database,
    pub keys: Keys,
    /// Every user's token epoch, in memory; a token below it is revoked.
    pub epochs: Arc<TokenEpochs>,
    /// One-use WebSocket tickets, in Redis.
    pub tickets: WsTickets,
    pub hasher: PasswordHasher,
    pub users: UserStore,
    pub products: ProductStore,
    pub sales: SaleService,
    /// The Redis pool every concern's store shares (cheap to clone).
    pub redis: Pool,
    pub engine: PurchaseEngine,
    pub hot: HotSales,
    pub orders: OrderStore,
    /// Orders still in the sales' streams, not yet in MongoDB.
    pub pending_orders: PendingOrders,
    pub write_behind: WriteBehind,
    pub leaderboard: Leaderboard,
    pub reconciler: Reconciler,
    pub hub: Arc<Hub>,
    /// What every WebSocket task shares (the hub, hot state, limits).
    pub sockets: Arc<Sockets>,
    /// Admission control: one permit per request being handled.
    pub admission: Arc<tokio::sync::Semaphore>,
    /// Sign-in and sign-up's share of `admission`: one of these too per
    /// authentication request, so they can never take every permit. Most of
    /// it for addresses with no failed sign-in lately, an eighth for the
    /// others, so a flood of failing sign-ins cannot crowd out real customers.
    pub auth_admission: AuthAdmission,
    pub fraud: Arc<Fraud>,
    pub fraud_store: FraudStore,
    /// This process's name among instances (scheduler lease, stream consumer).
    pub instance: String,
}

/// The two parts of sign-in and sign-up's share of the in-flight limit.
#[derive(Debug)]
pub struct AuthAdmission {
    /// Sign-ins from addresses without a failed sign-in in the window.
    pub clean: Arc<tokio::sync::Semaphore>,
    /// Sign-ins from addresses with failures, and sign-ups.
    pub failing: Arc<tokio::sync::Semaphore>,
}

impl AuthAdmission {
    /// Splits `permits`: an eighth (at least one) for failing addresses and
    /// sign-ups, the rest (at least one) for clean addresses. The failing
    /// share is small because each of its requests still costs a MongoDB
    /// lookup, and those lookups queue with the real customers' ones.
    pub fn new(permits: usize) -> Self {
        let failing = (permits / 8).max(1);
        Self {
            clean: Arc::new(tokio::sync::Semaphore::new(
                permits.saturating_sub(failing).max(1),
            )),
            failing: Arc::new(tokio::sync::Semaphore::new(failing)),
        }
    }
}
