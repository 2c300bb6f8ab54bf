//! A counting global allocator, so a fuzz run can fail an input that allocates without bound.
//!
//! A binary opts in with
//! `#[global_allocator] static A: pipeline_fuzz::alloc::CountingAlloc = pipeline_fuzz::alloc::CountingAlloc;`
//! (`fuzz-smoke` and every cargo-fuzz target do). [`measure`] then reports, for one call, the
//! peak of live heap bytes above what was live before it, the bytes allocated in total and the
//! number of allocations. The counters are per thread: a measure sees only the allocations of
//! the thread it runs on (a test harness's other threads, `fuzz-smoke`'s watchdog, do not count).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    // `const`-initialised and without a destructor: usable from inside the allocator (no lazy
    // initialisation, nothing allocated, readable during thread teardown).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static TOTAL: Cell<u64> = const { Cell::new(0) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting live and total bytes.
pub struct CountingAlloc;

fn grew(n: usize) {
    let live = LIVE.get().wrapping_add(n as isize);
    LIVE.set(live);
    PEAK.set(PEAK.get().max(live));
    TOTAL.set(TOTAL.get().wrapping_add(n as u64));
    COUNT.set(COUNT.get().wrapping_add(1));
}

/// A block freed on another thread than the one that allocated it makes this thread's count
/// lower, never wrong for the thread that measures.
fn shrank(n: usize) {
    LIVE.set(LIVE.get().wrapping_sub(n as isize));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged and only
// updates atomic counters on the side; no method allocates or unwinds.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; `new_size` is the caller's, unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as a new block then the old one freed: a moving realloc holds both for a
            // moment, so the peak is not under-estimated.
            grew(new_size);
            shrank(layout.size());
        }
        p
    }
}

/// What one call allocated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocStats {
    /// Highest live heap bytes during the call, above what was live when it started.
    pub peak: usize,
    /// Bytes allocated during the call (a growing realloc counts its new size).
    pub total: u64,
    /// Allocations during the call.
    pub count: u64,
}

/// Runs `f`, returning its result and what it allocated (all zero when [`CountingAlloc`] is not
/// the global allocator).
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, AllocStats) {
    let base = LIVE.get();
    PEAK.set(base);
    let total = TOTAL.get();
    let count = COUNT.get();
    let r = f();
    let stats = AllocStats {
        peak: usize::try_from(PEAK.get().saturating_sub(base)).unwrap_or(0),
        total: TOTAL.get().wrapping_sub(total),
        count: COUNT.get().wrapping_sub(count),
    };
    (r, stats)
}

/// True when [`CountingAlloc`] is this process's global allocator.
pub fn counting() -> bool {
    let (_, stats) = measure(|| std::hint::black_box(Box::new(0u64)));
    stats.count > 0
}

/// The most a single input may hold live: [`BASE_BYTES`] plus [`BYTES_PER_INPUT_BYTE`] per byte
/// of input (4.3 MB for the runners' largest input, 128 KiB). Every target copies at most a few
/// strings out of its input; anything above this is an allocation sized by a number inside the
/// input (a length prefix, a capacity hint, a count) rather than by the input itself.
pub fn bound(input_len: usize) -> usize {
    BASE_BYTES.saturating_add(input_len.saturating_mul(BYTES_PER_INPUT_BYTE))
}

/// The fixed part of [`bound`]: 256 KiB.
pub const BASE_BYTES: usize = 256 * 1024;

/// The per-byte part of [`bound`]. The targets' oracles hold several copies of the input's
/// strings at once (prost's reading, the consumer's, the error naming the value): the consumer
/// target peaks at about 14 bytes per input byte on a 70 kB symbol. An allocation sized by a
/// number in the input is far above this.
pub const BYTES_PER_INPUT_BYTE: usize = 32;
