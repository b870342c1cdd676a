//! The adapter that lets openidconnect (and the proxy's direct Entra calls) use the
//! workspace's reqwest 0.13: redirects off (following them would open the client to SSRF,
//! as openidconnect's docs warn), a time limit, and a cap on response bodies.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

/// Largest response body read from Entra.
const MAX_BODY: usize = 1024 * 1024;

/// Why an HTTP exchange with Entra failed. Holds no request or response content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum HttpError {
    /// The request could not be built or sent, or timed out.
    #[error("HTTP request failed")]
    Request(#[source] reqwest::Error),
    /// The response could not be rebuilt as an `http::Response`.
    #[error("HTTP response unusable")]
    Response(#[source] http::Error),
    /// The response body exceeded the limit.
    #[error("HTTP response body larger than {MAX_BODY} bytes")]
    TooLarge,
}

/// A reqwest client that openidconnect can drive.
#[derive(Clone)]
pub(crate) struct OidcHttpClient {
    client: reqwest::Client,
}

impl fmt::Debug for OidcHttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcHttpClient").finish_non_exhaustive()
    }
}

impl OidcHttpClient {
    /// A client with redirects off and `timeout` per request.
    pub(crate) fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent(concat!("mcp-auth-azure/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client })
    }

    /// Sends `request` and reads the response, body capped.
    pub(crate) async fn execute(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let request = reqwest::Request::try_from(request).map_err(HttpError::Request)?;
        let mut response = self
            .client
            .execute(request)
            .await
            .map_err(HttpError::Request)?;
        let mut builder = http::Response::builder()
            .status(response.status())
            .version(response.version());
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_BODY as u64)
        {
            return Err(HttpError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(HttpError::Request)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        builder.body(body).map_err(HttpError::Response)
    }
}

impl<'c> AsyncHttpClient<'c> for OidcHttpClient {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.execute(request))
    }
}
