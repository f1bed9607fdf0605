//! A chest on the three-node Garage cluster (replication factor 3): written
//! through node 1, read back through node 3; with node 2 stopped, the chest
//! still reads every key and takes new writes, which node 1 then sees.
//! Without the cluster's settings the test skips, saying so (fails under
//! `CHEST_REQUIRE_SERVERS=1`).

mod common;

use common::{cluster, Cluster};

use std::process::Command;
use std::sync::Arc;

use chest_core::{Backend, Chest, ChestBuilder};
use chest_s3::S3Backend;

fn node(cluster: &Cluster, n: usize, prefix: &str) -> Arc<dyn Backend> {
    let bucket = &cluster.bucket;
    // lock=none: Garage ignores conditional writes, so no writer lease; each
    // test keeps to one writer per prefix itself.
    let url = format!(
        "s3://{bucket}/{prefix}?endpoint={}&region=garage&lock=none",
        cluster.nodes[n - 1]
    );
    Arc::new(S3Backend::open_url(&url).unwrap_or_else(|e| panic!("open node {n}: {e}")))
}

fn chest_on(cluster: &Cluster, n: usize, prefix: &str) -> Chest<u64, Vec<u8>> {
    ChestBuilder::new()
        .memory_budget(256 << 10)
        .open_backend(node(cluster, n, prefix))
        .unwrap_or_else(|e| panic!("open a chest through node {n}: {e}"))
}

fn value(i: u64) -> Vec<u8> {
    let len = if i.is_multiple_of(10) {
        400_000
    } else {
        3_000 + i as usize * 7
    };
    (0..len)
        .map(|j| (j as u64 ^ i.wrapping_mul(2_654_435_761)) as u8)
        .collect()
}

/// Starts node 2 again when the test ends, also when it fails.
struct Restart(String);

impl Drop for Restart {
    fn drop(&mut self) {
        let _ = Command::new(&self.0)
            .args(["cluster-start-node", "2"])
            .status();
    }
}

#[test]
fn chest_survives_one_node_down() {
    let Some(cluster) = cluster() else { return };
    let script = cluster.script.clone();
    let prefix = format!("tests/{}", common::unique("cluster-chest"));

    let c = chest_on(&cluster, 1, &prefix);
    for i in 0..80 {
        c.insert(i, value(i)).unwrap();
    }
    assert!(
        c.stats().spills > 0,
        "the values must have spilled to the cluster"
    );
    c.close().unwrap();

    let c = chest_on(&cluster, 3, &prefix);
    assert_eq!(c.len(), 80, "node 3 sees the chest written through node 1");
    for i in 0..80 {
        assert_eq!(
            *c.get(&i).unwrap().unwrap(),
            value(i),
            "key {i} through node 3"
        );
    }
    drop(c);

    let restart = Restart(script.clone());
    let status = Command::new(&script)
        .args(["cluster-stop-node", "2"])
        .status()
        .unwrap();
    assert!(status.success(), "stopping node 2 failed");

    let c = chest_on(&cluster, 3, &prefix);
    for i in 0..80 {
        assert_eq!(
            *c.get(&i).unwrap().unwrap(),
            value(i),
            "key {i} with node 2 down"
        );
    }
    for i in 80..120 {
        c.insert(i, value(i)).unwrap();
    }
    c.update(&5, |v| v.truncate(10)).unwrap();
    assert!(c.remove(&7).unwrap());
    c.close().unwrap();

    let c = chest_on(&cluster, 1, &prefix);
    assert_eq!(c.len(), 119);
    for i in (0..120).filter(|&i| i != 7) {
        let mut expect = value(i);
        if i == 5 {
            expect.truncate(10);
        }
        assert_eq!(
            *c.get(&i).unwrap().unwrap(),
            expect,
            "key {i} through node 1"
        );
    }
    assert!(c.get(&7).unwrap().is_none());
    drop(c);
    drop(restart);
}
