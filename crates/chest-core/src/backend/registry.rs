//! URL scheme registry: which backend a chest URL opens.
//!
//! A URL's scheme picks a [`Scheme`] factory (`file`, `memory`, `s3`, ...).
//! A scheme of the form `layer+inner` (e.g. `zstd+file`) opens the inner URL
//! and wraps it with the [`Layer`] called `layer`. A string that is not a URL
//! with a scheme is a local path (`file`).
//!
//! Backend crates register statically with [`inventory::submit!`]; programs
//! can also register at run time with [`register_scheme`].

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use url::Url;

use crate::backend::location::{is_secret_key, redact_url, REDACTED};
use crate::backend::memory::MemoryBackend;
use crate::backend::Backend;
use crate::error::{Error, Result};

/// How a chest wants its store opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// Only reads: take a shared lock, never write.
    pub read_only: bool,
    /// Create the store if it does not exist (ignored when `read_only`).
    pub create: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            read_only: false,
            create: true,
        }
    }
}

/// A backend as a factory opened it.
#[derive(Debug, Clone)]
pub struct OpenedBackend {
    /// The store.
    pub backend: Arc<dyn Backend>,
    /// `true` if the store outlives the chest (a chest over it flushes on
    /// drop); `false` for temporary stores, which are removed with the backend.
    pub persistent: bool,
}

/// A factory that opens the store a URL names.
pub type SchemeFactory = dyn Fn(&Url, &OpenOptions) -> Result<OpenedBackend> + Send + Sync;

/// A static registration of a URL scheme, submitted with [`inventory::submit!`].
///
/// ```
/// use chest_core::registry::{OpenOptions, OpenedBackend, Scheme};
/// use chest_core::{MemoryBackend, Result};
/// use std::sync::Arc;
///
/// fn open_scratch(_url: &url::Url, _opts: &OpenOptions) -> Result<OpenedBackend> {
///     Ok(OpenedBackend { backend: Arc::new(MemoryBackend::new()), persistent: false })
/// }
/// chest_core::inventory::submit! { Scheme { name: "scratch", open: open_scratch } }
///
/// let opened = chest_core::registry::open_backend("scratch://", &OpenOptions::default()).unwrap();
/// assert!(!opened.persistent);
/// ```
pub struct Scheme {
    /// The scheme, without `://` (e.g. `"file"`).
    pub name: &'static str,
    /// Opens the store.
    pub open: fn(&Url, &OpenOptions) -> Result<OpenedBackend>,
}
inventory::collect!(Scheme);

/// Wraps an inner backend; gets the layer's whole URL, for its query.
pub type LayerFn = fn(&Url, Arc<dyn Backend>) -> Result<Arc<dyn Backend>>;

/// A static registration of a layer: a backend that wraps another one,
/// selected by `name+inner-url` (e.g. `zstd+file:///data`).
pub struct Layer {
    /// The layer's name (e.g. `"zstd"`).
    pub name: &'static str,
    /// Query keys the layer consumes; they are removed from the inner URL.
    pub params: &'static [&'static str],
    /// Wraps the inner backend. Gets the whole URL, for its query.
    pub wrap: LayerFn,
}
inventory::collect!(Layer);

/// A static registration of the store used for temporary chests
/// ([`Chest::temp`](crate::Chest::temp)).
pub struct TempStore {
    /// Creates a new, empty, non-persistent store.
    pub open: fn() -> Result<OpenedBackend>,
}
inventory::collect!(TempStore);

fn open_memory(url: &Url, _opts: &OpenOptions) -> Result<OpenedBackend> {
    match url.host_str().filter(|h| !h.is_empty()) {
        Some(name) => Ok(OpenedBackend {
            backend: Arc::new(MemoryBackend::named(name)),
            persistent: true,
        }),
        None => Ok(OpenedBackend {
            backend: Arc::new(MemoryBackend::new()),
            persistent: false,
        }),
    }
}
inventory::submit! { Scheme { name: "memory", open: open_memory } }

fn dynamic() -> &'static RwLock<HashMap<String, Arc<SchemeFactory>>> {
    static DYNAMIC: OnceLock<RwLock<HashMap<String, Arc<SchemeFactory>>>> = OnceLock::new();
    DYNAMIC.get_or_init(Default::default)
}

/// Registers (or replaces) a URL scheme at run time. Run-time registrations
/// take precedence over static ones.
///
/// ```
/// use chest_core::registry::{open_backend, register_scheme, OpenOptions, OpenedBackend};
/// use chest_core::MemoryBackend;
/// use std::sync::Arc;
///
/// let shared = MemoryBackend::new();
/// register_scheme("team", move |_url, _opts| {
///     Ok(OpenedBackend { backend: Arc::new(shared.clone()), persistent: true })
/// });
/// assert!(open_backend("team://anything", &OpenOptions::default()).is_ok());
/// ```
pub fn register_scheme(
    name: &str,
    factory: impl Fn(&Url, &OpenOptions) -> Result<OpenedBackend> + Send + Sync + 'static,
) {
    dynamic()
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(name.to_ascii_lowercase(), Arc::new(factory));
}

/// Every scheme that can be opened, sorted (layers appear as `name+`).
pub fn schemes() -> Vec<String> {
    let mut all: BTreeSet<String> = inventory::iter::<Scheme>
        .into_iter()
        .map(|s| s.name.to_string())
        .collect();
    all.extend(
        inventory::iter::<Layer>
            .into_iter()
            .map(|l| format!("{}+", l.name)),
    );
    all.extend(
        dynamic()
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned(),
    );
    all.into_iter().collect()
}

/// Turns a chest location (a URL or a local path) into a URL. Strings without
/// a scheme of two or more letters are paths, made absolute against the
/// current directory. An error shows the location through
/// [`redact_url`].
pub fn parse_location(location: &str) -> Result<Url> {
    let invalid = |reason: String| Error::InvalidUrl {
        url: redact_url(location).into_owned(),
        reason,
    };
    if location.is_empty() {
        return Err(invalid("the location is empty".into()));
    }
    let has_scheme = location
        .find("://")
        .or_else(|| location.find(':'))
        .map(|i| {
            let scheme = &location[..i];
            scheme.len() >= 2
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        })
        .unwrap_or(false);
    if has_scheme {
        return Url::parse(location).map_err(|e| invalid(e.to_string()));
    }
    let path = Path::new(location);
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| invalid(format!("cannot resolve a relative path: {e}")))?
            .join(path)
    };
    Url::from_directory_path(&absolute)
        .or_else(|()| Url::from_file_path(&absolute))
        .map_err(|()| invalid("not a usable path".into()))
}

/// Opens the store a location names. The URL in an [`Error::InvalidUrl`] or
/// [`Error::UnknownScheme`] is shown through [`redact_url`],
/// whichever factory made the error.
pub fn open_backend(location: &str, opts: &OpenOptions) -> Result<OpenedBackend> {
    let url = parse_location(location)?;
    open_url(location, &url, opts).map_err(redact_error)
}

/// Deletes every object of the store at `location` — a chest and anything
/// else there — and returns how many it deleted: for a chest being thrown
/// away whole (a copy that failed, a chest dropped on purpose). Nothing is
/// checked first; the store must not be open for writing elsewhere.
///
/// ```
/// use chest_core::{registry, Chest};
///
/// let c: Chest<u32, String> = Chest::open("memory://doc-delete-all")?;
/// c.insert(1, "one".into())?;
/// c.close()?;
/// assert!(registry::delete_all("memory://doc-delete-all")? > 0);
/// assert!(Chest::<u32, String>::builder()
///     .mode(chest_core::OpenMode::MustExist)
///     .open("memory://doc-delete-all")
///     .is_err());
/// # Ok::<(), chest_core::Error>(())
/// ```
pub fn delete_all(location: &str) -> Result<usize> {
    let opts = OpenOptions {
        read_only: false,
        create: false,
    };
    let opened = open_backend(location, &opts)?;
    let names = opened.backend.list("")?;
    for name in &names {
        opened.backend.delete(name)?;
    }
    Ok(names.len())
}

/// The error with the URL it names passed through [`redact_url`].
fn redact_error(e: Error) -> Error {
    match e {
        Error::InvalidUrl { url, reason } => Error::InvalidUrl {
            url: redact_url(&url).into_owned(),
            reason,
        },
        Error::UnknownScheme { scheme, url, known } => Error::UnknownScheme {
            scheme,
            url: redact_url(&url).into_owned(),
            known,
        },
        other => other,
    }
}

fn open_url(original: &str, url: &Url, opts: &OpenOptions) -> Result<OpenedBackend> {
    let scheme = url.scheme();
    let found = dynamic()
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(scheme)
        .cloned();
    if let Some(factory) = found {
        return factory(url, opts);
    }
    if let Some(s) = inventory::iter::<Scheme>
        .into_iter()
        .find(|s| s.name == scheme)
    {
        return (s.open)(url, opts);
    }
    if let Some((outer, inner_scheme)) = scheme.split_once('+') {
        if let Some(layer) = inventory::iter::<Layer>
            .into_iter()
            .find(|l| l.name == outer)
        {
            let inner = inner_url(original, url, inner_scheme, layer.params)?;
            let opened = open_url(original, &inner, opts)?;
            return Ok(OpenedBackend {
                backend: (layer.wrap)(url, opened.backend)?,
                persistent: opened.persistent,
            });
        }
    }
    let known = schemes().join(", ");
    Err(Error::UnknownScheme {
        scheme: scheme.to_string(),
        url: redact_url(original).into_owned(),
        known: match feature_hint(scheme) {
            Some(hint) => format!("{known}; {hint}"),
            None => known,
        },
    })
}

/// For a built-in scheme that is not registered: the `chest` feature that
/// registers it.
fn feature_hint(scheme: &str) -> Option<String> {
    let outer = scheme.split('+').next().unwrap_or(scheme);
    let (what, feature) = match outer {
        "s3" => ("`s3://` URLs", "s3"),
        "zstd" => ("`zstd+` URLs", "zstd"),
        "file" => ("`file://` URLs and paths", "fs"),
        _ => return None,
    };
    Some(format!(
        "{what} need the `{feature}` feature of the `chest` crate \
         (chest = {{ version = \"...\", features = [\"{feature}\"] }})"
    ))
}

/// The URL a layer wraps: the scheme after the `+`, without the layer's query keys.
fn inner_url(original: &str, url: &Url, inner_scheme: &str, params: &[&str]) -> Result<Url> {
    let rest = &url.as_str()[url.scheme().len()..];
    let mut inner =
        Url::parse(&format!("{inner_scheme}{rest}")).map_err(|e| Error::InvalidUrl {
            url: redact_url(original).into_owned(),
            reason: format!("inner URL: {e}"),
        })?;
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !params.contains(&k.as_ref()))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        inner.set_query(None);
    } else {
        inner.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok(inner)
}

/// Opens a new temporary store through the registered [`TempStore`].
pub fn open_temp() -> Result<OpenedBackend> {
    match inventory::iter::<TempStore>.into_iter().next() {
        Some(t) => (t.open)(),
        None => Err(Error::UnknownScheme {
            scheme: "(temporary)".into(),
            url: String::new(),
            known: format!(
                "{}; no temporary store is registered (depend on the `chest` crate with its `fs` feature)",
                schemes().join(", ")
            ),
        }),
    }
}

/// Query parameters of a URL, refusing keys a backend does not know.
///
/// ```
/// let url = url::Url::parse("file:///tmp/x?fsync=true").unwrap();
/// let q = chest_core::registry::Query::parse(&url, &["fsync"]).unwrap();
/// assert_eq!(q.get_bool("fsync").unwrap(), Some(true));
/// assert!(chest_core::registry::Query::parse(&url, &["level"]).is_err());
/// ```
#[derive(Clone, Default)]
pub struct Query {
    /// Through `redact_url`.
    url: String,
    pairs: HashMap<String, String>,
}

/// Shows the values of secret keys as `***`, like [`redact_url`].
impl std::fmt::Debug for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pairs: std::collections::BTreeMap<&str, &str> = self
            .pairs
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_key(k) && !v.is_empty() {
                    REDACTED
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("Query")
            .field("url", &self.url)
            .field("pairs", &pairs)
            .finish()
    }
}

/// The value as an error shows it: `***` for a secret key's.
fn shown_value<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret_key(key) {
        REDACTED
    } else {
        value
    }
}

impl Query {
    /// Reads the query of `url`; a key not in `known`, or a key given twice,
    /// is an error naming it. Errors show the URL through [`redact_url`].
    pub fn parse(url: &Url, known: &[&str]) -> Result<Self> {
        Self::read(url, known, true)
    }

    /// Reads the keys of `url`'s query that are in `keys` and passes over
    /// the others: a layer's own keys, in a URL whose other keys are the
    /// store's underneath (`zstd+file:///d?level=3&fsync=never`). A key of
    /// `keys` given twice is an error.
    pub fn parse_some(url: &Url, keys: &[&str]) -> Result<Self> {
        Self::read(url, keys, false)
    }

    fn read(url: &Url, known: &[&str], refuse_unknown: bool) -> Result<Self> {
        let shown = redact_url(url.as_str()).into_owned();
        let mut pairs = HashMap::new();
        for (k, v) in url.query_pairs() {
            if !known.contains(&k.as_ref()) {
                if !refuse_unknown {
                    continue;
                }
                return Err(Error::InvalidUrl {
                    url: shown,
                    reason: format!("unknown query key {k:?} (known: {})", known.join(", ")),
                });
            }
            if pairs.insert(k.to_string(), v.into_owned()).is_some() {
                return Err(Error::InvalidUrl {
                    url: shown,
                    reason: format!("query key {k:?} is given twice"),
                });
            }
        }
        Ok(Self { url: shown, pairs })
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.get(key).map(String::as_str)
    }

    /// `key` read by `parse`, whose error says what was expected; the error
    /// returned names the URL, the key and the value.
    pub fn get_with<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> std::result::Result<T, String>,
    ) -> Result<Option<T>> {
        self.get(key)
            .map(|v| {
                parse(v).map_err(|reason| Error::InvalidUrl {
                    url: self.url.clone(),
                    reason: format!("query key {key:?}={:?}: {reason}", shown_value(key, v)),
                })
            })
            .transpose()
    }

    /// `key` parsed with [`FromStr`](std::str::FromStr), with an error naming the URL.
    pub fn get_parsed<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        self.get_with(key, |v| v.parse().map_err(|e: T::Err| e.to_string()))
    }

    /// `key` as a boolean: `true`, `1`, `yes`, `on` or `false`, `0`, `no`,
    /// `off` (any case).
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        self.get_with(key, parse_bool)
    }

    /// `key` as a size in bytes ([`parse_size`]).
    pub fn get_size(&self, key: &str) -> Result<Option<u64>> {
        self.get_with(key, parse_size)
    }

    /// `key` as a duration ([`parse_duration`]).
    pub fn get_duration(&self, key: &str) -> Result<Option<std::time::Duration>> {
        self.get_with(key, parse_duration)
    }
}

/// The booleans of every chest URL: `true`, `1`, `yes`, `on` or `false`,
/// `0`, `no`, `off` (any case).
pub fn parse_bool(v: &str) -> std::result::Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("not a boolean (true or false)".into()),
    }
}

/// The sizes of every chest URL: a whole number of bytes with an optional
/// binary unit, any case, spaces allowed between: `4096`, `4096b`, `256k`,
/// `256KiB`, `256kb`, `8m`, `8MiB`, `1g`, `1GiB` (k = 1024).
///
/// ```
/// use chest_core::registry::parse_size;
/// assert_eq!(parse_size("8MiB"), Ok(8 << 20));
/// assert_eq!(parse_size("256 k"), Ok(256 << 10));
/// assert!(parse_size("1.5m").is_err());
/// ```
pub fn parse_size(v: &str) -> std::result::Result<u64, String> {
    let v = v.trim();
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (number, unit) = v.split_at(digits);
    let expected = || format!("expected a size like 4096, 256k, 8MiB or 1GiB, not {v:?}");
    let n: u64 = number.parse().map_err(|_| expected())?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(expected()),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("the size {v:?} is too large"))
}

/// The durations of every chest URL: a number with an optional unit, `ms`,
/// `s` or `m`; a bare number is seconds: `5`, `2.5`, `2.5s`, `500ms`, `1m`.
/// Not negative, and at most a day.
///
/// ```
/// use chest_core::registry::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert!(parse_duration("soon").is_err());
/// ```
pub fn parse_duration(v: &str) -> std::result::Result<std::time::Duration, String> {
    let t = v.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let n: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("expected a duration like 5, 2.5s, 500ms or 1m, not {v:?}"))?;
    let secs = n * scale;
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("the duration {v:?} must be from 0 to a day"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_file_urls() {
        assert_eq!(parse_location("/data/c1").unwrap().scheme(), "file");
        assert_eq!(parse_location("rel/dir").unwrap().scheme(), "file");
        assert_eq!(parse_location("memory://x").unwrap().scheme(), "memory");
        assert_eq!(
            parse_location("zstd+file:///x").unwrap().scheme(),
            "zstd+file"
        );
        assert!(parse_location("").is_err());
    }

    #[test]
    fn unknown_scheme_names_it() {
        let err = open_backend("nope://x", &OpenOptions::default()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"nope\"") && msg.contains("memory"), "{msg}");
    }

    #[test]
    fn memory_urls() {
        use crate::backend::BackendExt;
        let a = open_backend("memory://", &OpenOptions::default()).unwrap();
        assert!(!a.persistent);
        let b = open_backend("memory://reg-test", &OpenOptions::default()).unwrap();
        b.backend.put("x", bytes::Bytes::from_static(b"1")).unwrap();
        let c = open_backend("memory://reg-test", &OpenOptions::default()).unwrap();
        assert_eq!(&c.backend.get("x").unwrap()[..], b"1");
    }

    /// Errors of the registry, and of any factory, show no secret of the URL.
    #[test]
    fn errors_show_no_secret() {
        let opts = OpenOptions::default();
        let secret = "&secret_access_key=S3CR3T&session_token=T0K3N";
        // a scheme nobody registered
        let err = open_backend(&format!("nope://b/p?x=1{secret}"), &opts).unwrap_err();
        // a URL that does not parse
        let bad = open_backend(&format!("s3://bad bucket/p?x=1{secret}"), &opts).unwrap_err();
        // a layer whose inner URL does not parse
        let layer = inner_url(
            &format!("zz+s3://b?x=1{secret}"),
            &Url::parse(&format!("zz+s3://b?x=1{secret}")).unwrap(),
            "bad scheme",
            &[],
        )
        .unwrap_err();
        // a factory that echoes the URL it was given, as backends do
        register_scheme("echo-url", |url, _| {
            Err(Error::InvalidUrl {
                url: url.to_string(),
                reason: "refused".into(),
            })
        });
        let echoed = open_backend(&format!("echo-url://b?x=1{secret}"), &opts).unwrap_err();
        // an unknown query key, and a value that does not parse
        let url = Url::parse(&format!("memory://b?x=1{secret}")).unwrap();
        let unknown = Query::parse(&url, &["secret_access_key", "session_token"]).unwrap_err();
        let q = Query::parse(&url, &["x", "secret_access_key", "session_token"]).unwrap();
        let parsed = q.get_parsed::<u8>("secret_access_key").unwrap_err();
        let boolean = q.get_bool("session_token").unwrap_err();
        for e in [err, bad, layer, echoed, unknown, parsed, boolean] {
            for text in [e.to_string(), format!("{e:?}")] {
                assert!(
                    !text.contains("S3CR3T") && !text.contains("T0K3N"),
                    "{text}"
                );
                assert!(text.contains("***"), "{text}");
            }
        }
        let dbg = format!("{q:?}");
        assert!(
            !dbg.contains("S3CR3T") && !dbg.contains("T0K3N") && dbg.contains("\"x\": \"1\""),
            "{dbg}"
        );
    }

    #[test]
    fn one_grammar_for_sizes_durations_and_booleans() {
        for (v, n) in [
            ("4096", 4096),
            ("4096b", 4096),
            ("256k", 256 << 10),
            ("256 KiB", 256 << 10),
            ("256kb", 256 << 10),
            ("8M", 8 << 20),
            ("8mib", 8 << 20),
            ("1g", 1 << 30),
            ("2GiB", 2 << 30),
        ] {
            assert_eq!(parse_size(v), Ok(n), "{v}");
        }
        for v in ["", "k", "1.5m", "-1", "12 parsecs", "1t", "99999999999999g"] {
            assert!(parse_size(v).is_err(), "{v}");
        }
        use std::time::Duration;
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        for v in ["x", "-1", "2d", "100000"] {
            assert!(parse_duration(v).is_err(), "{v}");
        }
        assert_eq!(parse_bool("On"), Ok(true));
        assert_eq!(parse_bool("0"), Ok(false));
        assert!(parse_bool("maybe").is_err());
    }

    #[test]
    fn a_query_key_given_twice_or_unknown_is_an_error_naming_it() {
        let url = Url::parse("file:///d?fsync=never&fsync=always").unwrap();
        let e = Query::parse(&url, &["fsync"]).unwrap_err().to_string();
        assert!(e.contains("\"fsync\" is given twice"), "{e}");
        let url = Url::parse("file:///d?level=3&fsync=never&token=s3cr3t").unwrap();
        let layer = Query::parse_some(&url, &["level"]).unwrap();
        assert_eq!(layer.get_parsed::<i32>("level").unwrap(), Some(3));
        assert_eq!(layer.get("fsync"), None, "other keys are the inner store's");
        let e = Query::parse(&url, &["level", "fsync"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown query key \"token\""), "{e}");
        let url = Url::parse("s3://b?part_size=lots&secret_access_key=s3cr3t").unwrap();
        let q = Query::parse(&url, &["part_size", "secret_access_key"]).unwrap();
        let e = q.get_size("part_size").unwrap_err().to_string();
        assert!(e.contains("\"part_size\"=\"lots\": expected a size"), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn inner_url_drops_layer_params() {
        let url = Url::parse("zstd+file:///tmp/a?level=5&fsync=true").unwrap();
        let inner = inner_url("", &url, "file", &["level"]).unwrap();
        assert_eq!(inner.as_str(), "file:///tmp/a?fsync=true");
    }
}
