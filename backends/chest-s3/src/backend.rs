//! [`S3Backend`]: the type, its runtime (every request runs on a small
//! tokio runtime of its own, and the calling thread waits for the result
//! without entering any runtime it may be in), and its [`Backend`]
//! implementation.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use chest_core::backend::{join_parts, slice_whole, unsupported};
use chest_core::{
    Backend, BackendError, BackendResult, Capabilities, GetOptions, GetResult, ObjectVersion,
    PutMode, PutOptions, ReadCost, SingleWriter,
};
use futures::StreamExt;
use object_store::{BackoffConfig, RetryConfig};
use url::Url;

use crate::client::{build_store, client_options, probe_deadline, Inner};
use crate::conditional::Conditional;
use crate::config::{self, Lock, S3Config, RETRY_TIMEOUT};
use crate::errors::chain;
use crate::http::{Counters, SharedConnector};

/// Worker threads of each backend's runtime.
const WORKER_THREADS: usize = 2;

/// A bucket (and prefix) of an S3-compatible store. See the [crate docs](crate).
pub struct S3Backend {
    inner: Arc<Inner>,
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
}

impl fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Backend")
            .field("location", &self.inner.location)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Drop for S3Backend {
    fn drop(&mut self) {
        // A plain drop of a runtime blocks, and panics inside async code.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl S3Backend {
    /// Opens the store `config` describes: builds the client and its runtime,
    /// then checks with one small `list` that the bucket exists, the
    /// credentials are accepted and the endpoint answers (see "Opening fails
    /// fast" in the [crate docs](crate)).
    pub fn open(config: S3Config) -> chest_core::Result<Self> {
        let location = config.location();
        config
            .validate()
            .map_err(|reason| chest_core::Error::InvalidUrl {
                url: location.clone(),
                reason,
            })?;
        let other = |message: String, source: Option<chest_core::BoxError>| BackendError::Other {
            location: location.clone(),
            message,
            source,
        };
        if config.access_key_id.is_none()
            && config.endpoint.is_some()
            && !config::PASS_THROUGH_ENV
                .iter()
                .any(|v| std::env::var_os(v).is_some())
        {
            return Err(other(
                format!(
                    "no credentials for bucket {} at {}: set AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY, or access_key_id= and secret_access_key= in the URL",
                    config.bucket,
                    config.endpoint_for_messages()
                ),
                None,
            )
            .into());
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("chest-s3")
            .enable_all()
            .build()
            .map_err(|e| {
                other(
                    format!("cannot start the runtime of the S3 client: {e}"),
                    Some(Box::new(e)),
                )
            })?;
        let counters = Arc::new(Counters::default());
        let connector = SharedConnector::new(&client_options(&config), Arc::clone(&counters))
            .map_err(|e| {
                other(
                    format!("cannot configure the HTTP client: {}", chain(&e)),
                    Some(Box::new(e)),
                )
            })?;
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: config.retries,
            retry_timeout: RETRY_TIMEOUT,
        };
        let store = build_store(&config, &connector, retry).map_err(|e| {
            other(
                format!("cannot configure the S3 client: {}", chain(&e)),
                Some(Box::new(e)),
            )
        })?;
        // The probe retries at most once, briefly: `open` answers within seconds.
        let probe_retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: config.retries.min(1),
            retry_timeout: config.connect_timeout,
        };
        let probe = build_store(&config, &connector, probe_retry).map_err(|e| {
            other(
                format!("cannot configure the S3 client: {}", chain(&e)),
                Some(Box::new(e)),
            )
        })?;
        let root = if config.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", config.prefix)
        };
        let backend = Self {
            inner: Arc::new(Inner {
                endpoint: config.endpoint_for_messages(),
                puts: tokio::sync::Semaphore::new(config.concurrency),
                gets: tokio::sync::Semaphore::new(config.concurrency),
                config,
                location,
                root,
                store,
                counters,
                conditional: OnceLock::new(),
            }),
            runtime: Some(runtime),
        };
        let inner = Arc::clone(&backend.inner);
        let deadline = probe_deadline(&inner.config);
        backend.run(async move {
            match tokio::time::timeout(deadline, inner.probe(probe)).await {
                Ok(result) => result,
                Err(_) => Err(inner.unreachable(
                    format!(
                        "cannot reach endpoint {} for bucket {} (no answer within {deadline:?})",
                        inner.endpoint, inner.config.bucket
                    ),
                    None,
                )),
            }
        })?;
        Ok(backend)
    }

    /// Opens an `s3://` URL (a shortcut for [`S3Config::from_url`] and [`S3Backend::open`]).
    pub fn open_url(url: &str) -> chest_core::Result<Self> {
        let parsed = Url::parse(url).map_err(|e| chest_core::Error::InvalidUrl {
            url: chest_core::redact_url(url).into_owned(),
            reason: e.to_string(),
        })?;
        Self::open(S3Config::from_url(&parsed)?)
    }

    /// The configuration this backend was opened with.
    pub fn config(&self) -> &S3Config {
        &self.inner.config
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.inner.config.bucket
    }

    /// The prefix every object name is put under (empty, or without a trailing `/`).
    pub fn prefix(&self) -> &str {
        &self.inner.config.prefix
    }

    /// Runs `fut` on this backend's runtime and waits for its result on the
    /// calling thread, without entering any runtime the caller may be in.
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = BackendResult<T>> + Send + 'static,
    ) -> BackendResult<T> {
        let Some(runtime) = &self.runtime else {
            return Err(self.inner.other("the S3 client is shut down".into(), None));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            // The receiver only goes away if the caller is gone.
            let _ = tx.send(fut.await);
        });
        let result = rx.recv().unwrap_or_else(|_| {
            Err(self.inner.other(
                "an S3 request ended without a result (its task panicked or the runtime stopped)"
                    .into(),
                None,
            ))
        });
        if let Err(e) = &result {
            if !e.is_not_found() && !matches!(e, BackendError::RangeOutOfBounds { .. }) {
                Counters::add(&self.inner.counters.errors, 1);
            }
        }
        result
    }
}

impl S3Backend {
    /// What the server does with conditional writes: probed on first use.
    fn conditional(&self) -> BackendResult<Conditional> {
        if let Some(c) = self.inner.conditional.get() {
            return Ok(c.clone());
        }
        let inner = Arc::clone(&self.inner);
        let token = probe_token();
        let found = self.run(async move { inner.probe_conditional(token).await })?;
        tracing::debug!(location = %self.inner.location, ?found, "probed conditional writes");
        Ok(self.inner.conditional.get_or_init(|| found).clone())
    }
}

/// A random token for the probe's scratch object.
fn probe_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

impl Backend for S3Backend {
    fn location(&self) -> &str {
        &self.inner.location
    }

    /// `concurrency` objects written at once by `put_many`, each an object
    /// of its own. A GET costs about 10 ms to the first byte and 100 MB/s:
    /// its latency is worth about 1 MB of transfer.
    fn capabilities(&self) -> Capabilities {
        Capabilities::DEFAULT
            .with_write_concurrency(self.inner.config.concurrency)
            .with_read_cost(ReadCost::new(
                std::time::Duration::from_millis(10),
                100_000_000,
            ))
    }

    /// [`SingleWriter::Trusted`] with `lock=none`; otherwise what the probe
    /// of conditional writes found ([`SingleWriter::Lease`], or
    /// [`SingleWriter::Unavailable`] naming `lock=none`).
    fn single_writer(&self) -> BackendResult<SingleWriter> {
        if self.inner.config.lock == Lock::None {
            return Ok(SingleWriter::Trusted);
        }
        Ok(self.conditional()?.answer)
    }

    /// One request whose body is the parts as they are (no joined copy;
    /// multipart above `part_size`). A conditional write is a single-part
    /// PUT with `If-None-Match: *` or `If-Match: <ETag>` (unquoted where the
    /// probe found the server needs it), returning the new ETag; on a server
    /// the probe found to ignore conditions it is `Unsupported` (whatever
    /// `lock` says). Every completed PUT is durable: `durable` asks nothing
    /// more.
    fn put_opts(
        &self,
        name: &str,
        parts: Vec<Bytes>,
        opts: PutOptions,
    ) -> BackendResult<Option<ObjectVersion>> {
        let path = self.inner.path(name)?;
        let inner = Arc::clone(&self.inner);
        let name = name.to_string();
        if !opts.mode.is_conditional() {
            self.run(inner.put(name, path, parts))?;
            return Ok(None);
        }
        // A server that ignores conditions (Garage) would store the object
        // whatever the condition: refused here instead, writing nothing.
        let conditional = self.conditional()?;
        if conditional.answer != SingleWriter::Lease {
            return Err(unsupported(
                &self.inner.location,
                format!(
                    "conditional write of {name:?} (the server ignores conditions: {:?})",
                    conditional.answer
                ),
            ));
        }
        let unquoted = match &opts.mode {
            PutMode::Update(_) => conditional.unquoted_etag,
            _ => false,
        };
        let data = join_parts(parts);
        let condition = opts.mode;
        self.run(async move { inner.put_if(&name, path, data, condition, unquoted).await })
            .map(Some)
    }

    /// Objects in flight at once (`concurrency`, shared by every caller),
    /// each sent as its parts.
    fn put_many(&self, objects: Vec<(String, Vec<Bytes>)>) -> BackendResult<()> {
        let mut jobs = Vec::with_capacity(objects.len());
        for (name, parts) in objects {
            let path = self.inner.path(&name)?;
            jobs.push((name, path, parts));
        }
        let inner = Arc::clone(&self.inner);
        let concurrency = inner.config.concurrency;
        self.run(async move {
            let results: Vec<BackendResult<()>> =
                futures::stream::iter(jobs.into_iter().map(|(name, path, data)| {
                    let inner = Arc::clone(&inner);
                    async move {
                        // Never closed: an error here cannot happen, but is not unwrapped.
                        let _permit = inner
                            .puts
                            .acquire()
                            .await
                            .map_err(|e| inner.other(format!("put_many: {e}"), None))?;
                        Arc::clone(&inner).put(name, path, data).await
                    }
                }))
                .buffer_unordered(concurrency)
                .collect()
                .await;
            let failed = results.iter().filter(|r| r.is_err()).count();
            match results.into_iter().find_map(Result::err) {
                None => Ok(()),
                Some(first) if failed == 1 => Err(first),
                Some(first) => Err(inner.other(
                    format!("put_many: {failed} objects failed; the first: {first}"),
                    Some(Box::new(first)),
                )),
            }
        })
    }

    /// A GET, ranged where asked; with the ETag as the version if asked (a
    /// versioned range reads the whole object and slices it).
    fn get_opts(&self, name: &str, opts: GetOptions) -> BackendResult<GetResult> {
        let path = self.inner.path(name)?;
        let inner = Arc::clone(&self.inner);
        let name = name.to_string();
        if opts.version {
            let (all, version) = {
                let name = name.clone();
                self.run(async move { inner.get_versioned(&name, path).await })?
            };
            return Ok(GetResult {
                data: slice_whole(self.location(), &name, all, opts.range)?,
                version: Some(version),
            });
        }
        let data = match opts.range {
            None => self.run(async move { inner.get(&name, path).await })?,
            Some(range) => self.run(async move { inner.get_range(&name, path, range).await })?,
        };
        Ok(GetResult::data(data))
    }

    fn get_many(&self, requests: Vec<(String, Option<Range<u64>>)>) -> Vec<BackendResult<Bytes>> {
        let mut jobs = Vec::with_capacity(requests.len());
        for (name, range) in requests {
            jobs.push((self.inner.path(&name), name, range));
        }
        let inner = Arc::clone(&self.inner);
        let concurrency = inner.config.concurrency;
        let count = jobs.len();
        let results = self.run(async move {
            Ok(
                futures::stream::iter(jobs.into_iter().map(|(path, name, range)| {
                    let inner = Arc::clone(&inner);
                    async move {
                        let path = path?;
                        // Never closed: an error here cannot happen, but is not unwrapped.
                        let _permit = inner
                            .gets
                            .acquire()
                            .await
                            .map_err(|e| inner.other(format!("get_many: {e}"), None))?;
                        match range {
                            Some(range) => inner.get_range(&name, path, range).await,
                            None => inner.get(&name, path).await,
                        }
                    }
                }))
                .buffered(concurrency)
                .collect::<Vec<_>>()
                .await,
            )
        });
        match results {
            Ok(results) => results,
            // The runtime is gone: every request failed the same way.
            Err(e) => {
                let message = e.to_string();
                (0..count)
                    .map(|_| Err(self.inner.other(message.clone(), None)))
                    .collect()
            }
        }
    }

    fn delete(&self, name: &str) -> BackendResult<()> {
        let path = self.inner.path(name)?;
        let inner = Arc::clone(&self.inner);
        let name = name.to_string();
        self.run(async move { inner.delete(&name, path).await })
    }

    fn list(&self, prefix: &str) -> BackendResult<Vec<String>> {
        let inner = Arc::clone(&self.inner);
        let prefix = prefix.to_string();
        self.run(async move { inner.list(&prefix).await })
    }

    /// Every completed PUT is durable: nothing to do.
    fn sync(&self) -> BackendResult<()> {
        Ok(())
    }

    fn counters(&self) -> Vec<(String, u64)> {
        self.inner.counters.snapshot()
    }
}
