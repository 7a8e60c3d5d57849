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
