//! [`GraphGroupResolver`]: group overage resolved through Microsoft Graph (feature `graph`).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use mcp_auth_core::{BoxError, Clock, Secret, SystemClock};
use reqwest::header::{ACCEPT, AUTHORIZATION};
use serde::Deserialize;

use crate::cloud::Cloud;
use crate::config::{EntraConfigError, is_guid};
use crate::groups::GroupResolver;

/// Most pages of 999 groups followed for one user (99 900 groups).
const MAX_PAGES: usize = 100;
/// Largest Graph or token response read, in bytes.
const MAX_RESPONSE_BYTES: usize = 2 * 1024 * 1024;
/// An app token is replaced this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(120);

/// Why a Graph lookup failed: never holds a token or the secret.
#[derive(Debug, thiserror::Error)]
#[error("Microsoft Graph: {0}")]
struct GraphError(String);

/// Resolves the groups of overage tokens with Microsoft Graph.
///
/// For each tenant it gets an app-only token with the client credentials of the app
/// registration (`POST {authority}/{tenant}/oauth2/v2.0/token`, scope `{graph}/.default`),
/// cached until shortly before it expires, then lists
/// `GET {graph}/v1.0/users/{oid}/transitiveMemberOf/microsoft.graph.group?$select=id`,
/// following `@odata.nextLink` within the Graph host (at most 100 pages of 999). The app
/// needs the Microsoft Graph application permission `GroupMember.Read.All` (or
/// `Directory.Read.All`) with admin consent in every tenant whose users it resolves.
///
/// Responses are read up to 2 MiB; each request has the configured timeout (default 5 s).
/// The [`EntraAuthenticator`](crate::EntraAuthenticator) caches the answers per user.
///
/// ```no_run
/// use std::sync::Arc;
/// use mcp_auth_azure::{Cloud, EntraAuthenticator, EntraConfig, GraphGroupResolver};
/// use mcp_auth_core::Secret;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client_id = "3f1c2d3e-0000-4000-8000-000000000001";
/// let graph = GraphGroupResolver::builder(
///     Cloud::Public,
///     client_id,
///     Secret::new(std::env::var("ENTRA_CLIENT_SECRET")?),
/// )
/// .build()?;
/// let config = EntraConfig::new("8eaef023-2b34-4da1-9baa-8bc8c9d6a490", client_id)
///     .map_group("5b2d1c0a-1111-4222-8333-444455556666", ["admin"]);
/// let auth = EntraAuthenticator::builder(config)
///     .group_resolver(Arc::new(graph))
///     .build()?;
/// # let _ = auth;
/// # Ok(())
/// # }
/// ```
pub struct GraphGroupResolver {
    client: reqwest::Client,
    authority: String,
    graph: String,
    client_id: String,
    secret: Secret,
    clock: Arc<dyn Clock>,
    tokens: Mutex<HashMap<String, (SystemTime, Secret)>>,
}

impl fmt::Debug for GraphGroupResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphGroupResolver")
            .field("authority", &self.authority)
            .field("graph", &self.graph)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Builds a [`GraphGroupResolver`]; see [`GraphGroupResolver::builder`].
pub struct GraphGroupResolverBuilder {
    cloud: Cloud,
    client_id: String,
    secret: Secret,
    graph: Option<String>,
    timeout: Duration,
    client: Option<reqwest::Client>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for GraphGroupResolverBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphGroupResolverBuilder")
            .field("cloud", &self.cloud)
            .field("client_id", &self.client_id)
            .field("graph", &self.graph)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl GraphGroupResolverBuilder {
    /// The Graph endpoint (default: the cloud's, [`Cloud::graph_url`]; required for a custom
    /// cloud).
    pub fn graph_url(mut self, url: impl Into<String>) -> Self {
        self.graph = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// Timeout of each request, connection included (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Uses this HTTP client (default: rustls, the timeout, no redirects).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// The clock for app-token lifetimes (default: system).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the settings and builds the resolver.
    pub fn build(self) -> Result<GraphGroupResolver, EntraConfigError> {
        let graph = match (self.graph, self.cloud.graph_url()) {
            (Some(graph), _) => graph,
            (None, Some(graph)) => graph.to_owned(),
            (None, None) => {
                return Err(EntraConfigError::new(
                    "a custom cloud needs an explicit Graph URL",
                ));
            }
        };
        for url in [graph.as_str(), self.cloud.authority()] {
            check_url(url)?;
        }
        if !is_guid(&self.client_id) || self.secret.is_empty() || self.timeout.is_zero() {
            return Err(EntraConfigError::new(
                "Graph resolver: needs a client id (GUID), a client secret and a timeout",
            ));
        }
        let client = match self.client {
            Some(client) => client,
            None => reqwest::Client::builder()
                .timeout(self.timeout)
                .connect_timeout(self.timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| EntraConfigError::new(format!("Graph HTTP client: {e}")))?,
        };
        Ok(GraphGroupResolver {
            client,
            authority: self.cloud.authority().to_owned(),
            graph,
            client_id: self.client_id,
            secret: self.secret,
            clock: self.clock,
            tokens: Mutex::new(HashMap::new()),
        })
    }
}

/// `https`, or `http` to a loopback host.
fn check_url(url: &str) -> Result<(), EntraConfigError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| EntraConfigError::new(format!("{url:?} is not a URL")))?;
    let loopback = parsed.host_str().is_some_and(|host| {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(EntraConfigError::new(format!(
            "{url:?}: https only (http on loopback)"
        ))),
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

#[derive(Deserialize)]
struct GroupPage {
    value: Vec<DirectoryObject>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct DirectoryObject {
    id: String,
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, GraphError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| GraphError(format!("reading the response: {e}")))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(GraphError("response larger than 2 MiB".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

impl GraphGroupResolver {
    /// Starts a builder for the app registration `client_id` with its `client_secret`, in
    /// `cloud`.
    pub fn builder(
        cloud: Cloud,
        client_id: impl Into<String>,
        client_secret: Secret,
    ) -> GraphGroupResolverBuilder {
        GraphGroupResolverBuilder {
            cloud,
            client_id: client_id.into(),
            secret: client_secret,
            graph: None,
            timeout: Duration::from_secs(5),
            client: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// An app token for `tenant`: cached, or fetched with the client credentials.
    async fn app_token(&self, tenant: &str) -> Result<Secret, GraphError> {
        let now = self.clock.now();
        if let Some((valid_until, token)) = self
            .tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tenant)
            && now < *valid_until
        {
            return Ok(token.clone());
        }
        let url = format!("{}/{tenant}/oauth2/v2.0/token", self.authority);
        let scope = format!("{}/.default", self.graph);
        let response = self
            .client
            .post(&url)
            .header(ACCEPT, "application/json")
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.secret.expose()),
                ("scope", scope.as_str()),
            ])
            .send()
            .await
            .map_err(|e| GraphError(format!("token request for tenant {tenant}: {e}")))?;
        let status = response.status();
        let body = read_limited(response).await?;
        if !status.is_success() {
            let error = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_default();
            return Err(GraphError(format!(
                "token request for tenant {tenant}: status {status} {error}"
            )));
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| GraphError("token response without access_token/expires_in".into()))?;
        let token = Secret::new(parsed.access_token);
        let lifetime = Duration::from_secs(parsed.expires_in);
        let keep = lifetime.checked_sub(TOKEN_MARGIN).unwrap_or(lifetime / 2);
        if let Some(valid_until) = now.checked_add(keep) {
            self.tokens
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(tenant.to_owned(), (valid_until, token.clone()));
        }
        Ok(token)
    }

    fn forget_token(&self, tenant: &str) {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tenant);
    }

    async fn list_groups(&self, tenant: &str, oid: &str) -> Result<Vec<String>, GraphError> {
        if !is_guid(tenant) || !is_guid(oid) {
            return Err(GraphError("tenant and object ids must be GUIDs".into()));
        }
        let token = self.app_token(tenant).await?;
        let mut url = format!(
            "{}/v1.0/users/{oid}/transitiveMemberOf/microsoft.graph.group?$select=id&$top=999",
            self.graph
        );
        let prefix = format!("{}/", self.graph);
        let mut groups = Vec::new();
        for _ in 0..MAX_PAGES {
            let response = self
                .client
                .get(&url)
                .header(ACCEPT, "application/json")
                .header(AUTHORIZATION, format!("Bearer {}", token.expose()))
                .send()
                .await
                .map_err(|e| GraphError(format!("groups of {oid}: {e}")))?;
            let status = response.status();
            if status == reqwest::StatusCode::UNAUTHORIZED {
                self.forget_token(tenant);
            }
            if !status.is_success() {
                return Err(GraphError(format!("groups of {oid}: status {status}")));
            }
            let page: GroupPage = serde_json::from_slice(&read_limited(response).await?)
                .map_err(|_| GraphError("a group page is not a Graph collection".into()))?;
            groups.extend(page.value.into_iter().map(|o| o.id));
            match page.next_link {
                None => return Ok(groups),
                Some(next) if next.starts_with(&prefix) => url = next,
                Some(_) => {
                    return Err(GraphError("@odata.nextLink leaves the Graph host".into()));
                }
            }
        }
        Err(GraphError(format!(
            "groups of {oid}: more than {MAX_PAGES} pages"
        )))
    }
}

#[async_trait]
impl GroupResolver for GraphGroupResolver {
    async fn groups(&self, tenant: &str, oid: &str) -> Result<Vec<String>, BoxError> {
        self.list_groups(tenant, oid).await.map_err(Into::into)
    }
}
