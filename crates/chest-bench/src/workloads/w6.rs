//! W6, object storage: 1 GiB × scale of 4 MiB values into a chest with a
//! 128 MiB × scale budget (at least 16 MiB) through `s3://` on the local
//! S3-compatible test server, then `flush`; reopen with the same budget and
//! `get` every key in random order. Baseline: `object_store` directly, built
//! with the same settings as chest-s3 builds its client, putting the same
//! objects `concurrency` (8) at a time, then getting them all, 8 at a time
//! (`buffer_unordered`). Goals: chest ≥ 1.0 × baseline throughput both
//! ways, insert p99 ≤ 1 ms while values spill (every `insert` is timed),
//! peak RSS ≤ budget + 64 MiB.
//!
//! The server comes from `CHEST_S3_URL` (with the `AWS_*` credentials), as
//! `. "$(scripts/garage.sh env-file)"` sets them. Every side of every
//! repetition works under a prefix of its own below the URL's and deletes
//! its objects afterwards. An info side, `object_store-1`, does the same
//! with one request in flight (what the chest's blocking `get` does).
//!
//! Needs the `s3` feature (default on).

use serde_json::Value;

use super::{no_such_side, params_json, Side};
use crate::common::{Ctx, Report, Result, MIB};
use crate::report::{figures, latency_rows, peak_row, Row};

const ID: &str = "W6";
/// Goal: chest throughput ≥ 1.0 × baseline throughput, both phases.
const GOAL: f64 = 1.0;
/// The variable naming the server: `s3://bucket[/prefix]?endpoint=...&region=...`.
pub const URL_ENV: &str = "CHEST_S3_URL";

pub struct Params {
    pub values: u64,
    pub value_len: usize,
    pub budget: usize,
}

impl Params {
    pub fn new(ctx: &Ctx) -> Self {
        Self {
            values: ctx.count(256.0, 1),
            value_len: 4 * MIB,
            budget: ((128.0 * MIB as f64 * ctx.scale) as usize).max(16 * MIB),
        }
    }

    pub fn json(&self) -> Value {
        #[cfg_attr(not(feature = "s3"), allow(unused_mut))]
        let mut v = params_json(&[
            ("values", self.values as f64),
            ("value_bytes", self.value_len as f64),
            ("budget_bytes", self.budget as f64),
        ]);
        #[cfg(feature = "s3")]
        if let Some(store) = s3::describe_server() {
            v["server"] = store;
        }
        v
    }

    pub fn total_bytes(&self) -> u64 {
        self.values * self.value_len as u64
    }

    /// The inserts made before the memory tier is full (see `w1::Params::fits`).
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    pub fn fits(&self) -> usize {
        self.budget / self.value_len
    }
}

/// Why W6 cannot run here, if it cannot: the `s3` feature is off, or no test server is named.
pub fn unavailable() -> Option<String> {
    if !cfg!(feature = "s3") {
        return Some("W6 needs chest-bench built with the `s3` feature".into());
    }
    match std::env::var(URL_ENV) {
        Ok(v) if !v.trim().is_empty() => None,
        _ => Some(format!(
            "{URL_ENV} is not set: start the test server: scripts/garage.sh start, \
             then . \"$(scripts/garage.sh env-file)\""
        )),
    }
}

pub fn run(side: Side, ctx: &Ctx) -> Result<Report> {
    if let Some(why) = unavailable() {
        return Err(why.into());
    }
    if !matches!(
        side,
        Side::Chest | Side::ObjectStore | Side::ObjectStoreSerial
    ) {
        return Err(no_such_side(ID, side));
    }
    #[cfg(feature = "s3")]
    {
        s3::run(side, ctx)
    }
    #[cfg(not(feature = "s3"))]
    {
        let _ = ctx;
        Err("W6 needs chest-bench built with the `s3` feature".into())
    }
}

/// W5-s3's sides: the chest alone, through `zstd+s3://` (`zstd`) or plain
/// `s3://`, on W6's shape with compressible values, under a prefix of its
/// own; the report's `bytes_stored` is what the server held under that
/// prefix after the run (listed before cleanup).
pub fn run_chest_s3(id: &str, side: Side, ctx: &Ctx, zstd: bool) -> Result<Report> {
    if let Some(why) = unavailable() {
        return Err(why.into());
    }
    #[cfg(feature = "s3")]
    {
        s3::run_chest_only(id, side, ctx, zstd)
    }
    #[cfg(not(feature = "s3"))]
    {
        let _ = (id, side, ctx, zstd);
        Err("W5-s3 needs chest-bench built with the `s3` feature".into())
    }
}

pub fn rows(ctx: &Ctx, reports: &[Report]) -> Vec<Row> {
    let p = Params::new(ctx);
    let chest = Side::Chest.name();
    let base = Side::ObjectStore.name();
    let serial = Side::ObjectStoreSerial.name();
    let mut rows = Vec::new();
    for (phase, label) in [
        ("write", "insert+flush / put"),
        ("read", "reopen+get / get"),
    ] {
        let row = Row::new(ID, label, "MB/s")
            .chest(figures(reports, chest, phase))
            .baseline(base, figures(reports, base, phase));
        let holds = row.ratio.map(|r| r >= GOAL);
        rows.push(row.goal(format!("≥ {GOAL:.2}"), holds));
    }
    for (phase, label) in [
        ("write", "insert+flush / put, 1 in flight (info)"),
        ("read", "reopen+get / get, 1 in flight (info)"),
    ] {
        rows.push(
            Row::new(ID, label, "MB/s")
                .chest(figures(reports, chest, phase))
                .baseline(serial, figures(reports, serial, phase)),
        );
    }
    rows.extend(latency_rows(
        ID,
        "insert latency",
        reports,
        (chest, "insert"),
        None,
        super::w1::INSERT_P99_US,
    ));
    rows.push(peak_row(
        ID,
        "peak RSS (lower is better)",
        p.budget,
        reports,
        chest,
        base,
    ));
    rows
}

#[cfg(feature = "s3")]
mod s3 {
    //! The sides, over the test server.

    use std::sync::Arc;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use chest::s3::{S3Config, RETRY_TIMEOUT};

    /// Keys the chest side reads ahead at a time: chest-s3's default concurrency.
    const READ_AHEAD: usize = 8;
    use chest::{Chest, ChestBuilder, Raw};
    use futures::{StreamExt, TryStreamExt};
    use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
    use object_store::path::Path;
    use object_store::{
        BackoffConfig, ClientOptions, GetOptions, ObjectStore, ObjectStoreExt, PutOptions,
        PutPayload, RetryConfig,
    };
    use serde_json::{json, Value};
    use tokio::runtime::Runtime;
    use url::Url;

    use super::{Params, ID, URL_ENV};
    use crate::common::{measured, shuffled, stats_json, timed, BoxError, Ctx, Phase, Report};
    use crate::common::{report_latencies, Latencies, Result, Values};
    use crate::workloads::Side;

    /// An insert that takes longer than this spilled (it waited for an eviction batch).
    const STALL: Duration = Duration::from_millis(1);

    /// The server for the JSON: `s3://bucket[/prefix] at endpoint` (no credentials), and
    /// the settings that matter to throughput.
    pub fn describe_server() -> Option<Value> {
        let url = Url::parse(std::env::var(URL_ENV).ok()?.trim()).ok()?;
        let c = S3Config::from_url(&url).ok()?;
        Some(json!({
            "location": c.location(),
            "concurrency": c.concurrency,
            "part_size": c.part_size,
            "reuse_connections": c.reuse_connections,
        }))
    }

    /// `CHEST_S3_URL` with a prefix of this run's own appended to its prefix:
    /// `chest-bench/<id>-<side>-<rep>-<pid>-<nanos>` (`id` lowercase).
    fn run_url(id: &str, side: Side, ctx: &Ctx) -> Result<Url> {
        let base = std::env::var(URL_ENV).map_err(|_| format!("{URL_ENV} is not set"))?;
        // Not echoed: the URL may carry a secret key.
        let mut url =
            Url::parse(base.trim()).map_err(|e| format!("{URL_ENV} is not a valid URL: {e}"))?;
        if url.scheme() != "s3" {
            return Err(format!("{URL_ENV} is not an s3:// URL").into());
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let own = format!(
            "chest-bench/{}-{}-{}-{}-{nanos}",
            id.to_ascii_lowercase(),
            side.name().replace('_', "-"),
            ctx.rep,
            std::process::id()
        );
        let path = url.path().trim_matches('/').to_string();
        let prefix = if path.is_empty() {
            own
        } else {
            format!("{path}/{own}")
        };
        url.set_path(&format!("/{prefix}"));
        Ok(url)
    }

    /// The client options chest-s3 uses (its `client_options`).
    fn client_options(c: &S3Config) -> ClientOptions {
        let client = ClientOptions::new()
            .with_connect_timeout(c.connect_timeout)
            .with_timeout(c.timeout)
            .with_allow_http(c.allow_http);
        if c.reuse_connections {
            client
        } else {
            client.with_pool_max_idle_per_host(0)
        }
    }

    /// The store chest-s3 builds (its `build_store`), without its counting connector.
    fn build_store(c: &S3Config) -> Result<AmazonS3> {
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: c.retries,
            retry_timeout: RETRY_TIMEOUT,
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&c.bucket)
            .with_region(c.region.as_deref().unwrap_or("us-east-1"))
            .with_allow_http(c.allow_http)
            .with_virtual_hosted_style_request(c.virtual_hosted)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_client_options(client_options(c))
            .with_retry(retry);
        if let Some(e) = &c.endpoint {
            builder = builder.with_endpoint(e);
        }
        match (&c.access_key_id, &c.secret_access_key) {
            (Some(id), Some(secret)) => {
                builder = builder
                    .with_access_key_id(id)
                    .with_secret_access_key(secret);
                if let Some(token) = &c.session_token {
                    builder = builder.with_token(token);
                }
            }
            _ => {
                return Err(
                    "W6's baseline needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                            (as the env file of scripts/garage.sh sets them)"
                        .into(),
                )
            }
        }
        Ok(builder.build()?)
    }

    /// A runtime shaped like chest-s3's: multi-thread, two workers.
    fn runtime() -> Result<Runtime> {
        Ok(tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("w6-baseline")
            .enable_all()
            .build()?)
    }

    /// Runs `fut` as a task on `rt` (as chest-s3 runs its requests) and waits for it.
    fn on<T: Send + 'static>(
        rt: &Runtime,
        fut: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        rt.block_on(rt.spawn(fut))?
    }

    /// Deletes every object under `prefix`; returns (deleted, bytes they
    /// held, left over).
    fn cleanup(rt: &Runtime, store: &Arc<AmazonS3>, prefix: &str, conc: usize) -> (u64, u64, u64) {
        let root = Path::from(prefix);
        let s = Arc::clone(store);
        let p = root.clone();
        let deleted = on(rt, async move {
            let metas: Vec<_> = s.list(Some(&p)).try_collect().await?;
            let n = metas.len() as u64;
            let bytes: u64 = metas.iter().map(|m| m.size).sum();
            futures::stream::iter(metas)
                .map(|m| {
                    let s = Arc::clone(&s);
                    async move { s.delete(&m.location).await }
                })
                .buffer_unordered(conc)
                .try_collect::<Vec<()>>()
                .await?;
            Ok((n, bytes))
        });
        let s = Arc::clone(store);
        let left = on(rt, async move {
            let metas: Vec<_> = s.list(Some(&root)).try_collect().await?;
            Ok(metas.len() as u64)
        });
        match (deleted, left) {
            (Ok((d, b)), Ok(l)) => (d, b, l),
            (d, l) => {
                for e in [d.err(), l.err()].into_iter().flatten() {
                    eprintln!("{ID}: cleaning up s3 prefix {prefix} failed: {e}");
                }
                (0, 0, u64::MAX)
            }
        }
    }

    pub fn run(side: Side, ctx: &Ctx) -> Result<Report> {
        let url = run_url(ID, side, ctx)?;
        let config = S3Config::from_url(&url)?;
        let store = Arc::new(build_store(&config)?);
        let rt = runtime()?;
        let p = Params::new(ctx);
        let values = Arc::new(Values::new(p.value_len, ctx.seed));
        let mut report = Report::new(ID, side.name(), ctx);
        report.info("location", config.location());
        let outcome = match side {
            Side::Chest => chest_side(ctx, &p, &values, url.as_str(), &mut report),
            Side::ObjectStore => baseline(
                ctx,
                &p,
                &rt,
                &store,
                &config,
                config.concurrency,
                &values,
                &mut report,
            ),
            _ => baseline(ctx, &p, &rt, &store, &config, 1, &values, &mut report),
        };
        finish(&rt, &store, &config, &mut report);
        outcome?;
        Ok(report)
    }

    /// Cleans up a side's prefix, whatever happened (the chest is closed by
    /// now), and records what it held.
    fn finish(rt: &Runtime, store: &Arc<AmazonS3>, config: &S3Config, report: &mut Report) {
        let t = Instant::now();
        let (deleted, bytes, left) = cleanup(rt, store, &config.prefix, config.concurrency);
        report.info("bytes_stored", bytes);
        report.info("cleanup_objects_deleted", deleted);
        report.info("cleanup_objects_left", left);
        report.info("cleanup_seconds", t.elapsed().as_secs_f64());
    }

    /// W5-s3: the chest alone, through `zstd+s3://` or plain `s3://`, on
    /// compressible values.
    pub fn run_chest_only(id: &str, side: Side, ctx: &Ctx, zstd: bool) -> Result<Report> {
        let url = run_url(id, side, ctx)?;
        let config = S3Config::from_url(&url)?;
        let store = Arc::new(build_store(&config)?);
        let rt = runtime()?;
        let p = Params::new(ctx);
        let values = Values::compressible(p.value_len, ctx.seed);
        let mut report = Report::new(id, side.name(), ctx);
        report.info("location", config.location());
        let loc = if zstd {
            format!("zstd+{url}")
        } else {
            url.to_string()
        };
        let outcome = chest_side(ctx, &p, &values, &loc, &mut report);
        finish(&rt, &store, &config, &mut report);
        outcome?;
        Ok(report)
    }

    type RawChest = Chest<u64, Vec<u8>, Raw>;

    fn open(loc: &str, budget: usize) -> Result<RawChest> {
        Ok(ChestBuilder::new()
            .serializer(Raw)
            .memory_budget(budget)
            .open(loc)?)
    }

    /// Insert every value and flush, then reopen and get every key in random
    /// order. Inserts that take longer than [`STALL`] are the ones that
    /// waited for an eviction batch: their count and time are in the report.
    fn chest_side(
        ctx: &Ctx,
        p: &Params,
        values: &Values,
        loc: &str,
        report: &mut Report,
    ) -> Result<()> {
        let order = shuffled(p.values, ctx.seed ^ u64::from(ctx.rep));
        let mut info = serde_json::Map::new();
        let mut lat = Latencies::with_capacity(p.values as usize);
        let (stats, secs, peak) = measured(|| {
            let c = open(loc, p.budget)?;
            let (mut stalls, mut stall_secs, mut max_stall, mut other_secs) = (0u64, 0.0, 0.0, 0.0);
            let mut batch_sizes: Vec<u64> = Vec::new();
            let mut spilled = 0;
            for k in 0..p.values {
                let v = values.make(k);
                let t = Instant::now();
                c.insert(k, v)?;
                let d = t.elapsed();
                lat.push(d);
                if d >= STALL {
                    stalls += 1;
                    stall_secs += d.as_secs_f64();
                    max_stall = d.as_secs_f64().max(max_stall);
                    let now = c.stats().spills;
                    batch_sizes.push(now - spilled);
                    spilled = now;
                } else {
                    other_secs += d.as_secs_f64();
                }
            }
            let before = c.stats();
            let ((), flush) = timed(|| Ok(c.flush()?))?;
            let stats = c.stats();
            c.close()?;
            info.insert("insert_stalls".into(), stalls.into());
            info.insert("insert_stall_seconds".into(), stall_secs.into());
            info.insert("insert_stall_max_seconds".into(), max_stall.into());
            info.insert("insert_other_seconds".into(), other_secs.into());
            info.insert("spills_per_stall".into(), batch_sizes.into());
            info.insert("spills_before_flush".into(), before.spills.into());
            info.insert(
                "s3_objects_put_before_flush".into(),
                counter(&before, "s3_objects_put").into(),
            );
            info.insert("write_flush_seconds".into(), flush.into());
            info.insert(
                "spills_in_flush".into(),
                (stats.spills - before.spills).into(),
            );
            Ok(stats)
        })?;
        report
            .phases
            .push(Phase::mb_per_s("write", p.total_bytes(), secs).with_peak(peak));
        report.info.extend(info);
        report.info("write_stats", stats_json(&stats));
        report_latencies(report, "insert", &lat, p.fits());

        let mut open_secs = 0.0;
        let (stats, secs, peak) = measured(|| {
            let (c, o) = timed(|| open(loc, p.budget))?;
            open_secs = o;
            // As many keys read ahead (in the background) as the backend
            // has requests in flight, as the baseline keeps that many GETs
            // in flight: in windows of half as many, the next two on their
            // way while this one is checked, so that a window's last reads
            // overlap the next ones' first.
            let windows: Vec<&[u64]> = order.chunks(READ_AHEAD / 2).collect();
            for window in windows.iter().take(2) {
                c.read_ahead(window.iter().copied());
            }
            for (i, window) in windows.iter().enumerate() {
                if let Some(next) = windows.get(i + 2) {
                    c.read_ahead(next.iter().copied());
                }
                for &k in *window {
                    values.verify_get(&c, k)?;
                }
            }
            let stats = c.stats();
            c.close()?;
            Ok(stats)
        })?;
        report
            .phases
            .push(Phase::mb_per_s("read", p.total_bytes(), secs).with_peak(peak));
        report.info("read_open_seconds", open_secs);
        report.info("read_stats", stats_json(&stats));
        Ok(())
    }

    fn counter(s: &chest::Stats, name: &str) -> u64 {
        s.backend
            .iter()
            .find(|(k, _)| k == name)
            .map_or(0, |(_, v)| *v)
    }

    /// `object_store` directly: put every value as an object of its own,
    /// `conc` at a time, then get them all in the chest's random order,
    /// `conc` at a time.
    #[allow(clippy::too_many_arguments)]
    fn baseline(
        ctx: &Ctx,
        p: &Params,
        rt: &Runtime,
        store: &Arc<AmazonS3>,
        config: &S3Config,
        conc: usize,
        values: &Arc<Values>,
        report: &mut Report,
    ) -> Result<()> {
        let order = shuffled(p.values, ctx.seed ^ u64::from(ctx.rep));
        let root = config.prefix.clone();
        let path = Arc::new(move |k: u64| Path::from(format!("{root}/{k:016x}")));
        report.info("concurrency", conc);

        let (s, v, at, n) = (
            Arc::clone(store),
            Arc::clone(values),
            path.clone(),
            p.values,
        );
        let ((), secs, peak) = measured(|| {
            on(rt, async move {
                futures::stream::iter(0..n)
                    .map(|k| {
                        let (s, at) = (Arc::clone(&s), Arc::clone(&at));
                        let payload = PutPayload::from(v.make(k));
                        async move {
                            s.put_opts(&at(k), payload, PutOptions::default()).await?;
                            Ok::<(), BoxError>(())
                        }
                    })
                    .buffer_unordered(conc)
                    .try_collect::<Vec<()>>()
                    .await?;
                Ok(())
            })
        })?;
        report
            .phases
            .push(Phase::mb_per_s("write", p.total_bytes(), secs).with_peak(peak));

        let (s, v, at) = (Arc::clone(store), Arc::clone(values), path);
        let (bytes, secs, peak) = measured(|| {
            on(rt, async move {
                futures::stream::iter(order)
                    .map(|k| {
                        let (s, v, at) = (Arc::clone(&s), Arc::clone(&v), Arc::clone(&at));
                        async move {
                            let got = s.get_opts(&at(k), GetOptions::default()).await?;
                            let bytes = got.bytes().await?;
                            v.verify(k, &bytes, "object_store")?;
                            Ok::<u64, BoxError>(bytes.len() as u64)
                        }
                    })
                    .buffer_unordered(conc)
                    .try_fold(0u64, |sum, n| async move { Ok(sum + n) })
                    .await
            })
        })?;
        if bytes != p.total_bytes() {
            return Err(
                format!("object_store: read {bytes} bytes, not {}", p.total_bytes()).into(),
            );
        }
        report
            .phases
            .push(Phase::mb_per_s("read", p.total_bytes(), secs).with_peak(peak));
        Ok(())
    }
}
