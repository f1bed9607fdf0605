//! [`WriteBuffers`]: the buffers records are serialized into, kept after
//! their write for the next one.
//!
//! A large value is serialized into a buffer of its own size and a segment
//! into one of about `segment_bytes`; once the backend has written them they
//! are garbage. Allocating them anew for every write costs more than the
//! copy into them when they are large: the system allocator hands memory of
//! a few MiB back to the kernel on free and faults every page in again on
//! the next allocation (a 4 MiB buffer is 1,024 page faults). So the store
//! takes its buffers back once the backend no longer refers to them (the
//! `Bytes` it was given is unique again: a backend that keeps what it wrote,
//! such as `memory://`, keeps its buffers too) and hands them out again.
//!
//! The free list is bounded by bytes (the buffers' capacities): memory
//! beyond the budget of values, so the chest sets it to a small share of its
//! budget. When full, the smallest buffers go first, since a small buffer
//! serves fewer writes. No I/O here, and its lock is a leaf (held for a
//! push or a search of a few entries).

use std::sync::{Mutex, PoisonError};

use bytes::Bytes;

/// Most buffers kept, whatever their sizes.
const MAX_KEPT: usize = 64;

/// A bounded free list of write buffers (see the [module](self)).
#[derive(Debug, Default)]
pub(crate) struct WriteBuffers {
    /// Bytes of capacity the list may keep (0: keeps none).
    cap: usize,
    free: Mutex<Free>,
}

#[derive(Debug, Default)]
struct Free {
    /// Empty buffers, in no order.
    buffers: Vec<Vec<u8>>,
    /// Sum of their capacities.
    bytes: usize,
}

impl WriteBuffers {
    /// A free list keeping up to `cap` bytes of buffers.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            free: Mutex::default(),
        }
    }

    /// An empty buffer with room for at least `capacity` bytes: the
    /// smallest kept one that is large enough, else a new one.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        let best = free
            .buffers
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= capacity)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        match best {
            Some(i) => {
                let buf = free.buffers.swap_remove(i);
                free.bytes -= buf.capacity();
                buf
            }
            None => {
                drop(free);
                Vec::with_capacity(capacity)
            }
        }
    }

    /// Keeps `buf` for a later [`take`](Self::take), if there is room once
    /// smaller buffers make way; otherwise it is freed.
    pub fn give(&self, mut buf: Vec<u8>) {
        let size = buf.capacity();
        if size == 0 || size > self.cap {
            return;
        }
        buf.clear();
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        free.buffers.push(buf);
        free.bytes += size;
        while free.bytes > self.cap || free.buffers.len() > MAX_KEPT {
            let smallest = (0..free.buffers.len())
                .min_by_key(|&i| free.buffers[i].capacity())
                .expect("over the cap with no buffer");
            let gone = free.buffers.swap_remove(smallest);
            free.bytes -= gone.capacity();
            // Freed after the lock: a large free is a system call.
            drop(free);
            drop(gone);
            free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        }
        debug_assert_eq!(
            free.bytes,
            free.buffers.iter().map(Vec::capacity).sum::<usize>()
        );
    }

    /// Takes back the buffer behind `bytes` (made from a `Vec` with
    /// `Bytes::from`) if nothing else refers to it any more; else does
    /// nothing (the last owner frees it).
    pub fn reclaim(&self, bytes: Bytes) {
        if self.cap == 0 {
            return;
        }
        if let Ok(mut unique) = bytes.try_into_mut() {
            // Emptied first, so that taking the `Vec` out moves no byte.
            unique.clear();
            self.give(Vec::from(unique));
        }
    }

    /// Bytes of capacity kept now.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.free.lock().unwrap().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_handed_out_again() {
        let pool = WriteBuffers::new(1 << 20);
        let mut buf = pool.take(1000);
        assert!(buf.capacity() >= 1000);
        buf.extend_from_slice(&[7; 1000]);
        let ptr = buf.as_ptr();
        pool.give(buf);
        assert_eq!(pool.kept(), 1000);
        let again = pool.take(500);
        assert_eq!(again.as_ptr(), ptr, "the same allocation");
        assert!(again.is_empty(), "handed out empty");
        assert_eq!(pool.kept(), 0);
    }

    #[test]
    fn take_picks_the_smallest_buffer_that_is_large_enough() {
        let pool = WriteBuffers::new(1 << 20);
        for size in [100, 4000, 2000] {
            pool.give(Vec::with_capacity(size));
        }
        assert_eq!(pool.take(1500).capacity(), 2000);
        assert_eq!(
            pool.take(5000).capacity(),
            5000,
            "none large enough: a new one"
        );
        assert_eq!(pool.kept(), 4100, "the new one took nothing from the list");
    }

    #[test]
    fn the_list_keeps_to_its_cap_and_drops_the_smallest_first() {
        let pool = WriteBuffers::new(10_000);
        for size in [3000, 1000, 4000, 2000] {
            pool.give(Vec::with_capacity(size));
        }
        assert_eq!(pool.kept(), 10_000);
        pool.give(Vec::with_capacity(2500));
        // 12,500 > 10,000: the 1,000 and then the 2,000 make way.
        assert_eq!(pool.kept(), 9_500);
        assert_eq!(pool.take(900).capacity(), 2500);
        pool.give(Vec::with_capacity(20_000));
        assert_eq!(pool.kept(), 7_000, "a buffer above the cap is not kept");
        let none = WriteBuffers::new(0);
        none.give(Vec::with_capacity(10));
        assert_eq!(none.kept(), 0);
    }

    #[test]
    fn the_list_keeps_a_bounded_number_of_buffers() {
        let pool = WriteBuffers::new(1 << 30);
        for _ in 0..MAX_KEPT + 10 {
            pool.give(Vec::with_capacity(8));
        }
        assert_eq!(pool.kept(), MAX_KEPT * 8);
    }

    #[test]
    fn reclaim_takes_back_a_unique_buffer_without_moving_it() {
        let pool = WriteBuffers::new(1 << 20);
        let mut buf = pool.take(64 << 10);
        buf.resize(64 << 10, 1);
        let ptr = buf.as_ptr();
        let bytes = Bytes::from(buf);
        let written = bytes.clone(); // what a backend is given
        drop(written); // ... and drops after the write
        pool.reclaim(bytes);
        let again = pool.take(1);
        assert_eq!(again.as_ptr(), ptr);
        assert!(again.capacity() >= 64 << 10);
        // A buffer with room to spare (a record shorter than its estimate)
        // comes back whole too.
        let mut short = again;
        short.extend_from_slice(&[2; 100]);
        let ptr = short.as_ptr();
        let bytes = Bytes::from(short);
        drop(bytes.clone());
        pool.reclaim(bytes);
        let again = pool.take(64 << 10);
        assert_eq!(again.as_ptr(), ptr);
        assert!(again.is_empty());
    }

    #[test]
    fn reclaim_leaves_a_buffer_something_still_refers_to() {
        let pool = WriteBuffers::new(1 << 20);
        let bytes = Bytes::from(vec![5u8; 4096]);
        let kept_by_backend = bytes.clone(); // e.g. memory://
        pool.reclaim(bytes);
        assert_eq!(pool.kept(), 0);
        assert_eq!(
            &kept_by_backend[..],
            &[5u8; 4096][..],
            "its bytes untouched"
        );
        // A slice of a larger buffer is not unique either while the rest lives.
        let whole = Bytes::from(vec![1u8; 100]);
        let part = whole.slice(10..20);
        pool.reclaim(part);
        assert_eq!(pool.kept(), 0);
        assert_eq!(whole.len(), 100);
    }
}
