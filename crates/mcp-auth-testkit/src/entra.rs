//! [`EntraIssuer`]: a local authority shaped like Microsoft Entra ID (Azure AD), over real
//! HTTP on 127.0.0.1: per-tenant v1 and v2 discovery, JWKS, an auto-consenting
//! `/authorize`, a `/token` endpoint (authorization code with PKCE, refresh token, client
//! credentials, on-behalf-of) and a builder for arbitrary Entra-shaped tokens.
//!
//! The shapes follow Microsoft's access-token and ID-token claim references: v1 access
//! tokens carry `iss = https://sts.windows.net/{tid}/`, `appid`, `upn`, `unique_name` and
//! `ver = "1.0"`; v2 access tokens carry `iss = {authority}/{tid}/v2.0`, `azp`, `azpacr`,
//! `preferred_username` and `ver = "2.0"`; ID tokens are always v2. Group overage is the
//! `_claim_names` / `_claim_sources` pair pointing at Microsoft Graph. App-only tokens
//! carry `idtyp = "app"`, `roles` and no `scp`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::UNIX_EPOCH;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use mcp_auth_core::Clock;
use mcp_auth_core::jwt::{JwtValidator, KeySet};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::issuer::{TestIssuer, TestIssuerConfig};
use crate::tokens;

/// The tenant id of personal Microsoft accounts (what `consumers` tokens carry in `tid`).
pub const MSA_TENANT_ID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// The resource of scopes without a resource prefix (`User.Read`): Microsoft Graph.
pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";

/// The access-token format, chosen by the resource app (`accessTokenAcceptedVersion` in
/// its manifest), not by the endpoint the client used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenVersion {
    /// v1.0: `iss = https://sts.windows.net/{tid}/`, `appid`, `aud` usually the App ID URI.
    V1,
    /// v2.0: `iss = {authority}/{tid}/v2.0`, `azp`, `aud` the client id of the resource.
    V2,
}

impl TokenVersion {
    /// The `ver` claim: `"1.0"` or `"2.0"`.
    pub fn claim(self) -> &'static str {
        match self {
            Self::V1 => "1.0",
            Self::V2 => "2.0",
        }
    }
}

/// A user of the directory: what the authorize endpoint signs in and tokens describe.
///
/// `roles` are the app roles assigned to the user (they appear in tokens for registered
/// resource apps), `groups` the group object ids; with `group_overage` the token carries
/// the overage claims instead of `groups`, as Entra does past 200 (JWT) groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntraUser {
    /// Object id: the stable id of the user across applications (`oid`).
    pub oid: String,
    /// Home tenant id (`tid`).
    pub tid: String,
    /// Display name (`name`).
    pub name: String,
    /// Sign-in name (`preferred_username`, `upn`, `unique_name`); matched by `login_hint`.
    pub username: String,
    /// Assigned app roles (`roles`).
    pub roles: Vec<String>,
    /// Group object ids (`groups`).
    pub groups: Vec<String>,
    /// Whether tokens carry the group overage claims instead of `groups`.
    pub group_overage: bool,
}

impl EntraUser {
    /// A user `oid` of tenant `tid`, named `Test User`, username `<oid>@example.test`.
    pub fn new(oid: impl Into<String>, tid: impl Into<String>) -> Self {
        let oid = oid.into();
        Self {
            username: format!("{oid}@example.test"),
            oid,
            tid: tid.into(),
            name: "Test User".into(),
            roles: Vec::new(),
            groups: Vec::new(),
            group_overage: false,
        }
    }

    /// Sets the display name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the sign-in name.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = username.into();
        self
    }

    /// Sets the assigned app roles.
    pub fn roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the group object ids.
    pub fn groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// Makes tokens carry the overage claims instead of `groups`.
    pub fn group_overage(mut self) -> Self {
        self.group_overage = true;
        self
    }
}

/// An app registration: a client of the token endpoint and, with its exposed scopes, a
/// resource tokens can be issued for.
#[derive(Clone)]
pub struct EntraApp {
    /// Application (client) id.
    pub client_id: String,
    /// The client secret; `None` makes a public client (no secret accepted).
    pub client_secret: Option<String>,
    /// Redirect URIs, compared exactly.
    pub redirect_uris: Vec<String>,
    /// The App ID URI, prefix of the app's scopes (default `api://{client_id}`).
    pub app_id_uri: String,
    /// The access-token version issued for this app as a resource (default v2).
    pub access_token_version: TokenVersion,
    /// The delegated scopes the app exposes (default `access_as_user`).
    pub scopes: Vec<String>,
    /// The tenant the app is registered in.
    pub home_tenant: String,
    /// App roles granted to this app as a client: the `roles` of its client-credentials
    /// tokens.
    pub granted_app_roles: Vec<String>,
}

impl fmt::Debug for EntraApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraApp")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("redirect_uris", &self.redirect_uris)
            .field("app_id_uri", &self.app_id_uri)
            .field("access_token_version", &self.access_token_version)
            .field("scopes", &self.scopes)
            .field("home_tenant", &self.home_tenant)
            .field("granted_app_roles", &self.granted_app_roles)
            .finish()
    }
}

impl EntraApp {
    /// A public client `client_id` in [`EntraIssuer::TENANT`], App ID URI
    /// `api://{client_id}`, v2 tokens, exposing `access_as_user`, no redirect URI.
    pub fn new(client_id: impl Into<String>) -> Self {
        let client_id = client_id.into();
        Self {
            app_id_uri: format!("api://{client_id}"),
            client_id,
            client_secret: None,
            redirect_uris: Vec::new(),
            access_token_version: TokenVersion::V2,
            scopes: vec!["access_as_user".into()],
            home_tenant: EntraIssuer::TENANT.into(),
            granted_app_roles: Vec::new(),
        }
    }

    /// Makes it a confidential client with this secret.
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.client_secret = Some(secret.into());
        self
    }

    /// Adds a redirect URI.
    pub fn redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.redirect_uris.push(uri.into());
        self
    }

    /// Sets the App ID URI.
    pub fn app_id_uri(mut self, uri: impl Into<String>) -> Self {
        self.app_id_uri = uri.into();
        self
    }

    /// Sets the access-token version issued for this app as a resource.
    pub fn access_token_version(mut self, version: TokenVersion) -> Self {
        self.access_token_version = version;
        self
    }

    /// Sets the exposed delegated scopes.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the home tenant.
    pub fn home_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.home_tenant = tenant.into();
        self
    }

    /// Sets the app roles granted to this app as a client.
    pub fn granted_app_roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.granted_app_roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// The `aud` of access tokens issued for this app: the client id for v2, the App ID URI
    /// for v1.
    pub fn audience(&self) -> &str {
        match self.access_token_version {
            TokenVersion::V1 => &self.app_id_uri,
            TokenVersion::V2 => &self.client_id,
        }
    }
}

/// What the authorize endpoint answers for the signed-in user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consent {
    /// Consent is given at once: redirect back with a code (the default).
    Grant,
    /// The user declines: redirect back with `error=access_denied` (AADSTS65004).
    Deny,
}

/// How an [`EntraIssuer`] is set up.
#[derive(Clone, Debug)]
pub struct EntraIssuerConfig {
    /// The clock for `iat`/`nbf`/`exp` and code expiry. Default the system clock.
    pub clock: Arc<dyn Clock>,
    /// Lifetime of issued access and ID tokens in seconds. Default 3600.
    pub token_ttl_secs: u64,
    /// Lifetime of authorization codes in seconds. Default 600, as in Entra.
    pub code_ttl_secs: u64,
    /// The base of v1 issuers, `{base}/{tid}/`. Default `https://sts.windows.net`, the
    /// real value: tokens are validated against it, it is never fetched.
    pub v1_issuer_base: String,
    /// Whether `/authorize` requires a PKCE S256 challenge. Default true. (Entra itself
    /// makes PKCE optional for confidential clients; a `plain` challenge is always refused
    /// here.)
    pub require_pkce: bool,
}

impl Default for EntraIssuerConfig {
    fn default() -> Self {
        Self {
            clock: Arc::new(mcp_auth_core::SystemClock),
            token_ttl_secs: 3600,
            code_ttl_secs: 600,
            v1_issuer_base: "https://sts.windows.net".into(),
            require_pkce: true,
        }
    }
}

/// A request recorded by the issuer: its query or form parameters, `client_secret`
/// replaced by `<redacted>`.
pub type RecordedRequest = BTreeMap<String, String>;

struct CodeGrant {
    client_id: String,
    redirect_uri: String,
    user: EntraUser,
    scopes: Vec<String>,
    challenge: Option<String>,
    nonce: Option<String>,
    expires_at: u64,
    redeemed: bool,
}

struct RefreshGrant {
    client_id: String,
    user: EntraUser,
    scopes: Vec<String>,
    revoked: bool,
}

struct Registry {
    apps: HashMap<String, EntraApp>,
    users: Vec<EntraUser>,
    signed_in: EntraUser,
    consent: Consent,
    codes: HashMap<String, CodeGrant>,
    refresh_tokens: HashMap<String, RefreshGrant>,
    authorize_log: Vec<RecordedRequest>,
    token_log: Vec<RecordedRequest>,
}

struct Shared {
    keys: TestIssuer,
    authority: String,
    v1_base: String,
    clock: Arc<dyn Clock>,
    token_ttl: u64,
    code_ttl: u64,
    require_pkce: bool,
    registry: Mutex<Registry>,
    counter: AtomicU64,
    discovery_fetches: AtomicUsize,
    graph_requests: AtomicUsize,
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> u64 {
        self.clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// An opaque, unique value (codes, refresh tokens, `uti`). Predictable enough for a test
    /// kit, never for anything real.
    fn opaque(&self, kind: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = self
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let digest = Sha256::digest(format!("{kind}:{}:{n}:{nanos}", self.authority));
        URL_SAFE_NO_PAD.encode(digest)
    }

    fn v1_issuer(&self, tid: &str) -> String {
        format!("{}/{tid}/", self.v1_base)
    }

    fn v2_issuer(&self, tid: &str) -> String {
        format!("{}/{tid}/v2.0", self.authority)
    }

    fn sign(&self, header: Value, claims: &Value) -> String {
        let header = tokens::merge(
            json!({
                "alg": tokens::alg_name(self.keys.alg()),
                "typ": "JWT",
                "kid": self.keys.current_kid(),
            }),
            header,
        );
        let key = header
            .get("kid")
            .and_then(Value::as_str)
            .and_then(|kid| self.keys.key(kid))
            .unwrap_or_else(|| self.keys.current_key());
        tokens::sign_exact(&key, &header, claims)
    }

    /// The claims of a token of `shape`, issued now.
    fn claims(&self, shape: &Shape) -> Value {
        let now = self.now();
        let mut c = Map::new();
        let iss = match (shape.kind, shape.version) {
            (Kind::Id, _) | (_, TokenVersion::V2) => self.v2_issuer(&shape.tid),
            (_, TokenVersion::V1) => self.v1_issuer(&shape.tid),
        };
        c.insert("aud".into(), json!(shape.audience));
        c.insert("iss".into(), json!(iss));
        c.insert("iat".into(), json!(now));
        c.insert("nbf".into(), json!(now));
        c.insert("exp".into(), json!(now + self.token_ttl));
        c.insert("aio".into(), json!("testkit"));
        c.insert("rh".into(), json!("0.testkit"));
        c.insert("tid".into(), json!(shape.tid));
        c.insert("oid".into(), json!(shape.oid));
        c.insert("uti".into(), json!(self.opaque("uti")));
        let version = if shape.kind == Kind::Id {
            TokenVersion::V2
        } else {
            shape.version
        };
        c.insert("ver".into(), json!(version.claim()));
        let sub = match shape.kind {
            Kind::AppOnly => shape.oid.clone(),
            Kind::Access | Kind::Id => pairwise_subject(&shape.oid, &shape.client_id),
        };
        c.insert("sub".into(), json!(sub));
        let user = shape.kind != Kind::AppOnly;
        if user {
            c.insert("name".into(), json!(shape.name));
        }
        match (shape.kind, version) {
            (Kind::Id, _) => {
                c.insert("preferred_username".into(), json!(shape.username));
                if let Some(nonce) = &shape.nonce {
                    c.insert("nonce".into(), json!(nonce));
                }
            }
            (_, TokenVersion::V2) => {
                c.insert("azp".into(), json!(shape.client_id));
                c.insert(
                    "azpacr".into(),
                    json!(client_auth_class(shape.confidential)),
                );
                if user {
                    c.insert("preferred_username".into(), json!(shape.username));
                }
            }
            (_, TokenVersion::V1) => {
                c.insert("appid".into(), json!(shape.client_id));
                c.insert(
                    "appidacr".into(),
                    json!(client_auth_class(shape.confidential)),
                );
                if user {
                    c.insert("upn".into(), json!(shape.username));
                    c.insert("unique_name".into(), json!(shape.username));
                    c.insert("amr".into(), json!(["pwd"]));
                    c.insert("acr".into(), json!("1"));
                }
            }
        }
        if shape.kind != Kind::Id {
            if let Some(scp) = &shape.scp {
                c.insert("scp".into(), json!(scp));
            }
            if let Some(idtyp) = &shape.idtyp {
                c.insert("idtyp".into(), json!(idtyp));
            }
        }
        if !shape.roles.is_empty() {
            c.insert("roles".into(), json!(shape.roles));
        }
        if shape.overage {
            let endpoint = match version {
                TokenVersion::V1 => format!(
                    "https://graph.windows.net/{}/users/{}/getMemberObjects",
                    shape.tid, shape.oid
                ),
                TokenVersion::V2 => format!(
                    "https://graph.microsoft.com/v1.0/users/{}/getMemberObjects",
                    shape.oid
                ),
            };
            c.insert("_claim_names".into(), json!({"groups": "src1"}));
            c.insert(
                "_claim_sources".into(),
                json!({"src1": {"endpoint": endpoint}}),
            );
        } else if !shape.groups.is_empty() {
            c.insert("groups".into(), json!(shape.groups));
        }
        Value::Object(c)
    }
}

fn client_auth_class(confidential: bool) -> &'static str {
    if confidential { "1" } else { "0" }
}

/// Entra's `sub` is pairwise: the same user has a different `sub` in each application.
fn pairwise_subject(oid: &str, client_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(format!("sub:{oid}:{client_id}")))
}

/// A GUID-shaped id derived from `seed`.
fn guid_from(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Access,
    AppOnly,
    Id,
}

#[derive(Clone, Debug)]
struct Shape {
    kind: Kind,
    version: TokenVersion,
    tid: String,
    oid: String,
    name: String,
    username: String,
    audience: String,
    client_id: String,
    confidential: bool,
    scp: Option<String>,
    roles: Vec<String>,
    groups: Vec<String>,
    overage: bool,
    nonce: Option<String>,
    idtyp: Option<String>,
}

impl Shape {
    fn user(kind: Kind, user: &EntraUser, audience: String, client_id: String) -> Self {
        Self {
            kind,
            version: TokenVersion::V2,
            tid: user.tid.clone(),
            oid: user.oid.clone(),
            name: user.name.clone(),
            username: user.username.clone(),
            audience,
            client_id,
            confidential: true,
            scp: None,
            roles: Vec::new(),
            groups: user.groups.clone(),
            overage: user.group_overage,
            nonce: None,
            idtyp: None,
        }
    }
}

/// A local Entra-ID-shaped authority on `http://127.0.0.1:<random port>`, stopped when
/// dropped.
///
/// The authority URL ([`EntraIssuer::authority`]) plays the part of
/// `https://login.microsoftonline.com`. Per tenant path segment (a tenant id, or
/// `common`, `organizations`, `consumers`) it serves:
///
/// | path | what |
/// | --- | --- |
/// | `/{tenant}/v2.0/.well-known/openid-configuration` | v2 discovery; `issuer` is `{authority}/{tid}/v2.0`, the literal template `{authority}/{tenantid}/v2.0` for `common` and `organizations`, and the MSA tenant for `consumers` |
/// | `/{tenant}/.well-known/openid-configuration` | v1 discovery; `issuer` is `{v1 base}/{tid}/` (template `{tenantid}` for `common`/`organizations`) |
/// | `/{tenant}/oauth2/v2.0/authorize` | authorization endpoint (GET, `response_type=code`), auto-consenting |
/// | `/{tenant}/oauth2/v2.0/token` | token endpoint (POST form) |
/// | `/graph/v1.0/users/{oid}/transitiveMemberOf/microsoft.graph.group` | Microsoft Graph's group-membership list, for group-overage lookups |
///
/// The JWKS of both discovery documents is the one of an inner [`TestIssuer`]
/// ([`EntraIssuer::keys`]), so rotation, retirement, outages and fetch counters work as
/// there. The v1 documents advertise the v1 protocol endpoints (`/oauth2/authorize`,
/// `/oauth2/token`) for completeness; only the v2 protocol endpoints are served.
///
/// **`/authorize`** takes `client_id`, `redirect_uri` (must be registered exactly),
/// `response_type=code`, `scope`, `state`, `nonce`, `code_challenge` with
/// `code_challenge_method=S256` (required unless [`EntraIssuerConfig::require_pkce`] is
/// off; `plain` is refused) and `login_hint` (picks a user added with
/// [`EntraIssuer::add_user`] by username; otherwise the user of
/// [`EntraIssuer::sign_in_as`] signs in). The user consents at once and is redirected to
/// `redirect_uri?code=...&state=...`; with [`Consent::Deny`] to
/// `redirect_uri?error=access_denied&...`. As in Entra, a `resource` parameter is refused
/// (`error=invalid_target`, AADSTS9010010), scopes of two resources in one request are
/// refused (AADSTS28000), and a scope the resource app does not expose is refused
/// (`invalid_scope`). An unknown client or redirect URI gets a 400 page and no redirect.
///
/// **`/token`** authenticates the client with `client_secret_basic` or `client_secret_post`
/// (a registered secret is required; a public client must send none) and serves:
///
/// * `authorization_code`: `code`, `redirect_uri` (same as in the authorize request) and
///   `code_verifier` (checked against the S256 challenge). A code works once (a second use
///   is `invalid_grant`, AADSTS54005) and expires after [`EntraIssuerConfig::code_ttl_secs`].
/// * `refresh_token`: `refresh_token`, optional `scope`. A new refresh token comes back;
///   as in Entra the old one stays valid until [`EntraIssuer::revoke_refresh_tokens`].
/// * `client_credentials`: `scope={resource}/.default`; an app-only token (`idtyp=app`,
///   `roles` = [`EntraApp::granted_app_roles`], `oid` = `sub` = the app's service principal).
/// * on-behalf-of: `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`,
///   `requested_token_use=on_behalf_of`, `assertion` (an access token of this issuer whose
///   `aud` is the calling client) and `scope` of the downstream resource.
///
/// **Graph** ([`EntraIssuer::graph_url`] is the stand-in for `https://graph.microsoft.com`):
/// `GET {graph}/v1.0/users/{oid}/transitiveMemberOf/microsoft.graph.group` with an app-only
/// bearer token of this issuer (client credentials for `{graph}/.default`) whose `roles`
/// hold `GroupMember.Read.All` or `Directory.Read.All` answers
/// `{"value": [{"id": ...}], "@odata.nextLink": ...}` from the groups of the user added
/// with that `oid` in the token's tenant, `$top` (default 100) per page. No or a bad token
/// is 401, a missing role 403 (`Authorization_RequestDenied`), an unknown user 404
/// (`Request_ResourceNotFound`).
///
/// Responses are Entra's: `token_type`, `scope`, `expires_in`, `ext_expires_in`,
/// `access_token`, `refresh_token` when `offline_access` was requested, `id_token` when
/// `openid` was. Access tokens take the version and `aud` of the resource app
/// ([`EntraApp::access_token_version`]); a scope without resource prefix is a Graph scope
/// and gets a v1 token for [`GRAPH_RESOURCE`]. Errors are
/// `{"error", "error_description": "AADSTS<n>: ...", "error_codes": [n]}` with status 400
/// (401 for `invalid_client`).
///
/// Out of the box the directory holds tenant [`EntraIssuer::TENANT`], the confidential
/// app [`EntraIssuer::CLIENT_ID`] / [`EntraIssuer::CLIENT_SECRET`] (v2 tokens, App ID URI
/// `api://{CLIENT_ID}`, scopes `access_as_user`, `mcp.tools`, `mcp.resources`,
/// `mcp.prompts`; add redirect URIs with [`EntraIssuer::add_redirect_uri`]) and the
/// signed-in user [`EntraIssuer::USER_OID`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use base64::Engine as _;
/// use mcp_auth_testkit::entra::EntraIssuer;
/// use mcp_auth_testkit::tokens;
/// use sha2::Digest as _;
///
/// let entra = EntraIssuer::start().await;
/// let redirect = "http://127.0.0.1:9/callback";
/// entra.add_redirect_uri(EntraIssuer::CLIENT_ID, redirect);
///
/// // The authorize request of a client, with PKCE S256.
/// let verifier = "a".repeat(43);
/// let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
///     .encode(sha2::Sha256::digest(verifier.as_bytes()));
/// let http = reqwest::Client::builder()
///     .redirect(reqwest::redirect::Policy::none())
///     .build()
///     .unwrap();
/// let scope = format!("api://{}/mcp.tools openid offline_access", EntraIssuer::CLIENT_ID);
/// let response = http
///     .get(entra.authorize_url("organizations"))
///     .query(&[
///         ("client_id", EntraIssuer::CLIENT_ID),
///         ("response_type", "code"),
///         ("redirect_uri", redirect),
///         ("scope", scope.as_str()),
///         ("state", "s-1"),
///         ("code_challenge", challenge.as_str()),
///         ("code_challenge_method", "S256"),
///     ])
///     .send()
///     .await
///     .unwrap();
/// assert_eq!(response.status(), 302);
/// let location = response.headers()["location"].to_str().unwrap().to_owned();
/// assert!(location.starts_with(redirect) && location.contains("state=s-1"));
/// let code = location.split("code=").nth(1).unwrap().split('&').next().unwrap();
///
/// // The code exchange.
/// let tokens: serde_json::Value = http
///     .post(entra.token_url("organizations"))
///     .basic_auth(EntraIssuer::CLIENT_ID, Some(EntraIssuer::CLIENT_SECRET))
///     .form(&[
///         ("grant_type", "authorization_code"),
///         ("code", code),
///         ("redirect_uri", redirect),
///         ("code_verifier", verifier.as_str()),
///     ])
///     .send()
///     .await
///     .unwrap()
///     .json()
///     .await
///     .unwrap();
/// let access = tokens::claims_of(tokens["access_token"].as_str().unwrap());
/// assert_eq!(access["ver"], "2.0");
/// assert_eq!(access["aud"], EntraIssuer::CLIENT_ID);
/// assert_eq!(access["scp"], "mcp.tools");
/// assert_eq!(access["iss"], entra.v2_issuer(EntraIssuer::TENANT));
/// assert!(tokens["refresh_token"].is_string() && tokens["id_token"].is_string());
///
/// // Tokens of any shape, without HTTP.
/// let v1 = entra.access_token(&entra.signed_in_user()).v1().scopes("mcp.tools").mint();
/// assert_eq!(tokens::claims_of(&v1)["iss"], entra.v1_issuer(EntraIssuer::TENANT));
/// # }
/// ```
pub struct EntraIssuer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl EntraIssuer {
    /// The tenant of the default app and user.
    pub const TENANT: &'static str = "11111111-1111-4111-8111-111111111111";
    /// A second tenant, for cross-tenant tests (nothing is registered in it).
    pub const OTHER_TENANT: &'static str = "44444444-4444-4444-8444-444444444444";
    /// The client id of the default app registration.
    pub const CLIENT_ID: &'static str = "22222222-2222-4222-8222-222222222222";
    /// The client secret of the default app registration.
    pub const CLIENT_SECRET: &'static str = "testkit~client.secret_0123456789";
    /// The object id of the default signed-in user.
    pub const USER_OID: &'static str = "33333333-3333-4333-8333-333333333333";

    /// Starts the issuer with the default configuration.
    ///
    /// # Panics
    ///
    /// If no port on 127.0.0.1 can be bound or no tokio runtime is running.
    pub async fn start() -> Self {
        Self::start_with(EntraIssuerConfig::default()).await
    }

    /// Starts the issuer as configured.
    ///
    /// # Panics
    ///
    /// If no port on 127.0.0.1 can be bound or no tokio runtime is running.
    pub async fn start_with(config: EntraIssuerConfig) -> Self {
        let keys = TestIssuer::start_with(TestIssuerConfig {
            clock: Arc::clone(&config.clock),
            ttl_secs: config.token_ttl_secs,
            ..TestIssuerConfig::default()
        })
        .await;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap_or_else(|e| panic!("cannot bind the Entra test issuer: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("Entra test issuer has no local address: {e}"));
        let default_app = EntraApp::new(Self::CLIENT_ID)
            .secret(Self::CLIENT_SECRET)
            .scopes([
                "access_as_user",
                "mcp.tools",
                "mcp.resources",
                "mcp.prompts",
            ]);
        let user = EntraUser::new(Self::USER_OID, Self::TENANT)
            .name("Ada Lovelace")
            .username("ada@contoso.example");
        let shared = Arc::new(Shared {
            keys,
            authority: format!("http://{addr}"),
            v1_base: config.v1_issuer_base.trim_end_matches('/').to_owned(),
            clock: config.clock,
            token_ttl: config.token_ttl_secs,
            code_ttl: config.code_ttl_secs,
            require_pkce: config.require_pkce,
            registry: Mutex::new(Registry {
                apps: HashMap::from([(Self::CLIENT_ID.to_owned(), default_app)]),
                users: vec![user.clone()],
                signed_in: user,
                consent: Consent::Grant,
                codes: HashMap::new(),
                refresh_tokens: HashMap::new(),
                authorize_log: Vec::new(),
                token_log: Vec::new(),
            }),
            counter: AtomicU64::new(0),
            discovery_fetches: AtomicUsize::new(0),
            graph_requests: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route(
                "/{tenant}/v2.0/.well-known/openid-configuration",
                get(discovery_v2),
            )
            .route(
                "/{tenant}/.well-known/openid-configuration",
                get(discovery_v1),
            )
            .route("/{tenant}/oauth2/v2.0/authorize", get(authorize))
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route(
                "/graph/v1.0/users/{oid}/transitiveMemberOf/microsoft.graph.group",
                get(graph_member_of),
            )
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            // Ends when aborted on drop; an accept error ends it early and tests then see
            // connection errors.
            let _ = axum::serve(listener, router).await;
        });
        Self { shared, addr, task }
    }

    /// `http://127.0.0.1:<port>`: the stand-in for `https://login.microsoftonline.com`,
    /// and the base of v2 issuers.
    pub fn authority(&self) -> String {
        self.shared.authority.clone()
    }

    /// The socket address of the authority.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base of v1 issuers (default `https://sts.windows.net`).
    pub fn v1_issuer_base(&self) -> String {
        self.shared.v1_base.clone()
    }

    /// The v1 issuer of tenant `tid`: `{v1 base}/{tid}/`.
    pub fn v1_issuer(&self, tid: &str) -> String {
        self.shared.v1_issuer(tid)
    }

    /// The v2 issuer of tenant `tid`: `{authority}/{tid}/v2.0`.
    pub fn v2_issuer(&self, tid: &str) -> String {
        self.shared.v2_issuer(tid)
    }

    /// The discovery URL of `tenant` (a tenant id, `common`, `organizations` or
    /// `consumers`) for `version`.
    pub fn discovery_url(&self, tenant: &str, version: TokenVersion) -> String {
        match version {
            TokenVersion::V1 => format!(
                "{}/{tenant}/.well-known/openid-configuration",
                self.shared.authority
            ),
            TokenVersion::V2 => format!(
                "{}/{tenant}/v2.0/.well-known/openid-configuration",
                self.shared.authority
            ),
        }
    }

    /// `{authority}/{tenant}/oauth2/v2.0/authorize`.
    pub fn authorize_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/authorize", self.shared.authority)
    }

    /// `{authority}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.shared.authority)
    }

    /// The JWKS URL both discovery documents name (the inner [`TestIssuer`]'s).
    pub fn jwks_url(&self) -> String {
        self.shared.keys.jwks_url()
    }

    /// The inner issuer that holds and serves the signing keys: rotate, retire, take the
    /// JWKS down, count JWKS fetches, or sign foreign tokens under its `kid`s.
    pub fn keys(&self) -> &TestIssuer {
        &self.shared.keys
    }

    /// Discovery requests (v1 and v2, all tenants) received so far.
    pub fn discovery_fetches(&self) -> usize {
        self.shared.discovery_fetches.load(Ordering::SeqCst)
    }

    /// The stand-in for Microsoft Graph: `{authority}/graph` (see [`EntraIssuer`]).
    pub fn graph_url(&self) -> String {
        format!("{}/graph", self.shared.authority)
    }

    /// Graph requests received so far, including refused ones.
    pub fn graph_requests(&self) -> usize {
        self.shared.graph_requests.load(Ordering::SeqCst)
    }

    /// Registers (or replaces) an app.
    pub fn register_app(&self, app: EntraApp) {
        self.shared
            .registry()
            .apps
            .insert(app.client_id.clone(), app);
    }

    /// The registered app `client_id`, if any.
    pub fn app(&self, client_id: &str) -> Option<EntraApp> {
        self.shared.registry().apps.get(client_id).cloned()
    }

    /// Adds a redirect URI to the registered app `client_id`; false if there is no such app.
    pub fn add_redirect_uri(&self, client_id: &str, uri: impl Into<String>) -> bool {
        match self.shared.registry().apps.get_mut(client_id) {
            Some(app) => {
                app.redirect_uris.push(uri.into());
                true
            }
            None => false,
        }
    }

    /// Adds (or replaces, by `oid`) a user that `login_hint` can pick by username.
    pub fn add_user(&self, user: EntraUser) {
        let mut registry = self.shared.registry();
        registry.users.retain(|u| u.oid != user.oid);
        registry.users.push(user);
    }

    /// Makes `user` the one who signs in when no `login_hint` names another (and adds it).
    pub fn sign_in_as(&self, user: EntraUser) {
        self.add_user(user.clone());
        self.shared.registry().signed_in = user;
    }

    /// The user who signs in without `login_hint`.
    pub fn signed_in_user(&self) -> EntraUser {
        self.shared.registry().signed_in.clone()
    }

    /// What the authorize endpoint answers from now on.
    pub fn set_consent(&self, consent: Consent) {
        self.shared.registry().consent = consent;
    }

    /// Revokes every refresh token issued to user `oid` (as a password reset or an admin's
    /// "revoke sessions" does); refreshing with them then fails with `invalid_grant`
    /// (AADSTS50173). Returns how many were revoked.
    pub fn revoke_refresh_tokens(&self, oid: &str) -> usize {
        let mut registry = self.shared.registry();
        let mut count = 0;
        for grant in registry
            .refresh_tokens
            .values_mut()
            .filter(|g| g.user.oid == oid && !g.revoked)
        {
            grant.revoked = true;
            count += 1;
        }
        count
    }

    /// The authorize requests received so far, oldest first.
    pub fn authorize_requests(&self) -> Vec<RecordedRequest> {
        self.shared.registry().authorize_log.clone()
    }

    /// The token requests received so far, oldest first (`client_secret` redacted).
    pub fn token_requests(&self) -> Vec<RecordedRequest> {
        self.shared.registry().token_log.clone()
    }

    /// A delegated access token for `user`: v2, `aud` = [`EntraIssuer::CLIENT_ID`] (v1:
    /// `api://{CLIENT_ID}`), `azp`/`appid` = [`EntraIssuer::CLIENT_ID`], `scp` =
    /// `access_as_user`, `roles` and `groups` (or the overage claims) from the user.
    pub fn access_token(&self, user: &EntraUser) -> EntraTokenBuilder<'_> {
        let mut shape = Shape::user(
            Kind::Access,
            user,
            String::new(),
            Self::CLIENT_ID.to_owned(),
        );
        shape.scp = Some("access_as_user".into());
        shape.roles.clone_from(&user.roles);
        EntraTokenBuilder::new(self, shape)
    }

    /// An app-only token of the app `client_id` in tenant `tid` (client credentials): v2,
    /// `idtyp = "app"`, no `scp`, no `roles` until [`EntraTokenBuilder::roles`], `oid` =
    /// `sub` = the app's service-principal id in `tid`, `aud` as for
    /// [`EntraIssuer::access_token`].
    pub fn app_token(&self, tid: &str, client_id: &str) -> EntraTokenBuilder<'_> {
        let oid = service_principal_oid(client_id, tid);
        let shape = Shape {
            kind: Kind::AppOnly,
            version: TokenVersion::V2,
            tid: tid.to_owned(),
            oid,
            name: String::new(),
            username: String::new(),
            audience: String::new(),
            client_id: client_id.to_owned(),
            confidential: true,
            scp: None,
            roles: Vec::new(),
            groups: Vec::new(),
            overage: false,
            nonce: None,
            idtyp: Some("app".into()),
        };
        EntraTokenBuilder::new(self, shape)
    }

    /// A v2 ID token for `user` issued to `client_id` (`aud` = `client_id`).
    pub fn id_token(&self, user: &EntraUser, client_id: &str) -> EntraTokenBuilder<'_> {
        let mut shape = Shape::user(Kind::Id, user, client_id.to_owned(), client_id.to_owned());
        shape.groups = Vec::new();
        shape.overage = false;
        EntraTokenBuilder::new(self, shape)
    }
}

/// The PKCE S256 `code_challenge` of `verifier`: `BASE64URL(SHA-256(verifier))`
/// (RFC 7636 section 4.2).
///
/// ```
/// use mcp_auth_testkit::entra::pkce_challenge;
///
/// // The example of RFC 7636, appendix B.
/// assert_eq!(
///     pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
///     "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
/// );
/// ```
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The object id of the service principal of app `client_id` in tenant `tid`: the `oid`
/// (and `sub`) of its app-only tokens there.
pub fn service_principal_oid(client_id: &str, tid: &str) -> String {
    guid_from(&format!("sp:{client_id}:{tid}"))
}

impl fmt::Debug for EntraIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraIssuer")
            .field("authority", &self.shared.authority)
            .field("v1_issuer_base", &self.shared.v1_base)
            .field("keys", &self.shared.keys)
            .finish_non_exhaustive()
    }
}

impl Drop for EntraIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Builds one Entra-shaped token; start from [`EntraIssuer::access_token`],
/// [`EntraIssuer::app_token`] or [`EntraIssuer::id_token`].
///
/// The claims are computed when [`EntraTokenBuilder::to_claims`] or
/// [`EntraTokenBuilder::mint`] is called (`iat` = `nbf` = now from the issuer's clock,
/// `exp` = now + the token lifetime); [`EntraTokenBuilder::claims`] overrides are merged
/// last (`null` removes a claim), so any claim can be made wrong on purpose.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use mcp_auth_testkit::entra::{EntraIssuer, EntraUser};
/// use mcp_auth_testkit::tokens;
/// use serde_json::json;
///
/// let entra = EntraIssuer::start().await;
/// let user = EntraUser::new("u-1", EntraIssuer::OTHER_TENANT).groups(["g-1"]);
/// let token = entra
///     .access_token(&user)
///     .scopes("mcp.tools mcp.prompts")
///     .claims(json!({"exp": null}))
///     .mint();
/// let claims = tokens::claims_of(&token);
/// assert_eq!(claims["tid"], EntraIssuer::OTHER_TENANT);
/// assert_eq!(claims["groups"], json!(["g-1"]));
/// assert!(claims.get("exp").is_none());
/// # }
/// ```
#[derive(Debug)]
pub struct EntraTokenBuilder<'a> {
    issuer: &'a EntraIssuer,
    shape: Shape,
    audience: Option<String>,
    iss: Option<String>,
    overrides: Value,
    header: Value,
}

impl<'a> EntraTokenBuilder<'a> {
    fn new(issuer: &'a EntraIssuer, shape: Shape) -> Self {
        Self {
            issuer,
            shape,
            audience: None,
            iss: None,
            overrides: json!({}),
            header: json!({}),
        }
    }

    /// The token version (ignored for ID tokens, which are always v2).
    pub fn version(mut self, version: TokenVersion) -> Self {
        self.shape.version = version;
        self
    }

    /// Shorthand for `.version(TokenVersion::V1)`.
    pub fn v1(self) -> Self {
        self.version(TokenVersion::V1)
    }

    /// Sets `aud` (default: the resource's client id for v2, `api://{client id}` for v1).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Sets the client the token was issued to (`azp` in v2, `appid` in v1).
    pub fn client(mut self, client_id: impl Into<String>) -> Self {
        self.shape.client_id = client_id.into();
        self
    }

    /// Sets `scp` (space-delimited).
    pub fn scopes(mut self, scp: impl Into<String>) -> Self {
        self.shape.scp = Some(scp.into());
        self
    }

    /// Removes `scp`.
    pub fn no_scopes(mut self) -> Self {
        self.shape.scp = None;
        self
    }

    /// Sets `roles` (empty: no `roles` claim).
    pub fn roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.shape.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Sets `groups` (empty: no `groups` claim) and clears the overage.
    pub fn groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.shape.groups = groups.into_iter().map(Into::into).collect();
        self.shape.overage = false;
        self
    }

    /// Replaces `groups` with the overage claims (`_claim_names`, `_claim_sources`).
    pub fn group_overage(mut self) -> Self {
        self.shape.overage = true;
        self
    }

    /// Sets `tid`; `iss` follows it unless set with [`EntraTokenBuilder::issuer`].
    pub fn tenant(mut self, tid: impl Into<String>) -> Self {
        self.shape.tid = tid.into();
        self
    }

    /// Sets `iss` independently of `tid` (for issuer/tenant mismatch tests).
    pub fn issuer(mut self, iss: impl Into<String>) -> Self {
        self.iss = Some(iss.into());
        self
    }

    /// Sets `idtyp` (`None` removes it).
    pub fn idtyp(mut self, idtyp: Option<&str>) -> Self {
        self.shape.idtyp = idtyp.map(str::to_owned);
        self
    }

    /// Sets `nonce` (ID tokens).
    pub fn nonce(mut self, nonce: impl Into<String>) -> Self {
        self.shape.nonce = Some(nonce.into());
        self
    }

    /// Merges `claims` over the computed claims (`null` removes one). Cumulative.
    pub fn claims(mut self, claims: Value) -> Self {
        accumulate(&mut self.overrides, claims);
        self
    }

    /// Merges `header` over `{"alg", "typ": "JWT", "kid": <current>}` (see
    /// [`TestIssuer::mint_with_header`] for how `kid` picks the signing key).
    pub fn header(mut self, header: Value) -> Self {
        accumulate(&mut self.header, header);
        self
    }

    /// The complete claims, as [`EntraTokenBuilder::mint`] would sign them (a fresh `uti`
    /// each call). Use with [`tokens::sign_with`] for foreign-key tokens.
    pub fn to_claims(&self) -> Value {
        let mut shape = self.shape.clone();
        shape.audience = match (&self.audience, shape.kind) {
            (Some(aud), _) => aud.clone(),
            (None, Kind::Id) => shape.audience.clone(),
            (None, _) => match shape.version {
                TokenVersion::V1 => format!("api://{}", EntraIssuer::CLIENT_ID),
                TokenVersion::V2 => EntraIssuer::CLIENT_ID.to_owned(),
            },
        };
        let mut claims = self.issuer.shared.claims(&shape);
        if let Some(iss) = &self.iss {
            claims["iss"] = json!(iss);
        }
        tokens::merge(claims, self.overrides.clone())
    }

    /// Signs the token with the issuer's current key.
    pub fn mint(&self) -> String {
        self.issuer
            .shared
            .sign(self.header.clone(), &self.to_claims())
    }
}

/// Adds the fields of the object `more` to the object `overrides`, keeping `null`s (they
/// remove the field when the overrides are finally merged).
fn accumulate(overrides: &mut Value, more: Value) {
    if let (Value::Object(into), Value::Object(from)) = (overrides, more) {
        into.extend(from);
    }
}

// ---------------------------------------------------------------------------------------
// HTTP handlers.

type Params = HashMap<String, String>;

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body.to_string(),
    )
        .into_response()
}

fn record(params: &Params) -> RecordedRequest {
    params
        .iter()
        .map(|(k, v)| {
            let v = if k == "client_secret" {
                "<redacted>".to_owned()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

fn is_multi_tenant(tenant: &str) -> bool {
    matches!(tenant, "common" | "organizations")
}

async fn discovery_v2(State(shared): State<Arc<Shared>>, Path(tenant): Path<String>) -> Response {
    shared.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    let issuer = match tenant.as_str() {
        t if is_multi_tenant(t) => shared.v2_issuer("{tenantid}"),
        "consumers" => shared.v2_issuer(MSA_TENANT_ID),
        t => shared.v2_issuer(t),
    };
    let base = format!("{}/{tenant}", shared.authority);
    json_response(
        StatusCode::OK,
        &json!({
            "issuer": issuer,
            "jwks_uri": shared.keys.jwks_url(),
            "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
            "token_endpoint": format!("{base}/oauth2/v2.0/token"),
            "end_session_endpoint": format!("{base}/oauth2/v2.0/logout"),
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported":
                ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce",
                "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
            "request_uri_parameter_supported": false,
            "tenant_region_scope": null,
            "cloud_instance_name": "testkit.invalid",
        }),
    )
}

async fn discovery_v1(State(shared): State<Arc<Shared>>, Path(tenant): Path<String>) -> Response {
    shared.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    let issuer = match tenant.as_str() {
        t if is_multi_tenant(t) => shared.v1_issuer("{tenantid}"),
        "consumers" => shared.v1_issuer(MSA_TENANT_ID),
        t => shared.v1_issuer(t),
    };
    let base = format!("{}/{tenant}", shared.authority);
    json_response(
        StatusCode::OK,
        &json!({
            "issuer": issuer,
            "jwks_uri": shared.keys.jwks_url(),
            "authorization_endpoint": format!("{base}/oauth2/authorize"),
            "token_endpoint": format!("{base}/oauth2/token"),
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported":
                ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "scopes_supported": ["openid"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "amr",
                "nonce", "email", "given_name", "family_name", "nickname"],
            "tenant_region_scope": null,
            "cloud_instance_name": "testkit.invalid",
        }),
    )
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space); `None` if invalid.
fn form_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn with_query(base: &str, params: &[(&str, &str)]) -> String {
    let mut url = base.to_owned();
    let mut sep = if base.contains('?') { '&' } else { '?' };
    for (name, value) in params {
        url.push(sep);
        url.push_str(name);
        url.push('=');
        url.push_str(&percent_encode(value));
        sep = '&';
    }
    url
}

fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (StatusCode::FOUND, [(header::LOCATION, value)]).into_response(),
        Err(_) => error_page(
            "invalid_request",
            50011,
            "redirect URI is not a valid header",
        ),
    }
}

fn error_page(error: &str, code: u32, description: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}"),
            "error_codes": [code],
        }),
    )
}

fn redirect_error(
    redirect_uri: &str,
    state: Option<&str>,
    error: &str,
    code: u32,
    description: &str,
) -> Response {
    let description = format!("AADSTS{code}: {description}");
    let mut params = vec![
        ("error", error),
        ("error_description", description.as_str()),
    ];
    if let Some(state) = state {
        params.push(("state", state));
    }
    redirect(&with_query(redirect_uri, &params))
}

/// The scopes of one request, split into OIDC scopes and the scopes of one resource.
struct Requested {
    /// The resource app, when the resource is registered.
    app: Option<EntraApp>,
    /// The resource (App ID URI, client id or Graph).
    resource: String,
    /// Scope names at the resource (`.default` expanded for registered apps).
    names: Vec<String>,
    openid: bool,
    offline: bool,
    raw: Vec<String>,
}

/// A token-endpoint or authorize error: OAuth error code, AADSTS number, description.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    description: String,
}

impl OAuthError {
    fn new(error: &'static str, code: u32, description: impl Into<String>) -> Self {
        Self {
            status: if error == "invalid_client" {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::BAD_REQUEST
            },
            error,
            code,
            description: description.into(),
        }
    }

    fn response(&self) -> Response {
        json_response(
            self.status,
            &json!({
                "error": self.error,
                "error_description": format!("AADSTS{}: {}", self.code, self.description),
                "error_codes": [self.code],
            }),
        )
    }
}

fn parse_scopes(scope: &str, apps: &HashMap<String, EntraApp>) -> Result<Requested, OAuthError> {
    let raw: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
    let mut resource: Option<String> = None;
    let mut names = Vec::new();
    let (mut openid, mut offline) = (false, false);
    for s in &raw {
        match s.as_str() {
            "openid" | "profile" | "email" => openid |= s == "openid",
            "offline_access" => offline = true,
            _ => {
                let (res, name) = match s.rsplit_once('/') {
                    Some((r, n)) if !r.is_empty() && !n.is_empty() => (r, n),
                    _ => (GRAPH_RESOURCE, s.as_str()),
                };
                if resource.as_deref().is_some_and(|r| r != res) {
                    return Err(OAuthError::new(
                        "invalid_scope",
                        28000,
                        "the scopes name more than one resource",
                    ));
                }
                resource = Some(res.to_owned());
                names.push(name.to_owned());
            }
        }
    }
    let Some(resource) = resource else {
        // Only OIDC scopes: Entra issues a Microsoft Graph token.
        let names = raw
            .iter()
            .filter(|s| s.as_str() != "offline_access")
            .cloned()
            .collect();
        return Ok(Requested {
            app: None,
            resource: GRAPH_RESOURCE.into(),
            names,
            openid,
            offline,
            raw,
        });
    };
    let app = apps
        .values()
        .find(|a| a.app_id_uri == resource || a.client_id == resource)
        .cloned();
    if let Some(app) = &app {
        let mut expanded = Vec::new();
        for name in names {
            if name == ".default" {
                expanded.extend(app.scopes.iter().cloned());
            } else if app.scopes.contains(&name) {
                expanded.push(name);
            } else {
                return Err(OAuthError::new(
                    "invalid_scope",
                    70011,
                    format!("the scope {resource}/{name} is not exposed by the resource"),
                ));
            }
        }
        names = expanded;
    }
    Ok(Requested {
        app,
        resource,
        names,
        openid,
        offline,
        raw,
    })
}

/// Whether `user` may sign in at the `tenant` path segment.
fn tenant_admits(tenant: &str, user: &EntraUser) -> bool {
    match tenant {
        "common" => true,
        "organizations" => user.tid != MSA_TENANT_ID,
        "consumers" => user.tid == MSA_TENANT_ID,
        t => user.tid == t,
    }
}

fn param<'p>(params: &'p Params, name: &str) -> Option<&'p str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

async fn authorize(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Query(params): Query<Params>,
) -> Response {
    let mut registry = shared.registry();
    registry.authorize_log.push(record(&params));
    let Some(client_id) = param(&params, "client_id") else {
        return error_page(
            "invalid_request",
            900144,
            "the request must contain client_id",
        );
    };
    let Some(app) = registry.apps.get(client_id).cloned() else {
        return error_page(
            "unauthorized_client",
            700016,
            "application not found in the directory",
        );
    };
    let Some(redirect_uri) = param(&params, "redirect_uri") else {
        return error_page(
            "invalid_request",
            900144,
            "the request must contain redirect_uri",
        );
    };
    if !app.redirect_uris.iter().any(|r| r == redirect_uri) {
        return error_page(
            "invalid_request",
            50011,
            "the redirect URI does not match the redirect URIs configured for the application",
        );
    }
    let state = param(&params, "state");
    let fail = |error, code, description: &str| {
        redirect_error(redirect_uri, state, error, code, description)
    };
    if param(&params, "response_type") != Some("code") {
        return fail(
            "unsupported_response_type",
            700054,
            "only response_type=code is served here",
        );
    }
    if params.contains_key("resource") {
        return fail(
            "invalid_target",
            9010010,
            "the resource parameter does not match the requested scopes",
        );
    }
    let challenge = match param(&params, "code_challenge") {
        Some(challenge) => {
            if param(&params, "code_challenge_method") != Some("S256") {
                return fail(
                    "invalid_request",
                    501491,
                    "code_challenge_method must be S256",
                );
            }
            if challenge.len() != 43 {
                return fail("invalid_request", 501491, "malformed code_challenge");
            }
            Some(challenge.to_owned())
        }
        None if shared.require_pkce => {
            return fail(
                "invalid_request",
                9002325,
                "Proof Key for Code Exchange is required",
            );
        }
        None => None,
    };
    let Some(scope) = param(&params, "scope") else {
        return fail("invalid_request", 900144, "the request must contain scope");
    };
    let requested = match parse_scopes(scope, &registry.apps) {
        Ok(requested) => requested,
        Err(e) => return fail(e.error, e.code, &e.description),
    };
    let user = match param(&params, "login_hint") {
        Some(hint) => match registry.users.iter().find(|u| u.username == hint) {
            Some(user) => user.clone(),
            None => return fail("invalid_request", 50034, "the user account does not exist"),
        },
        None => registry.signed_in.clone(),
    };
    if !tenant_admits(&tenant, &user) {
        return fail(
            "invalid_request",
            50020,
            "the user account does not exist in the tenant of this endpoint",
        );
    }
    if registry.consent == Consent::Deny {
        return fail("access_denied", 65004, "the user declined to consent");
    }
    let code = shared.opaque("code");
    registry.codes.insert(
        code.clone(),
        CodeGrant {
            client_id: app.client_id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            user,
            scopes: requested.raw,
            challenge,
            nonce: param(&params, "nonce").map(str::to_owned),
            expires_at: shared.now() + shared.code_ttl,
            redeemed: false,
        },
    );
    let mut query = vec![("code", code.as_str())];
    if let Some(state) = state {
        query.push(("state", state));
    }
    redirect(&with_query(redirect_uri, &query))
}

/// The client id and secret from `Authorization: Basic` (form-urlencoded parts, RFC 6749
/// section 2.3.1) or the form.
fn client_credentials(
    headers: &HeaderMap,
    params: &Params,
) -> Result<(String, Option<String>), OAuthError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let basic = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b64| STANDARD.decode(b64.trim()).ok())
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|text| {
                let (id, secret) = text.split_once(':')?;
                Some((form_decode(id)?, form_decode(secret)?))
            });
        return match basic {
            Some((id, secret)) => Ok((id, Some(secret))),
            None => Err(OAuthError::new(
                "invalid_client",
                7000216,
                "malformed Basic authorization",
            )),
        };
    }
    match param(params, "client_id") {
        Some(id) => Ok((id.to_owned(), params.get("client_secret").cloned())),
        None => Err(OAuthError::new(
            "invalid_request",
            900144,
            "the request must contain client_id",
        )),
    }
}

fn authenticate_client(
    registry: &Registry,
    headers: &HeaderMap,
    params: &Params,
) -> Result<EntraApp, OAuthError> {
    let (client_id, secret) = client_credentials(headers, params)?;
    let Some(app) = registry.apps.get(&client_id) else {
        return Err(OAuthError::new(
            "unauthorized_client",
            700016,
            "application not found in the directory",
        ));
    };
    match (&app.client_secret, secret) {
        (Some(expected), Some(given)) if *expected == given => Ok(app.clone()),
        (Some(_), Some(_)) => Err(OAuthError::new(
            "invalid_client",
            7000215,
            "invalid client secret provided",
        )),
        (Some(_), None) => Err(OAuthError::new(
            "invalid_client",
            7000218,
            "the request body must contain client_assertion or client_secret",
        )),
        (None, Some(_)) => Err(OAuthError::new(
            "invalid_client",
            700025,
            "client is public so neither client_assertion nor client_secret should be presented",
        )),
        (None, None) => Ok(app.clone()),
    }
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Form(params): Form<Params>,
) -> Response {
    let mut registry = shared.registry();
    registry.token_log.push(record(&params));
    let result = authenticate_client(&registry, &headers, &params).and_then(|client| {
        match param(&params, "grant_type") {
            Some("authorization_code") => code_grant(&shared, &mut registry, &client, &params),
            Some("refresh_token") => refresh_grant(&shared, &mut registry, &client, &params),
            Some("client_credentials") => {
                client_credentials_grant(&shared, &registry, &client, &tenant, &params)
            }
            Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
                on_behalf_of_grant(&shared, &mut registry, &client, &params)
            }
            Some(_) => Err(OAuthError::new(
                "unsupported_grant_type",
                70003,
                "the app requested an unsupported grant type",
            )),
            None => Err(OAuthError::new(
                "invalid_request",
                900144,
                "the request must contain grant_type",
            )),
        }
    });
    match result {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(e) => e.response(),
    }
}

fn code_grant(
    shared: &Shared,
    registry: &mut Registry,
    client: &EntraApp,
    params: &Params,
) -> Result<Value, OAuthError> {
    let invalid = |code, description: &str| OAuthError::new("invalid_grant", code, description);
    let code = param(params, "code")
        .ok_or_else(|| OAuthError::new("invalid_request", 900144, "missing code"))?;
    let now = shared.now();
    let grant = registry
        .codes
        .get_mut(code)
        .ok_or_else(|| invalid(70000, "the provided authorization code is invalid"))?;
    if grant.redeemed {
        return Err(invalid(
            54005,
            "OAuth2 authorization code was already redeemed",
        ));
    }
    grant.redeemed = true;
    if grant.client_id != client.client_id {
        return Err(invalid(70000, "the code was issued to another client"));
    }
    if now >= grant.expires_at {
        return Err(invalid(
            70008,
            "the provided authorization code has expired",
        ));
    }
    if param(params, "redirect_uri") != Some(grant.redirect_uri.as_str()) {
        return Err(invalid(
            50011,
            "the redirect URI does not match the one of the authorization request",
        ));
    }
    if let Some(challenge) = &grant.challenge {
        let verifier = param(params, "code_verifier").unwrap_or_default();
        let well_formed = (43..=128).contains(&verifier.len())
            && verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !well_formed || pkce_challenge(verifier) != *challenge {
            return Err(invalid(
                501481,
                "the code_verifier does not match the code_challenge of the authorization request",
            ));
        }
    }
    let (user, scopes, nonce) = (
        grant.user.clone(),
        grant.scopes.join(" "),
        grant.nonce.clone(),
    );
    let requested = parse_scopes(&scopes, &registry.apps)?;
    Ok(issue(
        shared,
        registry,
        client,
        &user,
        &requested,
        nonce.as_deref(),
    ))
}

fn refresh_grant(
    shared: &Shared,
    registry: &mut Registry,
    client: &EntraApp,
    params: &Params,
) -> Result<Value, OAuthError> {
    let invalid = |code, description: &str| OAuthError::new("invalid_grant", code, description);
    let token = param(params, "refresh_token")
        .ok_or_else(|| OAuthError::new("invalid_request", 900144, "missing refresh_token"))?;
    let grant = registry
        .refresh_tokens
        .get(token)
        .ok_or_else(|| invalid(9002313, "invalid refresh token"))?;
    if grant.revoked {
        return Err(invalid(
            50173,
            "the provided grant has expired due to it being revoked",
        ));
    }
    if grant.client_id != client.client_id {
        return Err(invalid(
            70000,
            "the refresh token was issued to another client",
        ));
    }
    let user = grant.user.clone();
    let scopes = match param(params, "scope") {
        Some(scope) => scope.to_owned(),
        None => grant.scopes.join(" "),
    };
    let requested = parse_scopes(&scopes, &registry.apps)?;
    Ok(issue(shared, registry, client, &user, &requested, None))
}

fn client_credentials_grant(
    shared: &Shared,
    registry: &Registry,
    client: &EntraApp,
    tenant: &str,
    params: &Params,
) -> Result<Value, OAuthError> {
    let scope = param(params, "scope").unwrap_or_default();
    let requested = parse_scopes(scope, &registry.apps)?;
    if requested.raw.len() != 1 || !scope.ends_with("/.default") {
        return Err(OAuthError::new(
            "invalid_scope",
            1002012,
            "client credentials need exactly one scope of the form {resource}/.default",
        ));
    }
    let tid = if is_multi_tenant(tenant) || tenant == "consumers" {
        client.home_tenant.clone()
    } else {
        tenant.to_owned()
    };
    let (version, audience) = resource_shape(&requested);
    let shape = Shape {
        kind: Kind::AppOnly,
        version,
        oid: service_principal_oid(&client.client_id, &tid),
        tid,
        name: String::new(),
        username: String::new(),
        audience,
        client_id: client.client_id.clone(),
        confidential: client.client_secret.is_some(),
        scp: None,
        roles: client.granted_app_roles.clone(),
        groups: Vec::new(),
        overage: false,
        nonce: None,
        idtyp: Some("app".into()),
    };
    let access = shared.sign(json!({}), &shared.claims(&shape));
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": shared.token_ttl,
        "ext_expires_in": shared.token_ttl,
        "access_token": access,
    }))
}

fn on_behalf_of_grant(
    shared: &Shared,
    registry: &mut Registry,
    client: &EntraApp,
    params: &Params,
) -> Result<Value, OAuthError> {
    if param(params, "requested_token_use") != Some("on_behalf_of") {
        return Err(OAuthError::new(
            "invalid_request",
            900144,
            "requested_token_use must be on_behalf_of",
        ));
    }
    let assertion = param(params, "assertion")
        .ok_or_else(|| OAuthError::new("invalid_request", 900144, "missing assertion"))?;
    let claims = verify_assertion(shared, assertion, client)?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
    let (Some(oid), Some(tid)) = (text("oid"), text("tid")) else {
        return Err(OAuthError::new(
            "invalid_grant",
            50013,
            "the assertion is not a delegated user token",
        ));
    };
    let user = match registry.users.iter().find(|u| u.oid == oid && u.tid == tid) {
        Some(user) => user.clone(),
        None => {
            let mut user = EntraUser::new(oid, tid);
            if let Some(name) = text("name") {
                user.name = name;
            }
            if let Some(username) = text("preferred_username").or_else(|| text("upn")) {
                user.username = username;
            }
            user
        }
    };
    let scope = param(params, "scope").unwrap_or_default();
    let mut requested = parse_scopes(scope, &registry.apps)?;
    // On-behalf-of returns no ID token.
    requested.openid = false;
    Ok(issue(shared, registry, client, &user, &requested, None))
}

/// Verifies an on-behalf-of assertion: signed by this issuer, issued in its own tenant
/// (v1 or v2 issuer), for the calling client, unexpired.
fn verify_assertion(
    shared: &Shared,
    assertion: &str,
    client: &EntraApp,
) -> Result<Map<String, Value>, OAuthError> {
    verify_token(
        shared,
        assertion,
        &[client.client_id.clone(), client.app_id_uri.clone()],
    )
}

/// Verifies a token of this issuer: signature, the v1 or v2 issuer of its own `tid`, one of
/// `audiences`, times.
fn verify_token(
    shared: &Shared,
    token: &str,
    audiences: &[String],
) -> Result<Map<String, Value>, OAuthError> {
    let invalid = |description: String| OAuthError::new("invalid_grant", 50013, description);
    let tid = token
        .split('.')
        .nth(1)
        .and_then(|payload| URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|raw| serde_json::from_slice::<Value>(&raw).ok())
        .and_then(|claims| claims.get("tid").and_then(Value::as_str).map(str::to_owned))
        .ok_or_else(|| invalid("the token is not a JWT with a tid".into()))?;
    let keys = KeySet::from_jwks_json(shared.keys.jwks().to_string().as_bytes(), 64)
        .map_err(|e| invalid(format!("no keys: {e}")))?;
    let validator = JwtValidator::builder()
        .issuers([shared.v1_issuer(&tid), shared.v2_issuer(&tid)])
        .audiences(audiences.iter().cloned())
        .clock(Arc::clone(&shared.clock))
        .build()
        .map_err(|e| invalid(format!("validator: {e}")))?;
    validator
        .validate(token, &keys)
        .map(mcp_auth_core::jwt::VerifiedToken::into_claims)
        .map_err(|e| invalid(format!("the token failed validation: {e}")))
}

/// The version and `aud` of access tokens for the requested resource.
fn resource_shape(requested: &Requested) -> (TokenVersion, String) {
    match &requested.app {
        Some(app) => (app.access_token_version, app.audience().to_owned()),
        None => (TokenVersion::V1, requested.resource.clone()),
    }
}

/// Issues the access token (and refresh and ID tokens as requested) of a user grant.
fn issue(
    shared: &Shared,
    registry: &mut Registry,
    client: &EntraApp,
    user: &EntraUser,
    requested: &Requested,
    nonce: Option<&str>,
) -> Value {
    let (version, audience) = resource_shape(requested);
    let mut shape = Shape::user(Kind::Access, user, audience, client.client_id.clone());
    shape.version = version;
    shape.confidential = client.client_secret.is_some();
    shape.scp = Some(requested.names.join(" "));
    if requested.app.is_some() {
        shape.roles.clone_from(&user.roles);
    }
    let access = shared.sign(json!({}), &shared.claims(&shape));
    let mut body = json!({
        "token_type": "Bearer",
        "scope": requested.raw.join(" "),
        "expires_in": shared.token_ttl,
        "ext_expires_in": shared.token_ttl,
        "access_token": access,
    });
    if requested.offline {
        let refresh = shared.opaque("refresh");
        registry.refresh_tokens.insert(
            refresh.clone(),
            RefreshGrant {
                client_id: client.client_id.clone(),
                user: user.clone(),
                scopes: requested.raw.clone(),
                revoked: false,
            },
        );
        body["refresh_token"] = json!(refresh);
    }
    if requested.openid {
        let mut id = Shape::user(
            Kind::Id,
            user,
            client.client_id.clone(),
            client.client_id.clone(),
        );
        id.groups = Vec::new();
        id.overage = false;
        id.nonce = nonce.map(str::to_owned);
        body["id_token"] = json!(shared.sign(json!({}), &shared.claims(&id)));
    }
    body
}

fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

/// `GET {graph}/v1.0/users/{oid}/transitiveMemberOf/microsoft.graph.group`, paged.
async fn graph_member_of(
    State(shared): State<Arc<Shared>>,
    Path(oid): Path<String>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    shared.graph_requests.fetch_add(1, Ordering::SeqCst);
    let graph = format!("{}/graph", shared.authority);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "no token",
        );
    };
    let claims = match verify_token(&shared, token, &[graph.clone(), GRAPH_RESOURCE.into()]) {
        Ok(claims) => claims,
        Err(e) => {
            return graph_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                &e.description,
            );
        }
    };
    let permitted = claims
        .get("roles")
        .and_then(Value::as_array)
        .is_some_and(|roles| {
            roles.iter().any(|r| {
                matches!(
                    r.as_str(),
                    Some("GroupMember.Read.All" | "Directory.Read.All")
                )
            })
        });
    if !permitted {
        return graph_error(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        );
    }
    let tid = claims
        .get("tid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let groups = shared
        .registry()
        .users
        .iter()
        .find(|u| u.oid == oid && u.tid == tid)
        .map(|u| u.groups.clone());
    let Some(groups) = groups else {
        return graph_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            "the user does not exist in the tenant",
        );
    };
    let top = param(&params, "$top")
        .and_then(|t| t.parse::<usize>().ok())
        .filter(|t| (1..=999).contains(t))
        .unwrap_or(100);
    let skip = param(&params, "$skiptoken")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(0);
    let page: Vec<Value> = groups
        .iter()
        .skip(skip)
        .take(top)
        .map(|id| json!({"@odata.type": "#microsoft.graph.group", "id": id}))
        .collect();
    let mut body = json!({"value": page});
    if skip + top < groups.len() {
        let next = format!(
            "{graph}/v1.0/users/{oid}/transitiveMemberOf/microsoft.graph.group?$select=id&$top={top}&$skiptoken={}",
            skip + top
        );
        body["@odata.nextLink"] = json!(next);
    }
    json_response(StatusCode::OK, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_round_trip() {
        for text in [
            "plain",
            "a b+c",
            "x=y&z",
            "é~._-",
            "api://c/mcp.tools openid",
        ] {
            assert_eq!(form_decode(&percent_encode(text)).as_deref(), Some(text));
        }
        assert_eq!(form_decode("a+b%7E").as_deref(), Some("a b~"));
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%4"), None);
        assert_eq!(
            with_query("http://h/cb?x=1", &[("code", "a b"), ("state", "s")]),
            "http://h/cb?x=1&code=a%20b&state=s"
        );
    }

    #[test]
    fn guids_and_subjects_are_stable() {
        let a = service_principal_oid("c", "t");
        assert_eq!(a, service_principal_oid("c", "t"));
        assert_ne!(a, service_principal_oid("c", "u"));
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
        assert_ne!(pairwise_subject("o", "c1"), pairwise_subject("o", "c2"));
    }

    #[test]
    fn scopes_split_by_resource() {
        let apps = HashMap::from([("c".to_owned(), EntraApp::new("c").scopes(["a", "b"]))]);
        let r = parse_scopes("api://c/a openid offline_access", &apps)
            .ok()
            .unwrap();
        assert!(r.app.is_some() && r.openid && r.offline);
        assert_eq!(r.names, ["a"]);
        let r = parse_scopes("api://c/.default", &apps).ok().unwrap();
        assert_eq!(r.names, ["a", "b"]);
        let r = parse_scopes("User.Read", &apps).ok().unwrap();
        assert_eq!(r.resource, GRAPH_RESOURCE);
        assert!(r.app.is_none());
        let e = parse_scopes("api://c/a api://d/x", &apps).err().unwrap();
        assert_eq!(e.code, 28000);
        let e = parse_scopes("api://c/nope", &apps).err().unwrap();
        assert_eq!(e.error, "invalid_scope");
    }

    #[test]
    fn tenant_paths_admit_their_users() {
        let work = EntraUser::new("o", "t-1");
        let msa = EntraUser::new("o", MSA_TENANT_ID);
        assert!(tenant_admits("common", &work) && tenant_admits("common", &msa));
        assert!(tenant_admits("organizations", &work) && !tenant_admits("organizations", &msa));
        assert!(!tenant_admits("consumers", &work) && tenant_admits("consumers", &msa));
        assert!(tenant_admits("t-1", &work) && !tenant_admits("t-2", &work));
    }
}
