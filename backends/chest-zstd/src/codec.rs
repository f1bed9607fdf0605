//! Compression and decompression of single frames with per-thread contexts,
//! and of an object's frames on several threads.

use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use zstd::bulk::{Compressor, Decompressor};
use zstd::zstd_safe;

use crate::pool;

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

/// Compresses `data` as one independent zstd frame into a new buffer of
/// exactly the compressed size.
pub(crate) fn compress_frame(data: &[u8], level: i32, checksum: bool) -> io::Result<Vec<u8>> {
    with_compressor(level, checksum, |c| {
        let mut out = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
        c.compress_to_buffer(data, &mut out)?;
        // Shrinks in place (no copy): the frame is later copied once, into
        // the object.
        out.shrink_to_fit();
        Ok(out)
    })
}

/// Decompresses one frame into `dst`, which must be exactly its content size.
pub(crate) fn decompress_frame(frame: &[u8], dst: &mut [u8]) -> Result<(), String> {
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

/// Decompresses consecutive frames into `out`, frame `i` filling the next
/// `lens[i]` bytes (`out.len()` is their sum), each frame straight into its
/// place. Frames are spread over up to `threads` threads (the calling thread
/// and helpers of the shared pool). An error names the first bad frame
/// (counted from `first`).
pub(crate) fn decompress_frames(
    frames: &[&[u8]],
    out: &mut [u8],
    lens: &[usize],
    first: usize,
    threads: usize,
) -> Result<(), String> {
    debug_assert_eq!(frames.len(), lens.len());
    debug_assert_eq!(out.len(), lens.iter().sum::<usize>());
    let mut dsts = Vec::with_capacity(lens.len());
    let mut rest = out;
    for &len in lens {
        let (dst, tail) = rest.split_at_mut(len);
        dsts.push(dst);
        rest = tail;
    }
    if threads <= 1 || frames.len() <= 1 {
        for (i, (frame, dst)) in frames.iter().zip(dsts).enumerate() {
            decompress_frame(frame, dst).map_err(|e| format!("frame {}: {e}", first + i))?;
        }
        return Ok(());
    }
    // Each destination is taken once, by the thread that decompresses it.
    let dsts: Vec<Mutex<&mut [u8]>> = dsts.into_iter().map(Mutex::new).collect();
    let failed = AtomicBool::new(false);
    let errors: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
    let job = |i: usize| {
        if failed.load(Ordering::Relaxed) {
            return;
        }
        let mut dst = dsts[i].lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = decompress_frame(frames[i], &mut dst) {
            failed.store(true, Ordering::Relaxed);
            errors
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((i, e));
        }
    };
    let ran = pool::run(frames.len(), threads, &job);
    let errors = errors.into_inner().unwrap_or_else(PoisonError::into_inner);
    if let Some((i, e)) = errors.into_iter().min_by_key(|(i, _)| *i) {
        return Err(format!("frame {}: {e}", first + i));
    }
    ran.map_err(|_| "a decompression thread panicked".to_string())
}
