//! Writing objects: each compressed in frames (in parallel for large ones,
//! a batch's frames shared among the threads), stored raw when it does not
//! compress, and assembled with its header and frame index.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use chest_core::BackendResult;

use crate::backend::{lock, ZstdBackend};
use crate::codec;
use crate::data::Data;
use crate::format;
use crate::pool;

/// Objects at least this large whose first frame does not shrink are tested
/// on samples before their other frames are compressed.
const SAMPLE_FROM: usize = 256 << 10;
/// Size of each sample window, and how many are taken.
const SAMPLE_WINDOW: usize = 32 << 10;
const SAMPLE_WINDOWS: usize = 4;

/// One object of a batch being encoded: its frames as they are compressed.
struct Plan<'a> {
    name: &'a str,
    data: Data<'a>,
    /// Frame `f` holds `data[bounds[f]..bounds[f + 1]]`.
    bounds: Vec<usize>,
    /// Store it raw (nothing to compress, or it does not compress).
    raw: AtomicBool,
    /// Jobs of this object not yet done.
    remaining: AtomicUsize,
    frames: Vec<Mutex<Option<std::io::Result<Vec<u8>>>>>,
    /// Set once the object is assembled: the object, or `None` once given
    /// to the sink.
    done: Mutex<Option<BackendResult<Option<Encoded>>>>,
}

/// Where [`ZstdBackend::encode_batch`] hands each object (by its index in
/// the batch) as soon as it is encoded.
type Sink<'a> = &'a (dyn Fn(usize, Encoded) -> BackendResult<()> + Sync);

/// The result of encoding one object, for the counters.
pub(crate) struct Encoded {
    pub(crate) bytes: Bytes,
    pub(crate) compressed: bool,
}

impl ZstdBackend {
    /// Turns `data` into the stored form: compressed frames, or raw.
    pub(crate) fn encode_data(&self, name: &str, data: Data<'_>) -> BackendResult<Encoded> {
        let mut encoded = self.encode_batch(vec![(name, data)], None)?;
        Ok(encoded.pop().expect("one object in, one out"))
    }

    /// Encodes several objects. Their frames, all together, are compressed
    /// on up to [`ZstdOptions::threads`](crate::ZstdOptions::threads) threads (each thread takes the next
    /// frame), each into its own buffer; the thread that finishes an
    /// object's last frame assembles the object (one copy of the compressed
    /// bytes) and, with a `sink`, hands it over there and then — so writing
    /// one object overlaps compressing the next. Returns the objects not
    /// given to a sink (all of them without one), in order; the first error
    /// (in object order) fails the whole batch.
    ///
    /// Raw or compressed: an object is stored raw if compressing all of it
    /// leaves more than `max_ratio` of its size. A large object whose first
    /// frame does not shrink enough is also tested on a few samples at a
    /// fast level; if they do not shrink either, its other frames are not
    /// compressed (those already started are dropped) and it is stored raw.
    pub(crate) fn encode_batch<'a>(
        &self,
        objects: Vec<(&'a str, Data<'a>)>,
        sink: Option<Sink<'_>>,
    ) -> BackendResult<Vec<Encoded>> {
        let (level, checksum, max_ratio) =
            (self.opts.level, self.opts.checksum, self.opts.max_ratio);
        let mut plans = Vec::with_capacity(objects.len());
        // (object, frame); an object stored raw without trying has one job
        // with frame `usize::MAX`.
        let mut jobs: Vec<(usize, usize)> = Vec::new();
        let mut compressed_bytes = 0usize;
        for (o, (name, data)) in objects.into_iter().enumerate() {
            let len = data.len();
            let bounds = if max_ratio <= 0.0 {
                vec![0]
            } else {
                data.frame_bounds(self.opts.frame_size)
            };
            let count = bounds.len() - 1;
            if u32::try_from(count).is_err() {
                return Err(self.other(
                    format!("object {name:?} ({len} bytes) needs more than 2^32 frames; raise the frame size"),
                    None,
                ));
            }
            if count == 0 {
                jobs.push((o, usize::MAX));
            } else {
                jobs.extend((0..count).map(|f| (o, f)));
                compressed_bytes += len;
            }
            plans.push(Plan {
                name,
                data,
                bounds,
                raw: AtomicBool::new(count == 0),
                remaining: AtomicUsize::new(count.max(1)),
                frames: (0..count).map(|_| Mutex::new(None)).collect(),
                done: Mutex::new(None),
            });
        }
        let failed = AtomicBool::new(false);
        let job = |j: usize| {
            let (o, f) = jobs[j];
            let plan = &plans[o];
            if f != usize::MAX
                && !plan.raw.load(Ordering::Relaxed)
                && !failed.load(Ordering::Relaxed)
            {
                let part = plan.data.slice(plan.bounds[f]..plan.bounds[f + 1]);
                let mut result = codec::compress_frame(&part, level, checksum);
                match &result {
                    Ok(frame)
                        if f == 0
                            && plan.data.len() >= SAMPLE_FROM
                            && frame.len() as f64 > max_ratio * part.len() as f64 =>
                    {
                        match self.looks_incompressible(&plan.data) {
                            Ok(true) => plan.raw.store(true, Ordering::Relaxed),
                            Ok(false) => {}
                            Err(e) => result = Err(e),
                        }
                    }
                    _ => {}
                }
                *lock(&plan.frames[f]) = Some(result);
            }
            if plan.remaining.fetch_sub(1, Ordering::AcqRel) == 1 && !failed.load(Ordering::Relaxed)
            {
                // This thread finished the object's last frame.
                let finished = self.assemble(plan).and_then(|encoded| match sink {
                    Some(sink) => sink(o, encoded).map(|()| None),
                    None => Ok(Some(encoded)),
                });
                if finished.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                *lock(&plan.done) = Some(finished);
            }
        };
        let threads = self.threads_for(compressed_bytes);
        pool::run(jobs.len(), threads, &job)
            .map_err(|_| self.other("a compression thread panicked".into(), None))?;
        let mut out = Vec::with_capacity(plans.len());
        let mut unfinished = None;
        for plan in plans {
            match plan
                .done
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner)
            {
                Some(Ok(Some(encoded))) => out.push(encoded),
                Some(Ok(None)) => {}
                Some(Err(e)) => return Err(e),
                None => unfinished = unfinished.or(Some(plan.name)),
            }
        }
        match unfinished {
            // Skipped after another object's error, which is returned above.
            Some(name) => Err(self.other(format!("object {name:?} was not encoded"), None)),
            None => Ok(out),
        }
    }

    /// The stored form of an object whose frames are all compressed (or
    /// which is to be stored raw), taking the frames out of `plan`.
    fn assemble(&self, plan: &Plan<'_>) -> BackendResult<Encoded> {
        let data = &plan.data;
        if plan.raw.load(Ordering::Relaxed) {
            return Ok(self.encode_raw(data));
        }
        let mut frames = Vec::with_capacity(plan.frames.len());
        for slot in &plan.frames {
            match lock(slot).take() {
                Some(Ok(frame)) => frames.push(frame),
                Some(Err(e)) => {
                    return Err(self.other(
                        format!(
                            "cannot compress object {:?} ({} bytes): {e}",
                            plan.name,
                            data.len()
                        ),
                        Some(Box::new(e)),
                    ))
                }
                None => unreachable!("an object is assembled once all its frames are done"),
            }
        }
        let count = frames.len();
        let index_len = format::FRAMES_FIXED_LEN + 8 * count;
        let stored = index_len + frames.iter().map(Vec::len).sum::<usize>();
        // A frame is at most a little larger than its data (≤ 1 GiB), so its
        // size fits the index's u32.
        if stored as f64 > self.opts.max_ratio * (data.len() + format::BASE_LEN) as f64
            || frames.iter().any(|f| u32::try_from(f.len()).is_err())
        {
            return Ok(self.encode_raw(data));
        }
        // Frames hold at most the frame size (≤ 1 GiB), so both sizes fit.
        let sizes: Vec<(u32, u32)> = frames
            .iter()
            .zip(plan.bounds.windows(2))
            .map(|(f, b)| ((b[1] - b[0]) as u32, f.len() as u32))
            .collect();
        let mut out = Vec::with_capacity(stored);
        format::write_frames_header(
            &mut out,
            data.len() as u64,
            self.opts.frame_size as u32,
            &sizes,
        );
        debug_assert_eq!(out.len(), index_len);
        for frame in frames {
            out.extend_from_slice(&frame);
        }
        Ok(Encoded {
            bytes: Bytes::from(out),
            compressed: true,
        })
    }

    fn encode_raw(&self, data: &Data<'_>) -> Encoded {
        let mut out = Vec::with_capacity(format::BASE_LEN + data.len());
        format::write_raw_header(&mut out, data.len() as u64);
        data.extend_into(&mut out);
        Encoded {
            bytes: Bytes::from(out),
            compressed: false,
        }
    }

    /// A quick look before compressing a large object: compresses a few
    /// windows spread over it at a fast level; if they do not shrink enough,
    /// the object is stored raw without compressing the rest.
    fn looks_incompressible(&self, data: &Data<'_>) -> std::io::Result<bool> {
        if data.len() < SAMPLE_FROM {
            return Ok(false);
        }
        let step = (data.len() - SAMPLE_WINDOW) / (SAMPLE_WINDOWS - 1);
        let level = self.opts.level.min(1);
        let mut packed = 0usize;
        for i in 0..SAMPLE_WINDOWS {
            let start = i * step;
            packed += codec::compressed_len(&data.slice(start..start + SAMPLE_WINDOW), level)?;
        }
        Ok(packed as f64 > self.opts.max_ratio * (SAMPLE_WINDOW * SAMPLE_WINDOWS) as f64)
    }
}
