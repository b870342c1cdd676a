//! The tower integration: [`RbacLayer`] and [`RbacService`] enforce decisions on `http` requests.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::task::{Context, Poll};

use http::{HeaderValue, Request as HttpRequest, Response, StatusCode, header};
use serde_json::{Map, Value};
use tower::{Layer, Service};

use crate::decision::Request;
use crate::reload::PolicyHandle;
use crate::subject::Subject;

/// The MCP call a request makes, placed in the request's extensions by whatever parsed the
/// JSON-RPC envelope (or built by the extractor given to [`RbacLayer::with_extractor`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct McpCall {
    /// The action, such as `tools/call`.
    pub action: String,
    /// The tool name, resource URI or prompt name (empty for list actions).
    pub resource: String,
    /// The tenant the call acts in, when it names one.
    pub tenant: Option<String>,
    /// The tool arguments.
    pub arguments: Option<Map<String, Value>>,
}

impl McpCall {
    /// A call of `action` on `resource`.
    pub fn new(action: impl Into<String>, resource: impl Into<String>) -> Self {
        Self {
            action: action.into(),
            resource: resource.into(),
            ..Self::default()
        }
    }

    /// The borrowed [`Request`] for a decision.
    pub fn as_request(&self) -> Request<'_> {
        let request =
            Request::new(&self.action, &self.resource).maybe_tenant(self.tenant.as_deref());
        match &self.arguments {
            Some(args) => request.arguments(args),
            None => request,
        }
    }
}

type Extractor<B> = fn(&HttpRequest<B>) -> Option<McpCall>;

/// A tower layer that lets a request through only when the policy allows its [`McpCall`].
///
/// The subject is the `S` in the request's extensions (for example
/// `mcp_auth_core::Principal` with the `auth-core` feature, inserted by the authentication
/// layer). The call is the [`McpCall`] in the extensions, or what the extractor returns.
///
/// * no subject: `401 Unauthorized` with `WWW-Authenticate: Bearer`;
/// * no call: `403 Forbidden` (fail closed);
/// * denied: `403 Forbidden`; when the denial is a missing scope, `WWW-Authenticate: Bearer
///   error="insufficient_scope", scope="<scope>"` (RFC 6750). The body never names roles or
///   rules.
pub struct RbacLayer<S, B> {
    policy: PolicyHandle,
    extractor: Option<Extractor<B>>,
    _subject: PhantomData<fn() -> S>,
}

impl<S, B> RbacLayer<S, B> {
    /// Enforces the policy in `policy`, reading the call from the request extensions.
    pub fn new(policy: PolicyHandle) -> Self {
        Self {
            policy,
            extractor: None,
            _subject: PhantomData,
        }
    }

    /// Builds the call from the request when its extensions hold no [`McpCall`] (for example
    /// from the path of a REST-style route).
    #[must_use]
    pub fn with_extractor(mut self, extractor: fn(&HttpRequest<B>) -> Option<McpCall>) -> Self {
        self.extractor = Some(extractor);
        self
    }
}

impl<S, B> Clone for RbacLayer<S, B> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
            extractor: self.extractor,
            _subject: PhantomData,
        }
    }
}

impl<S, B> fmt::Debug for RbacLayer<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RbacLayer")
            .field("policy", &self.policy)
            .field("extractor", &self.extractor.is_some())
            .finish()
    }
}

impl<Inner, S, B> Layer<Inner> for RbacLayer<S, B> {
    type Service = RbacService<Inner, S, B>;

    fn layer(&self, inner: Inner) -> Self::Service {
        RbacService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`RbacLayer`].
pub struct RbacService<Inner, S, B> {
    inner: Inner,
    layer: RbacLayer<S, B>,
}

impl<Inner, S, B> RbacService<Inner, S, B> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &Inner {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut Inner {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> Inner {
        self.inner
    }
}

impl<Inner: Clone, S, B> Clone for RbacService<Inner, S, B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<Inner: fmt::Debug, S, B> fmt::Debug for RbacService<Inner, S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RbacService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

pin_project_lite::pin_project! {
    /// The future of [`RbacService`]: the inner service's future, or an immediate refusal.
    #[derive(Debug)]
    pub struct RbacFuture<F, R> {
        #[pin]
        inner: Option<F>,
        refused: Option<R>,
    }
}

impl<F, R, E> Future for RbacFuture<F, R>
where
    F: Future<Output = Result<R, E>>,
{
    type Output = Result<R, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(response) = this.refused.take() {
            return Poll::Ready(Ok(response));
        }
        match this.inner.as_pin_mut() {
            Some(inner) => inner.poll(cx),
            // Polled again after returning the refusal: nothing more will come.
            None => Poll::Pending,
        }
    }
}

impl<F, R> RbacFuture<F, R> {
    fn allowed(inner: F) -> Self {
        Self {
            inner: Some(inner),
            refused: None,
        }
    }

    fn refused(response: R) -> Self {
        Self {
            inner: None,
            refused: Some(response),
        }
    }
}

fn refusal<ResBody: Default>(
    status: StatusCode,
    challenge: Option<HeaderValue>,
) -> Response<ResBody> {
    let mut response = Response::new(ResBody::default());
    *response.status_mut() = status;
    if let Some(value) = challenge {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

impl<Inner, S, B, ResBody> Service<HttpRequest<B>> for RbacService<Inner, S, B>
where
    Inner: Service<HttpRequest<B>, Response = Response<ResBody>>,
    S: Subject + Send + Sync + 'static,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = Inner::Error;
    type Future = RbacFuture<Inner::Future, Response<ResBody>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest<B>) -> Self::Future {
        let Some(subject) = request.extensions().get::<S>() else {
            return RbacFuture::refused(refusal(
                StatusCode::UNAUTHORIZED,
                Some(HeaderValue::from_static("Bearer")),
            ));
        };
        let extracted;
        let call = match request.extensions().get::<McpCall>() {
            Some(call) => call,
            None => match self.layer.extractor.and_then(|f| f(&request)) {
                Some(call) => {
                    extracted = call;
                    &extracted
                }
                None => return RbacFuture::refused(refusal(StatusCode::FORBIDDEN, None)),
            },
        };
        let policy = self.layer.policy.load();
        let decision = policy.decide(subject, &call.as_request());
        if decision.is_allowed() {
            return RbacFuture::allowed(self.inner.call(request));
        }
        let challenge = decision.missing_scope().and_then(|scope| {
            HeaderValue::from_str(&format!(
                "Bearer error=\"insufficient_scope\", scope=\"{scope}\""
            ))
            .ok()
        });
        RbacFuture::refused(refusal(StatusCode::FORBIDDEN, challenge))
    }
}
