//! The `redis` section: the server URL (from `REDIS_URL`, or built from host,
//! port, password, cluster nodes or Sentinels), the connection pool, the
//! durable acknowledgement (`REDIS_ACK_REPLICAS`) and the scheduler's lease key.

use std::time::Duration;

use super::{ConfigError, Reader, Secret, Source, list};

pub const ENV_REDIS_URL: &str = "REDIS_URL";
pub const ENV_REDIS_HOST: &str = "REDIS_HOST";
pub const ENV_REDIS_PORT: &str = "REDIS_PORT";
pub const ENV_REDIS_PASSWORD: &str = "REDIS_PASSWORD";
pub const ENV_REDIS_CLUSTER_NODES: &str = "REDIS_CLUSTER_NODES";
/// Comma-separated `host:port` of Redis Sentinels (with `REDIS_SENTINEL_SERVICE`).
pub const ENV_REDIS_SENTINELS: &str = "REDIS_SENTINELS";
/// The primary's name as the Sentinels know it (`sentinel monitor <name> ...`).
pub const ENV_REDIS_SENTINEL_SERVICE: &str = "REDIS_SENTINEL_SERVICE";
/// The Sentinels' own password, when it differs from the data nodes' one.
pub const ENV_REDIS_SENTINEL_PASSWORD: &str = "REDIS_SENTINEL_PASSWORD";
/// Replicas that must hold a purchase before it is answered 201 (WAIT).
pub const ENV_REDIS_ACK_REPLICAS: &str = "REDIS_ACK_REPLICAS";
pub const DEFAULT_REDIS_ACK_REPLICAS: u32 = 0;
/// How long a purchase waits for those replicas before it is answered 503.
pub const ENV_REDIS_ACK_TIMEOUT_MS: &str = "REDIS_ACK_TIMEOUT_MS";
pub const DEFAULT_REDIS_ACK_TIMEOUT_MS: u64 = 1_000;
pub const DEFAULT_REDIS_HOST: &str = "127.0.0.1";
pub const DEFAULT_REDIS_PORT: u16 = 6379;
pub const ENV_REDIS_POOL_SIZE: &str = "REDIS_POOL_SIZE";
pub const DEFAULT_REDIS_POOL_SIZE: usize = 2;
pub const ENV_REDIS_COMMAND_TIMEOUT_MS: &str = "REDIS_COMMAND_TIMEOUT_MS";
pub const DEFAULT_REDIS_COMMAND_TIMEOUT_MS: u64 = 2_000;
pub const ENV_REDIS_MAX_QUEUE: &str = "REDIS_MAX_QUEUE";
pub const DEFAULT_REDIS_MAX_QUEUE: usize = 50_000;
pub const ENV_REDIS_LOCK_KEY: &str = "REDIS_LOCK_KEY";
pub const DEFAULT_REDIS_LOCK_KEY: &str = "flashsale:scheduler:lease";

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// A `redis://` URL with any password already folded in.
    pub url: Secret,
    pub pool_size: usize,
    pub command_timeout: Duration,
    pub max_queue: usize,
    /// The scheduler lease (`REDIS_LOCK_KEY`, the name the original system used).
    pub lease_key: String,
    /// Replicas that must confirm a purchase's write before its 201 (0: none).
    pub ack_replicas: u32,
    /// The WAIT timeout for those confirmations; shorter than the command timeout.
    pub ack_timeout: Duration,
}

/// Reads the URL variables (see [`url`]), `REDIS_POOL_SIZE`,
/// `REDIS_COMMAND_TIMEOUT_MS`, `REDIS_MAX_QUEUE` and `REDIS_LOCK_KEY`.
pub(super) fn read(src: &dyn Source) -> Result<RedisConfig, ConfigError> {
    let r = Reader::new(src);
    let redis = RedisConfig {
        url: Secret::new(url(&r)?),
        pool_size: r.ranged(ENV_REDIS_POOL_SIZE, DEFAULT_REDIS_POOL_SIZE, 1, 64)?,
        command_timeout: r.millis(
            ENV_REDIS_COMMAND_TIMEOUT_MS,
            DEFAULT_REDIS_COMMAND_TIMEOUT_MS,
        )?,
        max_queue: r.ranged(ENV_REDIS_MAX_QUEUE, DEFAULT_REDIS_MAX_QUEUE, 1, 10_000_000)?,
        lease_key: r.string_or(ENV_REDIS_LOCK_KEY, DEFAULT_REDIS_LOCK_KEY),
        ack_replicas: r.ranged(ENV_REDIS_ACK_REPLICAS, DEFAULT_REDIS_ACK_REPLICAS, 0, 16)?,
        ack_timeout: r.positive_millis(ENV_REDIS_ACK_TIMEOUT_MS, DEFAULT_REDIS_ACK_TIMEOUT_MS)?,
    };
    if redis.command_timeout.is_zero() {
        return Err(ConfigError::new(
            ENV_REDIS_COMMAND_TIMEOUT_MS,
            "must be greater than 0",
        ));
    }
    if redis.ack_replicas > 0 && redis.ack_timeout >= redis.command_timeout {
        return Err(ConfigError::new(
            ENV_REDIS_ACK_TIMEOUT_MS,
            format!(
                "must be shorter than {ENV_REDIS_COMMAND_TIMEOUT_MS} ({} ms), or the WAIT would time out as a lost connection",
                redis.command_timeout.as_millis()
            ),
        ));
    }
    Ok(redis)
}

/// `REDIS_URL` as given; else `REDIS_CLUSTER_NODES` as a `redis-cluster://`
/// URL; else `REDIS_SENTINELS` + `REDIS_SENTINEL_SERVICE` as a
/// `redis-sentinel://` URL; else `REDIS_HOST` and `REDIS_PORT`.
/// `REDIS_PASSWORD` is folded into the built forms. Only one topology may be
/// named.
fn url(r: &Reader<'_>) -> Result<String, ConfigError> {
    let sentinels = r.optional(ENV_REDIS_SENTINELS);
    let service = r.optional(ENV_REDIS_SENTINEL_SERVICE);
    let sentinel_password = r.optional(ENV_REDIS_SENTINEL_PASSWORD);
    match (&sentinels, &service) {
        (Some(_), None) => {
            return Err(ConfigError::new(
                ENV_REDIS_SENTINEL_SERVICE,
                format!(
                    "is required with {ENV_REDIS_SENTINELS} (the name in `sentinel monitor <name>`)"
                ),
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                ENV_REDIS_SENTINELS,
                format!("is required with {ENV_REDIS_SENTINEL_SERVICE}"),
            ));
        }
        _ => {}
    }
    if sentinel_password.is_some() && sentinels.is_none() {
        return Err(ConfigError::new(
            ENV_REDIS_SENTINEL_PASSWORD,
            format!("only applies with {ENV_REDIS_SENTINELS}"),
        ));
    }
    if sentinels.is_some() {
        for other in [ENV_REDIS_URL, ENV_REDIS_CLUSTER_NODES] {
            if r.optional(other).is_some() {
                return Err(ConfigError::new(
                    ENV_REDIS_SENTINELS,
                    format!("cannot be combined with {other}: name one Redis topology"),
                ));
            }
        }
    }
    if let Some(url) = r.optional(ENV_REDIS_URL) {
        if !(url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("redis-cluster://")
            || url.starts_with("redis-sentinel://"))
        {
            return Err(ConfigError::new(
                ENV_REDIS_URL,
                "must start with redis://, rediss://, redis-cluster:// or redis-sentinel://",
            ));
        }
        return Ok(url);
    }
    let auth = match r.optional(ENV_REDIS_PASSWORD) {
        Some(p) => {
            if p.contains(['@', '/', ':']) {
                return Err(ConfigError::new(
                    ENV_REDIS_PASSWORD,
                    "must not contain '@', '/' or ':' (use REDIS_URL with percent-encoding)",
                ));
            }
            format!(":{p}@")
        }
        None => String::new(),
    };
    if let Some(nodes) = r.optional(ENV_REDIS_CLUSTER_NODES) {
        return cluster_url(&auth, &nodes);
    }
    if let (Some(nodes), Some(service)) = (sentinels, service) {
        return sentinel_url(&auth, &nodes, &service, sentinel_password.as_deref());
    }
    let host = r.string_or(ENV_REDIS_HOST, DEFAULT_REDIS_HOST);
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(ConfigError::new(ENV_REDIS_HOST, "not a valid host name"));
    }
    let port: u16 = r.parse_or(ENV_REDIS_PORT, DEFAULT_REDIS_PORT)?;
    Ok(format!("redis://{auth}{host}:{port}"))
}

/// `redis-cluster://<auth><first>?node=<second>&node=...` from the
/// comma-separated `host:port` list in `REDIS_CLUSTER_NODES`.
fn cluster_url(auth: &str, nodes: &str) -> Result<String, ConfigError> {
    let (first, extra) = node_list(ENV_REDIS_CLUSTER_NODES, nodes)?;
    let query = if extra.is_empty() {
        String::new()
    } else {
        format!("?{}", extra.join("&"))
    };
    Ok(format!("redis-cluster://{auth}{first}{query}"))
}

/// `redis-sentinel://<auth><first>/0?sentinelServiceName=<service>&node=...`
/// from `REDIS_SENTINELS`; fred asks the Sentinels for the primary and
/// follows it through failovers.
fn sentinel_url(
    auth: &str,
    nodes: &str,
    service: &str,
    password: Option<&str>,
) -> Result<String, ConfigError> {
    let (first, mut query) = node_list(ENV_REDIS_SENTINELS, nodes)?;
    if service.is_empty()
        || !service
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(ConfigError::new(
            ENV_REDIS_SENTINEL_SERVICE,
            "must be letters, digits, '-', '_' or '.'",
        ));
    }
    query.insert(0, format!("sentinelServiceName={service}"));
    if let Some(p) = password {
        if p.is_empty()
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
        {
            return Err(ConfigError::new(
                ENV_REDIS_SENTINEL_PASSWORD,
                "must be letters, digits, '-', '_', '.' or '~' (use REDIS_URL with percent-encoding)",
            ));
        }
        query.push(format!("sentinelPassword={p}"));
    }
    Ok(format!(
        "redis-sentinel://{auth}{first}/0?{}",
        query.join("&")
    ))
}

/// The first `host:port` of a comma-separated list and `node=` parameters for the rest.
fn node_list<'a>(var: &'static str, nodes: &'a str) -> Result<(&'a str, Vec<String>), ConfigError> {
    let nodes: Vec<&str> = list(nodes).collect();
    for n in &nodes {
        let ok = n.rsplit_once(':').is_some_and(|(h, p)| {
            !h.is_empty() && !h.contains(['/', '@', ' ']) && p.parse::<u16>().is_ok()
        });
        if !ok {
            return Err(ConfigError::new(var, format!("`{n}` is not host:port")));
        }
    }
    let Some((first, rest)) = nodes.split_first() else {
        return Err(ConfigError::new(var, "lists no node"));
    };
    Ok((first, rest.iter().map(|n| format!("node={n}")).collect()))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{map, refused};
    use super::*;

    fn url_of(pairs: &[(&'static str, &str)]) -> String {
        read(&map(pairs)).unwrap().url.expose().to_owned()
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = read(&map(&[])).unwrap();
        assert_eq!(c.url.expose(), "redis://127.0.0.1:6379");
        assert_eq!(c.pool_size, DEFAULT_REDIS_POOL_SIZE);
        assert_eq!(c.lease_key, DEFAULT_REDIS_LOCK_KEY);
    }

    #[test]
    fn redis_host_port_password_build_a_url() {
        let mut m = vec![
            (ENV_REDIS_HOST, "cache"),
            (ENV_REDIS_PORT, "6380"),
            (ENV_REDIS_PASSWORD, "pw"),
        ];
        assert_eq!(url_of(&m), "redis://:pw@cache:6380");
        m.push((ENV_REDIS_URL, "redis://other:1"));
        assert_eq!(url_of(&m), "redis://other:1");
        m.pop();
        m.push((ENV_REDIS_URL, "http://x"));
        assert_eq!(refused(read, &m), ENV_REDIS_URL);
    }

    #[test]
    fn cluster_nodes_build_a_cluster_url() {
        assert_eq!(
            url_of(&[(ENV_REDIS_CLUSTER_NODES, "10.0.0.1:7000, 10.0.0.2:7001")]),
            "redis-cluster://10.0.0.1:7000?node=10.0.0.2:7001"
        );
        assert_eq!(
            refused(read, &[(ENV_REDIS_CLUSTER_NODES, "nohost")]),
            ENV_REDIS_CLUSTER_NODES
        );
        assert_eq!(
            refused(read, &[(ENV_REDIS_CLUSTER_NODES, ",")]),
            ENV_REDIS_CLUSTER_NODES
        );
    }

    #[test]
    fn sentinels_build_a_sentinel_url() {
        assert_eq!(
            url_of(&[
                (ENV_REDIS_SENTINELS, "10.0.0.1:26379,10.0.0.2:26380"),
                (ENV_REDIS_SENTINEL_SERVICE, "flashsale"),
                (ENV_REDIS_PASSWORD, "pw"),
                (ENV_REDIS_SENTINEL_PASSWORD, "spw"),
            ]),
            "redis-sentinel://:pw@10.0.0.1:26379/0?sentinelServiceName=flashsale&node=10.0.0.2:26380&sentinelPassword=spw"
        );
        assert!(
            fred::prelude::Config::from_url(&url_of(&[
                (ENV_REDIS_SENTINELS, "127.0.0.1:26379,127.0.0.1:26380"),
                (ENV_REDIS_SENTINEL_SERVICE, "flashsale"),
            ]))
            .unwrap()
            .server
            .is_sentinel()
        );
    }

    #[test]
    fn bad_topology_combinations_name_a_variable() {
        let s = (ENV_REDIS_SENTINELS, "10.0.0.1:26379");
        let svc = (ENV_REDIS_SENTINEL_SERVICE, "flashsale");
        assert_eq!(refused(read, &[s]), ENV_REDIS_SENTINEL_SERVICE);
        assert_eq!(refused(read, &[svc]), ENV_REDIS_SENTINELS);
        assert_eq!(
            refused(read, &[s, svc, (ENV_REDIS_CLUSTER_NODES, "10.0.0.1:7000")]),
            ENV_REDIS_SENTINELS
        );
        assert_eq!(
            refused(read, &[s, svc, (ENV_REDIS_URL, "redis://x:1")]),
            ENV_REDIS_SENTINELS
        );
        assert_eq!(
            refused(read, &[(ENV_REDIS_SENTINEL_PASSWORD, "x")]),
            ENV_REDIS_SENTINEL_PASSWORD
        );
        assert_eq!(
            refused(read, &[(ENV_REDIS_SENTINELS, "nohost"), svc]),
            ENV_REDIS_SENTINELS
        );
        assert_eq!(
            refused(read, &[s, (ENV_REDIS_SENTINEL_SERVICE, "a b")]),
            ENV_REDIS_SENTINEL_SERVICE
        );
    }

    #[test]
    fn ack_replicas_need_a_timeout_shorter_than_commands() {
        let c = read(&map(&[(ENV_REDIS_ACK_REPLICAS, "1")])).unwrap();
        assert_eq!((c.ack_replicas, c.ack_timeout.as_millis()), (1, 1_000));
        assert_eq!(
            refused(
                read,
                &[
                    (ENV_REDIS_ACK_REPLICAS, "1"),
                    (ENV_REDIS_ACK_TIMEOUT_MS, "2000")
                ]
            ),
            ENV_REDIS_ACK_TIMEOUT_MS
        );
        assert_eq!(
            refused(read, &[(ENV_REDIS_ACK_REPLICAS, "17")]),
            ENV_REDIS_ACK_REPLICAS
        );
    }

    #[test]
    fn each_bad_redis_value_names_its_variable() {
        for (var, bad) in [
            (ENV_REDIS_PASSWORD, "a@b"),
            (ENV_REDIS_HOST, "a/b"),
            (ENV_REDIS_PORT, "70000"),
            (ENV_REDIS_POOL_SIZE, "65"),
            (ENV_REDIS_COMMAND_TIMEOUT_MS, "0"),
            (ENV_REDIS_MAX_QUEUE, "0"),
        ] {
            assert_eq!(refused(read, &[(var, bad)]), var, "{var}={bad}");
        }
    }
}
