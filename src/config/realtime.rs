//! The `realtime` section: WebSocket limits (connections in all, per user
//! and per address; client message rate) and timings, tickets, allowed
//! origins, and how often stock changes are pushed. `crate::realtime` re-exports
//! [`RealtimeConfig`].

use std::time::Duration;

use super::{ConfigError, Reader, Source, list};

pub const ENV_WS_TICK_MS: &str = "WS_TICK_MS";
pub const DEFAULT_WS_TICK_MS: u64 = 100;
pub const ENV_WS_MAX_ROOMS: &str = "WS_MAX_ROOMS";
pub const DEFAULT_WS_MAX_ROOMS: usize = 20;
pub const ENV_WS_MAX_MESSAGE_BYTES: &str = "WS_MAX_MESSAGE_BYTES";
pub const DEFAULT_WS_MAX_MESSAGE_BYTES: usize = 4 * 1024;
pub const ENV_WS_MAX_PER_IP: &str = "WS_MAX_CONNECTIONS_PER_IP";
pub const DEFAULT_WS_MAX_PER_IP: usize = 200;
pub const ENV_WS_QUEUE: &str = "WS_QUEUE";
pub const DEFAULT_WS_QUEUE: usize = 64;
pub const ENV_WS_PING_INTERVAL_MS: &str = "WS_PING_INTERVAL_MS";
pub const DEFAULT_WS_PING_INTERVAL_MS: u64 = 20_000;
pub const ENV_WS_IDLE_TIMEOUT_MS: &str = "WS_IDLE_TIMEOUT_MS";
pub const DEFAULT_WS_IDLE_TIMEOUT_MS: u64 = 60_000;
pub const ENV_WS_SEND_TIMEOUT_MS: &str = "WS_SEND_TIMEOUT_MS";
pub const DEFAULT_WS_SEND_TIMEOUT_MS: u64 = 5_000;
pub const ENV_WS_ALLOWED_ORIGINS: &str = "WS_ALLOWED_ORIGINS";
/// Open WebSockets per instance. Upgraded sockets leave the HTTP connection
/// pool (`MAX_CONNECTIONS`) and count here instead, so sockets can never
/// starve buyers of HTTP connections; the process's file limit must cover
/// both.
pub const ENV_WS_MAX_CONNECTIONS: &str = "WS_MAX_CONNECTIONS";
pub const DEFAULT_WS_MAX_CONNECTIONS: usize = 20_000;
pub const ENV_WS_MAX_PER_USER: &str = "WS_MAX_PER_USER";
pub const DEFAULT_WS_MAX_PER_USER: usize = 5;
pub const ENV_WS_MESSAGES_PER_SECOND: &str = "WS_MESSAGES_PER_SECOND";
pub const DEFAULT_WS_MESSAGES_PER_SECOND: u32 = 10;
pub const ENV_WS_MESSAGES_BURST: &str = "WS_MESSAGES_BURST";
pub const DEFAULT_WS_MESSAGES_BURST: u32 = 20;
pub const ENV_WS_TICKET_TTL_SECS: &str = "WS_TICKET_TTL_SECS";
pub const DEFAULT_WS_TICKET_TTL_SECS: u64 = 30;

/// WebSocket limits.
#[derive(Debug, Clone)]
pub struct RealtimeConfig {
    pub max_rooms: usize,
    pub max_message_bytes: usize,
    pub max_per_ip: usize,
    pub max_connections: usize,
    pub max_per_user: usize,
    /// Client frames per second per socket, past a burst; then 1008.
    pub messages_per_second: u32,
    pub messages_burst: u32,
    /// How long a `POST /api/ws-ticket` ticket may wait to be used.
    pub ticket_ttl: Duration,
    pub queue: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
    pub allowed_origins: Vec<String>,
    pub stock_tick: Duration,
}

/// Reads `WS_MAX_ROOMS`, `WS_MAX_MESSAGE_BYTES`, `WS_MAX_CONNECTIONS_PER_IP`,
/// `WS_MAX_CONNECTIONS`, `WS_MAX_PER_USER`, `WS_MESSAGES_PER_SECOND`,
/// `WS_MESSAGES_BURST`, `WS_TICKET_TTL_SECS`,
/// `WS_QUEUE`, `WS_PING_INTERVAL_MS`, `WS_IDLE_TIMEOUT_MS`,
/// `WS_SEND_TIMEOUT_MS`, `WS_ALLOWED_ORIGINS` (comma-separated; unset allows
/// any) and `WS_TICK_MS`.
pub(super) fn read(src: &dyn Source) -> Result<RealtimeConfig, ConfigError> {
    let r = Reader::new(src);
    Ok(RealtimeConfig {
        max_rooms: r.ranged(ENV_WS_MAX_ROOMS, DEFAULT_WS_MAX_ROOMS, 1, 1_000)?,
        max_message_bytes: r.ranged(
            ENV_WS_MAX_MESSAGE_BYTES,
            DEFAULT_WS_MAX_MESSAGE_BYTES,
            128,
            1 << 20,
        )?,
        max_per_ip: r.ranged(ENV_WS_MAX_PER_IP, DEFAULT_WS_MAX_PER_IP, 1, 1_000_000)?,
        max_connections: r.ranged(
            ENV_WS_MAX_CONNECTIONS,
            DEFAULT_WS_MAX_CONNECTIONS,
            1,
            1_000_000,
        )?,
        max_per_user: r.ranged(ENV_WS_MAX_PER_USER, DEFAULT_WS_MAX_PER_USER, 1, 10_000)?,
        messages_per_second: r.ranged(
            ENV_WS_MESSAGES_PER_SECOND,
            DEFAULT_WS_MESSAGES_PER_SECOND,
            1,
            10_000,
        )?,
        messages_burst: r.ranged(ENV_WS_MESSAGES_BURST, DEFAULT_WS_MESSAGES_BURST, 1, 100_000)?,
        ticket_ttl: Duration::from_secs(r.ranged(
            ENV_WS_TICKET_TTL_SECS,
            DEFAULT_WS_TICKET_TTL_SECS,
            1,
            600,
        )?),
        queue: r.ranged(ENV_WS_QUEUE, DEFAULT_WS_QUEUE, 2, 100_000)?,
        ping_interval: r.positive_millis(ENV_WS_PING_INTERVAL_MS, DEFAULT_WS_PING_INTERVAL_MS)?,
        idle_timeout: r.positive_millis(ENV_WS_IDLE_TIMEOUT_MS, DEFAULT_WS_IDLE_TIMEOUT_MS)?,
        send_timeout: r.positive_millis(ENV_WS_SEND_TIMEOUT_MS, DEFAULT_WS_SEND_TIMEOUT_MS)?,
        allowed_origins: r
            .optional(ENV_WS_ALLOWED_ORIGINS)
            .map(|v| list(&v).map(str::to_owned).collect())
            .unwrap_or_default(),
        stock_tick: r.positive_millis(ENV_WS_TICK_MS, DEFAULT_WS_TICK_MS)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{map, refused};
    use super::*;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = read(&map(&[])).unwrap();
        assert_eq!(c.max_rooms, DEFAULT_WS_MAX_ROOMS);
        assert_eq!(c.queue, DEFAULT_WS_QUEUE);
        assert_eq!(c.stock_tick, Duration::from_millis(100));
        assert_eq!(c.max_per_user, DEFAULT_WS_MAX_PER_USER);
        assert_eq!(c.ticket_ttl, Duration::from_secs(30));
        assert!(c.allowed_origins.is_empty());
    }

    #[test]
    fn allowed_origins_are_a_trimmed_list() {
        let m = map(&[(ENV_WS_ALLOWED_ORIGINS, " https://a.test, ,https://b.test")]);
        assert_eq!(
            read(&m).unwrap().allowed_origins,
            ["https://a.test", "https://b.test"]
        );
    }

    #[test]
    fn each_bad_realtime_value_names_its_variable() {
        for (var, bad) in [
            (ENV_WS_MAX_ROOMS, "0"),
            (ENV_WS_MAX_MESSAGE_BYTES, "127"),
            (ENV_WS_MAX_PER_IP, "0"),
            (ENV_WS_MAX_CONNECTIONS, "0"),
            (ENV_WS_MAX_PER_USER, "0"),
            (ENV_WS_MESSAGES_PER_SECOND, "0"),
            (ENV_WS_MESSAGES_BURST, "0"),
            (ENV_WS_TICKET_TTL_SECS, "0"),
            (ENV_WS_TICKET_TTL_SECS, "601"),
            (ENV_WS_QUEUE, "1"),
            (ENV_WS_PING_INTERVAL_MS, "0"),
            (ENV_WS_IDLE_TIMEOUT_MS, "0"),
            (ENV_WS_SEND_TIMEOUT_MS, "0"),
            (ENV_WS_TICK_MS, "0"),
        ] {
            assert_eq!(refused(read, &[(var, bad)]), var);
        }
    }
}
