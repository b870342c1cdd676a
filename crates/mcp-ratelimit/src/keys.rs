//! What a request is limited by: scopes, the per-request keys, and storage-key encoding.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a rule counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Scope {
    /// One budget shared by every request.
    Global,
    /// One budget per tenant.
    Tenant,
    /// One budget per user (subject).
    User,
    /// One budget per API key (the identifier is hashed before storage).
    ApiKey,
    /// One budget per client IP address.
    ClientIp,
    /// One budget per MCP tool name.
    Tool,
}

impl Scope {
    /// A short stable name, used in storage keys and logs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Tenant => "tenant",
            Self::User => "user",
            Self::ApiKey => "api_key",
            Self::ClientIp => "ip",
            Self::Tool => "tool",
        }
    }
}

/// The identities of one request. A rule applies when its scope's value is present
/// (`Global` always applies).
///
/// `Debug` never shows the API key, which callers should pass as a key identifier anyway.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RequestKeys {
    /// The tenant.
    pub tenant: Option<String>,
    /// The user (subject).
    pub user: Option<String>,
    /// The API key identifier (hashed before it reaches any store).
    pub api_key: Option<String>,
    /// The client IP, as resolved by [`ClientIpResolver`](crate::ClientIpResolver).
    pub client_ip: Option<IpAddr>,
    /// The MCP tool called (`tools/call` `params.name`).
    pub tool: Option<String>,
    /// An explicit cost; when absent the limiter's per-tool cost (default 1) applies.
    pub cost: Option<NonZeroU32>,
}

impl fmt::Debug for RequestKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestKeys")
            .field("tenant", &self.tenant)
            .field("user", &self.user)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("client_ip", &self.client_ip)
            .field("tool", &self.tool)
            .field("cost", &self.cost)
            .finish()
    }
}

impl RequestKeys {
    /// No identities: only global rules apply.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// With a tenant.
    #[must_use]
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// With a user.
    #[must_use]
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// With an API key identifier.
    #[must_use]
    pub fn api_key(mut self, id: impl Into<String>) -> Self {
        self.api_key = Some(id.into());
        self
    }

    /// With a client IP.
    #[must_use]
    pub fn client_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }

    /// With a tool name.
    #[must_use]
    pub fn tool(mut self, tool: impl Into<String>) -> Self {
        self.tool = Some(tool.into());
        self
    }

    /// With an explicit cost.
    #[must_use]
    pub fn cost(mut self, cost: NonZeroU32) -> Self {
        self.cost = Some(cost);
        self
    }

    /// The storage key of rule `rule` counting by `scope` (`{rule}:{encoded part}`), if the
    /// request has that identity; one allocation, as every rule of every request needs one.
    pub(crate) fn key(&self, rule: &str, scope: Scope) -> Option<String> {
        let mut key = String::with_capacity(rule.len() + 68);
        key.push_str(rule);
        key.push(':');
        match scope {
            Scope::Global => key.push('*'),
            Scope::Tenant => push_part(&mut key, self.tenant.as_deref()?),
            Scope::User => push_part(&mut key, self.user.as_deref()?),
            Scope::ApiKey => push_hash_part(&mut key, self.api_key.as_deref()?),
            Scope::ClientIp => {
                key.push_str("v:");
                push_ip(&mut key, self.client_ip?);
            }
            Scope::Tool => push_part(&mut key, self.tool.as_deref()?),
        }
        Some(key)
    }
}

/// IPv4-mapped IPv6 addresses count as the IPv4 address they carry.
#[must_use]
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// Appends the text form of `ip` after [`canonical_ip`] (the same text as its `Display`).
/// IPv4 addresses, the usual case on every request, are written digit by digit: through
/// `Display` they cost a formatter call per octet, about 900 instructions per address.
pub(crate) fn push_ip(out: &mut String, ip: IpAddr) {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(v6) => {
            use fmt::Write as _;
            // Writing into a String cannot fail.
            let _ = write!(out, "{v6}");
        }
    }
}

/// Values longer than this are stored as a hash, so a request cannot make keys huge.
const MAX_PLAIN_PART: usize = 64;

/// Appends the key part of `value` to `out`: short printable values as they are (`v:`
/// prefix), anything else hashed (`h:` prefix), so the two forms never collide.
pub(crate) fn push_part(out: &mut String, value: &str) {
    if value.len() <= MAX_PLAIN_PART && value.bytes().all(|b| b.is_ascii_graphic()) {
        out.push_str("v:");
        out.push_str(value);
    } else {
        push_hash_part(out, value);
    }
}

/// Appends a key part that is always the SHA-256 of the value.
fn push_hash_part(out: &mut String, value: &str) {
    let digest = Sha256::digest(value.as_bytes());
    out.push_str("h:");
    for b in digest.iter() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    fn ip_text(ip: IpAddr) -> String {
        let mut out = String::new();
        push_ip(&mut out, ip);
        out
    }

    #[test]
    fn every_octet_is_written_as_display_writes_it() {
        for octet in 0..=u8::MAX {
            let ip = IpAddr::V4(Ipv4Addr::new(octet, 0, 10, octet));
            assert_eq!(ip_text(ip), ip.to_string());
        }
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(ip_text(mapped), "192.0.2.1");
    }

    proptest! {
        #[test]
        fn ip_text_is_the_display_of_the_canonical_address(
            octets in proptest::array::uniform4(any::<u8>()),
            segments in proptest::array::uniform8(any::<u16>()),
            mapped in any::<bool>(),
        ) {
            let v4 = IpAddr::from(octets);
            prop_assert_eq!(ip_text(v4), v4.to_string());
            let v6 = if mapped {
                IpAddr::V6(Ipv4Addr::from(octets).to_ipv6_mapped())
            } else {
                IpAddr::V6(Ipv6Addr::from(segments))
            };
            prop_assert_eq!(ip_text(v6), canonical_ip(v6).to_string());
        }
    }

    #[test]
    fn parts_are_bounded_and_distinct() {
        let long = "x".repeat(10_000);
        let k = RequestKeys::new()
            .user(long.as_str())
            .api_key("secret-key")
            .tenant("acme");
        let hash_part = |value: &str| {
            let mut out = String::new();
            push_hash_part(&mut out, value);
            out
        };
        let encode_part = |value: &str| {
            let mut out = String::new();
            push_part(&mut out, value);
            out
        };
        let user = k.key("per_user", Scope::User).unwrap();
        assert!(user.starts_with("per_user:h:") && user.len() == 9 + 66);
        assert_eq!(k.key("t", Scope::Tenant).unwrap(), "t:v:acme");
        assert_ne!(encode_part(&hash_part("a")), hash_part("a"));
        assert_eq!(hash_part("a").len(), 66);
        let api_key = k.key("k", Scope::ApiKey).unwrap();
        assert!(!api_key.contains("secret") && api_key.starts_with("k:h:"));
        assert_eq!(encode_part("two words"), hash_part("two words"));
        assert_eq!(k.key("ip", Scope::ClientIp), None);
        assert_eq!(k.key("global", Scope::Global).unwrap(), "global:*");
    }

    #[test]
    fn debug_hides_the_api_key() {
        let k = RequestKeys::new().api_key("sk_live_abcdef");
        assert!(!format!("{k:?}").contains("sk_live"));
    }

    #[test]
    fn mapped_ipv6_is_ipv4() {
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(canonical_ip(mapped), "10.1.2.3".parse::<IpAddr>().unwrap());
        let k = RequestKeys::new().client_ip(mapped);
        assert_eq!(k.key("ip", Scope::ClientIp).unwrap(), "ip:v:10.1.2.3");
    }
}
