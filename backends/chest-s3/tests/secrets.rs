//! No secret of an `s3://` URL (`secret_access_key`, `session_token`, a
//! password in the endpoint) in what the backend says: its errors (and
//! their causes, shown and debugged), its location, its `Debug`. Needs no S3
//! server: a local socket answers every request with one fixed response, or
//! nothing listens at all.

use std::error::Error as _;
use std::io::{Read, Write};
use std::net::TcpListener;

use chest_core::registry::{open_backend, OpenOptions};
use chest_core::{Backend, BackendError, Error};
use chest_s3::{S3Backend, S3Config};

const SECRET: &str = "SECRETX999";
const TOKEN: &str = "TOKENX999";
const PASSWORD: &str = "PASSWORDX999";

/// A server that answers every request with `status` and `body`.
fn fake_server(status: &'static str, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut head = Vec::new();
            let mut chunk = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&chunk[..n]),
                }
            }
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    format!("http://{addr}")
}

/// A local endpoint where nothing listens.
fn dead_endpoint() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

fn url(endpoint: &str, extra: &str) -> String {
    format!(
        "s3://chest-test/p?endpoint={endpoint}&region=r&access_key_id=AKID123\
         &secret_access_key={SECRET}&session_token={TOKEN}{extra}"
    )
}

#[track_caller]
fn assert_no_secret(what: &str, text: &str) {
    for secret in [SECRET, TOKEN, PASSWORD] {
        assert!(!text.contains(secret), "{what} shows {secret}: {text}");
    }
}

/// The error, its `Debug` and every cause in its chain.
#[track_caller]
fn assert_error_has_no_secret(what: &str, err: &Error) {
    assert_no_secret(what, &err.to_string());
    assert_no_secret(what, &format!("{err:?}"));
    let mut cause = err.source();
    while let Some(c) = cause {
        assert_no_secret(what, &c.to_string());
        assert_no_secret(what, &format!("{c:?}"));
        cause = c.source();
    }
}

fn open_err(url: &str) -> Error {
    match S3Backend::open_url(url) {
        Ok(b) => panic!("{url} opened: {b:?}"),
        Err(e) => e,
    }
}

#[test]
fn an_opened_backend_shows_no_secret() {
    let endpoint = fake_server(
        "200 OK",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult>\
         <Name>chest-test</Name><Prefix>p/</Prefix><KeyCount>0</KeyCount><MaxKeys>1</MaxKeys>\
         <IsTruncated>false</IsTruncated></ListBucketResult>",
    );
    let backend = S3Backend::open_url(&url(&endpoint, "")).unwrap();
    assert_no_secret("Debug of the backend", &format!("{backend:?}"));
    assert_no_secret("Debug of its config", &format!("{:?}", backend.config()));
    assert_no_secret("its location", backend.location());
    assert!(
        format!("{:?}", backend.config()).contains("AKID123"),
        "the access key id is shown"
    );
    let opened = open_backend(&url(&endpoint, ""), &OpenOptions::default()).unwrap();
    assert_no_secret("Debug of the opened backend", &format!("{opened:?}"));
    assert_no_secret("its location", opened.backend.location());
}

#[test]
fn refused_credentials_show_no_secret() {
    let endpoint = fake_server(
        "403 Forbidden",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>\
         <Message>Access Denied</Message></Error>",
    );
    let err = open_err(&url(&endpoint, ""));
    assert!(
        matches!(err, Error::Backend(BackendError::Denied { .. })),
        "{err:?}"
    );
    assert_error_has_no_secret("a refusal", &err);
}

#[test]
fn a_missing_bucket_shows_no_secret() {
    let endpoint = fake_server(
        "404 Not Found",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchBucket</Code>\
         <Message>The specified bucket does not exist</Message></Error>",
    );
    let err = open_err(&url(&endpoint, ""));
    assert!(
        matches!(err, Error::Backend(BackendError::MissingStore { .. })),
        "{err:?}"
    );
    assert_error_has_no_secret("a missing bucket", &err);
}

#[test]
fn an_unreachable_endpoint_shows_no_secret() {
    let err = open_err(&url(&dead_endpoint(), ""));
    assert!(
        matches!(err, Error::Backend(BackendError::Unreachable { .. })),
        "{err:?}"
    );
    assert_error_has_no_secret("an unreachable endpoint", &err);
    let err = open_backend(&url(&dead_endpoint(), ""), &OpenOptions::default()).unwrap_err();
    assert_error_has_no_secret("an unreachable endpoint (registry)", &err);
}

#[test]
fn refused_urls_show_no_secret() {
    let endpoint = dead_endpoint();
    let with_password = endpoint.replace("http://", &format!("http://user:{PASSWORD}@"));
    let urls = [
        // an unknown query key, a bad value
        url(&endpoint, "&endpont=x"),
        url(&endpoint, "&concurrency=0"),
        url(&endpoint, "&lock=maybe"),
        // a bucket that is no host name: the URL does not parse
        url(&endpoint, "").replace("chest-test", "bad bucket"),
        // a password in the endpoint, or in the URL itself
        url(&with_password, ""),
        format!("s3://user:{PASSWORD}@chest-test/p?secret_access_key={SECRET}"),
        // through the zstd layer's URL
        format!("zstd+{}", url(&endpoint, "&endpont=x")),
    ];
    for u in &urls {
        let err = open_err(u);
        assert_error_has_no_secret(u, &err);
        let err = open_backend(u, &OpenOptions::default()).unwrap_err();
        assert_error_has_no_secret(u, &err);
        assert!(err.to_string().contains("***"), "{err}");
    }
    let config = S3Config::from_url(&url::Url::parse(&url(&endpoint, "")).unwrap()).unwrap();
    assert_no_secret("Debug of a config", &format!("{config:?}"));
    assert_no_secret("location of a config", &config.location());
}
