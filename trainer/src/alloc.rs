//! Allocator tuning for training's allocation pattern.
//!
//! Every step allocates and frees the same few hundred activation and gradient buffers (MBs
//! each). mimalloc by default hands freed memory back to the OS after 10 ms, so each step
//! page-faults all of it in again: `perf` showed 31 % of a MiniLM training step in the kernel's
//! page clearing. Keeping freed pages mapped (RSS stays at its peak, which a training pod must
//! budget for anyway) took the throughput bench from 4.2 to ~6 samples/s. Large OS pages
//! (`mi_option_large_os_pages`) gained nothing on top and made model loading 0.1 → 0.8 s (huge
//! pages zeroed up front), so they stay off. mimalloc reads its options from `MIMALLOC_*`
//! variables too; setting this one here makes the binary fast without relying on its
//! environment.

use libmimalloc_sys::{mi_option_set, mi_option_t};

/// `mi_option_purge_delay` in mimalloc v3's `mimalloc.h` (libmimalloc-sys names no constant for
/// it); -1 means "never purge".
const MI_OPTION_PURGE_DELAY: mi_option_t = 15;

/// Applies the option above. Call first thing in `main`, before the big allocations; the
/// binary must use `mimalloc::MiMalloc` as its global allocator for this to matter.
pub fn tune() {
    // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table; the option is
    // valid for mimalloc v3 (the version libmimalloc-sys builds by default).
    #[allow(unsafe_code)]
    unsafe {
        mi_option_set(MI_OPTION_PURGE_DELAY, -1);
    }
}
