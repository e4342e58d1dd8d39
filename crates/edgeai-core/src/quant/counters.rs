//! Work counters: what the kernels were asked to do on the calling thread, counted as they
//! run (not estimated). For the figures no timer can give, such as the weight bytes a
//! decoded token streams and the pool hand-offs it costs on a CPU only emulated here
//! (aarch64 under qemu); `examples/token_counts.rs` prints them per kernel path and layout.
//!
//! The counts are per thread (a `Cell` each, no atomics, no cost to other threads): a
//! product is counted on the thread that called it, and a parallel job on the thread that
//! handed it to the helpers, whichever threads then ran its chunks.
//!
//! ```
//! use edgeai_core::quant::{counters, GgmlType, QMatrix, Scratch};
//! let w = vec![0u8; 34 * 4]; // 4 rows x 32 columns of Q8_0 (34 bytes a block)
//! let m = QMatrix::new(GgmlType::Q8_0, 4, 32, &w).unwrap();
//! let mut y = [0f32; 4];
//! counters::reset();
//! m.matvec(&[1.0; 32], &mut y, &mut Scratch::new()).unwrap();
//! let c = counters::get();
//! assert_eq!((c.products, c.weight_bytes), (1, 136));
//! ```

use std::cell::Cell;

/// What the calling thread asked of the kernels since the last [`reset`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Quantized matrix products (`QMatrix` or `PackedMatrix` calls, one per call whatever
    /// the batch): the kernel dispatches of a model's weights.
    pub products: u64,
    /// Bytes of weights those products stream: each call reads its whole matrix once (the
    /// row-major and packed kernels both reuse a row or tile across a batch while it is in
    /// cache), so this is the matrix's size in its layout, summed over calls.
    pub weight_bytes: u64,
    /// Jobs handed to the kernel helper threads (each wakes them once); work run inline,
    /// because it is small or on one thread, is not a job.
    pub parallel_jobs: u64,
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            products: self.products - o.products,
            weight_bytes: self.weight_bytes - o.weight_bytes,
            parallel_jobs: self.parallel_jobs - o.parallel_jobs,
        }
    }
}

thread_local! {
    static COUNTS: Cell<Counts> = const { Cell::new(Counts { products: 0, weight_bytes: 0, parallel_jobs: 0 }) };
}

/// The calling thread's counts since its last [`reset`] (or its start).
pub fn get() -> Counts {
    COUNTS.with(Cell::get)
}

/// Zeroes the calling thread's counts.
pub fn reset() {
    COUNTS.with(|c| c.set(Counts::default()));
}

fn bump(f: impl FnOnce(&mut Counts)) {
    COUNTS.with(|c| {
        let mut v = c.get();
        f(&mut v);
        c.set(v);
    });
}

/// One matrix product over `bytes` of weights.
pub(crate) fn product(bytes: usize) {
    bump(|c| {
        c.products += 1;
        c.weight_bytes += bytes as u64;
    });
}

/// One job handed to the helper threads.
pub(crate) fn job() {
    bump(|c| c.parallel_jobs += 1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{quantize_row_q5_0, BlockQ5_0, GgmlType, PackedMatrix, QMatrix, Scratch};

    #[test]
    fn products_count_the_bytes_of_their_layout() {
        let (rows, cols) = (32, 64);
        let x: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut blocks = vec![BlockQ5_0::default(); rows * cols / 32];
        quantize_row_q5_0(&x, &mut blocks);
        let bytes = crate::quant::blocks_as_bytes(&blocks);
        let m = QMatrix::new(GgmlType::Q5_0, rows, cols, bytes).unwrap();
        let p = PackedMatrix::pack(&m).unwrap();
        let (mut y, mut s) = (vec![0f32; 3 * rows], Scratch::new());
        let a = vec![0.5f32; 3 * cols];
        reset();
        m.matmul(&a, 3, &mut y, &mut s).unwrap();
        assert_eq!(get().products, 1, "a batch is one product");
        assert_eq!(get().weight_bytes, bytes.len() as u64);
        p.matvec(&a[..cols], &mut y[..rows], &mut s).unwrap();
        let c = get();
        assert_eq!(c.products, 2);
        // Q5_0 packs widened to Q8_0's layout: 34 / 22 of the bytes.
        assert_eq!(p.size_bytes(), bytes.len() / 22 * 34);
        assert_eq!(c.weight_bytes, (bytes.len() + p.size_bytes()) as u64);
        // Failed calls and empty batches do no work and count none.
        assert!(m.matvec(&a[..cols - 1], &mut y[..rows], &mut s).is_err());
        m.matmul(&[], 0, &mut [], &mut s).unwrap();
        assert_eq!(get(), c);
        // Per thread: another thread's products are not this one's.
        std::thread::scope(|t| {
            t.spawn(|| m.matvec(&a[..cols], &mut vec![0f32; rows], &mut Scratch::new()));
        });
        assert_eq!(get(), c);
        assert_eq!(get() - c, Counts::default());
        reset();
        assert_eq!(get(), Counts::default());
    }
}
