//! Shared by the integration tests: the test servers' URLs and unique prefixes.
//!
//! A test that needs a server starts with `let Some(base) = common::s3_url()
//! else { return };` (or `ceph_url`): without the server's settings it skips,
//! with a `SKIPPED:` line on stderr, and under `CHEST_REQUIRE_SERVERS=1`
//! (set by `scripts/test.sh`) it fails instead (see
//! `chest_core::testing::servers`).
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use chest_core::testing::servers::{self, CEPH, GARAGE};

/// `CHEST_S3_URL` (the Garage test server), or `None`: skip the test.
#[track_caller]
pub fn s3_url() -> Option<String> {
    servers::server("CHEST_S3_URL", GARAGE)
}

/// `CHEST_CEPH_URL` (the Ceph RGW test server, credentials in its query), or
/// `None`: skip the test.
#[track_caller]
pub fn ceph_url() -> Option<String> {
    servers::server("CHEST_CEPH_URL", CEPH)
}

/// A prefix no other test (in this or another process) uses.
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{tag}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// `url` with `/tests/<unique prefix>` appended to its path and `extra` query pairs added.
pub fn with_prefix(url: &str, tag: &str, extra: &[(&str, &str)]) -> String {
    let mut parsed = url::Url::parse(url).expect("the server's URL is not a URL");
    let path = format!(
        "{}/tests/{}",
        parsed.path().trim_end_matches('/'),
        unique(tag)
    );
    parsed.set_path(&path);
    if !extra.is_empty() {
        parsed.query_pairs_mut().extend_pairs(extra);
    }
    parsed.to_string()
}

/// A fresh, empty prefix of the bucket of `url` (a server's URL), as an `s3://` URL.
pub fn fresh(url: &str, tag: &str) -> String {
    with_prefix(url, tag, &[])
}

/// The endpoint of `url` (a server's URL).
pub fn endpoint(url: &str) -> String {
    let url = url::Url::parse(url).expect("the server's URL is not a URL");
    url.query_pairs()
        .find(|(k, _)| k == "endpoint")
        .map(|(_, v)| v.into_owned())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .expect("the server's URL has no endpoint= and AWS_ENDPOINT_URL is not set")
}

/// The bucket of `url` (a server's URL).
pub fn bucket(url: &str) -> String {
    let url = url::Url::parse(url).expect("the server's URL is not a URL");
    url.host_str()
        .expect("the server's URL has no bucket")
        .to_string()
}

/// The three-node Garage cluster of `scripts/garage.sh cluster-start`: its
/// nodes' S3 endpoints, its bucket and the script (to stop and start nodes).
pub struct Cluster {
    pub nodes: [String; 3],
    pub bucket: String,
    pub script: String,
}

/// The cluster's settings, or `None`: skip the test (under
/// `CHEST_REQUIRE_SERVERS=1`, fail).
#[track_caller]
pub fn cluster() -> Option<Cluster> {
    let [node1, node2, node3, script] = servers::servers(
        [
            "CHEST_S3_NODE1",
            "CHEST_S3_NODE2",
            "CHEST_S3_NODE3",
            "CHEST_GARAGE_SCRIPT",
        ],
        servers::GARAGE_CLUSTER,
    )?;
    Some(Cluster {
        nodes: [node1, node2, node3],
        bucket: std::env::var("CHEST_S3_CLUSTER_BUCKET").unwrap_or_else(|_| "chest-test".into()),
        script,
    })
}
