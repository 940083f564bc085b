//! The client's address: the TCP peer, or, when the peer is a proxy the
//! operator trusts (`--trusted-proxy`), the address it forwarded in
//! `X-Forwarded-For`.
//!
//! Everything that limits or records by source address (the rate limits,
//! the per-address connection cap's exemption, the events' `source_ip`)
//! uses this one answer. A header from any other peer is ignored: anyone
//! can write `X-Forwarded-For`, so only a proxy we trust may say who its
//! client is, and only the hops it and other trusted proxies appended
//! count (the right-most address that is not a trusted proxy; what the
//! client wrote to the left of it is the client's own claim).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use crate::AppState;

/// `X-Forwarded-For` entries looked at, from the right. Each trusted proxy
/// adds one; a chain of more than a few is a misconfiguration or a forgery,
/// and the bound keeps the work per request small.
pub const FORWARDED_HOPS_MAX: usize = 16;

/// The TCP peer of a request, as it connected (the `ConnectInfo` extension
/// is rewritten to the client's address; this keeps the peer's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddress(pub SocketAddr);

/// The client a request comes from (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

/// The proxies (addresses or networks) whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses addresses (`10.0.0.5`, `::1`) and networks (`10.0.0.0/8`).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let parse = |text: &str| {
            let text = text.trim();
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("--trusted-proxy {text:?} is not an IP address or network (CIDR)"))
        };
        entries.iter().map(|entry| parse(entry.as_ref())).collect::<Result<_, _>>().map(Self)
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|network| network.contains(&address))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The client of a request from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        // Header lines in order, each a comma-separated list: the last
        // entry of the last line is the hop nearest to us, so read from the
        // right. A line that is not text reads as an unreadable entry.
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .map(|value| value.to_str().unwrap_or("\u{fffd}"))
            .flat_map(|value| value.rsplit(','));
        let mut client = peer;
        for entry in hops.take(FORWARDED_HOPS_MAX) {
            // Something unreadable ends the chain: the last hop we could
            // read and trust is as far as we know.
            let Some(hop) = forwarded_address(entry) else { break };
            client = hop;
            if !self.contains(hop) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, or an address with a port
/// (`192.0.2.1:5000`, `[2001:db8::1]:5000`), as some proxies write.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let address = entry.parse::<IpAddr>().or_else(|_| entry.parse::<SocketAddr>().map(|a| a.ip())).ok()?;
    Some(canonical(address))
}

/// An IPv4 address written as IPv6 (`::ffff:192.0.2.1`, as dual-stack
/// sockets report IPv4 peers) is the IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The key a per-address limit counts under: an IPv4 address, or an IPv6
/// client's /64 network. One IPv6 host is normally given a whole /64, so
/// limiting single IPv6 addresses would let one host take 2^64 allowances
/// (and fill the limiter's map).
pub fn limit_key(address: IpAddr) -> IpAddr {
    match canonical(address) {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// Middleware: finds the client's address and puts it into the request as
/// [`ClientAddress`], and also as `ConnectInfo`, so every handler that reads
/// the peer's address (rate limits, event metadata) sees the client. The
/// peer itself stays available as [`PeerAddress`]. Requests without a
/// socket (tests that call the router directly) have neither.
pub async fn resolve(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let client = state.edge.trusted_proxies.client(peer.ip(), request.headers());
        let extensions = request.extensions_mut();
        extensions.insert(PeerAddress(peer));
        extensions.insert(ClientAddress(client));
        // The client's port is not known past a proxy: 0.
        extensions.insert(ConnectInfo(SocketAddr::new(client, 0)));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_client_is_the_right_most_address_that_is_not_a_trusted_proxy() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8", "192.0.2.1"]).unwrap();
        let proxy = ip("10.1.1.1");
        for (case, values, client) in [
            ("no header", vec![], "10.1.1.1"),
            ("one hop", vec!["203.0.113.7"], "203.0.113.7"),
            ("a forged hop to the left", vec!["1.2.3.4, 203.0.113.7"], "203.0.113.7"),
            ("two trusted proxies", vec!["203.0.113.7, 10.9.9.9, 192.0.2.1"], "203.0.113.7"),
            ("several header lines", vec!["1.2.3.4", "203.0.113.7, 10.2.2.2"], "203.0.113.7"),
            ("only proxies", vec!["10.3.3.3, 10.4.4.4"], "10.3.3.3"),
            ("garbage nearest us", vec!["203.0.113.7, nonsense"], "10.1.1.1"),
            ("garbage behind a proxy", vec!["nonsense, 10.5.5.5"], "10.5.5.5"),
            ("with ports", vec!["[2001:db8::7]:443, 10.6.6.6:80"], "2001:db8::7"),
            ("IPv4 written as IPv6", vec!["::ffff:203.0.113.8"], "203.0.113.8"),
        ] {
            assert_eq!(trusted.client(proxy, &headers(&values)), ip(client), "{case}");
        }
        // Another peer's header is not believed.
        assert_eq!(trusted.client(ip("198.51.100.1"), &headers(&["203.0.113.7"])), ip("198.51.100.1"));
        assert_eq!(TrustedProxies::default().client(proxy, &headers(&["203.0.113.7"])), proxy);
    }

    #[test]
    fn a_long_chain_of_trusted_hops_is_cut_at_the_bound() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        let chain: Vec<String> = (0..100).map(|n| format!("10.0.0.{n}")).collect();
        let value = format!("203.0.113.7, {}", chain.join(", "));
        let client = trusted.client(ip("10.1.1.1"), &headers(&[&value]));
        assert_eq!(client, ip(&format!("10.0.0.{}", 100 - FORWARDED_HOPS_MAX)));
    }

    #[test]
    fn bad_proxy_settings_are_refused() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(&["proxy.example"]).is_err());
        assert!(TrustedProxies::parse(&[" 127.0.0.1 ", "::1", "fd00::/8"]).is_ok());
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64_network() {
        assert_eq!(limit_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(limit_key(ip("2001:db8:1:2:ffff::1")), ip("2001:db8:1:2::"));
        assert_eq!(limit_key(ip("::ffff:203.0.113.8")), ip("203.0.113.8"));
        assert_eq!(limit_key(ip("203.0.113.8")), ip("203.0.113.8"));
    }
}
