//! The `http` section: where the server listens, its request and connection
//! limits, and which peers may set X-Forwarded-For.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

use super::{ConfigError, Reader, Source, list, parse_net};

pub const ENV_PORT: &str = "PORT";
pub const DEFAULT_PORT: u16 = 5050;
pub const ENV_BIND: &str = "BIND_ADDR";
pub const DEFAULT_BIND: &str = "0.0.0.0";

pub const ENV_TRUST_PROXY: &str = "TRUST_PROXY";
/// The proxies' networks: with a hop count in `TRUST_PROXY`, X-Forwarded-For
/// is believed only from a socket peer inside one of them. Required then.
pub const ENV_TRUST_PROXY_FROM: &str = "TRUST_PROXY_FROM";

pub const ENV_MAX_BODY_BYTES: &str = "MAX_BODY_BYTES";
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;
pub const ENV_HEADER_READ_TIMEOUT_MS: &str = "HEADER_READ_TIMEOUT_MS";
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
pub const ENV_MAX_CONNECTIONS: &str = "MAX_CONNECTIONS";
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
pub const ENV_MAX_IN_FLIGHT: &str = "MAX_IN_FLIGHT";
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4_096;
/// Sign-in and sign-up's share of `MAX_IN_FLIGHT` (default: an eighth), so
/// an authentication flood leaves the rest to purchases and reads.
pub const ENV_AUTH_MAX_IN_FLIGHT: &str = "AUTH_MAX_IN_FLIGHT";
pub const ENV_BODY_READ_TIMEOUT_MS: &str = "BODY_READ_TIMEOUT_MS";
pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 5_000;
pub const ENV_HTTP2_MAX_STREAMS: &str = "HTTP2_MAX_STREAMS";
pub const DEFAULT_HTTP2_MAX_STREAMS: u32 = 32;
pub const ENV_SHUTDOWN_GRACE_MS: &str = "SHUTDOWN_GRACE_MS";
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 10_000;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub bind: IpAddr,
    pub port: u16,
    pub max_body_bytes: usize,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// Requests handled at once; beyond this, 503 with Retry-After at once.
    pub max_in_flight: usize,
    /// Of those, how many may be sign-ins and sign-ups.
    pub auth_max_in_flight: usize,
    /// A request body must arrive within this, or the answer is 408. The
    /// body is read before the request takes an in-flight slot.
    pub body_read_timeout: Duration,
    /// Concurrent streams on one HTTP/2 connection.
    pub http2_max_streams: u32,
    pub shutdown_grace: Duration,
    pub trust_proxy: TrustProxy,
}

/// Which peers may set X-Forwarded-For.
///
/// Parsed from `TRUST_PROXY` alone, a hop count has no networks yet: [`read`]
/// adds `TRUST_PROXY_FROM` and refuses a hop count without it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TrustProxy {
    /// Use the socket peer address; ignore X-Forwarded-For entirely.
    #[default]
    None,
    /// Trust this many proxy hops in front of the service, when the socket
    /// peer (the nearest proxy) is inside `from` (`TRUST_PROXY_FROM`); a
    /// client reaching the port directly is taken at its socket address.
    Hops { hops: u8, from: Vec<IpNet> },
    /// Trust proxies whose address is inside one of these networks.
    Cidrs(Vec<IpNet>),
}

impl TrustProxy {
    /// `n` hops, believed from no peer until networks are added.
    fn hops(n: u8) -> Self {
        Self::Hops {
            hops: n,
            from: Vec::new(),
        }
    }
}

impl FromStr for TrustProxy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        match s {
            "" | "false" | "0" | "none" => return Ok(Self::None),
            "true" => return Ok(Self::hops(1)),
            _ => {}
        }
        if let Ok(n) = s.parse::<u8>() {
            return Ok(Self::hops(n));
        }
        list(s)
            .map(|part| {
                parse_net(part).ok_or_else(|| {
                    format!("`{part}` is not a hop count, an IP address or a CIDR network")
                })
            })
            .collect::<Result<_, _>>()
            .map(Self::Cidrs)
    }
}

/// Reads `BIND_ADDR`, `PORT`, `MAX_BODY_BYTES`, `HEADER_READ_TIMEOUT_MS`,
/// `MAX_CONNECTIONS`, `MAX_IN_FLIGHT`, `AUTH_MAX_IN_FLIGHT`,
/// `BODY_READ_TIMEOUT_MS`, `HTTP2_MAX_STREAMS`, `SHUTDOWN_GRACE_MS`,
/// `TRUST_PROXY` and `TRUST_PROXY_FROM`.
pub(super) fn read(src: &dyn Source) -> Result<HttpConfig, ConfigError> {
    let r = Reader::new(src);
    let trust_proxy = read_trust_proxy(&r)?;
    let max_in_flight = r.ranged(ENV_MAX_IN_FLIGHT, DEFAULT_MAX_IN_FLIGHT, 1, 1_000_000)?;
    Ok(HttpConfig {
        bind: r.parse_or(ENV_BIND, DEFAULT_BIND.parse().expect("valid default"))?,
        port: r.parse_or(ENV_PORT, DEFAULT_PORT)?,
        max_body_bytes: r.ranged(ENV_MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES, 256, 16 << 20)?,
        header_read_timeout: r
            .millis(ENV_HEADER_READ_TIMEOUT_MS, DEFAULT_HEADER_READ_TIMEOUT_MS)?,
        max_connections: r.ranged(ENV_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS, 1, 1_000_000)?,
        max_in_flight,
        auth_max_in_flight: r.ranged(
            ENV_AUTH_MAX_IN_FLIGHT,
            (max_in_flight / 8).max(1),
            1,
            max_in_flight,
        )?,
        body_read_timeout: r.millis_from(
            ENV_BODY_READ_TIMEOUT_MS,
            DEFAULT_BODY_READ_TIMEOUT_MS,
            1,
        )?,
        http2_max_streams: r.ranged(ENV_HTTP2_MAX_STREAMS, DEFAULT_HTTP2_MAX_STREAMS, 1, 1_000)?,
        shutdown_grace: r.millis(ENV_SHUTDOWN_GRACE_MS, DEFAULT_SHUTDOWN_GRACE_MS)?,
        trust_proxy,
    })
}

/// `TRUST_PROXY`, with `TRUST_PROXY_FROM` required by a hop count (the binary
/// binds every interface, so without it any client reaching the port could
/// name its own address) and refused otherwise (it would do nothing).
fn read_trust_proxy(r: &Reader<'_>) -> Result<TrustProxy, ConfigError> {
    let from = r.nets(ENV_TRUST_PROXY_FROM)?;
    match r.parse_or(ENV_TRUST_PROXY, TrustProxy::None)? {
        TrustProxy::Hops { .. } if from.is_empty() => Err(ConfigError::new(
            ENV_TRUST_PROXY_FROM,
            "is required when TRUST_PROXY is a hop count: the proxies' networks \
             (CIDRs), the only peers whose X-Forwarded-For is believed",
        )),
        TrustProxy::Hops { hops, .. } => Ok(TrustProxy::Hops { hops, from }),
        _ if !from.is_empty() => Err(ConfigError::new(
            ENV_TRUST_PROXY_FROM,
            "applies only when TRUST_PROXY is a hop count",
        )),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{map, refused};
    use super::*;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = read(&map(&[])).unwrap();
        assert_eq!(c.bind.to_string(), DEFAULT_BIND);
        assert_eq!(c.port, DEFAULT_PORT);
        assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.shutdown_grace, Duration::from_millis(10_000));
        assert_eq!(c.auth_max_in_flight, DEFAULT_MAX_IN_FLIGHT / 8);
        assert_eq!(c.http2_max_streams, DEFAULT_HTTP2_MAX_STREAMS);
    }

    #[test]
    fn the_auth_share_cannot_exceed_the_whole() {
        let c = read(&map(&[(ENV_MAX_IN_FLIGHT, "16")])).unwrap();
        assert_eq!(c.auth_max_in_flight, 2);
        assert_eq!(
            refused(
                read,
                &[(ENV_MAX_IN_FLIGHT, "16"), (ENV_AUTH_MAX_IN_FLIGHT, "17")]
            ),
            ENV_AUTH_MAX_IN_FLIGHT
        );
        assert_eq!(
            refused(read, &[(ENV_BODY_READ_TIMEOUT_MS, "0")]),
            ENV_BODY_READ_TIMEOUT_MS
        );
    }

    #[test]
    fn bad_port_names_the_variable() {
        assert_eq!(refused(read, &[(ENV_PORT, "70000")]), ENV_PORT);
        assert_eq!(refused(read, &[(ENV_PORT, "abc")]), ENV_PORT);
    }

    #[test]
    fn each_bad_http_value_names_its_variable() {
        for var in [ENV_BIND, ENV_MAX_BODY_BYTES, ENV_MAX_CONNECTIONS] {
            assert_eq!(refused(read, &[(var, "0")]), var);
        }
        assert_eq!(
            refused(read, &[(ENV_MAX_IN_FLIGHT, "-1")]),
            ENV_MAX_IN_FLIGHT
        );
        assert_eq!(
            refused(read, &[(ENV_HEADER_READ_TIMEOUT_MS, "soon")]),
            ENV_HEADER_READ_TIMEOUT_MS
        );
    }

    #[test]
    fn trust_proxy_accepts_hops_and_cidrs() {
        assert_eq!("2".parse::<TrustProxy>().unwrap(), TrustProxy::hops(2));
        assert_eq!("".parse::<TrustProxy>().unwrap(), TrustProxy::None);
        let TrustProxy::Cidrs(n) = "10.0.0.0/8, 127.0.0.1".parse::<TrustProxy>().unwrap() else {
            panic!("expected cidrs")
        };
        assert_eq!(n.len(), 2);
        assert!("nonsense".parse::<TrustProxy>().is_err());
        assert_eq!(
            refused(read, &[(ENV_TRUST_PROXY, "nonsense")]),
            ENV_TRUST_PROXY
        );
    }

    #[test]
    fn a_hop_count_needs_the_proxies_networks() {
        assert_eq!(
            refused(read, &[(ENV_TRUST_PROXY, "1")]),
            ENV_TRUST_PROXY_FROM
        );
        let e = read(&map(&[(ENV_TRUST_PROXY, "true")])).expect_err("refused");
        assert!(e.to_string().contains("TRUST_PROXY_FROM"), "{e}");
        let c = read(&map(&[
            (ENV_TRUST_PROXY, "2"),
            (ENV_TRUST_PROXY_FROM, "172.28.0.10, 10.0.0.0/8"),
        ]))
        .unwrap();
        let TrustProxy::Hops { hops: 2, from } = c.trust_proxy else {
            panic!("expected two hops, got {:?}", c.trust_proxy)
        };
        assert_eq!(from.len(), 2);
        assert_eq!(
            refused(
                read,
                &[
                    (ENV_TRUST_PROXY, "1"),
                    (ENV_TRUST_PROXY_FROM, "proxy.local")
                ]
            ),
            ENV_TRUST_PROXY_FROM
        );
    }

    #[test]
    fn trust_proxy_from_without_a_hop_count_is_refused() {
        for trust in ["", "none", "10.0.0.0/8"] {
            let m = [(ENV_TRUST_PROXY, trust), (ENV_TRUST_PROXY_FROM, "10.0.0.1")];
            assert_eq!(
                refused(read, &m),
                ENV_TRUST_PROXY_FROM,
                "TRUST_PROXY={trust}"
            );
        }
    }
}
