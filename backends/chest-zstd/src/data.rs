//! The bytes of one object to encode: one buffer, or parts read as their
//! concatenation (from `put_parts`), without joining them first.

use std::borrow::Cow;
use std::ops::Range;

/// An object's bytes as a list of parts.
pub(crate) struct Data<'a> {
    parts: Vec<&'a [u8]>,
    /// Offset of each part in the object.
    starts: Vec<usize>,
    len: usize,
}

impl<'a> Data<'a> {
    /// One contiguous buffer.
    pub fn one(data: &'a [u8]) -> Self {
        Self {
            parts: vec![data],
            starts: vec![0],
            len: data.len(),
        }
    }

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
        assert!(Data::parts(Vec::new()).slice(0..0).is_empty());
    }
}
