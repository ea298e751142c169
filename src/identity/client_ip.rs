//! The client's address: the socket peer, or X-Forwarded-For when the peer is a trusted proxy.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// Walks X-Forwarded-For from the right, skipping trusted proxies, and returns the first
/// address that is not one: the client as seen by our outermost trusted hop. Entries a client
/// forged sit further left and are never reached. An untrusted peer's header is ignored.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(&ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            // Garbage in the chain: stop at the last address we could trust.
            return Some(client);
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    Some(client)
}

fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    // "1.2.3.4:5678" or "[::1]:5678"
    hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip())
}
