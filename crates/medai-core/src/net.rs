//! Which address a request came from, when proxies sit in front of medai.

use ipnet::IpNet;
use std::net::IpAddr;

/// The client address: the TCP peer, or, when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` hop that is not itself a trusted proxy. Hops to the left of that one are
/// written by the client and never believed, so a client cannot choose its own address (and
/// escape per-address login throttling) by sending the header itself.
pub fn resolve_client_ip(
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let peer = peer?;
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut client = peer;
    let hops = forwarded_for
        .iter()
        .flat_map(|h| h.split(','))
        .map(str::trim);
    for hop in hops.collect::<Vec<_>>().into_iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            // A malformed hop ends the chain; keep the last address we could trust.
            Err(_) => break,
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // A client sending the header itself changes nothing.
        assert_eq!(
            resolve_client_ip(Some(ip("203.0.113.9")), &["1.2.3.4"], &trusted),
            Some(ip("203.0.113.9"))
        );
        // Through the proxy: the hop the proxy appended.
        assert_eq!(
            resolve_client_ip(Some(ip("10.0.0.5")), &["1.2.3.4"], &trusted),
            Some(ip("1.2.3.4"))
        );
        // A spoofed left-most hop is ignored.
        assert_eq!(
            resolve_client_ip(Some(ip("10.0.0.5")), &["6.6.6.6, 1.2.3.4"], &trusted),
            Some(ip("1.2.3.4"))
        );
        // Two proxies deep, and several header lines.
        assert_eq!(
            resolve_client_ip(
                Some(ip("10.0.0.5")),
                &["6.6.6.6", "1.2.3.4, 10.0.0.7"],
                &trusted
            ),
            Some(ip("1.2.3.4"))
        );
        // Garbage stops the walk at the last trusted address.
        assert_eq!(
            resolve_client_ip(Some(ip("10.0.0.5")), &["1.2.3.4, nonsense"], &trusted),
            Some(ip("10.0.0.5"))
        );
        // No header: the proxy itself.
        assert_eq!(
            resolve_client_ip(Some(ip("10.0.0.5")), &[], &trusted),
            Some(ip("10.0.0.5"))
        );
        assert_eq!(resolve_client_ip(None, &["1.2.3.4"], &trusted), None);
        // IPv6.
        let v6: Vec<IpNet> = vec!["fd00::/8".parse().unwrap()];
        assert_eq!(
            resolve_client_ip(Some(ip("fd00::1")), &["2001:db8::1"], &v6),
            Some(ip("2001:db8::1"))
        );
    }
}
