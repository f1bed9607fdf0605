//! `chest`: look into, check, copy and tidy any chest from the shell.
//!
//! Every command takes a chest's URL (`file:///dir`, a plain path,
//! `zstd+file:///dir`, `s3://bucket/prefix?...`) and `--json` for
//! machine-readable output. Keys on the command line are JSON, mapped to the
//! stored CBOR keys (`'"x"'`, `'[1,"a"]'`, `'{"id":3}'`).
//!
//! Exit codes: 0 ok, 1 problems found (a corrupt value, a missing key), 2 a
//! usage error or a chest that could not be opened. An error is one line on
//! stderr, each cause said once. A URL is always shown through
//! [`chest::redact_url`]: no secret given in a URL (`secret_access_key`,
//! `session_token`, a password) is ever printed.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use chest::raw::{RawChest, RawKey, Stored};
use chest::{Chest, ChestBuilder, OpenMode};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value as Json};

#[derive(Parser)]
#[command(
    name = "chest",
    version,
    about = "Look into, check and tidy a chest (a spill-to-disk dictionary) at any URL"
)]
struct Cli {
    /// Machine-readable output (JSON on stdout).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Keys, bytes stored, objects, garbage, serializer, index memory.
    Info {
        /// The chest's URL or path.
        url: String,
    },
    /// Keys (as JSON) with the size of each stored value.
    Ls {
        /// The chest's URL or path.
        url: String,
        /// Show at most this many keys.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// One value: its stored bytes to stdout, or JSON with `--as json`.
    Get {
        /// The chest's URL or path.
        url: String,
        /// The key, as JSON (`'"x"'`, `'[1,"a"]'`).
        key: String,
        /// How to write the value: the stored bytes, or JSON (for chests
        /// written with the cbor or json serializer).
        #[arg(long = "as", value_enum, default_value = "raw")]
        format: Format,
    },
    /// Reads every value and checks its checksum; exit 1 and the failing keys.
    Verify {
        /// The chest's URL or path.
        url: String,
    },
    /// Removes keys (and flushes).
    Rm {
        /// The chest's URL or path.
        url: String,
        /// The keys, as JSON.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Rewrites the segments that hold garbage and deletes dead objects;
    /// says how much it freed.
    Compact {
        /// The chest's URL or path.
        url: String,
    },
    /// Copies a chest to a new location (any scheme to any other), keeping
    /// its serializer; the destination's manifest is written last, then
    /// everything copied is read back and checked. A copy that fails
    /// removes what it wrote: the destination is left as it was.
    Cp {
        /// The chest to copy.
        src: String,
        /// Where to copy it (must hold no chest yet).
        dst: String,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// The bytes as the serializer wrote them.
    Raw,
    /// JSON, decoded from CBOR or JSON values.
    Json,
}

/// A failure: what went wrong (one line), its cause, and the exit code.
struct Failure {
    what: String,
    cause: Option<Box<dyn std::error::Error>>,
    code: u8,
}

impl Failure {
    fn usage(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            cause: None,
            code: 2,
        }
    }

    fn open(url: &str, e: chest::Error) -> Self {
        Self {
            what: format!("cannot open {}", shown(url)),
            cause: Some(Box::new(e)),
            code: 2,
        }
    }

    fn found(what: impl Into<String>, e: Option<chest::Error>) -> Self {
        Self {
            what: what.into(),
            cause: e.map(|e| Box::new(e) as _),
            code: 1,
        }
    }
}

type Outcome = Result<(), Failure>;

/// `println!` that ignores a closed stdout (`chest ls URL | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("{}", error_line(&f));
            ExitCode::from(f.code)
        }
    }
}

/// `chest: what: cause: its cause...`, each cause said once: most errors
/// (ours, `object_store`'s, `std::io`'s wrappers) already show their source
/// in their own text, so a cause whose text the line holds is skipped.
fn error_line(f: &Failure) -> String {
    let mut line = format!("chest: {}", f.what);
    let mut cause = f.cause.as_deref();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    // One line, whatever a cause held.
    line.replace(['\n', '\r'], " ")
}

/// A URL as messages and output show it: without its secrets.
fn shown(url: &str) -> Cow<'_, str> {
    chest::redact_url(url)
}

fn run(cli: &Cli) -> Outcome {
    match &cli.command {
        Command::Info { url } => info(url, cli.json),
        Command::Ls { url, limit } => ls(url, *limit, cli.json),
        Command::Get { url, key, format } => get(url, key, *format, cli.json),
        Command::Verify { url } => verify(url, cli.json),
        Command::Rm { url, keys } => rm(url, keys, cli.json),
        Command::Cp { src, dst } => cp(src, dst, cli.json),
        Command::Compact { url } => compact(url, cli.json),
    }
}

fn open(url: &str) -> Result<RawChest, Failure> {
    RawChest::open(url).map_err(|e| Failure::open(url, e))
}

fn parse_key(text: &str) -> Result<RawKey, Failure> {
    let json: Json = serde_json::from_str(text).map_err(|e| {
        Failure::usage(format!(
            "the key {text} is not JSON ({e}); a string key is '\"x\"'"
        ))
    })?;
    RawKey::from_json(&json).map_err(|e| Failure::usage(format!("the key {text}: {e}")))
}

fn print_json(v: &Json) {
    out!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON values print")
    );
}

/// A progress bar on stderr when it is a terminal (and the output is not
/// JSON); hidden otherwise.
fn progress(total: usize, what: &str, as_json: bool) -> ProgressBar {
    if as_json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64).with_message(what.to_string());
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} values, {elapsed} (eta {eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn info(url: &str, as_json: bool) -> Outcome {
    let raw = open(url)?;
    let i = raw.info();
    if as_json {
        print_json(&json!({
            "location": shown(&i.location),
            "keys": i.keys,
            "serializer": i.serializer,
            "objects": i.objects,
            "object_bytes": i.object_bytes,
            "live_bytes": i.live_bytes,
            "value_bytes": i.value_bytes,
            "key_bytes": i.key_bytes,
            "garbage_ratio": i.garbage_ratio(),
            "index_memory": i.index_memory(),
            "damaged_manifests": i.damaged_manifests,
            "manifests": i.manifests,
        }));
    } else {
        out!("location      {}", shown(&i.location));
        out!("keys          {}", i.keys);
        out!(
            "serializer    {}",
            i.serializer.as_deref().unwrap_or("(none: never flushed)")
        );
        out!("objects       {} ({})", i.objects, size(i.object_bytes));
        out!(
            "values        {} ({:.1}% of the objects' bytes are garbage)",
            size(i.value_bytes),
            i.garbage_ratio() * 100.0
        );
        out!("index memory  ~{} when opened", size(i.index_memory()));
        if let Some(newest) = i.manifests.last() {
            let n = i.manifests.len();
            let plural = if n == 1 { "" } else { "s" };
            out!("last flush    {newest} ({n} manifest{plural} kept)");
        }
        for d in &i.damaged_manifests {
            out!("damaged manifest skipped: {d}");
        }
    }
    Ok(())
}

fn ls(url: &str, limit: Option<usize>, as_json: bool) -> Outcome {
    let raw = open(url)?;
    let entries = raw.entries().map_err(|e| Failure::open(url, e))?;
    let shown = entries.iter().take(limit.unwrap_or(usize::MAX));
    if as_json {
        let list: Vec<Json> = shown
            .map(|e| json!({"key": e.key.to_json(), "size": e.size, "object": e.object}))
            .collect();
        print_json(&Json::Array(list));
    } else {
        let mut out = std::io::stdout().lock();
        for e in shown {
            if writeln!(out, "{}\t{}", e.key, e.size).is_err() {
                break; // a closed pipe (`| head`)
            }
        }
    }
    Ok(())
}

/// A stored value as JSON, for the serializers that are self-describing.
fn value_json(serializer: Option<&str>, bytes: &[u8]) -> Result<Json, String> {
    match serializer {
        Some("cbor") => ciborium::from_reader::<ciborium::Value, _>(bytes)
            .map(|v| RawKey::new(v).to_json())
            .map_err(|e| format!("the value is not CBOR: {e}")),
        Some("json") => {
            serde_json::from_slice(bytes).map_err(|e| format!("the value is not JSON: {e}"))
        }
        other => Err(format!(
            "values written by the {} serializer cannot be shown as JSON (only cbor and json); \
             use --as raw",
            other.unwrap_or("unknown")
        )),
    }
}

fn get(url: &str, key_text: &str, format: Format, as_json: bool) -> Outcome {
    let key = parse_key(key_text)?;
    let raw = open(url)?;
    let bytes = match raw.get(&key) {
        Ok(Some(b)) => b,
        Ok(None) => {
            return Err(Failure::found(
                format!("no key {key} in {}", shown(url)),
                None,
            ))
        }
        Err(e) => {
            return Err(Failure::found(
                format!("cannot read the value of {key}"),
                Some(e),
            ))
        }
    };
    let serializer = raw.serializer();
    if as_json || format == Format::Json {
        let value = value_json(serializer, &bytes);
        if as_json {
            let mut out =
                json!({"key": key.to_json(), "size": bytes.len(), "serializer": serializer});
            match value {
                Ok(v) => out["value"] = v,
                Err(_) => {
                    out["value_hex"] =
                        Json::String(bytes.iter().map(|b| format!("{b:02x}")).collect());
                }
            }
            print_json(&out);
        } else {
            print_json(&value.map_err(Failure::usage)?);
        }
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(&bytes)
            .and_then(|()| out.flush())
            .map_err(|e| Failure {
                what: "cannot write the value to stdout".into(),
                cause: Some(Box::new(e)),
                code: 2,
            })?;
    }
    Ok(())
}

fn verify(url: &str, as_json: bool) -> Outcome {
    let raw = open(url)?;
    let bar = progress(raw.len(), "verifying", as_json);
    let failures = raw
        .verify(|done, _| bar.set_position(done as u64))
        .map_err(|e| Failure::open(url, e))?;
    bar.finish_and_clear();
    let checked = raw.len();
    if as_json {
        let failed: Vec<Json> = failures
            .iter()
            .map(|f| json!({"key": f.key.to_json(), "error": f.error.to_string()}))
            .collect();
        print_json(
            &json!({"location": shown(raw.location()), "checked": checked, "failed": failed}),
        );
    } else if failures.is_empty() {
        out!("{checked} values checked: every checksum matches");
    } else {
        for f in &failures {
            out!("{}\t{}", f.key, f.error);
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::found(
            format!(
                "{} of {checked} values in {} failed verification",
                failures.len(),
                shown(url)
            ),
            None,
        ))
    }
}

fn rm(url: &str, key_texts: &[String], as_json: bool) -> Outcome {
    let keys = key_texts
        .iter()
        .map(|k| parse_key(k))
        .collect::<Result<Vec<_>, _>>()?;
    let removed = RawChest::remove(url, &keys).map_err(|e| Failure::open(url, e))?;
    let (gone, missing): (Vec<_>, Vec<_>) = keys.iter().zip(&removed).partition(|(_, &r)| r);
    if as_json {
        print_json(&json!({
            "removed": gone.iter().map(|(k, _)| k.to_json()).collect::<Vec<_>>(),
            "missing": missing.iter().map(|(k, _)| k.to_json()).collect::<Vec<_>>(),
        }));
    } else {
        for (k, r) in keys.iter().zip(&removed) {
            out!("{}\t{k}", if *r { "removed" } else { "missing" });
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Failure::found(
            format!("{} of the keys were not in {}", missing.len(), shown(url)),
            None,
        ))
    }
}

fn cp(src: &str, dst: &str, as_json: bool) -> Outcome {
    let from = open(src)?;
    let entries = from.entries().map_err(|e| Failure::open(src, e))?;
    let serializer = from.serializer().unwrap_or("raw").to_string();
    let to: Chest<RawKey, bytes::Bytes, Stored> =
        ChestBuilder::<RawKey, bytes::Bytes>::with_weigher(|v: &bytes::Bytes| v.len())
            .memory_budget(64 << 20)
            .mode(OpenMode::CreateNew)
            .flush_on_drop(false)
            .serializer(Stored::new(serializer.clone()))
            .open(dst)
            .map_err(|e| Failure::open(dst, e))?;
    let bar = progress(entries.len(), "copying", as_json);
    let copied = (|| {
        let mut bytes = 0u64;
        for e in &entries {
            bar.inc(1);
            let value = from
                .read(e)
                .map_err(|err| Failure::found(format!("cannot copy {}", shown(src)), Some(err)))?;
            bytes += value.len() as u64;
            to.insert(e.key.clone(), value).map_err(|err| {
                Failure::found(format!("cannot write to {}", shown(dst)), Some(err))
            })?;
        }
        Ok(bytes)
    })();
    bar.finish_and_clear();
    let bytes = match copied {
        Ok(bytes) => bytes,
        Err(f) => {
            // The destination held no chest before (`CreateNew`, and a
            // location holding anything else is refused): every object
            // there is this copy's. Remove them all, so that it is left as
            // it was and the copy can be run again.
            drop(to);
            // Best effort: the copy's own error is the one to report.
            let _ = chest::registry::delete_all(dst);
            return Err(f);
        }
    };
    // The manifest is written by this flush, after every value.
    to.close()
        .map_err(|err| Failure::found(format!("cannot write to {}", shown(dst)), Some(err)))?;
    drop(from);
    let copy = open(dst)?;
    let bar = progress(copy.len(), "verifying the copy", as_json);
    let failures = copy
        .verify(|done, _| bar.set_position(done as u64))
        .map_err(|e| Failure::open(dst, e))?;
    bar.finish_and_clear();
    if copy.len() != entries.len() || !failures.is_empty() {
        return Err(Failure::found(
            format!(
                "the copy at {} does not check out: {} keys of {}, {} failing",
                shown(dst),
                copy.len(),
                entries.len(),
                failures.len()
            ),
            None,
        ));
    }
    if as_json {
        print_json(
            &json!({"src": shown(src), "dst": shown(copy.location()), "keys": entries.len(), "value_bytes": bytes, "serializer": serializer}),
        );
    } else {
        out!(
            "copied {} keys ({}) to {}; verified",
            entries.len(),
            size(bytes),
            shown(copy.location())
        );
    }
    Ok(())
}

fn compact(url: &str, as_json: bool) -> Outcome {
    open(url)?;
    let bar = progress(0, "compacting", as_json);
    let compacted = RawChest::compact(url, |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    let (before, after) = compacted.map_err(|e| Failure {
        what: format!("cannot compact {}", shown(url)),
        cause: Some(Box::new(e)),
        code: 1,
    })?;
    let freed = before.object_bytes.saturating_sub(after.object_bytes);
    if as_json {
        print_json(&json!({
            "location": shown(&after.location),
            "freed_bytes": freed,
            "object_bytes_before": before.object_bytes,
            "object_bytes_after": after.object_bytes,
            "objects_before": before.objects,
            "objects_after": after.objects,
            "garbage_ratio_before": before.garbage_ratio(),
            "garbage_ratio_after": after.garbage_ratio(),
        }));
    } else {
        out!(
            "freed {} ({} objects, {} -> {} objects, {:.1}% garbage left)",
            size(freed),
            size(after.object_bytes),
            before.objects,
            after.objects,
            after.garbage_ratio() * 100.0
        );
    }
    Ok(())
}
