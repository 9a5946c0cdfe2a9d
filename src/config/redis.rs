//! The `redis` section: the server URL (from `REDIS_URL`, or built from host,
//! port, password or cluster nodes), the connection pool and the scheduler's
//! lease key.

use std::time::Duration;

use super::{ConfigError, Reader, Secret, Source, list};

pub const ENV_REDIS_URL: &str = "REDIS_URL";
pub const ENV_REDIS_HOST: &str = "REDIS_HOST";
pub const ENV_REDIS_PORT: &str = "REDIS_PORT";
pub const ENV_REDIS_PASSWORD: &str = "REDIS_PASSWORD";
pub const ENV_REDIS_CLUSTER_NODES: &str = "REDIS_CLUSTER_NODES";
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
    };
    if redis.command_timeout.is_zero() {
        return Err(ConfigError::new(
            ENV_REDIS_COMMAND_TIMEOUT_MS,
            "must be greater than 0",
        ));
    }
    Ok(redis)
}

/// `REDIS_URL` as given; else `REDIS_CLUSTER_NODES` as a `redis-cluster://`
/// URL; else `REDIS_HOST` and `REDIS_PORT`. `REDIS_PASSWORD` is folded into
/// the built forms.
fn url(r: &Reader<'_>) -> Result<String, ConfigError> {
    if let Some(url) = r.optional(ENV_REDIS_URL) {
        if !(url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("redis-cluster://"))
        {
            return Err(ConfigError::new(
                ENV_REDIS_URL,
                "must start with redis://, rediss:// or redis-cluster://",
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
    let nodes: Vec<&str> = list(nodes).collect();
    for n in &nodes {
        let ok = n.rsplit_once(':').is_some_and(|(h, p)| {
            !h.is_empty() && !h.contains(['/', '@', ' ']) && p.parse::<u16>().is_ok()
        });
        if !ok {
            return Err(ConfigError::new(
                ENV_REDIS_CLUSTER_NODES,
                format!("`{n}` is not host:port"),
            ));
        }
    }
    let Some((first, rest)) = nodes.split_first() else {
        return Err(ConfigError::new(ENV_REDIS_CLUSTER_NODES, "lists no node"));
    };
    let extra: Vec<String> = rest.iter().map(|n| format!("node={n}")).collect();
    let query = if extra.is_empty() {
        String::new()
    } else {
        format!("?{}", extra.join("&"))
    };
    Ok(format!("redis-cluster://{auth}{first}{query}"))
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
