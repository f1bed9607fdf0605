//! A tokio program spilling through an `AsyncChest`: 64 tasks write 1 MiB
//! values into a chest with a 16 MiB budget, then read them back; no call
//! blocks an executor thread.
//!
//! ```sh
//! cargo run --release --example async_spill --features tokio
//! ```

use chest::{AsyncChest, Chest, Raw};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let chest: Chest<u32, Vec<u8>, Raw> = Chest::<u32, Vec<u8>>::builder()
        .memory_budget(16 << 20)
        .serializer(Raw)
        .temp()?;
    let c = AsyncChest::new(chest);
    let tasks: Vec<_> = (0..64u32)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.insert(i, vec![i as u8; 1 << 20]).await })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    for i in 0..64u32 {
        let v = c.get(i).await?.expect("inserted");
        assert!(v.iter().all(|&b| b == i as u8));
    }
    let s = c.chest().stats();
    println!(
        "64 MiB through a 16 MiB budget: {} spills, {} loads, {:.1} MiB in memory",
        s.spills,
        s.loads,
        s.memory_usage as f64 / (1 << 20) as f64
    );
    c.close().await?;
    Ok(())
}
