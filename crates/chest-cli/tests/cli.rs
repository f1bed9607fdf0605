//! Drives the built `chest` binary against real chests: on a local
//! directory and through the zstd layer.

use std::path::Path;
use std::process::{Command, Output};

use chest::Chest;
use serde_json::Value;

fn chest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chest"))
        .args(args)
        .output()
        .expect("the chest binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(o), stderr(o)))
}

/// A chest of 50 `(u32, String)` keys with `Vec<u32>` values (CBOR), small
/// values packed into segments and a few large values alone.
fn make(url: &str) {
    let c: Chest<(u32, String), Vec<u32>> = Chest::builder()
        .memory_budget(64 << 10)
        .large_value_bytes(16 << 10)
        .open(url)
        .unwrap();
    for i in 0..50u32 {
        let n = if i % 10 == 0 { 20_000 } else { 10 };
        c.insert((i, format!("k{i}")), vec![i; n]).unwrap();
    }
    c.close().unwrap();
}

fn url_of(dir: &Path, zstd: bool) -> String {
    let file = format!("file://{}", dir.display());
    if zstd {
        format!("zstd+{file}")
    } else {
        file
    }
}

fn commands_work_on(zstd: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let url = url_of(&dir, zstd);
    make(&url);

    // info
    let o = chest(&["info", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("keys          50"), "{}", stdout(&o));
    assert!(stdout(&o).contains("serializer    cbor"), "{}", stdout(&o));
    let i = json(&chest(&["info", &url, "--json"]));
    assert_eq!(i["keys"], 50);
    assert_eq!(i["serializer"], "cbor");
    assert!(i["objects"].as_u64().unwrap() >= 5, "{i}");
    assert!(i["value_bytes"].as_u64().unwrap() > 5 * 20_000, "{i}");
    assert!(
        i["manifests"][0].as_str().unwrap().starts_with("manifest."),
        "{i}"
    );
    for field in [
        "object_bytes",
        "live_bytes",
        "key_bytes",
        "garbage_ratio",
        "index_memory",
    ] {
        assert!(i[field].is_number(), "{field} in {i}");
    }

    // ls
    let o = chest(&["ls", &url]);
    assert!(o.status.success());
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 50);
    assert!(lines.contains(&"[3,\"k3\"]\t11"), "{lines:?}"); // CBOR: array header + 10 small ints
    let l = json(&chest(&["ls", &url, "--limit", "7", "--json"]));
    let l = l.as_array().unwrap();
    assert_eq!(l.len(), 7);
    assert!(l[0]["key"].is_array() && l[0]["size"].is_u64() && l[0]["object"].is_string());

    // get: the stored bytes, and as JSON
    let o = chest(&["get", &url, "[3,\"k3\"]"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Vec<u32> = ciborium::from_reader(&o.stdout[..]).unwrap();
    assert_eq!(v, vec![3; 10]);
    let o = chest(&["get", &url, "[20,\"k20\"]", "--as", "json"]);
    assert_eq!(json(&o), serde_json::json!(vec![20; 20_000]));
    let g = json(&chest(&["get", &url, "[3,\"k3\"]", "--json"]));
    assert_eq!(g["value"], serde_json::json!(vec![3; 10]));
    assert_eq!(g["size"], 11);
    let o = chest(&["get", &url, "[3,\"nope\"]"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("chest: no key [3,\"nope\"]"),
        "{}",
        stderr(&o)
    );
    let o = chest(&["get", &url, "not json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not JSON"), "{}", stderr(&o));

    // verify
    let o = chest(&["verify", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("50 values checked"));
    let v = json(&chest(&["verify", &url, "--json"]));
    assert_eq!(v["checked"], 50);
    assert_eq!(v["failed"], serde_json::json!([]));

    // rm
    let o = chest(&["rm", &url, "[1,\"k1\"]", "[2,\"k2\"]", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        json(&o),
        serde_json::json!({"removed": [[1, "k1"], [2, "k2"]], "missing": []})
    );
    let o = chest(&["rm", &url, "[1,\"k1\"]"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "missing\t[1,\"k1\"]\n");
    assert_eq!(json(&chest(&["info", &url, "--json"]))["keys"], 48);
    // the chest is still what its program expects
    let c: Chest<(u32, String), Vec<u32>> = Chest::open(url.as_str()).unwrap();
    assert_eq!(c.len(), 48);
    assert!(!c.contains_key(&(1, "k1".to_string())));
    assert_eq!(
        *c.get(&(4, "k4".to_string())).unwrap().unwrap(),
        vec![4; 10]
    );
    drop(c);

    // cp, to the other kind of location, and back to where it came from
    let copy = url_of(&tmp.path().join("copy"), !zstd);
    let o = chest(&["cp", &url, &copy, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["keys"], 48);
    let c: Chest<(u32, String), Vec<u32>> = Chest::open(copy.as_str()).unwrap();
    assert_eq!(c.len(), 48);
    assert_eq!(
        *c.get(&(30, "k30".to_string())).unwrap().unwrap(),
        vec![30; 20_000]
    );
    drop(c);
    let o = chest(&["cp", &url, &copy]);
    assert_eq!(o.status.code(), Some(2), "a chest is there already");
    assert!(
        stderr(&o).starts_with(&format!("chest: cannot open {copy}: ")),
        "{}",
        stderr(&o)
    );
}

#[test]
fn commands_on_a_directory() {
    commands_work_on(false);
}

#[test]
fn commands_through_zstd() {
    commands_work_on(true);
}

/// Flips a byte in every `data/` object: `verify` names the keys whose
/// values no longer check out, and exits 1.
#[test]
fn verify_finds_a_corrupted_chest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c");
    let url = url_of(&dir, false);
    make(&url);
    // the large value of key [10, "k10"] is an object of its own: damage it
    let o = json(&chest(&["ls", &url, "--json"]));
    let object = o
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == serde_json::json!([10, "k10"]))
        .unwrap()["object"]
        .as_str()
        .unwrap()
        .to_string();
    let path = dir.join(&object);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let o = chest(&["verify", &url]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).starts_with("[10,\"k10\"]\tcorrupt value"),
        "{}",
        stdout(&o)
    );
    assert_eq!(stdout(&o).lines().count(), 1);
    assert_eq!(
        stderr(&o),
        format!("chest: 1 of 50 values in {url} failed verification\n")
    );
    let v = json(&chest(&["verify", &url, "--json"]));
    assert_eq!(v["checked"], 50);
    assert_eq!(v["failed"][0]["key"], serde_json::json!([10, "k10"]));
    assert!(v["failed"][0]["error"]
        .as_str()
        .unwrap()
        .contains("checksum mismatch"));
    let o = chest(&["get", &url, "[10,\"k10\"]"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("checksum mismatch"), "{}", stderr(&o));

    // a copy stops at the damaged value: the destination is left as it was
    // (no chest, no value copied before the damaged one), so the copy can
    // be run again once the source is repaired
    let dst = tmp.path().join("copy");
    for _ in 0..2 {
        let o = chest(&["cp", &url, dst.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("checksum mismatch"), "{}", stderr(&o));
        let o = chest(&["info", dst.to_str().unwrap()]);
        assert!(stderr(&o).contains("holds no chest"), "{}", stderr(&o));
        let left: Vec<_> = std::fs::read_dir(&dst)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != chest::fs::LOCK_FILE)
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn open_errors_exit_2_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let o = chest(&["info", tmp.path().join("none").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("chest: cannot open "),
        "{}",
        stderr(&o)
    );
    std::fs::write(tmp.path().join("notes.txt"), "hi").unwrap();
    let o = chest(&["ls", tmp.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("notes.txt"), "{}", stderr(&o));
    let o = chest(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    let o = chest(&["info", "nope://x"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}

#[test]
fn any_serializer_json_and_raw() {
    let tmp = tempfile::tempdir().unwrap();
    let url = url_of(&tmp.path().join("j"), false);
    let c: Chest<String, Vec<String>, chest::Json> = Chest::builder()
        .serializer(chest::Json)
        .open(url.as_str())
        .unwrap();
    c.insert("x".into(), vec!["a".into()]).unwrap();
    c.close().unwrap();
    assert_eq!(stdout(&chest(&["get", &url, "\"x\""])), "[\"a\"]");
    assert_eq!(
        json(&chest(&["get", &url, "\"x\"", "--as", "json"])),
        serde_json::json!(["a"])
    );

    let url = url_of(&tmp.path().join("r"), false);
    let c: Chest<u64, Vec<u8>, chest::Raw> = Chest::builder()
        .serializer(chest::Raw)
        .open(url.as_str())
        .unwrap();
    c.insert(7, vec![0, 1, 2, 255]).unwrap();
    c.close().unwrap();
    assert_eq!(chest(&["get", &url, "7"]).stdout, vec![0, 1, 2, 255]);
    assert_eq!(json(&chest(&["info", &url, "--json"]))["serializer"], "raw");
    let o = chest(&["get", &url, "7", "--as", "json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("raw serializer cannot be shown as JSON"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        json(&chest(&["get", &url, "7", "--json"]))["value_hex"],
        "000102ff"
    );
}

#[test]
fn compact_frees_removed_values() {
    let tmp = tempfile::tempdir().unwrap();
    let url = url_of(&tmp.path().join("c"), true);
    make(&url);
    let small: Vec<String> = (1..50)
        .filter(|i| i % 10 != 0 && i % 3 == 0)
        .map(|i| format!("[{i},\"k{i}\"]"))
        .collect();
    let mut args = vec!["rm", url.as_str()];
    args.extend(small.iter().map(String::as_str));
    assert!(chest(&args).status.success());
    let before = json(&chest(&["info", &url, "--json"]));
    assert!(before["garbage_ratio"].as_f64().unwrap() > 0.0, "{before}");

    let o = chest(&["compact", &url, "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let c = json(&o);
    assert!(c["freed_bytes"].as_u64().unwrap() > 0, "{c}");
    assert_eq!(c["garbage_ratio_after"], 0.0, "{c}");
    let o = chest(&["compact", &url]);
    assert!(stdout(&o).starts_with("freed 0 B"), "{}", stdout(&o));
    assert!(chest(&["verify", &url]).status.success());
    let ch: Chest<(u32, String), Vec<u32>> = Chest::open(url.as_str()).unwrap();
    assert_eq!(ch.len(), 50 - small.len());
    assert_eq!(
        *ch.get(&(7, "k7".to_string())).unwrap().unwrap(),
        vec![7; 10]
    );
    assert_eq!(
        *ch.get(&(40, "k40".to_string())).unwrap().unwrap(),
        vec![40; 20_000]
    );
}
