//! The source of a request, as the registration budget counts it: the peer address of the
//! connection, or — on a connection from a trusted proxy, when a forwarded header is configured
//! — the right-most address of that header that is not itself a trusted proxy (nginx's
//! `real_ip_recursive`), so a load balancer and a TLS terminator in a row still give each client
//! its own source. IPv6 sources count per /64 (what one subscriber gets) and per /48 (a site),
//! IPv4-mapped IPv6 as IPv4.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

use crate::registration_limits::TrustedForwarding;

/// The client address of a request on a connection from `peer` (`None` when the server did not
/// say, as in an in-process router).
pub(in crate::routes) fn client_address(
    forwarded: Option<&TrustedForwarding>,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Option<IpAddr> {
    let peer = peer?.ip().to_canonical();
    let Some(fw) = forwarded.filter(|fw| fw.trusts(peer)) else {
        return Some(peer);
    };
    Some(walk_from_the_right(fw, peer, headers))
}

/// Walks the header's addresses (every occurrence, in order) from the right: each trusted proxy
/// vouches for the address left of it, so the first untrusted address is the client's, and
/// anything further left was written by the client. All trusted: the left-most. An element that
/// is not an address stops the walk at the last proxy that wrote it (its own address), so such
/// requests share one budget rather than escape it.
fn walk_from_the_right(fw: &TrustedForwarding, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let rfc7239 = fw.header().as_str() == "forwarded";
    let elements: Vec<&str> = headers
        .get_all(fw.header())
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut client = peer;
    for element in elements.into_iter().rev() {
        let value = if rfc7239 {
            rfc7239_for(element)
        } else {
            Some(element)
        };
        let Some(ip) = value.and_then(parse_address) else {
            break;
        };
        client = ip.to_canonical();
        if !fw.trusts(client) {
            break;
        }
    }
    client
}

/// The `for=` parameter of one RFC 7239 `Forwarded` element.
fn rfc7239_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then(|| v.trim())
    })
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:5678`, optionally in quotes.
fn parse_address(v: &str) -> Option<IpAddr> {
    let v = v.trim().trim_matches('"');
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = v.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    v.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse().ok())
}

/// The bytes a source is counted by: an IPv4 address, or an IPv6 address's /64 prefix.
pub(super) fn source_key(ip: Option<IpAddr>) -> Vec<u8> {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => v4.octets().to_vec(),
        Some(IpAddr::V6(v6)) => v6.octets()[..8].to_vec(),
        None => b"unknown".to_vec(),
    }
}

/// The bytes an IPv6 source's site is counted by: its /48 prefix (`None` for IPv4, and when the
/// server did not say).
pub(super) fn site_key(ip: Option<IpAddr>) -> Option<Vec<u8>> {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V6(v6)) => Some(v6.octets()[..6].to_vec()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn the_right_most_forwarded_value_counts_only_from_a_trusted_proxy() {
        let proxy: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let fw = TrustedForwarding::new("x-forwarded-for", vec![proxy.ip()]).unwrap();
        let h = headers("x-forwarded-for", &["6.6.6.6, 7.7.7.7", "203.0.113.9:555"]);
        let got = client_address(Some(&fw), Some(proxy), &h);
        assert_eq!(got, Some("203.0.113.9".parse().unwrap()));
        // The same header from anyone else is ignored.
        let other: SocketAddr = "198.51.100.3:1".parse().unwrap();
        assert_eq!(client_address(Some(&fw), Some(other), &h), Some(other.ip()));
        // Not configured: the peer.
        assert_eq!(client_address(None, Some(proxy), &h), Some(proxy.ip()));
        // A trusted proxy without a usable value: its own address.
        let junk = headers("x-forwarded-for", &["unknown"]);
        assert_eq!(
            client_address(Some(&fw), Some(proxy), &junk),
            Some(proxy.ip())
        );
    }

    #[test]
    fn trusted_hops_are_skipped_from_the_right() {
        let nets: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let fw = TrustedForwarding::with_ranges("x-forwarded-for", nets).unwrap();
        let peer: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let at = |v: &[&str]| client_address(Some(&fw), Some(peer), &headers("x-forwarded-for", v));
        let client: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(at(&["6.6.6.6, 198.51.100.1, 10.9.9.9"]), Some(client));
        assert_eq!(at(&["198.51.100.1", "10.9.9.9, 10.1.1.1"]), Some(client));
        // All trusted: the left-most.
        assert_eq!(
            at(&["10.3.3.3, 10.2.2.2"]),
            Some("10.3.3.3".parse().unwrap())
        );
        // Junk behind a trusted hop: that hop.
        assert_eq!(
            at(&["198.51.100.1, junk, 10.2.2.2"]),
            Some("10.2.2.2".parse().unwrap())
        );
    }

    #[test]
    fn rfc7239_and_ipv6_forms_are_read() {
        let proxy: SocketAddr = "[::1]:4000".parse().unwrap();
        let fw = TrustedForwarding::new("forwarded", vec![proxy.ip()]).unwrap();
        let h = headers(
            "forwarded",
            &["for=1.1.1.1, for=\"[2001:db8::7]:80\";proto=https"],
        );
        assert_eq!(
            client_address(Some(&fw), Some(proxy), &h),
            Some("2001:db8::7".parse().unwrap())
        );
        assert_eq!(
            source_key(Some("2001:db8:0:1::7".parse().unwrap())),
            source_key(Some("2001:db8:0:1:ffff::1".parse().unwrap()))
        );
        assert_eq!(
            source_key(Some("::ffff:192.0.2.1".parse().unwrap())),
            vec![192, 0, 2, 1]
        );
        assert_eq!(site_key(Some("::ffff:192.0.2.1".parse().unwrap())), None);
        assert_eq!(
            site_key(Some("2001:db8:0:1::7".parse().unwrap())),
            site_key(Some("2001:db8:0:ff::1".parse().unwrap()))
        );
        assert_ne!(
            site_key(Some("2001:db8:0::7".parse().unwrap())),
            site_key(Some("2001:db8:1::7".parse().unwrap()))
        );
    }
}
