//! Eviction quality: how many loads the chest makes on access traces,
//! against Belady's offline optimum, an exact LRU, the popularity oracle
//! and an online LFU with exact counts of the whole past (the price of
//! learning counts: what an ideal counting policy would pay on the way to
//! the oracle) on the same trace (see `chest_core::testing::traces`).
//!
//! The fast set runs in `cargo test` with gates a little above what
//! `Admission::Frequency` (the default) reaches today (so a change that
//! makes eviction worse fails), and prints every figure:
//!
//! ```sh
//! cargo test -p chest-core --features testing --release --test eviction_quality -- --nocapture
//! ```
//!
//! The long runs (WORKLOADS.md W7's sizes, several seeds) are ignored by
//! default: add `--ignored`.

#![cfg(feature = "testing")]

use chest_core::testing::traces::{belady, lfu, lru, oracle, replay, Loads, Scans, Sizes, Trace};
use chest_core::{Admission, EvictionPolicy, ReadCost};
use std::time::Duration;

/// What a trace gives, per policy: loads of the counted gets.
struct Row {
    chest: Loads,
    belady: Loads,
    lru: Loads,
    oracle: Loads,
    /// Exact counts of the whole past, no aging: the price of learning.
    lfu: Loads,
}

/// Replays `trace` with `memory_share` of its data as the budget through the
/// default chest and the yardsticks; prints and returns the row.
fn measure(trace: &Trace, memory_share: f64) -> Row {
    measure_with(
        trace,
        memory_share,
        |b| b.admission(Admission::Frequency),
        "freq",
    )
}

fn measure_with(
    trace: &Trace,
    memory_share: f64,
    configure: impl FnOnce(
        chest_core::ChestBuilder<u32, bytes::Bytes, chest_core::serializer::Raw>,
    )
        -> chest_core::ChestBuilder<u32, bytes::Bytes, chest_core::serializer::Raw>,
    label: &str,
) -> Row {
    let capacity = (trace.data_bytes() as f64 * memory_share) as u64;
    let warmup = trace.gets.len() / 5;
    let by_bytes = !matches!(trace.sizes, Sizes::Uniform(_));
    let row = Row {
        chest: replay(trace, capacity, warmup, configure).expect("replay"),
        belady: belady(trace, capacity, warmup),
        lru: lru(trace, capacity, warmup),
        oracle: oracle(trace, capacity, warmup, by_bytes),
        lfu: lfu(trace, capacity, warmup),
    };
    let (vb, bb) = row.chest.ratio(row.belady);
    let (vo, bo) = row.chest.ratio(row.oracle);
    let (lb, _) = row.lru.ratio(row.belady);
    let (fo, fbo) = row.lfu.ratio(row.oracle);
    println!(
        "{:<22} {:>4.0}% {:<8} chest {:>7} loads: {vb:.2}x Belady ({bb:.2}x bytes), {vo:.2}x oracle ({bo:.2}x bytes); LRU {lb:.2}x Belady; exact LFU {fo:.2}x oracle ({fbo:.2}x bytes)",
        trace.name,
        memory_share * 100.0,
        label,
        row.chest.count,
    );
    row
}

fn kib4() -> Sizes {
    Sizes::Uniform(4096)
}

fn mixed() -> Sizes {
    Sizes::LogUniform {
        min: 1024,
        max: 64 << 10,
    }
}

// ----------------------------------------------------------------- the fast set
// 5,000 keys, 100,000 gets: a few seconds in a debug build.

#[test]
fn zipf_at_a_tenth_of_the_data_stays_near_the_oracle() {
    let t = Trace::zipf(5000, 0.99, 100_000, kib4(), 1);
    let r = measure(&t, 0.10);
    // Today 1.05-1.07x the oracle (the second-read doorkeeper: 1.40x).
    // Goal (issue 21): 1.05x.
    let (vs_oracle, _) = r.chest.ratio(r.oracle);
    assert!(vs_oracle <= 1.2, "{vs_oracle:.2}x the oracle's loads");
    assert!(
        r.chest.count >= r.belady.count,
        "nothing loads less than Belady"
    );
}

#[test]
fn mixed_sizes_are_measured_in_bytes_too() {
    let t = Trace::zipf(5000, 0.99, 100_000, mixed(), 2);
    let r = measure(&t, 0.10);
    let (_, bytes_vs_oracle) = r.chest.ratio(r.oracle);
    // Today 1.06-1.07x (second read: 1.45x).
    assert!(
        bytes_vs_oracle <= 1.25,
        "{bytes_vs_oracle:.2}x the oracle's bytes"
    );
    assert!(r.chest.bytes >= r.belady.bytes / 2);
}

#[test]
fn a_read_latency_keeps_small_values_read_often() {
    // Sizes of 1-64 KiB drawn independently of popularity. A store whose
    // reads cost their bytes: the chest keeps what saves the most bytes
    // read. One whose reads wait 10 ms (1 MB of transfer at 100 MB/s):
    // a read of a small value costs as much as one of a large value, so
    // it keeps what saves the most reads.
    let t = Trace::zipf(5000, 0.99, 100_000, mixed(), 2);
    let bytes = measure_with(&t, 0.10, |b| b.read_cost(ReadCost::BYTES), "bytes");
    let latency = measure_with(
        &t,
        0.10,
        |b| b.read_cost(ReadCost::new(Duration::from_millis(10), 100_000_000)),
        "10 ms",
    );
    assert!(
        latency.chest.count < bytes.chest.count,
        "reads: {} with a latency, {} without",
        latency.chest.count,
        bytes.chest.count
    );
    assert!(
        bytes.chest.bytes < latency.chest.bytes,
        "bytes: {} without a latency, {} with",
        bytes.chest.bytes,
        latency.chest.bytes
    );
}

#[test]
fn a_loop_larger_than_memory_is_not_reloaded_whole() {
    // 1.25x as many values as fit: LRU loads every get.
    let t = Trace::cycle(1250, 50_000, kib4());
    let r = measure(&t, 0.8);
    let (vs_belady, _) = r.chest.ratio(r.belady);
    let (lru_vs_belady, _) = r.lru.ratio(r.belady);
    assert!(
        lru_vs_belady > 4.0,
        "the trace defeats LRU: {lru_vs_belady:.2}"
    );
    // Today 1.05x (second read: 1.6x). Goal: 1.1x.
    assert!(vs_belady <= 1.25, "{vs_belady:.2}x Belady");
}

#[test]
fn scans_and_shifts_and_one_hit_wonders_are_reported() {
    // The same 2,000 keys read in order every 10,000 gets (a batch job
    // over a table), between the gets of 5,000 Zipf keys.
    let scans = Trace::zipf_with_scans(
        5000,
        0.99,
        100_000,
        Scans {
            every: 10_000,
            len: 2000,
            keys: 2000,
        },
        kib4(),
        3,
    );
    // Today 1.20x Belady (second read: 1.47x; LRU 1.46x). Goal: 1.25x.
    let r = measure(&scans, 0.10);
    assert!(r.chest.ratio(r.belady).0 <= 1.3);
    // Scans of keys read once each (20,000 of them): compulsory loads,
    // not counted, but they take 80% of the data, so memory holds half of
    // the Zipf keys, where marginal keys are read a handful of times in
    // the trace and counts tell them apart slowly. Today 1.7x the oracle
    // (3.75x Belady; second read: 2.07x the oracle, LRU 4.4x).
    let fresh = Trace::zipf_with_scans(
        5000,
        0.99,
        100_000,
        Scans {
            every: 10_000,
            len: 2000,
            keys: 20_000,
        },
        kib4(),
        3,
    );
    let fresh = Trace {
        name: "zipf + one-time scans".into(),
        ..fresh
    };
    let r = measure(&fresh, 0.10);
    assert!(r.chest.ratio(r.oracle).0 <= 1.9);
    let shifting = Trace::shifting(5000, 0.99, 100_000, 20_000, kib4(), 4);
    // Today 1.75x Belady, 0.94x the oracle (second read: 1.74x). Goal: 1.6x.
    let r = measure(&shifting, 0.10);
    assert!(r.chest.ratio(r.belady).0 <= 2.15);
    // A third of the gets are of keys read once: they take most of the
    // data, so memory is a smaller share of it.
    let once = Trace::one_hit_wonders(5000, 0.99, 100_000, 0.3, kib4(), 5);
    // Today 1.55x Belady (second read: 1.97x; LRU 2.7x).
    let r = measure(&once, 0.02);
    assert!(r.chest.ratio(r.belady).0 <= 1.85);
}

/// A recorded trace of the cache2k project (`../shared/traces/`, beside
/// the repository: see its README; CC BY 4.0, headissue GmbH, Jens Wilke),
/// every value 4 KiB (the traces have no sizes).
fn cache2k(file: &str) -> Trace {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/traces")
        .join(file);
    let xz = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the recorded traces live in ../shared/traces, beside the repository)",
            path.display()
        )
    });
    let mut raw = Vec::new();
    lzma_rs::xz_decompress(&mut &xz[..], &mut raw)
        .unwrap_or_else(|e| panic!("{}: not an xz stream: {e:?}", path.display()));
    Trace::cache2k(file.trim_end_matches(".trace.xz"), &raw, kib4()).unwrap()
}

/// Recorded web traces, memory 1, 5 and 10% of the keys: strong recency
/// (a key is read again soon or not for long). The window of loads on
/// probation is what serves them: without it the chest loaded 1.02-1.16x
/// what an exact LRU loads; with a window of 1% 0.85-1.00x; with the
/// window sized by the hill climber 0.78-1.01x. Gated at 1.1x LRU.
#[test]
fn recorded_web_traces_are_reported() {
    for file in ["cache2k-web07.trace.xz", "cache2k-web12.trace.xz"] {
        let t = cache2k(file);
        for share in [0.01, 0.05, 0.10] {
            let r = measure(&t, share);
            assert!(r.chest.count >= r.belady.count);
            let vs_lru = r.chest.count as f64 / r.lru.count as f64;
            assert!(vs_lru <= 1.1, "{file} at {share}: {vs_lru:.2}x LRU");
        }
    }
}

#[test]
fn every_policy_and_admission_choice_runs_the_same_trace() {
    let t = Trace::zipf(5000, 0.99, 50_000, kib4(), 6);
    for (label, policy, admission) in [
        (
            "lru/2nd",
            EvictionPolicy::LeastRecentlyUsed,
            Admission::SecondRead,
        ),
        (
            "lru/all",
            EvictionPolicy::LeastRecentlyUsed,
            Admission::EveryRead,
        ),
        (
            "largest",
            EvictionPolicy::LargestFirst,
            Admission::SecondRead,
        ),
        (
            "lru/freq",
            EvictionPolicy::LeastRecentlyUsed,
            Admission::Frequency,
        ),
    ] {
        let r = measure_with(
            &t,
            0.10,
            |b| b.eviction_policy(policy).admission(admission),
            label,
        );
        assert!(r.chest.count >= r.belady.count);
        assert!(r.chest.count > 0);
    }
}

// ----------------------------------------------------------------- the long runs

/// W7's grid: Zipf 0.8 / 0.99 / 1.2 x memory 1 / 5 / 10 / 20% x three size
/// mixes, and the other shapes, over 50,000 keys and 1,000,000 gets.
#[test]
#[ignore = "long: W7's grid (minutes in release)"]
fn w7_grid() {
    // (keys, gets): `memory://` holds a copy of every value written (about
    // 600 KiB on average for 4 KiB-4 MiB), so that mix has fewer keys.
    let sizes = [
        ("4 KiB", kib4(), 50_000, 1_000_000),
        ("1-64 KiB", mixed(), 50_000, 1_000_000),
        (
            "4 KiB-4 MiB",
            Sizes::LogUniform {
                min: 4096,
                max: 4 << 20,
            },
            2_000,
            200_000,
        ),
    ];
    for (label, s, keys, gets) in sizes {
        println!("-- sizes {label}, {keys} keys, {gets} gets");
        for alpha in [0.8, 0.99, 1.2] {
            let t = Trace::zipf(keys, alpha, gets, s, 11);
            for share in [0.01, 0.05, 0.10, 0.20] {
                measure(&t, share);
            }
        }
    }
    println!("-- other shapes, 4 KiB");
    measure(&Trace::cycle(12_500, 500_000, kib4()), 0.8);
    measure(
        &Trace::zipf_with_scans(
            50_000,
            0.99,
            1_000_000,
            Scans {
                every: 100_000,
                len: 20_000,
                keys: 20_000,
            },
            kib4(),
            12,
        ),
        0.10,
    );
    measure(
        &Trace::shifting(50_000, 0.99, 1_000_000, 200_000, kib4(), 13),
        0.10,
    );
    measure(
        &Trace::one_hit_wonders(50_000, 0.99, 1_000_000, 0.3, kib4(), 14),
        0.02,
    );
    recorded_database_trace_is_reported();
}

/// The recorded database trace (cache2k's orm-busy: 5,000,000 accesses of
/// 76,349 keys), memory 1, 5, 10 and 30% of the keys: recency matters
/// there as on the web traces, and more (about 15 s in release). The
/// window sized by the hill climber is what serves it: with the window
/// fixed at 1% of memory the chest loaded 1.79x what an exact LRU loads at
/// 1% (2.41x Belady), with the climber 1.09x (1.47x Belady); gated at
/// 1.25x LRU.
#[test]
#[ignore = "long: 5,000,000 accesses"]
fn recorded_database_trace_is_reported() {
    let orm = cache2k("cache2k-orm-busy.trace.xz");
    for share in [0.01, 0.05, 0.10, 0.30] {
        let r = measure(&orm, share);
        let vs_lru = r.chest.count as f64 / r.lru.count as f64;
        assert!(vs_lru <= 1.25, "orm-busy at {share}: {vs_lru:.2}x LRU");
    }
}

/// Eviction takes from each shard in turn, the least wanted of a few of
/// its coldest: no order across shards. One shard is the chest-wide order;
/// with as few values per shard as the fast set's at 64 shards (8 each),
/// the windows (at least one value a shard) and the samples are too
/// small. Measured (issue 21): one shard loads 1.14x / 1.11x / 1.84x the
/// oracle's or Belady's loads on these three, 4 and 16 shards 1.10-1.12x /
/// 1.10x / 1.83-1.85x: a chest-wide order would buy nothing at these sizes.
#[test]
#[ignore = "long: 1,000,000 gets, several shard counts"]
fn one_eviction_order_across_shards_would_load_no_less() {
    let traces = [
        Trace::zipf(50_000, 0.99, 1_000_000, kib4(), 1),
        Trace::zipf(50_000, 0.99, 1_000_000, mixed(), 1),
        Trace::shifting(50_000, 0.99, 1_000_000, 200_000, kib4(), 4),
    ];
    for t in &traces {
        let one = measure_with(t, 0.10, |b| b.shards(1), "1 shard");
        for shards in [4, 16] {
            let many = measure_with(t, 0.10, |b| b.shards(shards), &format!("{shards} shards"));
            let (ratio, bytes) = many.chest.ratio(one.chest);
            assert!(
                ratio <= 1.05 && bytes <= 1.05,
                "{}: {shards} shards load {ratio:.3}x ({bytes:.3}x bytes) what one loads",
                t.name
            );
        }
    }
}
