//! [`S3Config`]: everything an [`S3Backend`](crate::S3Backend) needs, from a URL and the environment.

use std::fmt;
use std::time::Duration;

use chest_core::registry::{parse_duration, parse_size, Query};
use chest_core::{redact_url, Error, Result};
use url::Url;

/// The query keys an `s3://` URL accepts; any other key is an error. What
/// each one takes, and its default, is in the [crate docs' table](crate#url).
pub const QUERY_KEYS: &[&str] = &[
    "endpoint",
    "region",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "allow_http",
    "virtual_hosted",
    "connect_timeout",
    "timeout",
    "retries",
    "concurrency",
    "part_size",
    "reuse_connections",
    "lock",
];

/// Environment variables of the AWS credential chain passed on to `object_store`
/// (web identity / container credentials), besides the ones [`S3Config`] reads itself.
pub(crate) const PASS_THROUGH_ENV: &[&str] = &[
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_ENDPOINT_URL_STS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
];

/// Default connect timeout (`connect_timeout`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default timeout of one request, from connecting to the end of the body (`timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of retries of a failed request (`retries`).
pub const DEFAULT_RETRIES: usize = 5;
/// Default bound on objects (in `put_many`) and parts (in a multipart upload) in flight (`concurrency`).
pub const DEFAULT_CONCURRENCY: usize = 8;

/// The most requests `concurrency` may allow in flight.
pub const MAX_CONCURRENCY: usize = 1024;
/// Default size above which an object goes up as a multipart upload, and the size of its parts (`part_size`).
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// Smallest accepted `part_size`: S3 refuses parts under 5 MiB (except the last one).
pub const MIN_PART_SIZE: usize = 5 << 20;
/// Largest accepted `part_size` (the S3 limit for one part).
pub const MAX_PART_SIZE: usize = 5 << 30;
/// How long after its first attempt a request is no longer retried.
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(60);

/// How to reach one bucket (and prefix) of an S3-compatible store.
///
/// Usually made from a URL by [`S3Config::from_url`]; the fields can also be set
/// directly before [`S3Backend::open`](crate::S3Backend::open). `Debug` does not
/// print the secret key or the session token (it shows the access key id).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// The prefix every object name is put under: empty, or `/`-separated
    /// non-empty components without a leading or trailing `/`.
    pub prefix: String,
    /// The endpoint (`http://127.0.0.1:3900`); `None` for AWS itself.
    pub endpoint: Option<String>,
    /// The region; `None` means `us-east-1`.
    pub region: Option<String>,
    /// Access key id; `None` leaves credentials to the AWS chain (web identity,
    /// container credentials, instance metadata).
    pub access_key_id: Option<String>,
    /// Secret access key, with `access_key_id`.
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// Allow plain `http://` endpoints.
    pub allow_http: bool,
    /// Virtual-hosted-style requests (`bucket.endpoint/key`) instead of
    /// path-style (`endpoint/bucket/key`).
    pub virtual_hosted: bool,
    /// Bound on establishing a connection.
    pub connect_timeout: Duration,
    /// Bound on one request, from connecting to the end of the response body.
    pub timeout: Duration,
    /// Retries of a request that failed transiently (5xx, 429, connection
    /// errors, timeouts), with exponential backoff and jitter.
    pub retries: usize,
    /// Objects in flight in `put_many`; parts in flight in one multipart upload.
    pub concurrency: usize,
    /// Objects larger than this go up as multipart uploads of parts of this size.
    pub part_size: usize,
    /// Keep idle connections open for the next request. Off by default for a
    /// plain-`http` loopback endpoint (a local test server): Garage does not
    /// set `TCP_NODELAY`, so a reused connection stalls about 40 ms on
    /// delayed ACKs for many responses, while a new loopback connection costs
    /// a fraction of a millisecond.
    pub reuse_connections: bool,
    /// How a chest keeps to one writer here (`lock=`): with a lease
    /// ([`Lock::Lease`], the default), or on its user's word ([`Lock::None`]).
    pub lock: Lock,
}

/// How a chest over this store keeps to one writer (the `lock` query key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Lock {
    /// `lock=lease` (the default): a writer takes a lease with conditional
    /// writes; a server that ignores them (found by a probe at the first
    /// writable open) makes writable opens fail.
    #[default]
    Lease,
    /// `lock=none`: no lease; the user guarantees that at most one process
    /// writes to the location at a time (for servers without conditional
    /// writes, such as Garage). Two writers then corrupt the chest.
    None,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| chest_core::REDACTED);
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint.as_deref().map(redact_url))
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted", &self.virtual_hosted)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("concurrency", &self.concurrency)
            .field("part_size", &self.part_size)
            .field("reuse_connections", &self.reuse_connections)
            .field("lock", &self.lock)
            .finish()
    }
}

impl S3Config {
    /// A configuration for `bucket` with every default and nothing from the
    /// environment (no endpoint, region or credentials).
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            allow_http: false,
            virtual_hosted: false,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            concurrency: DEFAULT_CONCURRENCY,
            part_size: DEFAULT_PART_SIZE,
            reuse_connections: true,
            lock: Lock::Lease,
        }
    }

    /// Reads an `s3://bucket/prefix?key=value&...` URL, filling what the query
    /// leaves out from the environment (`AWS_ENDPOINT_URL`, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, ...). Every key, its values and its default: the
    /// [crate docs' table](crate#url). The query wins over the environment.
    pub fn from_url(url: &Url) -> Result<Self> {
        Self::from_url_with_env(url, |name| std::env::var(name).ok())
    }

    /// [`from_url`](Self::from_url) with the environment given as a function
    /// (for tests and for programs that keep their settings elsewhere).
    pub fn from_url_with_env(url: &Url, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidUrl {
            url: redact_url(url.as_str()).into_owned(),
            reason,
        };
        if url.scheme() != "s3" {
            return Err(invalid(format!(
                "the scheme is {:?}, not \"s3\"",
                url.scheme()
            )));
        }
        if url.username() != "" || url.password().is_some() || url.port().is_some() {
            return Err(invalid(
                "put credentials in the query (access_key_id, secret_access_key) or in AWS_* \
                 variables, and the endpoint in `endpoint=`; the host of an s3:// URL is the bucket"
                    .into(),
            ));
        }
        let bucket = url.host_str().unwrap_or("").to_string();
        if bucket.is_empty() {
            return Err(invalid(
                "no bucket: expected s3://bucket/optional/prefix".into(),
            ));
        }
        let prefix = parse_prefix(url).map_err(invalid)?;
        let query = Query::parse(url, QUERY_KEYS)?;
        let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
        let from_query = |key: &str| non_empty(query.get(key).map(str::to_string));

        let endpoint = from_query("endpoint")
            .or_else(|| non_empty(env("AWS_ENDPOINT_URL_S3")))
            .or_else(|| non_empty(env("AWS_ENDPOINT_URL")))
            .or_else(|| non_empty(env("AWS_ENDPOINT")))
            .map(|e| e.trim_end_matches('/').to_string());
        if let Some(e) = &endpoint {
            let shown = redact_url(e);
            let parsed =
                Url::parse(e).map_err(|err| invalid(format!("endpoint {shown:?}: {err}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(invalid(format!(
                    "endpoint {shown:?} is not an http:// or https:// URL"
                )));
            }
        }
        let region = from_query("region")
            .or_else(|| non_empty(env("AWS_REGION")))
            .or_else(|| non_empty(env("AWS_DEFAULT_REGION")));

        // Credentials come as a set: from the query if it names any, else from the environment.
        let (access_key_id, secret_access_key, session_token) =
            if query.get("access_key_id").is_some()
                || query.get("secret_access_key").is_some()
                || query.get("session_token").is_some()
            {
                (
                    from_query("access_key_id"),
                    from_query("secret_access_key"),
                    from_query("session_token"),
                )
            } else {
                (
                    non_empty(env("AWS_ACCESS_KEY_ID")),
                    non_empty(env("AWS_SECRET_ACCESS_KEY")),
                    non_empty(env("AWS_SESSION_TOKEN")),
                )
            };
        match (&access_key_id, &secret_access_key) {
            (Some(_), None) => {
                return Err(invalid(
                    "an access key id is given but no secret access key \
                     (secret_access_key= or AWS_SECRET_ACCESS_KEY)"
                        .into(),
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "a secret access key is given but no access key id \
                     (access_key_id= or AWS_ACCESS_KEY_ID)"
                        .into(),
                ))
            }
            _ => {}
        }

        let allow_http = query.get_bool("allow_http")?.unwrap_or_else(|| {
            endpoint
                .as_deref()
                .is_some_and(|e| e.to_ascii_lowercase().starts_with("http://"))
        });
        let virtual_hosted = query.get_bool("virtual_hosted")?.unwrap_or(false);
        let duration = |key: &str, default: Duration| -> Result<Duration> {
            Ok(query
                .get_with(key, |v| {
                    parse_duration(v).and_then(|d| {
                        if d.is_zero() {
                            Err("the duration must be above zero".into())
                        } else {
                            Ok(d)
                        }
                    })
                })?
                .unwrap_or(default))
        };
        let connect_timeout = duration("connect_timeout", DEFAULT_CONNECT_TIMEOUT)?;
        let timeout = duration("timeout", DEFAULT_TIMEOUT)?;
        let retries = query
            .get_parsed::<usize>("retries")?
            .unwrap_or(DEFAULT_RETRIES);
        let concurrency = query
            .get_parsed::<usize>("concurrency")?
            .unwrap_or(DEFAULT_CONCURRENCY);
        let part_size = query
            .get_with("part_size", |v| {
                parse_size(v).and_then(|n| usize::try_from(n).map_err(|_| "too large".into()))
            })?
            .unwrap_or(DEFAULT_PART_SIZE);
        let reuse_connections = query
            .get_bool("reuse_connections")?
            .unwrap_or_else(|| !endpoint.as_deref().is_some_and(is_loopback_http));
        let lock = match query.get("lock") {
            None | Some("lease") => Lock::Lease,
            Some("none") => Lock::None,
            Some(v) => {
                return Err(invalid(format!(
                    "query key \"lock\"={v:?}: expected `lease` (the default) or `none`"
                )))
            }
        };
        let config = Self {
            bucket,
            prefix,
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            session_token,
            allow_http,
            virtual_hosted,
            connect_timeout,
            timeout,
            retries,
            concurrency,
            part_size,
            reuse_connections,
            lock,
        };
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    /// Checks the values that `from_url` cannot produce wrong but a caller setting
    /// fields by hand can; the reason says which.
    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        if self.bucket.is_empty() || self.bucket.contains('/') {
            return Err(format!("invalid bucket name {:?}", self.bucket));
        }
        if !self.prefix.is_empty() {
            if self.prefix.split('/').any(str::is_empty) {
                return Err(format!(
                    "prefix {:?} has an empty `/`-separated component",
                    self.prefix
                ));
            }
            object_store::path::Path::parse(&self.prefix)
                .map_err(|e| format!("prefix {:?}: {e}", self.prefix))?;
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(format!(
                "concurrency {} is outside 1..={MAX_CONCURRENCY}",
                self.concurrency
            ));
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(format!(
                "part_size {} is outside {}..={} bytes (5 MiB..=5 GiB, the S3 limits)",
                self.part_size, MIN_PART_SIZE, MAX_PART_SIZE
            ));
        }
        if self.connect_timeout.is_zero() || self.timeout.is_zero() {
            return Err("timeouts must be longer than zero".into());
        }
        if let Some(e) = &self.endpoint {
            // S3 takes credentials in signed headers: a user or password
            // in the endpoint would only end up in messages.
            if Url::parse(e).is_ok_and(|u| !u.username().is_empty() || u.password().is_some()) {
                return Err(format!(
                    "endpoint {} carries credentials: give them as access_key_id= and \
                     secret_access_key= (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                    redact_url(e)
                ));
            }
            if !self.allow_http && e.to_ascii_lowercase().starts_with("http://") {
                return Err(format!(
                    "endpoint {} is plain http but allow_http is false",
                    redact_url(e)
                ));
            }
        }
        Ok(())
    }

    /// The store's location for messages: `s3://bucket/prefix` with the
    /// endpoint (never credentials: the endpoint is shown through
    /// [`redact_url`]).
    pub fn location(&self) -> String {
        let mut s = format!("s3://{}", self.bucket);
        if !self.prefix.is_empty() {
            s.push('/');
            s.push_str(&self.prefix);
        }
        if let Some(e) = &self.endpoint {
            s.push_str(" at ");
            s.push_str(&redact_url(e));
        }
        s
    }

    /// The endpoint for messages (`AWS S3 (region ...)` without one).
    pub(crate) fn endpoint_for_messages(&self) -> String {
        match &self.endpoint {
            Some(e) => redact_url(e).into_owned(),
            None => format!(
                "AWS S3 (region {})",
                self.region.as_deref().unwrap_or("us-east-1")
            ),
        }
    }
}

/// `true` for `http://localhost...`, `http://127.x.y.z...`, `http://[::1]...`.
fn is_loopback_http(endpoint: &str) -> bool {
    let Ok(url) = Url::parse(endpoint) else {
        return false;
    };
    url.scheme() == "http"
        && match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
}

/// The URL's path, percent-decoded, as a prefix without leading or trailing `/`.
fn parse_prefix(url: &Url) -> std::result::Result<String, String> {
    let path = url.path();
    let path = path.strip_prefix('/').unwrap_or(path);
    let raw = path.strip_suffix('/').unwrap_or(path);
    let decoded = percent_decode(raw).ok_or_else(|| format!("the path {raw:?} is not UTF-8"))?;
    if !decoded.is_empty() && decoded.split('/').any(str::is_empty) {
        return Err(format!(
            "the prefix {decoded:?} has an empty `/`-separated component"
        ));
    }
    Ok(decoded)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str, env: &[(&str, &str)]) -> Result<S3Config> {
        let url = Url::parse(url).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        S3Config::from_url_with_env(&url, move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn bucket_prefix_and_defaults() {
        let c = cfg("s3://b/some/pre%20fix/", &[]).unwrap();
        assert_eq!(c.bucket, "b");
        assert_eq!(c.prefix, "some/pre fix");
        assert_eq!(c.endpoint, None);
        assert!(!c.allow_http && !c.virtual_hosted);
        assert_eq!(c.part_size, DEFAULT_PART_SIZE);
        assert!(c.reuse_connections);
        let local = cfg("s3://b?endpoint=http://127.0.0.1:3900", &[]).unwrap();
        assert!(!local.reuse_connections, "not on a loopback http endpoint");
        let local = cfg(
            "s3://b?endpoint=http://localhost:3900&reuse_connections=true",
            &[],
        )
        .unwrap();
        assert!(local.reuse_connections);
        assert!(
            cfg("s3://b?endpoint=http://10.0.0.1:3900", &[])
                .unwrap()
                .reuse_connections
        );
        assert_eq!(c.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(c.retries, DEFAULT_RETRIES);
        assert_eq!(cfg("s3://b", &[]).unwrap().prefix, "");
        assert_eq!(cfg("s3://b/", &[]).unwrap().prefix, "");
    }

    #[test]
    fn query_wins_over_env() {
        let env = [
            ("AWS_ENDPOINT_URL", "http://env:1"),
            ("AWS_REGION", "env-region"),
            ("AWS_ACCESS_KEY_ID", "envkey"),
            ("AWS_SECRET_ACCESS_KEY", "envsecret"),
            ("AWS_SESSION_TOKEN", "envtoken"),
        ];
        let c = cfg("s3://b", &env).unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://env:1"));
        assert!(c.allow_http, "http:// endpoint allows http by default");
        assert_eq!(c.region.as_deref(), Some("env-region"));
        assert_eq!(c.access_key_id.as_deref(), Some("envkey"));
        assert_eq!(c.session_token.as_deref(), Some("envtoken"));
        let c = cfg(
            "s3://b?endpoint=https://q:2/&region=qr&access_key_id=qk&secret_access_key=qs",
            &env,
        )
        .unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("https://q:2"));
        assert!(!c.allow_http);
        assert_eq!(c.region.as_deref(), Some("qr"));
        assert_eq!(c.access_key_id.as_deref(), Some("qk"));
        assert_eq!(c.secret_access_key.as_deref(), Some("qs"));
        assert_eq!(
            c.session_token, None,
            "query credentials never mix with an env token"
        );
    }

    #[test]
    fn every_query_key() {
        let c = cfg(
            "s3://b/p?endpoint=http://h:1&region=r&access_key_id=a&secret_access_key=s\
             &session_token=t&allow_http=false&virtual_hosted=true&connect_timeout=500ms\
             &timeout=2.5&retries=0&concurrency=3&part_size=16MiB",
            &[],
        );
        let err = c.unwrap_err().to_string();
        assert!(err.contains("allow_http is false"), "{err}");
        assert!(!err.contains("=s&") && !err.contains("=t&"), "{err}");
        let c = cfg(
            "s3://b/p?endpoint=https://h:1&region=r&access_key_id=a&secret_access_key=s\
             &session_token=t&allow_http=false&virtual_hosted=true&connect_timeout=500ms\
             &timeout=2.5&retries=0&concurrency=3&part_size=16MiB",
            &[],
        )
        .unwrap();
        assert!(c.virtual_hosted);
        assert_eq!(c.connect_timeout, Duration::from_millis(500));
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.retries, 0);
        assert_eq!(c.concurrency, 3);
        assert_eq!(c.part_size, 16 << 20);
        let dbg = format!("{c:?}");
        assert!(dbg.contains("***") && !dbg.contains("\"s\""), "{dbg}");
    }

    #[test]
    fn bad_urls_say_why() {
        let cases: [(&str, &str); 11] = [
            ("s3://b?nope=1", "unknown query key \"nope\""),
            ("s3:///p", "no bucket"),
            ("s3://b//x", "empty"),
            ("s3://b?part_size=1M", "part_size"),
            ("s3://b?concurrency=0", "concurrency"),
            ("s3://b?concurrency=1025", "concurrency"),
            ("s3://b?concurrency=18446744073709551615", "concurrency"),
            ("s3://b?timeout=-1", "timeout"),
            ("s3://b?endpoint=ftp://x", "not an http"),
            ("s3://b?access_key_id=a", "no secret access key"),
            ("s3://user:pw@b", "credentials"),
        ];
        for (url, want) in cases {
            let err = cfg(url, &[]).unwrap_err().to_string();
            assert!(err.contains(want), "{url}: {err}");
        }
    }

    #[test]
    fn secrets_are_redacted_in_errors() {
        let err = cfg("s3://b?secret_access_key=hunter2&bogus=1", &[])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        // every refusal of a URL carrying a secret, in the query or in an endpoint's userinfo
        for url in [
            "s3://b?secret_access_key=hunter2&session_token=hunter2&access_key_id=a&bogus=1",
            "s3://b?access_key_id=a&secret_access_key=hunter2&concurrency=0",
            "s3://b?access_key_id=a&secret_access_key=hunter2&allow_http=maybe",
            "s3://b?session_token=hunter2&secret_access_key=hunter2",
            "s3://b?endpoint=http://u:hunter2@h:1&access_key_id=a&secret_access_key=hunter2",
            "s3://b?endpoint=http%3A%2F%2Fu%3Ahunter2%40h%3A1",
            "s3://b?endpoint=ftp://u:hunter2@h",
            "s3://u:hunter2@b?secret_access_key=hunter2",
        ] {
            let err = cfg(url, &[]).unwrap_err();
            for text in [err.to_string(), format!("{err:?}")] {
                assert!(
                    !text.contains("hunter2") && text.contains("***"),
                    "{url}: {text}"
                );
            }
        }
        let err = cfg("s3://b?endpoint=http://u:hunter2@h:1", &[]).unwrap_err();
        assert!(err.to_string().contains("carries credentials"), "{err}");
        // a configuration made by hand: its location, endpoint and Debug
        let mut c = S3Config::new("b");
        c.endpoint = Some("https://u:hunter2@h:1".into());
        c.access_key_id = Some("AKID".into());
        c.secret_access_key = Some("hunter2".into());
        c.session_token = Some("hunter2".into());
        let texts = [
            c.location(),
            c.endpoint_for_messages(),
            format!("{c:?}"),
            c.validate().unwrap_err(),
        ];
        for text in texts {
            assert!(!text.contains("hunter2"), "{text}");
        }
        assert!(
            format!("{c:?}").contains("AKID"),
            "the access key id is shown"
        );
    }

    #[test]
    fn sizes_and_durations_read_as_in_every_chest_url() {
        let c = cfg(
            "s3://b?part_size=16MiB&timeout=2.5s&connect_timeout=500ms",
            &[],
        )
        .unwrap();
        assert_eq!(c.part_size, 16 << 20);
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.connect_timeout, Duration::from_millis(500));
        let e = cfg("s3://b?timeout=0", &[]).unwrap_err().to_string();
        assert!(
            e.contains("\"timeout\"=\"0\": the duration must be above zero"),
            "{e}"
        );
        let e = cfg("s3://b?part_size=lots", &[]).unwrap_err().to_string();
        assert!(e.contains("expected a size"), "{e}");
    }
}
