//! An HTTP connector that counts what goes over the wire, for [`Backend::counters`](chest_core::Backend::counters).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService,
    ReqwestConnector,
};
use object_store::ClientOptions;

/// Counters shared by a backend and its HTTP clients.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// HTTP requests sent, retries included.
    pub requests: AtomicU64,
    /// Request body bytes sent.
    pub bytes_up: AtomicU64,
    /// Response body bytes announced by successful responses (`Content-Length`).
    pub bytes_down: AtomicU64,
    /// Attempts that failed in a way `object_store` retries (5xx, 429, 408,
    /// connection errors, timeouts).
    pub retryable_failures: AtomicU64,
    /// Backend operations that returned an error.
    pub errors: AtomicU64,
    /// Objects written (put, put_many), multipart uploads included.
    pub objects_put: AtomicU64,
    /// Objects written as multipart uploads.
    pub multipart_uploads: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Vec<(String, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("s3_requests".into(), get(&self.requests)),
            ("s3_bytes_up".into(), get(&self.bytes_up)),
            ("s3_bytes_down".into(), get(&self.bytes_down)),
            (
                "s3_retryable_failures".into(),
                get(&self.retryable_failures),
            ),
            ("s3_errors".into(), get(&self.errors)),
            ("s3_objects_put".into(), get(&self.objects_put)),
            ("s3_multipart_uploads".into(), get(&self.multipart_uploads)),
        ]
    }
}

/// Hands out one HTTP client ([`ReqwestConnector`]'s, with every request
/// counted) to every store built with it, so that a backend's stores share
/// one connection pool and the client (TLS roots and all) is built once.
#[derive(Debug, Clone)]
pub(crate) struct SharedConnector {
    client: HttpClient,
}

impl SharedConnector {
    pub(crate) fn new(
        options: &ClientOptions,
        counters: Arc<Counters>,
    ) -> object_store::Result<Self> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(Self {
            client: HttpClient::new(CountingService { inner, counters }),
        })
    }
}

impl HttpConnector for SharedConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(self.client.clone())
    }
}

#[derive(Debug)]
struct CountingService {
    inner: HttpClient,
    counters: Arc<Counters>,
}

#[async_trait]
impl HttpService for CountingService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let c = &self.counters;
        Counters::add(&c.requests, 1);
        Counters::add(&c.bytes_up, req.body().content_length() as u64);
        let result = self.inner.execute(req).await;
        match &result {
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    let len = resp
                        .headers()
                        .get(http_content_length())
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0);
                    Counters::add(&c.bytes_down, len);
                } else if status.is_server_error()
                    || status.as_u16() == 429
                    || status.as_u16() == 408
                {
                    Counters::add(&c.retryable_failures, 1);
                }
            }
            Err(e) => {
                if matches!(
                    e.kind(),
                    HttpErrorKind::Connect
                        | HttpErrorKind::Request
                        | HttpErrorKind::Timeout
                        | HttpErrorKind::Interrupted
                ) {
                    Counters::add(&c.retryable_failures, 1);
                }
            }
        }
        result
    }
}

fn http_content_length() -> &'static str {
    "content-length"
}
