//! Redis: the connection (one fred pool, configured so that a lost connection
//! is re-established by itself, commands time out, and the command queue is
//! bounded; fred's defaults have none of these), start-up checks of the
//! server's settings, and the primitives every concern shares: scripts
//! called by SHA (`script`), locks and leases (`lease`), confirmation of
//! writes by replicas (`ack`), following Sentinel failovers (`sentinel`),
//! TIME and PING.

pub mod ack;
pub mod lease;
pub mod script;
pub mod sentinel;

pub use script::Script;

use std::time::Duration;

use fred::prelude::*;
use fred::types::config::UnresponsiveConfig;

use crate::config::RedisConfig;

/// Builds the pool without connecting.
pub fn build_pool(cfg: &RedisConfig) -> Result<Pool, Error> {
    builder(cfg)?.build_pool(cfg.pool_size)
}

/// A client for subscriptions (lifecycle, blocklist and token epoch events).
/// Its event channels are deep, so a burst of events lags rather than drops.
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

/// Redis's clock in unix milliseconds (the clock sale windows use).
pub async fn time_ms(pool: &Pool) -> Result<i64, Error> {
    client_time_ms(pool.next()).await
}

/// [`time_ms`] on one client.
pub async fn client_time_ms(client: &Client) -> Result<i64, Error> {
    let t: Vec<String> = client
        .custom(
            fred::types::CustomCommand::new_static("TIME", fred::types::ClusterHash::Random, false),
            Vec::<String>::new(),
        )
        .await?;
    let secs: i64 = t.first().and_then(|s| s.parse().ok()).unwrap_or(0);
    let micros: i64 = t.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok(secs * 1000 + micros / 1000)
}

/// Redis answers PING.
pub async fn ping(pool: &Pool) -> Result<(), Error> {
    let _: String = pool.next().ping(None).await?;
    Ok(())
}

/// What the service needs to know about the Redis server's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub maxmemory_policy: String,
    pub appendonly: String,
    pub appendfsync: String,
}

/// The primaries of a Redis Cluster; empty for a single server.
pub fn primaries(client: &Client) -> Vec<fred::types::config::Server> {
    if !client.client_config().server.is_clustered() {
        return Vec::new();
    }
    client
        .cached_cluster_state()
        .map(|s| s.unique_primary_nodes())
        .unwrap_or_default()
}

/// Runs a command on every node that holds data: each primary of a cluster,
/// or the one server. Node-local settings (CONFIG) need this.
pub async fn on_each_node(
    client: &Client,
    name: &'static str,
    args: Vec<String>,
) -> Result<Vec<Value>, Error> {
    use fred::types::{ClusterHash, CustomCommand};
    let cmd = || CustomCommand::new_static(name, ClusterHash::Random, false);
    let nodes = primaries(client);
    if nodes.is_empty() {
        return Ok(vec![client.custom(cmd(), args).await?]);
    }
    let mut out = Vec::with_capacity(nodes.len());
    for n in nodes {
        out.push(
            client
                .with_cluster_node(n)
                .custom(cmd(), args.clone())
                .await?,
        );
    }
    Ok(out)
}

async fn config_get(client: &Client, name: &str) -> Result<Vec<String>, Error> {
    let replies = on_each_node(client, "CONFIG", vec!["GET".to_owned(), name.to_owned()]).await?;
    Ok(replies
        .into_iter()
        .map(|v| {
            let v: Vec<String> = v.convert().unwrap_or_default();
            v.get(1).cloned().unwrap_or_default()
        })
        .collect())
}

/// Reads the settings that decide safety and durability; on a cluster, the
/// weakest value seen on any primary.
pub async fn server_settings(client: &Client) -> Result<ServerSettings, Error> {
    let pick = |vals: Vec<String>, good: &str| {
        vals.iter()
            .find(|v| *v != good)
            .cloned()
            .or_else(|| vals.first().cloned())
            .unwrap_or_default()
    };
    Ok(ServerSettings {
        maxmemory_policy: pick(config_get(client, "maxmemory-policy").await?, "noeviction"),
        appendonly: pick(config_get(client, "appendonly").await?, "yes"),
        appendfsync: pick(config_get(client, "appendfsync").await?, "always"),
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
