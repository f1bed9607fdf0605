//! Compression and decompression of frames, on one thread or several.

use std::cell::RefCell;
use std::io;

use zstd::bulk::{Compressor, Decompressor};
use zstd::zstd_safe;

thread_local! {
    static COMPRESSOR: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's compressor, set to `level` and `checksum`.
fn with_compressor<R>(
    level: i32,
    checksum: bool,
    f: impl FnOnce(&mut Compressor<'static>) -> io::Result<R>,
) -> io::Result<R> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let mut c = match slot.take() {
            Some(c) => c,
            None => Compressor::new(level)?,
        };
        c.set_compression_level(level)?;
        c.include_checksum(checksum)?;
        let result = f(&mut c);
        *slot = Some(c);
        result
    })
}

/// Runs `f` with this thread's decompressor.
fn with_decompressor<R>(f: impl FnOnce(&mut Decompressor<'static>) -> R) -> io::Result<R> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let mut d = match slot.take() {
            Some(d) => d,
            None => Decompressor::new()?,
        };
        let result = f(&mut d);
        *slot = Some(d);
        Ok(result)
    })
}

/// Compressed size of `data` at `level`, without keeping the output.
pub(crate) fn compressed_len(data: &[u8], level: i32) -> io::Result<usize> {
    with_compressor(level, false, |c| {
        let mut scratch = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
        c.compress_to_buffer(data, &mut scratch)
    })
}

/// Compresses each of `frames` as an independent zstd frame, appended to
/// `out`; pushes each frame's compressed size to `sizes`.
pub(crate) fn compress_frames<'a>(
    frames: impl Iterator<Item = &'a [u8]>,
    level: i32,
    checksum: bool,
    out: &mut Vec<u8>,
    sizes: &mut Vec<u32>,
) -> io::Result<()> {
    with_compressor(level, checksum, |c| {
        for frame in frames {
            out.reserve(zstd_safe::compress_bound(frame.len()));
            let start = out.len();
            let mut cursor = io::Cursor::new(&mut *out);
            cursor.set_position(start as u64);
            let n = c.compress_to_buffer(frame, &mut cursor)?;
            let n =
                u32::try_from(n).map_err(|_| io::Error::other("compressed frame over 4 GiB"))?;
            sizes.push(n);
        }
        Ok(())
    })
}

/// Compresses `data` in frames of `frame_size`, on up to `threads` threads,
/// appending the frames to `out`. Returns each frame's compressed size.
pub(crate) fn compress_parallel(
    data: &[u8],
    frame_size: usize,
    level: i32,
    checksum: bool,
    threads: usize,
    out: &mut Vec<u8>,
) -> io::Result<Vec<u32>> {
    let count = data.len().div_ceil(frame_size);
    let mut sizes = Vec::with_capacity(count);
    let groups = threads.clamp(1, count.max(1));
    if groups == 1 {
        compress_frames(data.chunks(frame_size), level, checksum, out, &mut sizes)?;
        return Ok(sizes);
    }
    let per_group = count.div_ceil(groups) * frame_size;
    let results: Vec<io::Result<(Vec<u8>, Vec<u32>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = data
            .chunks(per_group)
            .map(|part| {
                s.spawn(move || {
                    let mut bytes = Vec::new();
                    let mut sizes = Vec::new();
                    compress_frames(
                        part.chunks(frame_size),
                        level,
                        checksum,
                        &mut bytes,
                        &mut sizes,
                    )
                    .map(|()| (bytes, sizes))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a compression thread panicked")))
            })
            .collect()
    });
    let mut parts = Vec::with_capacity(results.len());
    for r in results {
        parts.push(r?);
    }
    out.reserve(parts.iter().map(|(b, _)| b.len()).sum());
    for (bytes, part_sizes) in parts {
        out.extend_from_slice(&bytes);
        sizes.extend_from_slice(&part_sizes);
    }
    Ok(sizes)
}

/// Decompresses one frame into `dst`, which must be exactly its content size.
fn decompress_frame(frame: &[u8], dst: &mut [u8]) -> Result<(), String> {
    match zstd_safe::get_frame_content_size(frame) {
        Ok(Some(n)) if n == dst.len() as u64 => {}
        Ok(Some(n)) => return Err(format!("holds {n} bytes, the index says {}", dst.len())),
        Ok(None) => return Err("has no content size".into()),
        Err(_) => return Err("is not a zstd frame".into()),
    }
    let n = with_decompressor(|d| d.decompress_to_buffer(frame, dst))
        .and_then(|r| r)
        .map_err(|e| e.to_string())?;
    if n != dst.len() {
        return Err(format!("decompressed to {n} bytes, expected {}", dst.len()));
    }
    Ok(())
}

/// Decompresses consecutive frames into `out`, frame `i` filling
/// `out[i * frame_size..]` (the last frame may be shorter). Uses up to
/// `threads` threads. Errors name the frame (counted from `first`).
pub(crate) fn decompress_frames(
    frames: &[&[u8]],
    out: &mut [u8],
    frame_size: usize,
    first: usize,
    threads: usize,
) -> Result<(), String> {
    let run = |frames: &[&[u8]], out: &mut [u8], first: usize| -> Result<(), String> {
        for (i, (frame, dst)) in frames.iter().zip(out.chunks_mut(frame_size)).enumerate() {
            decompress_frame(frame, dst).map_err(|e| format!("frame {}: {e}", first + i))?;
        }
        Ok(())
    };
    let groups = threads.clamp(1, frames.len().max(1));
    if groups == 1 {
        return run(frames, out, first);
    }
    let per_group = frames.len().div_ceil(groups);
    std::thread::scope(|s| {
        let handles: Vec<_> = frames
            .chunks(per_group)
            .zip(out.chunks_mut(per_group * frame_size))
            .enumerate()
            .map(|(g, (f, o))| s.spawn(move || run(f, o, first + g * per_group)))
            .collect();
        let mut result = Ok(());
        for h in handles {
            let r = h
                .join()
                .unwrap_or_else(|_| Err("a decompression thread panicked".into()));
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}
