//! [`Cloud`]: the Entra authority host and the v1 and v2 issuers of a (sovereign) cloud.

use serde::{Deserialize, Serialize};

/// The public cloud's authority host, also the base of its v2 issuers.
pub const PUBLIC_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The base of v1 issuers in the public cloud and in Azure Government.
pub const STS_WINDOWS_NET: &str = "https://sts.windows.net";

/// Which Entra ID cloud issues the tokens.
///
/// | cloud | authority (sign-in, discovery) | v2 issuer | v1 issuer |
/// | --- | --- | --- | --- |
/// | `Public` | `https://login.microsoftonline.com` | `https://login.microsoftonline.com/{tid}/v2.0` | `https://sts.windows.net/{tid}/` |
/// | `UsGovernment` | `https://login.microsoftonline.us` | `https://login.microsoftonline.us/{tid}/v2.0` | `https://sts.windows.net/{tid}/` |
/// | `China` | `https://login.chinacloudapi.cn` | `https://login.partner.microsoftonline.cn/{tid}/v2.0` | `https://sts.chinacloudapi.cn/{tid}/` |
///
/// The v2 issuers are the ones the clouds' discovery documents name (MSAL ships the same
/// values as its built-in cloud metadata). Microsoft's claim references do not name the v1
/// host per cloud: Azure Government keeps `sts.windows.net` and Azure China uses
/// `sts.chinacloudapi.cn` (Microsoft Q&A "What are the token issuers for the sovereign
/// cloud?", and the v1 discovery documents of those clouds). Azure Germany closed in 2021
/// and is not offered. [`Cloud::Custom`] covers anything else, such as a local test
/// authority.
///
/// In a configuration file: `cloud = "public"` (the default), `"us_government"`,
/// `"china"`, or `cloud = { custom = { authority = "...", v1_issuer_base = "...",
/// v2_issuer_base = "..." } }`.
///
/// ```
/// use mcp_auth_azure::Cloud;
///
/// let tid = "8eaef023-2b34-4da1-9baa-8bc8c9d6a490";
/// assert_eq!(
///     Cloud::UsGovernment.v2_issuer(tid),
///     format!("https://login.microsoftonline.us/{tid}/v2.0")
/// );
/// assert_eq!(Cloud::China.v1_issuer(tid), format!("https://sts.chinacloudapi.cn/{tid}/"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Cloud {
    /// The global Azure cloud.
    #[default]
    Public,
    /// Azure Government (GCC High, DoD).
    UsGovernment,
    /// Azure operated by 21Vianet.
    China,
    /// An authority given explicitly (a test authority on loopback, or a cloud not listed).
    Custom(CustomCloud),
}

/// The hosts of a [`Cloud::Custom`]: URL prefixes without a trailing slash.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomCloud {
    /// Where discovery documents and sign-in live (`{authority}/{tenant}/v2.0/...`).
    pub authority: String,
    /// v1 issuers are `{v1_issuer_base}/{tid}/`.
    pub v1_issuer_base: String,
    /// v2 issuers are `{v2_issuer_base}/{tid}/v2.0`.
    pub v2_issuer_base: String,
}

impl Cloud {
    /// A custom cloud; trailing slashes of the arguments are dropped.
    pub fn custom(
        authority: impl Into<String>,
        v1_issuer_base: impl Into<String>,
        v2_issuer_base: impl Into<String>,
    ) -> Self {
        let trim = |s: String| s.trim_end_matches('/').to_owned();
        Self::Custom(CustomCloud {
            authority: trim(authority.into()),
            v1_issuer_base: trim(v1_issuer_base.into()),
            v2_issuer_base: trim(v2_issuer_base.into()),
        })
    }

    /// The authority host: where discovery documents and the sign-in endpoints are.
    pub fn authority(&self) -> &str {
        match self {
            Self::Public => PUBLIC_AUTHORITY,
            Self::UsGovernment => "https://login.microsoftonline.us",
            Self::China => "https://login.chinacloudapi.cn",
            Self::Custom(c) => &c.authority,
        }
    }

    /// The prefix of v1 issuers (`{base}/{tid}/`).
    pub fn v1_issuer_base(&self) -> &str {
        match self {
            Self::Public | Self::UsGovernment => STS_WINDOWS_NET,
            Self::China => "https://sts.chinacloudapi.cn",
            Self::Custom(c) => &c.v1_issuer_base,
        }
    }

    /// The prefix of v2 issuers (`{base}/{tid}/v2.0`).
    pub fn v2_issuer_base(&self) -> &str {
        match self {
            Self::Public => PUBLIC_AUTHORITY,
            Self::UsGovernment => "https://login.microsoftonline.us",
            Self::China => "https://login.partner.microsoftonline.cn",
            Self::Custom(c) => &c.v2_issuer_base,
        }
    }

    /// The v1 issuer of tenant `tid`: `{v1 base}/{tid}/`.
    pub fn v1_issuer(&self, tid: &str) -> String {
        format!("{}/{tid}/", self.v1_issuer_base())
    }

    /// The v2 issuer of tenant `tid`: `{v2 base}/{tid}/v2.0`.
    pub fn v2_issuer(&self, tid: &str) -> String {
        format!("{}/{tid}/v2.0", self.v2_issuer_base())
    }

    /// The Microsoft Graph endpoint of the cloud (`https://graph.microsoft.com`,
    /// `https://graph.microsoft.us` for Azure Government L4/L5 (GCC High; DoD uses
    /// `https://dod-graph.microsoft.us`), `https://microsoftgraph.chinacloudapi.cn`);
    /// `None` for a custom cloud.
    pub fn graph_url(&self) -> Option<&str> {
        match self {
            Self::Public => Some("https://graph.microsoft.com"),
            Self::UsGovernment => Some("https://graph.microsoft.us"),
            Self::China => Some("https://microsoftgraph.chinacloudapi.cn"),
            Self::Custom(_) => None,
        }
    }

    /// The v2 discovery document of the tenant path segment `tenant` (a tenant id,
    /// `organizations`, `common` or `consumers`).
    pub fn discovery_url(&self, tenant: &str) -> String {
        format!(
            "{}/{tenant}/v2.0/.well-known/openid-configuration",
            self.authority()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_per_cloud() {
        let t = "t";
        assert_eq!(
            Cloud::Public.v2_issuer(t),
            "https://login.microsoftonline.com/t/v2.0"
        );
        assert_eq!(Cloud::Public.v1_issuer(t), "https://sts.windows.net/t/");
        assert_eq!(
            Cloud::UsGovernment.v1_issuer(t),
            "https://sts.windows.net/t/"
        );
        assert_eq!(
            Cloud::China.v2_issuer(t),
            "https://login.partner.microsoftonline.cn/t/v2.0"
        );
        assert_eq!(
            Cloud::China.discovery_url("organizations"),
            "https://login.chinacloudapi.cn/organizations/v2.0/.well-known/openid-configuration"
        );
        let custom = Cloud::custom(
            "http://127.0.0.1:1/",
            "https://sts.test/",
            "http://127.0.0.1:1",
        );
        assert_eq!(custom.v1_issuer(t), "https://sts.test/t/");
        assert_eq!(custom.v2_issuer(t), "http://127.0.0.1:1/t/v2.0");
        assert_eq!(custom.authority(), "http://127.0.0.1:1");
        assert_eq!(custom.graph_url(), None);
        assert_eq!(
            Cloud::UsGovernment.graph_url(),
            Some("https://graph.microsoft.us")
        );
    }

    #[test]
    fn serde_names() {
        #[derive(Deserialize)]
        struct Holder {
            cloud: Cloud,
        }
        let parse = |v: serde_json::Value| serde_json::from_value::<Holder>(v).map(|h| h.cloud);
        assert_eq!(
            parse(serde_json::json!({"cloud": "us_government"})).ok(),
            Some(Cloud::UsGovernment)
        );
        assert_eq!(
            parse(serde_json::json!({"cloud": "china"})).ok(),
            Some(Cloud::China)
        );
        let custom = serde_json::json!({"cloud": {"custom": {
            "authority": "https://a", "v1_issuer_base": "https://b", "v2_issuer_base": "https://c"
        }}});
        assert_eq!(
            parse(custom).ok(),
            Some(Cloud::custom("https://a", "https://b", "https://c"))
        );
        assert!(parse(serde_json::json!({"cloud": "germany"})).is_err());
    }
}
