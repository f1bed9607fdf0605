//! A three-node Garage cluster with replication factor 3 (`scripts/garage.sh
//! cluster-start`; see `CHEST_S3_NODE1..3`): objects written through one node
//! read through another, and with one node down (quorum 2 of 3) every object
//! still reads and new writes succeed. With two nodes down, writes fail with
//! an error naming the bucket and key; once the nodes are back, they succeed.
//! Without the cluster's settings the test skips, saying so (fails under
//! `CHEST_REQUIRE_SERVERS=1`).

mod common;

use common::{cluster, Cluster};

use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chest_core::{Backend, BackendExt};
use chest_s3::S3Backend;

impl Cluster {
    /// Node `n` (1..=3), at `prefix`.
    fn open(&self, n: usize, prefix: &str, extra: &str) -> S3Backend {
        let url = format!(
            "s3://{}/{prefix}?endpoint={}&region=garage{extra}",
            self.bucket,
            self.nodes[n - 1]
        );
        S3Backend::open_url(&url).unwrap_or_else(|e| panic!("open node {n}: {e}"))
    }

    fn script(&self, args: &[&str]) {
        let status = Command::new(&self.script)
            .args(args)
            .status()
            .unwrap_or_else(|e| panic!("run {} {args:?}: {e}", self.script));
        assert!(
            status.success(),
            "{} {args:?} failed: {status}",
            self.script
        );
    }
}

/// Starts the stopped nodes again when the test ends, also when it fails.
struct Restart<'a> {
    cluster: &'a Cluster,
    nodes: Vec<&'static str>,
}

impl Drop for Restart<'_> {
    fn drop(&mut self) {
        for n in &self.nodes {
            let _ = Command::new(&self.cluster.script)
                .args(["cluster-start-node", n])
                .status();
        }
    }
}

fn data(seed: u8, len: usize) -> Bytes {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

#[test]
fn survives_one_node_down() {
    let Some(c) = cluster() else { return };
    let prefix = format!("tests/{}", common::unique("cluster"));
    let extra = "&part_size=5MiB";
    let n1 = c.open(1, &prefix, extra);
    let n3 = c.open(3, &prefix, extra);

    let mut objects: Vec<(String, Bytes)> = (0..20u8)
        .map(|i| (format!("obj/{i:02}"), data(i, 100 + 5000 * i as usize)))
        .collect();
    objects.push(("obj/big".into(), data(99, (12 << 20) + 7))); // multipart
    n1.put_many(
        objects
            .iter()
            .map(|(n, d)| (n.clone(), vec![d.clone()]))
            .collect(),
    )
    .unwrap();
    let names: Vec<String> = objects.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(
        n3.list("obj/").unwrap(),
        names,
        "node 3 lists what node 1 wrote"
    );
    for (name, bytes) in &objects {
        assert!(n3.get(name).unwrap() == *bytes, "{name} through node 3");
    }

    // Node 2 goes down: quorum (2 of 3) still holds.
    let mut restart = Restart {
        cluster: &c,
        nodes: vec!["2"],
    };
    c.script(&["cluster-stop-node", "2"]);
    let start = Instant::now();
    for (name, bytes) in &objects {
        assert!(
            n3.get(name).unwrap() == *bytes,
            "{name} through node 3, node 2 down"
        );
        assert!(
            n1.get(name).unwrap() == *bytes,
            "{name} through node 1, node 2 down"
        );
    }
    assert_eq!(n3.list("obj/").unwrap(), names);
    n1.put("after/one-down", data(7, 70_000)).unwrap();
    assert_eq!(n3.get("after/one-down").unwrap(), data(7, 70_000));
    n3.put("after/big", data(8, (6 << 20) + 1)).unwrap();
    assert!(n1.get("after/big").unwrap() == data(8, (6 << 20) + 1));
    n1.delete("obj/00").unwrap();
    assert!(n3.get("obj/00").unwrap_err().is_not_found());
    eprintln!(
        "one node down: reads, writes, delete took {:?}",
        start.elapsed()
    );

    // Node 3 goes down too: no write quorum. The error names bucket and key.
    let quick = "&retries=1&timeout=5s";
    let n1_quick = c.open(1, &prefix, quick);
    restart.nodes.push("3");
    c.script(&["cluster-stop-node", "3"]);
    let start = Instant::now();
    let err = n1_quick.put("after/two-down", data(9, 1000)).unwrap_err();
    let msg = err.to_string();
    eprintln!("two nodes down ({:?}): {msg}", start.elapsed());
    assert!(
        msg.contains(&format!("s3://{}/{prefix}/after/two-down", c.bucket)),
        "names the bucket and key: {msg}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "took {:?}",
        start.elapsed()
    );

    // Both back: writes succeed again, everything reads.
    drop(restart);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match n1.put("after/recovered", data(10, 1000)) {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for the cluster to recover: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("the cluster did not recover within 60 s: {e}"),
        }
    }
    let n2 = c.open(2, &prefix, extra);
    assert_eq!(n2.get("after/recovered").unwrap(), data(10, 1000));
    assert_eq!(n2.get("after/one-down").unwrap(), data(7, 70_000));
}
