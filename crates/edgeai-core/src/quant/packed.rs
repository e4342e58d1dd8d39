//! Row-interleaved ("packed") weights for matrix-vector products with AVX2, AVX-VNNI or
//! AVX-512 VNNI (x86_64) or NEON, with or without dotprod (aarch64).
//!
//! The ggml layout stores one row after another, so a GEMV kernel finishes each 32-weight
//! block with a horizontal reduction and two scale conversions: about ten instructions per
//! 32 multiply-adds. [`PackedMatrix`] regroups [`TILE`] = 16 rows so that one 64-byte load
//! holds 4 consecutive weights of all 16 rows: one `vpdpbusd` then performs 64 multiply-adds
//! into 16 per-row lanes, the scales of the 16 rows convert with one instruction, and the
//! lanes *are* the outputs (no horizontal sum at all). AVX2 and AVX-VNNI take the same 64
//! bytes as two 256-bit halves of 8 rows (`vpmaddubsw` + `vpmaddwd`, or `vpdpbusd ymm`). On
//! aarch64 the same 64 bytes are four `sdot`s of 4 rows each against the 4 activation bytes
//! broadcast to every lane (without dotprod: `smull` + `sadalp` per 8 bytes, one `addp` per
//! block). The kernels live in the same per-path table as the row-major ones
//! (`dispatch.rs`), with the scalar twins in the scalar table.
//!
//! The packed form has the same size as the ggml form (plus 64 bytes per 16 rows and 256
//! columns for Q4_K's unpacked 6-bit scales), so it keeps the bandwidth advantage of 4-bit
//! weights. The one exception is Q5_0: its fifth bits sit in a separate 32-bit mask per
//! block, so it is widened at pack time to the Q8_0 layout (34 bytes per 32 weights instead
//! of 22, +55 %) and runs the Q8_0 kernels unchanged: the integer products are the same (a
//! Q5_0 quant is an integer in -16..=15), so the result equals the row-major Q5_0 product up
//! to f32 accumulation order. Measured on Gemma 3 270M (44 MB of Q5_0) in BENCHMARKS.md.
//! Quants are stored unsigned (Q8_0 with a +128 offset, 4-bit quants as they are) and the
//! offset is removed once per block with the activation block's integer sum:
//! `sum((w+128) * y) - 128 * sum(y)`.
//!
//! Every packed kernel has a scalar twin over the same layout ([`PackedMatrix::matvec_with`]
//! with [`KernelPath::Scalar`]) that performs, per row, the same integer dot products and the
//! same `f32` operations (fused multiply-adds included) in the same order as each SIMD lane,
//! so the two agree bit for bit; both are compared with the row-major reference in the tests.
//!
//! ```
//! use edgeai_core::quant::{blocks_as_bytes, quantize_row_q8_0, BlockQ8_0, GgmlType};
//! use edgeai_core::quant::{PackedMatrix, QMatrix, Scratch};
//!
//! let (rows, cols) = (32, 64);
//! let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
//! let mut blocks = vec![BlockQ8_0::default(); rows * cols / 32];
//! quantize_row_q8_0(&w, &mut blocks);
//! let m = QMatrix::new(GgmlType::Q8_0, rows, cols, blocks_as_bytes(&blocks)).unwrap();
//! let p = PackedMatrix::pack(&m).unwrap();
//! let x = vec![0.5f32; cols];
//! let (mut a, mut b) = (vec![0.0; rows], vec![0.0; rows]);
//! let mut scratch = Scratch::new();
//! m.matvec(&x, &mut a, &mut scratch).unwrap();
//! p.matvec(&x, &mut b, &mut scratch).unwrap();
//! for (a, b) in a.iter().zip(&b) {
//!     assert!((a - b).abs() <= 1e-3 * a.abs().max(1.0));
//! }
//! ```

#![allow(clippy::needless_range_loop)] // index loops mirror the SIMD lanes

use half::f16;

use super::blocks::{
    as_blocks, get_scale_min_k4, q5_0_quants, q6k_quants, BlockQ4K, BlockQ4_0, BlockQ4_1,
    BlockQ5_0, BlockQ6K, BlockQ8K, BlockQ8_0,
};
use super::{dispatch, threads, GgmlType, KernelPath, QMatrix, Scratch, QK, QK_K};
use crate::{Error, Result};

/// Rows per tile of a [`PackedMatrix`].
pub const TILE: usize = 16;

/// The packed layout (and kernels) of weights of type `ty`: Q5_0 is widened to Q8_0's.
fn layout(ty: GgmlType) -> GgmlType {
    match ty {
        GgmlType::Q5_0 => GgmlType::Q8_0,
        t => t,
    }
}

/// Tiles per work unit: the 4-bit kernels run two tiles at once (each activation broadcast
/// feeds two multiply-adds; measured 10-25 % faster), Q8_0 one (two measured slower). A
/// unit's tiles store their blocks side by side, so a unit reads one sequential stream.
fn unit_tiles(ty: GgmlType) -> usize {
    if layout(ty) == GgmlType::Q8_0 {
        1
    } else {
        2
    }
}

/// The most tiles in a unit.
const UNIT: usize = 2;

/// Offsets in a Q6_K tile block: the i8 scales, the low nibbles, the high bit pairs.
const Q6K_SCALES: usize = 32;
const Q6K_LOW: usize = Q6K_SCALES + 256;
const Q6K_HIGH: usize = Q6K_LOW + 2048;

/// Whether `ty`'s packed kernels take Q8_K activations (Q4_K, Q6_K) rather than Q8_0 ones.
fn q8k_activations(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4K | GgmlType::Q6K)
}

/// Bytes of one tile (16 rows) per block of 32 (Q8_0, Q4_0, Q4_1) or 256 (Q4_K, Q6_K) columns.
fn tile_block_bytes(ty: GgmlType) -> Option<usize> {
    match ty {
        // 16 f16 scales + 32 x 16 quants (Q5_0 widened to 8 bits).
        GgmlType::Q8_0 | GgmlType::Q5_0 => Some(32 + 512),
        // 16 f16 scales + 32 x 16 nibbles.
        GgmlType::Q4_0 => Some(32 + 256),
        // 16 f16 scales + 16 f16 mins + nibbles.
        GgmlType::Q4_1 => Some(64 + 256),
        // 16 f16 d + 16 f16 dmin + 8 x 16 scales + 8 x 16 mins + 256 x 16 nibbles.
        GgmlType::Q4K => Some(64 + 128 + 128 + 2048),
        // 16 f16 d + 16 x 16 i8 scales + 256 x 16 low nibbles + 256 x 16 high bit pairs.
        GgmlType::Q6K => Some(Q6K_HIGH + 1024),
        _ => None,
    }
}

/// A weight matrix repacked in tiles of [`TILE`] rows for the packed SIMD GEMV (see the
/// module docs). Owns its bytes; build it once per weight matrix with [`PackedMatrix::pack`].
#[derive(Clone, Debug)]
pub struct PackedMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    tile_bytes: usize,
    data: Vec<u8>,
}

/// Whether the current kernel path ([`kernel_path`](super::kernel_path)) has packed SIMD
/// kernels (see [`packed_simd_path`]); elsewhere a [`PackedMatrix`] runs its scalar twin,
/// which is slower than [`QMatrix`]'s own kernels, so callers should only pack when this is
/// true.
pub fn packed_kernels_available() -> bool {
    packed_simd_path().is_some()
}

/// The current kernel path if it has packed SIMD kernels: AVX2 (`maddubs`), AVX-VNNI and
/// AVX-512 VNNI (`vpdpbusd`) on x86_64, NEON (`smull` + `sadalp`), dotprod and i8mm (`sdot`)
/// on aarch64; `None` on the scalar path, where only the scalar twin runs.
pub fn packed_simd_path() -> Option<KernelPath> {
    let p = dispatch::kernel_path();
    dispatch::has_packed(p).then_some(p)
}

/// Every path on this CPU with packed SIMD kernels, worst to best (for tests and benches
/// that compare them; [`PackedMatrix::matvec_with`] takes any of them).
pub fn packed_kernel_paths() -> Vec<KernelPath> {
    super::available_kernel_paths()
        .into_iter()
        .filter(|p| dispatch::has_packed(*p))
        .collect()
}

impl PackedMatrix {
    /// Whether a `rows x cols` matrix of `ty` can be packed: Q8_0, Q4_0, Q4_1, Q4_K, Q6_K or
    /// Q5_0 (widened to the Q8_0 layout), a positive multiple of [`TILE`] rows, and at least one
    /// block of columns.
    pub fn supports(ty: GgmlType, rows: usize, cols: usize) -> bool {
        tile_block_bytes(ty).is_some()
            && rows > 0
            && rows.is_multiple_of(TILE)
            && cols > 0
            && cols.is_multiple_of(ty.block_len())
    }

    /// Bytes a packed `rows x cols` matrix of `ty` holds (`None` where
    /// [`PackedMatrix::supports`] is false): the file's size for Q8_0, Q4_0 and Q4_1 (the
    /// same bytes, interleaved), 2.8 % more for Q4_K (its 6-bit scales and mins unpacked to
    /// bytes), 55 % more for Q5_0 (widened to Q8_0's layout).
    ///
    /// ```
    /// use edgeai_core::quant::{GgmlType, PackedMatrix};
    /// let file = GgmlType::Q4_1.row_bytes(256).unwrap() * 32;
    /// assert_eq!(PackedMatrix::packed_size(GgmlType::Q4_1, 32, 256), Some(file));
    /// let q6k = GgmlType::Q6K.row_bytes(256).unwrap() * 32;
    /// assert_eq!(PackedMatrix::packed_size(GgmlType::Q6K, 32, 256), Some(q6k));
    /// assert_eq!(PackedMatrix::packed_size(GgmlType::F16, 32, 256), None);
    /// ```
    pub fn packed_size(ty: GgmlType, rows: usize, cols: usize) -> Option<usize> {
        Self::supports(ty, rows, cols)
            .then(|| (rows / TILE) * (cols / ty.block_len()) * tile_block_bytes(ty).unwrap_or(0))
    }

    /// Repacks `m` (an error if [`PackedMatrix::supports`] is false for its type and shape).
    pub fn pack(m: &QMatrix<'_>) -> Result<Self> {
        Self::pack_releasing(m, |_| {})
    }

    /// [`pack`](Self::pack), reading `m`'s rows in order and calling `done(rows)` each time
    /// the first `rows` rows have been copied and will not be read again: a caller whose
    /// matrix lives in a file map can release those pages as it goes, so packing a large
    /// matrix never holds both full copies resident.
    pub fn pack_releasing(m: &QMatrix<'_>, mut done: impl FnMut(usize)) -> Result<Self> {
        let (ty, rows, cols) = (m.ty(), m.rows(), m.cols());
        if !Self::supports(ty, rows, cols) {
            return Err(Error::Kernel(format!(
                "cannot pack a {rows}x{cols} {ty} matrix (packing needs Q8_0, Q4_0, Q4_1, Q4_K, \
                 Q6_K or Q5_0 and a positive multiple of {TILE} rows)"
            )));
        }
        let nb = cols / ty.block_len();
        let tbb = tile_block_bytes(ty).unwrap_or(0);
        let tile_bytes = nb * tbb;
        let ntiles = rows / TILE;
        let mut data = vec![0u8; ntiles * tile_bytes];
        // Units of UNIT tiles (the last may hold fewer), blocks of a unit's tiles adjacent.
        let per_unit = unit_tiles(ty);
        for (u, unit) in data.chunks_mut(per_unit * tile_bytes).enumerate() {
            let k_u = unit.len() / tile_bytes;
            for (b, grp) in unit.chunks_exact_mut(k_u * tbb).enumerate() {
                for (k, out) in grp.chunks_exact_mut(tbb).enumerate() {
                    for r in 0..TILE {
                        let row = m.row_bytes((per_unit * u + k) * TILE + r);
                        match ty {
                            GgmlType::Q8_0 => pack_q8_0(&as_blocks::<BlockQ8_0>(row)[b], r, out),
                            GgmlType::Q5_0 => {
                                let blk = &as_blocks::<BlockQ5_0>(row)[b];
                                let wide = BlockQ8_0 {
                                    d: blk.d,
                                    qs: q5_0_quants(blk),
                                };
                                pack_q8_0(&wide, r, out)
                            }
                            GgmlType::Q4_0 => {
                                let blk = &as_blocks::<BlockQ4_0>(row)[b];
                                put_f16(out, r, blk.d);
                                pack_nibbles(&blk.qs, r, &mut out[32..]);
                            }
                            GgmlType::Q4_1 => {
                                let blk = &as_blocks::<BlockQ4_1>(row)[b];
                                put_f16(out, r, blk.d);
                                put_f16(&mut out[32..], r, blk.m);
                                pack_nibbles(&blk.qs, r, &mut out[64..]);
                            }
                            GgmlType::Q6K => pack_q6k(&as_blocks::<BlockQ6K>(row)[b], r, out),
                            _ => pack_q4k(&as_blocks::<BlockQ4K>(row)[b], r, out),
                        }
                    }
                }
            }
            done(((u + 1) * per_unit * TILE).min(rows));
        }
        Ok(Self {
            ty,
            rows,
            cols,
            tile_bytes,
            data,
        })
    }

    /// The weight type it was packed from.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Rows (output features).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (input features).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held.
    pub fn size_bytes(&self) -> usize {
        self.data.len()
    }

    /// `y = W x` on the packed SIMD kernels of the current [`kernel_path`](super::kernel_path)
    /// where it has them ([`packed_simd_path`]), else on the scalar twin.
    pub fn matvec(&self, x: &[f32], y: &mut [f32], scratch: &mut Scratch) -> Result<()> {
        self.matmul(x, 1, y, scratch)
    }

    /// `n` products at once: `x` holds `n` rows of `cols`, `y` receives `n` rows of `rows`
    /// (row-major). Each tile is read once from memory for all `n` activations (it stays in
    /// L1 while they run), and the call is split over the kernel threads only once.
    pub fn matmul(&self, x: &[f32], n: usize, y: &mut [f32], scratch: &mut Scratch) -> Result<()> {
        let p = packed_simd_path().unwrap_or(KernelPath::Scalar);
        self.run(dispatch::kernels(p)?, x, n, y, scratch)
    }

    /// [`matvec`](Self::matvec) on an explicit path: [`KernelPath::Scalar`] (the scalar twin)
    /// or one of this CPU's [`packed_kernel_paths`]; any other path is an error.
    pub fn matvec_with(
        &self,
        path: KernelPath,
        x: &[f32],
        y: &mut [f32],
        scratch: &mut Scratch,
    ) -> Result<()> {
        match path {
            KernelPath::Scalar => self.run(dispatch::kernels(path)?, x, 1, y, scratch),
            p if dispatch::has_packed(p) => self.run(dispatch::kernels(p)?, x, 1, y, scratch),
            other => Err(Error::Kernel(format!(
                "no packed kernel for path {other} on this CPU (packed kernels: scalar{})",
                packed_kernel_paths()
                    .iter()
                    .map(|p| format!(", {p}"))
                    .collect::<String>()
            ))),
        }
    }

    /// `y_i = W_i x` for matrices that share their input (a layer's q / k / v, its gate and
    /// up): the input is quantized once and the tiles of all of them form one parallel job,
    /// one hand-off to the kernel threads instead of one per matrix. Each output equals
    /// [`matmul`](Self::matmul) of its matrix bit for bit (the same kernels run the same
    /// tiles). Matrices of different widths, or Q4_K / Q6_K next to the Q8_0 family
    /// (different activation quantization), run one after another instead. A part whose input or
    /// output length does not fit is an error before any output is written.
    ///
    /// ```
    /// use edgeai_core::quant::{blocks_as_bytes, quantize_row_q8_0, BlockQ8_0, GgmlType};
    /// use edgeai_core::quant::{PackedMatrix, QMatrix, Scratch};
    /// let w: Vec<f32> = (0..32 * 64).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
    /// let mut blocks = vec![BlockQ8_0::default(); 32 * 64 / 32];
    /// quantize_row_q8_0(&w, &mut blocks);
    /// let m = QMatrix::new(GgmlType::Q8_0, 32, 64, blocks_as_bytes(&blocks)).unwrap();
    /// let (p, q) = (PackedMatrix::pack(&m).unwrap(), PackedMatrix::pack(&m).unwrap());
    /// let (x, mut s) = (vec![0.5f32; 64], Scratch::new());
    /// let (mut a, mut b, mut c) = (vec![0.0; 32], vec![0.0; 32], vec![0.0; 32]);
    /// PackedMatrix::matmul_many(&mut [(&p, &mut a[..]), (&q, &mut b[..])], &x, 1, &mut s).unwrap();
    /// p.matvec(&x, &mut c, &mut s).unwrap();
    /// assert_eq!((a.clone(), b), (c.clone(), c));
    /// ```
    pub fn matmul_many(
        parts: &mut [(&PackedMatrix, &mut [f32])],
        x: &[f32],
        n: usize,
        scratch: &mut Scratch,
    ) -> Result<()> {
        // Every shape first: an error writes no output.
        for (m, y) in parts.iter() {
            m.check(x, n, y)?;
        }
        let p = packed_simd_path().unwrap_or(KernelPath::Scalar);
        let k = dispatch::kernels(p)?;
        let kind = |m: &PackedMatrix| q8k_activations(m.ty);
        let fusable = parts
            .windows(2)
            .all(|w| w[0].0.cols == w[1].0.cols && kind(w[0].0) == kind(w[1].0));
        if fusable && parts.len() > 1 {
            return Self::run_many(k, parts, x, n, scratch);
        }
        for (m, y) in parts.iter_mut() {
            m.run(k, x, n, y, scratch)?;
        }
        Ok(())
    }

    fn check(&self, x: &[f32], n: usize, y: &[f32]) -> Result<()> {
        let (rows, cols) = (self.rows, self.cols);
        if Some(x.len()) != n.checked_mul(cols) || Some(y.len()) != n.checked_mul(rows) {
            return Err(Error::Kernel(format!(
                "{rows}x{cols} packed {} product of {n} vector(s): input has {} elements and \
                 output {}, expected {n} x {cols} and {n} x {rows}",
                self.ty,
                x.len(),
                y.len(),
            )));
        }
        Ok(())
    }

    /// Work units (of [`unit_tiles`] tiles) of this matrix.
    fn units(&self) -> usize {
        (self.rows / TILE).div_ceil(unit_tiles(self.ty))
    }

    /// About the multiply-adds of `n` products, scaled to the kernels' speed: a call is
    /// split over threads only when it is long enough to repay waking them (~4M
    /// multiply-adds, tens of microseconds on one core).
    fn work(&self, n: usize) -> usize {
        self.rows.saturating_mul(self.cols).saturating_mul(n) / 64
    }

    /// Runs on the packed and activation-quantizing kernels of table `k` (the scalar table
    /// makes this the scalar twin end to end; every quantizer gives the same bytes anyway).
    fn run(
        &self,
        k: &dispatch::Kernels,
        x: &[f32],
        n: usize,
        y: &mut [f32],
        scratch: &mut Scratch,
    ) -> Result<()> {
        self.check(x, n, y)?;
        if n == 0 {
            return Ok(());
        }
        super::counters::product(self.data.len());
        let out = threads::OutPtr::new(y);
        let act = Act::quantize(self.ty, k, x, scratch);
        threads::for_tiles(self.units(), self.work(n), |u| {
            self.unit(k, u, n, act, &out)
        });
        Ok(())
    }

    /// [`run`](Self::run) of every part as one parallel job ([`matmul_many`](Self::matmul_many)
    /// checked every shape and that the parts share `cols` and the activation kind).
    fn run_many(
        k: &dispatch::Kernels,
        parts: &mut [(&PackedMatrix, &mut [f32])],
        x: &[f32],
        n: usize,
        scratch: &mut Scratch,
    ) -> Result<()> {
        let Some(ty) = parts.first().map(|p| p.0.ty) else {
            return Ok(());
        };
        if n == 0 {
            return Ok(());
        }
        let (mut units, mut work) = (0, 0usize);
        for (m, _) in parts.iter() {
            super::counters::product(m.data.len());
            units += m.units();
            work = work.saturating_add(m.work(n));
        }
        let outs: Vec<(&PackedMatrix, threads::OutPtr<'_>)> = parts
            .iter_mut()
            .map(|(m, y)| (*m, threads::OutPtr::new(y)))
            .collect();
        let act = Act::quantize(ty, k, x, scratch);
        threads::for_tiles(units, work, |mut u| {
            // The parts' units in order: a linear scan over the few matrices.
            for (m, out) in &outs {
                let mu = m.units();
                if u < mu {
                    return m.unit(k, u, n, act, out);
                }
                u -= mu;
            }
        });
        Ok(())
    }

    /// Work unit `u` (tiles `per_unit * u` and the next, if any) of `y = W x` for all `n`
    /// activations, written through `out`.
    fn unit(
        &self,
        k: &dispatch::Kernels,
        u: usize,
        n: usize,
        act: Act<'_>,
        out: &threads::OutPtr<'_>,
    ) {
        let (rows, cols) = (self.rows, self.cols);
        let ntiles = rows / TILE;
        let tb = self.tile_bytes;
        let per_unit = unit_tiles(self.ty);
        let tiles = &self.data[per_unit * u * tb..(per_unit * (u + 1) * tb).min(self.data.len())];
        let emit = |t: usize, v: [[f32; TILE]; UNIT]| {
            let k_u = per_unit.min(ntiles - per_unit * u);
            for (k, tile) in v.iter().enumerate().take(k_u) {
                for (r, &val) in tile.iter().enumerate() {
                    out.write(t * rows + (per_unit * u + k) * TILE + r, val);
                }
            }
        };
        match act {
            Act::Q8K(act) => {
                let kernel = if self.ty == GgmlType::Q6K {
                    k.packed_q6k.unwrap_or(scalar_tiles_q6k)
                } else {
                    k.packed_q4k.unwrap_or(scalar_tiles_q4k)
                };
                let nb = cols / QK_K;
                for t in 0..n {
                    emit(t, kernel(tiles, tb, &act[t * nb..(t + 1) * nb], t + 1 == n));
                }
            }
            Act::Q8 { act, sums, isum } => {
                let tiles_q8 = k.packed_q8.unwrap_or(scalar_tiles_q8_family);
                let (ty, nb) = (layout(self.ty), cols / QK);
                for t in 0..n {
                    let r = t * nb..(t + 1) * nb;
                    let (a, s, i) = (&act[r.clone()], &sums[r.clone()], &isum[r]);
                    let v = tiles_q8(ty, tiles, tb, a, s, i, t + 1 == n);
                    emit(t, v);
                }
            }
        }
    }
}

/// The quantized activations a packed product reads: Q8_K for Q4_K and Q6_K, Q8_0 (with per-block
/// float and integer sums) for the Q8_0 family.
#[derive(Clone, Copy)]
enum Act<'a> {
    Q8K(&'a [BlockQ8K]),
    Q8 {
        act: &'a [BlockQ8_0],
        sums: &'a [f32],
        isum: &'a [i32],
    },
}

impl<'a> Act<'a> {
    fn quantize(ty: GgmlType, k: &dispatch::Kernels, x: &[f32], scratch: &'a mut Scratch) -> Self {
        match q8k_activations(ty) {
            true => Act::Q8K(scratch.quantize_q8k(k, x)),
            false => {
                let (act, sums, isum) = scratch.quantize_q8_0(k, x);
                Act::Q8 { act, sums, isum }
            }
        }
    }
}

fn put_f16(out: &mut [u8], r: usize, v: f16) {
    out[2 * r..2 * r + 2].copy_from_slice(&v.to_le_bytes());
}

fn get_f16(bytes: &[u8], r: usize) -> f32 {
    f16::from_le_bytes([bytes[2 * r], bytes[2 * r + 1]]).to_f32()
}

/// Q8_0: scales, then 8 groups of 64 bytes: group `g` byte `4r + j` = `w[r][4g + j] + 128`.
fn pack_q8_0(blk: &BlockQ8_0, r: usize, out: &mut [u8]) {
    put_f16(out, r, blk.d);
    let qs = blk.qs;
    for g in 0..8 {
        for j in 0..4 {
            out[32 + 64 * g + 4 * r + j] = (qs[4 * g + j] as u8) ^ 0x80;
        }
    }
}

/// 16 ggml nibble bytes (low nibble = element `i`, high = element `i + 16`) into 4 groups of
/// 64 bytes: group `c` byte `4r + j` = `qs[4c + j]`, so the low nibbles of a group are
/// elements `4c..4c+4` and its high nibbles elements `16+4c..16+4c+4`.
fn pack_nibbles(qs: &[u8; QK / 2], r: usize, out: &mut [u8]) {
    for c in 0..4 {
        out[64 * c + 4 * r..64 * c + 4 * r + 4].copy_from_slice(&qs[4 * c..4 * c + 4]);
    }
}

/// Q4_K: d, dmin, 8 x 16 scales, 8 x 16 mins, then for each 64-column half-pair `j` (0..4)
/// 8 groups of 64 bytes: group `c` byte `4r + i` = `qs[32j + 4c + i]` (low nibble: column
/// `64j + 4c + i`, sub-block `2j`; high nibble: column `64j + 32 + 4c + i`, sub-block `2j+1`).
fn pack_q4k(blk: &BlockQ4K, r: usize, out: &mut [u8]) {
    put_f16(out, r, blk.d);
    put_f16(&mut out[32..], r, blk.dmin);
    let scales = blk.scales;
    for s in 0..8 {
        let (sc, m) = get_scale_min_k4(s, &scales);
        out[64 + 16 * s + r] = sc;
        out[192 + 16 * s + r] = m;
    }
    let qs = blk.qs;
    for j in 0..4 {
        for c in 0..8 {
            let o = 320 + 512 * j + 64 * c + 4 * r;
            out[o..o + 4].copy_from_slice(&qs[32 * j + 4 * c..32 * j + 4 * c + 4]);
        }
    }
}

/// Q6_K: d, 16 x 16 i8 scales (sub-block `s` of row `r` at `32 + 16s + r`), then the
/// unsigned 6-bit quants `q + 32` (0..=63) split into
/// - low nibbles, laid out as Q4_K's: for each 64-column group `j` (0..4), 8 groups of 64
///   bytes, group `c` byte `4r + i` = low nibble of column `64j + 4c + i` | low nibble of
///   column `64j + 32 + 4c + i` << 4 (columns of sub-blocks `4j + c / 4` and `4j + 2 + c / 4`);
/// - high bit pairs: for each `j`, 4 groups of 64 bytes, group `p` byte `4r + i` holds the
///   top two bits of the four quants of nibble groups `2p` and `2p + 1` at that byte: bits
///   0-1 / 2-3 the low / high nibble's of group `2p`, bits 4-5 / 6-7 those of group `2p + 1`.
///
/// A kernel rebuilds a group's 6-bit quants with a mask, a shift and an or per vector
/// (`(nib & 0xF) | (high << 4 & 0x30)`, ...), and the bytes are the file's (210 per row and
/// block).
fn pack_q6k(blk: &BlockQ6K, r: usize, out: &mut [u8]) {
    put_f16(out, r, blk.d);
    for (s, &sc) in blk.scales.iter().enumerate() {
        out[Q6K_SCALES + 16 * s + r] = sc as u8;
    }
    let q = q6k_quants(blk).map(|q| (q + 32) as u8);
    for j in 0..4 {
        for c in 0..8 {
            for i in 0..4 {
                let (lo, hi) = (q[64 * j + 4 * c + i], q[64 * j + 32 + 4 * c + i]);
                out[Q6K_LOW + 512 * j + 64 * c + 4 * r + i] = (lo & 0xF) | (hi & 0xF) << 4;
                let h = &mut out[Q6K_HIGH + 256 * j + 64 * (c / 2) + 4 * r + i];
                *h |= ((lo >> 4) | (hi >> 4) << 2) << (4 * (c % 2));
            }
        }
    }
}

/// The 6-bit quants (0..=63) of packed Q6_K group `c` (0..8) of 64-column group `j` at row
/// `r`, column offset `i` (0..4): (low-nibble column, high-nibble column), for the scalar twin.
fn q6k_packed_quants(blk: &[u8], j: usize, c: usize, r: usize, i: usize) -> (i32, i32) {
    let nib = blk[Q6K_LOW + 512 * j + 64 * c + 4 * r + i];
    let h = blk[Q6K_HIGH + 256 * j + 64 * (c / 2) + 4 * r + i] >> (4 * (c % 2));
    let lo = (nib & 0xF) | (h & 3) << 4;
    let hi = (nib >> 4) | (h >> 2 & 3) << 4;
    (lo as i32, hi as i32)
}

/// The scalar twin of the packed kernels for a unit of one or two tiles (`data` = 1 or 2 x
/// `tb` bytes) of a Q8_0 / Q4_0 / Q4_1 matrix against Q8_0 activations (the scalar kernel
/// table's entry).
pub(crate) fn scalar_tiles_q8_family(
    ty: GgmlType,
    data: &[u8],
    tb: usize,
    act: &[BlockQ8_0],
    sums: &[f32],
    isum: &[i32],
    _stream: bool,
) -> [[f32; TILE]; 2] {
    per_tile(data.len(), tb, |k_u, k| {
        scalar_tile_q8_family(ty, data, k_u, k, act, sums, isum)
    })
}

/// The scalar twin for one or two tiles of a Q4_K matrix.
pub(crate) fn scalar_tiles_q4k(
    data: &[u8],
    tb: usize,
    act: &[BlockQ8K],
    _stream: bool,
) -> [[f32; TILE]; 2] {
    per_tile(data.len(), tb, |k_u, k| scalar_tile_q4k(data, k_u, k, act))
}

/// The scalar twin for one or two tiles of a Q6_K matrix.
pub(crate) fn scalar_tiles_q6k(
    data: &[u8],
    tb: usize,
    act: &[BlockQ8K],
    _stream: bool,
) -> [[f32; TILE]; 2] {
    per_tile(data.len(), tb, |k_u, k| scalar_tile_q6k(data, k_u, k, act))
}

/// A unit of `data_len / tb` (1 or 2) tiles computed one tile at a time: `tile(k_u, k)` for
/// tile `k` of the unit's `k_u`, the rest zero (for kernels that run one tile per call).
pub(crate) fn per_tile(
    data_len: usize,
    tb: usize,
    tile: impl Fn(usize, usize) -> [f32; TILE],
) -> [[f32; TILE]; 2] {
    let mut out = [[0f32; TILE]; 2];
    let k_u = (data_len / tb.max(1)).min(2);
    for (k, o) in out.iter_mut().enumerate().take(k_u) {
        *o = tile(k_u, k);
    }
    out
}

/// The scalar twin of the Q8_0 / Q4_0 / Q4_1 tile kernel for tile `k` of a unit of `k_u`
/// tiles: per row exactly the operations of one SIMD lane.
fn scalar_tile_q8_family(
    ty: GgmlType,
    unit: &[u8],
    k_u: usize,
    k: usize,
    act: &[BlockQ8_0],
    sums: &[f32],
    isum: &[i32],
) -> [f32; TILE] {
    let tbb = tile_block_bytes(ty).unwrap_or(usize::MAX);
    let mut acc = [0f32; TILE];
    for (b, grp) in unit.chunks_exact(k_u * tbb).enumerate() {
        let blk = &grp[k * tbb..(k + 1) * tbb];
        let (a, s, si) = (&act[b], sums[b], isum[b]);
        let ys = a.qs;
        let dy = a.d.to_f32();
        for r in 0..TILE {
            let d = get_f16(blk, r) * dy;
            match ty {
                GgmlType::Q8_0 => {
                    let mut dot = 0i32;
                    for k in 0..QK {
                        let (g, j) = (k / 4, k % 4);
                        dot += blk[32 + 64 * g + 4 * r + j] as i32 * ys[k] as i32;
                    }
                    acc[r] = d.mul_add((dot - 128 * si) as f32, acc[r]);
                }
                _ => {
                    let off = if ty == GgmlType::Q4_1 { 64 } else { 32 };
                    let mut dot = 0i32;
                    for c in 0..4 {
                        for j in 0..4 {
                            let q = blk[off + 64 * c + 4 * r + j];
                            dot += (q & 0xF) as i32 * ys[4 * c + j] as i32;
                            dot += (q >> 4) as i32 * ys[16 + 4 * c + j] as i32;
                        }
                    }
                    if ty == GgmlType::Q4_1 {
                        acc[r] = d.mul_add(dot as f32, acc[r]);
                        acc[r] = get_f16(&blk[32..], r).mul_add(s, acc[r]);
                    } else {
                        acc[r] = d.mul_add((dot - 8 * si) as f32, acc[r]);
                    }
                }
            }
        }
    }
    acc
}

/// The scalar twin of the Q4_K tile kernel (tile `k` of a unit of `k_u` tiles).
fn scalar_tile_q4k(unit: &[u8], k_u: usize, k: usize, act: &[BlockQ8K]) -> [f32; TILE] {
    let tbb = tile_block_bytes(GgmlType::Q4K).unwrap_or(usize::MAX);
    let mut acc = [0f32; TILE];
    for (b, grp) in unit.chunks_exact(k_u * tbb).enumerate() {
        let blk = &grp[k * tbb..(k + 1) * tbb];
        let a = &act[b];
        let (dy, ys, bsums) = (a.d, a.qs, a.bsums);
        for r in 0..TILE {
            let mut isum = 0i32;
            for j in 0..4 {
                let (mut lo, mut hi) = (0i32, 0i32);
                for c in 0..8 {
                    for i in 0..4 {
                        let q = blk[320 + 512 * j + 64 * c + 4 * r + i];
                        lo += (q & 0xF) as i32 * ys[64 * j + 4 * c + i] as i32;
                        hi += (q >> 4) as i32 * ys[64 * j + 32 + 4 * c + i] as i32;
                    }
                }
                isum += lo * blk[64 + 16 * (2 * j) + r] as i32;
                isum += hi * blk[64 + 16 * (2 * j + 1) + r] as i32;
            }
            let mut msum = 0i32;
            for s in 0..8 {
                let bs = bsums[2 * s] as i32 + bsums[2 * s + 1] as i32;
                msum += blk[192 + 16 * s + r] as i32 * bs;
            }
            let dd = get_f16(blk, r) * dy;
            let dm = get_f16(&blk[32..], r) * dy;
            acc[r] = dd.mul_add(isum as f32, acc[r]);
            acc[r] = (-dm).mul_add(msum as f32, acc[r]);
        }
    }
    acc
}

/// The scalar twin of the Q6_K tile kernel (tile `k` of a unit of `k_u` tiles): per row the
/// exact integer `sum_s scale_s * (dot_s - 32 * bsum_s)` over the 16 sub-blocks of 16
/// columns (`dot_s` of the unsigned quants; the same integer as ggml's signed sum), then one
/// multiply and one fused multiply-add, as each SIMD lane does.
fn scalar_tile_q6k(unit: &[u8], k_u: usize, k: usize, act: &[BlockQ8K]) -> [f32; TILE] {
    let tbb = tile_block_bytes(GgmlType::Q6K).unwrap_or(usize::MAX);
    let mut acc = [0f32; TILE];
    for (b, grp) in unit.chunks_exact(k_u * tbb).enumerate() {
        let blk = &grp[k * tbb..(k + 1) * tbb];
        let a = &act[b];
        let (ys, bsums) = (&a.qs, &a.bsums);
        for r in 0..TILE {
            let mut dots = [0i32; 16];
            for j in 0..4 {
                for c in 0..8 {
                    for i in 0..4 {
                        let (lo, hi) = q6k_packed_quants(blk, j, c, r, i);
                        dots[4 * j + c / 4] += lo * ys[64 * j + 4 * c + i] as i32;
                        dots[4 * j + 2 + c / 4] += hi * ys[64 * j + 32 + 4 * c + i] as i32;
                    }
                }
            }
            let (mut isum, mut msum) = (0i32, 0i32);
            for s in 0..16 {
                let sc = blk[Q6K_SCALES + 16 * s + r] as i8 as i32;
                isum += sc * dots[s];
                msum += sc * bsums[s] as i32;
            }
            let d = get_f16(blk, r) * a.d;
            acc[r] = d.mul_add((isum - 32 * msum) as f32, acc[r]);
        }
    }
    acc
}

/// The bytes of one packed tile block, for the SIMD kernels' bounds checks.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) fn tile_block_len(ty: GgmlType) -> usize {
    tile_block_bytes(ty).unwrap_or(usize::MAX)
}

const _: () = assert!(QK_K == 256 && QK == 32);
