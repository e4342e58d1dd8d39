//! The kernels' threads: the requested count, and the chunked parallel loops that run on
//! the calling thread plus the spinning helpers of `spin.rs`.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

static REQUESTED: AtomicUsize = AtomicUsize::new(0);

/// Sets the number of kernel threads (0 = available parallelism), the caller's included.
/// Takes effect at the next kernel call (helper threads start on first use).
pub fn set_num_threads(n: usize) {
    REQUESTED.store(n, Ordering::Relaxed);
}

/// The number of threads the kernels use.
pub fn num_threads() -> usize {
    match REQUESTED.load(Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// An output matrix (`n` rows of `rows`) written by disjoint output-row chunks in parallel.
pub(crate) struct OutPtr<'a> {
    ptr: *mut f32,
    len: usize,
    _life: PhantomData<&'a mut [f32]>,
}

// SAFETY: OutPtr is only used by `for_rows`, where every task writes a disjoint set of indices
// (its own chunk of output rows), so sharing the pointer between threads cannot race.
unsafe impl Send for OutPtr<'_> {}
// SAFETY: see above.
unsafe impl Sync for OutPtr<'_> {}

impl<'a> OutPtr<'a> {
    pub(crate) fn new(y: &'a mut [f32]) -> Self {
        Self {
            ptr: y.as_mut_ptr(),
            len: y.len(),
            _life: PhantomData,
        }
    }

    #[inline]
    pub(crate) fn write(&self, i: usize, v: f32) {
        if i < self.len {
            // SAFETY: i < len, the pointer comes from a live `&'a mut [f32]` held for 'a, and
            // no two tasks write the same index (see the Send/Sync comment).
            unsafe { *self.ptr.add(i) = v };
        }
    }
}

/// `y[t * rows + r] = f(r, t)` for all `r < rows`, `t < n`, parallel over chunks of `r`.
pub(crate) fn for_rows(
    rows: usize,
    n: usize,
    work: usize,
    out: OutPtr<'_>,
    f: impl Fn(usize, usize) -> f32 + Sync,
) {
    let chunk_rows = |r0: usize, r1: usize| {
        for r in r0..r1 {
            for t in 0..n {
                out.write(t * rows + r, f(r, t));
            }
        }
    };
    chunked(rows, 8, work, chunk_rows);
}

/// Like [`for_rows`], but `f(r, t0, cnt)` returns the outputs of tokens `t0..t0 + cnt`
/// (`cnt <= 4`, in the first `cnt` lanes) so kernels can reuse a decoded weight block.
pub(crate) fn for_rows4(
    rows: usize,
    n: usize,
    work: usize,
    out: OutPtr<'_>,
    f: impl Fn(usize, usize, usize) -> [f32; 4] + Sync,
) {
    let chunk_rows = |r0: usize, r1: usize| {
        for r in r0..r1 {
            let mut t0 = 0;
            while t0 < n {
                let cnt = (n - t0).min(4);
                let v = f(r, t0, cnt);
                for (k, &val) in v.iter().enumerate().take(cnt) {
                    out.write((t0 + k) * rows + r, val);
                }
                t0 += cnt;
            }
        }
    };
    chunked(rows, 8, work, chunk_rows);
}

/// Like [`for_rows4`] over pairs of rows: `f(r, t0, cnt)` returns the outputs of rows `r` and
/// `r + 1` (the second is dropped when `r + 1 == rows`) for tokens `t0..t0 + cnt` (`cnt <= 4`).
pub(crate) fn for_row_pairs(
    rows: usize,
    n: usize,
    work: usize,
    out: OutPtr<'_>,
    f: impl Fn(usize, usize, usize) -> [[f32; 4]; 2] + Sync,
) {
    let pairs = rows.div_ceil(2);
    let chunk_pairs = |p0: usize, p1: usize| {
        for p in p0..p1 {
            let r = 2 * p;
            let nr = (rows - r).min(2);
            let mut t0 = 0;
            while t0 < n {
                let cnt = (n - t0).min(4);
                let v = f(r, t0, cnt);
                for (i, row) in v.iter().enumerate().take(nr) {
                    for (k, &val) in row.iter().enumerate().take(cnt) {
                        out.write((t0 + k) * rows + r + i, val);
                    }
                }
                t0 += cnt;
            }
        }
    };
    chunked(pairs, 4, work, chunk_pairs);
}

/// `f(t)` for every tile `t < ntiles` (each writes its own outputs), parallel over chunks.
pub(crate) fn for_tiles(ntiles: usize, work: usize, f: impl Fn(usize) + Sync) {
    chunked(ntiles, 1, work, |t0, t1| (t0..t1).for_each(&f));
}

/// `f(i)` for every `i < count` (each writes its own outputs), parallel over chunks of at
/// least `min_chunk` items.
pub(crate) fn for_each_chunked(
    count: usize,
    min_chunk: usize,
    work: usize,
    f: impl Fn(usize) + Sync,
) {
    chunked(count, min_chunk, work, |i0, i1| (i0..i1).for_each(&f));
}

/// `body(i0, i1)` over chunks covering `0..count`: one call on this thread when the work is
/// small or there is one thread, else ~4 chunks per thread (at least `min_chunk` items each)
/// on this thread and the spinning helpers (`spin.rs`), for load balance.
fn chunked(count: usize, min_chunk: usize, work: usize, body: impl Fn(usize, usize) + Sync) {
    let threads = num_threads();
    if threads <= 1 || work < super::PAR_MIN_WEIGHTS || count < 2 {
        body(0, count);
        return;
    }
    let chunk = count.div_ceil(threads * 4).max(min_chunk);
    let nchunks = count.div_ceil(chunk);
    super::spin::run(nchunks, threads - 1, &|c| {
        body(c * chunk, ((c + 1) * chunk).min(count))
    });
}

/// A base pointer shared by the chunks of [`par_chunks_mut`].
struct ChunkBase<T>(*mut T);

// SAFETY: `par_chunks_mut` hands every chunk (a disjoint sub-slice of one `&mut [T]`) to
// exactly one call; sending a `&mut [T]` to another thread needs `T: Send`, nothing more.
unsafe impl<T: Send> Sync for ChunkBase<T> {}

/// Runs `f(i, chunk)` for every chunk `i` of `chunk_len` elements of `data` (the last may be
/// shorter), spread over the kernels' threads (this one plus the spinning helpers that also
/// run the matrix products: one pool for the whole token path) when `work` (about the
/// multiply-adds of the whole call) is worth waking them, else on this thread in order.
///
/// ```
/// let mut v = vec![0u32; 10];
/// edgeai_core::quant::par_chunks_mut(&mut v, 3, 1 << 20, |i, c| c.fill(i as u32));
/// assert_eq!(v, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]);
/// ```
pub fn par_chunks_mut<T: Send>(
    data: &mut [T],
    chunk_len: usize,
    work: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    par_chunks_mut_at_most(data, chunk_len, work, 0, f)
}

/// [`par_chunks_mut`] on at most `max_threads` of the kernels' threads (this one included;
/// `0` = all [`num_threads`] of them; never more than [`num_threads`]), for callers with a
/// thread budget of their own such as the face gallery's search. Same pool, same chunks.
///
/// ```
/// let mut v = vec![0u32; 10];
/// edgeai_core::quant::par_chunks_mut_at_most(&mut v, 4, 1 << 20, 1, |i, c| c.fill(i as u32));
/// assert_eq!(v, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]);
/// ```
pub fn par_chunks_mut_at_most<T: Send>(
    data: &mut [T],
    chunk_len: usize,
    work: usize,
    max_threads: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let chunk_len = chunk_len.max(1);
    let (len, count) = (data.len(), data.len().div_ceil(chunk_len));
    let threads = match max_threads {
        0 => num_threads(),
        m => m.min(num_threads()),
    };
    if threads <= 1 || work < super::PAR_MIN_WEIGHTS || count < 2 {
        data.chunks_mut(chunk_len)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
        return;
    }
    let base = ChunkBase(data.as_mut_ptr());
    let base = &base;
    super::spin::run(count, threads - 1, &|i| {
        let start = i * chunk_len;
        let end = (start + chunk_len).min(len);
        // SAFETY: `spin::run` calls this once per `i < count`, so the ranges `start..end` are
        // disjoint and inside `data`, which stays mutably borrowed (unused elsewhere) until
        // `run` returns after the last chunk has finished.
        let chunk = unsafe { std::slice::from_raw_parts_mut(base.0.add(start), end - start) };
        f(i, chunk)
    });
}
