//! [`IntoLocation`]: what names a chest's location — a URL or a path, as a
//! string, a [`Path`], or a parsed [`Url`].

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use url::Url;

use crate::error::{Error, Result};

/// Anything that names a location: `&str` and `String` (a URL such as
/// `s3://bucket/prefix` or `zstd+file:///data/c1`, or a local path),
/// `&Path` and `PathBuf` (always a local directory, even if it looks like a
/// URL), and `&Url` / `Url`.
///
/// ```
/// use chest_core::{Chest, IntoLocation};
/// use std::path::Path;
///
/// let by_str: Chest<u32, String> = Chest::open("memory://doc-location")?;
/// by_str.insert(1, "one".into())?;
/// by_str.close()?;
/// let url = url::Url::parse("memory://doc-location").unwrap();
/// let by_url: Chest<u32, String> = Chest::open(&url)?;
/// assert_eq!(by_url.len(), 1);
/// // A path is always a local directory (with the `chest` facade's `fs` feature).
/// assert_eq!(Path::new("/data/c1").into_location()?, "file:///data/c1");
/// # Ok::<(), chest_core::Error>(())
/// ```
pub trait IntoLocation {
    /// The location as the registry reads it (a URL, or a path).
    fn into_location(self) -> Result<String>;
}

impl IntoLocation for &str {
    fn into_location(self) -> Result<String> {
        Ok(self.to_string())
    }
}

impl IntoLocation for String {
    fn into_location(self) -> Result<String> {
        Ok(self)
    }
}

impl IntoLocation for &String {
    fn into_location(self) -> Result<String> {
        Ok(self.clone())
    }
}

impl IntoLocation for &Url {
    fn into_location(self) -> Result<String> {
        Ok(self.as_str().to_string())
    }
}

impl IntoLocation for Url {
    fn into_location(self) -> Result<String> {
        Ok(self.into())
    }
}

impl IntoLocation for &Path {
    fn into_location(self) -> Result<String> {
        let invalid = |reason: String| Error::InvalidUrl {
            url: redact_url(&self.display().to_string()).into_owned(),
            reason,
        };
        let absolute = std::path::absolute(self)
            .map_err(|e| invalid(format!("cannot resolve the path: {e}")))?;
        Url::from_file_path(&absolute)
            .map(String::from)
            .map_err(|()| invalid("not a path a file URL can name".into()))
    }
}

impl IntoLocation for PathBuf {
    fn into_location(self) -> Result<String> {
        self.as_path().into_location()
    }
}

impl IntoLocation for &PathBuf {
    fn into_location(self) -> Result<String> {
        self.as_path().into_location()
    }
}

/// What [`redact_url`] puts in place of a secret.
pub const REDACTED: &str = "***";

/// A location (a URL or a path, as given) made fit to print: the values of
/// secret query keys and the password of a URL's userinfo become `***`.
/// Every message, log event, `Debug` output and `chest` output line of this
/// project that shows a location shows it through this function.
///
/// - A query key is secret when its name, percent-decoded and in any case,
///   contains `secret`, `token`, `password`, `passwd` or `signature`
///   (`secret_access_key`, `session_token`, `X-Amz-Security-Token`, ...).
///   The whole value is replaced, up to the next `&` or the end of the text
///   (a fragment included). An empty value stays empty.
/// - `user:password@` becomes `user:***@`, in the URL itself and in a URL
///   given as a query value (`endpoint=http://user:password@host`, plain or
///   percent-encoded).
/// - `access_key_id` is kept: it names the credentials without granting
///   anything (AWS's own tools print it), and it says which ones were used.
///
/// The text need not be a valid URL (an error about a URL that does not
/// parse shows it too). Only secrets are rewritten, the rest is kept byte
/// for byte; text with nothing to hide is returned borrowed.
///
/// ```
/// use chest_core::redact_url;
///
/// assert_eq!(
///     redact_url("s3://b/p?access_key_id=AKID&secret_access_key=wJalr/K7&region=x"),
///     "s3://b/p?access_key_id=AKID&secret_access_key=***&region=x"
/// );
/// assert_eq!(redact_url("s3://b?Session_Token=abc"), "s3://b?Session_Token=***");
/// assert_eq!(redact_url("s3://b?endpoint=http://u:pw@h:1"), "s3://b?endpoint=http://u:***@h:1");
/// assert_eq!(redact_url("/data/c1"), "/data/c1");
/// ```
pub fn redact_url(location: &str) -> Cow<'_, str> {
    let text: Cow<'_, str> = match redact_userinfo(location) {
        Some(t) => Cow::Owned(t),
        None => Cow::Borrowed(location),
    };
    let Some(q) = text.find('?') else {
        return text;
    };
    let mut query = String::with_capacity(text.len() - q);
    let mut changed = false;
    for (i, piece) in text[q + 1..].split('&').enumerate() {
        if i > 0 {
            query.push('&');
        }
        match redact_pair(piece) {
            Some(p) => {
                changed = true;
                query.push_str(&p);
            }
            None => query.push_str(piece),
        }
    }
    if !changed {
        return text;
    }
    Cow::Owned(format!("{}?{query}", &text[..q]))
}

/// Whether the value of the query key `key` (decoded) is a secret: its name,
/// in any case, contains `secret`, `token`, `password`, `passwd` or `signature`.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["secret", "token", "password", "passwd", "signature"]
        .iter()
        .any(|s| key.contains(s))
}

/// `key=value` with the value redacted, or `None` if it hides nothing.
fn redact_pair(piece: &str) -> Option<String> {
    let (raw_key, raw_value) = piece.split_once('=')?;
    if raw_value.is_empty() || raw_value == REDACTED {
        return None;
    }
    let (key, value) = url::form_urlencoded::parse(piece.as_bytes()).next()?;
    if is_secret_key(&key) {
        return Some(format!("{raw_key}={REDACTED}"));
    }
    if let Some(v) = redact_userinfo(raw_value) {
        return Some(format!("{raw_key}={v}"));
    }
    if value != raw_value {
        // Percent-encoded (`endpoint=http%3A%2F%2Fu%3Apw%40h`).
        let v = redact_userinfo(&value)?;
        let encoded: String = url::form_urlencoded::byte_serialize(v.as_bytes()).collect();
        return Some(format!("{raw_key}={encoded}"));
    }
    None
}

/// `text` with the password of the userinfo after its first `://` replaced,
/// or `None` if it has none. The authority is taken to run to the first `/`
/// (a password with a `?` or `#` in it is still hidden); the userinfo to the
/// last `@` in it.
fn redact_userinfo(text: &str) -> Option<String> {
    let start = text.find("://")? + 3;
    let rest = &text[start..];
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let colon = userinfo.find(':')?;
    let password = &userinfo[colon + 1..];
    if password.is_empty() || password == REDACTED {
        return None;
    }
    let at = start + colon + 1;
    Some(format!(
        "{}{REDACTED}{}",
        &text[..at],
        &text[at + password.len()..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_file_urls() {
        let url = Path::new("/data/my chest").into_location().unwrap();
        assert_eq!(url, "file:///data/my%20chest");
        // A path that looks like a URL is still a path.
        let url = PathBuf::from("s3:/x").into_location().unwrap();
        assert!(
            url.starts_with("file:///") && url.ends_with("/s3:/x"),
            "{url}"
        );
        assert_eq!("s3://b/p".into_location().unwrap(), "s3://b/p");
        let parsed = Url::parse("memory://x").unwrap();
        assert_eq!((&parsed).into_location().unwrap(), "memory://x");
    }

    /// Every way a secret can be written into a location, and what is left.
    #[test]
    fn redact_url_hides_every_secret() {
        let cases: &[(&str, &str)] = &[
            // any position, any case
            (
                "s3://b/p?secret_access_key=S3CR3T",
                "s3://b/p?secret_access_key=***",
            ),
            (
                "s3://b/p?secret_access_key=S3CR3T&region=r",
                "s3://b/p?secret_access_key=***&region=r",
            ),
            (
                "s3://b/p?endpoint=http://h:1&access_key_id=AKID&secret_access_key=S3CR3T&session_token=S3CR3T2&lock=none",
                "s3://b/p?endpoint=http://h:1&access_key_id=AKID&secret_access_key=***&session_token=***&lock=none",
            ),
            ("s3://b?SECRET_ACCESS_KEY=S3CR3T", "s3://b?SECRET_ACCESS_KEY=***"),
            ("s3://b?Session_Token=S3CR3T", "s3://b?Session_Token=***"),
            ("s3://b?X-Amz-Security-Token=S3CR3T", "s3://b?X-Amz-Security-Token=***"),
            ("s3://b?password=S3CR3T", "s3://b?password=***"),
            // percent-encoded keys and values, a `+`, a fragment
            ("s3://b?secret%5Faccess%5Fkey=S3CR3T", "s3://b?secret%5Faccess%5Fkey=***"),
            ("s3://b?%53ecret_access_key=S3CR3T", "s3://b?%53ecret_access_key=***"),
            ("s3://b?secret_access_key=S3%2FCR%2B3T", "s3://b?secret_access_key=***"),
            ("s3://b?secret+access=S3CR3T", "s3://b?secret+access=***"),
            ("s3://b?secret_access_key=S3CR3T#frag", "s3://b?secret_access_key=***"),
            // layers keep their own keys
            (
                "zstd+s3://b/p?level=3&secret_access_key=S3CR3T&frame_size=64k",
                "zstd+s3://b/p?level=3&secret_access_key=***&frame_size=64k",
            ),
            // the userinfo's password, of the URL and of a URL in the query
            ("s3://user:S3CR3T@b/p", "s3://user:***@b/p"),
            ("http://user:S3%40CR3T@h:1/x", "http://user:***@h:1/x"),
            ("s3://user:S3CR3T@b", "s3://user:***@b"),
            (
                "s3://b?endpoint=http://u:S3CR3T@h:1&region=r",
                "s3://b?endpoint=http://u:***@h:1&region=r",
            ),
            (
                "s3://b?endpoint=http%3A%2F%2Fu%3AS3CR3T%40h%3A1",
                "s3://b?endpoint=http%3A%2F%2Fu%3A***%40h%3A1",
            ),
            // text that is no valid URL
            (
                "s3://bad bucket/p?secret_access_key=S3CR3T",
                "s3://bad bucket/p?secret_access_key=***",
            ),
            ("s3://u:S3?CR3T@b/p", "s3://u:***@b/p"),
            ("not a url ?token=S3CR3T&x", "not a url ?token=***&x"),
        ];
        for (given, want) in cases {
            let got = redact_url(given);
            assert_eq!(got, *want, "{given}");
            assert!(!got.contains("S3CR3T") && !got.contains("CR3T"), "{got}");
            assert_eq!(redact_url(&got), got, "redacting twice changes nothing");
        }
        // Nothing secret: the same text, not copied.
        for plain in [
            "s3://b/p?endpoint=http://127.0.0.1:3900&region=garage&access_key_id=AKID",
            "s3://b?secret_access_key=&access_key_id=",
            "s3://user@b/p",
            "file:///data/a:b@c?fsync=never",
            "/data/c1",
            "memory://",
            "",
        ] {
            assert!(
                matches!(redact_url(plain), Cow::Borrowed(p) if p == plain),
                "{plain}"
            );
        }
    }
}
