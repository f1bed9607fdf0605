//! Shared by the integration tests: the test server's URL and unique prefixes.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// `CHEST_S3_URL`, or a panic saying how to start the test server. These
/// tests never skip: without a server they fail.
pub fn s3_url() -> String {
    match std::env::var("CHEST_S3_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "CHEST_S3_URL is not set: the chest-s3 tests need a real S3 server. Start one with \
             `scripts/garage.sh start` and load its settings with `. \"$(scripts/garage.sh env-file)\"` \
             (or run every test with scripts/test.sh, which does both)"
        ),
    }
}

/// `CHEST_CEPH_URL` (the Ceph RGW test server, credentials in its query), or a
/// panic saying how to start it. Like [`s3_url`], never a skip.
pub fn ceph_url() -> String {
    match std::env::var("CHEST_CEPH_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "CHEST_CEPH_URL is not set: the Ceph tests of chest-s3 need a real Ceph RGW. Start one \
             with `scripts/ceph.sh start` and load its settings with `. \"$(scripts/ceph.sh env-file)\"` \
             (or run every test with scripts/test.sh, which does both)"
        ),
    }
}

/// A fresh, empty prefix of the Ceph RGW test bucket, as an `s3://` URL.
pub fn fresh_ceph_url(tag: &str) -> String {
    with_prefix(&ceph_url(), tag, &[])
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
    let mut parsed = url::Url::parse(url).expect("CHEST_S3_URL is not a URL");
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

/// A fresh, empty prefix of the test bucket, as an `s3://` URL.
pub fn fresh_url(tag: &str) -> String {
    with_prefix(&s3_url(), tag, &[])
}

/// The test server's endpoint (from `CHEST_S3_URL`).
pub fn endpoint() -> String {
    let url = url::Url::parse(&s3_url()).expect("CHEST_S3_URL is not a URL");
    url.query_pairs()
        .find(|(k, _)| k == "endpoint")
        .map(|(_, v)| v.into_owned())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .expect("CHEST_S3_URL has no endpoint= and AWS_ENDPOINT_URL is not set")
}

/// The test bucket (from `CHEST_S3_URL`).
pub fn bucket() -> String {
    let url = url::Url::parse(&s3_url()).expect("CHEST_S3_URL is not a URL");
    url.host_str()
        .expect("CHEST_S3_URL has no bucket")
        .to_string()
}
