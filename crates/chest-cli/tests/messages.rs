//! What `chest` prints when things go wrong: never a secret given in a URL,
//! and an error is one line with each cause said once. Needs no S3 server:
//! the `s3://` URLs point at `127.0.0.1:1`, where nothing listens (a
//! connection is refused at once).

use std::path::Path;
use std::process::{Command, Output};

use chest::Chest;

const SECRET: &str = "SECRETX999";
const TOKEN: &str = "TOKENX999";
const PASSWORD: &str = "PASSWORDX999";

fn chest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chest"))
        .args(args)
        .output()
        .expect("the chest binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An `s3://` URL at an endpoint where nothing listens, with credentials in its query.
fn s3_unreachable(extra: &str) -> String {
    format!(
        "s3://chest-test/p?endpoint=http://127.0.0.1:1&region=r&access_key_id=AKID123\
         &secret_access_key={SECRET}&session_token={TOKEN}{extra}"
    )
}

/// A small chest in `dir`.
fn make(dir: &Path) -> String {
    let url = format!("file://{}", dir.display());
    let c: Chest<u32, String> = Chest::open(url.as_str()).unwrap();
    for i in 0..5u32 {
        c.insert(i, format!("value {i}")).unwrap();
    }
    c.close().unwrap();
    url
}

#[track_caller]
fn assert_no_secret(args: &[&str], o: &Output) {
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    for secret in [SECRET, TOKEN, PASSWORD] {
        assert!(
            !out.contains(secret),
            "chest {args:?} prints {secret}: {out}"
        );
    }
}

/// One line on stderr, in which no part of the message (a `: `-separated
/// segment of some length) and none of `causes` appears twice.
#[track_caller]
fn assert_one_line_each_cause_once(args: &[&str], o: &Output, causes: &[&str]) {
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "chest {args:?}: {err}");
    assert!(err.starts_with("chest: "), "chest {args:?}: {err}");
    for cause in causes {
        assert_eq!(
            err.matches(cause).count(),
            1,
            "chest {args:?}: {cause:?} once: {err}"
        );
    }
    for segment in err.trim_end().split(": ").filter(|s| s.len() >= 12) {
        assert_eq!(
            err.matches(segment).count(),
            1,
            "chest {args:?}: {segment:?} said more than once: {err}"
        );
    }
}

/// Every command, with and without `--json`, on URLs carrying a secret:
/// the secret is printed nowhere, the URL is (redacted).
#[test]
fn no_secret_in_any_message() {
    let tmp = tempfile::tempdir().unwrap();
    let local = make(&tmp.path().join("c"));
    let fresh = tmp.path().join("fresh");
    let fresh = fresh.to_str().unwrap();
    let s3 = s3_unreachable("");
    let mut runs: Vec<Vec<String>> = Vec::new();
    for url in [
        s3.clone(),
        format!("zstd+{}", s3_unreachable("&level=3")),
        // refused before any request: an unknown key, a bad value, a
        // password in the endpoint or in the URL, a scheme nobody knows, a
        // URL that does not parse
        s3_unreachable("&endpont=x"),
        s3_unreachable("&retries=many"),
        s3_unreachable("").replace("127.0.0.1", &format!("u:{PASSWORD}@127.0.0.1")),
        format!("s3://u:{PASSWORD}@chest-test/p?secret_access_key={SECRET}"),
        format!("nope://b/p?secret_access_key={SECRET}&session_token={TOKEN}"),
        s3_unreachable("").replace("chest-test", "bad bucket"),
    ] {
        for cmd in [
            vec!["info", &url],
            vec!["ls", &url],
            vec!["get", &url, "1"],
            vec!["verify", &url],
            vec!["rm", &url, "1"],
            vec!["compact", &url],
            vec!["cp", &url, fresh],
            vec!["cp", &local, &url],
        ] {
            runs.push(cmd.iter().map(|s| s.to_string()).collect());
        }
    }
    for mut args in runs {
        for json in [false, true] {
            if json {
                args.push("--json".into());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = chest(&args);
            assert_eq!(o.status.code(), Some(2), "chest {args:?}: {}", stderr(&o));
            assert_no_secret(&args, &o);
            assert!(
                stderr(&o).contains("secret_access_key=***"),
                "chest {args:?} shows the URL, redacted: {}",
                stderr(&o)
            );
        }
    }

    // A copy that succeeds (to a store that ignores the query): its output
    // lines name the destination without the secret.
    let dst = format!("memory://dst?secret_access_key={SECRET}&session_token={TOKEN}");
    for json in [false, true] {
        let mut args = vec!["cp", local.as_str(), dst.as_str()];
        if json {
            args.push("--json");
        }
        let o = chest(&args);
        assert!(o.status.success(), "chest {args:?}: {}", stderr(&o));
        assert_no_secret(&args, &o);
    }
    // `info` of a chest that is not there names it, without the secret.
    for json in [false, true] {
        let mut args = vec!["info", dst.as_str()];
        if json {
            args.push("--json");
        }
        let o = chest(&args);
        assert_eq!(o.status.code(), Some(2), "chest {args:?}: {}", stderr(&o));
        assert_no_secret(&args, &o);
    }
}

/// An endpoint where nothing listens: the error names the URL, the
/// endpoint and the cause, each once, on one line.
#[test]
fn an_unreachable_endpoint_says_its_cause_once() {
    let url = s3_unreachable("");
    for json in [false, true] {
        let mut args = vec!["info", url.as_str()];
        if json {
            args.push("--json");
        }
        let o = chest(&args);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(o.stdout.is_empty());
        assert!(
            stderr(&o).contains("cannot reach endpoint http://127.0.0.1:1"),
            "{}",
            stderr(&o)
        );
        assert_one_line_each_cause_once(
            &args,
            &o,
            &[
                "error sending request",
                "Connection refused",
                "Error performing list request",
                "Generic S3 error",
            ],
        );
    }
}

/// A local error with an I/O error for its cause (a chest "inside" a file).
#[test]
fn a_local_error_says_its_cause_once() {
    let tmp = tempfile::tempdir().unwrap();
    let local = make(&tmp.path().join("c"));
    let file = tmp.path().join("file.txt");
    std::fs::write(&file, "not a directory").unwrap();
    let inside = file.join("c");
    let inside = inside.to_str().unwrap();
    for args in [
        vec!["info", inside],
        vec!["ls", file.to_str().unwrap()],
        vec!["cp", &local, inside],
    ] {
        let o = chest(&args);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("os error"), "{}", stderr(&o));
        assert_one_line_each_cause_once(&args, &o, &["os error"]);
    }
}
