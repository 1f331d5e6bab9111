//! Whose address a web client's request counts against (the per-IP rate, [`super::limits`]):
//! the TCP peer's, unless the peer is one of `newo_chat.trusted_proxies` (a reverse proxy in
//! front of the daemon). Then it is the rightmost `X-Forwarded-For` address that is not a
//! trusted proxy: each proxy appends the address it was connected from, so everything to the
//! left of the first untrusted hop is the client's own say and is never believed. From a peer
//! that is not trusted the header is ignored: sending one from the internet changes nothing.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The trusted proxies: networks and single addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// An `X-Forwarded-For` entry's address: a bare one, or with a port (`1.2.3.4:5`, `[::1]:5`).
fn address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

impl TrustedProxies {
    /// Parses CIDR blocks (`10.0.0.0/8`, `fd00::/8`) and addresses (`127.0.0.1`); a bad entry
    /// is answered as it was written.
    pub fn parse<'a>(list: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        list.into_iter()
            .map(|s| {
                let t = s.trim();
                t.parse::<IpNet>()
                    .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| s.to_owned())
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client's address, from the TCP `peer` and the request's `X-Forwarded-For` header
    /// values (in order; each a comma-separated list). A peer that is not trusted is the client;
    /// otherwise the rightmost untrusted address of the list, or, when every address is
    /// trusted, the leftmost. An entry that is no address ends the walk: the client is the
    /// hop to its right (the peer when it is the last entry).
    pub fn client<'a>(&self, peer: IpAddr, forwarded: impl IntoIterator<Item = &'a str>) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let entries: Vec<&str> = forwarded.into_iter().flat_map(|v| v.split(',')).collect();
        let mut client = peer;
        for entry in entries.iter().rev() {
            let Some(ip) = address(entry) else {
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `trusted` proxies, a request from `peer` with these `X-Forwarded-For` values: `client`.
    fn check(trusted: &[&str], peer: &str, forwarded: &[&str], client: &str) {
        let proxies = TrustedProxies::parse(trusted.iter().copied()).unwrap();
        let got = proxies.client(peer.parse().unwrap(), forwarded.iter().copied());
        assert_eq!(
            got,
            client.parse::<IpAddr>().unwrap(),
            "trusted {trusted:?}, peer {peer}, X-Forwarded-For {forwarded:?}"
        );
    }

    #[test]
    fn the_client_is_the_rightmost_address_no_trusted_proxy_added() {
        let lo = &["127.0.0.1"][..];
        let net = &["10.0.0.0/8", "127.0.0.1"][..];
        // Nothing trusted: the header changes nothing.
        check(&[], "203.0.113.9", &["198.51.100.1"], "203.0.113.9");
        // An untrusted peer's header is ignored, however it looks.
        check(lo, "203.0.113.9", &["198.51.100.1"], "203.0.113.9");
        check(lo, "203.0.113.9", &["127.0.0.1"], "203.0.113.9");
        // A trusted proxy without a header: the proxy.
        check(lo, "127.0.0.1", &[], "127.0.0.1");
        check(lo, "127.0.0.1", &[""], "127.0.0.1");
        // One hop.
        check(lo, "127.0.0.1", &["198.51.100.1"], "198.51.100.1");
        // What the client wrote itself (left of the first untrusted hop) is not believed.
        check(lo, "127.0.0.1", &["6.6.6.6, 198.51.100.1"], "198.51.100.1");
        // A chain of trusted proxies is walked from the right; several header lines are one list.
        check(
            net,
            "127.0.0.1",
            &["198.51.100.1, 10.1.2.3"],
            "198.51.100.1",
        );
        check(
            net,
            "127.0.0.1",
            &["6.6.6.6, 198.51.100.1", "10.1.2.3"],
            "198.51.100.1",
        );
        // Every hop trusted: the leftmost.
        check(net, "127.0.0.1", &["10.9.9.9, 10.1.2.3"], "10.9.9.9");
        // Ports, IPv6, spaces.
        check(lo, "127.0.0.1", &[" 198.51.100.1:4711 "], "198.51.100.1");
        check(lo, "127.0.0.1", &["[2001:db8::1]:443"], "2001:db8::1");
        check(&["::1"], "::1", &["2001:db8::1"], "2001:db8::1");
        // A peer as an IPv4-mapped IPv6 address is its IPv4 one.
        check(lo, "::ffff:127.0.0.1", &["198.51.100.1"], "198.51.100.1");
        // Garbage ends the walk at the hop to its right.
        check(lo, "127.0.0.1", &["unknown"], "127.0.0.1");
        check(
            net,
            "127.0.0.1",
            &["198.51.100.1, junk, 10.1.2.3"],
            "10.1.2.3",
        );
    }

    #[test]
    fn a_bad_entry_is_named() {
        assert_eq!(
            TrustedProxies::parse(["10.0.0.0/8", "proxy.example"]),
            Err("proxy.example".to_owned())
        );
        assert!(TrustedProxies::parse(["10.0.0.1/32", " ::1 ", "fd00::/8"]).is_ok());
    }
}
