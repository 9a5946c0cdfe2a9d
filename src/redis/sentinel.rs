//! Following a Sentinel failover at once. fred asks the Sentinels for the
//! primary only when it reconnects, and a primary that hangs (SIGSTOP, a
//! frozen host) keeps its TCP connections open, so commands would time out
//! against it until fred noticed. Every Sentinel announces a promotion on its
//! `+switch-master` channel; on that message this task makes the pool and
//! the subscribers reconnect, which sends them to the new primary.

use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::config::ServerConfig;
use tokio_util::sync::CancellationToken;

use crate::config::RedisConfig;

/// The Sentinels' channel for a completed failover:
/// `<service> <old ip> <old port> <new ip> <new port>`.
pub const SWITCH_MASTER: &str = "+switch-master";

/// Listens to every Sentinel and reconnects its targets on a switch.
#[derive(Debug)]
pub struct SwitchWatcher {
    service: String,
    sentinels: Vec<SubscriberClient>,
    pool: Pool,
    subscribers: Vec<SubscriberClient>,
}

impl SwitchWatcher {
    /// `None` unless the configuration names Sentinels.
    pub fn new(
        cfg: &RedisConfig,
        pool: Pool,
        subscribers: Vec<SubscriberClient>,
    ) -> Result<Option<Self>, Error> {
        let config = Config::from_url(cfg.url.expose())?;
        let ServerConfig::Sentinel {
            hosts,
            service_name,
            password,
            username,
        } = config.server
        else {
            return Ok(None);
        };
        let mut sentinels = Vec::with_capacity(hosts.len());
        for host in hosts {
            let sentinel = Config {
                server: ServerConfig::Centralized { server: host },
                username: username.clone(),
                password: password.clone(),
                ..Config::default()
            };
            let mut b = Builder::from_config(sentinel);
            b.set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
                .with_connection_config(|c| {
                    c.connection_timeout = Duration::from_secs(2);
                });
            sentinels.push(b.build_subscriber_client()?);
        }
        Ok(Some(Self {
            service: service_name,
            sentinels,
            pool,
            subscribers,
        }))
    }

    /// Subscribes to every Sentinel (a Sentinel that is down is retried by
    /// itself), then reconnects the targets on each switch until stopped.
    pub async fn run_until_stopped(self, stop: CancellationToken) {
        let mut rx = Vec::with_capacity(self.sentinels.len());
        for s in &self.sentinels {
            rx.push(s.message_rx());
            s.init().await.ok();
            s.manage_subscriptions();
            if let Err(e) = s.subscribe(SWITCH_MASTER).await {
                tracing::warn!(error = %e, "cannot subscribe to a Sentinel's +switch-master; it is retried on reconnect");
            }
        }
        let (tx, mut switches) = tokio::sync::mpsc::channel::<String>(16);
        let forwarders: Vec<_> = rx
            .into_iter()
            .map(|mut rx| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Ok(m) = rx.recv().await {
                        if let Some(text) = m.value.as_string()
                            && tx.send(text).await.is_err()
                        {
                            break;
                        }
                    }
                })
            })
            .collect();
        drop(tx);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                m = switches.recv() => {
                    let Some(text) = m else { break };
                    if text.split_whitespace().next() != Some(self.service.as_str()) {
                        continue;
                    }
                    self.follow(&text).await;
                }
            }
        }
        for f in forwarders {
            f.abort();
        }
        for s in &self.sentinels {
            let _ = s.quit().await;
        }
    }

    /// Reconnects the pool and the subscribers; every Sentinel announces
    /// the same switch, and reconnecting twice is harmless.
    async fn follow(&self, announcement: &str) {
        tracing::warn!(
            switch = announcement,
            "Sentinel promoted a new primary; reconnecting to it"
        );
        metrics::counter!(crate::metrics::REDIS_FAILOVERS_TOTAL).increment(1);
        if let Err(e) = self.pool.force_reconnection().await {
            tracing::warn!(error = %e, "reconnecting the Redis pool after a failover failed; it retries by itself");
        }
        for s in &self.subscribers {
            if let Err(e) = s.force_reconnection().await {
                tracing::warn!(error = %e, "reconnecting a Redis subscriber after a failover failed; it retries by itself");
            }
        }
    }
}
