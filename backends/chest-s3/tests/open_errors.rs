//! `open` fails fast, and says why: a missing bucket, refused credentials, an
//! endpoint where nothing listens, a server that never answers. Against the
//! real test server (`CHEST_S3_URL`) where one is needed; without it those
//! tests skip, saying so (fail under `CHEST_REQUIRE_SERVERS=1`).

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use chest_core::registry::{open_backend, OpenOptions};
use chest_core::{BackendError, Error, ErrorKind};
use chest_s3::S3Backend;

/// The functional bound on `open` in these tests: it must not hang.
const BOUND: Duration = Duration::from_secs(10);

fn open_err(url: &str) -> (Error, Duration) {
    let start = Instant::now();
    let result = S3Backend::open_url(url);
    let took = start.elapsed();
    match result {
        Ok(b) => panic!("opening {url} should fail, but opened {b:?}"),
        Err(e) => (e, took),
    }
}

/// A local port nothing listens on.
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn missing_bucket_is_missing_store() {
    let Some(base) = common::s3_url() else { return };
    let endpoint = common::endpoint(&base);
    let bucket = format!("chest-no-such-bucket-{}", std::process::id());
    let url = format!("s3://{bucket}/p?endpoint={endpoint}&region=garage");
    let (err, took) = open_err(&url);
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Backend(BackendError::MissingStore { .. })),
        "{err:?}"
    );
    assert!(
        msg.contains(&bucket) && msg.contains("does not exist"),
        "{msg}"
    );
    assert!(msg.contains(&endpoint), "names the endpoint: {msg}");
    assert!(took < BOUND, "took {took:?}");
}

#[test]
fn wrong_secret_is_access_denied() {
    let Some(base) = common::s3_url() else { return };
    let key = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_default();
    let url = common::with_prefix(
        &base,
        "badsecret",
        &[
            ("access_key_id", key.as_str()),
            ("secret_access_key", &"0".repeat(64)),
        ],
    );
    let (err, took) = open_err(&url);
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "access denied to bucket {}",
            common::bucket(&base)
        )),
        "{msg}"
    );
    assert!(
        msg.contains("AWS_ACCESS_KEY_ID") && msg.contains("AWS_SECRET_ACCESS_KEY"),
        "{msg}"
    );
    assert!(
        msg.contains(&common::endpoint(&base)),
        "names the endpoint: {msg}"
    );
    assert!(!msg.contains(&"0".repeat(64)), "leaks the secret: {msg}");
    assert_eq!(err.kind(), ErrorKind::Denied, "{err:?}");
    assert!(
        !err.is_temporary(),
        "refused credentials are not worth a retry"
    );
    assert!(took < BOUND, "took {took:?}");
}

#[test]
fn unknown_key_id_is_access_denied() {
    let Some(base) = common::s3_url() else { return };
    let url = common::with_prefix(
        &base,
        "badkey",
        &[
            ("access_key_id", "GK000000000000000000000000"),
            ("secret_access_key", &"1".repeat(64)),
        ],
    );
    let (err, took) = open_err(&url);
    let msg = err.to_string();
    assert!(msg.contains("access denied to bucket"), "{msg}");
    assert_eq!(err.kind(), ErrorKind::Denied, "{err:?}");
    assert!(took < BOUND, "took {took:?}");
}

#[test]
fn nothing_listening_is_unreachable() {
    let endpoint = format!("http://127.0.0.1:{}", dead_port());
    let url = format!(
        "s3://chest-test/p?endpoint={endpoint}&region=garage&access_key_id=GK1&secret_access_key=x"
    );
    let (err, took) = open_err(&url);
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("cannot reach endpoint {endpoint}")),
        "{msg}"
    );
    assert!(msg.contains("connection refused"), "{msg}");
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err:?}");
    assert!(err.is_temporary(), "an unreachable store may come back");
    assert!(took < BOUND, "took {took:?}");
}

#[test]
fn silent_server_times_out() {
    // Accepts connections (the kernel does) but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let url = format!(
        "s3://chest-test/p?endpoint={endpoint}&region=garage&access_key_id=GK1&secret_access_key=x\
         &timeout=1s&connect_timeout=1s"
    );
    let (err, took) = open_err(&url);
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("cannot reach endpoint {endpoint}")) && msg.contains("timed out"),
        "{msg}"
    );
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err:?}");
    assert!(took < BOUND, "took {took:?}");
    drop(listener);
}

#[test]
fn through_the_registry_too() {
    let Some(base) = common::s3_url() else { return };
    let bucket = format!("chest-no-such-bucket-{}", std::process::id());
    let url = format!(
        "s3://{bucket}?endpoint={}&region=garage",
        common::endpoint(&base)
    );
    let err = open_backend(&url, &OpenOptions::default()).unwrap_err();
    assert!(
        matches!(err, Error::Backend(BackendError::MissingStore { .. })),
        "{err:?}"
    );
}

#[test]
fn bad_query_is_invalid_url() {
    let err =
        open_backend("s3://chest-test?endpont=http://x", &OpenOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::InvalidUrl { .. }) && msg.contains("\"endpont\""),
        "{msg}"
    );
}

#[test]
fn no_credentials_says_so() {
    let Some(base) = common::s3_url() else { return };
    // Credentials named in the query are taken as a set: none here, and none from the env
    // would be used. An explicit empty pair means "no credentials".
    let url = format!(
        "s3://chest-test?endpoint={}&region=garage&access_key_id=&secret_access_key=",
        common::endpoint(&base)
    );
    let err = S3Backend::open_url(&url).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("no credentials") && msg.contains("AWS_ACCESS_KEY_ID"),
        "{msg}"
    );
}
