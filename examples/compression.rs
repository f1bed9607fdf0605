//! The same compressible data in a plain chest and a `zstd+` one: bytes on
//! disk and time for each.
//!
//! ```text
//! cargo run --release --example compression
//! ```

use std::path::Path;
use std::time::Instant;

use chest::{Chest, ChestBuilder, Raw};

const VALUES: u32 = 128;
const LEN: usize = 1 << 20; // 128 values of 1 MiB

/// Little-endian u32 counters with a little noise: compresses about 4:1.
fn value(i: u32) -> Vec<u8> {
    let mut x = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(LEN);
    for n in 0..(LEN / 4) as u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // a slowly rising counter; one word in eight carries a noisy low byte
        let noise = if x & 7 == 0 {
            (x >> 8) as u32 & 0xFF
        } else {
            0
        };
        v.extend_from_slice(&((i << 20) + n / 4 + noise).to_le_bytes());
    }
    v
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let meta = entry.metadata().map(|m| (m.is_dir(), m.len()));
        match meta {
            Ok((true, _)) => total += dir_size(&entry.path()),
            Ok((false, len)) => total += len,
            Err(_) => {}
        }
    }
    total
}

fn run(url: &str, dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let c: Chest<u32, Vec<u8>, Raw> = ChestBuilder::new()
        .serializer(Raw)
        .memory_budget(32 << 20)
        .open(url)?;
    for i in 0..VALUES {
        c.insert(i, value(i))?;
    }
    c.flush()?;
    let write = start.elapsed();
    let counters = c.stats().backend;
    c.close()?;
    let start = Instant::now();
    let c: Chest<u32, Vec<u8>, Raw> = ChestBuilder::new()
        .serializer(Raw)
        .memory_budget(32 << 20)
        .open(url)?;
    for i in 0..VALUES {
        assert_eq!(c.get(&i)?.ok_or("missing")?.len(), LEN);
    }
    let read = start.elapsed();
    println!(
        "{url:<60} {:>6.1} MiB on disk   write+flush {:>7.2?}   read {:>7.2?}",
        dir_size(dir) as f64 / (1 << 20) as f64,
        write,
        read
    );
    for (name, value) in counters {
        if name.starts_with("zstd.") {
            println!("    {name}: {value}");
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = tempfile_dir()?;
    println!("{VALUES} values of 1 MiB (u32 counters with noise)\n");
    let plain = base.join("plain");
    run(&format!("file://{}", plain.display()), &plain)?;
    for level in [1, 3, 9] {
        let dir = base.join(format!("zstd{level}"));
        run(
            &format!("zstd+file://{}?level={level}", dir.display()),
            &dir,
        )?;
    }
    std::fs::remove_dir_all(&base)?;
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("chest-compression-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
