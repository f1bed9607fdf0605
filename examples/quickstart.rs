//! The main job: store several times the memory budget in a chest on a local
//! directory, see what spilled and where, reopen it and read everything back.
//!
//! ```text
//! cargo run --release --example quickstart [DIR]
//! ```

use std::time::Instant;

use chest::{Chest, Pod};

const BUDGET: usize = 64 << 20; // 64 MiB of values in memory
const VALUES: u64 = 1024; // 1024 arrays of 32,768 f64 (256 KiB each): 256 MiB in all
const LEN: usize = 32 * 1024;

fn array(i: u64) -> Vec<f64> {
    (0..LEN).map(|j| i as f64 + j as f64 * 1e-6).collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = match std::env::args().nth(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("chest-quickstart-{}", std::process::id())),
    };
    let location = dir.to_str().ok_or("the directory is not valid UTF-8")?;
    println!("chest at {location}, memory budget {} MiB", BUDGET >> 20);

    let start = Instant::now();
    // Arrays of numbers are stored as their own bytes (`Pod`): written
    // without a copy, read back with one. (The default, CBOR, takes any
    // serde type; see the README.)
    let c: Chest<u64, Vec<f64>, Pod<f64>> = Chest::builder()
        .memory_budget(BUDGET)
        .serializer(Pod::new())
        .open(location)?;
    for i in 0..VALUES {
        c.insert(i, array(i))?;
    }
    c.flush()?;
    let s = c.stats();
    println!(
        "\nwrote {} values ({} MiB) in {:.2?}; {} MiB stayed in memory",
        VALUES,
        (VALUES as usize * LEN * 8) >> 20,
        start.elapsed(),
        c.memory_usage() >> 20
    );
    println!("{s}");
    c.close()?;

    let files: Vec<_> = std::fs::read_dir(dir.join("data"))?.collect();
    let on_disk: u64 = std::fs::read_dir(dir.join("data"))?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "\non disk: {} objects under {}/data, {} MiB, plus the manifest",
        files.len(),
        dir.display(),
        on_disk >> 20
    );

    let start = Instant::now();
    let c: Chest<u64, Vec<f64>, Pod<f64>> = Chest::builder()
        .memory_budget(BUDGET)
        .serializer(Pod::new())
        .open(location)?;
    println!(
        "\nreopened in {:.2?}: {} keys, {} bytes of values in memory",
        start.elapsed(),
        c.len(),
        c.memory_usage()
    );
    let start = Instant::now();
    for i in (0..VALUES).rev() {
        let v = c.get(&i)?.ok_or("a key is missing")?;
        assert_eq!(v[1], array(i)[1]);
    }
    println!("read back every value in {:.2?}", start.elapsed());
    println!("{}", c.stats());
    drop(c);
    if std::env::args().nth(1).is_none() {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
