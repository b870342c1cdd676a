//! The tower [`AuthLayer`] / [`AuthService`] pair, its response body [`AuthBody`], the
//! [`OnAuthFailure`] hook, and (feature `axum`) the `Principal` extractor.
//!
//! # Response body
//!
//! [`AuthService`] answers a rejected request itself, so its response body is either the
//! inner service's body or the rejection's short JSON body. [`AuthBody<B>`] is that
//! two-variant body: it implements [`http_body::Body`] whenever `B` does (with `Data =
//! Bytes`), adds no allocation or boxing on the success path, and asks nothing else of the
//! inner service. axum routers (`Router::layer`, `route_layer`, `nest_service`) and rmcp's
//! `StreamableHttpService` work with it as they are.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};

use crate::authenticator::Authenticator;
use crate::credential::CredentialExtractor;
use crate::error::AuthError;
use crate::principal::Principal;
use crate::rejection::{AuthRejection, ChallengeConfig};

/// Called for every request the layer rejects, before the rejection is sent.
///
/// Use it to feed a brute-force lockout or an audit log. `request` is the rejected
/// request's head with its credentials taken out: the `Authorization` header, the API-key
/// header and the query string are removed, so a hook cannot leak a token by logging what it
/// is given. Its extensions (for example axum's `ConnectInfo`) are kept.
///
/// Implemented for `()` (does nothing) and for closures `Fn(&AuthError, &Parts)`.
pub trait OnAuthFailure: Clone + Send + Sync + 'static {
    /// Observes a rejection.
    fn on_auth_failure(&self, error: &AuthError, request: &Parts);
}

impl OnAuthFailure for () {
    fn on_auth_failure(&self, _error: &AuthError, _request: &Parts) {}
}

impl<F> OnAuthFailure for F
where
    F: Fn(&AuthError, &Parts) + Clone + Send + Sync + 'static,
{
    fn on_auth_failure(&self, error: &AuthError, request: &Parts) {
        self(error, request)
    }
}

/// The configuration an [`AuthLayer`] and its services share.
#[derive(Clone)]
struct Shared {
    authenticator: Arc<dyn Authenticator>,
    extractor: CredentialExtractor,
    challenge: ChallengeConfig,
    allow_anonymous: bool,
}

impl Shared {
    /// `Ok(None)`: no credential and anonymous requests are allowed.
    async fn authenticate(&self, parts: &Parts) -> Result<Option<Principal>, AuthError> {
        let credential = match self.extractor.extract(parts)? {
            Some(credential) => credential,
            None if self.allow_anonymous => return Ok(None),
            None => return Err(AuthError::Missing),
        };
        if !self.authenticator.accepts(credential.kind()) {
            return Err(AuthError::NotAccepted);
        }
        self.authenticator.authenticate(&credential).await.map(Some)
    }
}

/// A tower layer that authenticates every request and puts the [`Principal`] into the
/// request's extensions.
///
/// A request whose credential is missing or bad never reaches the inner service: it is
/// answered with an [`AuthRejection`] (status, `WWW-Authenticate` challenge, a body with only
/// the error code). Cheap to clone.
///
/// ```
/// use mcp_auth_core::layer::AuthLayer;
/// use mcp_auth_core::{AuthChain, ChallengeConfig};
///
/// let layer = AuthLayer::new(AuthChain::new()).challenge(
///     ChallengeConfig::new()
///         .resource_metadata("https://mcp.example/.well-known/oauth-protected-resource/mcp")
///         .default_scope("mcp:tools"),
/// );
/// # let _ = layer;
/// ```
pub struct AuthLayer<F = ()> {
    shared: Arc<Shared>,
    on_failure: F,
}

impl<F: Clone> Clone for AuthLayer<F> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            on_failure: self.on_failure.clone(),
        }
    }
}

impl<F> fmt::Debug for AuthLayer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("extractor", &self.shared.extractor)
            .field("challenge", &self.shared.challenge)
            .field("allow_anonymous", &self.shared.allow_anonymous)
            .finish_non_exhaustive()
    }
}

impl AuthLayer {
    /// A layer that authenticates with `authenticator` (often an [`crate::AuthChain`]),
    /// with the default [`CredentialExtractor`], no challenge parameters, and anonymous
    /// requests refused.
    pub fn new(authenticator: impl Authenticator + 'static) -> Self {
        Self::from_shared(Arc::new(authenticator))
    }

    /// Like [`AuthLayer::new`] with an authenticator that is already shared.
    pub fn from_shared(authenticator: Arc<dyn Authenticator>) -> Self {
        Self {
            shared: Arc::new(Shared {
                authenticator,
                extractor: CredentialExtractor::default(),
                challenge: ChallengeConfig::default(),
                allow_anonymous: false,
            }),
            on_failure: (),
        }
    }
}

impl<F> AuthLayer<F> {
    fn shared_mut(&mut self) -> &mut Shared {
        // Configuration happens before the layer is cloned, so this rarely copies.
        Arc::make_mut(&mut self.shared)
    }

    /// Sets where credentials are looked for.
    pub fn extractor(mut self, extractor: CredentialExtractor) -> Self {
        self.shared_mut().extractor = extractor;
        self
    }

    /// Sets what challenges name (the metadata URL, the default scope).
    pub fn challenge(mut self, challenge: ChallengeConfig) -> Self {
        self.shared_mut().challenge = challenge;
        self
    }

    /// Lets requests without any credential through, without a [`Principal`]; a request
    /// with a bad credential is still rejected. Handlers then decide (the axum extractor
    /// `Principal` answers 401, `Option<Principal>` accepts both).
    pub fn allow_anonymous(mut self) -> Self {
        self.shared_mut().allow_anonymous = true;
        self
    }

    /// Sets the hook called for every rejected request.
    pub fn on_failure<G: OnAuthFailure>(self, on_failure: G) -> AuthLayer<G> {
        AuthLayer {
            shared: self.shared,
            on_failure,
        }
    }

    /// The challenge configuration.
    pub fn challenge_config(&self) -> &ChallengeConfig {
        &self.shared.challenge
    }
}

impl<S, F: Clone> Layer<S> for AuthLayer<F> {
    type Service = AuthService<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            shared: Arc::clone(&self.shared),
            on_failure: self.on_failure.clone(),
        }
    }
}

/// The service made by [`AuthLayer`]: authenticates, then calls the inner service with the
/// [`Principal`] (and the layer's [`ChallengeConfig`]) in the request extensions.
pub struct AuthService<S, F = ()> {
    inner: S,
    shared: Arc<Shared>,
    on_failure: F,
}

impl<S: Clone, F: Clone> Clone for AuthService<S, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            on_failure: self.on_failure.clone(),
        }
    }
}

impl<S: fmt::Debug, F> fmt::Debug for AuthService<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthService")
            .field("inner", &self.inner)
            .field("challenge", &self.shared.challenge)
            .field("allow_anonymous", &self.shared.allow_anonymous)
            .finish_non_exhaustive()
    }
}

impl<S, F> AuthService<S, F> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Takes the inner service out.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, F, ReqB, ResB> Service<Request<ReqB>> for AuthService<S, F>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqB: Send + 'static,
    F: OnAuthFailure,
{
    type Response = Response<AuthBody<ResB>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        // The service that was driven to readiness goes into the future; a fresh clone
        // stays behind for the next poll_ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        let on_failure = self.on_failure.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            match shared.authenticate(&parts).await {
                Ok(principal) => {
                    if let Some(principal) = principal {
                        parts.extensions.insert(principal);
                    }
                    parts.extensions.insert(shared.challenge.clone());
                    let response = inner.call(Request::from_parts(parts, body)).await?;
                    Ok(response.map(AuthBody::inner))
                }
                Err(error) => {
                    strip_credentials(&mut parts, &shared.extractor);
                    on_failure.on_auth_failure(&error, &parts);
                    let response =
                        AuthRejection::new(error, shared.challenge.clone()).into_http_response();
                    Ok(response.map(AuthBody::rejection))
                }
            }
        })
    }
}

/// Removes everything that can carry a credential from a rejected request's head.
fn strip_credentials(parts: &mut Parts, extractor: &CredentialExtractor) {
    parts.headers.remove(http::header::AUTHORIZATION);
    if let Some(name) = extractor.api_key_header_name() {
        parts.headers.remove(name);
    }
    if parts.uri.query().is_some() {
        let mut uri_parts = parts.uri.clone().into_parts();
        uri_parts.path_and_query = Some(
            PathAndQuery::try_from(parts.uri.path()).unwrap_or(PathAndQuery::from_static("/")),
        );
        if let Ok(uri) = http::Uri::from_parts(uri_parts) {
            parts.uri = uri;
        }
    }
}

pin_project_lite::pin_project! {
    /// The response body of [`AuthService`]: the inner service's body, or the short JSON
    /// body of a rejection. See the [module docs](self) for why.
    #[derive(Debug)]
    pub struct AuthBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Rejection { body: Option<Bytes> },
    }
}

impl<B> AuthBody<B> {
    fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    fn rejection(body: Bytes) -> Self {
        Self {
            kind: Kind::Rejection {
                body: Some(body).filter(|b| !b.is_empty()),
            },
        }
    }

    /// Whether this is a rejection's body (the request did not reach the inner service).
    pub fn is_rejection(&self) -> bool {
        matches!(self.kind, Kind::Rejection { .. })
    }
}

impl<B> Body for AuthBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Rejection { body } => Poll::Ready(body.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Rejection { body } => body.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Rejection { body } => {
                SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

#[cfg(feature = "axum")]
mod axum_impl {
    //! The axum extractors for [`Principal`].

    use std::convert::Infallible;

    use axum::extract::{FromRequestParts, OptionalFromRequestParts};
    use http::request::Parts;

    use crate::error::AuthError;
    use crate::principal::Principal;
    use crate::rejection::{AuthRejection, ChallengeConfig};

    /// Reads the [`Principal`] that [`super::AuthService`] put into the extensions.
    ///
    /// Without one (no layer, or an anonymous request let through), answers 401 with the
    /// layer's challenge.
    impl<S: Send + Sync> FromRequestParts<S> for Principal {
        type Rejection = AuthRejection;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AuthRejection> {
            parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
                let challenge = parts
                    .extensions
                    .get::<ChallengeConfig>()
                    .cloned()
                    .unwrap_or_default();
                AuthRejection::new(AuthError::Missing, challenge)
            })
        }
    }

    /// `Option<Principal>`: `None` for an anonymous request.
    impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
        type Rejection = Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Option<Self>, Infallible> {
            Ok(parts.extensions.get::<Principal>().cloned())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use http_body_util::{BodyExt, Full};
    use tower::ServiceExt;

    use super::*;
    use crate::credential::{Credential, CredentialKind};
    use crate::principal::AuthMethod;

    struct OneToken;

    #[async_trait]
    impl Authenticator for OneToken {
        fn accepts(&self, kind: CredentialKind) -> bool {
            kind == CredentialKind::Bearer
        }
        async fn authenticate(&self, credential: &Credential) -> Result<Principal, AuthError> {
            if credential.secret().expose() == "good-token" {
                Ok(Principal::builder("alice", AuthMethod::Local).build())
            } else {
                Err(AuthError::Revoked)
            }
        }
    }

    fn echo_subject() -> impl Service<
        Request<Full<Bytes>>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Send,
    > + Clone {
        tower::service_fn(|req: Request<Full<Bytes>>| async move {
            let who = req
                .extensions()
                .get::<Principal>()
                .map_or("anonymous".to_owned(), |p| p.subject().to_owned());
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(who))))
        })
    }

    async fn call<S>(service: S, request: Request<Full<Bytes>>) -> (u16, String, Option<String>)
    where
        S: Service<Request<Full<Bytes>>, Response = Response<AuthBody<Full<Bytes>>>>,
        S::Error: fmt::Debug,
    {
        let response = service.oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get(http::header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap(), challenge)
    }

    fn request(uri: &str, authorization: Option<&str>) -> Request<Full<Bytes>> {
        let mut builder = Request::get(uri);
        if let Some(value) = authorization {
            builder = builder.header(http::header::AUTHORIZATION, value);
        }
        builder.body(Full::new(Bytes::new())).unwrap()
    }

    #[tokio::test]
    async fn passes_principal_and_rejects() {
        let layer =
            AuthLayer::new(OneToken).challenge(ChallengeConfig::new().default_scope("mcp:tools"));
        let svc = layer.layer(echo_subject());

        let (status, body, _) = call(svc.clone(), request("/mcp", Some("Bearer good-token"))).await;
        assert_eq!((status, body.as_str()), (200, "alice"));

        let (status, body, challenge) = call(svc.clone(), request("/mcp", None)).await;
        assert_eq!(status, 401);
        assert_eq!(body, r#"{"error":"unauthorized"}"#);
        assert_eq!(challenge.unwrap(), "Bearer scope=\"mcp:tools\"");

        let (status, body, challenge) =
            call(svc.clone(), request("/mcp", Some("Bearer bad-token"))).await;
        assert_eq!(status, 401);
        assert_eq!(body, r#"{"error":"invalid_token"}"#);
        assert!(challenge.unwrap().contains("error=\"invalid_token\""));

        // An API key with no API-key authenticator configured.
        let (status, body, _) =
            call(svc.clone(), request("/mcp", Some("Bearer mcpk_id_secret"))).await;
        assert_eq!(
            (status, body.as_str()),
            (401, r#"{"error":"invalid_token"}"#)
        );
    }

    #[tokio::test]
    async fn anonymous_mode_still_rejects_bad_credentials() {
        let svc = AuthLayer::new(OneToken)
            .allow_anonymous()
            .layer(echo_subject());
        let (status, body, _) = call(svc.clone(), request("/mcp", None)).await;
        assert_eq!((status, body.as_str()), (200, "anonymous"));
        let (status, _, _) = call(svc.clone(), request("/mcp", Some("Bearer nope"))).await;
        assert_eq!(status, 401);
        let (status, _, _) = call(svc, request("/mcp?access_token=x", None)).await;
        assert_eq!(status, 400);
    }

    #[tokio::test]
    async fn failure_hook_never_sees_the_token() {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = Arc::clone(&seen);
        let svc = AuthLayer::new(OneToken)
            .on_failure(move |error: &AuthError, parts: &Parts| {
                log.lock()
                    .unwrap()
                    .push(format!("{error} {} {:?}", parts.uri, parts.headers));
            })
            .layer(echo_subject());
        let mut req = request(
            "/mcp?access_token=query-secret&x=1",
            Some("Bearer header-secret"),
        );
        req.headers_mut()
            .insert("x-api-key", "api-secret".parse().unwrap());
        req.headers_mut()
            .insert("x-request-id", "req-1".parse().unwrap());
        let (status, _, _) = call(svc.clone(), req).await;
        assert_eq!(status, 400);
        let (status, _, _) = call(svc.clone(), request("/mcp", Some("Bearer header-secret"))).await;
        assert_eq!(status, 401);
        let (status, _, _) = call(svc, request("/mcp", Some("Bearer good-token"))).await;
        assert_eq!(status, 200);

        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        for line in seen.iter() {
            assert!(!line.contains("secret"), "{line}");
        }
        assert!(
            seen[0].contains("req-1"),
            "other headers are kept: {}",
            seen[0]
        );
    }

    #[test]
    fn rejection_body_is_exact() {
        let body = AuthBody::<Full<Bytes>>::rejection(Bytes::from_static(b"{}"));
        assert!(body.is_rejection());
        assert_eq!(body.size_hint().exact(), Some(2));
        assert!(!body.is_end_stream());
    }
}
