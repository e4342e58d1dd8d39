//! `f32` vector kernels of the token path outside the matrix products: attention scores
//! (`q . k` over a block of cached keys), the attention's weighted sum of values, softmax,
//! the gated activations of the feed-forward block (GeGLU, SwiGLU) and a plain dot product
//! (also the gallery's exact scan).
//!
//! **One source, every path bit-identical.** The dot-product kernels ([`dot`], [`scores`],
//! [`weighted_sum`]) are written once, generic over a 16-lane vector type: two AVX registers
//! (AVX2), one AVX-512 register, four NEON registers, or a `[f32; 16]` (the scalar twin).
//! Every lane performs the same fused multiply-adds (`f32::mul_add` in the twin) and every
//! type reduces the lanes in the same tree, so the paths give the same bits. The
//! element-wise kernels ([`softmax`], [`gelu_tanh_mul`], [`silu_mul`], [`exp`]; a polynomial
//! `exp`, no libm) are plain loops compiled once for the baseline target (the scalar twin,
//! and on aarch64 already NEON) and again inside `#[target_feature]` functions for AVX2 and
//! AVX-512, where the compiler vectorizes them; Rust never contracts `a * b + c`, so those
//! agree bit for bit too. `tests/quant_simd.rs` checks both on every path of the machine
//! it runs on (natively and under qemu for aarch64).
//!
//! **Blocking.** [`scores`] takes up to four queries at a time against each key, so a key
//! row is read once per four queries (prefill), and one query against four keys at a time
//! (decode); [`weighted_sum`] keeps four queries' 16-lane output chunks in registers while it
//! walks the values. The order of the additions for one (query, key) pair or one output value
//! does not depend on how the queries are blocked, so a token gets the same attention output
//! in a batch of 64 as alone.
//!
//! ```
//! use edgeai_core::quant::vector::{self, Strided, StridedMut};
//!
//! // Two queries and three keys of width 4.
//! let q = [1.0f32, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0];
//! let k = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0];
//! let mut s = [0.0f32; 6];
//! vector::scores(
//!     Strided::new(&q, 2, 4, 4),
//!     Strided::new(&k, 3, 4, 4),
//!     &mut StridedMut::new(&mut s, 2, 3, 3),
//! );
//! assert_eq!(s, [1.0, 5.0, 9.0, 2.0, 6.0, 10.0]);
//! vector::softmax(&mut s[..3], 1.0);
//! assert!((s[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
//! ```

#![allow(clippy::needless_range_loop)] // index loops over lanes are what vectorizes

use half::f16;

use super::blocks::{BlockQ8_0, QK};
use super::dispatch;
use super::KernelPath;
use crate::Result;

/// Lanes (independent partial sums) of every kernel here.
const L: usize = 16;

/// `count` rows of `len` elements, row `i` at `data[i * stride..][..len]` (`T`: `f32`, or
/// [`f16`] for a half-precision KV cache, or [`BlockQ8_0`] for a q8_0 one: then `len` and
/// `stride` count blocks of 32 values).
#[derive(Debug)]
pub struct Strided<'a, T = f32> {
    data: &'a [T],
    count: usize,
    len: usize,
    stride: usize,
}

impl<T> Clone for Strided<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Strided<'_, T> {}

/// The shape checks of [`Strided::new`] and [`StridedMut::new`].
fn check_rows(have: usize, count: usize, len: usize, stride: usize) {
    assert!(
        count <= 1 || len <= stride,
        "row length {len} > stride {stride}"
    );
    let need = if count == 0 {
        0
    } else {
        (count - 1) * stride + len
    };
    assert!(
        have >= need,
        "{have} values for {count} rows of {len} at stride {stride}"
    );
}

impl<'a, T> Strided<'a, T> {
    /// `count` rows of `len` values `stride` apart in `data`.
    ///
    /// # Panics
    /// If `len > stride` (with more than one row) or `data` is too short for the rows.
    pub fn new(data: &'a [T], count: usize, len: usize, stride: usize) -> Self {
        check_rows(data.len(), count, len, stride);
        Self {
            data,
            count,
            len,
            stride,
        }
    }

    #[inline(always)]
    fn row(&self, i: usize) -> &'a [T] {
        &self.data[i * self.stride..i * self.stride + self.len]
    }

    /// Number of rows.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Values per row.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the rows hold no values.
    pub fn is_empty(&self) -> bool {
        self.count == 0 || self.len == 0
    }
}

/// `count` mutable rows of `len` values, row `i` at `data[i * stride..][..len]`.
#[derive(Debug)]
pub struct StridedMut<'a> {
    data: &'a mut [f32],
    count: usize,
    len: usize,
    stride: usize,
}

impl<'a> StridedMut<'a> {
    /// `count` rows of `len` values `stride` apart in `data`.
    ///
    /// # Panics
    /// If `len > stride` (with more than one row) or `data` is too short for the rows.
    pub fn new(data: &'a mut [f32], count: usize, len: usize, stride: usize) -> Self {
        check_rows(data.len(), count, len, stride);
        Self {
            data,
            count,
            len,
            stride,
        }
    }

    #[inline(always)]
    fn at(&mut self, i: usize, j: usize) -> &mut f32 {
        &mut self.data[i * self.stride + j]
    }

    #[inline(always)]
    fn chunk(&mut self, i: usize, c: usize) -> &mut [f32; L] {
        let o = i * self.stride + c;
        (&mut self.data[o..o + L]).try_into().expect("L values")
    }
}

/// The kernels of one path (see the module docs).
pub(crate) struct VectorKernels {
    pub dot: fn(&[f32], &[f32]) -> f32,
    pub scores: fn(Strided<'_>, Strided<'_>, &mut StridedMut<'_>),
    pub weighted_sum: fn(Strided<'_>, Strided<'_>, &mut StridedMut<'_>),
    pub scores_f16: fn(Strided<'_>, Strided<'_, f16>, &mut StridedMut<'_>),
    pub weighted_sum_f16: fn(Strided<'_>, Strided<'_, f16>, &mut StridedMut<'_>),
    pub scores_q8_0: fn(Strided<'_>, Strided<'_, BlockQ8_0>, &mut StridedMut<'_>),
    pub weighted_sum_q8_0: fn(Strided<'_>, Strided<'_, BlockQ8_0>, &mut StridedMut<'_>),
    pub softmax: fn(&mut [f32], f32),
    pub gelu_mul: fn(&mut [f32], &[f32]),
    pub silu_mul: fn(&mut [f32], &[f32]),
    pub exp: fn(&mut [f32]),
}

/// Sixteen `f32` lanes: the unit of the dot-product kernels. Every implementation performs
/// the same fused multiply-adds lane by lane and the same reduction tree in [`F32x16::hsum`]
/// (`l + l+8`, then `+4`, `+2`, `+1`), so every path gives the same bits.
trait F32x16: Copy {
    /// # Safety
    /// The implementation's target features are available (all methods).
    unsafe fn zero() -> Self;
    /// # Safety
    /// `p` points to 16 readable values.
    unsafe fn load(p: *const f32) -> Self;
    /// 16 halves, widened (exactly).
    ///
    /// # Safety
    /// `p` points to 16 readable values.
    unsafe fn load_f16(p: *const f16) -> Self;
    /// 16 signed bytes, widened and multiplied by `d` (exactly: `d` is an `f16` widened, so
    /// the product of its 11-bit significand and a byte fits an `f32`).
    ///
    /// # Safety
    /// `p` points to 16 readable values.
    unsafe fn load_i8_scaled(p: *const i8, d: f32) -> Self;
    /// # Safety
    /// `p` points to 16 writable values.
    unsafe fn store(self, p: *mut f32);
    unsafe fn splat(v: f32) -> Self;
    /// `self + a * b`, fused (one rounding).
    unsafe fn fma(self, a: Self, b: Self) -> Self;
    unsafe fn hsum(self) -> f32;
}

/// The scalar twin: `f32::mul_add` is the same fused operation (libm's `fmaf` where the
/// build has no FMA instruction).
#[derive(Clone, Copy)]
struct Scalar16([f32; L]);

impl F32x16 for Scalar16 {
    #[inline(always)]
    unsafe fn zero() -> Self {
        Scalar16([0.0; L])
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees 16 readable values.
        Scalar16(unsafe { std::ptr::read_unaligned(p as *const [f32; L]) })
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> Self {
        // SAFETY: the caller guarantees 16 readable values.
        let h = unsafe { std::ptr::read_unaligned(p as *const [f16; L]) };
        Scalar16(h.map(f16::to_f32))
    }
    #[inline(always)]
    unsafe fn load_i8_scaled(p: *const i8, d: f32) -> Self {
        // SAFETY: the caller guarantees 16 readable values.
        let q = unsafe { std::ptr::read_unaligned(p as *const [i8; L]) };
        let mut v = [0f32; L];
        for l in 0..L {
            v[l] = q[l] as f32 * d;
        }
        Scalar16(v)
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees 16 writable values.
        unsafe { std::ptr::write_unaligned(p as *mut [f32; L], self.0) }
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        Scalar16([v; L])
    }
    #[inline(always)]
    unsafe fn fma(self, a: Self, b: Self) -> Self {
        Scalar16(std::array::from_fn(|l| a.0[l].mul_add(b.0[l], self.0[l])))
    }
    #[inline(always)]
    unsafe fn hsum(self) -> f32 {
        let mut a = self.0;
        let mut w = L / 2;
        while w > 0 {
            for i in 0..w {
                a[i] += a[i + w];
            }
            w /= 2;
        }
        a[0]
    }
}

#[cfg(target_arch = "x86_64")]
mod x86_lanes {
    use super::F32x16;
    use half::f16;
    use std::arch::x86_64::*;

    /// 16 lanes as two AVX registers (lanes 0-7, 8-15).
    #[derive(Clone, Copy)]
    pub(super) struct Avx2x2(__m256, __m256);

    #[inline(always)]
    unsafe fn hsum8(v: __m256) -> f32 {
        // SAFETY (this and every method below): the caller runs with AVX2 + FMA (the
        // trait's contract); pointer arguments are the caller's.
        unsafe {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
        }
    }

    impl F32x16 for Avx2x2 {
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn zero() -> Self {
            Avx2x2(_mm256_setzero_ps(), _mm256_setzero_ps())
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn load(p: *const f32) -> Self {
            unsafe { Avx2x2(_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn load_f16(p: *const f16) -> Self {
            unsafe {
                let h = _mm256_loadu_si256(p as *const __m256i);
                Avx2x2(
                    _mm256_cvtph_ps(_mm256_castsi256_si128(h)),
                    _mm256_cvtph_ps(_mm256_extracti128_si256::<1>(h)),
                )
            }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn load_i8_scaled(p: *const i8, d: f32) -> Self {
            unsafe {
                let q = _mm_loadu_si128(p as *const __m128i);
                let d = _mm256_set1_ps(d);
                Avx2x2(
                    _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d),
                    _mm256_mul_ps(
                        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128::<8>(q))),
                        d,
                    ),
                )
            }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn store(self, p: *mut f32) {
            unsafe {
                _mm256_storeu_ps(p, self.0);
                _mm256_storeu_ps(p.add(8), self.1);
            }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn splat(v: f32) -> Self {
            Avx2x2(_mm256_set1_ps(v), _mm256_set1_ps(v))
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn fma(self, a: Self, b: Self) -> Self {
            Avx2x2(
                _mm256_fmadd_ps(a.0, b.0, self.0),
                _mm256_fmadd_ps(a.1, b.1, self.1),
            )
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn hsum(self) -> f32 {
            unsafe { hsum8(_mm256_add_ps(self.0, self.1)) }
        }
    }

    /// 16 lanes in one AVX-512 register.
    #[derive(Clone, Copy)]
    pub(super) struct Avx512(__m512);

    impl F32x16 for Avx512 {
        #[inline]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn zero() -> Self {
            Avx512(_mm512_setzero_ps())
        }
        #[inline]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn load(p: *const f32) -> Self {
            unsafe { Avx512(_mm512_loadu_ps(p)) }
        }
        #[inline]
        #[target_feature(enable = "avx512f,avx2,fma,f16c")]
        unsafe fn load_f16(p: *const f16) -> Self {
            unsafe { Avx512(_mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))) }
        }
        #[inline]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn load_i8_scaled(p: *const i8, d: f32) -> Self {
            unsafe {
                let q = _mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i));
                Avx512(_mm512_mul_ps(_mm512_cvtepi32_ps(q), _mm512_set1_ps(d)))
            }
        }
        #[inline]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn store(self, p: *mut f32) {
            unsafe { _mm512_storeu_ps(p, self.0) }
        }
        #[inline]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn splat(v: f32) -> Self {
            Avx512(_mm512_set1_ps(v))
        }
        #[inline]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn fma(self, a: Self, b: Self) -> Self {
            Avx512(_mm512_fmadd_ps(a.0, b.0, self.0))
        }
        #[inline]
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn hsum(self) -> f32 {
            let lo = _mm512_castps512_ps256(self.0);
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(self.0)));
            unsafe { hsum8(_mm256_add_ps(lo, hi)) }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon_lanes {
    use super::F32x16;
    use half::f16;
    use std::arch::aarch64::*;

    /// Four halves to four floats with `fcvtl` (base ARMv8 AdvSIMD; the intrinsic's
    /// `float16x4_t` type is not stable Rust).
    #[inline(always)]
    unsafe fn cvt4(p: *const f16) -> float32x4_t {
        // SAFETY: the caller guarantees 4 readable values; `fcvtl` only reads its register.
        unsafe {
            let h = vld1_u16(p as *const u16);
            let r: float32x4_t;
            std::arch::asm!(
                "fcvtl {0:v}.4s, {1:v}.4h",
                out(vreg) r,
                in(vreg) h,
                options(pure, nomem, nostack)
            );
            r
        }
    }

    /// 16 lanes as four NEON registers (lanes 0-3, 4-7, 8-11, 12-15).
    #[derive(Clone, Copy)]
    pub(super) struct Neon4([float32x4_t; 4]);

    // SAFETY (every method): NEON is part of the aarch64 baseline; pointer arguments are
    // the caller's (the trait's contract).
    impl F32x16 for Neon4 {
        #[inline(always)]
        unsafe fn zero() -> Self {
            unsafe { Neon4([vdupq_n_f32(0.0); 4]) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            unsafe {
                Neon4([
                    vld1q_f32(p),
                    vld1q_f32(p.add(4)),
                    vld1q_f32(p.add(8)),
                    vld1q_f32(p.add(12)),
                ])
            }
        }
        #[inline(always)]
        unsafe fn load_f16(p: *const f16) -> Self {
            unsafe { Neon4([cvt4(p), cvt4(p.add(4)), cvt4(p.add(8)), cvt4(p.add(12))]) }
        }
        #[inline(always)]
        unsafe fn load_i8_scaled(p: *const i8, d: f32) -> Self {
            unsafe {
                let q = vld1q_s8(p);
                let (lo, hi) = (vmovl_s8(vget_low_s8(q)), vmovl_s8(vget_high_s8(q)));
                let f = |h: int16x4_t| vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(h)), d);
                Neon4([
                    f(vget_low_s16(lo)),
                    f(vget_high_s16(lo)),
                    f(vget_low_s16(hi)),
                    f(vget_high_s16(hi)),
                ])
            }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe {
                for (i, v) in self.0.iter().enumerate() {
                    vst1q_f32(p.add(4 * i), *v);
                }
            }
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            unsafe { Neon4([vdupq_n_f32(v); 4]) }
        }
        #[inline(always)]
        unsafe fn fma(self, a: Self, b: Self) -> Self {
            unsafe {
                Neon4(std::array::from_fn(|i| {
                    vfmaq_f32(self.0[i], a.0[i], b.0[i])
                }))
            }
        }
        #[inline(always)]
        unsafe fn hsum(self) -> f32 {
            unsafe {
                let [a, b, c, d] = self.0;
                // l + l+8, then l + l+4: one vector of lanes 0-3.
                let s = vaddq_f32(vaddq_f32(a, c), vaddq_f32(b, d));
                // l + l+2, then l + l+1.
                let s2 = vadd_f32(vget_low_f32(s), vget_high_f32(s));
                vget_lane_f32::<0>(s2) + vget_lane_f32::<1>(s2)
            }
        }
    }
}

/// An element type of the keys and values: `f32`, `f16`, or a q8_0 block of 32 values.
trait Elem: Copy {
    /// Values per element.
    const PER: usize;
    /// Values `c..c + 16` of `row` (`c` a multiple of 16).
    ///
    /// # Safety
    /// `c + 16 <= row.len() * PER`; `V`'s target features are available.
    unsafe fn load_at<V: F32x16>(row: &[Self], c: usize) -> V;
    /// Value `e` of `row`, widened exactly as [`Elem::load_at`] widens it.
    fn value(row: &[Self], e: usize) -> f32;
}

impl Elem for f32 {
    const PER: usize = 1;
    #[inline(always)]
    unsafe fn load_at<V: F32x16>(row: &[Self], c: usize) -> V {
        // SAFETY: the caller's contract (16 values from c are in the row).
        unsafe { V::load(row.as_ptr().add(c)) }
    }
    #[inline(always)]
    fn value(row: &[Self], e: usize) -> f32 {
        row[e]
    }
}

impl Elem for f16 {
    const PER: usize = 1;
    #[inline(always)]
    unsafe fn load_at<V: F32x16>(row: &[Self], c: usize) -> V {
        // SAFETY: the caller's contract.
        unsafe { V::load_f16(row.as_ptr().add(c)) }
    }
    #[inline(always)]
    fn value(row: &[Self], e: usize) -> f32 {
        f16::to_f32(row[e])
    }
}

impl Elem for BlockQ8_0 {
    const PER: usize = QK;
    #[inline(always)]
    unsafe fn load_at<V: F32x16>(row: &[Self], c: usize) -> V {
        // SAFETY: c is a multiple of 16 below row.len() * 32, so the block `c / 32` exists
        // and holds the 16 bytes from `c % 32` (0 or 16).
        unsafe {
            let b = row.get_unchecked(c / QK);
            V::load_i8_scaled(b.qs.as_ptr().add(c % QK), b.d.to_f32())
        }
    }
    #[inline(always)]
    fn value(row: &[Self], e: usize) -> f32 {
        let b = &row[e / QK];
        b.qs[e % QK] as f32 * b.d.to_f32()
    }
}

/// The portable bodies, inlined into every path's entry points (generic over the lanes).
mod body {
    use super::{Elem, F32x16, Strided, StridedMut, L};

    /// Values `from..to` (at most 16) of `x`, widened and zero-padded to 16 lanes.
    #[inline(always)]
    fn padded<E: Elem>(x: &[E], from: usize, to: usize) -> [f32; L] {
        let mut p = [0f32; L];
        for e in from..to {
            p[e - from] = E::value(x, e);
        }
        p
    }

    /// Dot product over the shorter length: 16 fused partial sums, the tail zero-padded.
    ///
    /// # Safety
    /// `V`'s target features are available.
    #[inline(always)]
    pub unsafe fn dot<V: F32x16, A: Elem, B: Elem>(a: &[A], b: &[B]) -> f32 {
        let n = (a.len() * A::PER).min(b.len() * B::PER);
        let full = n / L * L;
        // SAFETY: every load reads 16 values at c < full <= n of both rows, or a padded
        // local array.
        unsafe {
            let mut acc = V::zero();
            let mut c = 0;
            while c < full {
                acc = acc.fma(A::load_at::<V>(a, c), B::load_at::<V>(b, c));
                c += L;
            }
            let (x, y) = (padded(a, full, n), padded(b, full, n));
            acc.fma(V::load(x.as_ptr()), V::load(y.as_ptr())).hsum()
        }
    }

    /// `[a[t] . b for t in 0..4]` (each of `a` at least `b.len()` long), each in exactly
    /// [`dot`]'s order.
    ///
    /// # Safety
    /// `V`'s target features are available.
    #[inline(always)]
    pub unsafe fn dot4<V: F32x16, A: Elem, B: Elem>(a: [&[A]; 4], b: &[B]) -> [f32; 4] {
        let n = b.len() * B::PER;
        for r in a {
            assert!(r.len() * A::PER >= n, "dot4 rows shorter than the vector");
        }
        let full = n / L * L;
        // SAFETY: as in `dot`: loads at c < full <= n of rows of at least n values, or padded.
        unsafe {
            let mut s = [V::zero(); 4];
            let mut c = 0;
            while c < full {
                let y = B::load_at::<V>(b, c);
                for t in 0..4 {
                    s[t] = s[t].fma(A::load_at::<V>(a[t], c), y);
                }
                c += L;
            }
            let y = padded(b, full, n);
            let y = V::load(y.as_ptr());
            // Loops, not `array::from_fn`: a closure does not inherit the kernel's target
            // features, so its intrinsics became out-of-line calls (6 % of a SmolLM2 decode
            // in `perf`, through the one-query scores of f16 keys).
            let mut d = [0f32; 4];
            for t in 0..4 {
                let x = padded(a[t], full, n);
                d[t] = s[t].fma(V::load(x.as_ptr()), y).hsum();
            }
            d
        }
    }

    /// # Safety
    /// `V`'s target features are available.
    #[inline(always)]
    pub unsafe fn scores<V: F32x16, K: Elem>(
        q: Strided<'_>,
        k: Strided<'_, K>,
        out: &mut StridedMut<'_>,
    ) {
        assert_eq!(q.len, k.len * K::PER, "query and key widths");
        assert!(
            out.count >= q.count && out.len >= k.count,
            "score rows too small"
        );
        let mut i = 0;
        // SAFETY (dot4 / dot): the caller's contract.
        unsafe {
            while i + 4 <= q.count {
                let qs = [q.row(i), q.row(i + 1), q.row(i + 2), q.row(i + 3)];
                for j in 0..k.count {
                    let d = dot4::<V, f32, K>(qs, k.row(j));
                    for t in 0..4 {
                        *out.at(i + t, j) = d[t];
                    }
                }
                i += 4;
            }
            while i < q.count {
                let qi = q.row(i);
                let mut j = 0;
                while j + 4 <= k.count {
                    // a * b == b * a, so this is dot(qi, k_j) in dot4's order.
                    let d =
                        dot4::<V, K, f32>([k.row(j), k.row(j + 1), k.row(j + 2), k.row(j + 3)], qi);
                    for t in 0..4 {
                        *out.at(i, j + t) = d[t];
                    }
                    j += 4;
                }
                while j < k.count {
                    *out.at(i, j) = dot::<V, K, f32>(k.row(j), qi);
                    j += 1;
                }
                i += 1;
            }
        }
    }

    /// # Safety
    /// `V`'s target features are available.
    #[inline(always)]
    pub unsafe fn weighted_sum<V: F32x16, K: Elem>(
        w: Strided<'_>,
        v: Strided<'_, K>,
        out: &mut StridedMut<'_>,
    ) {
        assert_eq!(w.len, v.count, "weights per row and value rows");
        assert!(
            out.count >= w.count && out.len >= v.len * K::PER,
            "output rows too small"
        );
        let mut i = 0;
        // SAFETY: the caller's contract.
        unsafe {
            while i + 4 <= w.count {
                weighted::<V, K, 4>(w, v, out, i);
                i += 4;
            }
            while i < w.count {
                weighted::<V, K, 1>(w, v, out, i);
                i += 1;
            }
        }
    }

    /// Rows `i..i + M` of [`weighted_sum`], each value chunk read once for the `M` rows: per
    /// output value `fma(w_j, v_j, acc)` for j = 0, 1, ... in this order, whatever `M`.
    ///
    /// # Safety
    /// `V`'s target features are available.
    #[inline(always)]
    unsafe fn weighted<V: F32x16, K: Elem, const M: usize>(
        w: Strided<'_>,
        v: Strided<'_, K>,
        out: &mut StridedMut<'_>,
        i: usize,
    ) {
        let (nk, hd) = (v.count, v.len * K::PER);
        let full = hd / L * L;
        let ws: [&[f32]; M] = std::array::from_fn(|t| &w.row(i + t)[..nk]);
        // SAFETY: loads and stores of 16 values at c < full <= hd within rows checked by
        // `row` / `chunk` (which slice, so they are in bounds).
        unsafe {
            let mut c = 0;
            while c < full {
                // A loop, not `array::from_fn` (see `dot4`).
                let mut acc = [V::zero(); M];
                for (t, a) in acc.iter_mut().enumerate() {
                    *a = V::load(out.chunk(i + t, c).as_ptr());
                }
                for j in 0..nk {
                    let vj = K::load_at::<V>(v.row(j), c);
                    for t in 0..M {
                        acc[t] = acc[t].fma(V::splat(ws[t][j]), vj);
                    }
                }
                for t in 0..M {
                    acc[t].store(out.chunk(i + t, c).as_mut_ptr());
                }
                c += L;
            }
        }
        for t in 0..M {
            for e in full..hd {
                let mut a = *out.at(i + t, e);
                for j in 0..nk {
                    a = ws[t][j].mul_add(K::value(v.row(j), e), a);
                }
                *out.at(i + t, e) = a;
            }
        }
    }

    #[inline(always)]
    fn reduce(mut a: [f32; L]) -> f32 {
        let mut w = L / 2;
        while w > 0 {
            for i in 0..w {
                a[i] += a[i + w];
            }
            w /= 2;
        }
        a[0]
    }

    /// Below this `exp` returns 0 (the true value is under 4.4e-38, at the edge of the
    /// subnormals); above [`EXP_HI`] infinity.
    const EXP_LO: f32 = -86.0;
    const EXP_HI: f32 = 88.7;

    /// `e^x` to about 2 ulp: `2^n * p(r)` with `r = x - n ln 2`, |r| <= ln 2 / 2, and Cephes'
    /// degree-6 polynomial; NaN stays NaN.
    #[inline(always)]
    pub fn exp1(x: f32) -> f32 {
        const LOG2E: f32 = std::f32::consts::LOG2_E;
        // Round to nearest by the 1.5 * 2^23 trick (no libm call, vectorizes everywhere).
        const ROUND: f32 = 12_582_912.0;
        let xc = x.clamp(EXP_LO, EXP_HI);
        let n = (xc * LOG2E + ROUND) - ROUND;
        let r = xc - n * 0.693_359_4 - n * -2.121_944_4e-4;
        let r2 = r * r;
        let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r
            + 4.166_579_6e-2)
            * r
            + 1.666_666_5e-1)
            * r
            + 5e-1)
            * r2
            + r
            + 1.0;
        // 2^(n-1) * 2: n reaches 128 just below EXP_HI (where p < 1), 2^128 itself is not
        // an f32. n >= -124 here, so 2^(n-1) is a normal number.
        let e = f32::from_bits(((n as i32 + 126) as u32) << 23);
        let y = p * e * 2.0;
        if x > EXP_HI {
            f32::INFINITY
        } else if x < EXP_LO {
            0.0
        } else if x.is_nan() {
            x
        } else {
            y
        }
    }

    #[inline(always)]
    pub fn exp(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = exp1(*v);
        }
    }

    /// In place: `s = softmax(s * scale)`.
    #[inline(always)]
    pub fn softmax(s: &mut [f32], scale: f32) {
        let full = s.len() / L * L;
        let mut mx = [f32::NEG_INFINITY; L];
        let mut c = 0;
        while c < full {
            let ch: &mut [f32; L] = (&mut s[c..c + L]).try_into().expect("L values");
            for l in 0..L {
                ch[l] *= scale;
                mx[l] = mx[l].max(ch[l]);
            }
            c += L;
        }
        let mut max = mx.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        for v in s[full..].iter_mut() {
            *v *= scale;
            max = max.max(*v);
        }
        let mut sum = [0f32; L];
        let mut c = 0;
        while c < full {
            let ch: &mut [f32; L] = (&mut s[c..c + L]).try_into().expect("L values");
            for l in 0..L {
                ch[l] = exp1(ch[l] - max);
                sum[l] += ch[l];
            }
            c += L;
        }
        let mut tail = [0f32; L];
        for (t, v) in tail.iter_mut().zip(s[full..].iter_mut()) {
            *v = exp1(*v - max);
            *t = *v;
        }
        for l in 0..L {
            sum[l] += tail[l];
        }
        let inv = 1.0 / reduce(sum);
        for v in s.iter_mut() {
            *v *= inv;
        }
    }

    /// `g = gelu_tanh(g) * u` with `gelu_tanh(x) = x / (1 + e^(-2 sqrt(2/pi) (x + 0.044715 x^3)))`
    /// (the same function as `0.5 x (1 + tanh(...))`, without the cancellation for x < 0).
    #[inline(always)]
    pub fn gelu_mul(g: &mut [f32], u: &[f32]) {
        const K: f32 = -2.0 * 0.797_884_6;
        for (x, &u) in g.iter_mut().zip(u) {
            let v = *x;
            *x = v / (1.0 + exp1(K * v * (1.0 + 0.044_715 * v * v))) * u;
        }
    }

    /// `g = silu(g) * u`, `silu(x) = x / (1 + e^-x)`.
    #[inline(always)]
    pub fn silu_mul(g: &mut [f32], u: &[f32]) {
        for (x, &u) in g.iter_mut().zip(u) {
            let v = *x;
            *x = v / (1.0 + exp1(-v)) * u;
        }
    }
}

/// The baseline build of the bodies: the scalar twin (and, on aarch64, the NEON path).
mod portable {
    use super::{body, BlockQ8_0, Scalar16, Strided, StridedMut};
    use half::f16;

    // SAFETY (the three lane kernels): `Scalar16` needs no target feature.
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        unsafe { body::dot::<Scalar16, f32, f32>(a, b) }
    }
    pub fn scores(q: Strided<'_>, k: Strided<'_>, out: &mut StridedMut<'_>) {
        unsafe { body::scores::<Scalar16, f32>(q, k, out) }
    }
    pub fn weighted_sum(w: Strided<'_>, v: Strided<'_>, out: &mut StridedMut<'_>) {
        unsafe { body::weighted_sum::<Scalar16, f32>(w, v, out) }
    }
    pub fn scores_f16(q: Strided<'_>, k: Strided<'_, f16>, out: &mut StridedMut<'_>) {
        unsafe { body::scores::<Scalar16, f16>(q, k, out) }
    }
    pub fn weighted_sum_f16(w: Strided<'_>, v: Strided<'_, f16>, out: &mut StridedMut<'_>) {
        unsafe { body::weighted_sum::<Scalar16, f16>(w, v, out) }
    }
    pub fn scores_q8_0(q: Strided<'_>, k: Strided<'_, BlockQ8_0>, out: &mut StridedMut<'_>) {
        unsafe { body::scores::<Scalar16, BlockQ8_0>(q, k, out) }
    }
    pub fn weighted_sum_q8_0(w: Strided<'_>, v: Strided<'_, BlockQ8_0>, out: &mut StridedMut<'_>) {
        unsafe { body::weighted_sum::<Scalar16, BlockQ8_0>(w, v, out) }
    }
    pub fn softmax(s: &mut [f32], scale: f32) {
        body::softmax(s, scale)
    }
    pub fn gelu_mul(g: &mut [f32], u: &[f32]) {
        body::gelu_mul(g, u)
    }
    pub fn silu_mul(g: &mut [f32], u: &[f32]) {
        body::silu_mul(g, u)
    }
    pub fn exp(x: &mut [f32]) {
        body::exp(x)
    }
}

/// aarch64: the lane kernels on NEON registers, the rest as the portable build (which the
/// baseline target already vectorizes with NEON).
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon {
    use super::neon_lanes::Neon4;
    use super::{body, portable, BlockQ8_0, Strided, StridedMut, VectorKernels};
    use half::f16;

    // SAFETY (all three): NEON is part of the aarch64 baseline.
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        unsafe { body::dot::<Neon4, f32, f32>(a, b) }
    }
    fn scores(q: Strided<'_>, k: Strided<'_>, out: &mut StridedMut<'_>) {
        unsafe { body::scores::<Neon4, f32>(q, k, out) }
    }
    fn weighted_sum(w: Strided<'_>, v: Strided<'_>, out: &mut StridedMut<'_>) {
        unsafe { body::weighted_sum::<Neon4, f32>(w, v, out) }
    }
    fn scores_f16(q: Strided<'_>, k: Strided<'_, f16>, out: &mut StridedMut<'_>) {
        unsafe { body::scores::<Neon4, f16>(q, k, out) }
    }
    fn weighted_sum_f16(w: Strided<'_>, v: Strided<'_, f16>, out: &mut StridedMut<'_>) {
        unsafe { body::weighted_sum::<Neon4, f16>(w, v, out) }
    }
    fn scores_q8_0(q: Strided<'_>, k: Strided<'_, BlockQ8_0>, out: &mut StridedMut<'_>) {
        unsafe { body::scores::<Neon4, BlockQ8_0>(q, k, out) }
    }
    fn weighted_sum_q8_0(w: Strided<'_>, v: Strided<'_, BlockQ8_0>, out: &mut StridedMut<'_>) {
        unsafe { body::weighted_sum::<Neon4, BlockQ8_0>(w, v, out) }
    }

    pub(crate) static TABLE: VectorKernels = VectorKernels {
        dot,
        scores,
        weighted_sum,
        scores_f16,
        weighted_sum_f16,
        scores_q8_0,
        weighted_sum_q8_0,
        softmax: portable::softmax,
        gelu_mul: portable::gelu_mul,
        silu_mul: portable::silu_mul,
        exp: portable::exp,
    };
}

pub(crate) static PORTABLE: VectorKernels = VectorKernels {
    dot: portable::dot,
    scores: portable::scores,
    weighted_sum: portable::weighted_sum,
    scores_f16: portable::scores_f16,
    weighted_sum_f16: portable::weighted_sum_f16,
    scores_q8_0: portable::scores_q8_0,
    weighted_sum_q8_0: portable::weighted_sum_q8_0,
    softmax: portable::softmax,
    gelu_mul: portable::gelu_mul,
    silu_mul: portable::silu_mul,
    exp: portable::exp,
};

/// The bodies compiled with the target features `$feat`; each safe wrapper is installed in a
/// dispatch table only after run-time detection of those features.
#[cfg(target_arch = "x86_64")]
macro_rules! x86_build {
    ($name:ident, $lanes:ty, $feat:literal) => {
        pub(crate) mod $name {
            use super::super::x86_lanes::*;
            use super::super::{body, BlockQ8_0, Strided, StridedMut, VectorKernels};
            use half::f16;

            #[target_feature(enable = $feat)]
            unsafe fn dot_t(a: &[f32], b: &[f32]) -> f32 {
                unsafe { body::dot::<$lanes, f32, f32>(a, b) }
            }
            #[target_feature(enable = $feat)]
            unsafe fn scores_t(q: Strided<'_>, k: Strided<'_>, out: &mut StridedMut<'_>) {
                unsafe { body::scores::<$lanes, f32>(q, k, out) }
            }
            #[target_feature(enable = $feat)]
            unsafe fn weighted_sum_t(w: Strided<'_>, v: Strided<'_>, out: &mut StridedMut<'_>) {
                unsafe { body::weighted_sum::<$lanes, f32>(w, v, out) }
            }
            #[target_feature(enable = $feat)]
            unsafe fn scores_f16_t(q: Strided<'_>, k: Strided<'_, f16>, out: &mut StridedMut<'_>) {
                unsafe { body::scores::<$lanes, f16>(q, k, out) }
            }
            #[target_feature(enable = $feat)]
            unsafe fn weighted_sum_f16_t(
                w: Strided<'_>,
                v: Strided<'_, f16>,
                out: &mut StridedMut<'_>,
            ) {
                unsafe { body::weighted_sum::<$lanes, f16>(w, v, out) }
            }
            #[target_feature(enable = $feat)]
            unsafe fn scores_q8_0_t(
                q: Strided<'_>,
                k: Strided<'_, BlockQ8_0>,
                out: &mut StridedMut<'_>,
            ) {
                unsafe { body::scores::<$lanes, BlockQ8_0>(q, k, out) }
            }
            #[target_feature(enable = $feat)]
            unsafe fn weighted_sum_q8_0_t(
                w: Strided<'_>,
                v: Strided<'_, BlockQ8_0>,
                out: &mut StridedMut<'_>,
            ) {
                unsafe { body::weighted_sum::<$lanes, BlockQ8_0>(w, v, out) }
            }
            #[target_feature(enable = $feat)]
            unsafe fn softmax_t(s: &mut [f32], scale: f32) {
                body::softmax(s, scale)
            }
            #[target_feature(enable = $feat)]
            unsafe fn gelu_mul_t(g: &mut [f32], u: &[f32]) {
                body::gelu_mul(g, u)
            }
            #[target_feature(enable = $feat)]
            unsafe fn silu_mul_t(g: &mut [f32], u: &[f32]) {
                body::silu_mul(g, u)
            }
            #[target_feature(enable = $feat)]
            unsafe fn exp_t(x: &mut [f32]) {
                body::exp(x)
            }

            // SAFETY (all wrappers below): this table is only reachable through
            // `dispatch::table`, which returns it only when the CPU reports `$feat` (the
            // path's detection in `dispatch::detect` checks a superset of these features).
            fn dot(a: &[f32], b: &[f32]) -> f32 {
                unsafe { dot_t(a, b) }
            }
            fn scores(q: Strided<'_>, k: Strided<'_>, out: &mut StridedMut<'_>) {
                unsafe { scores_t(q, k, out) }
            }
            fn weighted_sum(w: Strided<'_>, v: Strided<'_>, out: &mut StridedMut<'_>) {
                unsafe { weighted_sum_t(w, v, out) }
            }
            fn scores_f16(q: Strided<'_>, k: Strided<'_, f16>, out: &mut StridedMut<'_>) {
                unsafe { scores_f16_t(q, k, out) }
            }
            fn weighted_sum_f16(w: Strided<'_>, v: Strided<'_, f16>, out: &mut StridedMut<'_>) {
                unsafe { weighted_sum_f16_t(w, v, out) }
            }
            fn scores_q8_0(q: Strided<'_>, k: Strided<'_, BlockQ8_0>, out: &mut StridedMut<'_>) {
                unsafe { scores_q8_0_t(q, k, out) }
            }
            fn weighted_sum_q8_0(
                w: Strided<'_>,
                v: Strided<'_, BlockQ8_0>,
                out: &mut StridedMut<'_>,
            ) {
                unsafe { weighted_sum_q8_0_t(w, v, out) }
            }
            fn softmax(s: &mut [f32], scale: f32) {
                unsafe { softmax_t(s, scale) }
            }
            fn gelu_mul(g: &mut [f32], u: &[f32]) {
                unsafe { gelu_mul_t(g, u) }
            }
            fn silu_mul(g: &mut [f32], u: &[f32]) {
                unsafe { silu_mul_t(g, u) }
            }
            fn exp(x: &mut [f32]) {
                unsafe { exp_t(x) }
            }

            pub(crate) static TABLE: VectorKernels = VectorKernels {
                dot,
                scores,
                weighted_sum,
                scores_f16,
                weighted_sum_f16,
                scores_q8_0,
                weighted_sum_q8_0,
                softmax,
                gelu_mul,
                silu_mul,
                exp,
            };
        }
    };
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    x86_build!(avx2, Avx2x2, "avx2,fma,f16c");
    x86_build!(avx512, Avx512, "avx512f,avx512bw,avx512vl,avx2,fma,f16c");
}

fn table() -> &'static VectorKernels {
    dispatch::current().vector
}

fn table_of(p: KernelPath) -> Result<&'static VectorKernels> {
    Ok(dispatch::kernels(p)?.vector)
}

/// `f32` dot product over the shorter of the two lengths (16 partial sums, on the current
/// kernel path).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (table().dot)(a, b)
}

/// Attention scores: `out[i][j] = q_i . k_j` for every query row `i` and key row `j`.
///
/// # Panics
/// If the query and key widths differ or `out` has fewer than `q.count()` rows of
/// `k.count()` values.
pub fn scores(q: Strided<'_>, k: Strided<'_>, out: &mut StridedMut<'_>) {
    (table().scores)(q, k, out)
}

/// Attention output: `out[i] += sum_j w[i][j] * v_j` for every weight row `i` (one weight per
/// value row), added in the order of `j`.
///
/// # Panics
/// If a weight row's length is not the number of value rows, or `out` has fewer than
/// `w.count()` rows of `v.len()` values.
pub fn weighted_sum(w: Strided<'_>, v: Strided<'_>, out: &mut StridedMut<'_>) {
    (table().weighted_sum)(w, v, out)
}

/// [`scores`] against half-precision keys (a KV cache in `f16`; widened exactly).
///
/// # Panics
/// As [`scores`].
pub fn scores_f16(q: Strided<'_>, k: Strided<'_, f16>, out: &mut StridedMut<'_>) {
    (table().scores_f16)(q, k, out)
}

/// [`weighted_sum`] of half-precision values (widened exactly).
///
/// # Panics
/// As [`weighted_sum`].
pub fn weighted_sum_f16(w: Strided<'_>, v: Strided<'_, f16>, out: &mut StridedMut<'_>) {
    (table().weighted_sum_f16)(w, v, out)
}

/// [`scores`] against q8_0 keys (a KV cache as llama.cpp's `-ctk q8_0`): `k`'s rows are
/// blocks of 32 values (`k.len()` blocks of the query width), each value `d * q` widened
/// exactly, then the same fused sums as [`scores`].
///
/// # Panics
/// As [`scores`] (the query width must be `32 * k.len()`).
pub fn scores_q8_0(q: Strided<'_>, k: Strided<'_, BlockQ8_0>, out: &mut StridedMut<'_>) {
    (table().scores_q8_0)(q, k, out)
}

/// [`weighted_sum`] of q8_0 values (rows of blocks; widened exactly).
///
/// # Panics
/// As [`weighted_sum`].
pub fn weighted_sum_q8_0(w: Strided<'_>, v: Strided<'_, BlockQ8_0>, out: &mut StridedMut<'_>) {
    (table().weighted_sum_q8_0)(w, v, out)
}

/// In place: `s = softmax(s * scale)` (max-subtracted; `-inf` entries get weight 0).
pub fn softmax(s: &mut [f32], scale: f32) {
    (table().softmax)(s, scale)
}

/// In place: `g[i] = gelu_tanh(g[i]) * u[i]` over the shorter length (GeGLU; gelu with the
/// tanh approximation, computed through `exp`, within a few ulp of the libm formula).
pub fn gelu_tanh_mul(g: &mut [f32], u: &[f32]) {
    (table().gelu_mul)(g, u)
}

/// In place: `g[i] = silu(g[i]) * u[i]` over the shorter length (SwiGLU).
pub fn silu_mul(g: &mut [f32], u: &[f32]) {
    (table().silu_mul)(g, u)
}

/// In place: `x[i] = e^x[i]`, to about 2 ulp; 0 below -86 and infinity above 88.7.
pub fn exp(x: &mut [f32]) {
    (table().exp)(x)
}

/// The kernels of one path, for tests and benches that compare paths (an error if `path` is
/// not available on this CPU).
#[derive(Clone, Copy)]
pub struct VectorPath(&'static VectorKernels);

impl std::fmt::Debug for VectorPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VectorPath")
    }
}

impl VectorPath {
    /// The kernels of `path`.
    pub fn new(path: KernelPath) -> Result<Self> {
        Ok(Self(table_of(path)?))
    }
    /// [`dot`] on this path.
    pub fn dot(&self, a: &[f32], b: &[f32]) -> f32 {
        (self.0.dot)(a, b)
    }
    /// [`scores`] on this path.
    pub fn scores(&self, q: Strided<'_>, k: Strided<'_>, out: &mut StridedMut<'_>) {
        (self.0.scores)(q, k, out)
    }
    /// [`weighted_sum`] on this path.
    pub fn weighted_sum(&self, w: Strided<'_>, v: Strided<'_>, out: &mut StridedMut<'_>) {
        (self.0.weighted_sum)(w, v, out)
    }
    /// [`scores_f16`] on this path.
    pub fn scores_f16(&self, q: Strided<'_>, k: Strided<'_, f16>, out: &mut StridedMut<'_>) {
        (self.0.scores_f16)(q, k, out)
    }
    /// [`weighted_sum_f16`] on this path.
    pub fn weighted_sum_f16(&self, w: Strided<'_>, v: Strided<'_, f16>, out: &mut StridedMut<'_>) {
        (self.0.weighted_sum_f16)(w, v, out)
    }
    /// [`scores_q8_0`] on this path.
    pub fn scores_q8_0(&self, q: Strided<'_>, k: Strided<'_, BlockQ8_0>, out: &mut StridedMut<'_>) {
        (self.0.scores_q8_0)(q, k, out)
    }
    /// [`weighted_sum_q8_0`] on this path.
    pub fn weighted_sum_q8_0(
        &self,
        w: Strided<'_>,
        v: Strided<'_, BlockQ8_0>,
        out: &mut StridedMut<'_>,
    ) {
        (self.0.weighted_sum_q8_0)(w, v, out)
    }
    /// [`softmax`] on this path.
    pub fn softmax(&self, s: &mut [f32], scale: f32) {
        (self.0.softmax)(s, scale)
    }
    /// [`gelu_tanh_mul`] on this path.
    pub fn gelu_tanh_mul(&self, g: &mut [f32], u: &[f32]) {
        (self.0.gelu_mul)(g, u)
    }
    /// [`silu_mul`] on this path.
    pub fn silu_mul(&self, g: &mut [f32], u: &[f32]) {
        (self.0.silu_mul)(g, u)
    }
    /// [`exp`] on this path.
    pub fn exp(&self, x: &mut [f32]) {
        (self.0.exp)(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_and_handles_the_edges() {
        let mut worst = 0f64;
        let mut x = -86.0f32;
        while x < 88.7 {
            let got = body::exp1(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(body::exp1(0.0), 1.0);
        assert_eq!(body::exp1(f32::NEG_INFINITY), 0.0);
        assert_eq!(body::exp1(-100.0), 0.0);
        assert_eq!(body::exp1(f32::INFINITY), f32::INFINITY);
        assert_eq!(body::exp1(100.0), f32::INFINITY);
        assert!(body::exp1(f32::NAN).is_nan());
        assert!(body::exp1(88.69).is_finite());
    }

    #[test]
    fn glu_activations_match_the_f64_formulas() {
        let xs: Vec<f32> = (-2000..2000).map(|i| i as f32 * 0.01).collect();
        let (mut g, mut s) = (xs.clone(), xs.clone());
        let ones = vec![1.0f32; xs.len()];
        body::gelu_mul(&mut g, &ones);
        body::silu_mul(&mut s, &ones);
        for ((&x, &g), &s) in xs.iter().zip(&g).zip(&s) {
            let x = x as f64;
            // 0.5 x (1 + tanh(u)) == x / (1 + e^(-2u)); the latter does not cancel in f64.
            let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
            let wg = x / (1.0 + (-2.0 * u).exp());
            let wt = 0.5 * x * (1.0 + u.tanh());
            assert!((wg - wt).abs() < 1e-12, "{x}");
            let ws = x / (1.0 + (-x).exp());
            // The f32 rounding of exp's argument `a` costs ~|a| ulp relative error: that is
            // the conditioning of e^a, which the libm formula in f32 has as well.
            let tol = |a: f64| 4e-7 * (1.0 + a.abs());
            assert!(
                (g as f64 - wg).abs() <= tol(2.0 * u) * wg.abs() + 1e-30,
                "gelu({x}) = {g}, want {wg}"
            );
            assert!(
                (s as f64 - ws).abs() <= tol(x) * ws.abs() + 1e-30,
                "silu({x}) = {s}, want {ws}"
            );
        }
    }
}
