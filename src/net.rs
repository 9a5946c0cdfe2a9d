//! Client addresses: who is asking (the socket peer, or the address a trusted
//! proxy forwarded) and the key an address is counted under by every
//! per-address limit. A leaf beside `config`: the HTTP layer, the fraud
//! rules and the purchase script's per-address cap all key addresses here.

use std::net::IpAddr;

use http::HeaderMap;

use crate::config::TrustProxy;

/// The key an address is counted under: IPv4 as is, IPv6 by its /64 (one
/// subscriber usually holds a whole /64).
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let segs = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(
                segs[0], segs[1], segs[2], segs[3], 0, 0, 0, 0,
            ))
        }
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The client's address: the socket peer, or, when the peer is a trusted proxy
/// (inside `TRUST_PROXY_FROM` with a hop count, or inside the `TRUST_PROXY`
/// networks), the address X-Forwarded-For names for it, read right to left.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trust: &TrustProxy) -> IpAddr {
    let peer = canonical(peer);
    let hops = || {
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rev()
    };
    match trust {
        TrustProxy::None => peer,
        TrustProxy::Hops { hops: n, from } => {
            // Only a peer inside the proxies' networks may speak for someone
            // else: a client reaching the port directly is its socket address.
            if !from.iter().any(|net| net.contains(&peer)) {
                return peer;
            }
            // The peer is hop 1; each further trusted hop is one more entry from the right.
            let mut ip = peer;
            for (i, entry) in hops().enumerate() {
                if i >= usize::from(*n) {
                    break;
                }
                match entry.parse::<IpAddr>() {
                    Ok(next) => ip = canonical(next),
                    Err(_) => break,
                }
            }
            ip
        }
        TrustProxy::Cidrs(nets) => {
            let trusted = |ip: &IpAddr| nets.iter().any(|n| n.contains(ip));
            if !trusted(&peer) {
                return peer;
            }
            let mut ip = peer;
            for entry in hops() {
                match entry.parse::<IpAddr>() {
                    Ok(next) => {
                        ip = canonical(next);
                        if !trusted(&ip) {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            ip
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_ignored_without_trust() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(client_ip(peer, &xff("1.2.3.4"), &TrustProxy::None), peer);
    }

    fn hops_from(hops: u8, from: &str) -> TrustProxy {
        TrustProxy::Hops {
            hops,
            from: vec![from.parse().unwrap()],
        }
    }

    #[test]
    fn one_trusted_hop_takes_the_rightmost_entry() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let ip = client_ip(peer, &xff("6.6.6.6, 1.2.3.4"), &hops_from(1, "10.0.0.0/8"));
        assert_eq!(ip, "1.2.3.4".parse::<IpAddr>().unwrap());
        let two = client_ip(peer, &xff("6.6.6.6, 1.2.3.4"), &hops_from(2, "10.0.0.0/8"));
        assert_eq!(two, "6.6.6.6".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_hop_count_ignores_forwarded_for_from_a_peer_outside_the_proxy_networks() {
        let trust = hops_from(1, "10.0.0.0/8");
        let direct: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(client_ip(direct, &xff("1.2.3.4"), &trust), direct);
        // IPv4-mapped peers are compared as IPv4.
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(mapped, &xff("1.2.3.4"), &trust),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        let mapped_direct: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        assert_eq!(
            client_ip(mapped_direct, &xff("1.2.3.4"), &trust),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn cidr_trust_skips_trusted_hops_and_stops_at_the_first_untrusted() {
        let trust: TrustProxy = "10.0.0.0/8".parse().unwrap();
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let ip = client_ip(peer, &xff("6.6.6.6, 1.2.3.4, 10.1.1.1"), &trust);
        assert_eq!(ip, "1.2.3.4".parse::<IpAddr>().unwrap());
        // An untrusted peer's header is ignored.
        let outside: IpAddr = "8.8.8.8".parse().unwrap();
        assert_eq!(client_ip(outside, &xff("1.2.3.4"), &trust), outside);
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(ip_key(v4), v4);
    }
}
