//! The shared conformance suite over a real S3-compatible server (Garage,
//! started by `scripts/garage.sh start`; see `CHEST_S3_URL`). Each location is
//! a fresh prefix of the test bucket, opened through the `s3` URL scheme.

// Linked for its `s3` scheme registration: nothing else names the crate here.
extern crate chest_s3;

mod common;

use std::sync::Arc;

use chest_core::conformance::{Location, Target};
use chest_core::registry::{open_backend, OpenOptions};
use chest_core::Backend;

struct S3Target;

impl Target for S3Target {
    fn fresh(&self) -> Box<dyn Location> {
        Box::new(S3Location(common::fresh_url("conformance")))
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

chest_core::conformance_tests!(S3Target);
