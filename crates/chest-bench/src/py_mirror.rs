//! The Rust side of the Python benchmark (`python/bench/pybench.py`, P1–P3
//! of WORKLOADS.md): the same workload through the Rust API, to show what
//! the binding costs. Keys are the same strings (`k0`, `k1`, …); byte
//! values go through `Raw`, arrays of `f64` through `Pod`.

use std::path::Path;
use std::time::Instant;

use chest::{Chest, ChestBuilder, Pod, Raw, Serializer, Weigh};

use crate::common::{peak_rss, shuffled, Result, Values};

/// Runs the workload and prints `{"write_s", "read_s", "peak_rss"}`.
pub fn run(kind: &str, size: usize, count: usize, budget: usize, dir: &Path) -> Result<()> {
    let location = dir.to_str().ok_or("the directory is not UTF-8")?;
    let (write_s, read_s) = match kind {
        "bytes" => {
            let values = Values::new(size, 42);
            workload::<Vec<u8>, _>(Raw, size, location, count, budget, |i| {
                values.make(i as u64)
            })?
        }
        "f64" => workload::<Vec<f64>, _>(Pod::<f64>::new(), size, location, count, budget, |i| {
            floats(size / 8, i)
        })?,
        other => return Err(format!("unknown kind {other:?} (bytes or f64)").into()),
    };
    println!(
        "{}",
        serde_json::json!({
            "write_s": write_s,
            "read_s": read_s,
            "peak_rss": peak_rss().unwrap_or(0),
            "count": count,
            "budget": budget,
        })
    );
    Ok(())
}

fn floats(n: usize, i: usize) -> Vec<f64> {
    (0..n).map(|j| (i * 31 + j) as f64 * 1e-3).collect()
}

fn workload<V, S>(
    serializer: S,
    size: usize,
    location: &str,
    count: usize,
    budget: usize,
    make: impl Fn(usize) -> V,
) -> Result<(f64, f64)>
where
    V: Weigh + Clone + Send + Sync + 'static,
    S: Serializer<V> + Clone,
{
    let keys: Vec<String> = (0..count).map(|i| format!("k{i}")).collect();
    // As the Python side: values made before the clock — small ones all of
    // them; large ones a pool of eight, each insert taking a copy of one
    // (inside the clock: a Rust insert takes its value by value, where the
    // Python side inserts the same objects again).
    let pool: Vec<V> = (0..if size > 64 << 10 { count.min(8) } else { count })
        .map(&make)
        .collect();
    let open = |s: S| -> chest::Result<Chest<String, V, S>> {
        ChestBuilder::<String, V>::new()
            .memory_budget(budget)
            .serializer(s)
            .open(location)
    };
    let start = Instant::now();
    let c = open(serializer.clone())?;
    for (i, k) in keys.iter().enumerate() {
        c.insert(k.clone(), pool[i % pool.len()].clone())?;
    }
    drop(pool);
    c.flush()?;
    c.close()?;
    let write_s = start.elapsed().as_secs_f64();
    let order = shuffled(count as u64, 42);
    let start = Instant::now();
    let c = open(serializer)?;
    let mut total = 0usize;
    for i in order {
        total += c.get(&keys[i as usize])?.map_or(0, |v| v.weigh());
    }
    let read_s = start.elapsed().as_secs_f64();
    if total == 0 {
        return Err("read nothing back".into());
    }
    Ok((write_s, read_s))
}
