//! Allocator tuning for candle's CPU backend.
//!
//! Candle allocates a fresh buffer for every op result and every gradient. With glibc's
//! defaults, buffers above the (dynamic) mmap threshold are mapped on allocation and
//! unmapped on free, so each one is page-faulted in again: on the training sizes of this
//! crate (8M-element activations) that was about a third of all CPU time (system time),
//! measured with `examples/bench_kernels`. `tune_malloc` raises the mmap threshold to its
//! maximum (32 MiB), stops heap trimming and pads heap growth, so freed buffers are reused.
//! Buffers above 32 MiB (a full patch matrix, as `conv::im2col` builds it, is 72 MB for a
//! 32→64 convolution over T·B = 320 images of 14×14) would still be mapped and unmapped every
//! step, so mmap is turned off altogether (`M_MMAP_MAX = 0`): every buffer comes from the heap
//! and is reused (glibc still maps when the heap cannot grow).
//!
//! `par_zeros` allocates a zeroed buffer and zeroes it on every core: a layer's buffers are
//! megabytes (the 72 MB patch matrix above), and a plain `vec![0.0; n]` zeroes them on one core
//! while the other waits.
//!
//! Invariant (`tune_malloc`): process-wide and idempotent; call it once at start-up, before
//! the threads start allocating. A no-op (returning `false`) outside Linux/glibc.

/// Makes glibc keep and reuse large freed buffers (see the module docs). Returns whether
/// every setting was accepted; `false` on other platforms.
pub fn tune_malloc() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MIB: libc::c_int = 1 << 20;
        // SAFETY: mallopt only adjusts glibc's allocator parameters; it takes the
        // allocator's own lock and is safe to call at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * MIB) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * MIB) == 1
                && libc::mallopt(libc::M_TOP_PAD, 256 * MIB) == 1
                && libc::mallopt(libc::M_MMAP_MAX, 0) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// `n` zeros, written on every core (rayon), for the large per-batch and per-step buffers
/// (patch matrices, layer outputs, spike maps). Same contents as `vec![0f32; n]`.
pub(crate) fn par_zeros(n: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let mut v = Vec::with_capacity(n);
    rayon::iter::repeat_n(0f32, n)
        .with_min_len(1 << 14)
        .collect_into_vec(&mut v);
    v
}

/// Scratch buffers kept between calls of a kernel, by key (the geometry and options that fix
/// their sizes and contents): a kernel that runs in many small parallel pieces leases one
/// set per piece ([`ScratchPool::lease`]) and gives it back when the piece ends, so pieces can
/// be small (rayon balances the cores' tails) without allocating and zeroing megabytes each.
/// A set comes back as it was left; the caller's key must cover whatever the kernel relies on
/// staying put (zero padding taps, a zero border). At most `cap` sets are kept, the oldest
/// dropped first.
pub(crate) struct ScratchPool<K, T> {
    cap: usize,
    items: std::sync::Mutex<Vec<(K, T)>>,
}

impl<K: PartialEq, T> ScratchPool<K, T> {
    /// An empty pool keeping at most `cap` sets.
    pub(crate) const fn new(cap: usize) -> Self {
        ScratchPool {
            cap,
            items: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// A set for `key`: a kept one (the most recently returned), or `make()`.
    pub(crate) fn lease(&self, key: K, make: impl FnOnce() -> T) -> Lease<'_, K, T> {
        let kept = self.items.lock().ok().and_then(|mut items| {
            let at = items.iter().rposition(|(k, _)| *k == key)?;
            Some(items.remove(at).1)
        });
        Lease {
            pool: self,
            key: Some(key),
            item: Some(kept.unwrap_or_else(make)),
        }
    }
}

/// A scratch set on loan from a [`ScratchPool`]; returned to it on drop.
pub(crate) struct Lease<'a, K: PartialEq, T> {
    pool: &'a ScratchPool<K, T>,
    key: Option<K>,
    item: Option<T>,
}

impl<K: PartialEq, T> std::ops::Deref for Lease<'_, K, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Only `drop` takes the item.
        self.item.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl<K: PartialEq, T> std::ops::DerefMut for Lease<'_, K, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.item.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl<K: PartialEq, T> Drop for Lease<'_, K, T> {
    fn drop(&mut self) {
        if let (Some(k), Some(t), Ok(mut items)) =
            (self.key.take(), self.item.take(), self.pool.items.lock())
        {
            if items.len() >= self.pool.cap {
                items.remove(0);
            }
            items.push((k, t));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ScratchPool;

    /// A returned set comes back, as it was left, only for its own key; at most `cap` sets
    /// are kept, the oldest dropped first.
    #[test]
    fn scratch_pool_reuses_by_key_and_keeps_at_most_cap() {
        let pool: ScratchPool<u8, Vec<f32>> = ScratchPool::new(2);
        {
            let mut a = pool.lease(1, || vec![0.0; 3]);
            a[0] = 7.0;
        }
        assert_eq!(*pool.lease(1, || vec![9.0; 3]), vec![7.0, 0.0, 0.0]);
        assert_eq!(*pool.lease(2, || vec![9.0; 3]), vec![9.0; 3]);
        // Three returned sets with a cap of two: the first (key 1) is dropped.
        drop((
            pool.lease(1, || vec![1.0]),
            pool.lease(2, || vec![2.0]),
            pool.lease(3, || vec![3.0]),
        ));
        assert_eq!(*pool.lease(1, || vec![0.5]), vec![0.5]);
        assert_eq!(*pool.lease(3, || vec![0.5]), vec![3.0]);
    }
}
