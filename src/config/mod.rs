//! Configuration: every setting, its environment variable and its default.
//!
//! Settings are read through a [`Source`]: the process environment layered over
//! an optional `.env` file in production, or a plain map in tests, so tests never
//! touch the process environment. Any bad value stops start-up with one line
//! that names the variable ([`ConfigError`]).
//!
//! Each section lives in its own file with its `ENV_*` names, its `DEFAULT_*`
//! values and a `read` function; [`Config::from_source`] calls them in turn.
//! This module keeps the tree, the source, the error and the value parsers the
//! sections share. It depends on no other module of the crate.

mod auth;
mod fraud;
mod http;
mod mongo;
mod realtime;
mod redis;
mod sales;
mod scheduler;
mod write_behind;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

pub use self::auth::*;
pub use self::fraud::*;
pub use self::http::*;
pub use self::mongo::*;
pub use self::realtime::*;
pub use self::redis::*;
pub use self::sales::*;
pub use self::scheduler::*;
pub use self::write_behind::*;

pub const ENV_LOG_FORMAT: &str = "LOG_FORMAT";

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

    /// Reads every section in turn; the first bad value stops the read.
    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        Ok(Self {
            http: http::read(src)?,
            mongo: mongo::read(src)?,
            redis: redis::read(src)?,
            auth: auth::read(src)?,
            sales: sales::read(src)?,
            write_behind: write_behind::read(src)?,
            realtime: realtime::read(src)?,
            scheduler: scheduler::read(src)?,
            fraud: fraud::read(src)?,
            log_json: read_log_json(src)?,
        })
    }
}

/// `LOG_FORMAT`: `text` (the default) or `json`.
fn read_log_json(src: &dyn Source) -> Result<bool, ConfigError> {
    match Reader::new(src).optional(ENV_LOG_FORMAT).as_deref() {
        None | Some("text") => Ok(false),
        Some("json") => Ok(true),
        Some(_) => Err(ConfigError::new(ENV_LOG_FORMAT, "must be `text` or `json`")),
    }
}

// === Source ===

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

// === ConfigError, Secret ===

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

// === value parsers ===

/// An IP network in CIDR form, or a bare address as a /32 or /128.
///
/// The one place addresses and networks are parsed: `IP_DENY`, `IP_ALLOW`,
/// `TRUST_PROXY`, `TRUST_PROXY_FROM` and the admin blocklist all go through it.
pub fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// A comma-separated list of [`parse_net`] values; empty items are skipped.
fn parse_nets(s: &str) -> Result<Vec<IpNet>, String> {
    list(s)
        .map(|p| parse_net(p).ok_or_else(|| format!("`{p}` is not an IP address or CIDR network")))
        .collect()
}

/// The trimmed, non-empty items of a comma-separated list.
fn list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty())
}

/// Reads variables from a [`Source`] and turns bad values into a [`ConfigError`]
/// that names the variable.
struct Reader<'a> {
    src: &'a dyn Source,
}

impl<'a> Reader<'a> {
    fn new(src: &'a dyn Source) -> Self {
        Self { src }
    }

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

    /// A duration in milliseconds, at least one and at most a day.
    fn positive_millis(&self, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.millis_from(var, default, 1)
    }

    /// A duration in milliseconds, at most a day.
    fn millis(&self, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.millis_from(var, default, 0)
    }

    fn millis_from(
        &self,
        var: &'static str,
        default: u64,
        min: u64,
    ) -> Result<Duration, ConfigError> {
        let ms = self.ranged(var, default, min, 24 * 3_600_000)?;
        Ok(Duration::from_millis(ms))
    }

    /// An optional [`parse_nets`] list; unset means none.
    fn nets(&self, var: &'static str) -> Result<Vec<IpNet>, ConfigError> {
        self.optional(var)
            .map(|v| parse_nets(&v).map_err(|e| ConfigError::new(var, e)))
            .transpose()
            .map(Option::unwrap_or_default)
    }
}

/// Map sources and assertions shared by the section tests.
#[cfg(test)]
mod testing {
    use std::collections::HashMap;
    use std::fmt::Debug;

    use super::{ConfigError, Source};

    /// A map source holding `pairs`.
    pub(super) fn map(pairs: &[(&'static str, &str)]) -> HashMap<&'static str, String> {
        pairs.iter().map(|&(k, v)| (k, v.to_owned())).collect()
    }

    /// The variable `read` names when it refuses `pairs`.
    pub(super) fn refused<T: Debug>(
        read: fn(&dyn Source) -> Result<T, ConfigError>,
        pairs: &[(&'static str, &str)],
    ) -> &'static str {
        read(&map(pairs))
            .expect_err("config should be rejected")
            .var
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{map, refused};
    use super::*;

    fn base() -> HashMap<&'static str, String> {
        map(&[
            (ENV_MONGO_URL, "mongodb://127.0.0.1:27017"),
            (ENV_SECRET_KEY, &"x".repeat(32)),
        ])
    }

    #[test]
    fn defaults_apply_when_only_required_values_are_set() {
        let c = Config::from_source(&base()).unwrap();
        assert_eq!(c.http.port, DEFAULT_PORT);
        assert_eq!(c.redis.url.expose(), "redis://127.0.0.1:6379");
        assert_eq!(c.auth.password_iterations, 600_000);
        assert_eq!(c.mongo.database, "flashsale");
        assert_eq!(c.http.trust_proxy, TrustProxy::None);
        assert!(!c.log_json);
    }

    #[test]
    fn a_bad_section_value_stops_the_whole_read() {
        let mut m = base();
        m.insert(ENV_WS_QUEUE, "1".to_owned());
        let e = Config::from_source(&m).expect_err("config should be rejected");
        assert_eq!(e.var, ENV_WS_QUEUE);
        assert_eq!(
            e.to_string(),
            "invalid configuration: WS_QUEUE: 1 is out of range 2..=100000"
        );
    }

    #[test]
    fn secret_debug_never_shows_the_value() {
        let c = Config::from_source(&base()).unwrap();
        assert!(!format!("{c:?}").contains(&"x".repeat(32)));
    }

    #[test]
    fn log_format_is_text_or_json() {
        assert!(read_log_json(&map(&[(ENV_LOG_FORMAT, "json")])).unwrap());
        assert!(!read_log_json(&map(&[(ENV_LOG_FORMAT, "text")])).unwrap());
        assert_eq!(
            refused(read_log_json, &[(ENV_LOG_FORMAT, "xml")]),
            ENV_LOG_FORMAT
        );
    }

    #[test]
    fn parse_net_takes_cidrs_and_bare_addresses() {
        assert_eq!(parse_net(" 10.0.0.0/8 "), "10.0.0.0/8".parse().ok());
        assert_eq!(parse_net("127.0.0.1"), "127.0.0.1/32".parse().ok());
        assert_eq!(parse_net("::1"), "::1/128".parse().ok());
        assert_eq!(parse_net("nonsense"), None);
        assert_eq!(parse_nets("10.0.0.1, ,::1").unwrap().len(), 2);
        assert!(parse_nets("10.0.0.1,bad").is_err());
    }
}
