//! What an `object_store` error means for a chest: not found, denied,
//! unreachable (with the transport's cause), a missing bucket, or other —
//! each [`BackendError`] naming the store, the object and the server's own
//! message.

use std::error::Error as StdError;

use chest_core::BackendError;
use object_store::client::{HttpError, HttpErrorKind};

use crate::client::Inner;

impl Inner {
    pub(crate) fn other(
        &self,
        message: String,
        source: Option<chest_core::BoxError>,
    ) -> BackendError {
        BackendError::Other {
            location: self.location.clone(),
            message,
            source,
        }
    }

    pub(crate) fn denied(
        &self,
        message: String,
        source: Option<chest_core::BoxError>,
    ) -> BackendError {
        BackendError::Denied {
            location: self.location.clone(),
            message,
            source,
        }
    }

    pub(crate) fn unreachable(
        &self,
        message: String,
        source: Option<chest_core::BoxError>,
    ) -> BackendError {
        BackendError::Unreachable {
            location: self.location.clone(),
            message,
            source,
        }
    }

    pub(crate) fn describe(&self, key: &str) -> String {
        format!("s3://{}/{key} at {}", self.config.bucket, self.endpoint)
    }

    /// Turns an `object_store` error of `op` on object `name` into a
    /// `BackendError` naming the bucket, the key and the endpoint.
    pub(crate) fn map_err(&self, op: &str, name: &str, e: object_store::Error) -> BackendError {
        let key = format!("{}{name}", self.root);
        match classify(&e) {
            Class::NotFound if is_no_such_bucket(&e) => self.missing_bucket(&e),
            Class::NotFound => BackendError::NotFound {
                location: self.location.clone(),
                name: name.to_string(),
            },
            Class::Denied => {
                let message = format!(
                    "{op} of {}: access denied to bucket {}: check AWS_ACCESS_KEY_ID / \
                     AWS_SECRET_ACCESS_KEY (or access_key_id / secret_access_key in the URL) and \
                     the key's permissions on the bucket ({})",
                    self.describe(&key),
                    self.config.bucket,
                    server_message(&e).unwrap_or_else(|| chain(&e))
                );
                self.denied(message, Some(Box::new(e)))
            }
            Class::Other => match transport_failure(&e) {
                Some(why) => self.unreachable(
                    format!(
                        "{op} of {}: cannot reach endpoint {} ({why}): {}",
                        self.describe(&key),
                        self.endpoint,
                        chain(&e)
                    ),
                    Some(Box::new(e)),
                ),
                None => self.other(
                    format!("{op} of {} failed: {}", self.describe(&key), chain(&e)),
                    Some(Box::new(e)),
                ),
            },
        }
    }

    pub(crate) fn missing_bucket(&self, e: &object_store::Error) -> BackendError {
        BackendError::MissingStore {
            location: self.location.clone(),
            detail: format!(
                "bucket {:?} does not exist at {} ({}); create it first (this backend never \
                 creates buckets)",
                self.config.bucket,
                self.endpoint,
                server_message(e).unwrap_or_else(|| "NoSuchBucket".into())
            ),
        }
    }
}

/// What an `object_store` error means for the caller.
pub(crate) enum Class {
    /// 404: a missing object (or bucket).
    NotFound,
    /// 401 / 403: credentials refused or not allowed.
    Denied,
    /// Anything else.
    Other,
}

pub(crate) fn classify(e: &object_store::Error) -> Class {
    match e {
        object_store::Error::NotFound { .. } => Class::NotFound,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => Class::Denied,
        // Some requests (e.g. list) wrap the HTTP failure in a generic error.
        _ => match http_status(e) {
            Some(404) => Class::NotFound,
            Some(401 | 403) => Class::Denied,
            _ => Class::Other,
        },
    }
}

/// The HTTP status of a failed request, from `object_store`'s message.
pub(crate) fn http_status(e: &(dyn StdError + 'static)) -> Option<u16> {
    let text = chain(e);
    let marker = "status code: ";
    let start = text.find(marker)? + marker.len();
    text.get(start..start + 3)?.parse().ok()
}

/// `true` if a 404 came from a missing bucket rather than a missing object.
pub(crate) fn is_no_such_bucket(e: &object_store::Error) -> bool {
    chain(e).contains("NoSuchBucket")
}

/// Why a request never got an HTTP answer, if that is what failed.
pub(crate) fn transport_failure(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut kind = None;
    let mut io_kind = None;
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<HttpError>() {
            kind.get_or_insert(h.kind());
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        cur = err.source();
    }
    let text = chain(e).to_ascii_lowercase();
    let why = match (kind?, io_kind) {
        (_, Some(std::io::ErrorKind::ConnectionRefused)) => "connection refused",
        (_, Some(std::io::ErrorKind::TimedOut)) => "timed out",
        (_, _) if text.contains("dns error") || text.contains("failed to lookup") => {
            "cannot resolve the host name"
        }
        (HttpErrorKind::Timeout, _) => "timed out",
        (HttpErrorKind::Connect, _) => "cannot connect",
        (HttpErrorKind::Request, _) => "the request could not be sent",
        (HttpErrorKind::Interrupted, _) => "the connection was interrupted",
        _ => return None,
    };
    Some(why.to_string())
}

/// An error and its sources on one line, each cause once.
pub(crate) fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        if !s.is_empty() && !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = err.source();
    }
    out
}

/// `Code: Message` from an S3 XML error body, if the error carries one.
pub(crate) fn server_message(e: &(dyn StdError + 'static)) -> Option<String> {
    let text = chain(e);
    let between = |open: &str, close: &str| {
        let start = text.find(open)? + open.len();
        let len = text[start..].find(close)?;
        Some(text[start..start + len].to_string())
    };
    match (
        between("<Code>", "</Code>"),
        between("<Message>", "</Message>"),
    ) {
        (Some(code), Some(message)) => Some(format!("{code}: {message}")),
        (Some(code), None) => Some(code),
        (None, Some(message)) => Some(message),
        (None, None) => None,
    }
}
