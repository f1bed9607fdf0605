//! The [`Backend`] contract.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;

use bytes::Bytes;

use super::Target;
use crate::backend::BackendExt;
use crate::backend::{Backend, BackendResult};
use crate::error::BackendError;

fn bytes(seed: u64, len: usize) -> Bytes {
    Bytes::from(super::noise(seed, len))
}

/// A batch of objects of one part each, as `put_many` takes them.
fn whole(objects: Vec<(String, Bytes)>) -> Vec<(String, Vec<Bytes>)> {
    objects.into_iter().map(|(n, d)| (n, vec![d])).collect()
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

/// Empty names and empty components are refused with `InvalidName` by
/// every call that takes a name (`put`, `put_durable`, `get`, `get_range`,
/// `delete`), and a refused write writes nothing and changes no other
/// object.
pub fn invalid_names(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    b.put("kept", bytes(5, 10)).unwrap();
    let refused = |what: &str, name: &str, r: BackendResult<()>| match r {
        Err(BackendError::InvalidName { .. }) => {}
        other => panic!("{what} {name:?} should be InvalidName, got {other:?}"),
    };
    for name in ["", "a//b", "/lead", "trail/", "nul\0byte"] {
        refused("put", name, b.put(name, bytes(6, 1)));
        refused("put_durable", name, b.put_durable(name, bytes(6, 1)));
        refused("get", name, b.get(name).map(drop));
        refused("get_range", name, b.get_range(name, 0..0).map(drop));
        refused("delete", name, b.delete(name));
    }
    assert_eq!(
        b.list("").unwrap(),
        vec!["kept".to_string()],
        "nothing else written"
    );
    assert_eq!(b.get("kept").unwrap(), bytes(5, 10));
}

/// Every call works from a thread that is running an async runtime's task
/// (a backend over an async client runs its own runtime, and never blocks
/// on the caller's).
pub fn works_inside_an_async_runtime(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        b.put("in/async", bytes(7, 300)).unwrap();
        b.put_many(vec![("in/many".into(), vec![bytes(8, 40)])])
            .unwrap();
        assert_eq!(b.get("in/async").unwrap(), bytes(7, 300));
        assert_eq!(
            b.get_range("in/async", 10..20).unwrap(),
            bytes(7, 300).slice(10..20)
        );
        let many = b.get_many(vec![("in/many".into(), None)]);
        assert_eq!(many.into_iter().next().unwrap().unwrap(), bytes(8, 40));
        assert_eq!(
            b.list("in/").unwrap(),
            vec!["in/async".to_string(), "in/many".to_string()]
        );
        b.delete("in/async").unwrap();
        b.sync().unwrap();
        assert_eq!(b.list("").unwrap(), vec!["in/many".to_string()]);
    });
}

/// The objects a check wrote, by name: what `list("")` and `get` must give.
type Model = std::collections::BTreeMap<String, Bytes>;

/// Every object of `model` reads back exactly, and `list("")` is exactly its
/// names.
fn assert_holds(b: &dyn Backend, model: &Model, when: &str) {
    let names: Vec<String> = model.keys().cloned().collect();
    assert_eq!(b.list("").unwrap(), names, "list(\"\") {when}");
    for (name, data) in model {
        match b.get(name) {
            Ok(got) => assert!(
                got == data,
                "{name:?} {when}: {} bytes read, {} bytes written, or different bytes",
                got.len(),
                data.len()
            ),
            Err(e) => panic!("get {name:?} {when}: {e}"),
        }
    }
}

/// `put_parts` and `put_many` store the concatenation of the parts,
/// whatever their number and sizes (none, empty ones, ones around 1 MiB),
/// and replace an object whole.
pub fn put_parts_round_trip(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    let shapes: [&[usize]; 5] = [
        &[],
        &[0],
        &[5],
        &[1 << 20, 4],
        &[0, 100_000, 0, 3, (1 << 20) + 7],
    ];
    let mut seed = 900;
    let mut made = |shape: &[usize]| -> (Vec<Bytes>, Bytes) {
        let parts: Vec<Bytes> = shape
            .iter()
            .map(|&len| {
                seed += 1;
                bytes(seed, len)
            })
            .collect();
        let whole: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        (parts, Bytes::from(whole))
    };
    for (i, shape) in shapes.iter().enumerate() {
        let (parts, whole) = made(shape);
        let name = format!("pp/one/{i}");
        b.put_parts(&name, parts).unwrap();
        assert_eq!(b.get(&name).unwrap(), whole, "put_parts of {shape:?}");
    }
    let mut expect = Vec::new();
    let objects: Vec<(String, Vec<Bytes>)> = shapes
        .iter()
        .enumerate()
        .map(|(i, shape)| {
            let (parts, whole) = made(shape);
            let name = format!("pp/many/{i}");
            expect.push((name.clone(), whole));
            (name, parts)
        })
        .collect();
    b.put_many(objects).unwrap();
    // One of them again, replaced whole by a shorter object.
    let (parts, whole) = made(&[3, 4]);
    b.put_many(vec![("pp/many/3".to_string(), parts)]).unwrap();
    expect[3].1 = whole;
    for (name, whole) in expect {
        assert_eq!(b.get(&name).unwrap(), whole, "put_many of parts: {name}");
    }
}

/// `put_many` stores every object of a batch (empty, small and a few MiB,
/// across "directories"), replaces objects with ones of other lengths, and
/// an empty batch does nothing.
pub fn put_many_round_trip(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    let mut model = Model::new();
    let sizes = [0usize, 1, 7, 100, 4096, 65_537, 1 << 20, (3 << 20) + 5];
    let first: Vec<(String, Bytes)> = (0..24u64)
        .map(|i| {
            let name = format!("pm/{}/{i}", i % 3);
            (name, bytes(100 + i, sizes[i as usize % sizes.len()]))
        })
        .collect();
    model.extend(first.iter().cloned());
    b.put_many(whole(first)).unwrap();
    assert_holds(&*b, &model, "after a put_many of 24 objects");

    // Every third object replaced (by a shorter or longer one, or an empty
    // one), and new names in the same batch.
    let second: Vec<(String, Bytes)> = (0..24u64)
        .filter(|i| i % 3 == 0)
        .map(|i| {
            let name = format!("pm/{}/{i}", i % 3);
            let len = sizes[(i as usize + 3) % sizes.len()];
            (name, bytes(200 + i, len))
        })
        .chain((0..4u64).map(|i| (format!("pm/new/{i}"), bytes(300 + i, 10 * i as usize))))
        .collect();
    model.extend(second.iter().cloned());
    b.put_many(whole(second)).unwrap();
    assert_holds(&*b, &model, "after a put_many replacing 8 objects");

    b.put_many(Vec::new()).unwrap();
    assert_holds(&*b, &model, "after an empty put_many");
}

/// A `put_many` that fails (one name is invalid) leaves every other object
/// of the batch either written whole or as it was before.
pub fn put_many_failure_leaves_whole_objects(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    let before: Vec<(String, Bytes)> = (0..6u64)
        .map(|i| (format!("f/{i}"), bytes(400 + i, 5_000 + i as usize)))
        .collect();
    b.put_many(whole(before.clone())).unwrap();
    let mut batch: Vec<(String, Bytes)> = (0..12u64)
        .map(|i| (format!("f/{i}"), bytes(500 + i, 9_000 + 100 * i as usize)))
        .collect();
    batch.insert(5, ("f//invalid".into(), bytes(600, 10)));
    let result = b.put_many(whole(batch.clone()));
    assert!(
        result.is_err(),
        "a put_many with the name \"f//invalid\" succeeded"
    );
    let listed = b.list("").unwrap();
    for (name, new) in batch.iter().filter(|(n, _)| n != "f//invalid") {
        let old = before.iter().find(|(n, _)| n == name).map(|(_, d)| d);
        match b.get(name) {
            Ok(got) => assert!(
                got == new || Some(&got) == old,
                "{name:?} after a failed put_many: {} bytes, neither the old nor the new object",
                got.len()
            ),
            Err(e) if e.is_not_found() => {
                assert!(
                    old.is_none(),
                    "{name:?} existed before the failed put_many, now gone"
                )
            }
            Err(e) => panic!("get {name:?} after a failed put_many: {e}"),
        }
        let present = b.get(name).is_ok();
        assert_eq!(
            listed.contains(name),
            present,
            "list and get disagree on {name:?}"
        );
    }
    assert!(
        listed
            .iter()
            .all(|n| n.starts_with("f/") && n[2..].parse::<u64>().is_ok()),
        "unexpected names after a failed put_many: {listed:?}"
    );
}

/// `put_durable` stores and replaces objects (longer, shorter, empty, in a
/// new "directory") exactly as `put` does.
pub fn put_durable_round_trip(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    let mut model = Model::new();
    for (i, (name, len)) in [
        ("manifest", 3_000usize),
        ("manifest", 70_000),
        ("manifest", 12),
        ("deep/new/dir/m", 1 << 20),
        ("deep/new/dir/m", 0),
        ("other", 1),
    ]
    .into_iter()
    .enumerate()
    {
        let data = bytes(700 + i as u64, len);
        b.put_durable(name, data.clone()).unwrap();
        model.insert(name.to_string(), data);
        assert_holds(&*b, &model, &format!("after put_durable #{i} of {name:?}"));
    }
    // Mixed with plain puts and deletes of the same names.
    b.put("manifest", bytes(710, 5)).unwrap();
    b.put_durable("manifest", bytes(711, 50)).unwrap();
    model.insert("manifest".into(), bytes(711, 50));
    b.delete("other").unwrap();
    model.remove("other");
    b.put_durable("other", bytes(712, 33)).unwrap();
    model.insert("other".into(), bytes(712, 33));
    assert_holds(&*b, &model, "after put, put_durable and delete mixed");
}

/// `get_many` answers exactly one result per request, in order, each as
/// `get` or `get_range` would: whole objects, ranges (empty ones too),
/// missing objects, out-of-bounds ranges, invalid names and repeated
/// requests, mixed; and nothing for no request.
pub fn get_many_mixed(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    assert!(b.get_many(Vec::new()).is_empty(), "get_many of no request");
    let objects: Vec<(String, Bytes)> = (0..8u64)
        .map(|i| {
            (
                format!("g/{i}"),
                bytes(800 + i, [0, 1, 300, 5_000][i as usize % 4] + i as usize),
            )
        })
        .collect();
    for (name, data) in &objects {
        b.put(name, data.clone()).unwrap();
    }
    assert!(b.get_many(Vec::new()).is_empty(), "get_many of no request");

    enum Want {
        Bytes(Bytes),
        NotFound,
        OutOfBounds,
        Invalid,
    }
    let mut requests: Vec<(String, Option<Range<u64>>)> = Vec::new();
    let mut wants = Vec::new();
    let mut ask = |name: &str, range: Option<Range<u64>>, want: Want| {
        requests.push((name.to_string(), range));
        wants.push(want);
    };
    for (name, data) in &objects {
        let len = data.len() as u64;
        ask(name, None, Want::Bytes(data.clone()));
        ask(name, Some(len..len), Want::Bytes(Bytes::new()));
        if len >= 2 {
            let r = len / 3..len - 1;
            ask(
                name,
                Some(r.clone()),
                Want::Bytes(data.slice(r.start as usize..r.end as usize)),
            );
        }
        ask(name, Some(0..len + 1), Want::OutOfBounds);
    }
    ask("g/missing", None, Want::NotFound);
    ask("g/missing", Some(0..0), Want::NotFound);
    ask("g/7/below", Some(0..1), Want::NotFound);
    ask("g", None, Want::NotFound);
    ask("g//bad", None, Want::Invalid);
    let (name, data) = &objects[3];
    ask(name, None, Want::Bytes(data.clone()));
    ask(name, Some(Range { start: 2, end: 1 }), Want::OutOfBounds);
    // Interleave: move the failing requests among the good ones.
    let n = requests.len();
    let order: Vec<usize> = (0..n).map(|i| (i * 7) % n).collect();
    assert!(
        !n.is_multiple_of(7),
        "7 must be coprime with {n} to permute the requests"
    );
    let requests: Vec<_> = order.iter().map(|&i| requests[i].clone()).collect();
    let wants: Vec<&Want> = order.iter().map(|&i| &wants[i]).collect();

    let results = b.get_many(requests.clone());
    assert_eq!(results.len(), requests.len(), "one result per request");
    for (((name, range), want), result) in requests.iter().zip(wants).zip(results) {
        let what = format!("request {name:?} {range:?}");
        match (want, result) {
            (Want::Bytes(want), Ok(got)) => assert!(
                got == want,
                "{what}: {} bytes instead of the {} expected, or different bytes",
                got.len(),
                want.len()
            ),
            (Want::NotFound, Err(BackendError::NotFound { .. }))
            | (Want::OutOfBounds, Err(BackendError::RangeOutOfBounds { .. }))
            | (Want::Invalid, Err(BackendError::InvalidName { .. })) => {}
            (Want::Bytes(_), Err(e)) => panic!("{what}: {e}"),
            (Want::NotFound, other) => panic!("{what}: expected NotFound, got {other:?}"),
            (Want::OutOfBounds, other) => {
                panic!("{what}: expected RangeOutOfBounds, got {other:?}")
            }
            (Want::Invalid, other) => panic!("{what}: expected InvalidName, got {other:?}"),
        }
    }
}

/// `sync` succeeds on an empty store and after puts, `put_many`s, deletes
/// and overwrites, changes nothing that can be read, and a reopened
/// location then holds exactly the expected objects.
pub fn sync_keeps_exact_contents(target: &dyn Target) {
    let location = target.fresh();
    let b = location.open().unwrap();
    b.sync().unwrap();
    assert!(
        b.list("").unwrap().is_empty(),
        "a fresh location must be empty"
    );
    b.sync().unwrap();

    let mut model = Model::new();
    for i in 0..10u64 {
        let (name, data) = (
            format!("s/{}/{i}", i % 2),
            bytes(900 + i, 1_000 * i as usize),
        );
        b.put(&name, data.clone()).unwrap();
        model.insert(name, data);
    }
    let batch: Vec<(String, Bytes)> = (0..6u64)
        .map(|i| (format!("s/many/{i}"), bytes(920 + i, 777 + i as usize)))
        .collect();
    model.extend(batch.iter().cloned());
    b.put_many(whole(batch)).unwrap();
    for i in [1u64, 4, 9] {
        let name = format!("s/{}/{i}", i % 2);
        b.delete(&name).unwrap();
        model.remove(&name);
    }
    b.delete("s/many/0").unwrap();
    model.remove("s/many/0");
    b.put("s/0/2", bytes(930, 3)).unwrap();
    model.insert("s/0/2".into(), bytes(930, 3));
    b.sync().unwrap();
    assert_holds(&*b, &model, "after sync");

    // Deletes only, then sync again: a barrier for deletes too.
    for name in ["s/0/0", "s/many/5", "s/never/was"] {
        b.delete(name).unwrap();
        model.remove(name);
    }
    b.sync().unwrap();
    b.sync().unwrap();
    assert_holds(&*b, &model, "after deletes and sync");

    drop(b);
    let b = location.open().unwrap();
    assert_holds(&*b, &model, "after sync and reopening the location");
    b.sync().unwrap();
    assert_holds(&*b, &model, "after a sync with nothing to do");
}

/// `list` after deletes: deleted names are gone, including every name under
/// a prefix, a prefix of names is not an object, and a name can be put again
/// below a prefix whose objects were all deleted.
pub fn list_after_deletes(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    let mut model = Model::new();
    for (i, name) in [
        "x/a/1", "x/a/2", "x/a/b/3", "x/ab", "x/b/1", "x/b/2", "x/c", "y", "y0", "z/z/z",
    ]
    .into_iter()
    .enumerate()
    {
        b.put(name, bytes(1000 + i as u64, 10 + i)).unwrap();
        model.insert(name.to_string(), bytes(1000 + i as u64, 10 + i));
    }
    assert_holds(&*b, &model, "after the puts");

    // A prefix of names is not an object: not found, and deleting it is a no-op.
    for prefix in ["x", "x/a", "x/a/b", "z/z"] {
        assert!(
            b.get(prefix).is_err_and(|e| e.is_not_found()),
            "get {prefix:?}: only a prefix of other names"
        );
        b.delete(prefix).unwrap();
    }
    assert_holds(&*b, &model, "after deleting prefixes of names");

    for name in ["x/a/1", "x/a/2", "x/a/b/3", "x/b/2", "y", "z/z/z"] {
        b.delete(name).unwrap();
        model.remove(name);
        assert!(
            b.get(name).is_err_and(|e| e.is_not_found()),
            "{name:?} after delete"
        );
    }
    assert_holds(&*b, &model, "after the deletes");

    for prefix in [
        "", "x", "x/", "x/a", "x/a/", "x/a/b/", "x/b", "y", "z", "z/z/", "q",
    ] {
        assert_eq!(
            b.list(prefix).unwrap(),
            under(&model, prefix),
            "list({prefix:?}) after deletes"
        );
    }

    // Put back below the emptied prefixes, and an object named like a former prefix.
    for (i, name) in ["x/a/b/3", "z/z", "x/a/1"].into_iter().enumerate() {
        let data = bytes(1100 + i as u64, 20 + i);
        b.put(name, data.clone()).unwrap();
        model.insert(name.to_string(), data);
    }
    assert_holds(&*b, &model, "after putting names back");
    for prefix in ["x/a", "x/a/", "z", "z/z", "z/z/"] {
        assert_eq!(
            b.list(prefix).unwrap(),
            under(&model, prefix),
            "list({prefix:?}) after puts"
        );
    }

    for name in model.keys().cloned().collect::<Vec<_>>() {
        b.delete(&name).unwrap();
    }
    assert!(
        b.list("").unwrap().is_empty(),
        "list after deleting everything"
    );
}

/// Ranges at the edges: an empty range at the end of an object (and of an
/// empty object) is empty; one byte past it, or an inverted range, is
/// `RangeOutOfBounds` reporting the request and the object's size; an empty
/// range of a missing object is `NotFound`.
pub fn range_edges(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    for (i, len) in [0u64, 1, 1000, 70_000].into_iter().enumerate() {
        let name = format!("e/{i}");
        let data = bytes(1200 + i as u64, len as usize);
        b.put(&name, data.clone()).unwrap();
        assert_eq!(
            b.get_range(&name, len..len).unwrap(),
            Bytes::new(),
            "{name} {len}..{len}"
        );
        assert_eq!(
            b.get_range(&name, 0..0).unwrap(),
            Bytes::new(),
            "{name} 0..0"
        );
        assert_eq!(b.get_range(&name, 0..len).unwrap(), data, "{name} 0..{len}");
        if len > 0 {
            assert_eq!(
                b.get_range(&name, len - 1..len).unwrap(),
                data.slice(len as usize - 1..),
                "{name}: the last byte"
            );
        }
        for bad in [
            len..len + 1,
            len + 1..len + 1,
            0..len + 1,
            len + 10..len + 20,
        ] {
            match b.get_range(&name, bad.clone()) {
                Err(BackendError::RangeOutOfBounds {
                    start, end, size, ..
                }) => assert_eq!(
                    (start, end, size),
                    (bad.start, bad.end, len),
                    "{name}: RangeOutOfBounds of {bad:?}"
                ),
                other => panic!(
                    "{name} range {bad:?} of {len} bytes: expected RangeOutOfBounds, got {other:?}"
                ),
            }
        }
        if len >= 2 {
            let inverted = Range { start: 2, end: 1 };
            assert!(
                matches!(
                    b.get_range(&name, inverted.clone()),
                    Err(BackendError::RangeOutOfBounds { .. })
                ),
                "{name}: the inverted range {inverted:?}"
            );
        }
    }
    for range in [0..0, 0..1, 5..5] {
        assert!(
            b.get_range("e/missing", range.clone())
                .is_err_and(|e| e.is_not_found()),
            "range {range:?} of a missing object"
        );
    }
}

/// `location`, `write_concurrency` and `counters` as documented: a location
/// to print, a concurrency of at least 1 that does not change, counters with
/// unique, stable names whose values never decrease.
pub fn reports(target: &dyn Target) {
    let b = target.fresh().open().unwrap();
    assert!(!b.location().is_empty(), "location() is empty");
    let capabilities = b.capabilities();
    let concurrency = capabilities.write_concurrency;
    assert!(concurrency >= 1, "write_concurrency is {concurrency}");
    let cost = capabilities.read_cost;
    assert!(cost.bytes_per_sec >= 1, "read_cost is {cost:?}");
    assert_eq!(b.capabilities(), capabilities, "capabilities() changes");
    let before = b.counters();
    let names = |c: &[(String, u64)]| c.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let mut unique = names(&before);
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        before.len(),
        "duplicate counter names: {before:?}"
    );
    assert!(
        before.iter().all(|(n, _)| !n.is_empty()),
        "an empty counter name: {before:?}"
    );

    b.put_many(
        (0..4)
            .map(|i| (format!("c/{i}"), vec![bytes(i, 10_000)]))
            .collect(),
    )
    .unwrap();
    b.put_durable("c/d", bytes(9, 100)).unwrap();
    b.get("c/1").unwrap();
    b.get_range("c/2", 10..20).unwrap();
    let _ = b.get("c/missing");
    b.delete("c/3").unwrap();
    b.sync().unwrap();
    let after = b.counters();
    assert_eq!(names(&after), names(&before), "counter names changed");
    for ((name, old), (_, new)) in before.iter().zip(&after) {
        assert!(new >= old, "counter {name} went down from {old} to {new}");
    }
    assert_eq!(
        b.capabilities(),
        capabilities,
        "capabilities() changed after use"
    );
}

/// Decrements a count when dropped, also when its thread panics, so the
/// threads that wait for it to reach zero always stop.
struct Leaving<'a>(&'a AtomicUsize);

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The names of `model` that start with `prefix`, sorted.
fn under(model: &Model, prefix: &str) -> Vec<String> {
    model
        .keys()
        .filter(|k| k.starts_with(prefix))
        .cloned()
        .collect()
}

/// Joins a thread, passing on its panic (with its own message).
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Which of `versions` `got` is, if it is one of them whole.
fn which(versions: &[Bytes], got: &[u8]) -> Option<usize> {
    versions.iter().position(|v| v[..] == *got)
}

/// Which of `versions` `got` is the `range` of, if any.
fn which_range(versions: &[Bytes], range: &Range<u64>, got: &[u8]) -> Option<usize> {
    let r = range.start as usize..range.end as usize;
    versions.iter().position(|v| v[r.clone()] == *got)
}

/// Eight threads use one handle at once: two overwrite one object with
/// versions of different lengths (through `put`, `put_durable` and
/// `put_many`) while three read it (`get`, `get_range`, `get_many`) and
/// check every read is exactly one version, whole; two put, read, delete and
/// list names of their own and overwrite shared ones; one lists the store.
/// At the end the store holds exactly what was written last.
pub fn threads_share_a_store(target: &dyn Target) {
    const HOT: &str = "shared/hot";
    const WRITERS: usize = 2;
    const ROUNDS: usize = 3;
    const OWN: u64 = 24;
    const COMMON: u64 = 4;
    let b = target.fresh().open().unwrap();
    let ranged = target.ranged_reads_atomic_under_overwrite();
    // Lengths all different, from 256 KiB to about 1.7 MiB.
    let versions: Vec<Bytes> = (0..6u64)
        .map(|v| bytes(2000 + v, (256 << 10) + v as usize * 300_007))
        .collect();
    let side = |w: usize, v: usize| {
        (
            format!("side/{w}/{v}"),
            bytes(2100 + (w * 10 + v) as u64, 100 + v),
        )
    };
    let common = |t: u64, j: u64| {
        (
            format!("common/{j}"),
            bytes(2200 + t * 10 + j, 50 + t as usize * 1000 + j as usize),
        )
    };
    b.put(HOT, versions[0].clone()).unwrap();
    for j in 0..COMMON {
        let (name, data) = common(0, j);
        b.put(&name, data).unwrap();
    }
    // Ranges every version holds: one across the first 16 KiB, one inside.
    let ranges = [10_000u64..100_000, 150_000..250_000];

    let writers_left = AtomicUsize::new(WRITERS);
    let start = Barrier::new(WRITERS + 3 + 2 + 1);
    let (b, versions, writers_left, start, ranges) =
        (&*b, &versions[..], &writers_left, &start, &ranges);
    let reading = || writers_left.load(Ordering::SeqCst) > 0;
    let (own_models, reads) = std::thread::scope(|s| {
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            writers.push(s.spawn(move || {
                let _leaving = Leaving(writers_left);
                start.wait();
                for round in 0..ROUNDS {
                    for v in (w..versions.len()).step_by(WRITERS) {
                        let data = versions[v].clone();
                        let done = match (round + v) % 3 {
                            0 => b.put(HOT, data),
                            1 => b.put_durable(HOT, data),
                            _ => b.put_many(whole(vec![(HOT.to_string(), data), side(w, v)])),
                        };
                        done.unwrap_or_else(|e| panic!("writer {w}: put of version {v}: {e}"));
                    }
                }
            }));
        }
        let mut readers = Vec::new();
        for r in 0..3 {
            readers.push(s.spawn(move || {
                start.wait();
                let mut reads = 0usize;
                while reading() || reads < 5 {
                    let got = b
                        .get(HOT)
                        .unwrap_or_else(|e| panic!("reader {r}: get: {e}"));
                    assert!(
                        which(versions, &got).is_some(),
                        "reader {r}: get gave {} bytes that are no version whole",
                        got.len()
                    );
                    if !ranged {
                        reads += 1;
                        continue;
                    }
                    let range = ranges[reads % 2].clone();
                    let got = b
                        .get_range(HOT, range.clone())
                        .unwrap_or_else(|e| panic!("reader {r}: get_range {range:?}: {e}"));
                    assert!(
                        which_range(versions, &range, &got).is_some(),
                        "reader {r}: get_range {range:?} gave bytes of no single version"
                    );
                    let other = ranges[(reads + 1) % 2].clone();
                    let many = b.get_many(vec![
                        (HOT.to_string(), Some(other.clone())),
                        ("shared/none".to_string(), None),
                        (HOT.to_string(), None),
                    ]);
                    assert_eq!(many.len(), 3, "reader {r}: get_many of 3 requests");
                    let mut many = many.into_iter();
                    let got = many
                        .next()
                        .unwrap()
                        .unwrap_or_else(|e| panic!("reader {r}: {e}"));
                    assert!(
                        which_range(versions, &other, &got).is_some(),
                        "reader {r}: get_many range {other:?} gave bytes of no single version"
                    );
                    assert!(
                        many.next().unwrap().is_err_and(|e| e.is_not_found()),
                        "reader {r}: get_many of a missing object"
                    );
                    let got = many
                        .next()
                        .unwrap()
                        .unwrap_or_else(|e| panic!("reader {r}: {e}"));
                    assert!(
                        which(versions, &got).is_some(),
                        "reader {r}: get_many gave {} bytes that are no version whole",
                        got.len()
                    );
                    reads += 1;
                }
                reads
            }));
        }
        let mut owners = Vec::new();
        for t in 0..2u64 {
            owners.push(s.spawn(move || {
                start.wait();
                let prefix = format!("own/{t}/");
                let mut model = Model::new();
                for i in 0..OWN {
                    let name = format!("{prefix}{}/{i}", i % 3);
                    let data = bytes(3000 + t * 100 + i, 1 + (i as usize * 997) % 20_000);
                    b.put(&name, data.clone()).unwrap();
                    model.insert(name.clone(), data.clone());
                    assert!(
                        b.get(&name).unwrap() == data,
                        "thread {t}: {name:?} read back"
                    );
                    if i % 3 == 2 {
                        let gone = format!("{prefix}{}/{}", (i - 1) % 3, i - 1);
                        b.delete(&gone).unwrap();
                        model.remove(&gone);
                        assert!(
                            b.get(&gone).is_err_and(|e| e.is_not_found()),
                            "thread {t}: {gone:?} after its delete"
                        );
                    }
                    if i % 4 == 3 {
                        let names: Vec<String> = model.keys().cloned().collect();
                        assert_eq!(b.list(&prefix).unwrap(), names, "thread {t}: list");
                        let requests = names.iter().map(|n| (n.clone(), None)).collect();
                        for ((name, want), got) in model.iter().zip(b.get_many(requests)) {
                            assert!(got.unwrap() == want, "thread {t}: get_many of {name:?}");
                        }
                    }
                    let (name, data) = common(t, i % COMMON);
                    b.put(&name, data).unwrap();
                    let got = b.get(&common(1 - t, i % COMMON).0).unwrap();
                    let (_, mine) = common(t, i % COMMON);
                    let (_, theirs) = common(1 - t, i % COMMON);
                    let (_, first) = common(0, i % COMMON);
                    assert!(
                        got == mine || got == theirs || got == first,
                        "thread {t}: {name:?} is none of the objects written to it"
                    );
                }
                model
            }));
        }
        let lister = s.spawn(move || {
            start.wait();
            let mut lists = 0;
            while reading() || lists < 3 {
                let names = b.list("").unwrap();
                assert!(
                    names.windows(2).all(|w| w[0] < w[1]),
                    "list is not sorted or repeats a name: {names:?}"
                );
                for j in 0..COMMON {
                    let name = format!("common/{j}");
                    assert!(
                        names.contains(&name),
                        "{name:?}, there all along, not listed"
                    );
                }
                assert!(
                    names.iter().any(|n| n == HOT),
                    "{HOT:?}, there all along, not listed"
                );
                assert!(
                    names.iter().all(|n| n == HOT
                        || n.starts_with("common/")
                        || n.starts_with("own/")
                        || n.starts_with("side/")),
                    "list has names never written: {names:?}"
                );
                assert_eq!(b.list("shared/").unwrap(), vec![HOT.to_string()]);
                lists += 1;
            }
        });
        writers.into_iter().for_each(join);
        let reads: usize = readers.into_iter().map(join).sum();
        let own_models: Vec<Model> = owners.into_iter().map(join).collect();
        join(lister);
        (own_models, reads)
    });
    assert!(reads >= 15, "the readers read {reads} times");

    let final_hot = b.get(HOT).unwrap();
    assert!(
        which(versions, &final_hot).is_some(),
        "{HOT:?} at the end is no version whole"
    );
    let mut model: Model = own_models.into_iter().flatten().collect();
    model.insert(HOT.to_string(), final_hot);
    for w in 0..WRITERS {
        for v in (w..versions.len()).step_by(WRITERS) {
            if (0..ROUNDS).any(|round| (round + v) % 3 == 2) {
                let (name, data) = side(w, v);
                model.insert(name, data);
            }
        }
    }
    for j in 0..COMMON {
        let name = format!("common/{j}");
        let got = b.get(&name).unwrap();
        assert!(
            got == common(0, j).1 || got == common(1, j).1,
            "{name:?} at the end is none of the objects written to it"
        );
        model.insert(name, got);
    }
    assert_holds(b, &model, "after the threads");
}
