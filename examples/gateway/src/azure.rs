//! `[auth.azure]`: Entra ID access tokens ([`EntraAuthenticator`]) and the OAuth proxy MCP
//! clients sign in through ([`OAuthProxy`], mounted on the gateway). A bearer token goes to
//! the verifier its unverified `iss` names ([`AzureAuthenticator`]); that verifier checks
//! everything, the issuer included.

use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcp_auth_azure::proxy::OAuthProxy;
use mcp_auth_azure::{EntraAuthenticator, EntraIssuerPolicy};
use mcp_auth_core::jwt::{DEFAULT_MAX_TOKEN_SIZE, JwtAuthenticator};
use mcp_auth_core::{
    AuthError, Authenticator, Credential, CredentialKind, Principal, RevocationStore,
    TokenRejection,
};
use serde::Deserialize;

use crate::config::{AuthConfig, AzureConfig};
use crate::gateway::BearerAuth;

/// The bearer-token side of `[auth.azure]`: builds the Entra verifier (with the gateway's
/// revocation store and token cache), loads Entra's keys (a failure is only logged:
/// `/health/ready` reports it), and builds the proxy, which takes its principals from the same verifier so that a proxied login and a
/// direct Entra token map to the same principal, and records revocations in the same store.
pub(crate) async fn build(
    azure: &AzureConfig,
    auth: &AuthConfig,
    revocation: Arc<dyn RevocationStore>,
) -> anyhow::Result<BearerAuth> {
    let entra = EntraAuthenticator::builder(azure.entra.clone())
        .revocation(Arc::clone(&revocation))
        .token_cache_capacity(auth.token_cache_capacity)
        .build()
        .context("auth.azure")?;
    let jwks = entra.jwks().cloned().map(Arc::new);
    if let Some(jwks) = &jwks
        && let Err(error) = jwks.refresh().await
    {
        tracing::warn!(tenant = %azure.entra.tenant, %error, "could not load Entra's keys yet");
    }
    let policy = entra.issuer_policy().clone();
    let entra = Arc::new(entra);
    let proxy = azure
        .proxy
        .as_ref()
        .map(|config| {
            OAuthProxy::builder(config.clone())
                .revocation_store(revocation)
                .entra_authenticator(Arc::clone(&entra) as Arc<dyn Authenticator>)
                .build()
                .context("auth.azure.proxy")
        })
        .transpose()?;
    let authorization_server = match &proxy {
        Some(proxy) => proxy.issuer_url().to_owned(),
        None => {
            let mode = azure.entra.tenant_mode().context("auth.azure.tenant")?;
            azure.entra.cloud.v2_issuer(mode.path_segment())
        }
    };
    let authenticator = AzureAuthenticator {
        proxy: proxy
            .as_ref()
            .map(|p| (p.issuer_url().to_owned(), p.authenticator())),
        entra,
        policy,
    };
    Ok(BearerAuth {
        authenticator: Arc::new(authenticator),
        jwks,
        authorization_server,
        proxy,
    })
}

/// Bearer tokens of the proxy (its issuer) go to the proxy's verifier, tokens whose issuer
/// has the shape of an accepted Entra issuer to [`EntraAuthenticator`]; any other is
/// refused without a key look-up. The `iss` read here is not trusted: the chosen verifier
/// checks the signature and the issuer itself.
struct AzureAuthenticator {
    entra: Arc<EntraAuthenticator>,
    policy: EntraIssuerPolicy,
    /// The proxy's issuer and the verifier of its tokens.
    proxy: Option<(String, JwtAuthenticator)>,
}

/// The `iss` of a JWT's payload, read without any check: a routing hint. `None` when the
/// token has no readable payload or no string `iss`.
fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Issuer {
        iss: Option<String>,
    }
    if token.len() > DEFAULT_MAX_TOKEN_SIZE {
        return None;
    }
    let payload = token.split('.').nth(1)?;
    let json = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Issuer>(&json).ok()?.iss
}

#[async_trait]
impl Authenticator for AzureAuthenticator {
    fn accepts(&self, kind: CredentialKind) -> bool {
        kind == CredentialKind::Bearer
    }

    async fn authenticate(&self, credential: &Credential) -> Result<Principal, AuthError> {
        let token = credential.secret().expose();
        if token.len() > DEFAULT_MAX_TOKEN_SIZE {
            return Err(AuthError::InvalidToken(TokenRejection::Oversized));
        }
        let Some(issuer) = unverified_issuer(token) else {
            return Err(AuthError::InvalidToken(TokenRejection::Malformed(
                "no readable `iss` in the payload",
            )));
        };
        match &self.proxy {
            Some((proxy_issuer, verifier)) if issuer == *proxy_issuer => {
                verifier.authenticate(credential).await
            }
            _ if self.policy.is_entra_issuer(&issuer) => self.entra.authenticate(credential).await,
            _ => Err(AuthError::InvalidToken(TokenRejection::WrongIssuer)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(payload))
    }

    #[test]
    fn the_issuer_is_read_from_the_payload_only() {
        assert_eq!(
            unverified_issuer(&jwt(r#"{"iss":"https://a.example","sub":"x"}"#)).as_deref(),
            Some("https://a.example")
        );
        assert_eq!(unverified_issuer(&jwt(r#"{"sub":"x"}"#)), None);
        assert_eq!(unverified_issuer(&jwt(r#"{"iss":7}"#)), None);
        assert_eq!(unverified_issuer(&jwt("not json")), None);
        assert_eq!(unverified_issuer("no-dots"), None);
        assert_eq!(unverified_issuer("a.%%%.c"), None);
        let huge = jwt(&format!(
            r#"{{"iss":"{}"}}"#,
            "i".repeat(DEFAULT_MAX_TOKEN_SIZE)
        ));
        assert_eq!(unverified_issuer(&huge), None);
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_read_without_a_panic(token in "\\PC{0,300}") {
            let _ = unverified_issuer(&token);
        }

        #[test]
        fn any_issuer_is_read_back(iss in "\\PC{0,200}", sub in "\\PC{0,50}") {
            let payload = serde_json::json!({"sub": sub, "iss": iss}).to_string();
            proptest::prop_assert_eq!(unverified_issuer(&jwt(&payload)), Some(iss));
        }
    }
}
