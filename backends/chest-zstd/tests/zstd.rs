//! The zstd layer's own behaviour: compression, raw storage, the header,
//! mismatch and corruption errors, URLs, counters and ranged reads.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use chest_core::registry::{open_backend, OpenOptions};
use chest_core::BackendExt;
use chest_core::{Backend, BackendError, BackendResult, Chest, MemoryBackend};
use chest_fs as _; // registers `file:`
use chest_zstd::{ZstdBackend, ZstdOptions, DEFAULT_FRAME_SIZE, MAGIC};
use proptest::prelude::*;

/// Random bytes: incompressible, reproducible.
use chest_core::testing::noise;

/// Text-like bytes that compress well but not trivially.
fn text(len: usize) -> Vec<u8> {
    let words = [
        "chest", "spill", "budget", "value", "object", "frame", "zstd", "index", "key", "the", "a",
        "of", "segment", "manifest", "backend",
    ];
    let mut out = Vec::with_capacity(len + 16);
    let mut x = 12345u64;
    let mut n = 0u64;
    while out.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.extend_from_slice(words[(x >> 33) as usize % words.len()].as_bytes());
        n += 1;
        out.extend_from_slice(if n.is_multiple_of(12) { b".\n" } else { b" " });
        if n.is_multiple_of(7) {
            out.extend_from_slice((x >> 40).to_string().as_bytes());
            out.push(b' ');
        }
    }
    out.truncate(len);
    out
}

fn zstd_over(mem: &MemoryBackend, opts: ZstdOptions) -> ZstdBackend {
    ZstdBackend::new(Arc::new(mem.clone()), opts)
}

fn forced(frame_size: usize) -> ZstdOptions {
    ZstdOptions {
        frame_size,
        max_ratio: f64::INFINITY,
        ..ZstdOptions::default()
    }
}

fn counter(b: &dyn Backend, name: &str) -> u64 {
    b.counters()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no counter {name}"))
}

/// A user's own backend: a memory store that counts the bytes it hands out
/// and reports them as a counter.
#[derive(Debug, Default)]
struct Spy {
    mem: MemoryBackend,
    read: AtomicU64,
    reads: AtomicU64,
}

impl Spy {
    fn note(&self, b: &Bytes) {
        self.read.fetch_add(b.len() as u64, Ordering::Relaxed);
        self.reads.fetch_add(1, Ordering::Relaxed);
    }
    fn take(&self) -> (u64, u64) {
        (
            self.read.swap(0, Ordering::Relaxed),
            self.reads.swap(0, Ordering::Relaxed),
        )
    }
}

impl Backend for Spy {
    fn location(&self) -> &str {
        "spy://"
    }
    fn put_opts(
        &self,
        name: &str,
        parts: Vec<Bytes>,
        opts: chest_core::PutOptions,
    ) -> BackendResult<Option<chest_core::ObjectVersion>> {
        self.mem.put_opts(name, parts, opts)
    }
    fn get_opts(
        &self,
        name: &str,
        opts: chest_core::GetOptions,
    ) -> BackendResult<chest_core::GetResult> {
        let r = self.mem.get_opts(name, opts)?;
        self.note(&r.data);
        Ok(r)
    }
    fn delete(&self, name: &str) -> BackendResult<()> {
        self.mem.delete(name)
    }
    fn list(&self, prefix: &str) -> BackendResult<Vec<String>> {
        self.mem.list(prefix)
    }
    fn sync(&self) -> BackendResult<()> {
        self.mem.sync()
    }
    fn counters(&self) -> Vec<(String, u64)> {
        vec![("spy.bytes_read".into(), self.read.load(Ordering::Relaxed))]
    }
}

/// A batch of objects of one part each, as `put_many` takes them.
fn whole(objects: Vec<(String, Bytes)>) -> Vec<(String, Vec<Bytes>)> {
    objects.into_iter().map(|(n, d)| (n, vec![d])).collect()
}

#[test]
fn compressible_data_shrinks() {
    let mem = MemoryBackend::new();
    let z = zstd_over(&mem, ZstdOptions::default());
    let data = text(1 << 20);
    z.put("t", data.clone().into()).unwrap();
    let stored = mem.stored_bytes();
    assert!(
        stored < data.len() as u64 / 3,
        "{stored} bytes stored for {}",
        data.len()
    );
    assert_eq!(&mem.get("t").unwrap()[..4], MAGIC);
    assert_eq!(z.get("t").unwrap(), data);
    let info = z.object_info("t").unwrap();
    assert!(info.compressed);
    assert_eq!(info.len, 1 << 20);
    assert_eq!(info.stored_len, stored);
    assert_eq!(info.frames, 4); // 1 MiB in 256 KiB frames
    assert_eq!(counter(&z, "zstd.bytes_in"), 1 << 20);
    assert_eq!(counter(&z, "zstd.bytes_out"), stored);
    assert_eq!(counter(&z, "zstd.objects_compressed"), 1);
    assert_eq!(counter(&z, "zstd.objects_raw"), 0);
}

#[test]
fn incompressible_data_is_stored_raw() {
    for len in [1usize, 10, 100, 5000, 300_000, 3 << 20] {
        let mem = MemoryBackend::new();
        let z = zstd_over(&mem, ZstdOptions::default());
        let data = noise(len as u64, len);
        z.put("n", data.clone().into()).unwrap();
        assert_eq!(mem.stored_bytes(), len as u64 + 16, "{len} bytes");
        assert_eq!(z.get("n").unwrap(), data);
        let info = z.object_info("n").unwrap();
        assert!(!info.compressed, "{len} bytes");
        assert_eq!((info.len, info.frames), (len as u64, 0));
        assert_eq!(counter(&z, "zstd.objects_raw"), 1);
        if len > 10 {
            let r = len as u64 / 3..len as u64 - 2;
            assert_eq!(
                z.get_range("n", r.clone()).unwrap(),
                data[r.start as usize..r.end as usize]
            );
        }
    }
}

#[test]
fn a_compressible_tail_is_not_missed() {
    // Noise at the start, long runs after: the sample spans the object.
    let mut data = noise(1, 200_000);
    data.extend(text(2 << 20));
    let mem = MemoryBackend::new();
    let z = zstd_over(&mem, ZstdOptions::default());
    z.put("mixed", data.clone().into()).unwrap();
    assert!(z.object_info("mixed").unwrap().compressed);
    assert!(mem.stored_bytes() < data.len() as u64 / 2);
    assert_eq!(z.get("mixed").unwrap(), data);
}

#[test]
fn empty_and_tiny_objects() {
    let mem = MemoryBackend::new();
    for opts in [ZstdOptions::default(), forced(1024)] {
        let z = zstd_over(&mem, opts);
        z.put("e", Bytes::new()).unwrap();
        assert_eq!(z.get("e").unwrap().len(), 0);
        assert_eq!(z.get_range("e", 0..0).unwrap().len(), 0);
        assert!(matches!(
            z.get_range("e", 0..1),
            Err(BackendError::RangeOutOfBounds { size: 0, .. })
        ));
        z.put("one", Bytes::from_static(b"x")).unwrap();
        assert_eq!(&z.get("one").unwrap()[..], b"x");
        assert_eq!(&z.get_range("one", 0..1).unwrap()[..], b"x");
    }
}

#[test]
fn raw_object_read_through_zstd_is_a_clear_error() {
    let mem = MemoryBackend::new();
    mem.put(
        "plain/obj",
        Bytes::from_static(b"written without the layer"),
    )
    .unwrap();
    mem.put("short", Bytes::from_static(b"ab")).unwrap();
    let z = zstd_over(&mem, ZstdOptions::default());
    for name in ["plain/obj", "short"] {
        let errors = [
            z.get(name).unwrap_err(),
            z.get_range(name, 0..1).unwrap_err(),
            z.object_info(name).unwrap_err(),
        ];
        for e in errors {
            assert!(matches!(e, BackendError::Other { .. }), "{e:?}");
            let msg = e.to_string();
            assert!(msg.contains(name), "{msg}");
            assert!(msg.contains("memory://"), "{msg}");
            assert!(msg.contains("not written through the zstd layer"), "{msg}");
            assert!(msg.contains("zstd+"), "{msg}");
        }
    }
    // A missing object stays NotFound.
    assert!(z.get("missing").unwrap_err().is_not_found());
    assert!(z.get_range("missing", 0..1).unwrap_err().is_not_found());
}

#[test]
fn zstd_objects_start_with_the_magic() {
    let mem = MemoryBackend::new();
    let z = zstd_over(&mem, ZstdOptions::default());
    z.put("c", text(10_000).into()).unwrap();
    z.put("r", noise(3, 10_000).into()).unwrap();
    z.put("e", Bytes::new()).unwrap();
    // Frames objects are format version 2; raw ones (incompressible or
    // empty), the same in both versions, stay version 1.
    for (name, version) in [("c", 2u8), ("r", 1), ("e", 1)] {
        let raw = mem.get(name).unwrap();
        assert!(chest_zstd::is_zstd_object(&raw), "{name}");
        assert_eq!(&raw[..4], b"CHZS");
        assert_eq!(raw[4], version, "{name}");
    }
}

#[test]
fn chest_written_through_zstd_and_opened_without_names_the_layer() {
    let url = "memory://zstd-mismatch-a";
    let c: Chest<u32, String> = Chest::builder()
        .memory_budget(1 << 10)
        .open(format!("zstd+{url}"))
        .unwrap();
    for i in 0..50 {
        c.insert(i, format!("value {i} ").repeat(30)).unwrap();
    }
    c.close().unwrap();
    let err = Chest::<u32, String>::builder().open(url).unwrap_err();
    assert!(err.to_string().contains("zstd+"), "{err}");
}

/// A failed open through the wrong layer must leave the chest as it was.
/// Needs a fix in chest-core: a chest whose open fails is dropped and its
/// `Drop` flushes an empty manifest over the one it could not read.
#[test]
fn a_mismatched_open_leaves_the_chest_intact() {
    let url = "memory://zstd-mismatch-c";
    let values = |i: u32| format!("value {i} ").repeat(30);
    let c: Chest<u32, String> = Chest::builder()
        .memory_budget(1 << 10)
        .open(format!("zstd+{url}"))
        .unwrap();
    for i in 0..50 {
        c.insert(i, values(i)).unwrap();
    }
    c.close().unwrap();
    assert!(Chest::<u32, String>::builder().open(url).is_err());
    let c: Chest<u32, String> = Chest::builder().open(format!("zstd+{url}")).unwrap();
    assert_eq!(c.len(), 50);
    assert_eq!(*c.get(&7).unwrap().unwrap(), values(7));
    c.close().unwrap();

    // The reverse: written plain, opened through zstd.
    let url = "memory://zstd-mismatch-d";
    let c: Chest<u32, String> = Chest::builder().memory_budget(1 << 10).open(url).unwrap();
    for i in 0..50 {
        c.insert(i, values(i)).unwrap();
    }
    c.close().unwrap();
    assert!(Chest::<u32, String>::builder()
        .open(format!("zstd+{url}"))
        .is_err());
    let c: Chest<u32, String> = Chest::builder().open(url).unwrap();
    assert_eq!(c.len(), 50);
    assert_eq!(*c.get(&7).unwrap().unwrap(), values(7));
}

#[test]
fn chest_written_plain_and_opened_through_zstd_fails_clearly() {
    let url = "memory://zstd-mismatch-b";
    let c: Chest<u32, String> = Chest::builder().memory_budget(1 << 10).open(url).unwrap();
    for i in 0..50 {
        c.insert(i, format!("value {i} ").repeat(30)).unwrap();
    }
    c.close().unwrap();
    let err = Chest::<u32, String>::builder()
        .open(format!("zstd+{url}"))
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("not written through the zstd layer"), "{msg}");
    assert!(msg.contains("manifest"), "{msg}");
}

/// A stored (incompressible) object whose header claims a length near
/// 2^64: an error naming the object, not an overflow.
#[test]
fn a_raw_object_claiming_an_impossible_length_is_corrupt() {
    let mem = MemoryBackend::new();
    let z = zstd_over(&mem, ZstdOptions::default());
    z.put("v", noise(1, 10_000).into()).unwrap();
    assert!(!z.object_info("v").unwrap().compressed, "stored as it is");
    let mut bad = mem.get("v").unwrap().to_vec();
    for len in [u64::MAX, u64::MAX - 15, 1 << 63] {
        // The data length is the header's bytes 8..16.
        bad[8..16].copy_from_slice(&len.to_le_bytes());
        mem.put("v", Bytes::from(bad.clone())).unwrap();
        let e = z.get("v").unwrap_err();
        assert!(matches!(e, BackendError::Corrupt { .. }), "{len}: {e:?}");
        assert!(e.to_string().contains("\"v\""), "{e}");
        let _ = z.object_info("v");
    }
}

#[test]
fn corrupted_objects_are_errors_not_panics() {
    let data = text(40_000);
    let mem = MemoryBackend::new();
    let z = zstd_over(&mem, forced(8 << 10));
    z.put("v", data.clone().into()).unwrap();
    let good = mem.get("v").unwrap();
    assert!(z.object_info("v").unwrap().compressed);
    // Every single-byte change is an error or, where it hits bits zstd does
    // not use (a few in entropy tables), the right data.
    let mut errors = 0;
    for at in 0..good.len() {
        for flip in [0x01u8, 0x80, 0xFF] {
            let mut bad = good.to_vec();
            bad[at] ^= flip;
            mem.put("v", bad.into()).unwrap();
            match z.get("v") {
                Ok(back) => assert_eq!(back, data, "byte {at} ^ {flip:#x} gave wrong data"),
                Err(e) => {
                    errors += 1;
                    assert!(e.to_string().contains("\"v\""), "{e}");
                }
            }
            if let Ok(back) = z.get_range("v", 9000..20_000) {
                assert_eq!(
                    back,
                    data[9000..20_000],
                    "byte {at} ^ {flip:#x}: wrong range"
                );
            }
        }
    }
    assert!(errors >= good.len() * 3 * 95 / 100, "only {errors} errors");
    // Every truncation is an error.
    for len in 0..good.len() {
        mem.put("v", good.slice(..len)).unwrap();
        let e = z.get("v").unwrap_err();
        if len < MAGIC.len() {
            // Too short to carry the magic: not a zstd-layer object at all.
            assert!(matches!(e, BackendError::Other { .. }), "{len}: {e:?}");
        } else {
            assert!(matches!(e, BackendError::Corrupt { .. }), "{len}: {e:?}");
        }
        // A range before the cut may still read (right); one after it cannot.
        if let Ok(back) = z.get_range("v", 30_000..30_010) {
            assert_eq!(back, data[30_000..30_010], "{len}");
        }
        assert!(z.get_range("v", 39_990..40_000).is_err(), "{len}");
    }
    // Extra bytes at the end are an error too.
    let mut long = good.to_vec();
    long.push(0);
    mem.put("v", long.into()).unwrap();
    assert!(z.get("v").unwrap_err().to_string().contains("corrupt"));
}

#[test]
fn damaged_frames_name_the_object_and_frame() {
    let data = text(100_000);
    let mem = MemoryBackend::new();
    let z = zstd_over(&mem, forced(16 << 10));
    z.put("dir/victim", data.into()).unwrap();
    let mut bad = mem.get("dir/victim").unwrap().to_vec();
    let n = bad.len();
    bad[n - 100] ^= 0x55; // inside the last frame
    mem.put("dir/victim", bad.into()).unwrap();
    let msg = z.get("dir/victim").unwrap_err().to_string();
    assert!(msg.contains("\"dir/victim\""), "{msg}");
    assert!(msg.contains("frame 6"), "{msg}");
    assert!(msg.contains("corrupt"), "{msg}");
    // Ranges that do not touch the damaged frame still read.
    assert_eq!(z.get_range("dir/victim", 0..1000).unwrap().len(), 1000);
}

#[test]
fn newer_format_versions_are_refused_by_name() {
    let mem = MemoryBackend::new();
    let z = zstd_over(&mem, ZstdOptions::default());
    z.put("v", text(1000).into()).unwrap();
    let mut bad = mem.get("v").unwrap().to_vec();
    assert_eq!(bad[4], chest_zstd::VERSION);
    bad[4] = 3;
    mem.put("v", bad.into()).unwrap();
    let msg = z.get("v").unwrap_err().to_string();
    assert!(
        msg.contains("format version 3") && msg.contains("newer"),
        "{msg}"
    );
}

/// Hex to bytes.
fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Objects written by chest-zstd 0.1 before version 2 (format version 1,
/// frames of one size): `put` of the 2600 bytes below with frames of 1 KiB,
/// and of 10 bytes of noise (stored raw). Users have data in this format.
const V1_FRAMES: &str = "43485a5301010000280a000000000000000000000004000003000000590000005c0000004b00000028b52ffd6400035d0200e063686573742d7a737464207631202162696472752c7b72756521773013000327000e044c0038103001e040c00480030113000e044c0038103001e040c004c081e4cc0400981488692a01deff9b6f28b52ffd640003750200e06573742d7a73746420763120636872752c7b727565217730216269641500c0800028801b02a0006e088002b821000ae0860028801b02a0006e088002b821000ae086001402e606004c4adc530956f9520928b52ffd642801ed01003402752c7b72756521773021626964727a7374642076312063686573742d73742d7a737464090004500036104001d8400005b081560605004c4a053a95fe6d9930";
const V1_RAW: &str = "43485a53010000000a000000000000008f13a2075ce144903bd6";

#[test]
fn version_1_objects_still_read() {
    let data: Vec<u8> = (0..2600u32)
        .map(|i| b"chest-zstd v1 "[(i % 14) as usize] ^ ((i / 97) as u8 & 1))
        .collect();
    let mem = MemoryBackend::new();
    mem.put("f", unhex(V1_FRAMES).into()).unwrap();
    mem.put("r", unhex(V1_RAW).into()).unwrap();
    for threads in [1, 2] {
        let z = zstd_over(
            &mem,
            ZstdOptions {
                threads,
                frame_size: 4096, // the reader's setting does not matter
                ..ZstdOptions::default()
            },
        );
        let info = z.object_info("f").unwrap();
        assert_eq!(
            (
                info.compressed,
                info.len,
                info.stored_len,
                info.frames,
                info.frame_size
            ),
            (true, 2600, 296, 3, 1024)
        );
        assert_eq!(z.get("f").unwrap(), data);
        for a in (0..=2600u64)
            .step_by(37)
            .chain([1023, 1024, 1025, 2047, 2048, 2599])
        {
            for b in (a..=2600)
                .step_by(53)
                .chain([a, 1024.max(a), 2048.max(a), 2600])
            {
                assert_eq!(
                    z.get_range("f", a..b).unwrap(),
                    data[a as usize..b as usize],
                    "{a}..{b}"
                );
            }
        }
        assert_eq!(
            z.get_many(vec![("f".into(), None), ("f".into(), Some(1000..1100))])
                .into_iter()
                .map(Result::unwrap)
                .collect::<Vec<_>>(),
            vec![
                Bytes::from(data.clone()),
                Bytes::copy_from_slice(&data[1000..1100])
            ]
        );
        assert_eq!(&z.get("r").unwrap()[..], &unhex(V1_RAW)[16..]);
        assert_eq!(&z.get_range("r", 3..7).unwrap()[..], &unhex(V1_RAW)[19..23]);
    }
    // Damaged version 1 headers are errors: a count that does not match.
    let mut bad = unhex(V1_FRAMES);
    bad[24] = 4;
    mem.put("f", bad.into()).unwrap();
    let z = zstd_over(&mem, ZstdOptions::default());
    assert!(matches!(z.get("f"), Err(BackendError::Corrupt { .. })));
    assert!(matches!(
        z.get_range("f", 0..10),
        Err(BackendError::Corrupt { .. })
    ));
}

/// The (uncompressed, compressed) size of every frame of a version 2 object.
fn index_v2(stored: &[u8]) -> Vec<(u64, u64)> {
    assert_eq!(stored[4], 2);
    let u32_at = |at: usize| u64::from(u32::from_le_bytes(stored[at..at + 4].try_into().unwrap()));
    (0..u32_at(24) as usize)
        .map(|i| (u32_at(28 + 8 * i), u32_at(32 + 8 * i)))
        .collect()
}

#[test]
fn packed_values_are_read_from_their_own_frames() {
    // A chest's segment of large values: [value][crc] records one after the
    // other, written as parts. Record k starts 4·k bytes past a multiple of
    // the frame size, yet its value fills its own frames.
    const V: usize = 1 << 20;
    let spy = Arc::new(Spy::default());
    let z = ZstdBackend::new(spy.clone(), ZstdOptions::default());
    let values: Vec<Vec<u8>> = (0..3)
        .map(|i| text(V + 1000 * i)[1000 * i..].to_vec())
        .collect();
    let mut parts = Vec::new();
    for v in &values {
        parts.push(Bytes::from(v.clone()));
        parts.push(Bytes::copy_from_slice(&(v.len() as u32).to_le_bytes()));
    }
    let whole: Vec<u8> = parts.concat();
    z.put_parts("seg", parts).unwrap();
    let stored = spy.mem.get("seg").unwrap();
    let index = index_v2(&stored);
    let f = DEFAULT_FRAME_SIZE as u64;
    let per_record = [f, f, f, f, 4];
    let plain: Vec<u64> = index.iter().map(|e| e.0).collect();
    assert_eq!(plain, per_record.repeat(3));
    assert_eq!(z.object_info("seg").unwrap().frames, 15);
    assert_eq!(z.get("seg").unwrap(), whole);
    let data_start = 28 + 8 * index.len() as u64;
    for k in 0..3 {
        let start = (k * (V + 4)) as u64;
        spy.take();
        // The value and its checksum, as a chest reads them.
        let r = start..start + V as u64 + 4;
        assert_eq!(
            z.get_range("seg", r.clone()).unwrap(),
            whole[r.start as usize..r.end as usize]
        );
        let (read, _) = spy.take();
        let frames: u64 = index[5 * k..5 * k + 5].iter().map(|e| e.1).sum();
        let frames_at = data_start + index[..5 * k].iter().map(|e| e.1).sum::<u64>();
        // The probe, then the record's frames beyond it.
        let expect = 16 * 1024 + (frames_at + frames).saturating_sub(16 * 1024).min(frames);
        assert_eq!(read, expect, "record {k}");
        // The value alone: its four frames.
        let r = start + 1..start + V as u64;
        assert_eq!(
            z.get_range("seg", r.clone()).unwrap(),
            whole[r.start as usize..r.end as usize]
        );
    }
}

#[test]
fn ranges_across_frame_boundaries() {
    let data = text(10_000);
    let mem = MemoryBackend::new();
    let z = zstd_over(&mem, forced(1024));
    z.put("r", data.clone().into()).unwrap();
    let info = z.object_info("r").unwrap();
    assert_eq!((info.frames, info.frame_size), (10, 1024));
    let ranges = [
        0..1024u64,
        1023..1025,
        1024..2048,
        1000..5000,
        0..10_000,
        9215..10_000,
        9216..10_000,
        9999..10_000,
        3072..3072,
        10_000..10_000,
    ];
    for r in ranges {
        assert_eq!(
            z.get_range("r", r.clone()).unwrap(),
            data[r.start as usize..r.end as usize],
            "range {r:?}"
        );
    }
    match z.get_range("r", 9_000..10_001) {
        Err(e @ BackendError::RangeOutOfBounds { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("10000 bytes") && msg.contains("zstd+memory://"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        z.get_range("r", Range { start: 20, end: 10 }),
        Err(BackendError::RangeOutOfBounds { .. })
    ));
}

#[test]
fn ranged_reads_only_fetch_the_frames_they_need() {
    let spy = Arc::new(Spy::default());
    let z = ZstdBackend::new(spy.clone(), ZstdOptions::default());
    let data = text(32 << 20);
    z.put("big", data.clone().into()).unwrap();
    let stored = spy.mem.stored_bytes();
    spy.take();
    let r = (20 << 20) + 5..(20 << 20) + 105;
    assert_eq!(
        z.get_range("big", r.clone()).unwrap(),
        data[r.start as usize..r.end as usize]
    );
    let in_counters = counter(&z, "spy.bytes_read");
    let (read, reads) = spy.take();
    assert_eq!(
        in_counters, read,
        "the counters include the inner backend's"
    );
    assert!(reads <= 2, "{reads} reads");
    assert!(
        read < 16 * 1024 + stored / 50,
        "{read} of {stored} stored bytes read for 100 bytes"
    );
    // A raw object reads only the range (after the probe).
    z.put("noise", noise(9, 4 << 20).into()).unwrap();
    spy.take();
    z.get_range("noise", 3_000_000..3_000_100).unwrap();
    let (read, _) = spy.take();
    assert_eq!(read, 16 * 1024 + 100);
}

#[test]
fn large_indexes_beyond_the_probe() {
    // 4 MiB in 1 KiB frames: a 16 KiB index, more than the first read.
    let data = text(4 << 20);
    let mem = MemoryBackend::new();
    let z = zstd_over(&mem, forced(1024));
    z.put("many", data.clone().into()).unwrap();
    assert_eq!(z.object_info("many").unwrap().frames, 4096);
    for r in [0..10u64, 4_000_000..4_000_300, (4 << 20) - 1..4 << 20] {
        assert_eq!(
            z.get_range("many", r.clone()).unwrap(),
            data[r.start as usize..r.end as usize]
        );
    }
    assert_eq!(z.get("many").unwrap(), data);
}

#[test]
fn threads_do_not_change_the_stored_bytes() {
    let data = Bytes::from(text(5 << 20));
    let one = MemoryBackend::new();
    let many = MemoryBackend::new();
    let opts = |threads| ZstdOptions {
        threads,
        ..ZstdOptions::default()
    };
    zstd_over(&one, opts(1)).put("x", data.clone()).unwrap();
    let z = zstd_over(&many, opts(4));
    z.put("x", data.clone()).unwrap();
    assert_eq!(one.get("x").unwrap(), many.get("x").unwrap());
    assert_eq!(z.get("x").unwrap(), data);
    assert_eq!(zstd_over(&many, opts(1)).get("x").unwrap(), data);
}

#[test]
fn levels_trade_size() {
    let data = Bytes::from(text(2 << 20));
    let size = |level| {
        let mem = MemoryBackend::new();
        let z = zstd_over(&mem, ZstdOptions::with_level(level));
        z.put("x", data.clone()).unwrap();
        assert_eq!(z.get("x").unwrap(), data);
        mem.stored_bytes()
    };
    let (fast, default, strong) = (size(-5), size(3), size(19));
    assert!(
        fast > default && default > strong,
        "{fast} {default} {strong}"
    );
}

#[test]
fn options_are_clamped() {
    let z = ZstdBackend::new(
        Arc::new(MemoryBackend::new()),
        ZstdOptions {
            level: 99,
            frame_size: 0,
            threads: 0,
            max_ratio: f64::NAN,
            checksum: false,
        },
    );
    assert_eq!(z.options().level, 22);
    assert_eq!(z.options().frame_size, chest_zstd::MIN_FRAME_SIZE);
    assert_eq!(z.options().threads, 1);
    z.put("a", text(5000).into()).unwrap();
    assert_eq!(z.get("a").unwrap(), text(5000));
}

#[test]
fn put_many_and_pass_through_operations() {
    let mem = MemoryBackend::new();
    let z = zstd_over(&mem, ZstdOptions::default());
    z.put_many(whole(vec![
        ("a/1".into(), text(5000).into()),
        ("a/2".into(), noise(1, 5000).into()),
        ("b".into(), Bytes::new()),
    ]))
    .unwrap();
    assert_eq!(z.list("a/").unwrap(), vec!["a/1", "a/2"]);
    assert_eq!(z.get("a/1").unwrap(), text(5000));
    assert_eq!(z.get("a/2").unwrap(), noise(1, 5000));
    assert_eq!(counter(&z, "zstd.bytes_in"), 10_000);
    assert_eq!(counter(&z, "zstd.bytes_out"), mem.stored_bytes());
    assert_eq!(counter(&z, "zstd.objects_compressed"), 1);
    assert_eq!(counter(&z, "zstd.objects_raw"), 2);
    z.delete("a/1").unwrap();
    z.delete("a/1").unwrap();
    assert!(z.get("a/1").unwrap_err().is_not_found());
    z.sync().unwrap();
    assert!(matches!(
        z.put("", Bytes::new()),
        Err(BackendError::InvalidName { .. })
    ));
    assert_eq!(z.location(), "zstd+memory://");
}

#[test]
fn put_many_of_large_objects_on_several_threads() {
    let mem = MemoryBackend::new();
    let z = zstd_over(
        &mem,
        ZstdOptions {
            threads: 3,
            ..ZstdOptions::default()
        },
    );
    let objects: Vec<(String, Bytes)> = (0..7)
        .map(|i| {
            let data = if i % 3 == 0 {
                noise(i, 400_000)
            } else {
                text(300_000 + i as usize)
            };
            (format!("big/{i}"), Bytes::from(data))
        })
        .collect();
    z.put_many(whole(objects.clone())).unwrap();
    for (name, data) in &objects {
        assert_eq!(&z.get(name).unwrap(), data, "{name}");
    }
    assert_eq!(counter(&z, "zstd.objects_raw"), 3);
    assert_eq!(counter(&z, "zstd.objects_compressed"), 4);
    assert_eq!(counter(&z, "zstd.bytes_out"), mem.stored_bytes());
    // A failing object fails the batch, naming it.
    let err = z
        .put_many(whole(vec![
            ("ok".into(), Bytes::from(text(2 << 20))),
            ("a//b".into(), Bytes::from(text(10))),
        ]))
        .unwrap_err();
    assert!(matches!(err, BackendError::InvalidName { .. }), "{err:?}");
}

#[test]
fn url_parameters() {
    let mem = || -> Arc<dyn Backend> { Arc::new(MemoryBackend::new()) };
    let parse = |q: &str| url::Url::parse(&format!("zstd+memory://{q}")).unwrap();
    let z = ZstdBackend::from_url(&parse("?level=7&frame_size=64k"), mem()).unwrap();
    assert_eq!((z.options().level, z.options().frame_size), (7, 64 << 10));
    let z = ZstdBackend::from_url(&parse("?level=-5&other=1"), mem()).unwrap();
    assert_eq!(z.options().level, -5);
    let z = ZstdBackend::from_url(&parse(""), mem()).unwrap();
    assert_eq!(z.options(), &ZstdOptions::default());
    for (q, word) in [
        ("?level=abc", "\"abc\""),
        ("?level=23", "\"23\""),
        ("?level=", "level"),
        ("?level=3&level=4", "twice"),
        ("?frame_size=12", "frame_size"),
        ("?frame_size=2g", "frame_size"),
    ] {
        let err = ZstdBackend::from_url(&parse(q), mem()).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, chest_core::Error::InvalidUrl { .. }),
            "{q}: {err:?}"
        );
        assert!(
            msg.contains(word) && msg.contains("zstd+memory://"),
            "{q}: {msg}"
        );
    }
}

#[test]
fn opened_by_url() {
    let opened = open_backend("zstd+memory://zstd-url?level=5", &OpenOptions::default()).unwrap();
    let b = opened.backend;
    assert_eq!(b.location(), "zstd+memory://zstd-url");
    b.put("x", text(10_000).into()).unwrap();
    assert!(counter(&*b, "zstd.bytes_out") < 5000);
    let raw = MemoryBackend::named("zstd-url");
    assert!(chest_zstd::is_zstd_object(&raw.get("x").unwrap()));
    let err =
        open_backend("zstd+memory://zstd-url?level=abc", &OpenOptions::default()).unwrap_err();
    assert!(err.to_string().contains("level"), "{err}");
}

#[test]
fn chest_over_zstd_file_url() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "zstd+{}?level=1",
        url::Url::from_directory_path(dir.path()).unwrap()
    );
    let values = |i: u32| format!("record {i}: {}", "lorem ipsum dolor ".repeat(100));
    let c: Chest<u32, String> = Chest::builder().memory_budget(16 << 10).open(&url).unwrap();
    for i in 0..500 {
        c.insert(i, values(i)).unwrap();
    }
    c.flush().unwrap();
    let stats = c.stats();
    c.close().unwrap();
    let on_disk: u64 = walk(dir.path());
    assert!(
        on_disk < 500 * 1800 / 10,
        "{on_disk} bytes on disk for 900 KB of values ({stats:?})"
    );
    let c: Chest<u32, String> = Chest::builder().memory_budget(16 << 10).open(&url).unwrap();
    assert_eq!(c.len(), 500);
    for i in (0..500).step_by(7) {
        assert_eq!(*c.get(&i).unwrap().unwrap(), values(i));
    }
}

fn walk(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                walk(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any data, any frame size, compressed or not: whole and ranged reads
    /// give back the bytes written.
    #[test]
    fn round_trips(
        data in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..20_000),
            proptest::collection::vec(0u8..4, 0..20_000),
            (0usize..60_000).prop_map(text),
        ],
        frame_size in 1024usize..8192,
        force in any::<bool>(),
        level in -3i32..8,
        ranges in proptest::collection::vec((any::<u16>(), any::<u16>()), 1..8),
    ) {
        let mem = MemoryBackend::new();
        let opts = ZstdOptions {
            level,
            frame_size,
            max_ratio: if force { f64::INFINITY } else { 0.95 },
            ..ZstdOptions::default()
        };
        let z = zstd_over(&mem, opts);
        z.put("p", data.clone().into()).unwrap();
        prop_assert_eq!(&z.get("p").unwrap()[..], &data[..]);
        let len = data.len() as u64;
        for (a, b) in ranges {
            let (a, b) = (u64::from(a) % (len + 1), u64::from(b) % (len + 1));
            let r = a.min(b)..a.max(b);
            prop_assert_eq!(&z.get_range("p", r.clone()).unwrap()[..], &data[r.start as usize..r.end as usize]);
        }
        prop_assert!(z.get_range("p", 0..len + 1).is_err());
    }

    /// Random damage to a stored object never panics and never gives wrong data.
    #[test]
    fn random_damage(
        len in 0usize..30_000,
        force in any::<bool>(),
        edits in proptest::collection::vec((any::<u32>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<u32>()),
    ) {
        let data = text(len);
        let mem = MemoryBackend::new();
        let z = zstd_over(&mem, ZstdOptions { max_ratio: if force { f64::INFINITY } else { 0.95 }, ..forced(2048) });
        z.put("d", data.clone().into()).unwrap();
        let mut bad = mem.get("d").unwrap().to_vec();
        for (at, x) in edits {
            let at = at as usize % bad.len();
            bad[at] ^= x;
        }
        if let Some(cut) = cut {
            bad.truncate(cut as usize % (bad.len() + 1));
        }
        mem.put("d", bad.into()).unwrap();
        if let Ok(back) = z.get("d") {
            // Only possible if the damage landed in raw data, which this
            // layer does not checksum (the chest's records carry a CRC).
            prop_assert_eq!(back.len(), data.len());
        }
        let _ = z.get_range("d", 0..(len as u64 / 2));
        let _ = z.object_info("d");
    }
}

/// A damaged compressed value reaches the chest's user as `Error::Corrupt`
/// naming the key, as a damaged plain value does.
#[test]
fn chest_reports_damaged_compressed_values_by_key() {
    let mem = MemoryBackend::new();
    let z: Arc<dyn Backend> = Arc::new(zstd_over(&mem, ZstdOptions::default()));
    let c: Chest<String, Vec<u8>> = chest_core::ChestBuilder::new()
        .open_backend(Arc::clone(&z))
        .unwrap();
    let value: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    c.insert("compressible-key".into(), value).unwrap();
    c.close().unwrap();
    let name = mem.list("data/").unwrap().remove(0);
    let mut raw = mem.get(&name).unwrap().to_vec();
    assert!(raw.len() < 500_000, "the value must have been compressed");
    let mid = raw.len() / 2;
    raw[mid] ^= 0xFF;
    mem.put(&name, raw.into()).unwrap();
    let c: Chest<String, Vec<u8>> = chest_core::ChestBuilder::new().open_backend(z).unwrap();
    let err = c.get("compressible-key").unwrap_err();
    assert!(matches!(err, chest_core::Error::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("compressible-key"), "{err}");
}
