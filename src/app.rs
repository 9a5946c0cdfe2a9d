//! The application: builds every part from a [`Config`], binds the listener,
//! and runs the server and background tasks until told to stop.
//!
//! Tests start it on port 0 with `App::build` + `local_addr()` +
//! `run_until_stopped(token)`; `main` does the same with a signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fred::prelude::ClientLike;
use mongodb::Database;
use mongodb::options::ClientOptions;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::{Keys, NewUser, PasswordHasher, Role, TokenEpochs, UserStore, normalize_email};
use crate::catalog::ProductStore;
use crate::config::Config;
use crate::engine::PurchaseEngine;
use crate::hot::HotSales;
use crate::leaderboard::Leaderboard;
use crate::orders::{OrderStore, PendingOrders};
use crate::reconcile::Reconciler;
use crate::sales::{SaleService, SaleStore};
use crate::state::AppState;
use crate::write_behind::WriteBehind;

/// A built application, listening but not yet serving.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    state: Arc<AppState>,
    source: crate::realtime::Source,
    /// With Sentinel: reconnects to a new primary as soon as one is promoted.
    switches: Option<crate::redis::sentinel::SwitchWatcher>,
}

/// Connects to MongoDB (lazily; the driver connects on first use).
pub async fn connect_mongo(config: &Config) -> anyhow::Result<Database> {
    let mut opts = ClientOptions::parse(&config.mongo.url)
        .await
        .context("MONGO_URL: cannot parse")?;
    opts.app_name = Some("flashsale".to_owned());
    opts.max_pool_size = Some(config.mongo.pool_size);
    opts.server_selection_timeout = Some(Duration::from_secs(5));
    opts.connect_timeout = Some(Duration::from_secs(3));
    let client =
        mongodb::Client::with_options(opts).context("failed to build the MongoDB client")?;
    Ok(client.database(&config.mongo.database))
}

/// A consumer name unique to this process, for the order streams' group.
fn consumer_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "flashsale".to_owned());
    let nonce = mongodb::bson::oid::ObjectId::new().to_hex();
    format!("{host}-{}-{}", std::process::id(), &nonce[16..])
}

impl App {
    /// Connects the stores, prepares them, and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        crate::metrics::handle();
        let state = Arc::new(build_state(config).await?);
        crate::redis::check_server(state.redis.next())
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        crate::redis::script::load_all(
            state.redis.next(),
            &[
                &crate::engine::PURCHASE,
                &crate::hot::SEED_SALE,
                &crate::hot::CANCEL_SALE,
                &crate::redis::lease::UNLOCK,
                &crate::redis::lease::LEASE_ACQUIRE,
                &crate::redis::lease::LEASE_RENEW,
                &crate::leaderboard::LEADERBOARD,
            ],
        )
        .await
        .context("failed to load the Redis scripts")?;
        ensure_indexes(&state).await?;
        bootstrap_admin(&state).await?;
        let n = state
            .sales
            .reseed_missing()
            .await
            .context("failed to re-seed open sales into Redis")?;
        if n > 0 {
            tracing::warn!(
                sales = n,
                "Redis had lost open sales; re-seeded them from MongoDB"
            );
        }
        state
            .fraud
            .blocklist
            .reload()
            .await
            .context("failed to load the blocklist")?;
        state
            .epochs
            .reload()
            .await
            .context("failed to load the token epochs")?;
        let subscriber = crate::redis::build_subscriber(&state.config.redis)
            .context("REDIS_URL: invalid Redis configuration")?;
        let switches = crate::redis::sentinel::SwitchWatcher::new(
            &state.config.redis,
            state.redis.clone(),
            vec![subscriber.clone()],
        )
        .context("REDIS_SENTINELS: invalid Sentinel configuration")?;
        let source = crate::realtime::Source::new(
            subscriber,
            state.hub.clone(),
            state.hot.clone(),
            state.fraud.blocklist.clone(),
            state.epochs.clone(),
            state.config.realtime.stock_tick,
        );
        tokio::time::timeout(Duration::from_secs(10), source.connect())
            .await
            .context("timed out subscribing to Redis")?
            .context("failed to subscribe to Redis")?;
        let addr = SocketAddr::new(state.config.http.bind, state.config.http.port);
        let listener = bind(addr).with_context(|| format!("failed to bind {addr}"))?;
        Ok(Self {
            listener,
            state,
            source,
            switches,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `stop` is cancelled, then shuts down in order: stop
    /// accepting, finish in-flight requests (up to the grace period), close
    /// WebSockets with 1001, give up scheduler leadership, drain the write-behind.
    ///
    /// Every background task runs inside this future (none is spawned), so
    /// aborting it stops the whole instance at once, as a crash would.
    pub async fn run_until_stopped(self, stop: CancellationToken) {
        let state = self.state;
        let background = CancellationToken::new();
        let write_behind = state
            .write_behind
            .clone()
            .run_until_stopped(background.clone(), state.config.http.shutdown_grace);
        let scheduler = crate::scheduler::Scheduler::new(
            state.redis.clone(),
            state.hot.clone(),
            state.sales.store.clone(),
            &state.config.redis.lease_key,
            state.instance.clone(),
            state.config.scheduler.lease,
            state.config.scheduler.tick,
        )
        .run_until_stopped(background.clone());
        let source = self.source.run_until_stopped(background.clone());
        let switches = async {
            if let Some(w) = self.switches {
                w.run_until_stopped(background.clone()).await;
            }
        };
        let upkeep = upkeep(state.clone(), background.clone());
        let server = async {
            crate::http::server::run(self.listener, state.clone(), stop).await;
            state.hub.stop.cancel();
            state.hub.tracker.close();
            if tokio::time::timeout(Duration::from_secs(3), state.hub.tracker.wait())
                .await
                .is_err()
            {
                tracing::warn!("some WebSockets did not close in time");
            }
            background.cancel();
        };
        tokio::join!(server, write_behind, scheduler, source, switches, upkeep);
        tracing::info!("stopped");
    }
}

async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let pool = crate::redis::build_pool(&config.redis)
        .context("REDIS_URL: invalid Redis configuration")?;
    tokio::time::timeout(Duration::from_secs(10), pool.init())
        .await
        .context("timed out connecting to Redis")?
        .context("failed to connect to Redis")?;
    let db = connect_mongo(&config).await?;
    db.run_command(mongodb::bson::doc! { "ping": 1 })
        .await
        .context("failed to reach MongoDB")?;

    let keys = Keys::new(
        config.auth.secret_key.expose().as_bytes(),
        &config.auth.issuer,
        config.auth.token_ttl,
    );
    let hasher = PasswordHasher::new(config.auth.password_iterations, config.auth.hash_limits)
        .context("failed to set up password hashing")?;
    let users = UserStore::new(&db);
    let epochs = Arc::new(TokenEpochs::new(pool.clone()));
    let products = ProductStore::new(&db);
    let orders = OrderStore::new(&db);
    let closed = Arc::new(crate::engine::ClosedSales::default());
    let hot = HotSales::new(pool.clone(), closed.clone());
    let engine = PurchaseEngine::new(
        pool.clone(),
        closed,
        config.sales.idempotency_ttl,
        crate::engine::AttemptLimit {
            max: config.fraud.attempts_per_window,
            window: config.fraud.attempts_window,
        },
        crate::engine::AckPolicy {
            replicas: config.redis.ack_replicas,
            timeout: config.redis.ack_timeout,
        },
    );
    let sale_store = SaleStore::new(&db);
    let sales = SaleService::new(
        sale_store.clone(),
        products.clone(),
        pool.clone(),
        hot.clone(),
        orders.clone(),
        crate::sales::SaleDefaults {
            max_per_user: i64::from(config.sales.default_max_per_user),
            max_per_transaction: i64::from(config.sales.default_max_per_transaction),
            max_accounts_per_ip: i64::from(config.sales.default_max_accounts_per_ip),
        },
    );
    let instance = consumer_name();
    let fraud_store = crate::fraud::FraudStore::new(&db);
    let write_behind = WriteBehind::new(
        pool.clone(),
        instance.clone(),
        config.write_behind.batch_size,
        config.write_behind.claim_idle,
        config.write_behind.interval,
    )
    .with_replica_ack(config.redis.ack_replicas, config.redis.ack_timeout)
    .with_max_deliveries(config.write_behind.max_deliveries)
    .with_sink(orders.clone())
    .with_sink(fraud_store.clone());
    let leaderboard = Leaderboard::new(pool.clone(), users.clone());
    let blocklist = Arc::new(crate::fraud::Blocklist::new(pool.clone()));
    let fraud = Arc::new(crate::fraud::Fraud::new(
        &config.fraud,
        blocklist,
        crate::fraud::FraudLog::new(pool.clone()),
    ));
    let reconciler = Reconciler::new(pool.clone(), orders.clone(), sale_store);
    let pending_orders = PendingOrders::new(pool.clone());
    let hub = crate::realtime::Hub::new(crate::realtime::Caps {
        total: config.realtime.max_connections,
        per_user: config.realtime.max_per_user,
        per_ip: config.realtime.max_per_ip,
    });
    let sockets = Arc::new(crate::realtime::Sockets {
        hub: hub.clone(),
        hot: hot.clone(),
        blocklist: fraud.blocklist.clone(),
        epochs: epochs.clone(),
        cfg: config.realtime.clone(),
    });
    let tickets = crate::auth::WsTickets::new(pool.clone(), config.realtime.ticket_ttl);
    let admission = Arc::new(tokio::sync::Semaphore::new(config.http.max_in_flight));
    let auth_admission = crate::state::AuthAdmission::new(config.http.auth_max_in_flight);
    Ok(AppState {
        config,
        db,
        keys,
        epochs,
        tickets,
        hasher,
        users,
        products,
        sales,
        redis: pool,
        engine,
        hot,
        orders,
        pending_orders,
        write_behind,
        leaderboard,
        reconciler,
        sockets,
        hub,
        admission,
        auth_admission,
        instance,
        fraud,
        fraud_store,
    })
}

async fn ensure_indexes(state: &AppState) -> anyhow::Result<()> {
    state
        .users
        .ensure_indexes()
        .await
        .context("failed to create user indexes")?;
    state
        .sales
        .store
        .ensure_indexes()
        .await
        .context("failed to create sale indexes")?;
    state
        .orders
        .ensure_indexes()
        .await
        .context("failed to create order indexes")?;
    state
        .fraud_store
        .ensure_indexes()
        .await
        .context("failed to create fraud event indexes")?;
    Ok(())
}

/// Creates the first admin from ADMIN_EMAIL / ADMIN_PASSWORD when configured.
async fn bootstrap_admin(state: &AppState) -> anyhow::Result<()> {
    let (Some(email), Some(password)) = (
        &state.config.auth.admin_email,
        &state.config.auth.admin_password,
    ) else {
        return Ok(());
    };
    let outcome = ensure_admin(
        state,
        email,
        password.expose(),
        &state.config.auth.admin_name,
    )
    .await?;
    tracing::info!(email = %email, outcome, "admin account checked");
    Ok(())
}

/// Creates an admin, or promotes an existing account (resetting its password
/// to the given one, so an account squatted under the admin email is not
/// handed to whoever registered it). Returns what it did.
pub async fn ensure_admin(
    state: &AppState,
    email: &str,
    password: &str,
    name: &str,
) -> anyhow::Result<&'static str> {
    let new = NewUser::parse(name, email, password, Role::Admin)
        .map_err(|(f, m)| anyhow::anyhow!("ADMIN_{}: {m}", f.to_uppercase()))?;
    let email = normalize_email(email).expect("validated");
    match state.users.by_email(&email).await? {
        Some(u) if u.role == Role::Admin => Ok("exists"),
        Some(_) => {
            let hash = state.hasher.hash(password).await?;
            if let Some(user) = state.users.promote(&email, &hash).await? {
                // Tokens the account's previous holder signed in with are revoked.
                state.epochs.raise(user.user_id(), user.epoch()).await?;
            }
            tracing::warn!(email = %email, "an existing account was promoted to admin and its password reset");
            Ok("promoted")
        }
        None => {
            let hash = state.hasher.hash(password).await?;
            match state.users.insert(&new, hash).await {
                Ok(_) => Ok("created"),
                // Another instance created it at the same moment.
                Err(crate::auth::UserError::EmailTaken) => Ok("exists"),
                Err(crate::auth::UserError::Store(e)) => Err(e.into()),
            }
        }
    }
}

/// Builds the state without binding, for subcommands.
pub async fn state_for_command(config: Config) -> anyhow::Result<Arc<AppState>> {
    let state = Arc::new(build_state(config).await?);
    ensure_indexes(&state).await?;
    Ok(state)
}

/// Periodic housekeeping: limiter and velocity sweeps, the fraud log's
/// folded repeats, and blocklist and token epoch reloads in case a change
/// notification was missed.
async fn upkeep(state: Arc<AppState>, stop: CancellationToken) {
    let mut sweep = tokio::time::interval(Duration::from_secs(10));
    let mut reload = tokio::time::interval(Duration::from_secs(5));
    let mut metrics_tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                // Repeats folded since the last tick go to the stream (the
                // write-behind, or the next instance's, stores them).
                state.fraud.log.flush().await;
                break;
            }
            _ = sweep.tick() => state.fraud.sweep(),
            _ = metrics_tick.tick() => {
                crate::metrics::upkeep();
                state.write_behind.report_backlog().await;
                state.fraud.log.flush().await;
            }
            _ = reload.tick() => {
                if let Err(e) = state.fraud.blocklist.reload().await {
                    tracing::warn!(error = %crate::error::ErrorChain(&e), "blocklist reload failed");
                }
                if let Err(e) = state.epochs.reload().await {
                    tracing::warn!(error = %crate::error::ErrorChain(&e), "token epoch reload failed");
                }
            }
        }
    }
}

/// Binds with a deep accept queue: at the opening of a sale thousands of
/// clients connect at once, and the default backlog of 128 makes the excess
/// wait for a one-second SYN retry.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}
