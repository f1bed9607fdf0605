//! [`Weigh`]: how many bytes of memory a value holds, for the memory budget.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::mem::size_of;
use std::sync::Arc;

/// The memory a value holds, in bytes: its own size plus what it owns on the
/// heap. The chest's memory budget is a sum of these weights.
///
/// Implemented for the common types; implement it for your own, or give the
/// builder a closure with [`ChestBuilder::weigher`](crate::ChestBuilder::weigher).
///
/// ```
/// use chest_core::Weigh;
/// assert_eq!(vec![0f64; 1000].weigh(), 24 + 8000);
/// assert_eq!(String::from("hello").weigh(), 24 + 5);
/// assert!(vec![String::from("ab"); 10].weigh() >= 10 * 26);
/// ```
pub trait Weigh {
    /// The bytes this value holds (inline and on the heap).
    fn weigh(&self) -> usize;

    /// The heap bytes a slice of these holds, beyond `size_of_val(slice)`.
    /// Plain-data types return 0, so weighing a `Vec<f64>` is O(1).
    #[doc(hidden)]
    fn heap_of_slice(slice: &[Self]) -> usize
    where
        Self: Sized,
    {
        slice
            .iter()
            .map(|x| x.weigh().saturating_sub(size_of::<Self>()))
            .sum()
    }
}

macro_rules! plain {
    ($($t:ty),*) => {$(
        impl Weigh for $t {
            #[inline]
            fn weigh(&self) -> usize { size_of::<$t>() }
            #[inline]
            fn heap_of_slice(_: &[Self]) -> usize { 0 }
        }
    )*};
}
plain!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    ()
);

impl Weigh for String {
    fn weigh(&self) -> usize {
        size_of::<String>() + self.capacity()
    }
}

impl Weigh for str {
    fn weigh(&self) -> usize {
        self.len()
    }
}

impl<T: Weigh> Weigh for Vec<T> {
    fn weigh(&self) -> usize {
        size_of::<Vec<T>>() + self.capacity() * size_of::<T>() + T::heap_of_slice(self)
    }
}

impl<T: Weigh> Weigh for VecDeque<T> {
    fn weigh(&self) -> usize {
        let (a, b) = self.as_slices();
        size_of::<VecDeque<T>>()
            + self.capacity() * size_of::<T>()
            + T::heap_of_slice(a)
            + T::heap_of_slice(b)
    }
}

impl<T: Weigh> Weigh for [T] {
    fn weigh(&self) -> usize {
        std::mem::size_of_val(self) + T::heap_of_slice(self)
    }
}

impl<T: Weigh, const N: usize> Weigh for [T; N] {
    fn weigh(&self) -> usize {
        size_of::<[T; N]>() + T::heap_of_slice(self)
    }
}

impl<T: Weigh + ?Sized> Weigh for Box<T> {
    fn weigh(&self) -> usize {
        size_of::<Box<T>>() + (**self).weigh()
    }
}

impl<T: Weigh + ?Sized> Weigh for Arc<T> {
    fn weigh(&self) -> usize {
        size_of::<Arc<T>>() + 2 * size_of::<usize>() + (**self).weigh()
    }
}

impl<T: Weigh> Weigh for Option<T> {
    fn weigh(&self) -> usize {
        size_of::<Option<T>>()
            + self
                .as_ref()
                .map_or(0, |v| v.weigh().saturating_sub(size_of::<T>()))
    }
}

impl Weigh for bytes::Bytes {
    fn weigh(&self) -> usize {
        size_of::<bytes::Bytes>() + self.len()
    }
}

impl Weigh for bytes::BytesMut {
    fn weigh(&self) -> usize {
        size_of::<bytes::BytesMut>() + self.capacity()
    }
}

impl<K: Weigh, V: Weigh, S> Weigh for HashMap<K, V, S> {
    fn weigh(&self) -> usize {
        // hashbrown: one control byte per bucket, buckets ≈ capacity * 8/7
        let buckets = self.capacity() * 8 / 7;
        size_of::<Self>()
            + buckets * (size_of::<(K, V)>() + 1)
            + self
                .iter()
                .map(|(k, v)| {
                    k.weigh().saturating_sub(size_of::<K>())
                        + v.weigh().saturating_sub(size_of::<V>())
                })
                .sum::<usize>()
    }
}

impl<K: Weigh, V: Weigh> Weigh for BTreeMap<K, V> {
    fn weigh(&self) -> usize {
        // B-tree nodes hold up to 11 entries; count ~1.5x the entries for slack
        size_of::<Self>()
            + self
                .iter()
                .map(|(k, v)| (k.weigh() + v.weigh()) * 3 / 2)
                .sum::<usize>()
    }
}

macro_rules! tuple {
    ($($name:ident)+) => {
        impl<$($name: Weigh),+> Weigh for ($($name,)+) {
            #[allow(non_snake_case)]
            fn weigh(&self) -> usize {
                let ($($name,)+) = self;
                size_of::<Self>() $(+ $name.weigh().saturating_sub(size_of::<$name>()))+
            }
        }
    };
}
tuple!(A);
tuple!(A B);
tuple!(A B C);
tuple!(A B C D);
tuple!(A B C D E);
tuple!(A B C D E F);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_vectors_are_exact() {
        let v: Vec<u32> = Vec::with_capacity(100);
        assert_eq!(v.weigh(), 24 + 400);
        let b: Box<[u8]> = vec![0u8; 1000].into_boxed_slice();
        assert_eq!(b.weigh(), 16 + 1000);
    }

    #[test]
    fn nested_values_count_their_heap() {
        let v = vec![String::from("abcd"); 3];
        assert_eq!(v.weigh(), 24 + 3 * 24 + 3 * 4);
        let t = (1u64, String::from("xyz"), vec![1u8, 2]);
        assert_eq!(t.weigh(), size_of::<(u64, String, Vec<u8>)>() + 3 + 2);
        assert_eq!(Some(vec![0u16; 10]).weigh(), 24 + 20);
        assert_eq!(bytes::Bytes::from(vec![0u8; 50]).weigh(), 32 + 50);
    }
}
