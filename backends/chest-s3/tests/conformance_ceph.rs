//! The shared conformance suite over a second real S3-compatible server: a
//! single-host Ceph RGW (started by `scripts/ceph.sh start`; see
//! `CHEST_CEPH_URL`, which carries its credentials in the query so that the
//! Garage server's `AWS_*` settings stay untouched). Each location is a fresh
//! prefix of the test bucket, opened through the `s3` URL scheme. Without
//! `CHEST_CEPH_URL` every check skips, saying so (fails under
//! `CHEST_REQUIRE_SERVERS=1`).

// Linked for its `s3` scheme registration: nothing else names the crate here.
extern crate chest_s3;

mod common;

use std::sync::Arc;

use chest_core::registry::{open_backend, OpenOptions};
use chest_core::testing::{Location, Target};
use chest_core::Backend;

/// The test server's URL (`CHEST_CEPH_URL`).
struct CephTarget(String);

impl CephTarget {
    /// `None` when no server is configured: the check skips.
    #[track_caller]
    fn from_env() -> Option<Self> {
        common::ceph_url().map(Self)
    }
}

impl Target for CephTarget {
    fn fresh(&self) -> Box<dyn Location> {
        Box::new(CephLocation(common::fresh(&self.0, "conformance-ceph")))
    }

    /// Ceph RGW honours `If-None-Match: *` and `If-Match` (the latter with
    /// the ETag unquoted, which the backend's probe finds): the lease checks
    /// of the suite run here.
    fn conditional_writes(&self) -> bool {
        true
    }
}

struct CephLocation(String);

impl Location for CephLocation {
    fn open(&self) -> chest_core::Result<Arc<dyn Backend>> {
        let opened = open_backend(&self.0, &OpenOptions::default())?;
        assert!(opened.persistent, "an s3:// store is persistent");
        Ok(opened.backend)
    }
}

// The target expression is evaluated in each test: without a server, the test returns.
chest_core::conformance_tests!(match CephTarget::from_env() {
    Some(target) => target,
    None => return,
});
