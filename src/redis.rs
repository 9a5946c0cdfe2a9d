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
