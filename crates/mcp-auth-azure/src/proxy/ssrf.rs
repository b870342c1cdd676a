//! Fetching URLs that strangers name (Client ID Metadata Documents) without letting them
//! aim the proxy at its own network: `https` only, public addresses only (checked on the
//! addresses DNS returns, which are the ones connected to), no redirects, no proxies, and
//! limits on size and time.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Whether `ip` is a public unicast address: not loopback, private, link-local, shared
/// (CGNAT), documentation, benchmarking, multicast, broadcast, unspecified or reserved; and
/// for IPv6 not unique-local, link-local, site-local, or an IPv4-mapped, IPv4-compatible,
/// NAT64 or 6to4 form of such an IPv4 address.
pub(crate) fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..=127).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..=31).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 0 && c == 2)
        || (a == 192 && b == 88 && c == 99)
        || (a == 192 && b == 168)
        || (a == 198 && (b == 18 || b == 19))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Forms that carry an IPv4 address are judged by that address.
    let embedded = match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some((hi, lo)),
        [0, 0, 0, 0, 0, 0, hi, lo] if (hi, lo) != (0, 0) && (hi, lo) != (0, 1) => Some((hi, lo)),
        [0x2002, hi, lo, ..] => Some((hi, lo)),
        _ => None,
    };
    if let Some((hi, lo)) = embedded {
        return is_public_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link local
        || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] < 0x0200) // IETF protocol assignments, Teredo, ORCHIDv2
        || (s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64
        || s[0] == 0x0100) // discard-only
}

/// Why a URL was not fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum FetchError {
    /// Not an `https` URL (or `http` in development mode).
    #[error("only https URLs are fetched")]
    Scheme,
    /// The host is, or resolves to, an address that is not public.
    #[error("the host is not a public address")]
    PrivateAddress,
    /// The request failed: connection, TLS, time limit, or a refused address.
    #[error("the request failed")]
    Request(#[source] reqwest::Error),
    /// The answer was not 200 (a redirect counts as a refusal).
    #[error("the server answered {0}")]
    Status(u16),
    /// The body is larger than the limit.
    #[error("the document is larger than {0} bytes")]
    TooLarge(usize),
}

/// The DNS resolver that refuses names with a non-public address.
#[derive(Clone, Copy, Debug)]
struct PublicOnlyResolver;

/// The error of a refused resolution.
#[derive(Debug)]
struct NotPublic;

impl fmt::Display for NotPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the name resolves to an address that is not public")
    }
}

impl std::error::Error for NotPublic {}

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // Every address must be public: a name mixing public and private answers is
            // refused rather than filtered, since the mix itself is a rebinding sign.
            if addrs.is_empty() || !addrs.iter().all(|a| is_public_ip(a.ip())) {
                return Err(Box::new(NotPublic) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Fetches small documents from URLs named by clients.
#[derive(Clone)]
pub(crate) struct SafeFetcher {
    client: reqwest::Client,
    allow_private: bool,
    max_bytes: usize,
}

impl fmt::Debug for SafeFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafeFetcher")
            .field("allow_private", &self.allow_private)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl SafeFetcher {
    /// A fetcher with a size and a time limit; `allow_private` (development only) also
    /// fetches `http` URLs and non-public addresses.
    pub(crate) fn new(
        max_bytes: usize,
        timeout: Duration,
        allow_private: bool,
    ) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("mcp-auth-azure/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder
                .https_only(true)
                .dns_resolver(Arc::new(PublicOnlyResolver));
        }
        Ok(Self {
            client: builder.build()?,
            allow_private,
            max_bytes,
        })
    }

    /// Fetches `url` with `Accept: application/json` and returns the body.
    pub(crate) async fn fetch(&self, url: &Url) -> Result<Vec<u8>, FetchError> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_private => {}
            _ => return Err(FetchError::Scheme),
        }
        if !self.allow_private {
            // IP literals never reach the resolver; check them here.
            let public = match url.host() {
                Some(Host::Ipv4(ip)) => is_public_v4(ip),
                Some(Host::Ipv6(ip)) => is_public_v6(ip),
                Some(Host::Domain(name)) => {
                    let name = name.trim_end_matches('.').to_ascii_lowercase();
                    name != "localhost" && !name.ends_with(".localhost")
                }
                None => false,
            };
            if !public {
                return Err(FetchError::PrivateAddress);
            }
        }
        let mut response = self
            .client
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| {
                if is_not_public(&error) {
                    FetchError::PrivateAddress
                } else {
                    FetchError::Request(error)
                }
            })?;
        if response.status() != http::StatusCode::OK {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|len| len > self.max_bytes as u64)
        {
            return Err(FetchError::TooLarge(self.max_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(FetchError::Request)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchError::TooLarge(self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Whether a request failed because the resolver refused a non-public address.
fn is_not_public(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if current.is::<NotPublic>() {
            return true;
        }
        source = current.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "2001:db8::1",
            "ff02::1",
        ] {
            assert!(!is_public_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "20.190.128.1",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public_ip(ip.parse().unwrap()), "{ip}");
        }
    }

    proptest! {
        #[test]
        fn mapped_ipv6_is_judged_like_its_ipv4(raw in any::<u32>()) {
            let v4 = Ipv4Addr::from(raw);
            prop_assert_eq!(is_public_ip(IpAddr::V6(v4.to_ipv6_mapped())), is_public_v4(v4));
        }

        #[test]
        fn private_ranges_are_never_public(host in any::<u32>()) {
            let ten = Ipv4Addr::from((10u32 << 24) | (host & 0x00ff_ffff));
            let loop_ = Ipv4Addr::from((127u32 << 24) | (host & 0x00ff_ffff));
            let link = Ipv4Addr::from((169u32 << 24) | (254 << 16) | (host & 0xffff));
            for ip in [ten, loop_, link] {
                prop_assert!(!is_public_v4(ip));
            }
        }
    }

    #[tokio::test]
    async fn resolver_refuses_names_with_non_public_addresses() {
        use std::str::FromStr;
        let name = Name::from_str("localhost").unwrap();
        let err = match PublicOnlyResolver.resolve(name).await {
            Ok(_) => panic!("localhost resolved through the public-only resolver"),
            Err(err) => err,
        };
        assert!(err.is::<NotPublic>(), "{err}");
    }

    #[tokio::test]
    async fn refusals_happen_before_any_connection() {
        let fetcher = SafeFetcher::new(1024, Duration::from_secs(2), false).unwrap();
        for (url, http) in [
            ("http://example.com/client.json", true),
            ("https://127.0.0.1/client.json", false),
            ("https://[::1]/client.json", false),
            ("https://10.0.0.7/client.json", false),
            ("https://169.254.169.254/latest/meta-data", false),
            ("https://localhost/client.json", false),
            ("https://app.localhost/client.json", false),
        ] {
            let err = fetcher.fetch(&Url::parse(url).unwrap()).await.unwrap_err();
            if http {
                assert!(matches!(err, FetchError::Scheme), "{url}: {err}");
            } else {
                assert!(matches!(err, FetchError::PrivateAddress), "{url}: {err}");
            }
        }
    }
}
