//! Command-line parsing (by hand, to keep the dependency list short).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::http::Target;

pub(crate) const MAX_DURATION_SECS: f64 = 300.0;
pub(crate) const MAX_CONNECTIONS: usize = 4096;
pub(crate) const MAX_WATCHERS: usize = 20_000;

pub(crate) const USAGE: &str = "\
flashsale-load: load generator and invariant checker for the flashsale service (loopback only)

USAGE:
  flashsale-load purchase [OPTIONS]   drive POST /api/purchase-product, then check invariants
  flashsale-load get [--path /healthz] [OPTIONS]   drive a GET path (the HTTP floor)
  flashsale-load ws --watchers N [OPTIONS]   N WebSocket watchers of one sale; purchase-to-stockUpdate delay
  flashsale-load signin-flood [OPTIONS]   sign-ins with made-up emails from many loopback addresses

LOAD OPTIONS (both commands):
  --target ADDR          127.0.0.1:PORT or localhost:PORT, optional http:// (default 127.0.0.1:5050)
  --connections C        virtual clients, one keep-alive HTTP/1.1 connection each (default 64, max 4096)
  --duration S           measured seconds (default 10; warm-up + duration at most 300)
  --requests N           closed model: stop after N measured requests (duration still bounds the run)
  --rate R               open model: target arrivals per second over all clients; latency is
                         measured from each request's intended send time
  --warmup S             seconds run first and not measured (default 0)
  --timeout S            per-request timeout in seconds (default 10)
  --threads T            tokio worker threads (default: available cores)
  --json                 print one JSON summary line on stdout (human report goes to stderr)
  --honor-retry-after    closed model: after a 429 or 503 with Retry-After, wait that long (at most
                         5 s) before the next request, as a polite client does
  --cpu-pids N=PID,...   also report the CPU time (user + system, from /proc) each named process
                         and this load generator spent over the measured window, per request

PURCHASE OPTIONS:
  --mode buy|sold-out    sold-out: sell the sale out first, then measure only the rejection path
  --sale ID              reuse this flash sale instead of creating one
  --units N              totalUnits of a created sale (default 1000000; 100 in sold-out mode)
  --max-per-user N       maxPerUser of a created sale (default 1000000)
  --max-per-tx N         maxPerTransaction of a created sale (default 10)
  --max-accounts-per-ip N  maxAccountsPerIp of a created sale (default 0: no cap, since every
                         buyer of a load run comes from 127.0.0.1)
  --quantity N           units per purchase request (default 1)
  --buyers N             distinct customers, tokens minted with the secret (default 100000)
  --secret KEY           the server's SECRET_KEY (default: env SECRET_KEY)
  --issuer ISS           JWT issuer (default flashsale)
  --admin-email E        admin sign-in (default: env ADMIN_EMAIL); without email and password
  --admin-password P       an admin token is minted with the secret (default: env ADMIN_PASSWORD)
  --drain-timeout S      how long to wait for the write-behind to reach MongoDB (default 30)

GET OPTIONS:
  --path P               the path to GET (default /healthz)

WS OPTIONS (plus --target, --threads, --json, and the sale and token options of purchase:
            --sale ID or --create, --units, --max-per-user, --max-per-tx, --max-accounts-per-ip,
            --quantity, --secret, --issuer, --admin-email, --admin-password):
  --watchers N           WebSocket connections to open, each joins the sale (default 1000, max 20000)
  --create               create a sale (the default when --sale is not given)
  --purchases P          purchases made while every watcher is connected (default 20, max 1000)
  --interval S           seconds between purchases (default 0.5)
  --jitter S             each purchase is delayed by a random 0..S seconds more, so purchases fall at
                         every phase of the server's coalescing tick (default 0.1, WS_TICK_MS's default)
  --connect-concurrency K  handshakes (connect + upgrade + join) in flight at once (default 500)
  --connect-rate R       at most R new connections started per second (default: no pacing)
  --timeout S            per-connection limit for connect + upgrade, and again for the join (default 10)
  --server-pid PID       read the server's VmRSS from /proc/PID/status (before, idle, after)
  --idle-wait S          pause after the last join before the idle memory reading (default 2)
  --settle S             wait after the last purchase for stock updates to arrive (default 3)
  --max-time S           bound on the whole run (default and max 300)

Exit status: 0 all invariants PASS, 1 an invariant FAILED, 2 usage or set-up error.

SIGNIN-FLOOD OPTIONS (plus --target, --threads, --timeout, --json):
  --addresses N          loopback addresses per round, one client each (default 300); they come
                         from 127.64.0.0 upwards, a new /16 per round
  --per-address N        sign-ins per address per round, one after another (default 30)
  --first-round N        number the rounds from N (0-159, default 0): 127.(64 + N).0.0/16 first,
                         so runs from different rounds come from addresses the server has not seen
  --duration S           rounds follow each other until this is up (default 10)
  --rate R               open model: R sign-ins per second in all, each on a new connection from
                         its address, whatever the answers take (at most 4096 in flight; the rest
                         are counted as unsent); without it each address sends its sign-ins one
                         after another, so faster answers mean more sign-ins
";

#[derive(Debug, Clone)]
pub(crate) struct Common {
    pub(crate) target: Target,
    pub(crate) connections: usize,
    pub(crate) duration: Duration,
    pub(crate) requests: Option<u64>,
    pub(crate) rate: Option<f64>,
    pub(crate) warmup: Duration,
    pub(crate) timeout: Duration,
    pub(crate) threads: Option<usize>,
    pub(crate) json: bool,
    /// Processes whose CPU time per request the report gives.
    pub(crate) cpu_pids: Vec<crate::cpu::Watched>,
    /// Closed model: after a 429 or 503 with Retry-After, a client waits
    /// that long (at most 5 s) before its next request, as a polite client
    /// does; otherwise it asks again at once.
    pub(crate) honor_retry_after: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Buy,
    SoldOut,
}

impl Mode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Buy => "buy",
            Self::SoldOut => "sold-out",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct PurchaseArgs {
    pub(crate) mode: Mode,
    pub(crate) sale: Option<String>,
    pub(crate) units: i64,
    pub(crate) max_per_user: i64,
    pub(crate) max_per_tx: i64,
    pub(crate) max_accounts_per_ip: i64,
    pub(crate) quantity: i64,
    pub(crate) buyers: usize,
    pub(crate) secret: String,
    pub(crate) issuer: String,
    pub(crate) admin: Option<(String, String)>,
    pub(crate) drain_timeout: Duration,
}

/// `ws`: watchers of one sale and the purchases they watch.
#[derive(Debug, Clone)]
pub(crate) struct WsArgs {
    pub(crate) target: Target,
    pub(crate) threads: Option<usize>,
    pub(crate) json: bool,
    pub(crate) watchers: usize,
    /// The sale to reuse or create, the quantity and the token settings.
    pub(crate) sale: PurchaseArgs,
    pub(crate) purchases: usize,
    pub(crate) interval: Duration,
    pub(crate) jitter: Duration,
    pub(crate) connect_concurrency: usize,
    pub(crate) connect_rate: Option<f64>,
    pub(crate) timeout: Duration,
    pub(crate) server_pid: Option<u32>,
    pub(crate) idle_wait: Duration,
    pub(crate) settle: Duration,
    pub(crate) max_time: Duration,
}

#[derive(Debug, Clone)]
pub(crate) enum Command {
    Help,
    Purchase(Common, PurchaseArgs),
    Get(Common, String),
    Ws(WsArgs),
    Flood(crate::flood::FloodArgs),
}

const BOOLS: &[&str] = &["json", "help", "create", "honor-retry-after"];
const COMMON: &[&str] = &[
    "target",
    "connections",
    "duration",
    "requests",
    "rate",
    "warmup",
    "timeout",
    "threads",
    "json",
    "help",
    "cpu-pids",
    "honor-retry-after",
];
/// The sale and token flags shared by `purchase` and `ws`.
const SALE: &[&str] = &[
    "sale",
    "units",
    "max-per-user",
    "max-per-tx",
    "max-accounts-per-ip",
    "quantity",
    "secret",
    "issuer",
    "admin-email",
    "admin-password",
];
const PURCHASE: &[&str] = &["mode", "buyers", "drain-timeout"];
const GET: &[&str] = &["path"];
const FLOOD: &[&str] = &[
    "target",
    "threads",
    "json",
    "help",
    "timeout",
    "duration",
    "addresses",
    "per-address",
    "first-round",
    "rate",
];
const WS: &[&str] = &[
    "target",
    "threads",
    "json",
    "help",
    "timeout",
    "watchers",
    "create",
    "purchases",
    "interval",
    "jitter",
    "connect-concurrency",
    "connect-rate",
    "server-pid",
    "idle-wait",
    "settle",
    "max-time",
];

struct Flags {
    values: HashMap<String, String>,
    bools: HashSet<String>,
}

impl Flags {
    fn parse(args: &[String], allowed: &[&[&str]]) -> Result<Self, String> {
        let known = |n: &str| allowed.iter().any(|set| set.contains(&n));
        let mut values = HashMap::new();
        let mut bools = HashSet::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let Some(name) = a.strip_prefix("--") else {
                if a == "-h" {
                    bools.insert("help".to_owned());
                    continue;
                }
                return Err(format!("unexpected argument `{a}`"));
            };
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (name, None),
            };
            if !known(name) {
                return Err(format!("unknown flag `--{name}` for this command"));
            }
            if BOOLS.contains(&name) {
                if inline.is_some() {
                    return Err(format!("`--{name}` takes no value"));
                }
                bools.insert(name.to_owned());
                continue;
            }
            let v = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("`--{name}` needs a value"))?,
            };
            if values.insert(name.to_owned(), v).is_some() {
                return Err(format!("`--{name}` given twice"));
            }
        }
        Ok(Self { values, bools })
    }

    fn str(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    fn num<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, String> {
        self.str(name)
            .map(|v| {
                v.trim()
                    .parse::<T>()
                    .map_err(|_| format!("`--{name}`: `{v}` is not a valid number"))
            })
            .transpose()
    }

    fn secs(&self, name: &str) -> Result<Option<Duration>, String> {
        match self.num::<f64>(name)? {
            None => Ok(None),
            Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
            Some(_) => Err(format!(
                "`--{name}` must be a non-negative number of seconds"
            )),
        }
    }
}

fn range<T: PartialOrd + std::fmt::Display + Copy>(
    name: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<T, String> {
    if v < lo || v > hi {
        return Err(format!("`--{name}` must be from {lo} to {hi} (got {v})"));
    }
    Ok(v)
}

fn common(f: &Flags) -> Result<Common, String> {
    let target = Target::parse(f.str("target").unwrap_or("127.0.0.1:5050"))?;
    let connections = range(
        "connections",
        f.num("connections")?.unwrap_or(64),
        1,
        MAX_CONNECTIONS,
    )?;
    let requests: Option<u64> = f.num("requests")?;
    if requests == Some(0) {
        return Err("`--requests` must be positive".to_owned());
    }
    let rate: Option<f64> = f.num("rate")?;
    if let Some(r) = rate {
        if !(r.is_finite() && r > 0.0 && r <= 10_000_000.0) {
            return Err("`--rate` must be a positive number of requests per second".to_owned());
        }
        if requests.is_some() {
            return Err(
                "`--requests` is for the closed model; the open model (--rate) runs for --duration"
                    .to_owned(),
            );
        }
    }
    let warmup = f.secs("warmup")?.unwrap_or_default();
    // With --requests and no --duration, the duration is only a bound.
    let duration = match f.secs("duration")? {
        Some(d) => d,
        None if requests.is_some() => {
            Duration::from_secs_f64(MAX_DURATION_SECS).saturating_sub(warmup)
        }
        None => Duration::from_secs(10),
    };
    if duration.is_zero() {
        return Err("`--duration` must be positive".to_owned());
    }
    if (warmup + duration).as_secs_f64() > MAX_DURATION_SECS {
        return Err(format!(
            "warm-up + duration must be at most {MAX_DURATION_SECS} s"
        ));
    }
    let timeout = f.secs("timeout")?.unwrap_or(Duration::from_secs(10));
    if timeout.is_zero() || timeout > Duration::from_secs(120) {
        return Err("`--timeout` must be from 0 to 120 seconds".to_owned());
    }
    let threads = f
        .num::<usize>("threads")?
        .map(|t| range("threads", t, 1, 256))
        .transpose()?;
    Ok(Common {
        target,
        connections,
        duration,
        requests,
        rate,
        warmup,
        timeout,
        threads,
        json: f.bools.contains("json"),
        cpu_pids: f
            .str("cpu-pids")
            .map(crate::cpu::parse_pids)
            .transpose()?
            .unwrap_or_default(),
        honor_retry_after: f.bools.contains("honor-retry-after"),
    })
}

fn env_nonempty(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

fn purchase(f: &Flags) -> Result<PurchaseArgs, String> {
    let mode = match f.str("mode").unwrap_or("buy") {
        "buy" => Mode::Buy,
        "sold-out" | "soldout" | "sold_out" => Mode::SoldOut,
        m => return Err(format!("`--mode` must be buy or sold-out (got `{m}`)")),
    };
    let default_units = if mode == Mode::SoldOut {
        100
    } else {
        1_000_000
    };
    let units = range(
        "units",
        f.num("units")?.unwrap_or(default_units),
        1,
        10_000_000,
    )?;
    let max_per_user = range(
        "max-per-user",
        f.num("max-per-user")?.unwrap_or(1_000_000),
        1,
        1_000_000,
    )?;
    let max_per_tx = range(
        "max-per-tx",
        f.num("max-per-tx")?.unwrap_or(10.min(max_per_user)),
        1,
        max_per_user,
    )?;
    let max_accounts_per_ip = range(
        "max-accounts-per-ip",
        f.num("max-accounts-per-ip")?.unwrap_or(0),
        0,
        1_000_000,
    )?;
    let quantity = range("quantity", f.num("quantity")?.unwrap_or(1), 1, 1_000_000)?;
    let buyers = range("buyers", f.num("buyers")?.unwrap_or(100_000), 1, 1_000_000)?;
    let secret = f
        .str("secret")
        .map(str::to_owned)
        .or_else(|| env_nonempty("SECRET_KEY"))
        .ok_or("minting tokens needs the server's secret: --secret KEY or env SECRET_KEY")?;
    let email = f
        .str("admin-email")
        .map(str::to_owned)
        .or_else(|| env_nonempty("ADMIN_EMAIL"));
    let password = f
        .str("admin-password")
        .map(str::to_owned)
        .or_else(|| env_nonempty("ADMIN_PASSWORD"));
    let admin = email.zip(password);
    let sale = f.str("sale").map(|s| s.trim().to_owned());
    if let Some(s) = &sale
        && (s.len() != 24 || !s.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err("`--sale` must be a 24-hex-digit id".to_owned());
    }
    let drain_timeout = f.secs("drain-timeout")?.unwrap_or(Duration::from_secs(30));
    if drain_timeout.as_secs_f64() > MAX_DURATION_SECS {
        return Err(format!(
            "`--drain-timeout` must be at most {MAX_DURATION_SECS} s"
        ));
    }
    Ok(PurchaseArgs {
        mode,
        sale,
        units,
        max_per_user,
        max_per_tx,
        max_accounts_per_ip,
        quantity,
        buyers,
        secret,
        issuer: f.str("issuer").unwrap_or("flashsale").to_owned(),
        admin,
        drain_timeout,
    })
}

/// Parses the arguments after the program name.
pub(crate) fn parse(args: &[String]) -> Result<Command, String> {
    let Some((cmd, rest)) = args.split_first() else {
        return Ok(Command::Help);
    };
    match cmd.as_str() {
        "-h" | "--help" | "help" => Ok(Command::Help),
        "purchase" => {
            let f = Flags::parse(rest, &[COMMON, SALE, PURCHASE])?;
            if f.bools.contains("help") {
                return Ok(Command::Help);
            }
            Ok(Command::Purchase(common(&f)?, purchase(&f)?))
        }
        "get" => {
            let f = Flags::parse(rest, &[COMMON, GET])?;
            if f.bools.contains("help") {
                return Ok(Command::Help);
            }
            let path = f.str("path").unwrap_or("/healthz").to_owned();
            if !path.starts_with('/') {
                return Err("`--path` must start with /".to_owned());
            }
            Ok(Command::Get(common(&f)?, path))
        }
        "ws" => {
            let f = Flags::parse(rest, &[WS, SALE])?;
            if f.bools.contains("help") {
                return Ok(Command::Help);
            }
            Ok(Command::Ws(ws(&f)?))
        }
        "signin-flood" => {
            let f = Flags::parse(rest, &[FLOOD])?;
            if f.bools.contains("help") {
                return Ok(Command::Help);
            }
            Ok(Command::Flood(flood(&f)?))
        }
        other => Err(format!(
            "unknown command `{other}` (expected purchase, get, ws or signin-flood)"
        )),
    }
}

fn flood(f: &Flags) -> Result<crate::flood::FloodArgs, String> {
    let secs = |name: &str, default: f64| -> Result<Duration, String> {
        let v: f64 = f.num(name)?.unwrap_or(default);
        if !(v.is_finite() && v > 0.0 && v <= MAX_DURATION_SECS) {
            return Err(format!(
                "`--{name}` must be above 0 and at most {MAX_DURATION_SECS} s"
            ));
        }
        Ok(Duration::from_secs_f64(v))
    };
    Ok(crate::flood::FloodArgs {
        target: Target::parse(f.str("target").unwrap_or("127.0.0.1:5050"))?,
        addresses: range("addresses", f.num("addresses")?.unwrap_or(300), 1, 60_000)?,
        per_address: range(
            "per-address",
            f.num("per-address")?.unwrap_or(30),
            1,
            100_000,
        )?,
        first_round: range("first-round", f.num("first-round")?.unwrap_or(0), 0, 159)?,
        duration: secs("duration", 10.0)?,
        rate: f
            .num::<f64>("rate")?
            .map(|r| {
                if r.is_finite() && r > 0.0 && r <= 100_000.0 {
                    Ok(r)
                } else {
                    Err(
                        "`--rate` must be above 0 and at most 100000 sign-ins per second"
                            .to_owned(),
                    )
                }
            })
            .transpose()?,
        timeout: secs("timeout", 10.0)?,
        threads: f
            .num::<usize>("threads")?
            .map(|t| range("threads", t, 1, 256))
            .transpose()?,
        json: f.bools.contains("json"),
    })
}

fn ws(f: &Flags) -> Result<WsArgs, String> {
    let target = Target::parse(f.str("target").unwrap_or("127.0.0.1:5050"))?;
    let threads = f
        .num::<usize>("threads")?
        .map(|t| range("threads", t, 1, 256))
        .transpose()?;
    let watchers = range(
        "watchers",
        f.num("watchers")?.unwrap_or(1000),
        1,
        MAX_WATCHERS,
    )?;
    if f.bools.contains("create") && f.str("sale").is_some() {
        return Err("`--create` and `--sale` exclude each other".to_owned());
    }
    let sale = purchase(f)?;
    let purchases = range("purchases", f.num("purchases")?.unwrap_or(20), 1, 1000)?;
    let interval = f.secs("interval")?.unwrap_or(Duration::from_millis(500));
    if interval > Duration::from_secs(60) {
        return Err("`--interval` must be at most 60 seconds".to_owned());
    }
    let jitter = f.secs("jitter")?.unwrap_or(Duration::from_millis(100));
    if jitter > Duration::from_secs(60) {
        return Err("`--jitter` must be at most 60 seconds".to_owned());
    }
    let connect_concurrency = range(
        "connect-concurrency",
        f.num("connect-concurrency")?.unwrap_or(500),
        1,
        MAX_WATCHERS,
    )?;
    let connect_rate: Option<f64> = f.num("connect-rate")?;
    if let Some(r) = connect_rate
        && !(r.is_finite() && r > 0.0 && r <= 1_000_000.0)
    {
        return Err(
            "`--connect-rate` must be a positive number of connections per second".to_owned(),
        );
    }
    let timeout = f.secs("timeout")?.unwrap_or(Duration::from_secs(10));
    if timeout.is_zero() || timeout > Duration::from_secs(120) {
        return Err("`--timeout` must be from 0 to 120 seconds".to_owned());
    }
    let server_pid = f
        .num::<u32>("server-pid")?
        .map(|p| range("server-pid", p, 1, u32::MAX))
        .transpose()?;
    let idle_wait = f.secs("idle-wait")?.unwrap_or(Duration::from_secs(2));
    let settle = f.secs("settle")?.unwrap_or(Duration::from_secs(3));
    let max_time = f
        .secs("max-time")?
        .unwrap_or(Duration::from_secs_f64(MAX_DURATION_SECS));
    if max_time.is_zero() || max_time.as_secs_f64() > MAX_DURATION_SECS {
        return Err(format!(
            "`--max-time` must be from 0 to {MAX_DURATION_SECS} s"
        ));
    }
    let needed =
        idle_wait + interval * u32::try_from(purchases).unwrap_or(u32::MAX) + jitter + settle;
    if needed >= max_time {
        return Err(format!(
            "idle-wait + purchases x interval + settle ({:.1} s) leaves no time to connect within --max-time {:.0} s",
            needed.as_secs_f64(),
            max_time.as_secs_f64()
        ));
    }
    Ok(WsArgs {
        target,
        threads,
        json: f.bools.contains("json"),
        watchers,
        sale,
        purchases,
        interval,
        jitter,
        connect_concurrency,
        connect_rate,
        timeout,
        server_pid,
        idle_wait,
        settle,
        max_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn get_parses_and_bounds_are_enforced() {
        let Command::Get(c, path) = parse(&args(
            "get --path /readyz --connections=8 --rate 100 --duration 2",
        ))
        .unwrap() else {
            panic!("not get");
        };
        assert_eq!(path, "/readyz");
        assert_eq!(c.connections, 8);
        assert_eq!(c.rate, Some(100.0));
        assert!(parse(&args("get --connections 5000")).is_err());
        assert!(parse(&args("get --duration 301")).is_err());
        assert!(parse(&args("get --warmup 10 --duration 295")).is_err());
        assert!(parse(&args("get --target 192.168.1.1:80")).is_err());
        assert!(parse(&args("get --rate 10 --requests 5")).is_err());
        assert!(parse(&args("get --cpu-pids server=0")).is_err());
        assert!(parse(&args("get --cpu-pids load=12")).is_err());
        assert!(parse(&args("get --cpu-pids server=12,redis=34")).is_ok());
        assert!(parse(&args("signin-flood --rate 0")).is_err());
        assert!(parse(&args("signin-flood --rate 100001")).is_err());
        assert!(parse(&args("signin-flood --rate 700")).is_ok());
        assert!(parse(&args("signin-flood --first-round 160")).is_err());
        assert!(parse(&args("signin-flood --first-round -1")).is_err());
        assert!(parse(&args("signin-flood --first-round 159")).is_ok());
        assert!(parse(&args("get --bogus 1")).is_err());
    }

    #[test]
    fn purchase_defaults_and_secret() {
        let Command::Purchase(_, p) = parse(&args(
            "purchase --secret abc --mode sold-out --sale 0123456789abcdef01234567",
        ))
        .unwrap() else {
            panic!("not purchase");
        };
        assert_eq!(p.mode, Mode::SoldOut);
        assert_eq!(p.units, 100);
        assert_eq!(p.max_per_tx, 10);
        assert!(parse(&args("purchase --secret abc --sale xyz")).is_err());
        assert!(
            parse(&args(
                "purchase --secret abc --max-per-user 2 --max-per-tx 3"
            ))
            .is_err()
        );
    }

    #[test]
    fn ws_parses_and_is_bounded() {
        let Command::Ws(w) = parse(&args(
            "ws --secret abc --watchers 10000 --server-pid 42 --create --connect-rate 2000",
        ))
        .unwrap() else {
            panic!("not ws");
        };
        assert_eq!(w.watchers, 10_000);
        assert_eq!(w.purchases, 20);
        assert_eq!(w.interval, Duration::from_millis(500));
        assert_eq!(w.connect_concurrency, 500);
        assert_eq!(w.connect_rate, Some(2000.0));
        assert_eq!(w.server_pid, Some(42));
        assert_eq!(w.sale.quantity, 1);
        assert!(w.sale.sale.is_none());
        assert!(parse(&args("ws --secret abc --watchers 20001")).is_err());
        assert!(parse(&args("ws --secret abc --max-time 301")).is_err());
        assert!(parse(&args("ws --secret abc --target 10.1.2.3:5050")).is_err());
        assert!(
            parse(&args(
                "ws --secret abc --create --sale 0123456789abcdef01234567"
            ))
            .is_err()
        );
        assert!(parse(&args("ws --secret abc --purchases 100 --interval 3")).is_err());
        assert!(parse(&args("ws --secret abc --connections 5")).is_err());
        assert!(parse(&args("purchase --secret abc --watchers 5")).is_err());
    }
}
