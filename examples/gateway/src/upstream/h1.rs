//! A pooled HTTP/1.1 client for plain-HTTP (`http://`) upstreams, on hyper's connection API.
//!
//! reqwest (which `https://` upstreams keep) parses the URL several times per request, clones
//! header maps for its redirect and retry layers, and its pool spawns a task per request to
//! wait until the connection is idle again; for the gateway's one-POST-per-request hop that
//! was several percent of its CPU. Here each connection is a hyper `SendRequest` with its
//! connection task, idle connections wait in a LIFO list, and a connection goes back to the
//! list when its answer's body has been read to the end (a body dropped before its end closes
//! the connection, as it cannot be reused). A request that a pooled connection could not send
//! (the upstream closed it while idle) is sent once more on a new connection; a request that
//! was sent is never sent twice.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::HOST;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// Idle connections kept per upstream (more are closed when their answer ends).
const MAX_IDLE: usize = 64;

/// The connections to one plain-HTTP upstream.
pub(crate) struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    /// Host and port to connect to (an IPv6 address without its brackets).
    host: String,
    port: u16,
    /// The `Host` header: the URL's authority.
    authority: HeaderValue,
    /// The request target: the URL's path and query.
    target: Uri,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("host", &self.inner.host)
            .field("port", &self.inner.port)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool for `url`, or `None` when it is not a plain `http://` URL or carries
    /// credentials (reqwest sends those as basic authentication).
    pub(crate) fn for_url(url: &str) -> Option<Self> {
        let uri: Uri = url.parse().ok()?;
        if uri.scheme_str() != Some("http") {
            return None;
        }
        let authority = uri.authority().filter(|a| !a.as_str().contains('@'))?;
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned();
        let port = authority.port_u16().unwrap_or(80);
        let authority = HeaderValue::from_str(authority.as_str()).ok()?;
        let target = Uri::from(
            uri.path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        Some(Self {
            inner: Arc::new(Inner {
                host,
                port,
                authority,
                target,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Sends `request` (its target and `Host` set here from the upstream's URL) on an idle
    /// connection or a new one.
    pub(crate) async fn send(
        &self,
        request: Request<Bytes>,
    ) -> std::io::Result<Response<PooledBody>> {
        let mut request = request.map(Full::new);
        *request.uri_mut() = self.inner.target.clone();
        request
            .headers_mut()
            .insert(HOST, self.inner.authority.clone());
        while let Some(mut sender) = self.checkout() {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.lease(response, sender)),
                Err(mut failed) => match failed.take_message() {
                    // Not sent: the connection was closed meanwhile; try another.
                    Some(unsent) => request = unsent,
                    None => return Err(std::io::Error::other(failed.into_error())),
                },
            }
        }
        // Boxed: connecting is rare, and its future would otherwise be part of every send's.
        let mut sender = Box::pin(self.connect()).await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(std::io::Error::other)?;
        Ok(self.lease(response, sender))
    }

    fn checkout(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn lease(
        &self,
        response: Response<Incoming>,
        sender: SendRequest<Full<Bytes>>,
    ) -> Response<PooledBody> {
        response.map(|body| {
            let mut body = PooledBody {
                body,
                lease: Some(Lease {
                    sender,
                    pool: Arc::clone(&self.inner),
                }),
            };
            // An answer without a body frees its connection at once.
            if body.body.is_end_stream() {
                body.release();
            }
            body
        })
    }

    async fn connect(&self) -> std::io::Result<SendRequest<Full<Bytes>>> {
        let stream =
            tokio::net::TcpStream::connect((self.inner.host.as_str(), self.inner.port)).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}

/// A connection lent to one answer.
struct Lease {
    sender: SendRequest<Full<Bytes>>,
    pool: Arc<Inner>,
}

impl Lease {
    fn release(self) {
        let mut idle = self
            .pool
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(self.sender);
        }
    }
}

/// An answer's body; its end returns the connection to the pool.
pub(crate) struct PooledBody {
    body: Incoming,
    lease: Option<Lease>,
}

impl PooledBody {
    /// Returns the connection to the pool (the answer has ended).
    fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(),
            // A failed connection is not reused: dropping the lease closes it.
            Poll::Ready(Some(Err(_))) => this.lease = None,
            Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    /// A loopback HTTP/1.1 server answering every POST with `body`; it counts the
    /// connections it accepted and closes each after `per_connection` answers.
    async fn server(body: &'static [u8], per_connection: usize) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp?x=1", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for _ in 0..per_connection {
                        let Some(request) = read_request(&mut stream, &mut buf).await else {
                            return;
                        };
                        assert!(
                            request.starts_with("POST /mcp?x=1 HTTP/1.1\r\n"),
                            "{request}"
                        );
                        assert!(
                            request
                                .to_ascii_lowercase()
                                .contains("\r\nhost: 127.0.0.1:")
                        );
                        let head =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                        stream.write_all(head.as_bytes()).await.unwrap();
                        if stream.write_all(body).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, accepted)
    }

    /// One request's head and body (by its `content-length`), or `None` at the end.
    async fn read_request(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<String> {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(buf[..end + 4].to_vec()).unwrap();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_owned)
                    })
                    .map_or(0, |v| v.trim().parse().unwrap());
                while buf.len() < end + 4 + length {
                    let mut chunk = [0; 4096];
                    let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
                    buf.extend_from_slice(&chunk[..n]);
                }
                buf.drain(..end + 4 + length);
                return Some(head);
            }
            let mut chunk = [0; 4096];
            let n = stream.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn request(body: &'static [u8]) -> Request<Bytes> {
        let mut request = Request::new(Bytes::from_static(body));
        *request.method_mut() = http::Method::POST;
        request
    }

    async fn post(pool: &Pool) -> Vec<u8> {
        let response = pool.send(request(b"{}")).await.unwrap();
        assert_eq!(response.status(), 200);
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    #[test]
    fn only_plain_http_urls_get_a_pool() {
        let pool = Pool::for_url("http://[::1]/").unwrap();
        assert_eq!((pool.inner.host.as_str(), pool.inner.port), ("::1", 80));
        assert_eq!(pool.inner.authority, "[::1]");
        let pool = Pool::for_url("http://upstream.internal:8081").unwrap();
        assert_eq!(
            (pool.inner.host.as_str(), pool.inner.port),
            ("upstream.internal", 8081)
        );
        assert_eq!(pool.inner.target, "/");
        assert!(Pool::for_url("https://upstream.internal/mcp").is_none());
        assert!(Pool::for_url("http://user:secret@upstream.internal/mcp").is_none());
        assert!(Pool::for_url("not a url").is_none());
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_answer_was_read() {
        let (url, accepted) = server(b"answer", usize::MAX).await;
        let pool = Pool::for_url(&url).unwrap();
        for _ in 0..5 {
            assert_eq!(post(&pool).await, b"answer");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_answer_dropped_before_its_end_closes_its_connection() {
        static LARGE: [u8; 256 * 1024] = [b'x'; 256 * 1024];
        let (url, accepted) = server(&LARGE, usize::MAX).await;
        let pool = Pool::for_url(&url).unwrap();
        let response = pool.send(request(b"")).await.unwrap();
        drop(response);
        assert_eq!(post(&pool).await.len(), LARGE.len());
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_replaced() {
        let (url, accepted) = server(b"answer", 1).await;
        let pool = Pool::for_url(&url).unwrap();
        assert_eq!(post(&pool).await, b"answer");
        // Bounded wait until the pooled connection saw the upstream's close.
        for _ in 0..200 {
            let closed = pool
                .inner
                .idle
                .lock()
                .unwrap()
                .iter()
                .all(SendRequest::is_closed);
            if closed {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(post(&pool).await, b"answer");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        drop(listener);
        let pool = Pool::for_url(&url).unwrap();
        assert!(pool.send(request(b"")).await.is_err());
    }
}
