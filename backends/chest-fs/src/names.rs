//! Object names ↔ paths inside the store directory.
//!
//! Every `/`-separated component of an object name becomes one path
//! component. A component made only of `[A-Za-z0-9_.-]` that does not start
//! with `.` (and is at most [`MAX_COMPONENT`] bytes) is used as it is. Any
//! other component is escaped: every byte outside that set, a leading `.`
//! and `%` itself become `%XX` (two upper-case hex digits). The escaping is
//! reversible and canonical: [`decode_component`] accepts exactly the strings
//! [`encode_component`] produces, so a file that was not written by the
//! backend is never mistaken for an object.
//!
//! An encoded component never starts with `.`; the backend's own files
//! (the lock file, temporary files) all start with `.` and so can never
//! collide with an object.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The longest encoded component, in bytes (`NAME_MAX` of common file systems).
pub const MAX_COMPONENT: usize = 255;

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'
}

fn is_readable(component: &str) -> bool {
    let b = component.as_bytes();
    !b.is_empty() && b[0] != b'.' && b.iter().all(|&c| is_plain(c))
}

/// The path component for one component of an object name, or why it cannot
/// be stored (its encoded form is longer than [`MAX_COMPONENT`] bytes, or it
/// is empty).
///
/// ```
/// use chest_fs::names::encode_component;
/// assert_eq!(encode_component("seg-0001.bin").unwrap(), "seg-0001.bin");
/// assert_eq!(encode_component(".hidden").unwrap(), "%2Ehidden");
/// assert_eq!(encode_component("a b%").unwrap(), "a%20b%25");
/// assert!(encode_component(&"x".repeat(300)).is_err());
/// ```
pub fn encode_component(component: &str) -> Result<Cow<'_, str>, String> {
    if component.is_empty() {
        return Err("a `/`-separated component is empty".into());
    }
    let encoded = if is_readable(component) {
        Cow::Borrowed(component)
    } else {
        let mut s = String::with_capacity(component.len() * 3);
        for (i, &b) in component.as_bytes().iter().enumerate() {
            if is_plain(b) && !(i == 0 && b == b'.') {
                s.push(char::from(b));
            } else {
                // Writing to a String cannot fail.
                let _ = write!(s, "%{b:02X}");
            }
        }
        Cow::Owned(s)
    };
    if encoded.len() > MAX_COMPONENT {
        return Err(format!(
            "the component {:?} is {} bytes long once escaped for the file system; at most {MAX_COMPONENT} are allowed",
            truncated(component),
            encoded.len()
        ));
    }
    Ok(encoded)
}

fn truncated(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The name component a path component stands for, or `None` if the path
/// component is not something [`encode_component`] produces (an internal
/// file, or a file someone else put in the directory).
///
/// ```
/// use chest_fs::names::decode_component;
/// assert_eq!(decode_component("%2Ehidden").as_deref(), Some(".hidden"));
/// assert_eq!(decode_component(".chest.lock"), None);
/// assert_eq!(decode_component("%61bc"), None); // "abc" is stored as "abc"
/// ```
pub fn decode_component(encoded: &str) -> Option<String> {
    let b = encoded.as_bytes();
    if b.is_empty() || b[0] == b'.' {
        return None;
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = hex(*b.get(i + 1)?)?;
                let lo = hex(*b.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            c if is_plain(c) => {
                out.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
    let name = String::from_utf8(out).ok()?;
    if name.contains(['/', '\0']) {
        return None;
    }
    let canonical = encode_component(&name).ok()? == encoded;
    canonical.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn readable_names_stay_readable() {
        for n in [
            "data",
            "00000001",
            "manifest",
            "a.b",
            "x-y_z",
            "trailing.",
            "-dash",
            "UPPER",
        ] {
            assert_eq!(encode_component(n).unwrap(), n);
            assert_eq!(decode_component(n).as_deref(), Some(n));
        }
    }

    #[test]
    fn escaped_names() {
        let cases = [
            (".", "%2E"),
            ("..", "%2E."),
            (".hidden", "%2Ehidden"),
            ("a.", "a."),
            ("with space", "with%20space"),
            ("percent%20sign", "percent%2520sign"),
            ("back\\slash", "back%5Cslash"),
            ("ü", "%C3%BC"),
            ("🦀", "%F0%9F%A6%80"),
        ];
        for (name, enc) in cases {
            assert_eq!(encode_component(name).unwrap(), enc, "{name:?}");
            assert_eq!(decode_component(enc).as_deref(), Some(name), "{enc:?}");
        }
    }

    #[test]
    fn foreign_files_are_not_objects() {
        for f in [
            ".chest.lock",
            ".tmp-12-3",
            "%2e",  // lower-case hex is not canonical
            "%41",  // "A" would be stored as "A"
            "a%2",  // truncated escape
            "a%zz", // not hex
            "a b",  // a space is always escaped
            "%2F",  // a '/' inside a component
            "%00",  // NUL
            "%FF",  // not UTF-8
            "",
        ] {
            assert_eq!(decode_component(f), None, "{f:?}");
        }
    }

    #[test]
    fn length_limit() {
        assert!(encode_component(&"a".repeat(MAX_COMPONENT)).is_ok());
        assert!(encode_component(&"a".repeat(MAX_COMPONENT + 1)).is_err());
        // 85 escaped bytes = 255 characters; 86 = 258.
        assert!(encode_component(&" ".repeat(85)).is_ok());
        let err = encode_component(&" ".repeat(86)).unwrap_err();
        assert!(err.contains("258 bytes"), "{err}");
        assert!(encode_component("").is_err());
    }

    proptest! {
        #[test]
        // At most 21 characters: a 4-byte character escapes to 12 bytes, so
        // every such name fits the 255-byte limit (longer ones may not, and
        // `length_limit` covers those).
        fn round_trip(name in "[^/\u{0}]{1,21}") {
            let enc = encode_component(&name).unwrap();
            prop_assert!(!enc.starts_with('.'));
            prop_assert!(enc.bytes().all(|b| is_plain(b) || b == b'%'));
            prop_assert!(enc != "." && enc != "..");
            prop_assert_eq!(decode_component(&enc), Some(name.clone()));
        }

        #[test]
        fn round_trip_ascii(name in "[ -.0-~]{1,60}") {
            let enc = encode_component(&name).unwrap();
            prop_assert_eq!(decode_component(&enc), Some(name.clone()));
        }

        #[test]
        fn decode_is_injective(s in "[A-Za-z0-9_.%-]{1,12}") {
            // Whatever decodes, encodes back to the very same string: two
            // different files can never stand for the same object.
            if let Some(name) = decode_component(&s) {
                prop_assert_eq!(encode_component(&name).unwrap(), s);
            }
        }
    }
}
