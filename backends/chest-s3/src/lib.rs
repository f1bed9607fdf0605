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
//! use chest_core::{Backend, BackendExt};
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
mod backend;
mod client;
mod conditional;
mod config;
mod errors;
mod http;

use std::sync::Arc;

use chest_core::registry::{OpenOptions, OpenedBackend, Scheme};
#[cfg(doc)]
use chest_core::{Backend, BackendError};
use url::Url;

pub use backend::S3Backend;
pub use client::PROBE_TIMEOUT;
pub use config::{
    Lock, S3Config, DEFAULT_CONCURRENCY, DEFAULT_CONNECT_TIMEOUT, DEFAULT_PART_SIZE,
    DEFAULT_RETRIES, DEFAULT_TIMEOUT, MAX_PART_SIZE, MIN_PART_SIZE, QUERY_KEYS, RETRY_TIMEOUT,
};

/// Opens the store an `s3://` URL names (the `s3` scheme's factory).
pub fn open(url: &Url, _opts: &OpenOptions) -> chest_core::Result<OpenedBackend> {
    let config = S3Config::from_url(url)?;
    Ok(OpenedBackend {
        backend: Arc::new(S3Backend::open(config)?),
        persistent: true,
    })
}

inventory::submit! { Scheme { name: "s3", open } }
