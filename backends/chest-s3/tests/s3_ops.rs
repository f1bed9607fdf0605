//! S3-specific behaviour beyond the shared contract: multipart uploads,
//! concurrent `put_many`, the URL prefix, counters, names, retries. Against
//! the real test server (`CHEST_S3_URL`), except the retry test, which needs a
//! server that fails on purpose. Without `CHEST_S3_URL` the tests that need
//! it skip, saying so (fail under `CHEST_REQUIRE_SERVERS=1`).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use chest_core::registry::{open_backend, OpenOptions};
use chest_core::BackendExt;
use chest_core::{Backend, BackendError};
use chest_s3::S3Backend;

fn data(seed: u8, len: usize) -> Bytes {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

fn counter(b: &dyn Backend, name: &str) -> u64 {
    b.counters()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .1
}

#[test]
fn large_objects_go_up_in_parts() {
    let Some(base) = common::s3_url() else { return };
    let url = common::with_prefix(
        &base,
        "multipart",
        &[("part_size", "5MiB"), ("concurrency", "3")],
    );
    let b = S3Backend::open_url(&url).unwrap();
    let big = data(1, (17 << 20) + 3); // four parts: 5 + 5 + 5 + 2 MiB
    let requests_before = counter(&b, "s3_requests");
    b.put("big", big.clone()).unwrap();
    assert_eq!(counter(&b, "s3_multipart_uploads"), 1);
    // create + 4 parts + complete
    assert!(counter(&b, "s3_requests") - requests_before >= 6);
    assert!(b.get("big").unwrap() == big, "the multipart object differs");
    let across = (5u64 << 20) - 10..(10u64 << 20) + 10; // spans three parts
    assert_eq!(
        b.get_range("big", across.clone()).unwrap(),
        big.slice(across.start as usize..across.end as usize)
    );
    // Exactly part_size is a single put.
    b.put("edge", data(2, 5 << 20)).unwrap();
    assert_eq!(counter(&b, "s3_multipart_uploads"), 1);
    // Overwriting with a multipart upload replaces the object.
    let big2 = data(3, (11 << 20) + 1);
    b.put("edge", big2.clone()).unwrap();
    assert!(b.get("edge").unwrap() == big2);
    assert_eq!(counter(&b, "s3_multipart_uploads"), 2);
    assert!(counter(&b, "s3_bytes_up") >= (17 << 20) + (5 << 20) + (11 << 20));
    assert!(counter(&b, "s3_bytes_down") >= (17 << 20) + (11 << 20));
}

#[test]
fn put_many_uploads_concurrently() {
    let Some(base) = common::s3_url() else { return };
    let url = common::with_prefix(&base, "put-many", &[("concurrency", "4")]);
    let b = S3Backend::open_url(&url).unwrap();
    let objects: Vec<(String, Bytes)> = (0..60u8)
        .map(|i| (format!("many/{i:03}"), data(i, 1000 + i as usize * 37)))
        .collect();
    b.put_many(
        objects
            .iter()
            .map(|(n, d)| (n.clone(), vec![d.clone()]))
            .collect(),
    )
    .unwrap();
    let names: Vec<String> = objects.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(b.list("many/").unwrap(), names);
    for (name, bytes) in &objects {
        assert_eq!(&b.get(name).unwrap(), bytes, "{name}");
    }
    assert_eq!(counter(&b, "s3_objects_put"), 60);
    assert_eq!(counter(&b, "s3_errors"), 0);
    // A bad name anywhere refuses the whole batch before anything is written.
    let err = b
        .put_many(vec![
            ("fine/1".into(), vec![data(0, 1)]),
            ("bad//name".into(), vec![data(0, 1)]),
        ])
        .unwrap_err();
    assert!(matches!(err, BackendError::InvalidName { .. }), "{err:?}");
    assert!(b.list("fine/").unwrap().is_empty());
}

#[test]
fn objects_live_under_the_prefix() {
    let Some(base) = common::s3_url() else { return };
    let prefix_url = common::fresh(&base, "prefix");
    let prefix = url::Url::parse(&prefix_url).unwrap().path()[1..].to_string();
    let b = S3Backend::open_url(&prefix_url).unwrap();
    assert_eq!(b.prefix(), prefix);
    assert_eq!(b.bucket(), common::bucket(&base));
    b.put("a/b", data(1, 10)).unwrap();
    // The whole bucket, opened without a prefix, sees the object under it.
    let root = S3Backend::open_url(&base).unwrap();
    assert_eq!(root.list(&prefix).unwrap(), vec![format!("{prefix}/a/b")]);
    assert_eq!(root.get(&format!("{prefix}/a/b")).unwrap(), data(1, 10));
    // A sibling prefix that starts with the same characters sees nothing.
    let sibling =
        S3Backend::open_url(&prefix_url.replacen(&prefix, &format!("{prefix}x"), 1)).unwrap();
    assert!(sibling.list("").unwrap().is_empty());
}

#[test]
fn names_object_store_cannot_hold_are_invalid() {
    let Some(base) = common::s3_url() else { return };
    let b = S3Backend::open_url(&common::fresh(&base, "names")).unwrap();
    for name in ["dots/../up", "./x", "tab\there"] {
        match b.put(name, data(0, 1)) {
            Err(BackendError::InvalidName { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name:?}: expected InvalidName, got {other:?}"),
        }
    }
}

#[test]
fn registry_opens_s3_urls_as_persistent() {
    let Some(base) = common::s3_url() else { return };
    let opened = open_backend(&common::fresh(&base, "registry"), &OpenOptions::default()).unwrap();
    assert!(opened.persistent);
    opened.backend.put("k", data(9, 9)).unwrap();
    assert_eq!(opened.backend.get("k").unwrap(), data(9, 9));
    let names: Vec<String> = opened
        .backend
        .counters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for want in [
        "s3_requests",
        "s3_bytes_up",
        "s3_bytes_down",
        "s3_retryable_failures",
        "s3_errors",
        "s3_objects_put",
        "s3_multipart_uploads",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
}

#[test]
fn debug_and_messages_never_show_the_secret() {
    let Some(base) = common::s3_url() else { return };
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").expect("AWS_SECRET_ACCESS_KEY");
    let b = S3Backend::open_url(&common::fresh(&base, "secret")).unwrap();
    assert!(!format!("{b:?}").contains(&secret));
    assert!(!b.location().contains(&secret));
    let err = b.get("missing").unwrap_err();
    assert!(err.is_not_found());
    assert!(!err.to_string().contains(&secret));
}

/// A fake S3 endpoint: answers `ListObjectsV2` (the probe of `open`), and
/// every other request with `503 SlowDown`. Counts the other requests.
fn failing_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let failures = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&failures);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let count = Arc::clone(&count);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let (status, xml) = if request_line.contains("list-type=2") {
                    (
                        "200 OK",
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult>\
                         <Name>chest-test</Name><KeyCount>0</KeyCount><MaxKeys>1</MaxKeys>\
                         <IsTruncated>false</IsTruncated></ListBucketResult>",
                    )
                } else {
                    count.fetch_add(1, Ordering::SeqCst);
                    (
                        "503 Service Unavailable",
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
                         <Message>Please reduce your request rate.</Message></Error>",
                    )
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{xml}",
                    xml.len()
                );
                let _ = reader.get_mut().write_all(response.as_bytes());
            });
        }
    });
    (endpoint, failures)
}

#[test]
fn spent_retries_name_bucket_and_key() {
    let (endpoint, failures) = failing_server();
    let url = format!(
        "s3://chest-test/run?endpoint={endpoint}&region=garage&access_key_id=GK1&secret_access_key=x&retries=2"
    );
    let b = S3Backend::open_url(&url).unwrap();
    let err = b.put("dir/the-key", data(1, 100)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("s3://chest-test/run/dir/the-key") && msg.contains(&endpoint),
        "names the bucket, key and endpoint: {msg}"
    );
    assert!(msg.contains("after 2 retries"), "{msg}");
    assert!(msg.contains("503"), "{msg}");
    assert_eq!(
        failures.load(Ordering::SeqCst),
        3,
        "one try and two retries"
    );
    assert_eq!(counter(&b, "s3_retryable_failures"), 3);
    assert_eq!(counter(&b, "s3_errors"), 1);
    let err = b.get("dir/other").unwrap_err().to_string();
    assert!(
        err.contains("get of s3://chest-test/run/dir/other"),
        "{err}"
    );
}
