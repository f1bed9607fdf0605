//! Conditional writes — create-only (`If-None-Match: *`) and
//! compare-and-swap on the ETag (`If-Match`) — and the probe that finds out
//! whether the server honours them, which a chest's writer lease needs
//! (see [`chest_core::SingleWriter`]).
//!
//! Servers differ, and none says so: AWS S3, MinIO, R2 and Ceph RGW honour
//! both conditions; Garage ignores both (a second create succeeds). Ceph RGW
//! 16 compares `If-Match` with its stored ETag byte for byte, so the quoted
//! ETag that S3 returns (and `object_store` sends back) never matches there,
//! while the unquoted one does. So the first writable open asks the server,
//! on a scratch object `lease.probe-<random>` under the prefix (deleted
//! again): does a second create fail, does a compare-and-swap with a wrong
//! ETag fail, and does one with the right ETag succeed, quoted or unquoted?

use bytes::Bytes;
use chest_core::PutMode as Condition;
use chest_core::{BackendError, BackendResult, ObjectVersion, SingleWriter};
use object_store::path::Path;
use object_store::{
    GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
};

use crate::client::Inner;
use crate::http::Counters;

/// What the probe found.
#[derive(Debug, Clone)]
pub(crate) struct Conditional {
    /// The answer for [`chest_core::Backend::single_writer`].
    pub answer: SingleWriter,
    /// Send `If-Match` with the ETag unquoted (Ceph RGW 16).
    pub unquoted_etag: bool,
}

impl Inner {
    /// A whole object with its ETag.
    pub(crate) async fn get_versioned(
        &self,
        name: &str,
        path: Path,
    ) -> BackendResult<(Bytes, ObjectVersion)> {
        let result = self
            .store
            .get_opts(&path, GetOptions::default())
            .await
            .map_err(|e| self.map_err("get", name, e))?;
        let e_tag = result.meta.e_tag.clone().ok_or_else(|| {
            self.other(
                format!(
                    "get of {}: the server sent no ETag, which conditional writes need",
                    self.describe(path.as_ref())
                ),
                None,
            )
        })?;
        let bytes = result
            .bytes()
            .await
            .map_err(|e| self.map_err("get (body)", name, e))?;
        Ok((bytes, ObjectVersion::new(e_tag)))
    }

    /// A conditional single-part PUT; a condition that does not hold is
    /// [`BackendError::Conflict`].
    pub(crate) async fn put_if(
        &self,
        name: &str,
        path: Path,
        data: Bytes,
        condition: Condition,
        unquoted_etag: bool,
    ) -> BackendResult<ObjectVersion> {
        let (mode, wanted) = match &condition {
            Condition::Overwrite => (PutMode::Overwrite, None),
            Condition::Create => (PutMode::Create, None),
            Condition::Update(v) => {
                let tag = if unquoted_etag {
                    v.as_str().trim_matches('"').to_string()
                } else {
                    v.as_str().to_string()
                };
                let mode = PutMode::Update(UpdateVersion {
                    e_tag: Some(tag),
                    version: None,
                });
                (mode, Some(v.as_str().to_string()))
            }
        };
        let put = self
            .store
            .put_opts(&path, PutPayload::from(data), PutOptions::from(mode))
            .await;
        let conflict = |detail: String| BackendError::Conflict {
            location: self.location.clone(),
            name: name.to_string(),
            detail,
        };
        match put {
            Ok(result) => {
                Counters::add(&self.counters.objects_put, 1);
                result.e_tag.map(ObjectVersion::new).ok_or_else(|| {
                    self.other(
                        format!(
                            "conditional put of {}: the server sent no ETag",
                            self.describe(path.as_ref())
                        ),
                        None,
                    )
                })
            }
            Err(object_store::Error::AlreadyExists { .. }) => Err(conflict("it exists".into())),
            Err(object_store::Error::Precondition { .. }) => Err(conflict(match wanted {
                Some(v) => format!("it is missing or no longer at version {v}"),
                None => "it exists".into(),
            })),
            Err(e) => Err(self.map_err("conditional put", name, e)),
        }
    }

    /// Finds out whether the server honours conditional writes (see the
    /// module docs). Leaves nothing behind but, if its last delete fails, the
    /// scratch object (which chests ignore).
    pub(crate) async fn probe_conditional(&self, token: u64) -> BackendResult<Conditional> {
        let name = format!("lease.probe-{token:016x}");
        let path = self.path(&name)?;
        let result = self.probe_steps(&name, &path).await;
        if let Err(e) = self.store.delete(&path).await {
            tracing::debug!(error = %e, "could not delete the probe object {name}");
        }
        result
    }

    async fn probe_steps(&self, name: &str, path: &Path) -> BackendResult<Conditional> {
        let put = |data: &'static [u8], condition: Condition, unquoted: bool| {
            self.put_if(
                name,
                path.clone(),
                Bytes::from_static(data),
                condition,
                unquoted,
            )
        };
        let unavailable = |what: &str| Conditional {
            answer: SingleWriter::Unavailable(format!(
                "the server at {} {what}, so a chest cannot keep to one writer there (two \
                 writers would destroy each other's data). If you can guarantee that only one \
                 process writes to {} at a time, add `lock=none` to the URL",
                self.endpoint, self.location
            )),
            unquoted_etag: false,
        };
        let first = put(b"probe 1", Condition::Create, false).await?;
        match put(b"probe 2", Condition::Create, false).await {
            Ok(_) => {
                return Ok(unavailable(
                    "accepted a second create-only write of one object (it ignores \
                     `If-None-Match: *`)",
                ))
            }
            Err(BackendError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
        let wrong = Condition::Update(ObjectVersion::new("\"0123456789abcdef0123456789abcdef\""));
        match put(b"probe 3", wrong, false).await {
            Ok(_) => {
                return Ok(unavailable(
                    "accepted a compare-and-swap write with a wrong ETag (it ignores `If-Match`)",
                ))
            }
            Err(BackendError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
        for unquoted_etag in [false, true] {
            match put(b"probe 4", Condition::Update(first.clone()), unquoted_etag).await {
                Ok(_) => {
                    return Ok(Conditional {
                        answer: SingleWriter::Lease,
                        unquoted_etag,
                    })
                }
                Err(BackendError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(unavailable(
            "refused a compare-and-swap write with the object's own ETag, quoted or not",
        ))
    }
}
