//! The shared conformance suite over a real S3-compatible server (Garage,
//! started by `scripts/garage.sh start`; see `CHEST_S3_URL`). Each location is
//! a fresh prefix of the test bucket, opened through the `s3` URL scheme.
//! Without `CHEST_S3_URL` every check skips, saying so (fails under
//! `CHEST_REQUIRE_SERVERS=1`).

// Linked for its `s3` scheme registration: nothing else names the crate here.
extern crate chest_s3;

mod common;

use std::sync::Arc;

use chest_core::registry::{open_backend, OpenOptions};
use chest_core::testing::{Location, Target};
use chest_core::Backend;

/// The test server's URL (`CHEST_S3_URL`).
struct S3Target(String);

impl S3Target {
    /// `None` when no server is configured: the check skips.
    #[track_caller]
    fn from_env() -> Option<Self> {
        common::s3_url().map(Self)
    }
}

impl Target for S3Target {
    fn fresh(&self) -> Box<dyn Location> {
        Box::new(S3Location(common::fresh(&self.0, "conformance")))
    }
}

struct S3Location(String);

impl Location for S3Location {
    fn open(&self) -> chest_core::Result<Arc<dyn Backend>> {
        let opened = open_backend(&self.0, &OpenOptions::default())?;
        assert!(opened.persistent, "an s3:// store is persistent");
        Ok(opened.backend)
    }
}

// The target expression is evaluated in each test: without a server, the test returns.
chest_core::conformance_tests!(match S3Target::from_env() {
    Some(target) => target,
    None => return,
});
