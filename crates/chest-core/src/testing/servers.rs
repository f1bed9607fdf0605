//! Test servers named in the environment (an S3 server, a cluster): the
//! settings a test needs, or a loud skip.
//!
//! Without its server's variable a test skips: [`server`] writes a
//! `SKIPPED: <test> needs <VAR> ...` line straight to stderr (past the test
//! harness's capture, so a plain `cargo test` shows it), and the test
//! returns, which the harness counts as passed. So that a skip never passes
//! for a pass where the servers are meant to run, `CHEST_REQUIRE_SERVERS=1`
//! (which `scripts/test.sh`, and so CI, sets) turns every skip into a
//! failure that names the missing variable.
//!
//! A test skips with `let`-`else`:
//!
//! ```ignore
//! use chest_core::testing::servers::{server, GARAGE};
//!
//! let Some(url) = server("CHEST_S3_URL", GARAGE) else { return };
//! ```
//!
//! and a whole conformance suite with a target expression that returns from
//! each test [`conformance_tests!`](crate::conformance_tests) expands to:
//!
//! ```ignore
//! chest_core::conformance_tests!(match S3Target::from_env() {
//!     Some(target) => target,
//!     None => return,
//! });
//! ```

use std::io::Write as _;

/// The variable that forbids skips: set (to anything but `0`), a test whose
/// server is not configured fails instead of skipping.
pub const REQUIRE_SERVERS: &str = "CHEST_REQUIRE_SERVERS";

/// How to get the Garage single node's settings (`CHEST_S3_URL` and `AWS_*`).
pub const GARAGE: &str = "start Garage with `scripts/garage.sh start` and load its settings \
                          with `. \"$(scripts/garage.sh env-file)\"`";

/// How to get the three-node Garage cluster's settings (`CHEST_S3_NODE1..3`,
/// `CHEST_GARAGE_SCRIPT`).
pub const GARAGE_CLUSTER: &str = "start the three-node Garage cluster with \
                                  `scripts/garage.sh cluster-start` and load its settings with \
                                  `. \"$(scripts/garage.sh cluster-env-file)\"`";

/// How to get the Ceph RGW's settings (`CHEST_CEPH_URL`).
pub const CEPH: &str = "start Ceph RGW with `scripts/ceph.sh start` and load its settings \
                        with `. \"$(scripts/ceph.sh env-file)\"`";

/// Whether skips are forbidden ([`REQUIRE_SERVERS`] is set).
pub fn required() -> bool {
    std::env::var(REQUIRE_SERVERS).is_ok_and(|v| !matches!(v.trim(), "" | "0"))
}

/// The value of `var`, which names a test server; `how` says how to get one
/// (e.g. [`GARAGE`]). When `var` is unset or empty: `None` after a
/// `SKIPPED:` line on stderr, and the caller returns; under
/// [`REQUIRE_SERVERS`], a panic instead.
#[track_caller]
pub fn server(var: &str, how: &str) -> Option<String> {
    servers([var], how).map(|[value]| value)
}

/// The values of `vars`, all of which a test needs; like [`server`], `None`
/// (or a panic) when any of them is unset or empty, naming every one missing.
#[track_caller]
pub fn servers<const N: usize>(vars: [&str; N], how: &str) -> Option<[String; N]> {
    let mut missing = Vec::new();
    let values = vars.map(|var| match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => {
            missing.push(var);
            String::new()
        }
    });
    if missing.is_empty() {
        return Some(values);
    }
    let test = test_name();
    let missing = missing.join(", ");
    assert!(
        !required(),
        "{test} needs {missing} (not set), and {REQUIRE_SERVERS} is set, which forbids \
         skipping it: {how} (scripts/test.sh starts every server and runs every test)"
    );
    // Straight to the process's stderr: `eprintln!` would be captured, and
    // shown only for a failing test.
    let _ = std::io::stderr().write_all(
        format!(
            "SKIPPED: {test} needs {missing} (not set): {how}; scripts/test.sh starts every \
             server and runs every test\n"
        )
        .as_bytes(),
    );
    None
}

/// `<test binary>::<test>`: the binary's name without cargo's hash, and the
/// test harness's name for the running thread.
fn test_name() -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| match stem.rsplit_once('-') {
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
            _ => stem,
        })
        .unwrap_or_else(|| "a test".into());
    match std::thread::current().name() {
        Some(test) if test != "main" => format!("{binary}::{test}"),
        _ => binary,
    }
}
