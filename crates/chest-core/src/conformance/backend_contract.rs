//! The [`Backend`](crate::Backend) contract.

use bytes::Bytes;

use super::Target;
use crate::error::BackendError;

fn bytes(seed: u64, len: usize) -> Bytes {
    Bytes::from(super::noise(seed, len))
}

/// put then get gives the same bytes, for several sizes.
pub fn round_trip(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    for (i, len) in [1usize, 7, 4096, 100_000, 1 << 20].into_iter().enumerate() {
        let name = format!("rt/{i}");
        let data = bytes(i as u64, len);
        b.put(&name, data.clone()).unwrap();
        assert_eq!(b.get(&name).unwrap(), data, "object {name} of {len} bytes");
    }
}

/// An empty object is stored and read back as empty.
pub fn empty_object(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    b.put("empty", Bytes::new()).unwrap();
    assert_eq!(b.get("empty").unwrap().len(), 0);
    assert_eq!(b.get_range("empty", 0..0).unwrap().len(), 0);
    assert_eq!(b.list("").unwrap(), vec!["empty".to_string()]);
}

/// A 64 MiB object round-trips, whole and by range.
pub fn large_object(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    let data = bytes(64, 64 << 20);
    b.put("big/one", data.clone()).unwrap();
    let back = b.get("big/one").unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "64 MiB object differs after a round trip");
    let mid = (32u64 << 20) - 3..(32u64 << 20) + 1_000_003;
    assert_eq!(
        b.get_range("big/one", mid.clone()).unwrap(),
        data.slice(mid.start as usize..mid.end as usize)
    );
}

/// A second put replaces the object, also with a shorter one.
pub fn overwrite(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    b.put("o", bytes(1, 10_000)).unwrap();
    let second = bytes(2, 10);
    b.put("o", second.clone()).unwrap();
    assert_eq!(b.get("o").unwrap(), second);
    assert_eq!(b.list("").unwrap(), vec!["o".to_string()]);
}

/// get of a missing object is `NotFound`, naming the object.
pub fn get_missing(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    match b.get("no/such") {
        Err(e @ BackendError::NotFound { .. }) => assert!(e.to_string().contains("no/such"), "{e}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(matches!(
        b.get_range("no/such", 0..1),
        Err(BackendError::NotFound { .. })
    ));
}

/// delete removes an object; deleting a missing one is fine.
pub fn delete_missing(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    b.delete("never/there").unwrap();
    b.put("d", bytes(3, 5)).unwrap();
    b.delete("d").unwrap();
    assert!(b.get("d").unwrap_err().is_not_found());
    b.delete("d").unwrap();
    assert!(b.list("").unwrap().is_empty());
}

/// Ranged reads: prefix, middle, suffix, empty, and out of bounds.
pub fn get_range(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    let data = bytes(4, 10_000);
    b.put("r", data.clone()).unwrap();
    for r in [0..1u64, 0..10_000, 17..9_000, 9_999..10_000, 500..500] {
        assert_eq!(
            b.get_range("r", r.clone()).unwrap(),
            data.slice(r.start as usize..r.end as usize),
            "range {r:?}"
        );
    }
    assert!(matches!(
        b.get_range("r", 9_000..10_001),
        Err(BackendError::RangeOutOfBounds { .. })
    ));
}

/// get_many answers every request in order: whole objects, ranges, and
/// `NotFound` for a missing object.
pub fn get_many_in_order(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    for i in 0..12u64 {
        b.put(&format!("m/{i}"), bytes(i, 1000 + i as usize))
            .unwrap();
    }
    let mut requests: Vec<(String, Option<std::ops::Range<u64>>)> = (0..12u64)
        .map(|i| (format!("m/{i}"), (i % 2 == 1).then(|| i..i + 100)))
        .collect();
    requests.insert(5, ("m/missing".into(), None));
    let results = b.get_many(requests.clone());
    assert_eq!(results.len(), requests.len());
    for ((name, range), result) in requests.iter().zip(results) {
        if name == "m/missing" {
            assert!(result.unwrap_err().is_not_found());
            continue;
        }
        let i: u64 = name[2..].parse().unwrap();
        let all = bytes(i, 1000 + i as usize);
        let want = match range {
            Some(r) => all.slice(r.start as usize..r.end as usize),
            None => all,
        };
        assert_eq!(result.unwrap(), want, "{name} {range:?}");
    }
}

/// list returns exactly the names under a prefix, sorted, across "directories".
pub fn list_prefixes(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    let names = ["a/1", "a/2", "a/b/3", "ab", "b/1", "c"];
    for n in names {
        b.put(n, bytes(5, 3)).unwrap();
    }
    let all: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    assert_eq!(b.list("").unwrap(), all);
    assert_eq!(b.list("a/").unwrap(), vec!["a/1", "a/2", "a/b/3"]);
    assert_eq!(b.list("a").unwrap(), vec!["a/1", "a/2", "a/b/3", "ab"]);
    assert_eq!(b.list("a/b").unwrap(), vec!["a/b/3"]);
    assert_eq!(b.list("zzz").unwrap(), Vec::<String>::new());
}

/// Names with spaces, unicode, dots, percent signs and shell characters are
/// stored under exactly that name (or refused as `InvalidName`, never mangled).
pub fn odd_names(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    let odd = [
        "with space",
        "ünïcødé/κλειδί",
        "dots/../up",
        ".hidden",
        "percent%20sign",
        "semi;colon:and|pipe",
        "back\\slash",
        "star*?<>\"quote'",
        "trailing.",
        "-dash",
        "UPPER/lower",
        "emoji/🦀",
    ];
    let mut stored = Vec::new();
    for (i, name) in odd.iter().enumerate() {
        match b.put(name, bytes(i as u64, 100 + i)) {
            Ok(()) => stored.push(*name),
            Err(BackendError::InvalidName { .. }) => {}
            Err(e) => panic!("put {name:?}: {e}"),
        }
    }
    assert!(
        stored.len() >= 10,
        "too many odd names refused: only {stored:?} stored"
    );
    for name in &stored {
        let i = odd.iter().position(|n| n == name).unwrap();
        assert_eq!(b.get(name).unwrap(), bytes(i as u64, 100 + i), "{name:?}");
    }
    let mut expect: Vec<String> = stored.iter().map(|s| s.to_string()).collect();
    expect.sort();
    assert_eq!(b.list("").unwrap(), expect);
    let b2 = target.fresh().open().unwrap();
    assert!(
        b2.list("").unwrap().is_empty(),
        "a fresh location must be empty"
    );
}

/// Empty names and empty components are refused with `InvalidName`.
pub fn invalid_names(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    for name in ["", "a//b", "/lead", "trail/"] {
        match b.put(name, bytes(6, 1)) {
            Err(BackendError::InvalidName { .. }) => {}
            other => panic!("put {name:?} should be InvalidName, got {other:?}"),
        }
    }
}
