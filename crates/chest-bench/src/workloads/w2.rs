//! W2, many small values: 1,000,000 × scale values of 100 B, budget
//! 16 MiB × scale (at least 1 MiB), local directory: insert all, `flush`;
//! reopen; 1,000,000 × scale uniform random `get`s. Baselines: redb and
//! fjall on the same data, one write transaction / batch per 10,000 inserts,
//! then the same random reads, at equal memory: their caches set to the
//! chest's budget (the goal's baselines), and at their default caches
//! (`redb-default`, `fjall-default`: information; redb's default cache,
//! 1 GiB, holds the whole data set).
//!
//! Every side is made durable once, at the end of its insert phase, as the
//! chest's flush does: redb commits its batches with `Durability::None` and
//! the last with `Durability::Immediate`; fjall persists with `SyncAll`.
//! Keys are inserted in ascending order (the best case of both baselines).
//! Information only: the same chest on `file://…?mmap=true`
//! (`chest-mmap`), whose reads come from mapped segment files; and the
//! floor of reads with a system call each (a `pread` per value of the
//! chest's own files).

use chest::{Chest, ChestBuilder, Raw};
use redb::{Durability, ReadableDatabase, TableDefinition};
use serde_json::Value;

use super::w1::file_url;
use super::{no_such_side, params_json, Side};
use crate::common::{
    dir_size, location, measured, remove_dir, stats_json, timed, Ctx, Phase, Report, Result, Rng,
    Values, MIB,
};
use crate::report::{figures, peak_row, Row};

const ID: &str = "W2";
/// Goal: chest ops/s ≥ 2 × the faster baseline, both phases.
const FACTOR: f64 = 2.0;
const BATCH: usize = 10_000;
const VALUE_LEN: usize = 100;
const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("w2");

pub struct Params {
    pub values: u64,
    pub reads: u64,
    pub budget: usize,
}

impl Params {
    pub fn new(ctx: &Ctx) -> Self {
        Self {
            values: ctx.count(1e6, 1),
            reads: ctx.count(1e6, 1),
            budget: ((16.0 * MIB as f64 * ctx.scale) as usize).max(MIB),
        }
    }

    pub fn json(&self) -> Value {
        params_json(&[
            ("values", self.values as f64),
            ("value_bytes", VALUE_LEN as f64),
            ("reads", self.reads as f64),
            ("budget_bytes", self.budget as f64),
            ("batch", BATCH as f64),
        ])
    }
}

pub fn run(side: Side, ctx: &Ctx) -> Result<Report> {
    let p = Params::new(ctx);
    let values = Values::new(VALUE_LEN, ctx.seed);
    let dir = ctx.fresh_dir(&format!("w2-{}-{}", side.name(), ctx.rep))?;
    let mut report = Report::new(ID, side.name(), ctx);
    let read_seed = ctx.seed ^ 0xEAD5 ^ (u64::from(ctx.rep) << 32);
    match side {
        Side::Chest => {
            let loc = location(&dir.join("chest"))?;
            chest_side(&p, &values, &loc, read_seed, &mut report)?;
            #[cfg(unix)]
            pread_floor(&p, &dir.join("chest").join("data"), read_seed, &mut report)?;
        }
        Side::ChestMmap => {
            let loc = format!("{}?mmap=true", file_url(&dir.join("chest"))?);
            chest_side(&p, &values, &loc, read_seed, &mut report)?
        }
        Side::Redb => redb_side(&p, &values, &dir, read_seed, Some(p.budget), &mut report)?,
        Side::Fjall => fjall_side(&p, &values, &dir, read_seed, Some(p.budget), &mut report)?,
        Side::RedbDefault => redb_side(&p, &values, &dir, read_seed, None, &mut report)?,
        Side::FjallDefault => fjall_side(&p, &values, &dir, read_seed, None, &mut report)?,
        _ => return Err(no_such_side(ID, side)),
    }
    report.info("bytes_on_disk", dir_size(&dir));
    remove_dir(&dir);
    Ok(report)
}

fn push(report: &mut Report, phase: &str, ops: u64, secs: f64, peak: Option<u64>) {
    report
        .phases
        .push(Phase::ops_per_s(phase, ops, secs).with_peak(peak));
}

fn chest_side(
    p: &Params,
    values: &Values,
    loc: &str,
    read_seed: u64,
    report: &mut Report,
) -> Result<()> {
    report.info("location", loc);
    let open = || -> Result<Chest<u64, Vec<u8>, Raw>> {
        Ok(ChestBuilder::new()
            .serializer(Raw)
            .memory_budget(p.budget)
            .open(loc)?)
    };
    let mut flush_secs = 0.0;
    let (stats, secs, peak) = measured(|| {
        let c = open()?;
        for k in 0..p.values {
            c.insert(k, values.make(k))?;
        }
        flush_secs = timed(|| Ok(c.flush()?))?.1;
        let stats = c.stats();
        c.close()?;
        Ok(stats)
    })?;
    push(report, "insert", p.values, secs, peak);
    report.info("insert_flush_seconds", flush_secs);
    report.info("insert_stats", stats_json(&stats));

    let mut open_secs = 0.0;
    let (stats, secs, peak) = measured(|| {
        let (c, s) = timed(open)?;
        open_secs = s;
        let mut rng = Rng::new(read_seed);
        for _ in 0..p.reads {
            let k = rng.below(p.values);
            values.verify_get(&c, k)?;
        }
        let stats = c.stats();
        c.close()?;
        Ok(stats)
    })?;
    push(report, "read", p.reads, secs, peak);
    report.info("reopen_seconds", open_secs);
    report.info("read_stats", stats_json(&stats));
    Ok(())
}

/// redb with its cache set to `cache` bytes (`None`: its default).
fn redb_side(
    p: &Params,
    values: &Values,
    dir: &std::path::Path,
    read_seed: u64,
    cache: Option<usize>,
    report: &mut Report,
) -> Result<()> {
    let path = dir.join("w2.redb");
    let mut builder = redb::Builder::new();
    if let Some(bytes) = cache {
        builder.set_cache_size(bytes);
    }
    report.info(
        "cache_bytes",
        cache.map_or(Value::Null, |b| (b as f64).into()),
    );
    let ((), secs, peak) = measured(|| {
        let db = builder.create(&path)?;
        let keys: Vec<u64> = (0..p.values).collect();
        let batches = keys.chunks(BATCH).count();
        for (i, batch) in keys.chunks(BATCH).enumerate() {
            let mut tx = db.begin_write()?;
            // Durable once, at the end, like the chest's flush.
            tx.set_durability(if i + 1 == batches {
                Durability::Immediate
            } else {
                Durability::None
            })?;
            {
                let mut table = tx.open_table(TABLE)?;
                for &k in batch {
                    table.insert(k, values.make(k).as_slice())?;
                }
            }
            tx.commit()?;
        }
        Ok(())
    })?;
    push(report, "insert", p.values, secs, peak);

    let mut open_secs = 0.0;
    let ((), secs, peak) = measured(|| {
        let (db, s) = timed(|| Ok(builder.open(&path)?))?;
        open_secs = s;
        // One read transaction and one table handle for the whole batch of reads.
        let tx = db.begin_read()?;
        let table = tx.open_table(TABLE)?;
        let mut rng = Rng::new(read_seed);
        for _ in 0..p.reads {
            let k = rng.below(p.values);
            let v = table
                .get(k)?
                .ok_or_else(|| format!("redb: key {k} is missing"))?;
            values.verify(k, v.value(), "redb")?;
        }
        Ok(())
    })?;
    push(report, "read", p.reads, secs, peak);
    report.info("reopen_seconds", open_secs);
    Ok(())
}

/// fjall with its cache set to `cache` bytes (`None`: its default).
fn fjall_side(
    p: &Params,
    values: &Values,
    dir: &std::path::Path,
    read_seed: u64,
    cache: Option<usize>,
    report: &mut Report,
) -> Result<()> {
    let path = dir.join("fjall");
    report.info(
        "cache_bytes",
        cache.map_or(Value::Null, |b| (b as f64).into()),
    );
    let open = || -> Result<(fjall::Database, fjall::Keyspace)> {
        let builder = fjall::Database::builder(&path);
        let builder = match cache {
            Some(bytes) => builder.cache_size(bytes as u64),
            None => builder,
        };
        let db = builder.open()?;
        let ks = db.keyspace("w2", fjall::KeyspaceCreateOptions::default)?;
        Ok((db, ks))
    };
    let ((), secs, peak) = measured(|| {
        let (db, ks) = open()?;
        let mut k = 0;
        while k < p.values {
            let end = (k + BATCH as u64).min(p.values);
            let mut batch = db.batch();
            for k in k..end {
                batch.insert(&ks, k.to_be_bytes(), values.make(k));
            }
            batch.commit()?;
            k = end;
        }
        // Durable once, at the end, like the chest's flush.
        db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    })?;
    push(report, "insert", p.values, secs, peak);

    let mut open_secs = 0.0;
    let ((), secs, peak) = measured(|| {
        let ((_db, ks), s) = timed(open)?;
        open_secs = s;
        let mut rng = Rng::new(read_seed);
        for _ in 0..p.reads {
            let k = rng.below(p.values);
            let v = ks
                .get(k.to_be_bytes())?
                .ok_or_else(|| format!("fjall: key {k} is missing"))?;
            values.verify(k, &v, "fjall")?;
        }
        Ok(())
    })?;
    push(report, "read", p.reads, secs, peak);
    report.info("reopen_seconds", open_secs);
    Ok(())
}

/// The floor of a read path with a system call per value: as many reads
/// as the chest made, each a `pread` of one record (the value and its
/// checksum) at a random offset of a random one of the chest's own segment
/// files, into a new buffer, nothing else. Measured in the chest's process
/// after it closed, its files still in the page cache.
#[cfg(unix)]
fn pread_floor(p: &Params, data: &std::path::Path, seed: u64, report: &mut Report) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let record = VALUE_LEN + 4;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(data)? {
        let path = entry?.path();
        let len = std::fs::metadata(&path)?.len();
        if len >= record as u64 {
            files.push((std::fs::File::open(&path)?, len - record as u64));
        }
    }
    if files.is_empty() {
        return Err(format!("no segment files under {}", data.display()).into());
    }
    let mut rng = Rng::new(seed ^ 0xF1002);
    let mut sum = 0u64;
    let ((), secs) = timed(|| {
        for _ in 0..p.reads {
            let (file, last) = &files[rng.below(files.len() as u64) as usize];
            let mut buf = vec![0u8; record];
            file.read_exact_at(&mut buf, rng.below(last + 1))?;
            sum = sum.wrapping_add(u64::from(buf[0]));
        }
        Ok(())
    })?;
    std::hint::black_box(sum);
    push(report, "pread floor", p.reads, secs, None);
    Ok(())
}

pub fn rows(ctx: &Ctx, reports: &[Report]) -> Vec<Row> {
    let p = Params::new(ctx);
    let chest = Side::Chest.name();
    let mut rows = Vec::new();
    for (phase, label) in [("insert", "insert+flush"), ("read", "reopen+random get")] {
        let chest_raw = figures(reports, chest, phase);
        let base: Vec<Row> = [Side::Redb, Side::Fjall]
            .iter()
            .map(|s| {
                Row::new(ID, label, "ops/s")
                    .chest(chest_raw.clone())
                    .baseline(s.name(), figures(reports, s.name(), phase))
            })
            .collect();
        // The goal is against the faster baseline.
        let best = base
            .iter()
            .filter_map(|r| r.baseline.map(|b| (b, r.baseline_name.clone())))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        for row in base {
            let holds = match (&best, row.chest) {
                (Some((b, _)), Some(c)) => Some(c >= FACTOR * b),
                _ => None,
            };
            let faster = best
                .as_ref()
                .and_then(|(_, n)| n.clone())
                .unwrap_or_default();
            rows.push(row.goal(format!("≥ {FACTOR:.2} vs faster ({faster})"), holds));
        }
    }
    // Information only: the baselines at their default caches.
    for (phase, label) in [
        ("insert", "insert+flush, default caches (info)"),
        ("read", "reopen+random get, default caches (info)"),
    ] {
        for side in [Side::RedbDefault, Side::FjallDefault] {
            rows.push(
                Row::new(ID, label, "ops/s")
                    .chest(figures(reports, chest, phase))
                    .baseline(side.name(), figures(reports, side.name(), phase)),
            );
        }
    }
    // Information only, against redb: the floor of reads with a system call
    // each (on the chest's own files), and reads from mapped files (faster,
    // outside the budget: the pages read count in the resident memory).
    let mmap = Side::ChestMmap.name();
    for (side, phase, base_phase, label) in [
        (
            chest,
            "pread floor",
            "read",
            "random pread of its records (info: the floor)",
        ),
        (mmap, "read", "read", "reopen+random get, mmap=true (info)"),
        (mmap, "insert", "insert", "insert+flush, mmap=true (info)"),
    ] {
        rows.push(
            Row::new(ID, label, "ops/s")
                .chest(figures(reports, side, phase))
                .baseline(
                    Side::Redb.name(),
                    figures(reports, Side::Redb.name(), base_phase),
                ),
        );
    }
    let label = "peak RSS (lower is better)";
    rows.push(peak_row(
        ID,
        label,
        p.budget,
        reports,
        chest,
        Side::Redb.name(),
    ));
    for side in [Side::Fjall, Side::RedbDefault, Side::FjallDefault] {
        let mut peak = peak_row(ID, label, p.budget, reports, chest, side.name());
        peak.goal = "(same)".into();
        peak.holds = None;
        rows.push(peak);
    }
    let mut mmap_peak = peak_row(
        ID,
        "peak RSS, mmap=true (info)",
        p.budget,
        reports,
        mmap,
        Side::Redb.name(),
    );
    mmap_peak.goal = "— (mapped pages count)".into();
    mmap_peak.holds = None;
    rows.push(mmap_peak);
    rows
}
