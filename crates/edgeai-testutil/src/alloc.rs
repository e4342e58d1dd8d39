//! A counting global allocator: what a closure allocated on this thread (largest single
//! allocation, peak live bytes, net bytes kept) and the largest allocation of the process.
//!
//! A test binary installs it with
//! `#[global_allocator] static ALLOC: edgeai_testutil::alloc::Counting = edgeai_testutil::alloc::Counting;`
//! and then calls [`measure`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The counting allocator: forwards to [`System`] and keeps the counts.
#[derive(Debug, Clone, Copy)]
pub struct Counting;

static LARGEST_ANYWHERE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // `const`-initialised, no destructor: reading them never allocates, so the allocator can
    // use them without re-entering itself.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn on_alloc(size: usize) {
    LARGEST_ANYWHERE.fetch_max(size, Ordering::Relaxed);
    // `try_with`: the thread-locals may be gone while a thread shuts down.
    let _ = LIVE.try_with(|l| {
        let v = l.get() + size as isize;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
    let _ = LARGEST.try_with(|m| m.set(m.get().max(size)));
}

fn on_dealloc(size: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get() - size as isize));
}

// SAFETY: every call forwards to the system allocator with the caller's arguments unchanged;
// the bookkeeping touches one atomic and `const`-initialised thread-local cells (no
// allocation, no re-entrancy).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        on_dealloc(layout.size());
        // SAFETY: `ptr` was allocated by `System` with `layout` (we forward every allocation).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        on_dealloc(layout.size());
        on_alloc(new_size);
        // SAFETY: forwarded unchanged; `ptr`/`layout` come from `System` as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// What a closure allocated on this thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// The largest single allocation.
    pub largest: usize,
    /// The peak of live bytes above the level at the start.
    pub peak: usize,
    /// Bytes allocated and not freed by the end (negative: it freed more than it took).
    pub net: isize,
}

/// Runs `f` and reports what it allocated on this thread (zeros unless [`Counting`] is the
/// global allocator).
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, Usage) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    LARGEST.with(|m| m.set(0));
    let r = f();
    let usage = Usage {
        largest: LARGEST.with(Cell::get),
        peak: (PEAK.with(Cell::get) - base).max(0) as usize,
        net: LIVE.with(Cell::get) - base,
    };
    (r, usage)
}

/// The largest single allocation any thread made since the process started.
pub fn largest_anywhere() -> usize {
    LARGEST_ANYWHERE.load(Ordering::Relaxed)
}
