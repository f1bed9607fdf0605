//! [`IntoLocation`]: what names a chest's location — a URL or a path, as a
//! string, a [`Path`], or a parsed [`Url`].

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
            url: self.display().to_string(),
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
}
