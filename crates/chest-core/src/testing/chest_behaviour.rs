//! A [`Chest`] over the backend under test.

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::{Location, Target};
use crate::backend::BackendExt;
use crate::{BoxError, Chest, ChestBuilder, Error, Serializer};

type Bytes = Vec<u8>;

use super::noise as value;

// Dead objects go as soon as no retained manifest names them: these checks
// count objects, and readers beside a writer are `single_writer`'s subject.
fn open(loc: &dyn Location, budget: usize) -> Chest<u64, Bytes> {
    ChestBuilder::new()
        .memory_budget(budget)
        .reader_grace(std::time::Duration::ZERO)
        .open_backend(loc.open().expect("open the backend"))
        .expect("open the chest")
}

/// A chest over `backend` (a handle the test keeps, to look at the objects
/// while the chest holds the location).
fn open_on(backend: &Arc<dyn crate::Backend>, budget: usize) -> Chest<u64, Bytes> {
    ChestBuilder::new()
        .memory_budget(budget)
        .reader_grace(std::time::Duration::ZERO)
        .open_backend(Arc::clone(backend))
        .expect("open the chest")
}

/// Many times the budget goes in; memory stays within budget + one value;
/// everything reads back.
pub fn spill_under_budget(target: &dyn Target) {
    let loc = target.fresh();
    let budget = 64 << 10;
    let c = open(&*loc, budget);
    for i in 0..200u64 {
        c.insert(i, value(i, 4096)).unwrap();
        assert!(
            c.memory_usage() <= budget + 4096 + 256,
            "memory {} over budget {budget} after insert {i}",
            c.memory_usage()
        );
    }
    let s = c.stats();
    assert!(s.spills >= 150, "expected most values spilled: {s:?}");
    assert_eq!(c.len(), 200);
    for i in (0..200u64).rev() {
        assert_eq!(*c.get(&i).unwrap().unwrap(), value(i, 4096), "key {i}");
        assert!(c.memory_usage() <= budget + 4096 + 64);
    }
    assert!(c.stats().loads >= 150);
    drop(c);
}

/// A flushed chest reopens with every key; values load on demand.
pub fn reopen_after_flush(target: &dyn Target) {
    let loc = target.fresh();
    let c = open(&*loc, 32 << 10);
    let sizes = [0usize, 1, 100, 5000, 300_000];
    for i in 0..60u64 {
        c.insert(i, value(i, sizes[i as usize % sizes.len()]))
            .unwrap();
    }
    c.flush().unwrap();
    c.close().unwrap();
    let c = open(&*loc, 32 << 10);
    assert_eq!(c.len(), 60);
    assert_eq!(c.memory_usage(), 0, "reopen must not load values");
    assert_eq!(c.stats().loads, 0);
    let mut keys = c.keys();
    keys.sort_unstable();
    assert_eq!(keys, (0..60).collect::<Vec<u64>>());
    for i in 0..60u64 {
        assert_eq!(
            *c.get(&i).unwrap().unwrap(),
            value(i, sizes[i as usize % sizes.len()]),
            "key {i}"
        );
    }
    assert!(c.get(&1000).unwrap().is_none());
}

/// Overwriting a spilled key gives the new value, before and after a reopen.
pub fn overwrite_spilled(target: &dyn Target) {
    let loc = target.fresh();
    let c = open(&*loc, 16 << 10);
    for i in 0..50u64 {
        c.insert(i, value(i, 2000)).unwrap();
    }
    c.flush().unwrap();
    assert!(c.stats().resident < 50);
    for i in 0..50u64 {
        c.insert(i, value(i + 1000, 1500)).unwrap();
    }
    for i in 0..50u64 {
        assert_eq!(*c.get(&i).unwrap().unwrap(), value(i + 1000, 1500));
    }
    c.close().unwrap();
    let c = open(&*loc, 16 << 10);
    for i in 0..50u64 {
        assert_eq!(
            *c.get(&i).unwrap().unwrap(),
            value(i + 1000, 1500),
            "key {i} after reopen"
        );
    }
}

/// Removing a spilled key removes it for good, and its object once nothing
/// else lives in it.
pub fn remove_spilled(target: &dyn Target) {
    let loc = target.fresh();
    let backend = loc.open().unwrap();
    let data_objects = || backend.list("data/").unwrap();
    let c = open_on(&backend, 8 << 10);
    for i in 0..20u64 {
        c.insert(i, value(i, 300_000)).unwrap(); // each its own object
    }
    c.flush().unwrap();
    assert_eq!(data_objects().len(), 20);
    for i in 0..10u64 {
        assert!(c.remove(&i).unwrap());
        assert!(!c.contains_key(&i));
        assert!(c.get(&i).unwrap().is_none());
    }
    assert!(!c.remove(&5).unwrap());
    c.flush().unwrap();
    // The manifest before the newest one is kept (the fallback if the newest
    // is found damaged), and it names them: they go with the next commit.
    assert_eq!(
        data_objects().len(),
        20,
        "deleted while a kept manifest names them"
    );
    c.flush().unwrap();
    c.close().unwrap();
    assert_eq!(
        data_objects().len(),
        10,
        "removed values' objects must be deleted"
    );
    let c = open_on(&backend, 8 << 10);
    assert_eq!(c.len(), 10);
    for i in 0..10u64 {
        assert!(!c.contains_key(&i));
    }
    for i in 10..20u64 {
        assert_eq!(*c.get(&i).unwrap().unwrap(), value(i, 300_000));
    }
}

/// A spilled value changed with `update` is rewritten and persists.
pub fn mutate_spilled_persists(target: &dyn Target) {
    let loc = target.fresh();
    let c = open(&*loc, 16 << 10);
    for i in 0..40u64 {
        c.insert(i, value(i, 1000)).unwrap();
    }
    c.flush().unwrap();
    for i in 0..40u64 {
        let n = c.update(&i, |v| {
            v.truncate(10);
            v.push(0xAB);
            v.len()
        });
        assert_eq!(n.unwrap(), Some(11));
    }
    assert_eq!(c.update(&999, |v| v.len()).unwrap(), None);
    c.close().unwrap();
    let c = open(&*loc, 16 << 10);
    for i in 0..40u64 {
        let mut expect = value(i, 1000);
        expect.truncate(10);
        expect.push(0xAB);
        assert_eq!(*c.get(&i).unwrap().unwrap(), expect, "key {i}");
    }
}

/// Fails on values that start with 0xFF.
struct Picky;

impl Serializer<Bytes> for Picky {
    fn name(&self) -> &str {
        "picky"
    }
    fn serialize(&self, v: &Bytes, out: &mut Vec<u8>) -> Result<(), BoxError> {
        if v.first() == Some(&0xFF) {
            return Err("values starting with 0xFF are refused".into());
        }
        out.extend_from_slice(v);
        Ok(())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<Bytes, BoxError> {
        Ok(bytes.to_vec())
    }
}

/// iter visits every key once with its value, spilled or not.
pub fn iter_visits_every_key(target: &dyn Target) {
    let loc = target.fresh();
    let c = open(&*loc, 32 << 10);
    for i in 0..60u64 {
        c.insert(i, value(i, 2000 + i as usize)).unwrap();
    }
    assert!(c.stats().resident < 60, "some values must be spilled");
    let mut seen: HashMap<u64, Bytes> = HashMap::new();
    for item in c.iter() {
        let (k, v) = item.unwrap();
        assert!(
            seen.insert(k, (*v).clone()).is_none(),
            "key {k} visited twice"
        );
    }
    assert_eq!(seen.len(), 60);
    for (k, v) in &seen {
        assert_eq!(*v, value(*k, 2000 + *k as usize), "key {k}");
    }
    assert!(c.memory_usage() <= (32 << 10) + 2100);
}

/// prefetch loads spilled values in one batch; the gets after it are hits.
pub fn prefetch_loads_spilled_values(target: &dyn Target) {
    let loc = target.fresh();
    let c = open(&*loc, 64 << 10);
    for i in 0..40u64 {
        c.insert(i, value(i, 4000 + i as usize)).unwrap();
    }
    c.close().unwrap();
    let c = open(&*loc, 64 << 10);
    let window: Vec<u64> = (10..18).chain([1000]).collect();
    assert_eq!(
        c.prefetch(&window).unwrap(),
        8,
        "8 spilled values, 1 absent key"
    );
    assert_eq!(c.stats().loads, 8);
    let hits = c.stats().hits;
    for i in 10..18u64 {
        assert_eq!(*c.get(&i).unwrap().unwrap(), value(i, 4000 + i as usize));
    }
    assert_eq!(
        c.stats().hits,
        hits + 8,
        "prefetched values are memory hits"
    );
    assert_eq!(c.prefetch(&window).unwrap(), 0, "already in memory");
}

/// `read_ahead` loads spilled values in the background, window after
/// window; every value reads back right, each loaded once, and values read
/// ahead are kept (later gets are memory hits).
pub fn read_ahead_loads_spilled_values(target: &dyn Target) {
    let loc = target.fresh();
    // 100 values of about 4 KiB, a budget of about 60 of them (the windows
    // read ahead are a small part of it, as they should be).
    let c = open(&*loc, 256 << 10);
    for i in 0..100u64 {
        c.insert(i, value(i, 4000 + i as usize)).unwrap();
    }
    c.close().unwrap();
    // One shard: eviction takes the coldest values of all (with several it
    // takes a little from each shard in turn, and a shard holding few values
    // may give up one read ahead and not yet used, which is then read again).
    let c: Chest<u64, Bytes> = ChestBuilder::new()
        .memory_budget(256 << 10)
        .shards(1)
        .open_backend(loc.open().expect("open the backend"))
        .expect("open the chest");
    let keys: Vec<u64> = (0..100).collect();
    let windows: Vec<&[u64]> = keys.chunks(4).collect();
    let mut started = c.read_ahead(windows[0].iter().copied());
    for (i, window) in windows.iter().enumerate() {
        if let Some(next) = windows.get(i + 1) {
            started += c.read_ahead(next.iter().copied());
        }
        for k in *window {
            assert_eq!(
                *c.get(k).unwrap().unwrap(),
                value(*k, 4000 + *k as usize),
                "key {k}"
            );
        }
    }
    let stats = c.stats();
    assert_eq!(
        stats.loads, started as u64,
        "each started load read once: {stats:?}"
    );
    assert_eq!(started, 100, "a reopened chest has every value spilled");
    assert_eq!(stats.errors, 0, "{stats:?}");
    // The last window read ahead stays in memory.
    let hits = stats.hits;
    for k in windows[windows.len() - 1] {
        assert_eq!(*c.get(k).unwrap().unwrap(), value(*k, 4000 + *k as usize));
    }
    assert_eq!(c.stats().hits, hits + 4, "values read ahead are kept");
    assert_eq!(c.read_ahead([1000u64]), 0, "absent");
    assert!(c.memory_usage() <= (256 << 10) + 4100);
    if let Err(e) = c.check_invariants(true) {
        panic!("{e}");
    }
}

/// A value that cannot be serialized stays in memory, readable; the error
/// reaches the caller and names the key; the other values are stored.
pub fn unserializable_stays_in_memory(target: &dyn Target) {
    let loc = target.fresh();
    let open_picky = || {
        ChestBuilder::<u64, Bytes>::new()
            .serializer(Picky)
            .memory_budget(8 << 10)
            .open_backend(loc.open().unwrap())
            .unwrap()
    };
    let c = open_picky();
    let mut bad = vec![0xFF; 1000];
    bad[1] = 7;
    c.insert(777, bad.clone()).unwrap();
    let mut saw_error = false;
    for i in 0..40u64 {
        if let Err(e) = c.insert(i, value(i, 1000)) {
            assert!(matches!(e, Error::Serialize { .. }), "{e}");
            assert!(e.to_string().contains("777"), "{e}");
            saw_error = true;
        }
    }
    assert!(saw_error, "spilling the bad value must report an error");
    assert_eq!(
        *c.get(&777).unwrap().unwrap(),
        bad,
        "the bad value stays readable"
    );
    let err = c.flush().unwrap_err();
    assert!(
        err.to_string().contains("777"),
        "flush error must name the key: {err}"
    );
    assert!(c.stats().errors > 0);
    // Once replaced by a serializable value, everything flushes.
    c.insert(777, vec![1, 2, 3]).unwrap();
    c.close().unwrap();
    let c = open_picky();
    assert_eq!(*c.get(&777).unwrap().unwrap(), vec![1, 2, 3]);
    for i in 0..40u64 {
        assert_eq!(*c.get(&i).unwrap().unwrap(), value(i, 1000));
    }
}

/// A value heavier than the whole budget goes straight to the backend.
pub fn heavier_than_budget(target: &dyn Target) {
    let loc = target.fresh();
    let c = open(&*loc, 10 << 10);
    c.insert(1, value(1, 100 << 10)).unwrap();
    assert_eq!(c.memory_usage(), 0);
    assert_eq!(c.stats().spills, 1);
    assert_eq!(*c.get(&1).unwrap().unwrap(), value(1, 100 << 10));
    assert_eq!(
        c.memory_usage(),
        0,
        "a value heavier than the budget is not kept"
    );
    c.update(&1, |v| v.truncate(50 << 10)).unwrap();
    assert_eq!(c.get(&1).unwrap().unwrap().len(), 50 << 10);
    c.close().unwrap();
    let c = open(&*loc, 10 << 10);
    assert_eq!(*c.get(&1).unwrap().unwrap(), value(1, 50 << 10));
}

/// A clean value (already stored, unchanged) is not written again when evicted again.
pub fn clean_values_not_rewritten(target: &dyn Target) {
    let loc = target.fresh();
    // Every load kept, so that every read evicts.
    let c: Chest<u64, Bytes> = ChestBuilder::new()
        .memory_budget(16 << 10)
        .admission(crate::Admission::EveryRead)
        .open_backend(loc.open().expect("open the backend"))
        .expect("open the chest");
    for i in 0..64u64 {
        c.insert(i, value(i, 1024)).unwrap();
    }
    c.flush().unwrap();
    let before = c.stats();
    for round in 0..3 {
        for i in 0..64u64 {
            assert_eq!(
                *c.get(&i).unwrap().unwrap(),
                value(i, 1024),
                "round {round}"
            );
        }
    }
    let after = c.stats();
    assert!(
        after.loads > before.loads + 100,
        "values must have been reloaded: {after:?}"
    );
    assert!(after.evictions > before.evictions + 100);
    assert_eq!(after.spills, before.spills, "clean values were rewritten");
    assert_eq!(after.bytes_written, before.bytes_written);
}

/// A chest on `loc` within 256 KiB, one shard (eviction takes the coldest
/// values of all), loaded values kept as `admission` says, holding 512
/// values of 1 KiB, flushed: about the newest 200 in memory.
fn flushed_512_values(loc: &dyn Location, admission: crate::Admission) -> Chest<u64, Bytes> {
    let c: Chest<u64, Bytes> = ChestBuilder::new()
        .memory_budget(256 << 10)
        .shards(1)
        .admission(admission)
        .reader_grace(std::time::Duration::ZERO)
        .open_backend(loc.open().expect("open the backend"))
        .expect("open the chest");
    for i in 0..512u64 {
        c.insert(i, value(i, 1024)).unwrap();
    }
    c.flush().unwrap();
    c
}

/// By default (`Admission::Frequency`) a value `get` loads stays in memory
/// while the budget has room; once memory is full, a value read once waits
/// on probation in a small window and pushes out none of the values in
/// memory, and one read again is kept.
pub fn loads_are_kept_when_wanted_more_than_what_they_push_out(target: &dyn Target) {
    let loc = target.fresh();
    let c = flushed_512_values(&*loc, crate::Admission::Frequency);
    c.evict(usize::MAX).unwrap();
    // Memory fills up with loads while the budget has room (up to where
    // eviction stops).
    for i in 0..200u64 {
        assert_eq!(*c.get(&i).unwrap().unwrap(), value(i, 1024));
    }
    let before = c.stats();
    assert!(before.resident > 0, "loads into room are kept: {before:?}");
    assert!(c.memory_usage() <= 256 << 10);
    let in_memory: std::collections::HashSet<u64> = c.keys_in_memory().into_iter().collect();
    for i in 200..232u64 {
        assert_eq!(*c.get(&i).unwrap().unwrap(), value(i, 1024));
    }
    let once = c.stats();
    assert_eq!(once.loads, before.loads + 32, "each first read loads");
    // Read once, each waits on probation in a small window (a value or
    // so here), pushing out the one before it: none of the values that
    // were in memory leaves, but the one on probation then.
    let still: std::collections::HashSet<u64> = c.keys_in_memory().into_iter().collect();
    let gone = in_memory.difference(&still).count();
    assert!(
        gone <= 1,
        "read once into a full memory, {gone} values in memory were pushed out"
    );
    assert!(
        once.resident <= before.resident + 1,
        "read once into a full memory, nothing was kept: {before:?} then {once:?}"
    );
    let k = 300u64;
    assert!(!c.is_in_memory(&k));
    for _ in 0..3 {
        assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, 1024));
    }
    let after = c.stats();
    assert_eq!(
        after.loads,
        once.loads + 1,
        "read again while on probation, it is there: {after:?}"
    );
    assert!(c.is_in_memory(&k));
    // Pushed out of the window by other values read once, a value used
    // there stays in memory (it moves into the eviction order).
    for i in 400..432u64 {
        assert_eq!(*c.get(&i).unwrap().unwrap(), value(i, 1024));
    }
    assert!(c.is_in_memory(&k), "a value used on probation stays");
    let hits = c.stats().hits;
    assert_eq!(*c.get(&k).unwrap().unwrap(), value(k, 1024));
    assert_eq!(c.stats().hits, hits + 1);
    assert!(c.memory_usage() <= 256 << 10);
}

/// With `Admission::SecondRead` a value `get` loads stays in memory on its
/// second load, not its first (values read once do not push out others);
/// `update` and `prefetch` keep it at once; with `Admission::EveryRead`
/// every load stays.
pub fn loads_are_kept_on_second_read(target: &dyn Target) {
    let loc = target.fresh();
    // The budget holds about 200 of the 512 values. One shard, so that
    // eviction takes the coldest values of all (with many shards it takes
    // a little from each in turn, and which keys are resident depends on
    // how the keys fall into the shards, so on the number of cores).
    let c = flushed_512_values(&*loc, crate::Admission::SecondRead);
    // The early keys are spilled.
    let spilled: Vec<u64> = (0..32).collect();
    let resident = |c: &Chest<u64, Bytes>| c.stats().resident;
    let before = c.stats();
    for i in &spilled {
        assert_eq!(*c.get(i).unwrap().unwrap(), value(*i, 1024));
    }
    let once = c.stats();
    assert_eq!(
        once.loads,
        before.loads + 32,
        "each first read loads: {once:?}"
    );
    assert_eq!(
        once.evictions, before.evictions,
        "read once, nothing was pushed out: {once:?}"
    );
    assert_eq!(resident(&c), before.resident);
    for i in &spilled {
        assert_eq!(*c.get(i).unwrap().unwrap(), value(*i, 1024));
    }
    let twice = c.stats();
    assert_eq!(
        twice.loads,
        once.loads + 32,
        "the second read loads again: {twice:?}"
    );
    let hits = twice.hits;
    for i in &spilled {
        assert_eq!(*c.get(i).unwrap().unwrap(), value(*i, 1024));
    }
    let third = c.stats();
    assert_eq!(
        third.loads, twice.loads,
        "read twice, the values were kept: {third:?}"
    );
    assert_eq!(third.hits, hits + 32);

    assert!(c.memory_usage() <= 256 << 10);

    // `update` and `prefetch` keep what they load at once (keys 200 and
    // 201 are spilled: the newest 200 or so, from 312 on, are in memory).
    let (u, p) = (200u64, 201u64);
    let loads = c.stats().loads;
    c.update(&u, |v| *v = value(7, 1024)).unwrap();
    assert_eq!(c.prefetch([&p]).unwrap(), 1);
    assert_eq!(c.stats().loads, loads + 2);
    let hits = c.stats().hits;
    assert_eq!(*c.get(&u).unwrap().unwrap(), value(7, 1024));
    assert_eq!(*c.get(&p).unwrap().unwrap(), value(p, 1024));
    assert_eq!(
        c.stats().hits,
        hits + 2,
        "update and prefetch kept their loads"
    );
    drop(c);

    let c: Chest<u64, Bytes> = ChestBuilder::new()
        .memory_budget(256 << 10)
        .admission(crate::Admission::EveryRead)
        .open_backend(loc.open().expect("open the backend"))
        .expect("open the chest");
    let loads = c.stats().loads;
    assert_eq!(*c.get(&5).unwrap().unwrap(), value(5, 1024));
    assert_eq!(*c.get(&5).unwrap().unwrap(), value(5, 1024));
    assert_eq!(c.stats().loads, loads + 1, "EveryRead keeps the first load");
}

/// Overwritten and removed small values leave garbage in their segments; a
/// flush compacts mostly-dead segments, so stored bytes stay near live bytes.
pub fn garbage_is_compacted(target: &dyn Target) {
    let loc = target.fresh();
    let backend = loc.open().unwrap();
    let c = open_on(&backend, 64 << 10);
    let stored = || -> usize {
        let names = backend.list("data/").unwrap();
        names.iter().map(|n| backend.get(n).unwrap().len()).sum()
    };
    let mut expect: HashMap<u64, Bytes> = HashMap::new();
    for round in 0..3u64 {
        for i in 0..2000u64 {
            let v = value(i + round * 10_000, 1000);
            c.insert(i, v.clone()).unwrap();
            expect.insert(i, v);
        }
        c.flush().unwrap();
    }
    // Keep one key in ten: almost every segment keeps a live record or two.
    for i in (0..2000u64).filter(|i| i % 10 != 0) {
        assert!(c.remove(&i).unwrap());
        expect.remove(&i);
    }
    c.flush().unwrap();
    // Segments emptied by a flush are deleted once two newer manifests are
    // durable (the newest and the one before it may still name them).
    c.flush().unwrap();
    c.flush().unwrap();
    let live = expect.len() * (1000 + 4);
    let on_store = stored();
    assert!(
        on_store <= live * 5 / 2,
        "{on_store} bytes stored for {live} live bytes: garbage was not compacted"
    );
    c.close().unwrap();
    let c = open_on(&backend, 64 << 10);
    assert_eq!(c.len(), expect.len());
    for (k, v) in &expect {
        assert_eq!(*c.get(k).unwrap().unwrap(), *v, "key {k}");
    }
}

/// A corrupted stored value gives an error naming its key, never wrong data.
pub fn corrupt_value_names_key(target: &dyn Target) {
    let loc = target.fresh();
    let c: Chest<String, Bytes> = ChestBuilder::new()
        .memory_budget(1 << 20)
        .open_backend(loc.open().unwrap())
        .unwrap();
    c.insert("victim-key".to_string(), value(9, 500_000))
        .unwrap();
    c.close().unwrap();
    let b = loc.open().unwrap();
    let objects = b.list("data/").unwrap();
    assert_eq!(objects.len(), 1);
    let mut bytes = b.get(&objects[0]).unwrap().to_vec();
    bytes[1234] ^= 0x01;
    b.put(&objects[0], bytes.into()).unwrap();
    drop(b);
    let c: Chest<String, Bytes> = ChestBuilder::new()
        .memory_budget(1 << 20)
        .open_backend(loc.open().unwrap())
        .unwrap();
    let err = c.get("victim-key").unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("victim-key"), "{err}");
    assert!(
        c.contains_key("victim-key"),
        "the key stays; only its value is bad"
    );
    drop(c);
    // A truncated object is reported the same way.
    let b = loc.open().unwrap();
    b.put(&objects[0], bytes::Bytes::from_static(b"xy"))
        .unwrap();
    drop(b);
    let c: Chest<String, Bytes> = ChestBuilder::new()
        .open_backend(loc.open().unwrap())
        .unwrap();
    let err = c.get("victim-key").unwrap_err();
    assert!(err.to_string().contains("victim-key"), "{err}");
}

/// Eight threads insert, read, update and remove on one chest under a small
/// budget; at the end every key holds what its thread wrote last.
pub fn threads_hammer(target: &dyn Target) {
    let loc = target.fresh();
    let c = open(&*loc, 32 << 10);
    let threads = 8u64;
    let per = 150u64;
    std::thread::scope(|s| {
        for t in 0..threads {
            let c = &c;
            s.spawn(move || {
                for i in 0..per {
                    let k = t * 1_000_000 + i;
                    c.insert(k, value(k, 200 + (i as usize % 7) * 100)).unwrap();
                    if i.is_multiple_of(3) {
                        c.update(&k, |v| v.push(t as u8)).unwrap();
                    }
                    if i % 10 == 9 {
                        assert!(c.remove(&(k - 1)).unwrap());
                    }
                    let back = c.get(&(t * 1_000_000 + i / 2)).unwrap();
                    if (i / 2) % 10 != 8 {
                        assert!(back.is_some(), "thread {t} lost key {}", i / 2);
                    }
                }
            });
        }
    });
    let expect = |t: u64, i: u64| {
        let k = t * 1_000_000 + i;
        let mut v = value(k, 200 + (i as usize % 7) * 100);
        if i.is_multiple_of(3) {
            v.push(t as u8);
        }
        v
    };
    let check = |c: &Chest<u64, Bytes>| {
        assert_eq!(c.len() as u64, threads * (per - per / 10));
        for t in 0..threads {
            for i in 0..per {
                let got = c.get(&(t * 1_000_000 + i)).unwrap();
                if i % 10 == 8 {
                    assert!(got.is_none());
                } else {
                    assert_eq!(*got.unwrap(), expect(t, i), "thread {t} key {i}");
                }
            }
        }
    };
    check(&c);
    assert!(c.stats().spills > 0);
    c.close().unwrap();
    check(&open(&*loc, 32 << 10));
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, u16),
    Get(u8),
    Update(u8),
    Remove(u8),
    Flush,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..40, 0u16..3000).prop_map(|(k, n)| Op::Insert(k, n)),
        4 => (0u8..40).prop_map(Op::Get),
        2 => (0u8..40).prop_map(Op::Update),
        2 => (0u8..40).prop_map(Op::Remove),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

/// Random operations on a chest agree with a `HashMap`, across flushes and reopens.
pub fn model_against_hashmap(target: &dyn Target) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..80), |ops| {
        let loc = target.fresh();
        let mut model: HashMap<u64, Bytes> = HashMap::new();
        let mut c = Some(open(&*loc, 12 << 10));
        for op in ops {
            let chest = c.as_ref().unwrap();
            match op {
                Op::Insert(k, n) => {
                    let v = value(u64::from(n), n as usize);
                    chest.insert(u64::from(k), v.clone()).unwrap();
                    model.insert(u64::from(k), v);
                }
                Op::Get(k) => {
                    let got = chest.get(&u64::from(k)).unwrap();
                    prop_assert_eq!(got.as_deref(), model.get(&u64::from(k)));
                }
                Op::Update(k) => {
                    let got = chest.update(&u64::from(k), |v| v.push(k)).unwrap();
                    let want = model.get_mut(&u64::from(k)).map(|v| v.push(k));
                    prop_assert_eq!(got, want);
                }
                Op::Remove(k) => {
                    let got = chest.remove(&u64::from(k)).unwrap();
                    prop_assert_eq!(got, model.remove(&u64::from(k)).is_some());
                }
                Op::Flush => chest.flush().unwrap(),
                Op::Reopen => {
                    c.take().unwrap().close().unwrap();
                    c = Some(open(&*loc, 12 << 10));
                }
            }
            let chest = c.as_ref().unwrap();
            prop_assert_eq!(chest.len(), model.len());
            prop_assert!(chest.memory_usage() <= (12 << 10) + 3100);
        }
        let chest = c.take().unwrap();
        for (k, v) in &model {
            let got = chest.get(k).unwrap();
            prop_assert_eq!(got.as_deref(), Some(v));
        }
        chest.close().unwrap();
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Chest<u64, Bytes>>();
    is::<Arc<Chest<(u32, String), Vec<f64>>>>();
}
