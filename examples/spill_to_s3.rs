//! Spill a chest to S3-compatible object storage (AWS S3, MinIO, Garage, ...)
//! and print what happened.
//!
//! ```text
//! cargo run --release --features s3 --example spill_to_s3 -- \
//!     's3://my-bucket/some/prefix?endpoint=http://127.0.0.1:3900&region=garage&lock=none'
//! ```
//!
//! `lock=none`: Garage ignores conditional writes, so a chest cannot take its
//! writer lease there, and this example promises to be the prefix's only
//! writer. On AWS S3, MinIO, R2 or Ceph RGW, leave it out.
//!
//! Credentials come from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and
//! `AWS_SESSION_TOKEN`, `AWS_ENDPOINT_URL`, `AWS_REGION`) or the URL's query.
//! `scripts/garage.sh start` runs a local server and writes such a URL to its
//! env file.

use std::time::Instant;

use chest::{Chest, ChestBuilder, Raw};

const BUDGET: usize = 32 << 20;
const VALUES: u64 = 64; // 64 values of 2 MiB: 128 MiB through a 32 MiB budget
const LEN: usize = 2 << 20;

fn value(i: u64) -> Vec<u8> {
    let mut x = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..LEN)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("CHEST_S3_URL").ok())
        .ok_or("usage: spill_to_s3 's3://bucket/prefix?endpoint=...' (or set CHEST_S3_URL; on Garage add &lock=none)")?;
    println!("chest at {url}, memory budget {} MiB", BUDGET >> 20);

    let start = Instant::now();
    // The values are bytes: the raw serializer stores them as they are.
    let open = || {
        ChestBuilder::new()
            .serializer(Raw)
            .memory_budget(BUDGET)
            .open(&url)
    };
    let c: Chest<u64, Vec<u8>, Raw> = open()?;
    for i in 0..VALUES {
        c.insert(i, value(i))?;
    }
    c.flush()?;
    let secs = start.elapsed().as_secs_f64();
    let mib = (VALUES as usize * LEN) as f64 / (1 << 20) as f64;
    println!(
        "\ninsert + flush: {mib:.0} MiB in {secs:.2} s ({:.0} MiB/s)",
        mib / secs
    );
    println!("{}", c.stats());
    c.close()?;

    let start = Instant::now();
    let c: Chest<u64, Vec<u8>, Raw> = open()?;
    println!("\nreopened: {} keys", c.len());
    for i in 0..VALUES {
        let v = c.get(&i)?.ok_or("a key is missing")?;
        if v[..64] != value(i)[..64] {
            return Err(format!("value {i} differs").into());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "read back: {mib:.0} MiB in {secs:.2} s ({:.0} MiB/s)",
        mib / secs
    );
    println!("{}", c.stats());
    for i in 0..VALUES {
        c.remove(&i)?;
    }
    c.close()?;
    println!("\nremoved the example's keys again");
    Ok(())
}
