//! Compaction's part in the store: copying live records out of
//! mostly-dead segments into new ones. Which records move, and pointing
//! their entries at the copies, is the flush's part (it holds the shards).

use super::{Loc, SegmentBuf, Store};
use crate::error::Error;

/// What became of the records [`Store::copy_records`] was asked to copy.
pub(crate) struct Copied {
    /// Each record's new location, in order: `None` if it could not be read
    /// (left where it is; a `get` reports it) or its new segment could not
    /// be written.
    pub locs: Vec<Option<Loc>>,
    /// Records that could not be read.
    pub unreadable: usize,
    /// Write failures.
    pub errors: Vec<Error>,
}

impl Store {
    /// Copies the records at `locs` (checksums checked on the way) into new
    /// segments of about `segment_bytes`. No lock is held while it reads or
    /// writes; the copies are live objects until their entries take them or
    /// they are released.
    pub fn copy_records(&self, locs: &[Loc], segment_bytes: usize) -> Copied {
        let mut out = Copied {
            locs: vec![None; locs.len()],
            unreadable: 0,
            errors: Vec::new(),
        };
        let mut seg = SegmentBuf::default();
        let mut members: Vec<usize> = Vec::new();
        for (i, &loc) in locs.iter().enumerate() {
            let Ok(bytes) = self.read(loc) else {
                out.unreadable += 1;
                continue;
            };
            let start = seg.begin();
            seg.bytes.extend_from_slice(bytes.value());
            seg.seal(start);
            members.push(i);
            let last = i + 1 == locs.len();
            if seg.bytes.len() >= segment_bytes || last {
                self.write_copies(std::mem::take(&mut seg), &mut members, &mut out);
            }
        }
        if !seg.is_empty() {
            self.write_copies(seg, &mut members, &mut out);
        }
        out
    }

    fn write_copies(&self, seg: SegmentBuf, members: &mut Vec<usize>, out: &mut Copied) {
        match self.write_segment_capped(seg, false) {
            Ok(new) => {
                for (i, loc) in members.drain(..).zip(new) {
                    out.locs[i] = Some(loc);
                }
            }
            Err(e) => {
                members.clear();
                out.errors.push(e);
            }
        }
    }
}
