//! The Redis connection: one fred pool, configured so that a lost connection
//! is re-established by itself, commands time out, and the command queue is
//! bounded (fred's defaults have none of these).

use std::time::Duration;

use fred::prelude::*;
use fred::types::config::UnresponsiveConfig;

use crate::config::RedisConfig;

/// Builds the pool without connecting.
pub fn build_pool(cfg: &RedisConfig) -> Result<Pool, Error> {
    builder(cfg)?.build_pool(cfg.pool_size)
}

/// A client for subscriptions (keyspace notifications, lifecycle events).
/// Its event channels are deep, so a burst of notifications lags rather than drops.
pub fn build_subscriber(cfg: &RedisConfig) -> Result<fred::clients::SubscriberClient, Error> {
    let mut b = builder(cfg)?;
    b.with_performance_config(|p| {
        p.broadcast_channel_capacity = 16 * 1024;
    });
    b.build_subscriber_client()
}

fn builder(cfg: &RedisConfig) -> Result<Builder, Error> {
    let config = Config::from_url(cfg.url.expose())?;
    let mut builder = Builder::from_config(config);
    builder
        .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
        .with_performance_config(|p| {
            p.default_command_timeout = cfg.command_timeout;
        })
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(2);
            c.internal_command_timeout = Duration::from_secs(2);
            c.max_command_buffer_len = cfg.max_queue;
            // Commands are not retried after a connection error: a purchase
            // whose fate is unknown is answered 503 and the client retries
            // with its Idempotency-Key.
            c.max_command_attempts = 1;
            c.unresponsive = UnresponsiveConfig {
                max_timeout: Some(Duration::from_secs(3)),
                interval: Duration::from_secs(1),
            };
        });
    Ok(builder)
}

/// Builds and connects the pool, waiting for the first connection.
pub async fn connect(cfg: &RedisConfig) -> Result<Pool, Error> {
    let pool = build_pool(cfg)?;
    pool.init().await?;
    Ok(pool)
}

/// What the service needs to know about the Redis server's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub maxmemory_policy: String,
    pub appendonly: String,
    pub appendfsync: String,
}

async fn config_get(client: &Client, name: &str) -> Result<String, Error> {
    use fred::types::{ClusterHash, CustomCommand};
    let v: Vec<String> = client
        .custom(
            CustomCommand::new_static("CONFIG", ClusterHash::Random, false),
            vec!["GET".to_owned(), name.to_owned()],
        )
        .await?;
    Ok(v.get(1).cloned().unwrap_or_default())
}

/// Reads the settings that decide safety and durability.
pub async fn server_settings(client: &Client) -> Result<ServerSettings, Error> {
    Ok(ServerSettings {
        maxmemory_policy: config_get(client, "maxmemory-policy").await?,
        appendonly: config_get(client, "appendonly").await?,
        appendfsync: config_get(client, "appendfsync").await?,
    })
}

/// Refuses an evicting Redis: an evicted stock or idempotency key would
/// silently reset a sale (oversell) or allow a double purchase. Logs and
/// exports the persistence mode. When CONFIG is not available (managed
/// Redis), it warns and goes on.
pub async fn check_server(client: &Client) -> Result<(), String> {
    let s = match server_settings(client).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the Redis configuration; make sure maxmemory-policy is noeviction and AOF is on");
            return Ok(());
        }
    };
    if s.maxmemory_policy != "noeviction" {
        return Err(format!(
            "REDIS_URL: Redis maxmemory-policy is `{}`; it must be `noeviction` (an evicted stock key would silently reset a sale)",
            s.maxmemory_policy
        ));
    }
    let durable = s.appendonly == "yes" && s.appendfsync == "always";
    if durable {
        tracing::info!(appendonly = %s.appendonly, appendfsync = %s.appendfsync, "Redis persistence");
    } else {
        tracing::warn!(
            appendonly = %s.appendonly,
            appendfsync = %s.appendfsync,
            "Redis persistence is weaker than appendonly yes + appendfsync always: accepted orders not yet in MongoDB can be lost if Redis or its host crashes"
        );
    }
    metrics::gauge!(
        crate::metrics::REDIS_PERSISTENCE,
        "appendonly" => s.appendonly,
        "appendfsync" => s.appendfsync,
    )
    .set(1.0);
    Ok(())
}
