//! The workloads of WORKLOADS.md, one module each. A workload names its
//! sides (the chest first, then its baselines), runs one side in a child
//! process ([`Workload::run`]) and turns the children's reports into table
//! rows ([`Workload::rows`]).
//!
//! To add a workload: a variant here, a module with `run` and `rows`, and
//! its sides in [`Side`]. A workload that needs a backend crate's cargo
//! feature (W5: `zstd`, W6: `s3`) keeps its variant without the feature, is
//! left out of [`Workload::all`] then, and says why in
//! [`Workload::unavailable`] (and its `run` fails).

use clap::ValueEnum;
use serde_json::{json, Value};

use crate::common::{Ctx, Report, Result};
use crate::report::Row;

pub mod w1;
pub mod w2;
pub mod w3;
pub mod w4;
pub mod w5;
pub mod w6;
pub mod w7;

/// A workload of WORKLOADS.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Large values: 1 MiB values through a 256 MiB budget to a local directory.
    W1,
    /// Many small values: 100 B values, 16 MiB budget, against redb and fjall.
    W2,
    /// Memory hits: gets of resident values on 1 and 2 threads.
    W3,
    /// Reopen: open + first get, and index memory per key.
    W4,
    /// Compressible values: W1 through `zstd+file://`, against the zstd
    /// library's own speed (needs the `zstd` feature).
    W5,
    /// Compressible values over object storage: W6 through `zstd+s3://`
    /// against plain `s3://` (needs `zstd`, `s3` and a server in `CHEST_S3_URL`).
    #[value(name = "w5-s3")]
    W5S3,
    /// Object storage: 4 MiB values through `s3://` against `object_store`
    /// directly (needs the `s3` feature and a server in `CHEST_S3_URL`).
    W6,
    /// Eviction quality: loads on synthetic traces against Belady and the
    /// popularity oracle.
    W7,
}

impl Workload {
    /// Every workload this build has, in order (W5 with the `zstd` feature,
    /// W6 with `s3`, W5-s3 with both).
    pub fn all() -> Vec<Workload> {
        let mut all = vec![Workload::W1, Workload::W2, Workload::W3, Workload::W4];
        if cfg!(feature = "zstd") {
            all.push(Workload::W5);
        }
        if cfg!(all(feature = "zstd", feature = "s3")) {
            all.push(Workload::W5S3);
        }
        if cfg!(feature = "s3") {
            all.push(Workload::W6);
        }
        all.push(Workload::W7);
        all
    }

    /// Why this workload cannot run here, if it cannot (W6: no test server
    /// named in `CHEST_S3_URL`, or no `s3` feature). Asked for by name, such
    /// a workload is an error; as part of `all` it is skipped with a note.
    pub fn unavailable(self) -> Option<String> {
        match self {
            Workload::W6 => w6::unavailable(),
            Workload::W5S3 if !cfg!(feature = "zstd") => {
                Some("W5-s3 needs chest-bench built with the `zstd` feature".into())
            }
            Workload::W5S3 => w6::unavailable(),
            _ => None,
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            Workload::W1 => "W1",
            Workload::W2 => "W2",
            Workload::W3 => "W3",
            Workload::W4 => "W4",
            Workload::W5 => "W5",
            Workload::W5S3 => "W5-s3",
            Workload::W6 => "W6",
            Workload::W7 => "W7",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Workload::W1 => "large values",
            Workload::W2 => "many small values",
            Workload::W3 => "memory hits",
            Workload::W4 => "reopen",
            Workload::W5 => "compressible values (zstd+file://)",
            Workload::W5S3 => "compressible values over object storage (zstd+s3://)",
            Workload::W6 => "object storage (s3)",
            Workload::W7 => "eviction quality",
        }
    }

    /// The sides measured in every repetition: the chest, then the baselines.
    pub fn sides(self) -> &'static [Side] {
        match self {
            Workload::W1 => &[Side::Chest, Side::ChestNoFsync, Side::Files],
            Workload::W2 => &[
                Side::Chest,
                Side::ChestMmap,
                Side::Redb,
                Side::Fjall,
                Side::RedbDefault,
                Side::FjallDefault,
            ],
            Workload::W3 => &[Side::Chest, Side::Mutex],
            Workload::W4 => &[Side::Chest],
            Workload::W5 => &[Side::Chest, Side::Zstd, Side::Plain, Side::Zstd1],
            Workload::W5S3 => &[Side::Chest, Side::Plain],
            Workload::W6 => &[Side::Chest, Side::ObjectStore, Side::ObjectStoreSerial],
            Workload::W7 => &[Side::Chest],
        }
    }

    /// A run made once before the repetitions (W4 builds the chest it reopens).
    pub fn setup(self) -> Option<Side> {
        match self {
            Workload::W4 => Some(Side::Setup),
            _ => None,
        }
    }

    /// Scratch directories the setup leaves for the repetitions; removed after them.
    pub fn setup_dirs(self) -> &'static [&'static str] {
        match self {
            Workload::W4 => &[w4::DIR],
            _ => &[],
        }
    }

    /// The sizes this workload uses at a scale (for the JSON).
    pub fn params(self, ctx: &Ctx) -> Value {
        match self {
            Workload::W1 => w1::Params::new(ctx).json(),
            Workload::W2 => w2::Params::new(ctx).json(),
            Workload::W3 => w3::Params::new(ctx).json(),
            Workload::W4 => w4::Params::new(ctx).json(),
            Workload::W5 => w5::params(ctx),
            Workload::W5S3 => w5::params_s3(ctx),
            Workload::W6 => w6::Params::new(ctx).json(),
            Workload::W7 => w7::Params::new(ctx).json(),
        }
    }

    /// Runs one side (in the child process).
    pub fn run(self, side: Side, ctx: &Ctx) -> Result<Report> {
        match self {
            Workload::W1 => w1::run(side, ctx),
            Workload::W2 => w2::run(side, ctx),
            Workload::W3 => w3::run(side, ctx),
            Workload::W4 => w4::run(side, ctx),
            Workload::W5 => w5::run(side, ctx),
            Workload::W5S3 => w5::run_s3(side, ctx),
            Workload::W6 => w6::run(side, ctx),
            Workload::W7 => w7::run(side, ctx),
        }
    }

    /// The table rows from every repetition's reports.
    pub fn rows(self, ctx: &Ctx, reports: &[Report]) -> Vec<Row> {
        match self {
            Workload::W1 => w1::rows(ctx, reports),
            Workload::W2 => w2::rows(ctx, reports),
            Workload::W3 => w3::rows(ctx, reports),
            Workload::W4 => w4::rows(ctx, reports),
            Workload::W5 => w5::rows(ctx, reports),
            Workload::W5S3 => w5::rows_s3(ctx, reports),
            Workload::W6 => w6::rows(ctx, reports),
            Workload::W7 => w7::rows(ctx, reports),
        }
    }
}

/// Who does the work in a run: the chest or one of the baselines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Side {
    /// The chest under test (W1: durable, `fsync=flush`; W5: through `zstd+file://`).
    Chest,
    /// W1: the chest on `file://…?fsync=never`.
    ChestNoFsync,
    /// W2 (info): the chest on `file://…?mmap=true` (small values read from
    /// mapped files, outside the budget).
    ChestMmap,
    /// W5: the same chest on plain `file://` (W5-s3: `s3://`), uncompressed.
    Plain,
    /// W5: the zstd library compressing / decompressing the same values with
    /// the layer's level, frame size and checksum, on as many threads as the
    /// layer uses for one value.
    Zstd,
    /// W5 (info): the zstd library the same way, on one thread.
    Zstd1,
    /// W1: one file per value, `std::fs::write` / `std::fs::read`.
    Files,
    /// W2: redb, one write transaction per 10,000 inserts, its cache set to
    /// the chest's budget (equal memory).
    Redb,
    /// W2: fjall, one write batch per 10,000 inserts, its cache set to the
    /// chest's budget (equal memory).
    Fjall,
    /// W2 (info): redb the same way at its default cache (1 GiB).
    RedbDefault,
    /// W2 (info): fjall the same way at its default cache.
    FjallDefault,
    /// W3: `Mutex<HashMap<u64, Arc<Vec<u8>>>>`.
    Mutex,
    /// W4: builds the chest the repetitions reopen.
    Setup,
    /// W6: `object_store` directly, `concurrency` (8) requests in flight.
    ObjectStore,
    /// W6 (info): `object_store` directly, one request in flight.
    ObjectStoreSerial,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Chest => "chest",
            Side::ChestNoFsync => "chest-nofsync",
            Side::ChestMmap => "chest-mmap",
            Side::Plain => "chest-plain",
            Side::Zstd => "zstd",
            Side::Zstd1 => "zstd-1",
            Side::Files => "files",
            Side::Redb => "redb",
            Side::Fjall => "fjall",
            Side::RedbDefault => "redb-default",
            Side::FjallDefault => "fjall-default",
            Side::Mutex => "mutex-hashmap",
            Side::Setup => "setup",
            Side::ObjectStore => "object_store",
            Side::ObjectStoreSerial => "object_store-1",
        }
    }
}

/// The error for a side a workload does not have.
pub fn no_such_side(w: &str, side: Side) -> crate::common::BoxError {
    format!("workload {w} has no side {}", side.name()).into()
}

/// Throughput ratio needed for "chest time ≤ `factor` × baseline time".
pub fn time_goal(factor: f64) -> f64 {
    1.0 / factor
}

/// JSON of a few named numbers.
pub fn params_json(pairs: &[(&str, f64)]) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in pairs {
        m.insert((*k).into(), json!(v));
    }
    Value::Object(m)
}
