//! The egress policy: which addresses an outbound request may reach. Denied by default:
//! loopback, link-local (with the cloud metadata address 169.254.169.254), private (RFC 1918,
//! CGNAT 100.64/10, IPv6 ULA fc00::/7), unspecified, multicast, broadcast, documentation and
//! other reserved ranges, and the IPv4 addresses embedded in IPv6 (mapped, translated, NAT64,
//! 6to4, Teredo) are judged as IPv4; the translated `::ffff:0:0/96` and Teredo `2001::/32`
//! reach no public host from a server, so they are denied whatever they embed. An operator's
//! allow-list of CIDR blocks wins over the denied ranges.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::fault::{Blame, Fault};

/// Why an address is denied: a bounded set, the `reason` label of
/// `switchboard_egress_denied_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeniedRange {
    Loopback,
    LinkLocal,
    Private,
    /// 100.64.0.0/10, carrier-grade NAT (RFC 6598).
    SharedAddressSpace,
    Unspecified,
    Multicast,
    Broadcast,
    Documentation,
    /// Benchmarking, IETF protocol assignments, the future-use block and the like.
    Reserved,
}

impl DeniedRange {
    /// Every range, in the order of the enum (for tests and the metric's description).
    pub const ALL: [DeniedRange; 9] = [
        DeniedRange::Loopback,
        DeniedRange::LinkLocal,
        DeniedRange::Private,
        DeniedRange::SharedAddressSpace,
        DeniedRange::Unspecified,
        DeniedRange::Multicast,
        DeniedRange::Broadcast,
        DeniedRange::Documentation,
        DeniedRange::Reserved,
    ];

    /// The metric label and the word in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            DeniedRange::Loopback => "loopback",
            DeniedRange::LinkLocal => "link_local",
            DeniedRange::Private => "private",
            DeniedRange::SharedAddressSpace => "shared_address_space",
            DeniedRange::Unspecified => "unspecified",
            DeniedRange::Multicast => "multicast",
            DeniedRange::Broadcast => "broadcast",
            DeniedRange::Documentation => "documentation",
            DeniedRange::Reserved => "reserved",
        }
    }

    fn phrase(self) -> &'static str {
        match self {
            DeniedRange::Loopback => "loopback",
            DeniedRange::LinkLocal => "link-local",
            DeniedRange::Private => "private",
            DeniedRange::SharedAddressSpace => "in the shared address space (CGNAT)",
            DeniedRange::Unspecified => "unspecified",
            DeniedRange::Multicast => "multicast",
            DeniedRange::Broadcast => "broadcast",
            DeniedRange::Documentation => "reserved for documentation",
            DeniedRange::Reserved => "reserved",
        }
    }
}

/// An outbound request refused by the policy: `egress_denied: 169.254.169.254 is link-local`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("egress_denied: {address} is {}", range.phrase())]
pub struct EgressDenied {
    pub address: IpAddr,
    pub range: DeniedRange,
}

impl Blame for EgressDenied {
    /// The target was named by whoever configured it (a flow's runner URL).
    fn fault(&self) -> Fault {
        Fault::Caller
    }

    fn retryable(&self) -> bool {
        false
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

#[allow(clippy::too_many_arguments)]
const fn v6(s: [u16; 8], len: u8) -> Ipv6Net {
    Ipv6Net::new_assert(
        Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
        len,
    )
}

/// The denied IPv4 ranges; the first that contains an address names why.
const DENIED_V4: &[(Ipv4Net, DeniedRange)] = &[
    (v4(255, 255, 255, 255, 32), DeniedRange::Broadcast),
    (v4(0, 0, 0, 0, 8), DeniedRange::Unspecified),
    (v4(127, 0, 0, 0, 8), DeniedRange::Loopback),
    (v4(169, 254, 0, 0, 16), DeniedRange::LinkLocal),
    (v4(10, 0, 0, 0, 8), DeniedRange::Private),
    (v4(172, 16, 0, 0, 12), DeniedRange::Private),
    (v4(192, 168, 0, 0, 16), DeniedRange::Private),
    (v4(100, 64, 0, 0, 10), DeniedRange::SharedAddressSpace),
    (v4(192, 0, 2, 0, 24), DeniedRange::Documentation),
    (v4(198, 51, 100, 0, 24), DeniedRange::Documentation),
    (v4(203, 0, 113, 0, 24), DeniedRange::Documentation),
    (v4(224, 0, 0, 0, 4), DeniedRange::Multicast),
    (v4(192, 0, 0, 0, 24), DeniedRange::Reserved),
    (v4(198, 18, 0, 0, 15), DeniedRange::Reserved),
    (v4(240, 0, 0, 0, 4), DeniedRange::Reserved),
];

/// The denied IPv6 ranges (an embedded IPv4 address that is denied names the reason first).
const DENIED_V6: &[(Ipv6Net, DeniedRange)] = &[
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), DeniedRange::Unspecified),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), DeniedRange::Loopback),
    (
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        DeniedRange::LinkLocal,
    ),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), DeniedRange::Private),
    // The deprecated site-local block.
    (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), DeniedRange::Private),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), DeniedRange::Multicast),
    (
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        DeniedRange::Documentation,
    ),
    (
        v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        DeniedRange::Documentation,
    ),
    // IPv4-compatible addresses (deprecated) and the discard-only block.
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 96), DeniedRange::Reserved),
    (v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), DeniedRange::Reserved),
    // IPv4-translated (SIIT, RFC 2765) and Teredo (RFC 4380): a translator's or a tunnel's.
    (v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96), DeniedRange::Reserved),
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32), DeniedRange::Reserved),
];

/// The IPv4 address an IPv6 address carries to an IPv4 host: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-translated (`::ffff:0:a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`), 6to4 (`2002:aabb:ccdd::/48`)
/// and Teredo (`2001:0:…`, the client's address inverted in the last 32 bits).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let [.., a, b, c, d] = ip.octets();
    if s[..6] == [0, 0, 0, 0, 0xffff, 0] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(Ipv4Addr::new(a, b, c, d));
    }
    if s[0] == 0x2002 {
        let o = ip.octets();
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    if s[..2] == [0x2001, 0] {
        return Some(Ipv4Addr::new(!a, !b, !c, !d));
    }
    None
}

/// Why `ip` is denied by default, if it is.
pub fn denied_range(ip: IpAddr) -> Option<DeniedRange> {
    match ip {
        IpAddr::V4(ip) => DENIED_V4
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map(|(_, r)| *r),
        IpAddr::V6(ip) => embedded_v4(ip)
            .and_then(|v4| denied_range(IpAddr::V4(v4)))
            .or_else(|| {
                DENIED_V6
                    .iter()
                    .find(|(net, _)| net.contains(&ip))
                    .map(|(_, r)| *r)
            }),
    }
}

/// The policy: the default denial, minus the operator's allow-list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allow: Vec<IpNet>,
}

impl EgressPolicy {
    /// Denies the default ranges except what `allow` contains.
    pub fn new(allow: Vec<IpNet>) -> Self {
        EgressPolicy { allow }
    }

    /// Parses each block (`10.0.0.0/8`, or one address: `127.0.0.1` is `127.0.0.1/32`); the
    /// error is the block that does not parse.
    pub fn parse_allow<'a>(
        blocks: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<IpNet>, String> {
        blocks
            .into_iter()
            .map(|b| {
                let b = b.trim();
                b.parse::<IpNet>()
                    .or_else(|_| b.parse::<IpAddr>().map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| b.to_owned())
            })
            .collect()
    }

    /// The allow-list.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allow
    }

    fn is_allowed(&self, ip: IpAddr) -> bool {
        let v4 = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.allow
            .iter()
            .any(|net| net.contains(&ip) || v4.is_some_and(|v4| net.contains(&v4)))
    }

    /// Whether a request may reach `ip`. Pure: see [`crate::outbound::Egress`] for the checks
    /// that count refusals.
    pub fn judge(&self, ip: IpAddr) -> Result<(), EgressDenied> {
        match denied_range(ip) {
            Some(range) if !self.is_allowed(ip) => Err(EgressDenied { address: ip, range }),
            _ => Ok(()),
        }
    }

    /// Judges the host of `url` when it is an IP literal (requests to it skip name resolution);
    /// a host name, or a URL that does not parse, passes here (names are judged when they
    /// resolve, at connect time).
    pub fn judge_literal(&self, url: &str) -> Result<(), EgressDenied> {
        match literal_host(url) {
            Some(ip) => self.judge(ip),
            None => Ok(()),
        }
    }
}

/// The IP address a URL's host is written as, if it is one.
pub fn literal_host(url: &str) -> Option<IpAddr> {
    let url = reqwest::Url::parse(url).ok()?;
    // The parser normalises IPv4 forms (`0x7f.1` is `127.0.0.1`) and brackets IPv6.
    let host = url.host_str()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_default_denies_internal_ranges() {
        let cases = [
            ("127.0.0.1", DeniedRange::Loopback),
            ("127.255.0.9", DeniedRange::Loopback),
            ("::1", DeniedRange::Loopback),
            ("169.254.169.254", DeniedRange::LinkLocal),
            ("fe80::1", DeniedRange::LinkLocal),
            ("10.1.2.3", DeniedRange::Private),
            ("172.16.0.1", DeniedRange::Private),
            ("172.31.255.255", DeniedRange::Private),
            ("192.168.1.1", DeniedRange::Private),
            ("fd00::1", DeniedRange::Private),
            ("fc00::1", DeniedRange::Private),
            ("100.64.0.1", DeniedRange::SharedAddressSpace),
            ("100.127.255.255", DeniedRange::SharedAddressSpace),
            ("0.0.0.0", DeniedRange::Unspecified),
            ("::", DeniedRange::Unspecified),
            ("224.0.0.1", DeniedRange::Multicast),
            ("ff02::1", DeniedRange::Multicast),
            ("255.255.255.255", DeniedRange::Broadcast),
            ("192.0.2.1", DeniedRange::Documentation),
            ("198.51.100.7", DeniedRange::Documentation),
            ("203.0.113.9", DeniedRange::Documentation),
            ("2001:db8::1", DeniedRange::Documentation),
            ("240.0.0.1", DeniedRange::Reserved),
            ("198.18.0.1", DeniedRange::Reserved),
            // IPv4 inside IPv6 is judged as IPv4.
            ("::ffff:169.254.169.254", DeniedRange::LinkLocal),
            ("::ffff:127.0.0.1", DeniedRange::Loopback),
            ("::ffff:10.0.0.1", DeniedRange::Private),
            ("64:ff9b::a9fe:a9fe", DeniedRange::LinkLocal),
            ("2002:7f00:1::", DeniedRange::Loopback),
            ("::127.0.0.1", DeniedRange::Reserved),
            // IPv4-translated: judged as IPv4, and denied whatever it embeds.
            ("::ffff:0:127.0.0.1", DeniedRange::Loopback),
            ("::ffff:0:a9fe:a9fe", DeniedRange::LinkLocal),
            ("::ffff:0:10.0.0.1", DeniedRange::Private),
            ("::ffff:0:8.8.8.8", DeniedRange::Reserved),
            // Teredo: the client's address (inverted) judged as IPv4, and denied whatever it is.
            (
                "2001:0:4136:e378:8000:63bf:80ff:fffe",
                DeniedRange::Loopback,
            ),
            (
                "2001:0:4136:e378:8000:63bf:5601:5601",
                DeniedRange::LinkLocal,
            ),
            (
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                DeniedRange::Documentation,
            ),
            (
                "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
                DeniedRange::Reserved,
            ),
            ("2001::1", DeniedRange::Reserved),
        ];
        let policy = EgressPolicy::default();
        for (addr, range) in cases {
            assert_eq!(
                policy.judge(ip(addr)),
                Err(EgressDenied {
                    address: ip(addr),
                    range
                }),
                "{addr}"
            );
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2001:4860:4860::8888",
        ] {
            assert_eq!(policy.judge(ip(public)), Ok(()), "{public}");
        }
    }

    #[test]
    fn the_allow_list_wins_over_the_denied_ranges() {
        let allow = EgressPolicy::parse_allow(["10.0.0.0/8", "127.0.0.1", " fd00::/8 "]).unwrap();
        let policy = EgressPolicy::new(allow);
        assert_eq!(policy.judge(ip("10.9.8.7")), Ok(()));
        assert_eq!(policy.judge(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.judge(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(policy.judge(ip("fd12::1")), Ok(()));
        assert!(policy.judge(ip("127.0.0.2")).is_err());
        assert!(policy.judge(ip("169.254.169.254")).is_err());
        assert_eq!(
            EgressPolicy::parse_allow(["10.0.0.0/33"]),
            Err("10.0.0.0/33".to_owned())
        );
        assert_eq!(
            EgressPolicy::parse_allow(["localhost"]),
            Err("localhost".to_owned())
        );
    }

    #[test]
    fn literal_hosts_are_judged_and_names_pass() {
        let policy = EgressPolicy::default();
        let e = policy
            .judge_literal("http://169.254.169.254/latest/meta-data")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "egress_denied: 169.254.169.254 is link-local"
        );
        assert!(policy.judge_literal("http://[::1]:9/").is_err());
        assert!(policy.judge_literal("http://[::ffff:7f00:1]:9/").is_err());
        for translated in [
            "http://[::ffff:0:7f00:1]:9/",
            "http://[::ffff:0:169.254.169.254]/latest/meta-data",
            "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:9/",
        ] {
            assert!(policy.judge_literal(translated).is_err(), "{translated}");
        }
        assert!(
            policy.judge_literal("http://0x7f.1:9/").is_err(),
            "WHATWG-normalised"
        );
        assert_eq!(policy.judge_literal("http://localhost:9/"), Ok(()));
        assert_eq!(policy.judge_literal("https://example.com/x"), Ok(()));
        assert_eq!(policy.judge_literal("not a url"), Ok(()));
    }

    #[test]
    fn reasons_are_bounded_labels() {
        let labels: Vec<_> = DeniedRange::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), 9);
        assert!(labels
            .iter()
            .all(|l| l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    }
}
