//! The bytes of one object to encode: one buffer, or parts read as their
//! concatenation (from `put_parts`), without joining them first.

use std::borrow::Cow;
use std::ops::Range;

/// Consecutive parts shorter than this share frames; a part at least this
/// long starts a frame of its own, and so does whatever follows it.
pub(crate) const JOIN_BELOW: usize = 4 << 10;

/// An object's bytes as a list of parts.
pub(crate) struct Data<'a> {
    parts: Vec<&'a [u8]>,
    /// Offset of each part in the object.
    starts: Vec<usize>,
    len: usize,
}

impl<'a> Data<'a> {
    /// The concatenation of `parts`.
    pub fn parts(parts: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut data = Self {
            parts: Vec::new(),
            starts: Vec::new(),
            len: 0,
        };
        for p in parts {
            data.parts.push(p);
            data.starts.push(data.len);
            data.len += p.len();
        }
        data
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes `range` of the object: borrowed when they lie in one part,
    /// otherwise copied together (a frame across a part boundary).
    pub fn slice(&self, range: Range<usize>) -> Cow<'a, [u8]> {
        assert!(range.start <= range.end && range.end <= self.len);
        // The last part starting at or before range.start.
        let first = self.starts.partition_point(|&s| s <= range.start).max(1) - 1;
        let Some(&part) = self.parts.get(first) else {
            return Cow::Borrowed(&[]);
        };
        let at = range.start - self.starts[first];
        if range.end - self.starts[first] <= part.len() {
            return Cow::Borrowed(&part[at..at + range.len()]);
        }
        let mut out = Vec::with_capacity(range.len());
        for (p, &s) in self.parts[first..].iter().zip(&self.starts[first..]) {
            if s >= range.end {
                break;
            }
            let from = range.start.saturating_sub(s).min(p.len());
            let to = (range.end - s).min(p.len());
            out.extend_from_slice(&p[from..to]);
        }
        Cow::Owned(out)
    }

    /// Where the frames of the object begin and end, for frames of at most
    /// `frame_size` bytes: frame `i` is `bounds[i]..bounds[i + 1]`. A frame
    /// ends at the end of every part (a run of parts each under
    /// [`JOIN_BELOW`] bytes counts as one part) and every `frame_size` bytes
    /// within a part, so a part is read back by decompressing its own
    /// frames only. Depends on the parts alone, never on threads.
    pub fn frame_bounds(&self, frame_size: usize) -> Vec<usize> {
        let mut bounds = vec![0];
        let mut i = 0;
        while i < self.parts.len() {
            let start = self.starts[i];
            let mut end = start + self.parts[i].len();
            if self.parts[i].len() < JOIN_BELOW {
                while self.parts.get(i + 1).is_some_and(|p| p.len() < JOIN_BELOW) {
                    i += 1;
                    end += self.parts[i].len();
                }
            }
            i += 1;
            let mut at = start;
            while at < end {
                at = end.min(at + frame_size);
                bounds.push(at);
            }
        }
        bounds
    }

    /// Appends all the bytes to `out`.
    pub fn extend_into(&self, out: &mut Vec<u8>) {
        for p in &self.parts {
            out.extend_from_slice(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_across_parts() {
        let whole: Vec<u8> = (0..100u8).collect();
        let cuts = [0usize, 0, 7, 7, 30, 31, 99, 100, 100];
        let parts: Vec<&[u8]> = cuts.windows(2).map(|w| &whole[w[0]..w[1]]).collect();
        let data = Data::parts(parts);
        assert_eq!(data.len(), 100);
        for a in 0..=100 {
            for b in a..=100 {
                assert_eq!(&data.slice(a..b)[..], &whole[a..b], "{a}..{b}");
            }
        }
        assert!(matches!(data.slice(8..30), Cow::Borrowed(_)));
        assert!(matches!(data.slice(6..8), Cow::Owned(_)));
        let mut out = Vec::new();
        data.extend_into(&mut out);
        assert_eq!(out, whole);
        assert_eq!(Data::parts(Vec::new()).len(), 0);
        assert_eq!(Data::parts(Vec::new()).frame_bounds(10), vec![0]);
        assert_eq!(Data::parts([&[][..]]).frame_bounds(10), vec![0]);
        assert!(Data::parts(Vec::new()).slice(0..0).is_empty());
    }

    #[test]
    fn frames_end_at_part_ends() {
        let big = vec![7u8; 3 * JOIN_BELOW];
        let crc = [1u8; 4];
        let f = JOIN_BELOW;
        let b = |parts: &[&[u8]]| Data::parts(parts.iter().copied()).frame_bounds(f);
        assert_eq!(
            Data::parts([&big[..]]).frame_bounds(f),
            vec![0, f, 2 * f, 3 * f]
        );
        assert_eq!(Data::parts([&big[..10]]).frame_bounds(f), vec![0, 10]);
        // Values and their checksums: frames end at every part.
        let v = 3 * f;
        assert_eq!(
            b(&[&big, &crc, &big, &crc]),
            vec![
                0,
                f,
                2 * f,
                v,
                v + 4,
                v + 4 + f,
                v + 4 + 2 * f,
                2 * v + 4,
                2 * v + 8
            ]
        );
        // A value that is not a multiple of the frame size.
        assert_eq!(
            b(&[&big[..f + 1], &crc, &big[..5000]]),
            vec![0, f, f + 1, f + 5, f + 5 + f, f + 5 + 5000]
        );
        // Small parts share frames (up to the frame size); empty parts vanish.
        assert_eq!(
            b(&[&crc, &crc, &[], &crc, &big]),
            vec![0, 12, 12 + f, 12 + 2 * f, 12 + v]
        );
        let small = [0u8; 3000];
        assert_eq!(b(&[&small, &small, &small]), vec![0, f, 2 * f, 9000]);
        assert_eq!(b(&[&[], &[]]), vec![0]);
    }
}
