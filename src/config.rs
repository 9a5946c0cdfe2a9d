//! Configuration: every setting, its environment variable and its default.
//!
//! Settings are read through a [`Source`]: the process environment layered over
//! an optional `.env` file in production, or a plain map in tests, so tests never
//! touch the process environment. Any bad value stops start-up with one line
//! that names the variable ([`ConfigError`]).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

pub const ENV_PORT: &str = "PORT";
pub const DEFAULT_PORT: u16 = 5050;
pub const ENV_BIND: &str = "BIND_ADDR";
pub const DEFAULT_BIND: &str = "0.0.0.0";

pub const ENV_MONGO_URL: &str = "MONGO_URL";
pub const ENV_MONGO_DB: &str = "MONGO_DB";
pub const DEFAULT_MONGO_DB: &str = "flashsale";
pub const ENV_MONGO_POOL_SIZE: &str = "MONGO_POOL_SIZE";
pub const DEFAULT_MONGO_POOL_SIZE: u32 = 32;

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

pub const ENV_SECRET_KEY: &str = "SECRET_KEY";
pub const MIN_SECRET_KEY_BYTES: usize = 32;
pub const ENV_JWT_ISSUER: &str = "JWT_ISSUER";
pub const DEFAULT_JWT_ISSUER: &str = "flashsale";
pub const ENV_JWT_TTL_SECONDS: &str = "JWT_TTL_SECONDS";
pub const DEFAULT_JWT_TTL_SECONDS: u64 = 3_600;

pub const ENV_ADMIN_EMAIL: &str = "ADMIN_EMAIL";
pub const ENV_ADMIN_PASSWORD: &str = "ADMIN_PASSWORD";
pub const ENV_ADMIN_NAME: &str = "ADMIN_NAME";
pub const DEFAULT_ADMIN_NAME: &str = "Administrator";

pub const ENV_PASSWORD_ITERATIONS: &str = "PASSWORD_ITERATIONS";
pub const DEFAULT_PASSWORD_ITERATIONS: u32 = 600_000;
/// Lowest accepted iteration count; anything below 600,000 is for tests only.
pub const MIN_PASSWORD_ITERATIONS: u32 = 1_000;
pub const ENV_HASH_CONCURRENCY: &str = "HASH_CONCURRENCY";
pub const DEFAULT_HASH_CONCURRENCY: usize = 2;

pub const ENV_TRUST_PROXY: &str = "TRUST_PROXY";

pub const ENV_MAX_BODY_BYTES: &str = "MAX_BODY_BYTES";
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;
pub const ENV_HEADER_READ_TIMEOUT_MS: &str = "HEADER_READ_TIMEOUT_MS";
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
pub const ENV_MAX_CONNECTIONS: &str = "MAX_CONNECTIONS";
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
pub const ENV_MAX_IN_FLIGHT: &str = "MAX_IN_FLIGHT";
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4_096;
pub const ENV_SHUTDOWN_GRACE_MS: &str = "SHUTDOWN_GRACE_MS";
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 10_000;

pub const ENV_DEFAULT_MAX_PER_USER: &str = "DEFAULT_MAX_PER_USER";
pub const DEFAULT_MAX_PER_USER: u32 = 2;
pub const ENV_DEFAULT_MAX_PER_TRANSACTION: &str = "DEFAULT_MAX_PER_TRANSACTION";
pub const DEFAULT_MAX_PER_TRANSACTION: u32 = 2;
pub const ENV_IDEMPOTENCY_TTL_SECONDS: &str = "IDEMPOTENCY_TTL_SECONDS";
pub const DEFAULT_IDEMPOTENCY_TTL_SECONDS: u64 = 24 * 3_600;

pub const ENV_WRITE_BEHIND_BATCH: &str = "WRITE_BEHIND_BATCH";
pub const DEFAULT_WRITE_BEHIND_BATCH: usize = 500;
pub const ENV_WRITE_BEHIND_INTERVAL_MS: &str = "WRITE_BEHIND_INTERVAL_MS";
pub const DEFAULT_WRITE_BEHIND_INTERVAL_MS: u64 = 50;
pub const ENV_WRITE_BEHIND_CLAIM_IDLE_MS: &str = "WRITE_BEHIND_CLAIM_IDLE_MS";
pub const DEFAULT_WRITE_BEHIND_CLAIM_IDLE_MS: u64 = 30_000;

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

pub const ENV_SCHEDULER_TICK_MS: &str = "SCHEDULER_TICK_MS";
pub const DEFAULT_SCHEDULER_TICK_MS: u64 = 250;
pub const ENV_SCHEDULER_LEASE_MS: &str = "SCHEDULER_LEASE_MS";
pub const DEFAULT_SCHEDULER_LEASE_MS: u64 = 5_000;

pub const ENV_DEFAULT_MAX_ACCOUNTS_PER_IP: &str = "DEFAULT_MAX_ACCOUNTS_PER_IP";
pub const DEFAULT_MAX_ACCOUNTS_PER_IP: u32 = 10;

pub const ENV_RATE_PURCHASE_PER_IP: &str = "RATE_PURCHASE_PER_IP";
pub const DEFAULT_RATE_PURCHASE_PER_IP: u32 = 50;
pub const ENV_RATE_PURCHASE_PER_USER: &str = "RATE_PURCHASE_PER_USER";
pub const DEFAULT_RATE_PURCHASE_PER_USER: u32 = 5;
pub const ENV_RATE_SIGNIN_PER_IP: &str = "RATE_SIGNIN_PER_IP";
pub const DEFAULT_RATE_SIGNIN_PER_IP: u32 = 30;
pub const ENV_RATE_SIGNIN_PER_ACCOUNT: &str = "RATE_SIGNIN_PER_ACCOUNT";
pub const DEFAULT_RATE_SIGNIN_PER_ACCOUNT: u32 = 5;
pub const ENV_RATE_SIGNUP_PER_IP: &str = "RATE_SIGNUP_PER_IP";
pub const DEFAULT_RATE_SIGNUP_PER_IP: u32 = 10;
pub const ENV_RATE_LIMIT_MAX_KEYS: &str = "RATE_LIMIT_MAX_KEYS";
pub const DEFAULT_RATE_LIMIT_MAX_KEYS: usize = 100_000;
pub const ENV_PURCHASE_ATTEMPTS_PER_WINDOW: &str = "PURCHASE_ATTEMPTS_PER_WINDOW";
pub const DEFAULT_PURCHASE_ATTEMPTS_PER_WINDOW: u32 = 30;
pub const ENV_PURCHASE_ATTEMPTS_WINDOW_MS: &str = "PURCHASE_ATTEMPTS_WINDOW_MS";
pub const DEFAULT_PURCHASE_ATTEMPTS_WINDOW_MS: u64 = 60_000;
pub const ENV_IP_DENY: &str = "IP_DENY";
pub const ENV_IP_ALLOW: &str = "IP_ALLOW";
pub const ENV_FRAUD_NEW_ACCOUNT_SECONDS: &str = "FRAUD_NEW_ACCOUNT_SECONDS";
pub const DEFAULT_FRAUD_NEW_ACCOUNT_SECONDS: u64 = 60;
pub const ENV_FRAUD_RULE_NEW_ACCOUNT: &str = "FRAUD_RULE_NEW_ACCOUNT";
pub const ENV_FRAUD_REFUSAL_BURST: &str = "FRAUD_REFUSAL_BURST";
pub const DEFAULT_FRAUD_REFUSAL_BURST: u32 = 20;
pub const ENV_FRAUD_REFUSAL_WINDOW_MS: &str = "FRAUD_REFUSAL_WINDOW_MS";
pub const DEFAULT_FRAUD_REFUSAL_WINDOW_MS: u64 = 10_000;
pub const ENV_FRAUD_RULE_REFUSAL_BURST: &str = "FRAUD_RULE_REFUSAL_BURST";
pub const ENV_FRAUD_MANY_IPS: &str = "FRAUD_MANY_IPS";
pub const DEFAULT_FRAUD_MANY_IPS: u32 = 5;
pub const ENV_FRAUD_MANY_IPS_WINDOW_MS: &str = "FRAUD_MANY_IPS_WINDOW_MS";
pub const DEFAULT_FRAUD_MANY_IPS_WINDOW_MS: u64 = 600_000;
pub const ENV_FRAUD_RULE_MANY_IPS: &str = "FRAUD_RULE_MANY_IPS";

pub const ENV_LOG_FORMAT: &str = "LOG_FORMAT";

/// Where settings come from: the environment in production, a map in tests.
pub trait Source {
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment, falling back to values read from a `.env` file.
#[derive(Debug, Default)]
pub struct EnvSource {
    dotenv: HashMap<String, String>,
}

impl EnvSource {
    /// Reads `path` as a `.env` file when it exists; the environment wins over it.
    pub fn with_dotenv(path: &Path) -> Result<Self, ConfigError> {
        let mut dotenv = HashMap::new();
        if path.exists() {
            let iter = dotenvy::from_path_iter(path)
                .map_err(|e| ConfigError::new(".env", format!("cannot read: {e}")))?;
            for item in iter {
                let (k, v) =
                    item.map_err(|e| ConfigError::new(".env", format!("cannot parse: {e}")))?;
                dotenv.insert(k, v);
            }
        }
        Ok(Self { dotenv })
    }
}

impl Source for EnvSource {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key)
            .ok()
            .or_else(|| self.dotenv.get(key).cloned())
    }
}

impl Source for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

impl Source for HashMap<&str, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

/// A configuration problem, always naming the variable at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

impl ConfigError {
    fn new(var: &'static str, reason: impl Into<String>) -> Self {
        Self {
            var,
            reason: reason.into(),
        }
    }
}

/// A value that must never be printed (the JWT secret, passwords).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Which peers may set X-Forwarded-For.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TrustProxy {
    /// Use the socket peer address; ignore X-Forwarded-For entirely.
    #[default]
    None,
    /// Trust this many proxy hops in front of the service.
    Hops(u8),
    /// Trust proxies whose address is inside one of these networks.
    Cidrs(Vec<IpNet>),
}

impl FromStr for TrustProxy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        match s {
            "" | "false" | "0" | "none" => return Ok(Self::None),
            "true" => return Ok(Self::Hops(1)),
            _ => {}
        }
        if let Ok(n) = s.parse::<u8>() {
            return Ok(Self::Hops(n));
        }
        let mut nets = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = part
                .parse::<IpNet>()
                .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!("`{part}` is not a hop count, an IP address or a CIDR network")
                })?;
            nets.push(net);
        }
        Ok(Self::Cidrs(nets))
    }
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub bind: IpAddr,
    pub port: u16,
    pub max_body_bytes: usize,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// Requests handled at once; beyond this, 503 with Retry-After at once.
    pub max_in_flight: usize,
    pub shutdown_grace: Duration,
    pub trust_proxy: TrustProxy,
}

#[derive(Debug, Clone)]
pub struct MongoConfig {
    pub url: String,
    pub database: String,
    pub pool_size: u32,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// A `redis://` URL with any password already folded in.
    pub url: Secret,
    pub pool_size: usize,
    pub command_timeout: Duration,
    pub max_queue: usize,
    pub lock_key: String,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub secret_key: Secret,
    pub issuer: String,
    pub token_ttl: Duration,
    pub password_iterations: u32,
    pub hash_concurrency: usize,
    pub admin_email: Option<String>,
    pub admin_password: Option<Secret>,
    pub admin_name: String,
}

#[derive(Debug, Clone)]
pub struct SalesConfig {
    pub default_max_per_user: u32,
    pub default_max_per_transaction: u32,
    pub default_max_accounts_per_ip: u32,
    pub idempotency_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct WriteBehindConfig {
    pub batch_size: usize,
    pub interval: Duration,
    pub claim_idle: Duration,
}

/// What a fraud rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    Off,
    /// Write a fraud event and let the request through.
    Record,
    /// Refuse with 403 BLOCKED and write a fraud event.
    Block,
}

impl FromStr for RuleAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Self::Off),
            "record" => Ok(Self::Record),
            "block" => Ok(Self::Block),
            _ => Err("must be off, record or block".to_owned()),
        }
    }
}

fn parse_nets(s: &str) -> Result<Vec<IpNet>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<IpNet>()
                .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("`{p}` is not an IP address or CIDR network"))
        })
        .collect()
}

/// Abuse controls. Every rate is per key; 0 disables it.
#[derive(Debug, Clone)]
pub struct FraudConfig {
    /// Purchases per second per client IP (IPv6 by /64).
    pub purchase_per_ip: u32,
    pub purchase_per_user: u32,
    /// Sign-ins per minute.
    pub signin_per_ip: u32,
    pub signin_per_account: u32,
    /// Sign-ups per minute per IP.
    pub signup_per_ip: u32,
    pub limiter_max_keys: usize,
    /// Purchase attempts per buyer per sale per window, held in Redis.
    pub attempts_per_window: u32,
    pub attempts_window: Duration,
    pub ip_deny: Vec<IpNet>,
    pub ip_allow: Vec<IpNet>,
    pub new_account_age: Duration,
    pub rule_new_account: RuleAction,
    pub refusal_burst: u32,
    pub refusal_window: Duration,
    pub rule_refusal_burst: RuleAction,
    pub many_ips: u32,
    pub many_ips_window: Duration,
    pub rule_many_ips: RuleAction,
}

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub tick: Duration,
    pub lease: Duration,
}

/// The whole configuration tree.
#[derive(Debug, Clone)]
pub struct Config {
    pub http: HttpConfig,
    pub mongo: MongoConfig,
    pub redis: RedisConfig,
    pub auth: AuthConfig,
    pub sales: SalesConfig,
    pub write_behind: WriteBehindConfig,
    pub realtime: RealtimeConfig,
    pub scheduler: SchedulerConfig,
    pub fraud: FraudConfig,
    pub log_json: bool,
}

impl Config {
    /// Reads the process environment and `./.env`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&EnvSource::with_dotenv(Path::new(".env"))?)
    }

    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let r = Reader { src };
        let http = HttpConfig {
            bind: r.parse_or(ENV_BIND, DEFAULT_BIND.parse().expect("valid default"))?,
            port: r.parse_or(ENV_PORT, DEFAULT_PORT)?,
            max_body_bytes: r.ranged(ENV_MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES, 256, 16 << 20)?,
            header_read_timeout: r
                .millis(ENV_HEADER_READ_TIMEOUT_MS, DEFAULT_HEADER_READ_TIMEOUT_MS)?,
            max_connections: r.ranged(
                ENV_MAX_CONNECTIONS,
                DEFAULT_MAX_CONNECTIONS,
                1,
                1_000_000,
            )?,
            max_in_flight: r.ranged(ENV_MAX_IN_FLIGHT, DEFAULT_MAX_IN_FLIGHT, 1, 1_000_000)?,
            shutdown_grace: r.millis(ENV_SHUTDOWN_GRACE_MS, DEFAULT_SHUTDOWN_GRACE_MS)?,
            trust_proxy: r.parse_or(ENV_TRUST_PROXY, TrustProxy::None)?,
        };

        let mongo_url = r.required(ENV_MONGO_URL)?;
        if !(mongo_url.starts_with("mongodb://") || mongo_url.starts_with("mongodb+srv://")) {
            return Err(ConfigError::new(
                ENV_MONGO_URL,
                "must start with mongodb:// or mongodb+srv://",
            ));
        }
        let mongo = MongoConfig {
            url: mongo_url,
            database: r.string_or(ENV_MONGO_DB, DEFAULT_MONGO_DB),
            pool_size: r.ranged(ENV_MONGO_POOL_SIZE, DEFAULT_MONGO_POOL_SIZE, 1, 1_000)?,
        };
        if mongo.database.is_empty() || mongo.database.contains(['/', '.', ' ', '$']) {
            return Err(ConfigError::new(ENV_MONGO_DB, "not a valid database name"));
        }

        let redis = RedisConfig {
            url: Secret::new(redis_url(&r)?),
            pool_size: r.ranged(ENV_REDIS_POOL_SIZE, DEFAULT_REDIS_POOL_SIZE, 1, 64)?,
            command_timeout: r.millis(
                ENV_REDIS_COMMAND_TIMEOUT_MS,
                DEFAULT_REDIS_COMMAND_TIMEOUT_MS,
            )?,
            max_queue: r.ranged(ENV_REDIS_MAX_QUEUE, DEFAULT_REDIS_MAX_QUEUE, 1, 10_000_000)?,
            lock_key: r.string_or(ENV_REDIS_LOCK_KEY, DEFAULT_REDIS_LOCK_KEY),
        };
        if redis.command_timeout.is_zero() {
            return Err(ConfigError::new(
                ENV_REDIS_COMMAND_TIMEOUT_MS,
                "must be greater than 0",
            ));
        }

        let secret_key = r.required(ENV_SECRET_KEY)?;
        if secret_key.len() < MIN_SECRET_KEY_BYTES {
            return Err(ConfigError::new(
                ENV_SECRET_KEY,
                format!("must be at least {MIN_SECRET_KEY_BYTES} bytes"),
            ));
        }
        let admin_email = r.optional(ENV_ADMIN_EMAIL);
        let admin_password = r.optional(ENV_ADMIN_PASSWORD).map(Secret::new);
        match (&admin_email, &admin_password) {
            (Some(_), None) => {
                return Err(ConfigError::new(
                    ENV_ADMIN_PASSWORD,
                    "must be set when ADMIN_EMAIL is set",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    ENV_ADMIN_EMAIL,
                    "must be set when ADMIN_PASSWORD is set",
                ));
            }
            _ => {}
        }
        let auth = AuthConfig {
            secret_key: Secret::new(secret_key),
            issuer: r.string_or(ENV_JWT_ISSUER, DEFAULT_JWT_ISSUER),
            token_ttl: Duration::from_secs(r.ranged(
                ENV_JWT_TTL_SECONDS,
                DEFAULT_JWT_TTL_SECONDS,
                60,
                7 * 24 * 3_600,
            )?),
            password_iterations: r.ranged(
                ENV_PASSWORD_ITERATIONS,
                DEFAULT_PASSWORD_ITERATIONS,
                MIN_PASSWORD_ITERATIONS,
                10_000_000,
            )?,
            hash_concurrency: r.ranged(ENV_HASH_CONCURRENCY, DEFAULT_HASH_CONCURRENCY, 1, 256)?,
            admin_email,
            admin_password,
            admin_name: r.string_or(ENV_ADMIN_NAME, DEFAULT_ADMIN_NAME),
        };

        let sales = SalesConfig {
            default_max_per_user: r.ranged(
                ENV_DEFAULT_MAX_PER_USER,
                DEFAULT_MAX_PER_USER,
                1,
                1_000_000,
            )?,
            default_max_per_transaction: r.ranged(
                ENV_DEFAULT_MAX_PER_TRANSACTION,
                DEFAULT_MAX_PER_TRANSACTION,
                1,
                1_000_000,
            )?,
            default_max_accounts_per_ip: r.ranged(
                ENV_DEFAULT_MAX_ACCOUNTS_PER_IP,
                DEFAULT_MAX_ACCOUNTS_PER_IP,
                0,
                1_000_000,
            )?,
            idempotency_ttl: Duration::from_secs(r.ranged(
                ENV_IDEMPOTENCY_TTL_SECONDS,
                DEFAULT_IDEMPOTENCY_TTL_SECONDS,
                1,
                30 * 24 * 3_600,
            )?),
        };
        if sales.default_max_per_transaction > sales.default_max_per_user {
            return Err(ConfigError::new(
                ENV_DEFAULT_MAX_PER_TRANSACTION,
                "must not exceed DEFAULT_MAX_PER_USER",
            ));
        }

        let write_behind = WriteBehindConfig {
            batch_size: r.ranged(
                ENV_WRITE_BEHIND_BATCH,
                DEFAULT_WRITE_BEHIND_BATCH,
                1,
                10_000,
            )?,
            interval: r.millis(
                ENV_WRITE_BEHIND_INTERVAL_MS,
                DEFAULT_WRITE_BEHIND_INTERVAL_MS,
            )?,
            claim_idle: r.millis(
                ENV_WRITE_BEHIND_CLAIM_IDLE_MS,
                DEFAULT_WRITE_BEHIND_CLAIM_IDLE_MS,
            )?,
        };

        let realtime = RealtimeConfig {
            max_rooms: r.ranged(ENV_WS_MAX_ROOMS, DEFAULT_WS_MAX_ROOMS, 1, 1_000)?,
            max_message_bytes: r.ranged(
                ENV_WS_MAX_MESSAGE_BYTES,
                DEFAULT_WS_MAX_MESSAGE_BYTES,
                128,
                1 << 20,
            )?,
            max_per_ip: r.ranged(ENV_WS_MAX_PER_IP, DEFAULT_WS_MAX_PER_IP, 1, 1_000_000)?,
            queue: r.ranged(ENV_WS_QUEUE, DEFAULT_WS_QUEUE, 2, 100_000)?,
            ping_interval: r
                .positive_millis(ENV_WS_PING_INTERVAL_MS, DEFAULT_WS_PING_INTERVAL_MS)?,
            idle_timeout: r.positive_millis(ENV_WS_IDLE_TIMEOUT_MS, DEFAULT_WS_IDLE_TIMEOUT_MS)?,
            send_timeout: r.positive_millis(ENV_WS_SEND_TIMEOUT_MS, DEFAULT_WS_SEND_TIMEOUT_MS)?,
            allowed_origins: r
                .optional(ENV_WS_ALLOWED_ORIGINS)
                .map(|v| {
                    v.split(',')
                        .map(|o| o.trim().to_owned())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            stock_tick: r.positive_millis(ENV_WS_TICK_MS, DEFAULT_WS_TICK_MS)?,
        };
        let scheduler = SchedulerConfig {
            tick: r.positive_millis(ENV_SCHEDULER_TICK_MS, DEFAULT_SCHEDULER_TICK_MS)?,
            lease: r.positive_millis(ENV_SCHEDULER_LEASE_MS, DEFAULT_SCHEDULER_LEASE_MS)?,
        };
        if scheduler.lease <= scheduler.tick {
            return Err(ConfigError::new(
                ENV_SCHEDULER_LEASE_MS,
                "must be longer than SCHEDULER_TICK_MS",
            ));
        }

        let nets = |var: &'static str| -> Result<Vec<IpNet>, ConfigError> {
            r.optional(var)
                .map(|v| parse_nets(&v).map_err(|e| ConfigError::new(var, e)))
                .transpose()
                .map(Option::unwrap_or_default)
        };
        let fraud = FraudConfig {
            purchase_per_ip: r.ranged(
                ENV_RATE_PURCHASE_PER_IP,
                DEFAULT_RATE_PURCHASE_PER_IP,
                0,
                10_000_000,
            )?,
            purchase_per_user: r.ranged(
                ENV_RATE_PURCHASE_PER_USER,
                DEFAULT_RATE_PURCHASE_PER_USER,
                0,
                10_000_000,
            )?,
            signin_per_ip: r.ranged(
                ENV_RATE_SIGNIN_PER_IP,
                DEFAULT_RATE_SIGNIN_PER_IP,
                0,
                10_000_000,
            )?,
            signin_per_account: r.ranged(
                ENV_RATE_SIGNIN_PER_ACCOUNT,
                DEFAULT_RATE_SIGNIN_PER_ACCOUNT,
                0,
                10_000_000,
            )?,
            signup_per_ip: r.ranged(
                ENV_RATE_SIGNUP_PER_IP,
                DEFAULT_RATE_SIGNUP_PER_IP,
                0,
                10_000_000,
            )?,
            limiter_max_keys: r.ranged(
                ENV_RATE_LIMIT_MAX_KEYS,
                DEFAULT_RATE_LIMIT_MAX_KEYS,
                100,
                100_000_000,
            )?,
            attempts_per_window: r.ranged(
                ENV_PURCHASE_ATTEMPTS_PER_WINDOW,
                DEFAULT_PURCHASE_ATTEMPTS_PER_WINDOW,
                0,
                10_000_000,
            )?,
            attempts_window: r.positive_millis(
                ENV_PURCHASE_ATTEMPTS_WINDOW_MS,
                DEFAULT_PURCHASE_ATTEMPTS_WINDOW_MS,
            )?,
            ip_deny: nets(ENV_IP_DENY)?,
            ip_allow: nets(ENV_IP_ALLOW)?,
            new_account_age: Duration::from_secs(r.ranged(
                ENV_FRAUD_NEW_ACCOUNT_SECONDS,
                DEFAULT_FRAUD_NEW_ACCOUNT_SECONDS,
                0,
                30 * 24 * 3_600,
            )?),
            rule_new_account: r.parse_or(ENV_FRAUD_RULE_NEW_ACCOUNT, RuleAction::Record)?,
            refusal_burst: r.ranged(
                ENV_FRAUD_REFUSAL_BURST,
                DEFAULT_FRAUD_REFUSAL_BURST,
                1,
                1_000_000,
            )?,
            refusal_window: r
                .positive_millis(ENV_FRAUD_REFUSAL_WINDOW_MS, DEFAULT_FRAUD_REFUSAL_WINDOW_MS)?,
            rule_refusal_burst: r.parse_or(ENV_FRAUD_RULE_REFUSAL_BURST, RuleAction::Block)?,
            many_ips: r.ranged(ENV_FRAUD_MANY_IPS, DEFAULT_FRAUD_MANY_IPS, 1, 1_000_000)?,
            many_ips_window: r.positive_millis(
                ENV_FRAUD_MANY_IPS_WINDOW_MS,
                DEFAULT_FRAUD_MANY_IPS_WINDOW_MS,
            )?,
            rule_many_ips: r.parse_or(ENV_FRAUD_RULE_MANY_IPS, RuleAction::Record)?,
        };

        let log_json = match r.optional(ENV_LOG_FORMAT).as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(_) => return Err(ConfigError::new(ENV_LOG_FORMAT, "must be `text` or `json`")),
        };

        Ok(Self {
            http,
            mongo,
            redis,
            auth,
            sales,
            write_behind,
            realtime,
            scheduler,
            fraud,
            log_json,
        })
    }
}

fn redis_url(r: &Reader<'_>) -> Result<String, ConfigError> {
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
        let nodes: Vec<&str> = nodes
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
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
        return Ok(format!("redis-cluster://{auth}{first}{query}"));
    }
    let host = r.string_or(ENV_REDIS_HOST, DEFAULT_REDIS_HOST);
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(ConfigError::new(ENV_REDIS_HOST, "not a valid host name"));
    }
    let port: u16 = r.parse_or(ENV_REDIS_PORT, DEFAULT_REDIS_PORT)?;
    Ok(format!("redis://{auth}{host}:{port}"))
}

struct Reader<'a> {
    src: &'a dyn Source,
}

impl Reader<'_> {
    fn optional(&self, var: &'static str) -> Option<String> {
        self.src
            .get(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.optional(var)
            .ok_or_else(|| ConfigError::new(var, "is required but not set"))
    }

    fn string_or(&self, var: &'static str, default: &str) -> String {
        self.optional(var).unwrap_or_else(|| default.to_owned())
    }

    fn parse_or<T>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.optional(var) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|e| ConfigError::new(var, format!("cannot parse `{v}`: {e}"))),
        }
    }

    fn ranged<T>(&self, var: &'static str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
        T::Err: fmt::Display,
    {
        let v = self.parse_or(var, default)?;
        if v < min || v > max {
            return Err(ConfigError::new(
                var,
                format!("{v} is out of range {min}..={max}"),
            ));
        }
        Ok(v)
    }

    fn positive_millis(&self, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
        Ok(Duration::from_millis(self.ranged(
            var,
            default,
            1,
            24 * 3_600_000,
        )?))
    }

    fn millis(&self, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
        Ok(Duration::from_millis(self.ranged(
            var,
            default,
            0,
            24 * 3_600_000,
        )?))
    }
}

/// WebSocket limits.
#[derive(Debug, Clone)]
pub struct RealtimeConfig {
    pub max_rooms: usize,
    pub max_message_bytes: usize,
    pub max_per_ip: usize,
    pub queue: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
    pub allowed_origins: Vec<String>,
    pub stock_tick: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> HashMap<&'static str, String> {
        HashMap::from([
            (ENV_MONGO_URL, "mongodb://127.0.0.1:27017".to_owned()),
            (ENV_SECRET_KEY, "x".repeat(32)),
        ])
    }

    fn err(map: &HashMap<&'static str, String>) -> ConfigError {
        Config::from_source(map).expect_err("config should be rejected")
    }

    #[test]
    fn defaults_apply_when_only_required_values_are_set() {
        let c = Config::from_source(&base()).unwrap();
        assert_eq!(c.http.port, DEFAULT_PORT);
        assert_eq!(c.redis.url.expose(), "redis://127.0.0.1:6379");
        assert_eq!(c.auth.password_iterations, 600_000);
        assert_eq!(c.mongo.database, "flashsale");
        assert_eq!(c.http.trust_proxy, TrustProxy::None);
    }

    #[test]
    fn missing_secret_key_names_the_variable() {
        let mut m = base();
        m.remove(ENV_SECRET_KEY);
        let e = err(&m);
        assert_eq!(e.var, ENV_SECRET_KEY);
        assert!(e.to_string().contains("SECRET_KEY"));
    }

    #[test]
    fn short_secret_key_is_refused() {
        let mut m = base();
        m.insert(ENV_SECRET_KEY, "x".repeat(31));
        assert_eq!(err(&m).var, ENV_SECRET_KEY);
    }

    #[test]
    fn bad_port_names_the_variable() {
        let mut m = base();
        m.insert(ENV_PORT, "70000".to_owned());
        assert_eq!(err(&m).var, ENV_PORT);
        m.insert(ENV_PORT, "abc".to_owned());
        assert_eq!(err(&m).var, ENV_PORT);
    }

    #[test]
    fn redis_host_port_password_build_a_url() {
        let mut m = base();
        m.insert(ENV_REDIS_HOST, "cache".to_owned());
        m.insert(ENV_REDIS_PORT, "6380".to_owned());
        m.insert(ENV_REDIS_PASSWORD, "pw".to_owned());
        let c = Config::from_source(&m).unwrap();
        assert_eq!(c.redis.url.expose(), "redis://:pw@cache:6380");
        m.insert(ENV_REDIS_URL, "redis://other:1".to_owned());
        assert_eq!(
            Config::from_source(&m).unwrap().redis.url.expose(),
            "redis://other:1"
        );
        m.insert(ENV_REDIS_URL, "http://x".to_owned());
        assert_eq!(err(&m).var, ENV_REDIS_URL);
    }

    #[test]
    fn cluster_nodes_build_a_cluster_url() {
        let mut m = base();
        m.insert(
            ENV_REDIS_CLUSTER_NODES,
            "10.0.0.1:7000, 10.0.0.2:7001".to_owned(),
        );
        assert_eq!(
            Config::from_source(&m).unwrap().redis.url.expose(),
            "redis-cluster://10.0.0.1:7000?node=10.0.0.2:7001"
        );
        m.insert(ENV_REDIS_CLUSTER_NODES, "nohost".to_owned());
        assert_eq!(err(&m).var, ENV_REDIS_CLUSTER_NODES);
    }

    #[test]
    fn admin_email_without_password_is_refused() {
        let mut m = base();
        m.insert(ENV_ADMIN_EMAIL, "a@b.c".to_owned());
        assert_eq!(err(&m).var, ENV_ADMIN_PASSWORD);
    }

    #[test]
    fn low_password_iterations_are_refused() {
        let mut m = base();
        m.insert(ENV_PASSWORD_ITERATIONS, "10".to_owned());
        assert_eq!(err(&m).var, ENV_PASSWORD_ITERATIONS);
    }

    #[test]
    fn trust_proxy_accepts_hops_and_cidrs() {
        assert_eq!("2".parse::<TrustProxy>().unwrap(), TrustProxy::Hops(2));
        assert_eq!("".parse::<TrustProxy>().unwrap(), TrustProxy::None);
        let TrustProxy::Cidrs(n) = "10.0.0.0/8, 127.0.0.1".parse::<TrustProxy>().unwrap() else {
            panic!("expected cidrs")
        };
        assert_eq!(n.len(), 2);
        assert!("nonsense".parse::<TrustProxy>().is_err());
        let mut m = base();
        m.insert(ENV_TRUST_PROXY, "nonsense".to_owned());
        assert_eq!(err(&m).var, ENV_TRUST_PROXY);
    }

    #[test]
    fn secret_debug_never_shows_the_value() {
        let c = Config::from_source(&base()).unwrap();
        assert!(!format!("{c:?}").contains(&"x".repeat(32)));
    }
}
