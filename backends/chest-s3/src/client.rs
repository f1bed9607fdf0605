//! The S3 client under an [`S3Backend`](crate::S3Backend): the
//! `object_store` store built from an [`S3Config`], and the requests the
//! backend runs on its runtime (put, multipart put, get, ranged get, size,
//! delete, list, and the probe of `open`).

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use chest_core::backend::{check_name, check_range};
use chest_core::{BackendError, BackendResult};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMultipartOptions,
    PutOptions, PutPayload, RetryConfig, WriteMultipart,
};

use crate::conditional::Conditional;
use crate::config::{self, S3Config};
use crate::errors::{chain, classify, server_message, transport_failure, Class};
use crate::http::{Counters, SharedConnector};

/// Longest wait for the answer to the probe of [`S3Backend::open`](crate::S3Backend::open), beyond
/// the connect timeout.
pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub(crate) struct Inner {
    pub(crate) config: S3Config,
    pub(crate) location: String,
    /// `prefix/`, or empty.
    pub(crate) root: String,
    pub(crate) endpoint: String,
    pub(crate) store: AmazonS3,
    pub(crate) counters: Arc<Counters>,
    /// What the probe of conditional writes found (run once, when first needed).
    pub(crate) conditional: OnceLock<Conditional>,
    /// `concurrency` permits: the objects of all `put_many` calls in
    /// flight at once (several writer threads share them, so one batch's
    /// last uploads overlap the next batch's first without exceeding it).
    pub(crate) puts: tokio::sync::Semaphore,
    /// `concurrency` permits for the objects of all `get_many` calls (a
    /// chest's background read-ahead overlaps its windows).
    pub(crate) gets: tokio::sync::Semaphore,
}

/// The bound on the probe of `open`: one connect and one request of at most
/// [`PROBE_TIMEOUT`], however long the configured request timeout is.
pub(crate) fn probe_deadline(config: &S3Config) -> std::time::Duration {
    config.connect_timeout + config.timeout.min(PROBE_TIMEOUT)
}

pub(crate) fn client_options(config: &S3Config) -> ClientOptions {
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

pub(crate) fn build_store(
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
    /// The object's key in the bucket, checked.
    pub(crate) fn path(&self, name: &str) -> BackendResult<Path> {
        check_name(&self.location, name)?;
        let key = format!("{}{name}", self.root);
        Path::parse(&key).map_err(|e| BackendError::InvalidName {
            location: self.location.clone(),
            name: name.to_string(),
            reason: format!("not a valid S3 object key for object_store: {e}"),
        })
    }

    /// One `list` of at most one key: the bucket exists, the credentials are
    /// accepted, the endpoint answers.
    pub(crate) async fn probe(&self, probe: AmazonS3) -> BackendResult<()> {
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
    pub(crate) async fn put(
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

    pub(crate) async fn put_multipart(
        &self,
        name: &str,
        path: Path,
        data: Bytes,
    ) -> BackendResult<()> {
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

    pub(crate) async fn get(&self, name: &str, path: Path) -> BackendResult<Bytes> {
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

    pub(crate) async fn size(&self, name: &str, path: &Path) -> BackendResult<u64> {
        self.store
            .head(path)
            .await
            .map(|m| m.size)
            .map_err(|e| self.map_err("head", name, e))
    }

    pub(crate) async fn get_range(
        &self,
        name: &str,
        path: Path,
        range: Range<u64>,
    ) -> BackendResult<Bytes> {
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

    pub(crate) async fn delete(&self, name: &str, path: Path) -> BackendResult<()> {
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.map_err("delete", name, e)),
        }
    }

    pub(crate) async fn list(&self, prefix: &str) -> BackendResult<Vec<String>> {
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
