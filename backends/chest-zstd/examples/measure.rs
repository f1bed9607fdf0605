//! Measures compression ratio and speed of the zstd layer over a memory
//! backend, for a few kinds of data, levels and frame sizes.
//!
//! `cargo run --release -p chest-zstd --example measure`

use std::sync::Arc;
use std::time::Instant;

use chest_core::{BackendExt, MemoryBackend};
use chest_zstd::{ZstdBackend, ZstdOptions};

const SIZE: usize = 8 << 20;

fn lcg(x: &mut u64) -> u64 {
    *x = x
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *x >> 33
}

fn records() -> Vec<u8> {
    let names = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"];
    let tags = ["red", "green", "blue", "urgent", "archived", "draft"];
    let mut x = 7;
    let mut out = Vec::with_capacity(SIZE + 200);
    let mut id = 1_000_000u64;
    while out.len() < SIZE {
        id += 1 + lcg(&mut x) % 5;
        let line = format!(
            "{{\"id\":{id},\"name\":\"{}\",\"tags\":[\"{}\",\"{}\"],\"score\":{:.4},\"ts\":{}}}\n",
            names[lcg(&mut x) as usize % names.len()],
            tags[lcg(&mut x) as usize % tags.len()],
            tags[lcg(&mut x) as usize % tags.len()],
            (lcg(&mut x) % 100_000) as f64 / 1000.0,
            1_700_000_000 + id * 3,
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(SIZE);
    out
}

fn floats() -> Vec<u8> {
    let mut x = 3;
    let mut v = 0.0f64;
    let mut out = Vec::with_capacity(SIZE);
    while out.len() < SIZE {
        v += (lcg(&mut x) % 1000) as f64 / 1e4 - 0.05;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn random() -> Vec<u8> {
    let mut x = 11u64;
    let mut out = Vec::with_capacity(SIZE);
    while out.len() < SIZE {
        out.extend_from_slice(&(lcg(&mut x) ^ (lcg(&mut x) << 31)).to_le_bytes());
    }
    out
}

fn main() {
    let kinds: [(&str, Vec<u8>); 3] = [
        ("json records", records()),
        ("f64 random walk", floats()),
        ("random bytes", random()),
    ];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("{} MiB objects, {threads} CPUs", SIZE >> 20);
    println!(
        "{:<16} {:>5} {:>6} {:>8} {:>10} {:>10} {:>10}",
        "data", "level", "frame", "ratio", "put MB/s", "get MB/s", "4K range"
    );
    for (kind, data) in &kinds {
        let data = bytes::Bytes::from(data.clone());
        for level in [1, 3, 6] {
            for frame_size in [64 << 10, 128 << 10, 256 << 10, 512 << 10] {
                let mem = MemoryBackend::new();
                let z = ZstdBackend::new(
                    Arc::new(mem.clone()),
                    ZstdOptions {
                        level,
                        frame_size,
                        ..ZstdOptions::default()
                    },
                );
                let reps = 3;
                let t = Instant::now();
                for _ in 0..reps {
                    z.put("x", data.clone()).unwrap();
                }
                let put = t.elapsed().as_secs_f64() / reps as f64;
                let stored = mem.stored_bytes();
                let t = Instant::now();
                for _ in 0..reps {
                    assert_eq!(z.get("x").unwrap().len(), SIZE);
                }
                let get = t.elapsed().as_secs_f64() / reps as f64;
                let mut x = 5;
                let n = 200;
                let t = Instant::now();
                for _ in 0..n {
                    let at = lcg(&mut x) % (SIZE as u64 - 4096);
                    z.get_range("x", at..at + 4096).unwrap();
                }
                let range = t.elapsed().as_secs_f64() / n as f64;
                println!(
                    "{:<16} {:>5} {:>5}K {:>8.3} {:>10.0} {:>10.0} {:>8.0}µs",
                    kind,
                    level,
                    frame_size >> 10,
                    stored as f64 / SIZE as f64,
                    SIZE as f64 / put / 1e6,
                    SIZE as f64 / get / 1e6,
                    range * 1e6
                );
            }
        }
    }
}
