//! Clients: RFC 7591 registration requests, Client ID Metadata Documents (URL client ids,
//! fetched through the [`SafeFetcher`]), lookup, and client authentication at the token and
//! revocation endpoints.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use mcp_auth_core::Secret;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use url::Url;

use super::config::ClientMetadataDocumentConfig;
use super::error::{OAuthError, ProxyError};
use super::records::{random_token, sha256_hex};
use super::redirect::validate_redirect_uri;
use super::scope::is_scope_token;
use super::ssrf::{FetchError, SafeFetcher};
use super::store::{ClientAuthMethod, ClientStore, RegisteredClient, unix_secs};

/// Most redirect URIs per client.
const MAX_REDIRECT_URIS: usize = 10;
/// Longest client name.
const MAX_CLIENT_NAME: usize = 200;

/// An RFC 7591 registration request (or the body of a Client ID Metadata Document).
/// Unknown members are ignored, as RFC 7591 allows.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ClientMetadata {
    #[serde(default)]
    pub(crate) client_id: Option<String>,
    #[serde(default)]
    redirect_uris: Option<Vec<String>>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    response_types: Option<Vec<String>>,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

fn invalid_metadata(description: impl Into<std::borrow::Cow<'static, str>>) -> OAuthError {
    OAuthError::new(
        http::StatusCode::BAD_REQUEST,
        "invalid_client_metadata",
        description,
    )
}

fn invalid_redirect(description: &'static str) -> OAuthError {
    OAuthError::new(
        http::StatusCode::BAD_REQUEST,
        "invalid_redirect_uri",
        description,
    )
}

impl ClientMetadata {
    /// Checks the metadata and builds a client with `client_id`. `document` is set for a
    /// Client ID Metadata Document, which may only describe a public client.
    fn into_client(
        self,
        client_id: String,
        now: SystemTime,
        lifetime: Option<Duration>,
        document: bool,
    ) -> Result<RegisteredClient, OAuthError> {
        let redirect_uris = self.redirect_uris.unwrap_or_default();
        if redirect_uris.is_empty() {
            return Err(invalid_redirect("redirect_uris is required"));
        }
        if redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(invalid_redirect("too many redirect_uris"));
        }
        for uri in &redirect_uris {
            validate_redirect_uri(uri).map_err(invalid_redirect)?;
        }
        let method = match self.token_endpoint_auth_method.as_deref() {
            Some("none") => ClientAuthMethod::None,
            // RFC 7591 makes client_secret_basic the default of a registration; a metadata
            // document describes a public client unless it says otherwise.
            None if document => ClientAuthMethod::None,
            Some("client_secret_basic") | None if !document => ClientAuthMethod::ClientSecretBasic,
            Some("client_secret_post") if !document => ClientAuthMethod::ClientSecretPost,
            _ => {
                return Err(invalid_metadata(
                    "token_endpoint_auth_method must be none, client_secret_basic or \
                     client_secret_post (none for a client id metadata document)",
                ));
            }
        };
        let grant_types = self
            .grant_types
            .unwrap_or_else(|| vec!["authorization_code".into()]);
        if grant_types.is_empty()
            || grant_types
                .iter()
                .any(|g| g != "authorization_code" && g != "refresh_token")
        {
            return Err(invalid_metadata(
                "grant_types may hold authorization_code and refresh_token only",
            ));
        }
        if !grant_types.iter().any(|g| g == "authorization_code") {
            return Err(invalid_metadata(
                "grant_types must include authorization_code",
            ));
        }
        let response_types = self.response_types.unwrap_or_else(|| vec!["code".into()]);
        if response_types.iter().any(|r| r != "code") {
            return Err(invalid_metadata("response_types may hold code only"));
        }
        if let Some(name) = &self.client_name
            && (name.chars().count() > MAX_CLIENT_NAME || name.chars().any(char::is_control))
        {
            return Err(invalid_metadata(
                "client_name is too long or has control characters",
            ));
        }
        if let Some(scope) = &self.scope
            && !scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .all(is_scope_token)
        {
            return Err(invalid_metadata("scope is malformed"));
        }
        Ok(RegisteredClient {
            client_id,
            client_name: self.client_name.filter(|n| !n.trim().is_empty()),
            redirect_uris,
            grant_types,
            token_endpoint_auth_method: method,
            scope: self.scope.filter(|s| !s.trim().is_empty()),
            client_secret_sha256: None,
            issued_at: unix_secs(now),
            expires_at: lifetime.map(|l| unix_secs(now).saturating_add(l.as_secs())),
        })
    }
}

/// A new registration: the client and, for a confidential one, its secret (shown once).
#[derive(Debug)]
pub(crate) struct Registration {
    pub(crate) client: RegisteredClient,
    pub(crate) secret: Option<Secret>,
}

impl Registration {
    /// Builds a registration from an RFC 7591 request body.
    pub(crate) fn from_request(
        metadata: ClientMetadata,
        now: SystemTime,
        lifetime: Option<Duration>,
    ) -> Result<Self, OAuthError> {
        let client_id = format!("mcp_{}", random_token());
        let mut client = metadata.into_client(client_id, now, lifetime, false)?;
        let secret = (client.token_endpoint_auth_method != ClientAuthMethod::None).then(|| {
            let secret = Secret::new(format!("mcps_{}", random_token()));
            client.client_secret_sha256 = Some(sha256_hex(secret.expose()));
            secret
        });
        Ok(Self { client, secret })
    }

    /// The RFC 7591 response body. It holds the client secret: send it to the client only.
    pub(crate) fn response(&self) -> Value {
        let c = &self.client;
        let mut body = json!({
            "client_id": c.client_id,
            "client_id_issued_at": c.issued_at,
            "redirect_uris": c.redirect_uris,
            "grant_types": c.grant_types,
            "response_types": ["code"],
            "token_endpoint_auth_method": c.token_endpoint_auth_method.as_str(),
        });
        if let Some(name) = &c.client_name {
            body["client_name"] = json!(name);
        }
        if let Some(scope) = &c.scope {
            body["scope"] = json!(scope);
        }
        if let Some(secret) = &self.secret {
            body["client_secret"] = json!(secret.expose());
            body["client_secret_expires_at"] = json!(c.expires_at.unwrap_or(0));
        }
        body
    }
}

/// Whether `client_id` has the form of a Client ID Metadata Document URL: `https` (or, in
/// development, `http`) with a path other than `/`, no fragment and no user info.
fn document_url(client_id: &str, allow_http: bool) -> Option<Url> {
    let scheme_ok =
        client_id.starts_with("https://") || (allow_http && client_id.starts_with("http://"));
    if !scheme_ok {
        return None;
    }
    let url = Url::parse(client_id).ok()?;
    (url.path() != "/"
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && url.host().is_some())
    .then_some(url)
}

/// Resolves client ids to clients: registered ones from the store, URL ones from their
/// metadata documents (cached).
pub(crate) struct Clients {
    store: Arc<dyn ClientStore>,
    documents: Option<Documents>,
}

struct Documents {
    fetcher: SafeFetcher,
    cache: moka::future::Cache<String, Arc<RegisteredClient>>,
    allow_http: bool,
}

impl fmt::Debug for Clients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clients")
            .field("store", &self.store)
            .field("metadata_documents", &self.documents.is_some())
            .finish()
    }
}

/// Why a client id did not resolve.
#[derive(Debug)]
pub(crate) enum LookupError {
    /// No such client, or its document was refused (the reason is logged).
    Unknown,
    /// The store failed.
    Store(ProxyError),
}

impl Clients {
    pub(crate) fn new(
        store: Arc<dyn ClientStore>,
        config: &ClientMetadataDocumentConfig,
        allow_private: bool,
    ) -> Result<Self, ProxyError> {
        let documents = if config.enabled {
            let fetcher = SafeFetcher::new(
                config.max_bytes,
                Duration::from_millis(config.timeout_ms),
                allow_private,
            )
            .map_err(|e| ProxyError::upstream("HTTP client setup failed", e))?;
            Some(Documents {
                fetcher,
                cache: moka::future::Cache::builder()
                    .max_capacity(config.cache_capacity)
                    .time_to_live(Duration::from_secs(config.cache_secs))
                    .build(),
                allow_http: allow_private,
            })
        } else {
            None
        };
        Ok(Self { store, documents })
    }

    /// Whether URL client ids are accepted.
    pub(crate) fn supports_documents(&self) -> bool {
        self.documents.is_some()
    }

    /// The store of registered clients.
    pub(crate) fn store(&self) -> &Arc<dyn ClientStore> {
        &self.store
    }

    /// The client `client_id` names.
    pub(crate) async fn find(
        &self,
        client_id: &str,
        now: SystemTime,
    ) -> Result<RegisteredClient, LookupError> {
        if client_id.is_empty() || client_id.len() > 2_000 {
            return Err(LookupError::Unknown);
        }
        if let Some(docs) = &self.documents
            && let Some(url) = document_url(client_id, docs.allow_http)
        {
            return docs.resolve(client_id, url, now).await;
        }
        match self.store.get(client_id, now).await {
            Ok(Some(client)) => Ok(client),
            Ok(None) => Err(LookupError::Unknown),
            Err(e) => Err(LookupError::Store(e)),
        }
    }
}

impl Documents {
    async fn resolve(
        &self,
        client_id: &str,
        url: Url,
        now: SystemTime,
    ) -> Result<RegisteredClient, LookupError> {
        if let Some(client) = self.cache.get(client_id).await {
            return Ok((*client).clone());
        }
        let body = self.fetcher.fetch(&url).await.map_err(|error| {
            match &error {
                FetchError::Scheme | FetchError::PrivateAddress => {
                    tracing::warn!(client_id, %error, "client id metadata document refused");
                }
                _ => tracing::info!(client_id, %error, "client id metadata document not fetched"),
            }
            LookupError::Unknown
        })?;
        let metadata: ClientMetadata = serde_json::from_slice(&body).map_err(|error| {
            tracing::info!(client_id, %error, "client id metadata document is not valid JSON");
            LookupError::Unknown
        })?;
        if metadata.client_id.as_deref() != Some(client_id) {
            tracing::info!(
                client_id,
                "client id metadata document names another client_id"
            );
            return Err(LookupError::Unknown);
        }
        let client = metadata
            .into_client(client_id.to_owned(), now, None, true)
            .map_err(|error| {
                tracing::info!(client_id, %error, "client id metadata document refused");
                LookupError::Unknown
            })?;
        self.cache
            .insert(client_id.to_owned(), Arc::new(client.clone()))
            .await;
        Ok(client)
    }
}

/// The client credentials of a token or revocation request: `client_id` from the form or
/// HTTP Basic, and a secret from either.
#[derive(Debug)]
pub(crate) struct PresentedClient {
    pub(crate) client_id: String,
    secret: Option<Secret>,
    basic: bool,
}

/// Reads the client credentials of a request.
pub(crate) fn presented_client(
    headers: &HeaderMap,
    form_client_id: Option<&str>,
    form_secret: Option<&str>,
) -> Result<PresentedClient, OAuthError> {
    let basic = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
        });
    if let Some(encoded) = basic {
        if form_secret.is_some() {
            return Err(OAuthError::invalid_request(
                "use one client authentication method",
            ));
        }
        let decoded = STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
        let (id, secret) = decoded
            .split_once(':')
            .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
        let id = percent_decode(id);
        let secret = percent_decode(secret);
        if form_client_id.is_some_and(|f| f != id) {
            return Err(OAuthError::invalid_client("client ids disagree"));
        }
        return Ok(PresentedClient {
            client_id: id,
            secret: Some(Secret::new(secret)),
            basic: true,
        });
    }
    let client_id = form_client_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| OAuthError::invalid_client("client_id is required"))?;
    Ok(PresentedClient {
        client_id: client_id.to_owned(),
        secret: form_secret.map(Secret::from),
        basic: false,
    })
}

/// RFC 6749 section 2.3.1: Basic credentials are form-urlencoded first.
fn percent_decode(value: &str) -> String {
    url::form_urlencoded::parse(format!("x={value}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Checks the presented credentials against the client's registration.
pub(crate) fn authenticate(
    client: &RegisteredClient,
    presented: &PresentedClient,
) -> Result<(), OAuthError> {
    match client.token_endpoint_auth_method {
        ClientAuthMethod::None => {
            if presented.secret.is_some() {
                return Err(OAuthError::invalid_client(
                    "a public client does not authenticate with a secret",
                ));
            }
            Ok(())
        }
        method => {
            let expected = client
                .client_secret_sha256
                .as_deref()
                .ok_or_else(|| OAuthError::invalid_client("client authentication failed"))?;
            let secret = presented
                .secret
                .as_ref()
                .ok_or_else(|| OAuthError::invalid_client("client authentication failed"))?;
            let right_method = presented.basic == (method == ClientAuthMethod::ClientSecretBasic);
            let matches: bool = sha256_hex(secret.expose())
                .as_bytes()
                .ct_eq(expected.as_bytes())
                .into();
            if matches && right_method {
                Ok(())
            } else {
                Err(OAuthError::invalid_client("client authentication failed"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: Value) -> ClientMetadata {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn public_registration() {
        let now = SystemTime::now();
        let reg = Registration::from_request(
            metadata(json!({
                "client_name": "Test",
                "redirect_uris": ["http://127.0.0.1:1234/cb"],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "logo_uri": "ignored"
            })),
            now,
            Some(Duration::from_secs(60)),
        )
        .unwrap();
        assert!(reg.secret.is_none());
        assert!(reg.client.client_id.starts_with("mcp_"));
        assert!(reg.client.allows_grant("refresh_token"));
        assert_eq!(reg.client.expires_at, Some(unix_secs(now) + 60));
        let body = reg.response();
        assert_eq!(body["token_endpoint_auth_method"], "none");
        assert!(body.get("client_secret").is_none());
    }

    #[test]
    fn confidential_registration_gets_a_secret_that_authenticates() {
        let reg = Registration::from_request(
            metadata(json!({"redirect_uris": ["https://app.example/cb"]})),
            SystemTime::now(),
            None,
        )
        .unwrap();
        let secret = reg.secret.clone().unwrap();
        assert_eq!(
            reg.client.token_endpoint_auth_method,
            ClientAuthMethod::ClientSecretBasic
        );
        assert_eq!(reg.response()["client_secret"], secret.expose());
        assert!(!format!("{reg:?}").contains(secret.expose()));

        let mut headers = HeaderMap::new();
        let basic = STANDARD.encode(format!("{}:{}", reg.client.client_id, secret.expose()));
        headers.insert(AUTHORIZATION, format!("Basic {basic}").parse().unwrap());
        let presented = presented_client(&headers, None, None).unwrap();
        authenticate(&reg.client, &presented).unwrap();

        // Wrong secret, secret in the body instead of Basic, or none at all.
        let wrong = STANDARD.encode(format!("{}:nope", reg.client.client_id));
        headers.insert(AUTHORIZATION, format!("Basic {wrong}").parse().unwrap());
        let presented = presented_client(&headers, None, None).unwrap();
        assert_eq!(
            authenticate(&reg.client, &presented).unwrap_err().code(),
            "invalid_client"
        );
        let post = presented_client(
            &HeaderMap::new(),
            Some(&reg.client.client_id),
            Some(secret.expose()),
        )
        .unwrap();
        assert!(authenticate(&reg.client, &post).is_err());
        let none = presented_client(&HeaderMap::new(), Some(&reg.client.client_id), None).unwrap();
        assert!(authenticate(&reg.client, &none).is_err());
    }

    #[test]
    fn bad_registrations_are_refused() {
        for (body, code) in [
            (json!({}), "invalid_redirect_uri"),
            (
                json!({"redirect_uris": ["http://evil.example/cb"]}),
                "invalid_redirect_uri",
            ),
            (
                json!({"redirect_uris": ["javascript:alert(1)"]}),
                "invalid_redirect_uri",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"}),
                "invalid_client_metadata",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["client_credentials"]}),
                "invalid_client_metadata",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "response_types": ["token"]}),
                "invalid_client_metadata",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb"], "client_name": "a\u{0}b"}),
                "invalid_client_metadata",
            ),
        ] {
            let err = Registration::from_request(metadata(body.clone()), SystemTime::now(), None)
                .unwrap_err();
            assert_eq!(err.code(), code, "{body}");
        }
    }

    #[test]
    fn document_urls() {
        assert!(document_url("https://app.example/client.json", false).is_some());
        assert!(document_url("https://app.example/", false).is_none());
        assert!(document_url("http://app.example/client.json", false).is_none());
        assert!(document_url("http://127.0.0.1:1/client.json", true).is_some());
        assert!(document_url("https://u:p@app.example/c", false).is_none());
        assert!(document_url("mcp_abc", true).is_none());
    }

    #[test]
    fn basic_credentials_are_form_decoded_and_must_agree() {
        let mut headers = HeaderMap::new();
        let basic = STANDARD.encode("a%3Ab:s%20t");
        headers.insert(AUTHORIZATION, format!("Basic {basic}").parse().unwrap());
        let p = presented_client(&headers, None, None).unwrap();
        assert_eq!(p.client_id, "a:b");
        assert!(presented_client(&headers, Some("other"), None).is_err());
        assert!(presented_client(&headers, None, Some("x")).is_err());
        assert!(presented_client(&HeaderMap::new(), None, None).is_err());
    }
}
