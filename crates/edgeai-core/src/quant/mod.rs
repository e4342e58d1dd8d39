//! Quantized weight formats (ggml/GGUF compatible) and the matrix-vector kernels that use them.
//!
//! - [`GgmlType`]: the tensor types of GGUF files that edgeai can run.
//! - Block structs ([`BlockQ4_0`], [`BlockQ4_1`], [`BlockQ5_0`], [`BlockQ8_0`], [`BlockQ4K`], [`BlockQ6K`],
//!   [`BlockQ8K`]), byte-compatible with ggml, with `quantize_row_*` / `dequantize_row_*`
//!   free functions per format.
//! - [`QMatrix`]: a borrowed row-major weight matrix (e.g. a slice of a memory-mapped GGUF
//!   file) with [`QMatrix::matvec`] / [`QMatrix::matmul`]: activations are quantized on the fly
//!   into a reusable [`Scratch`] (Q8_0 for the 32-blocks, Q8_K for the K-quants; SIMD
//!   quantizers that give exactly the bytes of ggml's reference rounding), then integer dot
//!   products run on the best [`KernelPath`] of this CPU, multi-threaded over output rows.
//!   On aarch64 with i8mm, `matmul` of several tokens runs `smmla` kernels over two rows and
//!   four tokens at once (Q8_0, Q4_0, Q4_1).
//! - [`int8`]: per-row symmetric int8 matrices for embedding galleries.
//!
//! The kernel path is detected once at first use; [`force_kernel_path`] (or
//! [`force_kernel_path_by_name`], which the CLI, examples and benches call with
//! `EDGEAI_KERNEL=scalar|avx2|neon|...`) changes it at run time.
//!
//! ```
//! use edgeai_core::quant::{GgmlType, QMatrix, Scratch, quantize_row_q8_0, blocks_as_bytes, BlockQ8_0};
//!
//! let (rows, cols) = (4, 64);
//! let w: Vec<f32> = (0..rows * cols).map(|i| (i % 7) as f32 - 3.0).collect();
//! let mut blocks = vec![BlockQ8_0::default(); rows * cols / 32];
//! quantize_row_q8_0(&w, &mut blocks);
//! let m = QMatrix::new(GgmlType::Q8_0, rows, cols, blocks_as_bytes(&blocks)).unwrap();
//! let x = vec![1.0f32; cols];
//! let mut y = vec![0.0; rows];
//! m.matvec(&x, &mut y, &mut Scratch::new()).unwrap();
//! let want: f32 = w[..cols].iter().sum();
//! assert!((y[0] - want).abs() < 0.5);
//! ```

mod blocks;
pub mod counters;
mod dispatch;
pub mod int8;
#[cfg(target_arch = "aarch64")]
mod neon;
pub mod packed;
pub mod scalar;
mod spin;
mod threads;
pub mod vector;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use blocks::{
    blocks_as_bytes, dequantize_row_q4_0, dequantize_row_q4_1, dequantize_row_q4k,
    dequantize_row_q5_0, dequantize_row_q6k, dequantize_row_q8_0, dequantize_row_q8k,
    get_scale_min_k4, quantize_row_q4_0, quantize_row_q4_1, quantize_row_q4k, quantize_row_q5_0,
    quantize_row_q6k, quantize_row_q8_0, quantize_row_q8k, BlockQ4K, BlockQ4_0, BlockQ4_1,
    BlockQ5_0, BlockQ6K, BlockQ8K, BlockQ8_0, QK, QK_K,
};
pub use dispatch::{
    available_kernel_paths, force_kernel_path, force_kernel_path_by_name, kernel_path, KernelPath,
};
pub use packed::{packed_kernel_paths, packed_kernels_available, packed_simd_path, PackedMatrix};
pub use threads::{num_threads, par_chunks_mut, par_chunks_mut_at_most, set_num_threads};

use crate::{Error, Result};
use blocks::as_blocks;
use dispatch::Kernels;

/// `f32` dot product over the shorter of the two lengths: [`vector::dot`] (16 partial sums,
/// compiled per instruction set, on the current kernel path). The gallery's exact scan.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    vector::dot(a, b)
}

/// A GGUF tensor type that edgeai's kernels understand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// 4-bit, 32 per block, scale.
    Q4_0,
    /// 4-bit, 32 per block, scale and min.
    Q4_1,
    /// 5-bit, 32 per block, scale.
    Q5_0,
    /// 8-bit, 32 per block, scale.
    Q8_0,
    /// 4-bit K-quant, 256 per block.
    Q4K,
    /// 6-bit K-quant, 256 per block.
    Q6K,
    /// 8-bit K-quant (activations), 256 per block.
    Q8K,
}

impl GgmlType {
    /// All supported types.
    pub const ALL: [GgmlType; 10] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::Q4K,
        GgmlType::Q6K,
        GgmlType::Q8K,
    ];

    /// The type for a ggml type id (`ggml_type` enum value), if supported.
    pub fn from_ggml_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.ggml_id() == id)
    }

    /// The ggml type id.
    pub fn ggml_id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::BF16 => 30,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4K => 12,
            GgmlType::Q6K => 14,
            GgmlType::Q8K => 15,
        }
    }

    /// Weights per block (1 for the float types).
    pub fn block_len(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q8_0 => QK,
            GgmlType::Q4K | GgmlType::Q6K | GgmlType::Q8K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => std::mem::size_of::<BlockQ4_0>(),
            GgmlType::Q4_1 => std::mem::size_of::<BlockQ4_1>(),
            GgmlType::Q5_0 => std::mem::size_of::<BlockQ5_0>(),
            GgmlType::Q8_0 => std::mem::size_of::<BlockQ8_0>(),
            GgmlType::Q4K => std::mem::size_of::<BlockQ4K>(),
            GgmlType::Q6K => std::mem::size_of::<BlockQ6K>(),
            GgmlType::Q8K => std::mem::size_of::<BlockQ8K>(),
        }
    }

    /// Bytes of one row of `cols` weights; an error if `cols` is not a multiple of
    /// [`block_len`](Self::block_len) or the size overflows.
    pub fn row_bytes(self, cols: usize) -> Result<usize> {
        if !cols.is_multiple_of(self.block_len()) {
            return Err(Error::Kernel(format!(
                "{} rows must be a multiple of {} wide, got {cols}",
                self.name(),
                self.block_len()
            )));
        }
        (cols / self.block_len())
            .checked_mul(self.block_bytes())
            .ok_or_else(|| Error::Kernel(format!("{} row of {cols} overflows", self.name())))
    }

    /// The ggml name (`"Q4_1"`, `"Q4_K"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q4K => "Q4_K",
            GgmlType::Q6K => "Q6_K",
            GgmlType::Q8K => "Q8_K",
        }
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Reusable buffers for the quantized activations of [`QMatrix::matvec`] / [`QMatrix::matmul`].
///
/// Keep one per calling thread and pass it to every call: it grows to the largest size asked
/// for and never shrinks, so the hot path does not allocate.
#[derive(Default, Debug)]
pub struct Scratch {
    q8: Vec<BlockQ8_0>,
    q8_sums: Vec<f32>,
    q8k: Vec<BlockQ8K>,
    /// Integer sums of the Q8_0 activation blocks (packed kernels).
    q8_isum: Vec<i32>,
}

impl Scratch {
    /// Empty buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Quantizes `x` (rows of `cols`) to Q8_0 with the quantizer of kernel table `k`, plus
    /// per block the f16-rounded `d * sum(q)` (ggml's `block_q8_1` term) and `sum(q)`.
    fn quantize_q8_0(&mut self, k: &Kernels, x: &[f32]) -> (&[BlockQ8_0], &[f32], &[i32]) {
        let nb = x.len() / QK;
        if self.q8.len() < nb {
            self.q8.resize(nb, BlockQ8_0::default());
            self.q8_sums.resize(nb, 0.0);
            self.q8_isum.resize(nb, 0);
        }
        (k.quant_q8_0)(
            x,
            &mut self.q8[..nb],
            &mut self.q8_sums[..nb],
            &mut self.q8_isum[..nb],
        );
        (&self.q8[..nb], &self.q8_sums[..nb], &self.q8_isum[..nb])
    }

    /// Quantizes `x` to Q8_K with the quantizer of kernel table `k`.
    fn quantize_q8k(&mut self, k: &Kernels, x: &[f32]) -> &[BlockQ8K] {
        let nb = x.len() / QK_K;
        if self.q8k.len() < nb {
            self.q8k.resize(nb, BlockQ8K::default());
        }
        (k.quant_q8k)(x, &mut self.q8k[..nb]);
        &self.q8k[..nb]
    }
}

/// Quantizes activations to Q8_0 (`32 * out.len()` floats of `x`) with the activation
/// quantizer of kernel path `path`. Every path produces exactly the bytes of
/// [`quantize_row_q8_0`] (ggml's reference rounding); the SIMD ones are just faster. An
/// error if the path is not available on this CPU or the lengths disagree.
pub fn quantize_activations_q8_0(path: KernelPath, x: &[f32], out: &mut [BlockQ8_0]) -> Result<()> {
    let k = dispatch::kernels(path)?;
    if x.len() != out.len() * QK {
        return Err(Error::Kernel(format!(
            "Q8_0 quantization of {} values into {} blocks (needs {})",
            x.len(),
            out.len(),
            out.len() * QK
        )));
    }
    let (mut sums, mut isum) = (vec![0f32; out.len()], vec![0i32; out.len()]);
    (k.quant_q8_0)(x, out, &mut sums, &mut isum);
    Ok(())
}

/// Quantizes activations to Q8_K (`256 * out.len()` floats of `x`) with the activation
/// quantizer of kernel path `path`: exactly the bytes of [`quantize_row_q8k`] on every path.
pub fn quantize_activations_q8k(path: KernelPath, x: &[f32], out: &mut [BlockQ8K]) -> Result<()> {
    let k = dispatch::kernels(path)?;
    if x.len() != out.len() * QK_K {
        return Err(Error::Kernel(format!(
            "Q8_K quantization of {} values into {} blocks (needs {})",
            x.len(),
            out.len(),
            out.len() * QK_K
        )));
    }
    (k.quant_q8k)(x, out);
    Ok(())
}

/// A borrowed row-major weight matrix: `rows` output features, each `cols` wide, stored in any
/// [`GgmlType`] (e.g. a slice of a memory-mapped GGUF file). No copy; any alignment.
///
/// A GGUF tensor with ggml shape `[ne0, ne1]` is a `QMatrix` with `cols = ne0`, `rows = ne1`.
#[derive(Clone, Copy, Debug)]
pub struct QMatrix<'a> {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: &'a [u8],
}

/// Whether table `k` has a two-row kernel (the i8mm path) for `ty`.
fn has_2x4(k: &Kernels, ty: GgmlType) -> bool {
    match ty {
        GgmlType::Q4_0 => k.q4_0_2x4.is_some(),
        GgmlType::Q4_1 => k.q4_1_2x4.is_some(),
        GgmlType::Q8_0 => k.q8_0_2x4.is_some(),
        _ => false,
    }
}

/// Work (weights) below which a call runs on the caller's thread only.
const PAR_MIN_WEIGHTS: usize = 1 << 11;

impl<'a> QMatrix<'a> {
    /// Wraps `data`; an error unless `data.len() == rows * ty.row_bytes(cols)`, or if `ty` is
    /// [`GgmlType::Q8K`] (an activation-only format).
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: &'a [u8]) -> Result<Self> {
        if ty == GgmlType::Q8K {
            return Err(Error::Kernel(
                "Q8_K is an activation format, not a weight format".into(),
            ));
        }
        let row_bytes = ty.row_bytes(cols)?;
        let want = row_bytes
            .checked_mul(rows)
            .ok_or_else(|| Error::Kernel(format!("{ty} matrix {rows}x{cols} overflows")))?;
        if data.len() != want {
            return Err(Error::Kernel(format!(
                "{ty} matrix {rows}x{cols} needs {want} bytes, got {}",
                data.len()
            )));
        }
        Ok(Self {
            ty,
            rows,
            cols,
            row_bytes,
            data,
        })
    }

    /// The storage type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Number of rows (output features).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (input features).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// All bytes.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The bytes of row `r`; an empty slice if `r >= rows`.
    pub fn row_bytes(&self, r: usize) -> &'a [u8] {
        if r >= self.rows {
            return &[];
        }
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Dequantizes row `r` into `out` (`cols` long).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) -> Result<()> {
        if r >= self.rows {
            return Err(Error::Kernel(format!(
                "row {r} out of range ({} rows)",
                self.rows
            )));
        }
        if out.len() != self.cols {
            return Err(Error::Kernel(format!(
                "dequantize_row: output has {} elements, row has {}",
                out.len(),
                self.cols
            )));
        }
        dequantize_bytes(self.ty, self.row_bytes(r), out);
        Ok(())
    }

    /// The whole matrix as `f32`, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        if self.cols > 0 {
            for (r, o) in out.chunks_exact_mut(self.cols).enumerate() {
                dequantize_bytes(self.ty, self.row_bytes(r), o);
            }
        }
        out
    }

    /// `y[r] = sum_c W[r,c] * x[c]` on the current [`kernel_path`]; activations are quantized
    /// on the fly (Q8_0 for the 32-block types, Q8_K for the K-quants; float weights use `x`
    /// as is).
    pub fn matvec(&self, x: &[f32], y: &mut [f32], scratch: &mut Scratch) -> Result<()> {
        self.matmul_on(dispatch::current(), x, 1, y, scratch)
    }

    /// [`matvec`](Self::matvec) on an explicit kernel path (an error if this CPU lacks it);
    /// for tests and benchmarks.
    pub fn matvec_with(
        &self,
        path: KernelPath,
        x: &[f32],
        y: &mut [f32],
        scratch: &mut Scratch,
    ) -> Result<()> {
        self.matmul_on(dispatch::kernels(path)?, x, 1, y, scratch)
    }

    /// `x`: `n` rows of `cols` (row-major); `y`: `n` rows of `rows` (row-major). Each weight
    /// row is reused across the `n` activations while it is in cache.
    pub fn matmul(&self, x: &[f32], n: usize, y: &mut [f32], scratch: &mut Scratch) -> Result<()> {
        self.matmul_on(dispatch::current(), x, n, y, scratch)
    }

    /// [`matmul`](Self::matmul) on an explicit kernel path (an error if this CPU lacks it).
    pub fn matmul_with(
        &self,
        path: KernelPath,
        x: &[f32],
        n: usize,
        y: &mut [f32],
        scratch: &mut Scratch,
    ) -> Result<()> {
        self.matmul_on(dispatch::kernels(path)?, x, n, y, scratch)
    }

    /// `y_i = W_i x` (one activation) for matrices that share their input (a layer's q / k /
    /// v, its gate and up) in the row-major layout: the input is quantized once and the rows
    /// of all of them form one parallel job, one hand-off to the kernel threads instead of
    /// one per matrix (the row-major twin of [`PackedMatrix::matmul_many`]). Each output
    /// equals [`matvec`](Self::matvec) of its matrix bit for bit (the same one-row kernels
    /// run the same rows). Matrices of different widths, of activation types that differ
    /// (the Q8_0 family against Q4_K / Q6_K), unquantized ones, or more than four run one
    /// after another instead. A part whose input or output length does not fit is an error
    /// before any output is written.
    ///
    /// ```
    /// use edgeai_core::quant::{blocks_as_bytes, quantize_row_q8_0, BlockQ8_0, GgmlType};
    /// use edgeai_core::quant::{QMatrix, Scratch};
    /// let w: Vec<f32> = (0..32 * 64).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
    /// let mut blocks = vec![BlockQ8_0::default(); 32 * 64 / 32];
    /// quantize_row_q8_0(&w, &mut blocks);
    /// let m = QMatrix::new(GgmlType::Q8_0, 32, 64, blocks_as_bytes(&blocks)).unwrap();
    /// let (x, mut s) = (vec![0.5f32; 64], Scratch::new());
    /// let (mut a, mut b, mut c) = (vec![0.0; 32], vec![0.0; 32], vec![0.0; 32]);
    /// QMatrix::matvec_many(&mut [(&m, &mut a[..]), (&m, &mut b[..])], &x, &mut s).unwrap();
    /// m.matvec(&x, &mut c, &mut s).unwrap();
    /// assert_eq!((a.clone(), b), (c.clone(), c));
    /// ```
    pub fn matvec_many(
        parts: &mut [(&QMatrix<'_>, &mut [f32])],
        x: &[f32],
        scratch: &mut Scratch,
    ) -> Result<()> {
        for (m, y) in parts.iter() {
            if x.len() != m.cols || y.len() != m.rows {
                return Err(Error::Kernel(format!(
                    "{}x{} {} product: input has {} elements and output {}, expected {} and {}",
                    m.rows,
                    m.cols,
                    m.ty,
                    x.len(),
                    y.len(),
                    m.cols,
                    m.rows
                )));
            }
        }
        /// The activation quantization a weight type's one-row kernel takes.
        fn act_kind(ty: GgmlType) -> Option<bool> {
            match ty {
                GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 | GgmlType::Q5_0 => Some(false),
                GgmlType::Q4K | GgmlType::Q6K => Some(true),
                _ => None,
            }
        }
        const MAX_PARTS: usize = 4;
        let first = parts.first().map(|(m, _)| (m.cols, act_kind(m.ty)));
        let fusable = (2..=MAX_PARTS).contains(&parts.len())
            && first.is_some_and(|(_, k)| k.is_some())
            && parts
                .iter()
                .all(|(m, _)| Some((m.cols, act_kind(m.ty))) == first);
        let k = dispatch::current();
        if !fusable {
            for (m, y) in parts.iter_mut() {
                m.matmul_on(k, x, 1, y, scratch)?;
            }
            return Ok(());
        }
        let (cols, q8k) = (x.len(), first.and_then(|f| f.1) == Some(true));
        if cols == 0 {
            for (_, y) in parts.iter_mut() {
                y.fill(0.0);
            }
            return Ok(());
        }
        let mut outs: [Option<(&QMatrix<'_>, threads::OutPtr<'_>)>; MAX_PARTS] = Default::default();
        let (mut rows, mut work) = (0usize, 0usize);
        for (o, (m, y)) in outs.iter_mut().zip(parts.iter_mut()) {
            counters::product(m.data.len());
            rows += m.rows;
            work = work.saturating_add(m.rows.saturating_mul(cols));
            *o = Some((*m, threads::OutPtr::new(y)));
        }
        /// The input, quantized once for every part.
        #[derive(Clone, Copy)]
        enum Act<'a> {
            Q8(&'a [BlockQ8_0], &'a [f32]),
            Q8K(&'a [BlockQ8K]),
        }
        let act = if q8k {
            Act::Q8K(scratch.quantize_q8k(k, x))
        } else {
            let (q8, sums, _) = scratch.quantize_q8_0(k, x);
            Act::Q8(q8, sums)
        };
        // One row of part `m`, on the same one-row kernel `matvec` runs for it.
        let row = |m: &QMatrix<'_>, r: usize| -> f32 {
            let w = &m.data[r * m.row_bytes..(r + 1) * m.row_bytes];
            match (m.ty, act) {
                (GgmlType::Q4_0, Act::Q8(q, _)) => (k.q4_0)(as_blocks(w), q),
                (GgmlType::Q4_1, Act::Q8(q, s)) => (k.q4_1)(as_blocks(w), q, s),
                (GgmlType::Q8_0, Act::Q8(q, _)) => (k.q8_0)(as_blocks(w), q),
                (GgmlType::Q5_0, Act::Q8(q, _)) => (k.q5_0)(as_blocks(w), q),
                (GgmlType::Q4K, Act::Q8K(q)) => (k.q4k)(as_blocks(w), q),
                (GgmlType::Q6K, Act::Q8K(q)) => (k.q6k)(as_blocks(w), q),
                _ => unreachable!("fusable parts share one activation kind"),
            }
        };
        threads::for_each_chunked(rows, 8, work, |mut r| {
            // The parts' rows in order: a linear scan over at most four matrices.
            for (m, out) in outs.iter().flatten() {
                if r < m.rows {
                    return out.write(r, row(m, r));
                }
                r -= m.rows;
            }
        });
        Ok(())
    }

    fn matmul_on(
        &self,
        k: &'static Kernels,
        x: &[f32],
        n: usize,
        y: &mut [f32],
        scratch: &mut Scratch,
    ) -> Result<()> {
        let (rows, cols) = (self.rows, self.cols);
        if Some(x.len()) != n.checked_mul(cols) {
            return Err(Error::Kernel(format!(
                "{}x{cols} {} matmul: input has {} elements, expected {n} x {cols}",
                rows,
                self.ty,
                x.len()
            )));
        }
        if Some(y.len()) != n.checked_mul(rows) {
            return Err(Error::Kernel(format!(
                "{rows}x{cols} {} matmul: output has {} elements, expected {n} x {rows}",
                self.ty,
                y.len()
            )));
        }
        if n == 0 || rows == 0 {
            return Ok(());
        }
        if cols == 0 {
            y.fill(0.0);
            return Ok(());
        }
        counters::product(self.data.len());
        let work = rows.saturating_mul(cols).saturating_mul(n);
        let out = threads::OutPtr::new(y);
        let rb = self.row_bytes;
        let data = self.data;
        let w_row = move |r: usize| &data[r * rb..(r + 1) * rb];
        match self.ty {
            GgmlType::Q5_0 => {
                let (q8, _, _) = scratch.quantize_q8_0(k, x);
                let nbr = cols / QK;
                threads::for_rows(rows, n, work, out, |r, t| {
                    (k.q5_0)(as_blocks(w_row(r)), &q8[t * nbr..(t + 1) * nbr])
                })
            }
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 if n > 1 && has_2x4(k, self.ty) => {
                let (q8, sums, _) = scratch.quantize_q8_0(k, x);
                let nbr = cols / QK;
                // Missing tokens (cnt < 4) and the odd last row repeat valid ones; their
                // outputs are dropped.
                let act = |t0: usize, cnt: usize| {
                    let t = |j: usize| t0 + j.min(cnt - 1);
                    let r = |j: usize| t(j) * nbr..(t(j) + 1) * nbr;
                    (
                        [0, 1, 2, 3].map(|j| &q8[r(j)]),
                        [0, 1, 2, 3].map(|j| &sums[r(j)]),
                    )
                };
                let rows2 = |r: usize| [w_row(r), w_row((r + 1).min(rows - 1))];
                match self.ty {
                    GgmlType::Q4_0 => {
                        let f = k.q4_0_2x4.expect("checked by has_2x4");
                        threads::for_row_pairs(rows, n, work, out, |r, t0, cnt| {
                            let (a, s) = act(t0, cnt);
                            f(rows2(r).map(as_blocks), a, s)
                        })
                    }
                    GgmlType::Q4_1 => {
                        let f = k.q4_1_2x4.expect("checked by has_2x4");
                        threads::for_row_pairs(rows, n, work, out, |r, t0, cnt| {
                            let (a, s) = act(t0, cnt);
                            f(rows2(r).map(as_blocks), a, s)
                        })
                    }
                    _ => {
                        let f = k.q8_0_2x4.expect("checked by has_2x4");
                        threads::for_row_pairs(rows, n, work, out, |r, t0, cnt| {
                            let (a, s) = act(t0, cnt);
                            f(rows2(r).map(as_blocks), a, s)
                        })
                    }
                }
            }
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 => {
                let (q8, sums, _) = scratch.quantize_q8_0(k, x);
                let nbr = cols / QK;
                let act = |t: usize| (&q8[t * nbr..(t + 1) * nbr], &sums[t * nbr..(t + 1) * nbr]);
                let act4 = |t0: usize| {
                    let b = |k: usize| &q8[(t0 + k) * nbr..(t0 + k + 1) * nbr];
                    let s = |k: usize| &sums[(t0 + k) * nbr..(t0 + k + 1) * nbr];
                    ([b(0), b(1), b(2), b(3)], [s(0), s(1), s(2), s(3)])
                };
                // Generic over the 4-token kernel: fall back to 4 single-token calls.
                let per4 = |single: &dyn Fn(usize) -> f32,
                            four: Option<&dyn Fn() -> [f32; 4]>,
                            t0: usize,
                            cnt: usize| {
                    match four {
                        Some(f4) if cnt == 4 => f4(),
                        _ => {
                            let mut o = [0f32; 4];
                            for (k, v) in o.iter_mut().enumerate().take(cnt) {
                                *v = single(t0 + k);
                            }
                            o
                        }
                    }
                };
                match self.ty {
                    GgmlType::Q4_0 => threads::for_rows4(rows, n, work, out, |r, t0, cnt| {
                        let w = as_blocks(w_row(r));
                        let f4 = k.q4_0_x4.map(|f| move || f(w, act4(t0).0));
                        per4(
                            &|t| (k.q4_0)(w, act(t).0),
                            f4.as_ref().map(|f| f as &dyn Fn() -> [f32; 4]),
                            t0,
                            cnt,
                        )
                    }),
                    GgmlType::Q4_1 => threads::for_rows4(rows, n, work, out, |r, t0, cnt| {
                        let w = as_blocks(w_row(r));
                        let f4 = k.q4_1_x4.map(|f| {
                            move || {
                                let (b, s) = act4(t0);
                                f(w, b, s)
                            }
                        });
                        per4(
                            &|t| {
                                let (a, s) = act(t);
                                (k.q4_1)(w, a, s)
                            },
                            f4.as_ref().map(|f| f as &dyn Fn() -> [f32; 4]),
                            t0,
                            cnt,
                        )
                    }),
                    _ => threads::for_rows4(rows, n, work, out, |r, t0, cnt| {
                        let w = as_blocks(w_row(r));
                        let f4 = k.q8_0_x4.map(|f| move || f(w, act4(t0).0));
                        per4(
                            &|t| (k.q8_0)(w, act(t).0),
                            f4.as_ref().map(|f| f as &dyn Fn() -> [f32; 4]),
                            t0,
                            cnt,
                        )
                    }),
                }
            }
            GgmlType::Q4K | GgmlType::Q6K => {
                let q8 = scratch.quantize_q8k(k, x);
                let nbr = cols / QK_K;
                let act = |t: usize| &q8[t * nbr..(t + 1) * nbr];
                if self.ty == GgmlType::Q4K {
                    threads::for_rows4(rows, n, work, out, |r, t0, cnt| {
                        let w = as_blocks(w_row(r));
                        match k.q4k_x4 {
                            Some(f4) if cnt == 4 => {
                                f4(w, [act(t0), act(t0 + 1), act(t0 + 2), act(t0 + 3)])
                            }
                            _ => {
                                let mut o = [0f32; 4];
                                for (i, v) in o.iter_mut().enumerate().take(cnt) {
                                    *v = (k.q4k)(w, act(t0 + i));
                                }
                                o
                            }
                        }
                    })
                } else {
                    threads::for_rows(rows, n, work, out, |r, t| {
                        (k.q6k)(as_blocks(w_row(r)), act(t))
                    })
                }
            }
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
                let f = match self.ty {
                    GgmlType::F32 => k.f32,
                    GgmlType::F16 => k.f16,
                    _ => k.bf16,
                };
                threads::for_rows(rows, n, work, out, |r, t| {
                    f(w_row(r), &x[t * cols..(t + 1) * cols])
                })
            }
            GgmlType::Q8K => {
                return Err(Error::Kernel("Q8_K is not a weight format".into()));
            }
        }
        Ok(())
    }
}

/// Dequantizes one row's bytes (`out.len()` weights).
fn dequantize_bytes(ty: GgmlType, bytes: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        GgmlType::Q4_0 => dequantize_row_q4_0(as_blocks(bytes), out),
        GgmlType::Q4_1 => dequantize_row_q4_1(as_blocks(bytes), out),
        GgmlType::Q5_0 => dequantize_row_q5_0(as_blocks(bytes), out),
        GgmlType::Q8_0 => dequantize_row_q8_0(as_blocks(bytes), out),
        GgmlType::Q4K => dequantize_row_q4k(as_blocks(bytes), out),
        GgmlType::Q6K => dequantize_row_q6k(as_blocks(bytes), out),
        GgmlType::Q8K => {
            // Q8_K is 4-byte aligned, so decode field by field from bytes.
            for (blk, o) in bytes.chunks_exact(292).zip(out.chunks_exact_mut(QK_K)) {
                let d = f32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]);
                for (v, &q) in o.iter_mut().zip(&blk[4..4 + QK_K]) {
                    *v = d * (q as i8) as f32;
                }
            }
        }
    }
}

/// Dequantizes `out.len()` weights of type `ty` from raw bytes (e.g. a GGUF tensor that is not
/// a 2-D matrix). An error if the byte count does not match.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    let need = ty.row_bytes(out.len())?;
    if bytes.len() != need {
        return Err(Error::Kernel(format!(
            "{ty}: {} weights need {need} bytes, got {}",
            out.len(),
            bytes.len()
        )));
    }
    dequantize_bytes(ty, bytes, out);
    Ok(())
}

#[cfg(test)]
mod dot_tests {
    use super::dot_f32;

    #[test]
    fn dot_matches_f64_on_odd_lengths_and_edge_values() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        for n in [0usize, 1, 7, 15, 16, 17, 31, 64, 255, 256, 257, 1000] {
            let a: Vec<f32> = (0..n).map(|_| next()).collect();
            let b: Vec<f32> = (0..n).map(|_| next() * 100.0).collect();
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            let mass: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (*x as f64 * *y as f64).abs())
                .sum();
            let got = dot_f32(&a, &b) as f64;
            assert!(
                (got - want).abs() <= 1e-6 * mass.max(1.0),
                "n {n}: {got} vs {want}"
            );
        }
        assert!(dot_f32(&[f32::INFINITY, 1.0], &[1.0, 1.0]).is_infinite());
        assert!(dot_f32(&[f32::NAN; 20], &[1.0; 20]).is_nan());
        assert_eq!(
            dot_f32(&[1.0, 2.0, 3.0], &[1.0, 1.0]),
            3.0,
            "the shorter length"
        );
    }
}
