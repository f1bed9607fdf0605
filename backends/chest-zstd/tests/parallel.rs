//! Objects whose frames are (de)compressed on several threads: round trips
//! around frame boundaries, mixed frames, ranged reads, batches, callers at
//! once, and damaged frames reported as errors naming the object.

use std::sync::Arc;

use bytes::Bytes;
use chest_core::testing::noise;
use chest_core::BackendExt;
use chest_core::{Backend, BackendError, MemoryBackend};
use chest_zstd::{ZstdBackend, ZstdOptions};

const FRAME: usize = 64 << 10;

/// Compressible bytes (little-endian counters with a little noise), like W5's.
fn counters(seed: u32, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 4);
    let mut x = u64::from(seed) | 1;
    let mut n = seed.wrapping_mul(1000);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let noise = if x & 7 == 0 {
            (x >> 8) as u32 & 0xFF
        } else {
            0
        };
        out.extend_from_slice(&(n / 4 + noise).to_le_bytes());
        n = n.wrapping_add(1);
    }
    out.truncate(len);
    out
}

fn layer(mem: &MemoryBackend, threads: usize, frame_size: usize) -> ZstdBackend {
    ZstdBackend::new(
        Arc::new(mem.clone()),
        ZstdOptions {
            threads,
            frame_size,
            ..ZstdOptions::default()
        },
    )
}

fn counter(b: &dyn Backend, name: &str) -> u64 {
    b.counters()
        .into_iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, v)| v)
}

/// Compressed size of each frame, from the stored object's index.
fn frame_sizes(stored: &[u8]) -> Vec<usize> {
    index(stored).into_iter().map(|(_, c)| c).collect()
}

/// The (uncompressed, compressed) size of each frame of a stored object
/// (format version 2: both sizes in the index).
fn index(stored: &[u8]) -> Vec<(usize, usize)> {
    assert_eq!(stored[4], chest_zstd::VERSION);
    let u32_at = |at: usize| u32::from_le_bytes(stored[at..at + 4].try_into().unwrap()) as usize;
    (0..u32_at(24))
        .map(|i| (u32_at(28 + 8 * i), u32_at(32 + 8 * i)))
        .collect()
}

/// Offset of frame `i`'s compressed bytes in the stored object.
fn frame_offset(stored: &[u8], i: usize) -> usize {
    let sizes = frame_sizes(stored);
    28 + 8 * sizes.len() + sizes[..i].iter().sum::<usize>()
}

#[test]
fn sizes_around_frame_boundaries_round_trip_on_any_thread_count() {
    let lens = [
        FRAME - 1,
        FRAME,
        FRAME + 1,
        (512 << 10) - 1, // just under the parallel threshold
        512 << 10,
        (512 << 10) + 1,
        (1 << 20) + 4, // a chest record of a 1 MiB value: 16 frames and 4 bytes
        9 * FRAME - 3,
        3 << 20,
    ];
    for len in lens {
        let data = Bytes::from(counters(len as u32, len));
        let mut stored_by_one = None;
        for threads in [1, 2, 3, 8] {
            let mem = MemoryBackend::new();
            let z = layer(&mem, threads, FRAME);
            z.put("v", data.clone()).unwrap();
            let info = z.object_info("v").unwrap();
            assert!(info.compressed, "{len} bytes");
            assert_eq!(info.frames as usize, len.div_ceil(FRAME), "{len} bytes");
            assert_eq!(z.get("v").unwrap(), data, "{len} bytes, {threads} threads");
            let stored = mem.get("v").unwrap();
            // The stored bytes do not depend on the threads.
            match &stored_by_one {
                None => stored_by_one = Some(stored),
                Some(one) => assert_eq!(one, &stored, "{len} bytes, {threads} threads"),
            }
            // Read by a layer with another thread count.
            assert_eq!(
                layer(&mem, 5 - threads.min(4), FRAME).get("v").unwrap(),
                data
            );
        }
    }
}

#[test]
fn one_frame_and_many_frames() {
    // One frame larger than the threshold: stays on one thread, reads back.
    let data = Bytes::from(counters(1, 900 << 10));
    let mem = MemoryBackend::new();
    let z = layer(&mem, 4, 1 << 20);
    z.put("one", data.clone()).unwrap();
    assert_eq!(z.object_info("one").unwrap().frames, 1);
    assert_eq!(z.get("one").unwrap(), data);
    // 1,024 frames of 4 KiB.
    let data = Bytes::from(counters(2, 4 << 20));
    let z = layer(&mem, 3, 4 << 10);
    z.put("many", data.clone()).unwrap();
    assert_eq!(z.object_info("many").unwrap().frames, 1024);
    assert_eq!(z.get("many").unwrap(), data);
    for r in [0..(4 << 20) as u64, 4095..(3 << 20) + 1, 100_000..100_001] {
        assert_eq!(
            z.get_range("many", r.clone()).unwrap(),
            data[r.start as usize..r.end as usize],
            "{r:?}"
        );
    }
}

#[test]
fn ranged_reads_across_frame_boundaries_on_several_threads() {
    let len = 40 * FRAME + 123;
    let data = Bytes::from(counters(3, len));
    let mem = MemoryBackend::new();
    let z = layer(&mem, 3, FRAME);
    z.put("r", data.clone()).unwrap();
    let f = FRAME as u64;
    let len = len as u64;
    let ranges = [
        0..len,
        1..len - 1,
        f - 1..f + 1,
        f..9 * f,          // 8 whole frames, 512 KiB: parallel
        f - 1..9 * f + 1,  // 10 frames, partial at both ends
        3 * f + 7..31 * f, // many frames
        39 * f..len,       // the last two frames
        20 * f + 5..20 * f + 5,
    ];
    for r in ranges {
        assert_eq!(
            z.get_range("r", r.clone()).unwrap(),
            data[r.start as usize..r.end as usize],
            "{r:?}"
        );
    }
    let many: Vec<(String, Option<std::ops::Range<u64>>)> = vec![
        ("r".into(), Some(f / 2..30 * f)),
        ("r".into(), None),
        ("r".into(), Some(0..f + 1)),
    ];
    let got = z.get_many(many.clone());
    for ((_, range), got) in many.into_iter().zip(got) {
        let r = range.unwrap_or(0..len);
        assert_eq!(got.unwrap(), data[r.start as usize..r.end as usize]);
    }
}

#[test]
fn incompressible_frames_mixed_with_compressible_ones() {
    // Frames alternate noise and counters: each frame is its own zstd frame
    // (noise frames end up as raw zstd blocks); the object as a whole still
    // compresses, even though its first frame does not.
    let mut data = Vec::new();
    for i in 0..24u32 {
        if i % 2 == 0 {
            data.extend(noise(u64::from(i), FRAME));
        } else {
            data.extend(counters(i, FRAME));
        }
    }
    data.extend(noise(99, 1000));
    let data = Bytes::from(data);
    let mem = MemoryBackend::new();
    let z = layer(&mem, 2, FRAME);
    z.put("mixed", data.clone()).unwrap();
    let info = z.object_info("mixed").unwrap();
    assert!(info.compressed);
    assert_eq!(info.frames, 25);
    assert!(info.stored_len < data.len() as u64 * 3 / 4, "{info:?}");
    assert_eq!(z.get("mixed").unwrap(), data);
    let r = FRAME as u64 - 10..5 * FRAME as u64 + 10;
    assert_eq!(
        z.get_range("mixed", r.clone()).unwrap(),
        data[r.start as usize..r.end as usize]
    );

    // Compressible first frame, noise after: compressed, then found not to
    // pay, stored raw.
    let mut data = counters(5, FRAME);
    data.extend(noise(5, 20 * FRAME));
    let data = Bytes::from(data);
    z.put("noisy", data.clone()).unwrap();
    assert!(!z.object_info("noisy").unwrap().compressed);
    assert_eq!(z.get("noisy").unwrap(), data);

    // All noise: stored raw after the first frame and the samples.
    let data = Bytes::from(noise(6, 3 << 20));
    z.put("noise", data.clone()).unwrap();
    assert!(!z.object_info("noise").unwrap().compressed);
    assert_eq!(z.get("noise").unwrap(), data);
    assert_eq!(counter(&z, "zstd.objects_raw"), 2);
    assert_eq!(counter(&z, "zstd.objects_compressed"), 1);
}

#[test]
fn put_many_spreads_the_frames_of_a_batch() {
    let objects: Vec<(String, Bytes)> = [
        (0usize, true),
        (10, true),
        (FRAME + 1, true),
        ((1 << 20) + 4, true),
        ((1 << 20) + 4, false),
        (3 * FRAME, true),
        (2 << 20, true),
    ]
    .iter()
    .enumerate()
    .map(|(i, &(len, compressible))| {
        let data = if compressible {
            counters(i as u32, len)
        } else {
            noise(i as u64, len)
        };
        (format!("o{i}"), Bytes::from(data))
    })
    .collect();
    let one = MemoryBackend::new();
    let z1 = layer(&one, 1, FRAME);
    for (n, d) in &objects {
        z1.put(n, d.clone()).unwrap();
    }
    let many = MemoryBackend::new();
    let z = layer(&many, 3, FRAME);
    z.put_many(whole(objects.clone())).unwrap();
    for (n, d) in &objects {
        assert_eq!(&z.get(n).unwrap(), d, "{n}");
        assert_eq!(one.get(n).unwrap(), many.get(n).unwrap(), "{n}");
    }
    // Raw: the empty one, the 10 bytes (too short to shrink) and the noise.
    assert_eq!(counter(&z, "zstd.objects_raw"), 3);
    assert_eq!(counter(&z, "zstd.objects_compressed"), 4);
}

#[test]
fn callers_at_once_share_the_helpers() {
    let mem = MemoryBackend::new();
    let z = Arc::new(layer(&mem, 2, FRAME));
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let z = Arc::clone(&z);
            s.spawn(move || {
                for i in 0..6u32 {
                    let data = Bytes::from(counters(t * 100 + i, (1 << 20) + 4));
                    let name = format!("t{t}/{i}");
                    z.put(&name, data.clone()).unwrap();
                    assert_eq!(z.get(&name).unwrap(), data);
                }
            });
        }
    });
    assert_eq!(counter(&*z, "zstd.objects_compressed"), 24);
}

#[test]
fn a_damaged_frame_in_the_middle_is_an_error_naming_the_object() {
    let data = Bytes::from(counters(7, 32 * FRAME));
    for threads in [1, 2, 4] {
        let mem = MemoryBackend::new();
        let z = layer(&mem, threads, FRAME);
        z.put("dir/victim", data.clone()).unwrap();
        let good = mem.get("dir/victim").unwrap().to_vec();

        // One damaged frame.
        let mut bad = good.clone();
        let at = frame_offset(&bad, 13) + frame_sizes(&bad)[13] / 2;
        bad[at] ^= 0x55;
        mem.put("dir/victim", bad.into()).unwrap();
        let err = z.get("dir/victim").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, BackendError::Corrupt { .. }), "{err:?}");
        assert!(msg.contains("\"dir/victim\""), "{msg}");
        assert!(msg.contains("frame 13"), "{threads} threads: {msg}");
        // Ranges over it fail the same way; ranges around it read.
        let f = FRAME as u64;
        let msg = z
            .get_range("dir/victim", 2 * f..20 * f)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("frame 13") && msg.contains("dir/victim"),
            "{msg}"
        );
        assert_eq!(
            z.get_range("dir/victim", 0..13 * f).unwrap(),
            data[..13 * FRAME]
        );
        assert_eq!(
            z.get_range("dir/victim", 14 * f..32 * f).unwrap(),
            data[14 * FRAME..]
        );

        // Two damaged frames: the first is named.
        let mut bad = good.clone();
        for i in [25, 6] {
            let at = frame_offset(&bad, i) + 3;
            bad[at] ^= 0xFF;
        }
        mem.put("dir/victim", bad.into()).unwrap();
        let msg = z.get("dir/victim").unwrap_err().to_string();
        assert!(msg.contains("frame 6"), "{threads} threads: {msg}");

        // A frame whose content size disagrees with the index: the frames
        // of 8 and 9 swapped (same total length), an error, not a panic.
        let mut bad = good.clone();
        let sizes = frame_sizes(&good);
        let (a, b) = (frame_offset(&good, 8), frame_offset(&good, 10));
        let mut swapped = good[a + sizes[8]..b].to_vec();
        swapped.extend_from_slice(&good[a..a + sizes[8]]);
        bad[a..b].copy_from_slice(&swapped);
        mem.put("dir/victim", bad.into()).unwrap();
        let msg = z.get("dir/victim").unwrap_err().to_string();
        assert!(
            msg.contains("dir/victim") && msg.contains("frame 8"),
            "{msg}"
        );
    }
}

#[test]
fn threads_url_key() {
    let mem = || -> Arc<dyn Backend> { Arc::new(MemoryBackend::new()) };
    let parse = |q: &str| url::Url::parse(&format!("zstd+memory://{q}")).unwrap();
    let z = ZstdBackend::from_url(&parse("?threads=3&level=1"), mem()).unwrap();
    assert_eq!((z.options().threads, z.options().level), (3, 1));
    let z = ZstdBackend::from_url(&parse("?threads=1"), mem()).unwrap();
    assert_eq!(z.options().threads, 1);
    for q in [
        "?threads=0",
        "?threads=abc",
        "?threads=65",
        "?threads=",
        "?threads=2&threads=2",
    ] {
        let msg = ZstdBackend::from_url(&parse(q), mem())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("threads"), "{q}: {msg}");
    }
    // Clamped in code.
    let z = ZstdBackend::new(
        mem(),
        ZstdOptions {
            threads: 1000,
            ..ZstdOptions::default()
        },
    );
    assert_eq!(z.options().threads, chest_zstd::MAX_THREADS);
}

/// A memory store that refuses names containing "bad", says how many
/// objects it writes at once, and counts its `put` and `put_many` calls.
#[derive(Debug, Default)]
struct Picky {
    mem: MemoryBackend,
    concurrency: usize,
    puts: std::sync::atomic::AtomicUsize,
    batches: std::sync::atomic::AtomicUsize,
}

impl Backend for Picky {
    fn location(&self) -> &str {
        "picky://"
    }
    fn capabilities(&self) -> chest_core::Capabilities {
        chest_core::Capabilities::DEFAULT.with_write_concurrency(self.concurrency)
    }
    fn put_opts(
        &self,
        name: &str,
        parts: Vec<Bytes>,
        opts: chest_core::PutOptions,
    ) -> chest_core::BackendResult<Option<chest_core::ObjectVersion>> {
        self.puts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if name.contains("bad") {
            return Err(BackendError::Other {
                location: "picky://".into(),
                message: format!("{name} refused"),
                source: None,
            });
        }
        self.mem.put_opts(name, parts, opts)
    }
    fn put_many(&self, objects: Vec<(String, Vec<Bytes>)>) -> chest_core::BackendResult<()> {
        self.batches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for (n, parts) in objects {
            self.put_opts(&n, parts, chest_core::PutOptions::default())?;
        }
        Ok(())
    }
    fn get_opts(
        &self,
        name: &str,
        opts: chest_core::GetOptions,
    ) -> chest_core::BackendResult<chest_core::GetResult> {
        self.mem.get_opts(name, opts)
    }
    fn delete(&self, name: &str) -> chest_core::BackendResult<()> {
        self.mem.delete(name)
    }
    fn list(&self, prefix: &str) -> chest_core::BackendResult<Vec<String>> {
        self.mem.list(prefix)
    }
    fn sync(&self) -> chest_core::BackendResult<()> {
        self.mem.sync()
    }
}

/// A batch of objects of one part each, as `put_many` takes them.
fn whole(objects: Vec<(String, Bytes)>) -> Vec<(String, Vec<Bytes>)> {
    objects.into_iter().map(|(n, d)| (n, vec![d])).collect()
}

#[test]
fn put_many_writes_each_object_as_it_is_compressed_or_the_batch_at_once() {
    use std::sync::atomic::Ordering::Relaxed;
    let batch = |bad: bool| -> Vec<(String, Bytes)> {
        (0..5u32)
            .map(|i| {
                let name = if bad && i == 3 {
                    "o3-bad".to_string()
                } else {
                    format!("o{i}")
                };
                (name, Bytes::from(counters(i, (1 << 20) + 4)))
            })
            .collect()
    };
    for concurrency in [1, 4] {
        let picky = Arc::new(Picky {
            concurrency,
            ..Picky::default()
        });
        let z = ZstdBackend::new(
            picky.clone(),
            ZstdOptions {
                threads: 2,
                ..ZstdOptions::default()
            },
        );
        z.put_many(whole(batch(false))).unwrap();
        for (n, d) in batch(false) {
            assert_eq!(z.get(&n).unwrap(), d, "{n}");
        }
        assert_eq!(counter(&z, "zstd.objects_compressed"), 5);
        // Store-at-once: one inner put_many; one at a time: a put each.
        let batches = picky.batches.load(Relaxed);
        assert_eq!(batches, usize::from(concurrency > 1), "{concurrency}");
        assert_eq!(picky.puts.load(Relaxed), 5);
        // A refused object fails the batch, naming it; nothing more is counted.
        let msg = z.put_many(whole(batch(true))).unwrap_err().to_string();
        assert!(msg.contains("o3-bad refused"), "{msg}");
        assert_eq!(counter(&z, "zstd.objects_compressed"), 5);
    }
}

#[test]
fn put_parts_compresses_the_parts_as_one_object_without_joining_them() {
    let whole = counters(11, 20 * FRAME + 77);
    let cuts: [&[usize]; 4] = [
        &[],                                       // one part
        &[FRAME, 2 * FRAME, 10 * FRAME],           // on frame boundaries
        &[5, FRAME + 3, FRAME + 3, 7 * FRAME - 1], // across frames, an empty part
        &[(1 << 20) + 4, 2 * ((1 << 20) + 4)],     // chest records of 1 MiB values
    ];
    let one_thread = MemoryBackend::new();
    for threads in [1, 3] {
        for (c, cut) in cuts.iter().enumerate() {
            let mut bounds = vec![0];
            bounds.extend(cut.iter().copied().filter(|&c| c <= whole.len()));
            bounds.push(whole.len());
            let parts: Vec<Bytes> = bounds
                .windows(2)
                .map(|w| Bytes::copy_from_slice(&whole[w[0]..w[1]]))
                .collect();
            let mem = MemoryBackend::new();
            let z = layer(&mem, threads, FRAME);
            z.put_parts("v", parts.clone()).unwrap();
            // The same bytes on any number of threads.
            let first = format!("c{c}");
            if threads == 1 {
                layer(&one_thread, 1, FRAME)
                    .put_parts(&first, parts)
                    .unwrap();
            }
            let stored = mem.get("v").unwrap();
            assert_eq!(stored, one_thread.get(&first).unwrap(), "{cut:?}");
            // Frames end at every part's end (parts under 4 KiB shared).
            let ends: Vec<usize> = index(&stored)
                .iter()
                .scan(0, |at, (plain, _)| {
                    *at += plain;
                    Some(*at)
                })
                .collect();
            for w in bounds.windows(2).filter(|w| w[1] - w[0] >= 4096) {
                assert!(ends.contains(&w[0]) || w[0] == 0, "{cut:?}: {w:?}");
                assert!(ends.contains(&w[1]), "{cut:?}: {w:?}");
            }
            assert!(index(&stored).iter().all(|&(plain, _)| plain <= FRAME));
            assert_eq!(z.get("v").unwrap(), whole);
            let r = 5 * FRAME as u64 - 9..whole.len() as u64 - 1;
            assert_eq!(
                z.get_range("v", r.clone()).unwrap(),
                whole[r.start as usize..r.end as usize]
            );
        }
    }
    // Noise in parts is stored raw, whole.
    let noisy: Vec<Bytes> = (0..4).map(|i| Bytes::from(noise(i, 300_000))).collect();
    let mem = MemoryBackend::new();
    let z = layer(&mem, 2, FRAME);
    z.put_parts("n", noisy.clone()).unwrap();
    assert!(!z.object_info("n").unwrap().compressed);
    assert_eq!(z.get("n").unwrap(), noisy.concat());
}
