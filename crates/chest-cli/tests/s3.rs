//! The `chest` command against the S3 test server (Garage, started by
//! `scripts/garage.sh start`; its URL in `CHEST_S3_URL`, credentials in the
//! `AWS_*` variables). Like the other S3 tests, these skip, saying so, when
//! the server's settings are missing, and fail instead under
//! `CHEST_REQUIRE_SERVERS=1` (set by `scripts/test.sh`).

use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use chest::Chest;
use chest_core::testing::servers::{server, GARAGE};
use serde_json::{json, Value};

fn chest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chest"))
        .args(args)
        .output()
        .expect("the chest binary runs")
}

fn ok_json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `base` (`CHEST_S3_URL`) with a fresh prefix of this test's own.
fn s3_url(base: &str, name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let (path, query) = base.split_once('?').unwrap_or((base, ""));
    let path = path.trim_end_matches('/');
    let own = format!("chest-cli/{name}-{}-{nanos}", std::process::id());
    if query.is_empty() {
        format!("{path}/{own}")
    } else {
        format!("{path}/{own}?{query}")
    }
}

#[test]
fn copy_to_s3_and_back_through_every_command() {
    let Some(base) = server("CHEST_S3_URL", GARAGE) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let local = format!("file://{}", tmp.path().join("c").display());
    let c: Chest<(u32, String), Vec<u32>> = Chest::builder()
        .memory_budget(64 << 10)
        .large_value_bytes(16 << 10)
        .open(local.as_str())
        .unwrap();
    for i in 0..30u32 {
        let n = if i % 10 == 0 { 20_000 } else { 10 };
        c.insert((i, format!("k{i}")), vec![i; n]).unwrap();
    }
    c.close().unwrap();

    for s3 in [
        s3_url(&base, "plain"),
        format!("zstd+{}", s3_url(&base, "zstd")),
    ] {
        let cp = ok_json(&chest(&["cp", &local, &s3, "--json"]));
        assert_eq!(cp["keys"], 30);
        let info = ok_json(&chest(&["info", &s3, "--json"]));
        assert_eq!(info["keys"], 30);
        assert_eq!(info["serializer"], "cbor");
        assert_eq!(
            ok_json(&chest(&["ls", &s3, "--json"]))
                .as_array()
                .unwrap()
                .len(),
            30
        );
        let v = ok_json(&chest(&["get", &s3, "[10,\"k10\"]", "--json"]));
        assert_eq!(v["value"], json!(vec![10; 20_000]));
        let v = ok_json(&chest(&["verify", &s3, "--json"]));
        assert_eq!(v["checked"], 30);
        assert_eq!(v["failed"], json!([]));
        let rm = ok_json(&chest(&["rm", &s3, "[3,\"k3\"]", "--json"]));
        assert_eq!(rm["removed"], json!([[3, "k3"]]));
        ok_json(&chest(&["compact", &s3, "--json"]));

        // and back to a local directory
        let back = format!(
            "zstd+file://{}",
            tmp.path().join(format!("back-{}", s3.len())).display()
        );
        assert_eq!(ok_json(&chest(&["cp", &s3, &back, "--json"]))["keys"], 29);
        let c: Chest<(u32, String), Vec<u32>> = Chest::open(back.as_str()).unwrap();
        assert_eq!(c.len(), 29);
        assert!(!c.contains_key(&(3, "k3".to_string())));
        assert_eq!(
            *c.get(&(20, "k20".to_string())).unwrap().unwrap(),
            vec![20; 20_000]
        );
    }
}
