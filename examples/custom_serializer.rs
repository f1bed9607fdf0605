//! Plugging in your own serializer: a compact little-endian codec for
//! `Vec<f64>` against the default CBOR, and how a serializer's error surfaces.
//!
//! ```text
//! cargo run --release --example custom_serializer
//! ```

use std::time::Instant;

use chest::{BoxError, Cbor, Chest, ChestBuilder, Error, Serializer};

/// `Vec<f64>` as raw little-endian bytes: 8 bytes a number, no framing.
/// Refuses NaN, to show how a serializer error reaches the caller.
struct F64Le;

impl Serializer<Vec<f64>> for F64Le {
    fn name(&self) -> &str {
        "f64le-v1"
    }

    fn serialize(&self, v: &Vec<f64>, out: &mut Vec<u8>) -> Result<(), BoxError> {
        if let Some(i) = v.iter().position(|x| x.is_nan()) {
            return Err(format!("NaN at index {i} is not allowed").into());
        }
        out.reserve(v.len() * 8);
        for x in v {
            out.extend_from_slice(&x.to_le_bytes());
        }
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<Vec<f64>, BoxError> {
        if !bytes.len().is_multiple_of(8) {
            return Err(format!("{} bytes is not a whole number of f64s", bytes.len()).into());
        }
        Ok(bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect())
    }
}

fn time_codec<S: Serializer<Vec<f64>>>(
    s: &S,
    values: &[Vec<f64>],
) -> Result<(f64, f64, usize), BoxError> {
    let mut buf = Vec::new();
    let start = Instant::now();
    let mut bytes = 0;
    for v in values {
        buf.clear();
        s.serialize(v, &mut buf)?;
        bytes += buf.len();
    }
    let ser = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for v in values {
        buf.clear();
        s.serialize(v, &mut buf)?;
        let back = s.deserialize(&buf)?;
        assert_eq!(back.len(), v.len());
    }
    let de = start.elapsed().as_secs_f64() - ser;
    Ok((ser, de.max(1e-9), bytes))
}

fn main() -> Result<(), BoxError> {
    // 1. Speed: 64 arrays of 128 Ki f64 (64 MiB).
    let values: Vec<Vec<f64>> = (0..64)
        .map(|i| (0..128 * 1024).map(|j| (i * j) as f64 * 0.37).collect())
        .collect();
    let mib = (values.len() * 128 * 1024 * 8) as f64 / (1 << 20) as f64;
    let (cs, cd, cb) = time_codec(&Cbor, &values)?;
    let (fs, fd, fb) = time_codec(&F64Le, &values)?;
    println!("{mib:.0} MiB of f64 arrays:");
    println!(
        "  cbor : serialize {:7.0} MiB/s, deserialize {:7.0} MiB/s, {} bytes",
        mib / cs,
        mib / cd,
        cb
    );
    println!(
        "  f64le: serialize {:7.0} MiB/s, deserialize {:7.0} MiB/s, {} bytes",
        mib / fs,
        mib / fd,
        fb
    );
    println!(
        "  f64le is {:.1}x faster to serialize, {:.1}x to deserialize",
        cs / fs,
        cd / fd
    );

    // 2. Use it in a chest.
    let c: Chest<u32, Vec<f64>, F64Le> = ChestBuilder::new()
        .serializer(F64Le)
        .memory_budget(8 << 20)
        .temp()?;
    for (i, v) in values.iter().enumerate() {
        c.insert(i as u32, v.clone())?;
    }
    assert_eq!(c.get(&3)?.unwrap()[5], values[3][5]);
    println!("\nchest with f64le: {}", c.stats());

    // 3. A value the serializer refuses stays in memory; the error names its key.
    c.insert(9999, vec![1.0, f64::NAN])?;
    let mut refused = None;
    for i in 100..200u32 {
        if let Err(e) = c.insert(i, vec![0.5; 128 * 1024]) {
            refused = Some(e);
            break;
        }
    }
    match refused {
        Some(e @ Error::Serialize { .. }) => println!("\nspilling reported: {e}"),
        other => println!("\nunexpected: {other:?}"),
    }
    assert!(
        c.get(&9999)?.unwrap()[1].is_nan(),
        "the refused value is still there"
    );
    println!("key 9999 is still readable from memory");
    Ok(())
}
