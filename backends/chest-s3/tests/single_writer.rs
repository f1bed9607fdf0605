//! One writer per `s3://` chest, across processes, on real servers:
//!
//! - on Ceph RGW (which honours conditional writes): eight processes race to
//!   open one chest for writing, round after round, and exactly one wins
//!   each time, the others refused with an error naming the winner's pid; a
//!   writer killed with SIGKILL holds the lease until it expires, and then
//!   the next writer takes over with everything the dead one flushed;
//! - on Garage (which ignores them): a writable open without `lock=none`
//!   fails with an error naming the opt-out; with it, or read-only, it opens.
//!
//! Without a server's settings (`CHEST_CEPH_URL`, `CHEST_S3_URL`) its tests
//! skip, saying so (fail under `CHEST_REQUIRE_SERVERS=1`).
//!
//! The shared conformance suite (`conformance_ceph.rs`) checks the lease
//! itself (takeover fencing, a paused writer's commit) within one process.
//!
//! The processes are this test binary run again with `CHEST_CHILD_URL` set:
//! the `child` test then opens the chest, reports on stdout, and waits for a
//! line on stdin before it exits, so the parent starts them all at once and
//! keeps the winner open while it checks the others.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use chest_core::{Backend, Chest, ChestBuilder, ErrorKind, SingleWriter};
use chest_s3::S3Backend;

const CHILD_URL: &str = "CHEST_CHILD_URL";
const CHILD_TTL_MS: &str = "CHEST_CHILD_TTL_MS";

/// Run as a child process (see the module docs); a no-op in a normal run.
#[test]
fn child() {
    let Ok(url) = std::env::var(CHILD_URL) else {
        return;
    };
    let ttl = std::env::var(CHILD_TTL_MS)
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(chest_core::DEFAULT_LEASE_TTL, Duration::from_millis);
    let mut line = String::new();
    let stdin = std::io::stdin();
    stdin.lock().read_line(&mut line).unwrap(); // "go"
    let opened: chest_core::Result<Chest<u64, String>> =
        ChestBuilder::new().lease_ttl(ttl).open(url.as_str());
    let mut out = std::io::stdout();
    match opened {
        Ok(c) => {
            let pid = std::process::id();
            c.insert(u64::from(pid), format!("written by {pid}"))
                .unwrap();
            c.flush().unwrap();
            writeln!(out, "OPENED {pid}").unwrap();
            out.flush().unwrap();
            line.clear();
            stdin.lock().read_line(&mut line).unwrap(); // "exit" (or killed)
            c.close().unwrap();
        }
        Err(e) => {
            writeln!(
                out,
                "REFUSED {:?} {}",
                e.kind(),
                e.to_string().replace('\n', " ")
            )
            .unwrap();
        }
    }
}

struct Proc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

fn spawn(url: &str, ttl: Option<Duration>) -> Proc {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "child",
        "--nocapture",
        "--test-threads",
        "1",
        "-q",
    ])
    .env(CHILD_URL, url)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    if let Some(ttl) = ttl {
        cmd.env(CHILD_TTL_MS, ttl.as_millis().to_string());
    }
    let mut child = cmd.spawn().expect("spawn a child process");
    let stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    Proc {
        child,
        stdin,
        stdout,
    }
}

impl Proc {
    fn send(&mut self, line: &str) {
        // A child that already exited has closed its stdin: fine.
        let _ = writeln!(self.stdin, "{line}");
        let _ = self.stdin.flush();
    }

    /// The child's report: `OPENED <pid>` or `REFUSED <kind> <message>`.
    fn report(&mut self) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "the child exited without a report");
            if line.starts_with("OPENED") || line.starts_with("REFUSED") {
                return line.trim().to_string();
            }
        }
    }
}

#[test]
fn eight_processes_race_to_open_one_chest_on_ceph() {
    const PROCS: usize = 8;
    const ROUNDS: usize = 5;
    let Some(ceph) = common::ceph_url() else {
        return;
    };
    let url = common::fresh(&ceph, "race");
    let mut winners_per_round = Vec::new();
    for round in 0..ROUNDS {
        let mut procs: Vec<Proc> = (0..PROCS).map(|_| spawn(&url, None)).collect();
        for p in &mut procs {
            p.send("go");
        }
        let reports: Vec<String> = procs.iter_mut().map(Proc::report).collect();
        let winners: Vec<&String> = reports.iter().filter(|r| r.starts_with("OPENED")).collect();
        assert_eq!(winners.len(), 1, "round {round}: {reports:#?}");
        let pid = winners[0].trim_start_matches("OPENED ").to_string();
        for r in reports.iter().filter(|r| r.starts_with("REFUSED")) {
            assert!(r.starts_with("REFUSED Locked"), "round {round}: {r}");
            assert!(
                r.contains(&format!("pid {pid},")),
                "round {round}: the refusal names the holder (pid {pid}): {r}"
            );
        }
        winners_per_round.push(winners.len());
        for p in &mut procs {
            p.send("exit");
        }
        for mut p in procs {
            assert!(
                p.child.wait().unwrap().success(),
                "round {round}: a child failed"
            );
        }
    }
    eprintln!(
        "{ROUNDS} rounds of {PROCS} processes racing to open one chest: writers per round \
         {winners_per_round:?}"
    );
    // Every winner's flushed value is there.
    let c: Chest<u64, String> = Chest::open(url.as_str()).unwrap();
    assert_eq!(c.len(), ROUNDS);
}

#[test]
fn a_killed_writer_holds_the_lease_until_it_expires_on_ceph() {
    let Some(ceph) = common::ceph_url() else {
        return;
    };
    let ttl = Duration::from_secs(3);
    let url = common::fresh(&ceph, "killed");
    let mut p = spawn(&url, Some(ttl));
    p.send("go");
    let report = p.report();
    assert!(report.starts_with("OPENED"), "{report}");
    let pid = report.trim_start_matches("OPENED ").to_string();
    p.child.kill().unwrap(); // SIGKILL: no release, no flush on drop
    p.child.wait().unwrap();
    let killed = Instant::now();
    let err = ChestBuilder::<u64, String>::new()
        .open(url.as_str())
        .expect_err("the dead writer's lease is still live");
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    assert!(err.to_string().contains(&format!("pid {pid},")), "{err}");
    // The lease expires within its TTL of the last renewal: poll for it.
    let c: Chest<u64, String> = loop {
        match ChestBuilder::new().open(url.as_str()) {
            Ok(c) => break c,
            Err(e) if e.kind() == ErrorKind::Locked => {
                assert!(killed.elapsed() < ttl * 3, "the lease did not expire: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("{e}"),
        }
    };
    let waited = killed.elapsed();
    eprintln!("took over a killed writer's lease {waited:?} after the kill (TTL {ttl:?})");
    assert!(waited <= ttl + Duration::from_secs(2), "{waited:?}");
    let key: u64 = pid.parse().unwrap();
    assert_eq!(
        c.get(&key).unwrap().as_deref().map(String::as_str),
        Some(&*format!("written by {pid}"))
    );
}

/// A fresh prefix of `base` (`CHEST_S3_URL`, Garage) without its `lock=none`, and with it.
fn garage_url_without_opt_out(base: &str, tag: &str) -> (String, String) {
    let with = common::fresh(base, tag);
    let mut parsed = url::Url::parse(&with).unwrap();
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k != "lock")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(kept);
    let without = parsed.to_string();
    let mut with = url::Url::parse(&without).unwrap();
    with.query_pairs_mut().append_pair("lock", "none");
    (without, with.to_string())
}

#[test]
fn garage_refuses_a_writer_without_lock_none() {
    let Some(base) = common::s3_url() else { return };
    let (without, with) = garage_url_without_opt_out(&base, "probe");
    let backend = S3Backend::open_url(&without).unwrap();
    match backend.single_writer().unwrap() {
        SingleWriter::Unavailable(why) => {
            assert!(why.contains("If-None-Match"), "{why}");
            assert!(why.contains("lock=none"), "{why}");
        }
        other => panic!("Garage ignores conditional writes, yet the probe found {other:?}"),
    }
    // The probe leaves nothing behind.
    assert_eq!(backend.list("").unwrap(), Vec::<String>::new());
    let err = Chest::<u64, String>::open(without.as_str()).expect_err("a writer on Garage");
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("lock=none"), "{err}");
    assert_eq!(
        backend.list("").unwrap(),
        Vec::<String>::new(),
        "the refused open wrote nothing"
    );
    // With the opt-out it opens; read-only, it needs none.
    let w: Chest<u64, String> = Chest::open(with.as_str()).unwrap();
    w.insert(1, "one".into()).unwrap();
    w.close().unwrap();
    let r: Chest<u64, String> = ChestBuilder::new()
        .read_only(true)
        .open(without.as_str())
        .unwrap();
    assert_eq!(
        r.get(&1).unwrap().as_deref().map(String::as_str),
        Some("one")
    );
}

#[test]
fn lock_none_is_trusted_and_ceph_takes_a_lease() {
    let Some(base) = common::ceph_url() else {
        return;
    };
    let ceph = S3Backend::open_url(&common::fresh(&base, "answer")).unwrap();
    assert_eq!(ceph.single_writer().unwrap(), SingleWriter::Lease);
    let mut trusted = url::Url::parse(&common::fresh(&base, "answer")).unwrap();
    trusted.query_pairs_mut().append_pair("lock", "none");
    let trusted = S3Backend::open_url(trusted.as_str()).unwrap();
    assert_eq!(trusted.single_writer().unwrap(), SingleWriter::Trusted);
    let bad = format!("{}&lock=maybe", common::fresh(&base, "answer"));
    let err = S3Backend::open_url(&bad).unwrap_err();
    assert!(err.to_string().contains("lock"), "{err}");
}
