//! Client IP resolution: the socket peer, or `Forwarded` / `X-Forwarded-For` hops, but only
//! through proxies the operator listed as trusted.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::keys::canonical_ip;

/// An IP network in CIDR form (`10.0.0.0/8`, `fd00::/8`; a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why an [`IpNet`] did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IP network `{0}`; expected an address or CIDR such as 10.0.0.0/8")]
pub struct IpNetError(String);

impl IpNet {
    /// The network of `addr` with `prefix` bits; `None` if the prefix is too long.
    #[must_use]
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let addr = canonical_ip(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    /// Whether `ip` is inside this network (IPv4-mapped IPv6 counts as IPv4).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical_ip(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(net.to_bits()),
                u128::from(ip.to_bits()),
                32,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(net.to_bits(), ip.to_bits(), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, bits: u8, prefix: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits - prefix);
    (a >> shift) == (b >> shift)
}

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IpNetError(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix = prefix.unwrap_or(if addr.is_ipv4() { 32 } else { 128 });
        // A mapped IPv6 network is converted to its IPv4 form, with the prefix adjusted.
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && prefix >= 96 => {
                (canonical_ip(addr), prefix - 96)
            }
            _ => (addr, prefix),
        };
        Self::new(addr, prefix).ok_or_else(bad)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// At most this many forwarding hops are examined; longer chains are cut at the client end.
const MAX_HOPS: usize = 64;

/// Finds the client IP of a request.
///
/// With no trusted proxies (the default) the socket peer is the client and forwarding
/// headers are ignored. With trusted proxies, hops are read from the right: each hop
/// reported by a trusted address is believed, and the first address that is not trusted
/// is the client. `Forwarded` (RFC 7239) is used when present, else `X-Forwarded-For`.
///
/// ```
/// use mcp_ratelimit::ClientIpResolver;
///
/// let resolver = ClientIpResolver::new().trust("10.0.0.0/8".parse().unwrap());
/// let peer = "10.0.0.5".parse().unwrap();
/// let ip = resolver.resolve_from(peer, [], ["203.0.113.7, 10.0.0.9"]);
/// assert_eq!(ip.to_string(), "203.0.113.7");
/// // An untrusted peer's headers are ignored.
/// let ip = resolver.resolve_from("198.51.100.1".parse().unwrap(), [], ["1.2.3.4"]);
/// assert_eq!(ip.to_string(), "198.51.100.1");
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    trusted: Vec<IpNet>,
}

impl ClientIpResolver {
    /// A resolver that trusts no proxy.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts proxies in `net`.
    #[must_use]
    pub fn trust(mut self, net: IpNet) -> Self {
        self.trusted.push(net);
        self
    }

    /// Whether `ip` is a trusted proxy.
    #[must_use]
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(ip))
    }

    /// Resolves from the raw header values, in the order received (one item per header
    /// line).
    pub fn resolve_from<'a>(
        &self,
        peer: IpAddr,
        forwarded: impl IntoIterator<Item = &'a str>,
        x_forwarded_for: impl IntoIterator<Item = &'a str>,
    ) -> IpAddr {
        let peer = canonical_ip(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut hops: Vec<Option<IpAddr>> = forwarded
            .into_iter()
            .flat_map(split_outside_quotes)
            .map(forwarded_for)
            .collect();
        if hops.is_empty() {
            hops = x_forwarded_for
                .into_iter()
                .flat_map(|v| v.split(','))
                .map(|h| parse_node(h.trim()))
                .collect();
        }
        let mut client = peer;
        for hop in hops.iter().rev().take(MAX_HOPS) {
            if !self.is_trusted(client) {
                break;
            }
            match hop {
                Some(ip) => client = canonical_ip(*ip),
                // An unknown or obfuscated hop: the last address we can vouch for stands.
                None => break,
            }
        }
        client
    }

    /// Resolves from a request's headers.
    #[cfg(feature = "tower")]
    pub fn resolve(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        let values = |name: &str| -> Vec<&str> {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect()
        };
        self.resolve_from(peer, values("forwarded"), values("x-forwarded-for"))
    }
}

/// Splits a `Forwarded` value into its comma-separated elements, ignoring commas inside
/// quoted strings.
fn split_outside_quotes(v: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut in_quotes = false;
    let mut start = 0;
    for (i, c) in v.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                out.push(&v[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&v[start..]);
    out
}

/// The `for=` node of one `Forwarded` element.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("for")
            .then(|| parse_node(v.trim().trim_matches('"')))
            .flatten()
    })
}

/// An address with an optional port: `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]:80`, `::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = node.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    let inner = node.strip_prefix('[')?.split(']').next()?;
    inner.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn resolver() -> ClientIpResolver {
        ClientIpResolver::new()
            .trust("10.0.0.0/8".parse().unwrap())
            .trust("2001:db8:ffff::/48".parse().unwrap())
    }

    #[test]
    fn networks() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.255.1.2")));
        assert!(n.contains(ip("::ffff:10.0.0.1")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(
            "0.0.0.0/0"
                .parse::<IpNet>()
                .unwrap()
                .contains(ip("8.8.8.8"))
        );
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("nonsense".parse::<IpNet>().is_err());
        let mapped: IpNet = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        assert_eq!("::1".parse::<IpNet>().unwrap().to_string(), "::1/128");
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let r = resolver();
        assert_eq!(
            r.resolve_from(ip("203.0.113.9"), ["for=1.1.1.1"], ["2.2.2.2"]),
            ip("203.0.113.9")
        );
        let none = ClientIpResolver::new();
        assert_eq!(
            none.resolve_from(ip("10.0.0.1"), [], ["2.2.2.2"]),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn walks_trusted_hops_from_the_right() {
        let r = resolver();
        // The client forged the leftmost entry; the first untrusted hop from the right wins.
        let xff = ["6.6.6.6, 198.51.100.4, 10.1.1.1"];
        assert_eq!(r.resolve_from(ip("10.0.0.2"), [], xff), ip("198.51.100.4"));
        // Several header lines are one list.
        assert_eq!(
            r.resolve_from(ip("10.0.0.2"), [], ["198.51.100.4", "10.9.9.9"]),
            ip("198.51.100.4")
        );
        // All hops trusted: the leftmost one.
        assert_eq!(
            r.resolve_from(ip("10.0.0.2"), [], ["10.3.3.3"]),
            ip("10.3.3.3")
        );
        // Garbage hop: the last trusted address stands.
        assert_eq!(
            r.resolve_from(ip("10.0.0.2"), [], ["1.1.1.1, junk"]),
            ip("10.0.0.2")
        );
        assert_eq!(
            r.resolve_from(ip("10.0.0.2"), [], ["203.0.113.1:8080"]),
            ip("203.0.113.1")
        );
    }

    #[test]
    fn forwarded_header_wins_and_parses() {
        let r = resolver();
        let fwd = [r#"for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:ffff::1]:4711""#];
        assert_eq!(
            r.resolve_from(ip("10.0.0.2"), fwd, ["9.9.9.9"]),
            ip("192.0.2.60")
        );
        assert_eq!(
            r.resolve_from(ip("10.0.0.2"), ["for=unknown"], []),
            ip("10.0.0.2")
        );
        assert_eq!(
            r.resolve_from(ip("10.0.0.2"), ["For=\"_hidden\""], []),
            ip("10.0.0.2")
        );
        assert_eq!(
            r.resolve_from(ip("::ffff:10.0.0.2"), ["for=\"[2001:db8::5]\""], []),
            ip("2001:db8::5")
        );
    }
}
