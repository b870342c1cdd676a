//! RFC 9728 OAuth 2.0 protected-resource metadata: the document, its well-known paths and
//! how to serve it.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{ACCESS_CONTROL_ALLOW_ORIGIN, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Response, StatusCode, Uri};
use serde::{Serialize, Serializer};

use crate::rejection::ChallengeConfig;

/// The well-known path of the metadata document (RFC 9728 section 3).
pub const WELL_KNOWN_PATH: &str = "/.well-known/oauth-protected-resource";

/// The `Cache-Control` sent with the metadata document.
const METADATA_CACHE_CONTROL: &str = "public, max-age=3600";

/// Why a metadata document could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// A URL field is not an absolute URL of the accepted form.
    #[error("{field} is not a valid URL: {reason}")]
    InvalidUrl {
        /// The metadata field (`resource`, `authorization_servers`, ...).
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A URL field uses `http` for a host that is not a loopback host.
    #[error("{field} must use https (http is accepted only for localhost and loopback addresses)")]
    InsecureUrl {
        /// The metadata field.
        field: &'static str,
    },
    /// No authorization server is named; the MCP authorization spec requires one.
    #[error("at least one authorization server is required")]
    NoAuthorizationServer,
    /// A scope is not an RFC 6749 scope token (empty, or with spaces, quotes or controls).
    #[error("scope {0:?} is not a valid scope token")]
    InvalidScope(String),
}

/// An RFC 9728 protected-resource metadata document for one MCP endpoint.
///
/// Cheap to clone. Built with [`ProtectedResourceMetadata::builder`]; serializes to the RFC
/// 9728 JSON; answers GET requests for its well-known paths with
/// [`ProtectedResourceMetadata::respond`] (or [`ProtectedResourceMetadata::router`] with the
/// `axum` feature).
///
/// ```
/// use mcp_auth_core::resource::ProtectedResourceMetadata;
///
/// let metadata = ProtectedResourceMetadata::builder("https://mcp.example.com/mcp")
///     .authorization_server("https://login.example.com")
///     .scopes_supported(["mcp:tools"])
///     .resource_name("Example MCP server")
///     .build()?;
/// assert_eq!(metadata.well_known_path(), "/.well-known/oauth-protected-resource/mcp");
/// assert_eq!(
///     metadata.resource_metadata_url(),
///     "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
/// );
/// let json = serde_json::to_value(&metadata)?;
/// assert_eq!(json["bearer_methods_supported"], serde_json::json!(["header"]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ProtectedResourceMetadata {
    inner: Arc<MetadataData>,
}

struct MetadataData {
    resource: String,
    authorization_servers: Vec<String>,
    scopes_supported: Vec<String>,
    resource_name: Option<String>,
    resource_documentation: Option<String>,
    jwks_uri: Option<String>,
    well_known_path: String,
    resource_metadata_url: String,
    body: Bytes,
}

impl fmt::Debug for ProtectedResourceMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtectedResourceMetadata")
            .field("resource", &self.inner.resource)
            .field("authorization_servers", &self.inner.authorization_servers)
            .field("scopes_supported", &self.inner.scopes_supported)
            .field("well_known_path", &self.inner.well_known_path)
            .finish_non_exhaustive()
    }
}

impl MetadataData {
    /// The RFC 9728 JSON document.
    fn document(&self) -> serde_json::Value {
        let d = self;
        let mut doc = serde_json::Map::new();
        doc.insert("resource".into(), d.resource.clone().into());
        if !d.authorization_servers.is_empty() {
            doc.insert(
                "authorization_servers".into(),
                d.authorization_servers.clone().into(),
            );
        }
        if let Some(jwks_uri) = &d.jwks_uri {
            doc.insert("jwks_uri".into(), jwks_uri.clone().into());
        }
        if !d.scopes_supported.is_empty() {
            doc.insert("scopes_supported".into(), d.scopes_supported.clone().into());
        }
        doc.insert("bearer_methods_supported".into(), vec!["header"].into());
        if let Some(name) = &d.resource_name {
            doc.insert("resource_name".into(), name.clone().into());
        }
        if let Some(docs) = &d.resource_documentation {
            doc.insert("resource_documentation".into(), docs.clone().into());
        }
        serde_json::Value::Object(doc)
    }
}

/// Builder for [`ProtectedResourceMetadata`].
#[derive(Clone, Debug)]
pub struct ProtectedResourceMetadataBuilder {
    resource: String,
    authorization_servers: Vec<String>,
    scopes_supported: Vec<String>,
    resource_name: Option<String>,
    resource_documentation: Option<String>,
    jwks_uri: Option<String>,
}

impl ProtectedResourceMetadata {
    /// Starts a document for `resource`: the public URL of the MCP endpoint, an absolute
    /// `https` URL without query or fragment (`http` only for localhost and loopback
    /// addresses).
    pub fn builder(resource: impl Into<String>) -> ProtectedResourceMetadataBuilder {
        ProtectedResourceMetadataBuilder {
            resource: resource.into(),
            authorization_servers: Vec::new(),
            scopes_supported: Vec::new(),
            resource_name: None,
            resource_documentation: None,
            jwks_uri: None,
        }
    }

    /// The resource identifier.
    pub fn resource(&self) -> &str {
        &self.inner.resource
    }

    /// The authorization servers.
    pub fn authorization_servers(&self) -> &[String] {
        &self.inner.authorization_servers
    }

    /// The scopes the resource understands.
    pub fn scopes_supported(&self) -> &[String] {
        &self.inner.scopes_supported
    }

    /// The path-suffixed well-known path of this resource (RFC 9728 section 3.1): for
    /// `https://host/mcp` it is `/.well-known/oauth-protected-resource/mcp`; for a resource
    /// at the root it is [`WELL_KNOWN_PATH`].
    pub fn well_known_path(&self) -> &str {
        &self.inner.well_known_path
    }

    /// The paths this document is served at: the path-suffixed form and the root form
    /// [`WELL_KNOWN_PATH`] (MCP clients try both). One path when they are the same.
    pub fn served_paths(&self) -> Vec<&str> {
        let mut paths = vec![self.well_known_path()];
        if self.well_known_path() != WELL_KNOWN_PATH {
            paths.push(WELL_KNOWN_PATH);
        }
        paths
    }

    /// The absolute URL of the document, for the `resource_metadata` parameter of
    /// `WWW-Authenticate` challenges.
    pub fn resource_metadata_url(&self) -> &str {
        &self.inner.resource_metadata_url
    }

    /// A [`ChallengeConfig`] naming this document's URL (add a scope with
    /// [`ChallengeConfig::default_scope`]).
    pub fn challenge_config(&self) -> ChallengeConfig {
        ChallengeConfig::new().resource_metadata(self.resource_metadata_url())
    }

    /// The document as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        self.inner.document()
    }

    /// Answers a request for one of the [`served_paths`](Self::served_paths), or returns
    /// `None` for any other path.
    ///
    /// GET gets the JSON document with `Cache-Control: public, max-age=3600` and
    /// `Access-Control-Allow-Origin: *` (the document is public; browser-based clients read
    /// it); HEAD the same headers without a body; other methods 405.
    pub fn respond(&self, method: &Method, path: &str) -> Option<Response<Bytes>> {
        if !self.served_paths().contains(&path) {
            return None;
        }
        let mut response = Response::new(Bytes::new());
        if *method == Method::GET || *method == Method::HEAD {
            if *method == Method::GET {
                *response.body_mut() = self.inner.body.clone();
            }
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(
                CACHE_CONTROL,
                HeaderValue::from_static(METADATA_CACHE_CONTROL),
            );
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        } else {
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        Some(response)
    }

    /// Answers `request` if it asks for one of the served paths; see [`Self::respond`].
    pub fn respond_to<B>(&self, request: &http::Request<B>) -> Option<Response<Bytes>> {
        self.respond(request.method(), request.uri().path())
    }

    /// An axum router that serves the document at its [`served_paths`](Self::served_paths).
    /// Merge it into the application's router, outside the authentication layer.
    #[cfg(feature = "axum")]
    pub fn router<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let mut router = axum::Router::new();
        for path in self.served_paths() {
            let metadata = self.clone();
            let owned_path = path.to_owned();
            router = router.route(
                path,
                axum::routing::get(move || {
                    let metadata = metadata.clone();
                    let path = owned_path.clone();
                    async move {
                        metadata
                            .respond(&Method::GET, &path)
                            .map(|r| r.map(axum::body::Body::from))
                            .unwrap_or_default()
                    }
                }),
            );
        }
        router
    }
}

impl Serialize for ProtectedResourceMetadata {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl ProtectedResourceMetadataBuilder {
    /// Adds an authorization server (its issuer URL).
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.authorization_servers.push(issuer.into());
        self
    }

    /// Adds authorization servers.
    pub fn authorization_servers<I, S>(mut self, issuers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.authorization_servers
            .extend(issuers.into_iter().map(Into::into));
        self
    }

    /// Adds the scopes the resource understands.
    pub fn scopes_supported<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes_supported
            .extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Sets the human-readable name of the resource.
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// Sets the URL of the resource's developer documentation.
    pub fn resource_documentation(mut self, url: impl Into<String>) -> Self {
        self.resource_documentation = Some(url.into());
        self
    }

    /// Sets the URL of the resource's own JWK set (for signed responses; rarely needed).
    pub fn jwks_uri(mut self, url: impl Into<String>) -> Self {
        self.jwks_uri = Some(url.into());
        self
    }

    /// Checks the URLs and scopes and builds the document.
    pub fn build(self) -> Result<ProtectedResourceMetadata, MetadataError> {
        let resource = check_url("resource", &self.resource)?;
        if resource.query().is_some() {
            return Err(MetadataError::InvalidUrl {
                field: "resource",
                reason: "has a query component",
            });
        }
        if self.authorization_servers.is_empty() {
            return Err(MetadataError::NoAuthorizationServer);
        }
        for server in &self.authorization_servers {
            check_url("authorization_servers", server)?;
        }
        if let Some(url) = &self.resource_documentation {
            check_url("resource_documentation", url)?;
        }
        if let Some(url) = &self.jwks_uri {
            check_url("jwks_uri", url)?;
        }
        if let Some(bad) = self
            .scopes_supported
            .iter()
            .find(|s| !is_scope_token(s.as_str()))
        {
            return Err(MetadataError::InvalidScope(bad.clone()));
        }

        // RFC 9728 section 3.1: the well-known segment goes between the host and the path;
        // the slash that ends a bare host is dropped.
        let path = resource.path();
        let well_known_path = if path == "/" || path.is_empty() {
            WELL_KNOWN_PATH.to_owned()
        } else {
            format!("{WELL_KNOWN_PATH}{path}")
        };
        let scheme = resource.scheme_str().unwrap_or("https");
        let authority = resource.authority().map(|a| a.as_str()).unwrap_or_default();
        let resource_metadata_url = format!("{scheme}://{authority}{well_known_path}");

        let mut data = MetadataData {
            resource: self.resource,
            authorization_servers: self.authorization_servers,
            scopes_supported: self.scopes_supported,
            resource_name: self.resource_name,
            resource_documentation: self.resource_documentation,
            jwks_uri: self.jwks_uri,
            well_known_path,
            resource_metadata_url,
            body: Bytes::new(),
        };
        data.body = Bytes::from(data.document().to_string());
        Ok(ProtectedResourceMetadata {
            inner: Arc::new(data),
        })
    }
}

/// Checks that `value` is an absolute `https` URL (or `http` on a loopback host) without
/// user info or fragment.
fn check_url(field: &'static str, value: &str) -> Result<Uri, MetadataError> {
    let invalid = |reason| MetadataError::InvalidUrl { field, reason };
    if value.contains('#') {
        return Err(invalid("has a fragment"));
    }
    let uri: Uri = value.parse().map_err(|_| invalid("cannot be parsed"))?;
    let authority = uri
        .authority()
        .ok_or(invalid("is not absolute (no scheme and host)"))?;
    if authority.as_str().contains('@') {
        return Err(invalid("contains user info"));
    }
    if authority.host().is_empty() {
        return Err(invalid("has no host"));
    }
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => Ok(uri),
        Some(s) if s.eq_ignore_ascii_case("http") => {
            if is_loopback_host(authority.host()) {
                Ok(uri)
            } else {
                Err(MetadataError::InsecureUrl { field })
            }
        }
        _ => Err(invalid("scheme is not https or http")),
    }
}

fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// RFC 6749 section 3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(resource: &str) -> ProtectedResourceMetadata {
        ProtectedResourceMetadata::builder(resource)
            .authorization_server("https://login.example.com/tenant/v2.0")
            .scopes_supported(["mcp:tools", "mcp:resources"])
            .resource_name("Example")
            .resource_documentation("https://docs.example.com/mcp")
            .build()
            .unwrap()
    }

    #[test]
    fn document_shape() {
        let m = metadata("https://mcp.example.com/mcp");
        assert_eq!(
            m.to_json(),
            serde_json::json!({
                "resource": "https://mcp.example.com/mcp",
                "authorization_servers": ["https://login.example.com/tenant/v2.0"],
                "scopes_supported": ["mcp:tools", "mcp:resources"],
                "bearer_methods_supported": ["header"],
                "resource_name": "Example",
                "resource_documentation": "https://docs.example.com/mcp",
            })
        );
        let served: serde_json::Value =
            serde_json::from_slice(m.respond(&Method::GET, WELL_KNOWN_PATH).unwrap().body())
                .unwrap();
        assert_eq!(served, m.to_json());
    }

    #[test]
    fn well_known_paths() {
        let m = metadata("https://mcp.example.com/mcp");
        assert_eq!(
            m.served_paths(),
            vec!["/.well-known/oauth-protected-resource/mcp", WELL_KNOWN_PATH]
        );
        assert_eq!(
            m.resource_metadata_url(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );

        let root = metadata("https://mcp.example.com/");
        assert_eq!(root.served_paths(), vec![WELL_KNOWN_PATH]);
        assert_eq!(
            root.resource_metadata_url(),
            "https://mcp.example.com/.well-known/oauth-protected-resource"
        );
        let bare = metadata("https://mcp.example.com:8443");
        assert_eq!(
            bare.resource_metadata_url(),
            "https://mcp.example.com:8443/.well-known/oauth-protected-resource"
        );
        let nested = metadata("http://127.0.0.1:8080/a/mcp/");
        assert_eq!(
            nested.well_known_path(),
            "/.well-known/oauth-protected-resource/a/mcp/"
        );
    }

    #[test]
    fn rejects_bad_configuration() {
        let build = |resource: &str| {
            ProtectedResourceMetadata::builder(resource)
                .authorization_server("https://login.example.com")
                .build()
                .map(|_| ())
        };
        assert_eq!(
            build("http://mcp.example.com/mcp"),
            Err(MetadataError::InsecureUrl { field: "resource" })
        );
        assert!(build("http://localhost:8080/mcp").is_ok());
        assert!(build("http://127.0.0.1/mcp").is_ok());
        assert!(build("http://[::1]:8080/mcp").is_ok());
        for bad in [
            "/mcp",
            "mcp.example.com/mcp",
            "https://mcp.example.com/mcp#frag",
            "https://mcp.example.com/mcp?x=1",
            "https://user:pw@mcp.example.com/mcp",
            "ftp://mcp.example.com/mcp",
            "",
        ] {
            assert!(
                matches!(
                    build(bad),
                    Err(MetadataError::InvalidUrl {
                        field: "resource",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            ProtectedResourceMetadata::builder("https://mcp.example.com")
                .build()
                .map(|_| ()),
            Err(MetadataError::NoAuthorizationServer)
        );
        assert_eq!(
            ProtectedResourceMetadata::builder("https://mcp.example.com")
                .authorization_server("http://login.example.com")
                .build()
                .map(|_| ()),
            Err(MetadataError::InsecureUrl {
                field: "authorization_servers"
            })
        );
        assert_eq!(
            ProtectedResourceMetadata::builder("https://mcp.example.com")
                .authorization_server("https://login.example.com")
                .scopes_supported(["a b"])
                .build()
                .map(|_| ()),
            Err(MetadataError::InvalidScope("a b".into()))
        );
    }

    #[test]
    fn respond_methods_and_paths() {
        let m = metadata("https://mcp.example.com/mcp");
        let get = m
            .respond(&Method::GET, "/.well-known/oauth-protected-resource/mcp")
            .unwrap();
        assert_eq!(get.status(), StatusCode::OK);
        assert_eq!(get.headers()[CACHE_CONTROL], METADATA_CACHE_CONTROL);
        assert_eq!(get.headers()[CONTENT_TYPE], "application/json");
        let head = m.respond(&Method::HEAD, WELL_KNOWN_PATH).unwrap();
        assert!(head.body().is_empty());
        let post = m.respond(&Method::POST, WELL_KNOWN_PATH).unwrap();
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(m.respond(&Method::GET, "/mcp").is_none());
        assert!(
            m.respond(&Method::GET, "/.well-known/oauth-protected-resource/other")
                .is_none()
        );
        let request = http::Request::get("/.well-known/oauth-protected-resource/mcp")
            .body(())
            .unwrap();
        assert!(m.respond_to(&request).is_some());
    }
}
