//! S3-compatible object storage (AWS S3, Garage, MinIO, Ceph, R2, …) as a
//! [chest](https://docs.rs/chest) [`Backend`], over the
//! [`object_store`] crate.
//!
//! Linking this crate registers the `s3` URL scheme, so
//! `Chest::open("s3://bucket/prefix?endpoint=http://127.0.0.1:3900&region=garage")`
//! (or [`chest_core::registry::open_backend`]) opens an [`S3Backend`]. The
//! store is persistent: a chest over it is flushed on drop.
//!
//! # URL
//!
//! `s3://<bucket>[/<prefix>][?<key>=<value>&...]`
//!
//! Every object name is put under `<prefix>/` (percent-decoded; empty
//! components are refused). The bucket must exist: the backend never creates
//! one. The host of the URL is the bucket: a user, password or port there is
//! refused (the endpoint goes in `endpoint=`, credentials in the keys below).
//!
//! This table is the reference for the query keys (the README links here);
//! [`S3Config::from_url`] reads them, [`QUERY_KEYS`] lists them, and any
//! other key is an error. A value in the query wins over the environment
//! (an empty `endpoint` or `region` counts as not given).
//!
//! | query key | value | default |
//! | --- | --- | --- |
//! | `endpoint` | the S3 endpoint: `http://host[:port]` or `https://…`, without a user or password (a trailing `/` is dropped) | `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, `AWS_ENDPOINT`, the first one set; else AWS itself |
//! | `region` | the region requests are signed for | `AWS_REGION`, `AWS_DEFAULT_REGION`; else `us-east-1` |
//! | `access_key_id` | access key id (needs a secret access key) | `AWS_ACCESS_KEY_ID` |
//! | `secret_access_key` | secret access key (needs an access key id) | `AWS_SECRET_ACCESS_KEY` |
//! | `session_token` | session token of temporary credentials | `AWS_SESSION_TOKEN` |
//! | `allow_http` | boolean: allow a plain `http://` endpoint (`false` with an `http://` endpoint is an error) | `true` when the endpoint starts with `http://`, else `false` |
//! | `virtual_hosted` | boolean: virtual-hosted-style requests (`bucket.host/key`) instead of path-style (`host/bucket/key`) | `false` |
//! | `connect_timeout` | bound on establishing a connection; a duration as in every chest URL ([`chest_core::registry::parse_duration`]: `5`, `2.5s`, `500ms`, `1m`; a bare number is seconds; here above zero, at most a day) | `5s` ([`DEFAULT_CONNECT_TIMEOUT`]) |
//! | `timeout` | bound on one request, from connecting to the end of its body; a duration, as above | `30s` ([`DEFAULT_TIMEOUT`]) |
//! | `retries` | retries of a request that failed transiently (see [Operations](#operations)), a whole number, `0` for none | `5` ([`DEFAULT_RETRIES`]) |
//! | `concurrency` | 1 to 1024: objects in flight in `put_many`, and in `get_many`, each counted over all calls; parts in flight in one multipart upload | `8` ([`DEFAULT_CONCURRENCY`]) |
//! | `part_size` | objects larger than this go up as multipart uploads in parts of this size; a size as in every chest URL ([`chest_core::registry::parse_size`]: bytes, or with `b`, `k`/`KB`/`KiB`, `M`/`MB`/`MiB`, `G`/`GB`/`GiB`, all binary, any case); 5 MiB to 5 GiB ([`MIN_PART_SIZE`], [`MAX_PART_SIZE`]) | `8MiB` ([`DEFAULT_PART_SIZE`]) |
//! | `reuse_connections` | boolean: keep idle connections for later requests (see [`S3Config::reuse_connections`]) | `true`, except `false` for a plain-`http` loopback endpoint (`localhost`, `127.x.x.x`, `[::1]`) |
//! | `lock` | `lease`: a chest keeps the prefix to one writer with a lease (needs a server that honours conditional writes); `none`: the user guarantees one writer (see [One writer](#one-writer)) | `lease` |
//!
//! A boolean is `true`, `false`, `1`, `0`, `yes`, `no`, `on` or `off`, in
//! any case. Credentials are taken as a set: if the query names any of
//! `access_key_id`, `secret_access_key`, `session_token`, none of the three
//! comes from the environment. Without an access key, `object_store`'s AWS
//! credential chain applies (`AWS_WEB_IDENTITY_TOKEN_FILE` with
//! `AWS_ROLE_ARN`, ECS container credentials, then EC2 instance metadata);
//! with an `endpoint` set, opening then fails unless one of the chain's
//! variables is set. Secrets never appear in messages or in `Debug` output:
//! a URL is shown through [`chest_core::redact_url`]
//! (`secret_access_key=***`, `session_token=***`; the access key id is
//! shown), and an `endpoint` with a user or password in it is refused.
//!
//! ```no_run
//! use chest_core::Backend;
//! use chest_s3::{S3Backend, S3Config};
//!
//! let url = url::Url::parse("s3://chest-test/run-1?endpoint=http://127.0.0.1:3900&region=garage")?;
//! let backend = S3Backend::open(S3Config::from_url(&url)?)?;   // fails fast: missing bucket, denied, unreachable
//! backend.put("a/1", bytes::Bytes::from_static(b"hello"))?;
//! assert_eq!(&backend.get_range("a/1", 1..3)?[..], b"el");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Opening fails fast
//!
//! [`S3Backend::open`] lists at most one object under the prefix before it
//! returns, with at most one retry, and gives up after `connect_timeout` plus
//! the shorter of `timeout` and [`PROBE_TIMEOUT`] (15 s with the defaults;
//! usually it answers in milliseconds). It turns the answer into an error that
//! says what is wrong:
//!
//! - the bucket does not exist: [`BackendError::MissingStore`] naming the bucket and endpoint;
//! - the credentials are refused: [`BackendError::Denied`], "access denied to bucket … at …:
//!   check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY …";
//! - nothing answers: [`BackendError::Unreachable`], "cannot reach endpoint …" with the cause
//!   (connection refused, timed out, DNS).
//!
//! # Operations
//!
//! - `put` of an object up to `part_size` is one `PutObject`; a larger one is a
//!   multipart upload whose parts (of `part_size` bytes) go up `concurrency` at
//!   a time, completed atomically (a reader sees the old or the new object).
//! - `put_many` uploads up to `concurrency` objects at once, and `get_many`
//!   fetches up to `concurrency` at once, each counted over every call of
//!   the backend (a chest's writer and reader threads share them).
//! - `get_range` is one ranged `GetObject`; a range past the end is
//!   [`BackendError::RangeOutOfBounds`].
//! - `list` pages through `ListObjectsV2` with a plain string prefix.
//! - Transient failures (5xx, 429, 408, connection errors, timeouts) are
//!   retried `retries` times with exponential backoff and jitter, for at most
//!   [`RETRY_TIMEOUT`] after the first attempt. When the retries are spent the
//!   error names the operation, the bucket, the key and the endpoint.
//! - [`Backend::counters`] reports `s3_requests` (HTTP requests, retries
//!   included), `s3_bytes_up` / `s3_bytes_down` (request and response body
//!   bytes), `s3_retryable_failures` (failed attempts of the retryable kinds),
//!   `s3_errors` (operations that failed, missing objects aside),
//!   `s3_objects_put` and `s3_multipart_uploads`.
//!
//! # A blocking API over async I/O
//!
//! The [`Backend`] trait is blocking and `object_store` is async. Each
//! [`S3Backend`] owns a small multi-thread tokio runtime (two worker threads,
//! named `chest-s3`). A call spawns its work on that runtime and waits for the
//! result on a `std::sync::mpsc` channel. It never enters the caller's
//! runtime, so it works from plain threads, from `spawn_blocking`, and also
//! when called directly from async code (a `#[tokio::main]` function, a
//! `current_thread` runtime), where `Handle::block_on` would panic; there the
//! call blocks that thread for its duration, as any blocking call does. The
//! runtime is shut down in the background when the backend is dropped, which
//! is also safe inside async code.
//!
//! # One writer
//!
//! A chest keeps an `s3://` location to one writer with a lease object
//! written by conditional PUTs (see [`chest_core::SingleWriter`] and the
//! `lock` query key). The first writable open probes the server with a
//! handful of requests on a scratch object (see the `conditional` module):
//! AWS S3, MinIO, R2 and Ceph RGW honour `If-None-Match: *` and `If-Match`
//! (Ceph RGW 16 only with the ETag unquoted, which the probe finds); Garage
//! ignores both, so a writable open there fails with an error naming the
//! opt-out `lock=none`, by which the user guarantees a single writer.
#![warn(missing_docs)]

mod conditional;
mod config;
mod http;

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use chest_core::backend::{check_name, check_range};
use chest_core::registry::{OpenOptions, OpenedBackend, Scheme};
use chest_core::{Backend, BackendError, BackendResult, ObjectVersion, PutIf, SingleWriter};
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, RetryConfig, WriteMultipart,
};
use url::Url;

use conditional::Conditional;
pub use config::{
    Lock, S3Config, DEFAULT_CONCURRENCY, DEFAULT_CONNECT_TIMEOUT, DEFAULT_PART_SIZE,
    DEFAULT_RETRIES, DEFAULT_TIMEOUT, MAX_PART_SIZE, MIN_PART_SIZE, QUERY_KEYS, RETRY_TIMEOUT,
};
use http::{Counters, SharedConnector};

/// Worker threads of each backend's runtime.
const WORKER_THREADS: usize = 2;

/// Longest wait for the answer to the probe of [`S3Backend::open`], beyond
/// the connect timeout.
pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens the store an `s3://` URL names (the `s3` scheme's factory).
pub fn open(url: &Url, _opts: &OpenOptions) -> chest_core::Result<OpenedBackend> {
    let config = S3Config::from_url(url)?;
    Ok(OpenedBackend {
        backend: Arc::new(S3Backend::open(config)?),
        persistent: true,
    })
}

inventory::submit! { Scheme { name: "s3", open } }

/// A bucket (and prefix) of an S3-compatible store. See the [crate docs](crate).
pub struct S3Backend {
    inner: Arc<Inner>,
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
}

struct Inner {
    config: S3Config,
    location: String,
    /// `prefix/`, or empty.
    root: String,
    endpoint: String,
    store: AmazonS3,
    counters: Arc<Counters>,
    /// What the probe of conditional writes found (run once, when first needed).
    conditional: OnceLock<Conditional>,
    /// `concurrency` permits: the objects of all `put_many` calls in
    /// flight at once (several writer threads share them, so one batch's
    /// last uploads overlap the next batch's first without exceeding it).
    puts: tokio::sync::Semaphore,
    /// `concurrency` permits for the objects of all `get_many` calls (a
    /// chest's background read-ahead overlaps its windows).
    gets: tokio::sync::Semaphore,
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

/// The bound on the probe of `open`: one connect and one request of at most
/// [`PROBE_TIMEOUT`], however long the configured request timeout is.
fn probe_deadline(config: &S3Config) -> std::time::Duration {
    config.connect_timeout + config.timeout.min(PROBE_TIMEOUT)
}

fn client_options(config: &S3Config) -> ClientOptions {
    let client = ClientOptions::new()
        .with_connect_timeout(config.connect_timeout)
        .with_timeout(config.timeout)
        .with_allow_http(config.allow_http);
    if config.reuse_connections {
        client
    } else {
        client.with_pool_max_idle_per_host(0)
    }
}

fn build_store(
    config: &S3Config,
    connector: &SharedConnector,
    retry: RetryConfig,
) -> object_store::Result<AmazonS3> {
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&config.bucket)
        .with_region(config.region.as_deref().unwrap_or("us-east-1"))
        .with_allow_http(config.allow_http)
        .with_virtual_hosted_style_request(config.virtual_hosted)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_client_options(client_options(config))
        .with_retry(retry)
        .with_http_connector(connector.clone());
    if let Some(e) = &config.endpoint {
        builder = builder.with_endpoint(e);
    }
    if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
        builder = builder
            .with_access_key_id(id)
            .with_secret_access_key(secret);
        if let Some(token) = &config.session_token {
            builder = builder.with_token(token);
        }
    } else {
        for var in config::PASS_THROUGH_ENV {
            if let Ok(value) = std::env::var(var) {
                if let Ok(key) = var.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                    builder = builder.with_config(key, value);
                }
            }
        }
    }
    builder.build()
}

impl Inner {
    fn other(&self, message: String, source: Option<chest_core::BoxError>) -> BackendError {
        BackendError::Other {
            location: self.location.clone(),
            message,
            source,
        }
    }

    fn denied(&self, message: String, source: Option<chest_core::BoxError>) -> BackendError {
        BackendError::Denied {
            location: self.location.clone(),
            message,
            source,
        }
    }

    fn unreachable(&self, message: String, source: Option<chest_core::BoxError>) -> BackendError {
        BackendError::Unreachable {
            location: self.location.clone(),
            message,
            source,
        }
    }

    /// The object's key in the bucket, checked.
    fn path(&self, name: &str) -> BackendResult<Path> {
        check_name(&self.location, name)?;
        let key = format!("{}{name}", self.root);
        Path::parse(&key).map_err(|e| BackendError::InvalidName {
            location: self.location.clone(),
            name: name.to_string(),
            reason: format!("not a valid S3 object key for object_store: {e}"),
        })
    }

    fn describe(&self, key: &str) -> String {
        format!("s3://{}/{key} at {}", self.config.bucket, self.endpoint)
    }

    /// Turns an `object_store` error of `op` on object `name` into a
    /// `BackendError` naming the bucket, the key and the endpoint.
    fn map_err(&self, op: &str, name: &str, e: object_store::Error) -> BackendError {
        let key = format!("{}{name}", self.root);
        match classify(&e) {
            Class::NotFound if is_no_such_bucket(&e) => self.missing_bucket(&e),
            Class::NotFound => BackendError::NotFound {
                location: self.location.clone(),
                name: name.to_string(),
            },
            Class::Denied => {
                let message = format!(
                    "{op} of {}: access denied to bucket {}: check AWS_ACCESS_KEY_ID / \
                     AWS_SECRET_ACCESS_KEY (or access_key_id / secret_access_key in the URL) and \
                     the key's permissions on the bucket ({})",
                    self.describe(&key),
                    self.config.bucket,
                    server_message(&e).unwrap_or_else(|| chain(&e))
                );
                self.denied(message, Some(Box::new(e)))
            }
            Class::Other => match transport_failure(&e) {
                Some(why) => self.unreachable(
                    format!(
                        "{op} of {}: cannot reach endpoint {} ({why}): {}",
                        self.describe(&key),
                        self.endpoint,
                        chain(&e)
                    ),
                    Some(Box::new(e)),
                ),
                None => self.other(
                    format!("{op} of {} failed: {}", self.describe(&key), chain(&e)),
                    Some(Box::new(e)),
                ),
            },
        }
    }

    fn missing_bucket(&self, e: &object_store::Error) -> BackendError {
        BackendError::MissingStore {
            location: self.location.clone(),
            detail: format!(
                "bucket {:?} does not exist at {} ({}); create it first (this backend never \
                 creates buckets)",
                self.config.bucket,
                self.endpoint,
                server_message(e).unwrap_or_else(|| "NoSuchBucket".into())
            ),
        }
    }

    /// One `list` of at most one key: the bucket exists, the credentials are
    /// accepted, the endpoint answers.
    async fn probe(&self, probe: AmazonS3) -> BackendResult<()> {
        let opts = PaginatedListOptions {
            max_keys: Some(1),
            ..Default::default()
        };
        let prefix = (!self.root.is_empty()).then_some(self.root.as_str());
        let e = match probe.list_paginated(prefix, opts).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        match classify(&e) {
            // A list only answers 404 for a missing bucket.
            Class::NotFound => Err(self.missing_bucket(&e)),
            Class::Denied => {
                let message = format!(
                    "access denied to bucket {} at {}: check AWS_ACCESS_KEY_ID / \
                     AWS_SECRET_ACCESS_KEY (or access_key_id / secret_access_key in the URL) and \
                     the key's permissions on the bucket ({})",
                    self.config.bucket,
                    self.endpoint,
                    server_message(&e).unwrap_or_else(|| chain(&e))
                );
                Err(self.denied(message, Some(Box::new(e))))
            }
            Class::Other => Err(match transport_failure(&e) {
                Some(why) => self.unreachable(
                    format!(
                        "cannot reach endpoint {} for bucket {} ({why}; connect timeout {:?}, \
                         request timeout {:?}): {}",
                        self.endpoint,
                        self.config.bucket,
                        self.config.connect_timeout,
                        self.config.timeout,
                        chain(&e)
                    ),
                    Some(Box::new(e)),
                ),
                None => self.other(
                    format!(
                        "checking bucket {} at {} failed: {}",
                        self.config.bucket,
                        self.endpoint,
                        chain(&e)
                    ),
                    Some(Box::new(e)),
                ),
            }),
        }
    }

    /// One object made of `parts`: a single request whose body is the parts
    /// as they are, or (larger than `part_size`) a multipart upload of
    /// their concatenation.
    async fn put(
        self: Arc<Self>,
        name: String,
        path: Path,
        parts: Vec<Bytes>,
    ) -> BackendResult<()> {
        let len: usize = parts.iter().map(Bytes::len).sum();
        if len > self.config.part_size {
            let data = chest_core::backend::join_parts(parts);
            self.put_multipart(&name, path, data).await?;
            Counters::add(&self.counters.multipart_uploads, 1);
        } else {
            self.store
                .put_opts(
                    &path,
                    parts.into_iter().collect::<PutPayload>(),
                    PutOptions::default(),
                )
                .await
                .map_err(|e| self.map_err("put", &name, e))?;
        }
        Counters::add(&self.counters.objects_put, 1);
        Ok(())
    }

    async fn put_multipart(&self, name: &str, path: Path, data: Bytes) -> BackendResult<()> {
        let upload = self
            .store
            .put_multipart_opts(&path, PutMultipartOptions::default())
            .await
            .map_err(|e| self.map_err("multipart upload (create)", name, e))?;
        let part_size = self.config.part_size;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
        let mut offset = 0;
        while offset < data.len() {
            if let Err(e) = writer.wait_for_capacity(self.config.concurrency).await {
                // Best effort: the upload failed anyway; abort so no parts linger.
                let _ = writer.abort().await;
                return Err(self.map_err("multipart upload (part)", name, e));
            }
            let end = (offset + part_size).min(data.len());
            writer.put(data.slice(offset..end));
            offset = end;
        }
        writer
            .finish()
            .await
            .map_err(|e| self.map_err("multipart upload", name, e))?;
        Ok(())
    }

    async fn get(&self, name: &str, path: Path) -> BackendResult<Bytes> {
        let result = self
            .store
            .get_opts(&path, GetOptions::default())
            .await
            .map_err(|e| self.map_err("get", name, e))?;
        result
            .bytes()
            .await
            .map_err(|e| self.map_err("get (body)", name, e))
    }

    async fn size(&self, name: &str, path: &Path) -> BackendResult<u64> {
        self.store
            .head(path)
            .await
            .map(|m| m.size)
            .map_err(|e| self.map_err("head", name, e))
    }

    async fn get_range(&self, name: &str, path: Path, range: Range<u64>) -> BackendResult<Bytes> {
        if range.start >= range.end {
            // No byte to fetch (and S3 has no empty range): check existence and bounds.
            let size = self.size(name, &path).await?;
            check_range(&self.location, name, &range, size)?;
            return Ok(Bytes::new());
        }
        let opts = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..Default::default()
        };
        let result = match self.store.get_opts(&path, opts).await {
            Ok(r) => r,
            Err(e) => {
                let mapped = self.map_err("get_range", name, e);
                if mapped.is_not_found() || matches!(mapped, BackendError::MissingStore { .. }) {
                    return Err(mapped);
                }
                // A range starting at or past the end is refused by the server (416):
                // tell it apart from other failures by the object's size.
                return match self.size(name, &path).await {
                    Ok(size) if range.end > size => {
                        check_range(&self.location, name, &range, size).map(|()| Bytes::new())
                    }
                    Err(head_err) if head_err.is_not_found() => Err(head_err),
                    _ => Err(mapped),
                };
            }
        };
        let size = result.meta.size;
        check_range(&self.location, name, &range, size)?;
        let bytes = result
            .bytes()
            .await
            .map_err(|e| self.map_err("get_range (body)", name, e))?;
        if bytes.len() as u64 != range.end - range.start {
            return Err(self.other(
                format!(
                    "get_range {range:?} of {} returned {} bytes",
                    self.describe(&format!("{}{name}", self.root)),
                    bytes.len()
                ),
                None,
            ));
        }
        Ok(bytes)
    }

    async fn delete(&self, name: &str, path: Path) -> BackendResult<()> {
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.map_err("delete", name, e)),
        }
    }

    async fn list(&self, prefix: &str) -> BackendResult<Vec<String>> {
        let full = format!("{}{prefix}", self.root);
        let mut names = Vec::new();
        let mut page_token = None;
        loop {
            let opts = PaginatedListOptions {
                page_token: page_token.take(),
                ..Default::default()
            };
            let page = self
                .store
                .list_paginated((!full.is_empty()).then_some(full.as_str()), opts)
                .await
                .map_err(|e| self.map_err("list", prefix, e))?;
            for meta in page.result.objects {
                let key: &str = meta.location.as_ref();
                if let Some(name) = key.strip_prefix(&self.root) {
                    if name.starts_with(prefix) {
                        names.push(name.to_string());
                    }
                }
            }
            match page.page_token {
                Some(token) => page_token = Some(token),
                None => break,
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
}

/// What an `object_store` error means for the caller.
enum Class {
    /// 404: a missing object (or bucket).
    NotFound,
    /// 401 / 403: credentials refused or not allowed.
    Denied,
    /// Anything else.
    Other,
}

fn classify(e: &object_store::Error) -> Class {
    match e {
        object_store::Error::NotFound { .. } => Class::NotFound,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => Class::Denied,
        // Some requests (e.g. list) wrap the HTTP failure in a generic error.
        _ => match http_status(e) {
            Some(404) => Class::NotFound,
            Some(401 | 403) => Class::Denied,
            _ => Class::Other,
        },
    }
}

/// The HTTP status of a failed request, from `object_store`'s message.
fn http_status(e: &(dyn StdError + 'static)) -> Option<u16> {
    let text = chain(e);
    let marker = "status code: ";
    let start = text.find(marker)? + marker.len();
    text.get(start..start + 3)?.parse().ok()
}

/// `true` if a 404 came from a missing bucket rather than a missing object.
fn is_no_such_bucket(e: &object_store::Error) -> bool {
    chain(e).contains("NoSuchBucket")
}

/// Why a request never got an HTTP answer, if that is what failed.
fn transport_failure(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut kind = None;
    let mut io_kind = None;
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<HttpError>() {
            kind.get_or_insert(h.kind());
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        cur = err.source();
    }
    let text = chain(e).to_ascii_lowercase();
    let why = match (kind?, io_kind) {
        (_, Some(std::io::ErrorKind::ConnectionRefused)) => "connection refused",
        (_, Some(std::io::ErrorKind::TimedOut)) => "timed out",
        (_, _) if text.contains("dns error") || text.contains("failed to lookup") => {
            "cannot resolve the host name"
        }
        (HttpErrorKind::Timeout, _) => "timed out",
        (HttpErrorKind::Connect, _) => "cannot connect",
        (HttpErrorKind::Request, _) => "the request could not be sent",
        (HttpErrorKind::Interrupted, _) => "the connection was interrupted",
        _ => return None,
    };
    Some(why.to_string())
}

/// An error and its sources on one line, each cause once.
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        if !s.is_empty() && !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = err.source();
    }
    out
}

/// `Code: Message` from an S3 XML error body, if the error carries one.
fn server_message(e: &(dyn StdError + 'static)) -> Option<String> {
    let text = chain(e);
    let between = |open: &str, close: &str| {
        let start = text.find(open)? + open.len();
        let len = text[start..].find(close)?;
        Some(text[start..start + len].to_string())
    };
    match (
        between("<Code>", "</Code>"),
        between("<Message>", "</Message>"),
    ) {
        (Some(code), Some(message)) => Some(format!("{code}: {message}")),
        (Some(code), None) => Some(code),
        (None, Some(message)) => Some(message),
        (None, None) => None,
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

    /// [`SingleWriter::Trusted`] with `lock=none`; otherwise what the probe
    /// of conditional writes found ([`SingleWriter::Lease`], or
    /// [`SingleWriter::Unavailable`] naming `lock=none`).
    fn single_writer(&self) -> BackendResult<SingleWriter> {
        if self.inner.config.lock == Lock::None {
            return Ok(SingleWriter::Trusted);
        }
        Ok(self.conditional()?.answer)
    }

    fn get_versioned(&self, name: &str) -> BackendResult<(Bytes, ObjectVersion)> {
        let path = self.inner.path(name)?;
        let inner = Arc::clone(&self.inner);
        let name = name.to_string();
        self.run(async move { inner.get_versioned(&name, path).await })
    }

    /// A single-part PUT with `If-None-Match: *` or `If-Match: <ETag>`
    /// (unquoted where the probe found the server needs it).
    fn put_if(&self, name: &str, data: Bytes, condition: PutIf) -> BackendResult<ObjectVersion> {
        let path = self.inner.path(name)?;
        let unquoted = match &condition {
            PutIf::Version(_) => self.conditional()?.unquoted_etag,
            PutIf::Absent => false,
        };
        let inner = Arc::clone(&self.inner);
        let name = name.to_string();
        self.run(async move { inner.put_if(&name, path, data, condition, unquoted).await })
    }

    fn put(&self, name: &str, data: Bytes) -> BackendResult<()> {
        self.put_parts(name, vec![data])
    }

    /// One request whose body is the parts as they are (no joined copy).
    fn put_parts(&self, name: &str, parts: Vec<Bytes>) -> BackendResult<()> {
        let path = self.inner.path(name)?;
        let inner = Arc::clone(&self.inner);
        let name = name.to_string();
        self.run(inner.put(name, path, parts))
    }

    fn put_many(&self, objects: Vec<(String, Bytes)>) -> BackendResult<()> {
        self.put_many_parts(
            objects
                .into_iter()
                .map(|(name, data)| (name, vec![data]))
                .collect(),
        )
    }

    /// Objects in flight at once (`concurrency`, shared by every caller),
    /// each sent as its parts.
    fn put_many_parts(&self, objects: Vec<(String, Vec<Bytes>)>) -> BackendResult<()> {
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

    fn get(&self, name: &str) -> BackendResult<Bytes> {
        let path = self.inner.path(name)?;
        let inner = Arc::clone(&self.inner);
        let name = name.to_string();
        self.run(async move { inner.get(&name, path).await })
    }

    fn get_range(&self, name: &str, range: Range<u64>) -> BackendResult<Bytes> {
        let path = self.inner.path(name)?;
        let inner = Arc::clone(&self.inner);
        let name = name.to_string();
        self.run(async move { inner.get_range(&name, path, range).await })
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

    fn write_concurrency(&self) -> usize {
        self.inner.config.concurrency
    }

    fn counters(&self) -> Vec<(String, u64)> {
        self.inner.counters.snapshot()
    }
}
