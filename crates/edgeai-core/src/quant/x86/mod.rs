//! x86_64 kernels: AVX2+FMA (+F16C), and AVX-VNNI / AVX-512-VNNI variants that replace the
//! `maddubs`+`madd` pair of the 32-block kernels by one `vpdpbusd`.
//!
//! Integer dot products are exact: `maddubs` never saturates here (|weight| <= 128 unsigned
//! after the sign trick, |activation| <= 127 because our Q8 quantizers clamp to -127..=127,
//! so a pair sums to at most 2*128*127 = 32512). Only the order of the final f32 accumulation
//! differs from the scalar twin.
//!
//! Every `pub(crate) fn` here is a safe wrapper installed in the dispatch table only after
//! runtime detection of its features; the `unsafe` inner functions carry the
//! `#[target_feature]` attributes.

#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::blocks::{BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ6K, BlockQ8K, BlockQ8_0};
use super::scalar::q4k_scales_mins;

/// Runtime check for the AVX2 path.
pub(crate) fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
}

/// Runtime check for the AVX-VNNI path.
pub(crate) fn has_avxvnni() -> bool {
    has_avx2() && is_x86_feature_detected!("avxvnni")
}

/// Runtime check for the AVX-512 VNNI path: its row kernels run at 256-bit width
/// (`vpdpbusd ymm`, needing VL), its packed kernels at 512 (needing BW, which every AVX-512
/// VNNI CPU has).
pub(crate) fn has_avx512vnni() -> bool {
    has_avx2()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vnni")
        && is_x86_feature_detected!("avx512vl")
}

/// How far ahead of the Q8_0 / Q4_0 / Q4_1 block being read the kernels prefetch (the
/// K-quant kernels prefetch their next block, larger than this). A decode step streams
/// every weight once from DRAM, where the hardware prefetchers alone leave bandwidth
/// unused: measured on a Zen 3 (AVX2), Gemma 3 270M decodes about 10% faster at 1 thread
/// with these prefetches (BENCHMARKS.md, session 15). The AVX-512 VNNI kernels use the same.
pub(crate) const PREFETCH_DISTANCE: usize = 4096;

/// Prefetches bytes `from..from + len` of `base` into L1, one request per cache line.
#[inline(always)]
pub(crate) unsafe fn prefetch(base: *const u8, from: usize, len: usize) {
    let mut o = 0;
    while o < len {
        // `wrapping_add`: the address may lie past the slice (a prefetch never faults and
        // reads nothing into the program; no pointer past the allocation is dereferenced).
        _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(from.wrapping_add(o)).cast());
        o += 64;
    }
}

/// f16 -> f32 with the F16C instruction (callers enable `f16c`); `half`'s conversion checks
/// CPU features at run time on every call, which is measurable per block.
#[inline(always)]
unsafe fn h2f(h: half::f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h.to_bits() as i32)))
}

#[inline(always)]
unsafe fn hsum_f32(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps::<1>(v);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline(always)]
unsafe fn hsum_i32(v: __m256i) -> i32 {
    let lo = _mm256_castsi256_si128(v);
    let hi = _mm256_extracti128_si256::<1>(v);
    let s = _mm_add_epi32(lo, hi);
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// 16 packed bytes -> 32 nibbles (low nibbles in the low 128 bits, high nibbles above).
#[inline(always)]
unsafe fn unpack_nibbles(p: *const u8) -> __m256i {
    let tmp = _mm_loadu_si128(p.cast());
    let both = _mm256_set_m128i(_mm_srli_epi16::<4>(tmp), tmp);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

/// 32 bits -> 32 bytes, 0xFF where the bit is set (ggml's `bytes_from_bits_32`).
#[inline(always)]
unsafe fn bytes_from_bits_32(bits: u32) -> __m256i {
    let shuf = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), shuf);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

/// Stamps out the 32-block kernels for one instruction set; `$dot` is the u8 x i8 -> i32x8
/// pairwise multiply-add.
macro_rules! block32_kernels {
    ($feat:literal, $m:ident, $dot:ident) => {
        pub(crate) mod $m {
            use super::*;

            #[target_feature(enable = $feat)]
            unsafe fn q4_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
                let mut acc = _mm256_setzero_ps();
                let off = _mm256_set1_epi8(8);
                for (a, b) in x.iter().zip(y) {
                    let d = _mm256_set1_ps(h2f(a.d) * h2f(b.d));
                    let qx = _mm256_sub_epi8(unpack_nibbles(a.qs.as_ptr()), off);
                    let qy = _mm256_loadu_si256(b.qs.as_ptr().cast());
                    // sign trick: |x| (unsigned) times y with x's sign.
                    let p = $dot(_mm256_sign_epi8(qx, qx), _mm256_sign_epi8(qy, qx));
                    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
                }
                hsum_f32(acc)
            }

            /// One Q4_1 block into (`acc`, `summ`).
            #[inline(always)]
            unsafe fn q4_1_block(
                a: &BlockQ4_1,
                b: &BlockQ8_0,
                sy: f32,
                acc: &mut __m256,
                summ: &mut f32,
            ) {
                let d = _mm256_set1_ps(h2f(a.d) * h2f(b.d));
                *summ += h2f(a.m) * sy;
                let qx = unpack_nibbles(a.qs.as_ptr());
                let qy = _mm256_loadu_si256(b.qs.as_ptr().cast());
                let p = $dot(qx, qy);
                *acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), *acc);
            }

            /// Two accumulator chains (even / odd blocks) to hide the FMA latency; the
            /// 4-token kernel uses the same split, so both give identical results.
            #[target_feature(enable = $feat)]
            unsafe fn q4_1(x: &[BlockQ4_1], y: &[BlockQ8_0], s: &[f32]) -> f32 {
                let n = x.len().min(y.len()).min(s.len());
                let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                let (mut summ0, mut summ1) = (0f32, 0f32);
                let mut i = 0;
                while i + 2 <= n {
                    q4_1_block(&x[i], &y[i], s[i], &mut acc0, &mut summ0);
                    q4_1_block(&x[i + 1], &y[i + 1], s[i + 1], &mut acc1, &mut summ1);
                    i += 2;
                }
                if i < n {
                    q4_1_block(&x[i], &y[i], s[i], &mut acc0, &mut summ0);
                }
                hsum_f32(_mm256_add_ps(acc0, acc1)) + (summ0 + summ1)
            }

            #[target_feature(enable = $feat)]
            unsafe fn q5_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
                let mut acc = _mm256_setzero_ps();
                let hi_off = _mm256_set1_epi8(0xF0u8 as i8);
                for (a, b) in x.iter().zip(y) {
                    let d = _mm256_set1_ps(h2f(a.d) * h2f(b.d));
                    // q - 16 as i8: nibble | 0xF0 where the 5th bit is clear.
                    let hb =
                        _mm256_andnot_si256(bytes_from_bits_32(u32::from_le_bytes(a.qh)), hi_off);
                    let qx = _mm256_or_si256(unpack_nibbles(a.qs.as_ptr()), hb);
                    let qy = _mm256_loadu_si256(b.qs.as_ptr().cast());
                    let p = $dot(_mm256_sign_epi8(qx, qx), _mm256_sign_epi8(qy, qx));
                    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
                }
                hsum_f32(acc)
            }

            pub(crate) fn vec_dot_q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
                // SAFETY: installed in the dispatch table only after runtime detection of
                // this module's target features.
                unsafe { q5_0(x, y) }
            }

            /// One Q8_0 block into `acc`.
            #[inline(always)]
            unsafe fn q8_0_block(a: &BlockQ8_0, b: &BlockQ8_0, acc: &mut __m256) {
                let d = _mm256_set1_ps(h2f(a.d) * h2f(b.d));
                let qx = _mm256_loadu_si256(a.qs.as_ptr().cast());
                let qy = _mm256_loadu_si256(b.qs.as_ptr().cast());
                let p = $dot(_mm256_sign_epi8(qx, qx), _mm256_sign_epi8(qy, qx));
                *acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), *acc);
            }

            /// Even / odd block accumulators, like the 4-token kernel.
            #[target_feature(enable = $feat)]
            unsafe fn q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
                let n = x.len().min(y.len());
                let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                let mut i = 0;
                while i + 2 <= n {
                    q8_0_block(&x[i], &y[i], &mut acc0);
                    q8_0_block(&x[i + 1], &y[i + 1], &mut acc1);
                    i += 2;
                }
                if i < n {
                    q8_0_block(&x[i], &y[i], &mut acc0);
                }
                hsum_f32(_mm256_add_ps(acc0, acc1))
            }

            /// Four activations at once: each weight block is decoded once. Per token the
            /// operations and their order equal the single-token kernel (bit-identical).
            #[target_feature(enable = $feat)]
            unsafe fn q4_0_x4(x: &[BlockQ4_0], y: [&[BlockQ8_0]; 4]) -> [f32; 4] {
                let n = y.iter().fold(x.len(), |n, v| n.min(v.len()));
                let mut acc = [_mm256_setzero_ps(); 4];
                let off = _mm256_set1_epi8(8);
                for i in 0..n {
                    let a = &x[i];
                    let da = h2f(a.d);
                    let qx = _mm256_sub_epi8(unpack_nibbles(a.qs.as_ptr()), off);
                    let ax = _mm256_sign_epi8(qx, qx);
                    for t in 0..4 {
                        let b = &y[t][i];
                        let d = _mm256_set1_ps(da * h2f(b.d));
                        let qy = _mm256_loadu_si256(b.qs.as_ptr().cast());
                        let p = $dot(ax, _mm256_sign_epi8(qy, qx));
                        acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[t]);
                    }
                }
                [
                    hsum_f32(acc[0]),
                    hsum_f32(acc[1]),
                    hsum_f32(acc[2]),
                    hsum_f32(acc[3]),
                ]
            }

            #[target_feature(enable = $feat)]
            unsafe fn q4_1_x4(x: &[BlockQ4_1], y: [&[BlockQ8_0]; 4], s: [&[f32]; 4]) -> [f32; 4] {
                let n = y.iter().fold(x.len(), |n, v| n.min(v.len()));
                let n = s.iter().fold(n, |n, v| n.min(v.len()));
                // [token][even/odd block], as in the single-token kernel.
                let mut acc = [[_mm256_setzero_ps(); 2]; 4];
                let mut summ = [[0f32; 2]; 4];
                for i in 0..n {
                    let a = &x[i];
                    let k = i & 1;
                    let (da, ma) = (h2f(a.d), h2f(a.m));
                    let qx = unpack_nibbles(a.qs.as_ptr());
                    for t in 0..4 {
                        let b = &y[t][i];
                        let d = _mm256_set1_ps(da * h2f(b.d));
                        summ[t][k] += ma * s[t][i];
                        let qy = _mm256_loadu_si256(b.qs.as_ptr().cast());
                        let p = $dot(qx, qy);
                        acc[t][k] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[t][k]);
                    }
                }
                let mut out = [0f32; 4];
                for t in 0..4 {
                    out[t] =
                        hsum_f32(_mm256_add_ps(acc[t][0], acc[t][1])) + (summ[t][0] + summ[t][1]);
                }
                out
            }

            #[target_feature(enable = $feat)]
            unsafe fn q8_0_x4(x: &[BlockQ8_0], y: [&[BlockQ8_0]; 4]) -> [f32; 4] {
                let n = y.iter().fold(x.len(), |n, v| n.min(v.len()));
                let mut acc = [[_mm256_setzero_ps(); 2]; 4];
                for i in 0..n {
                    let a = &x[i];
                    let k = i & 1;
                    let da = h2f(a.d);
                    let qx = _mm256_loadu_si256(a.qs.as_ptr().cast());
                    let ax = _mm256_sign_epi8(qx, qx);
                    for t in 0..4 {
                        let b = &y[t][i];
                        let d = _mm256_set1_ps(da * h2f(b.d));
                        let qy = _mm256_loadu_si256(b.qs.as_ptr().cast());
                        let p = $dot(ax, _mm256_sign_epi8(qy, qx));
                        acc[t][k] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc[t][k]);
                    }
                }
                let mut out = [0f32; 4];
                for t in 0..4 {
                    out[t] = hsum_f32(_mm256_add_ps(acc[t][0], acc[t][1]));
                }
                out
            }

            pub(crate) fn vec_dot_q4_0_q8_0_x4(x: &[BlockQ4_0], y: [&[BlockQ8_0]; 4]) -> [f32; 4] {
                // SAFETY: installed in the dispatch table only after runtime detection of
                // this module's target features.
                unsafe { q4_0_x4(x, y) }
            }
            pub(crate) fn vec_dot_q4_1_q8_0_x4(
                x: &[BlockQ4_1],
                y: [&[BlockQ8_0]; 4],
                s: [&[f32]; 4],
            ) -> [f32; 4] {
                // SAFETY: as above.
                unsafe { q4_1_x4(x, y, s) }
            }
            pub(crate) fn vec_dot_q8_0_q8_0_x4(x: &[BlockQ8_0], y: [&[BlockQ8_0]; 4]) -> [f32; 4] {
                // SAFETY: as above.
                unsafe { q8_0_x4(x, y) }
            }

            pub(crate) fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
                // SAFETY: installed in the dispatch table only after runtime detection of
                // this module's target features.
                unsafe { q4_0(x, y) }
            }
            pub(crate) fn vec_dot_q4_1_q8_0(x: &[BlockQ4_1], y: &[BlockQ8_0], s: &[f32]) -> f32 {
                // SAFETY: as above.
                unsafe { q4_1(x, y, s) }
            }
            pub(crate) fn vec_dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
                // SAFETY: as above.
                unsafe { q8_0(x, y) }
            }
        }
    };
}

#[inline(always)]
unsafe fn dot_avx2(x: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
}

#[inline(always)]
unsafe fn dot_avxvnni(x: __m256i, y: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), x, y)
}

#[inline(always)]
unsafe fn dot_avx512vnni(x: __m256i, y: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), x, y)
}

block32_kernels!("avx2,fma,f16c", avx2, dot_avx2);
block32_kernels!("avx2,fma,f16c,avxvnni", avxvnni, dot_avxvnni);
block32_kernels!(
    "avx2,fma,f16c,avx512vnni,avx512vl",
    avx512vnni,
    dot_avx512vnni
);

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let mut accm = 0f32;
    let mask = _mm256_set1_epi8(0x0F);
    for (a, b) in x.iter().zip(y) {
        let (sc, m) = q4k_scales_mins(&a.scales);
        let summ = q4k_mins_dot(&m, b);
        accm += h2f(a.dmin) * b.d * summ as f32;
        let mut sumi = _mm256_setzero_si256();
        let qs = a.qs.as_ptr();
        let ys = b.qs.as_ptr();
        for j in 0..4 {
            let q = _mm256_loadu_si256(qs.add(32 * j).cast());
            let lo = _mm256_and_si256(q, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), mask);
            let y0 = _mm256_loadu_si256(ys.add(64 * j).cast());
            let y1 = _mm256_loadu_si256(ys.add(64 * j + 32).cast());
            let p0 = _mm256_madd_epi16(
                _mm256_maddubs_epi16(lo, y0),
                _mm256_set1_epi16(sc[2 * j] as i16),
            );
            let p1 = _mm256_madd_epi16(
                _mm256_maddubs_epi16(hi, y1),
                _mm256_set1_epi16(sc[2 * j + 1] as i16),
            );
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        let d = _mm256_set1_ps(h2f(a.d) * b.d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32(acc) - accm
}

/// `sum_k m[k] * (bsums[2k] + bsums[2k+1])`, exact.
#[inline(always)]
unsafe fn q4k_mins_dot(m: &[u8; 8], b: &BlockQ8K) -> i32 {
    let bs = _mm256_loadu_si256(b.bsums.as_ptr().cast());
    let pairs = _mm256_madd_epi16(bs, _mm256_set1_epi16(1));
    let mv = _mm256_cvtepu8_epi32(_mm_loadl_epi64(m.as_ptr().cast()));
    hsum_i32(_mm256_mullo_epi32(pairs, mv))
}

/// Q4_K x four activations; per token bit-identical to [`q4k`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4k_x4(x: &[BlockQ4K], y: [&[BlockQ8K]; 4]) -> [f32; 4] {
    let n = y.iter().fold(x.len(), |n, v| n.min(v.len()));
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut accm = [0f32; 4];
    let mask = _mm256_set1_epi8(0x0F);
    for i in 0..n {
        let a = &x[i];
        let (sc, m) = q4k_scales_mins(&a.scales);
        let (da, dmina) = (h2f(a.d), h2f(a.dmin));
        let mut sumi = [_mm256_setzero_si256(); 4];
        let qs = a.qs.as_ptr();
        for j in 0..4 {
            let q = _mm256_loadu_si256(qs.add(32 * j).cast());
            let lo = _mm256_and_si256(q, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), mask);
            let s0 = _mm256_set1_epi16(sc[2 * j] as i16);
            let s1 = _mm256_set1_epi16(sc[2 * j + 1] as i16);
            for t in 0..4 {
                let ys = y[t][i].qs.as_ptr();
                let y0 = _mm256_loadu_si256(ys.add(64 * j).cast());
                let y1 = _mm256_loadu_si256(ys.add(64 * j + 32).cast());
                let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), s0);
                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), s1);
                sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(p0, p1));
            }
        }
        for t in 0..4 {
            let b = &y[t][i];
            let summ = q4k_mins_dot(&m, b);
            accm[t] += dmina * b.d * summ as f32;
            let d = _mm256_set1_ps(da * b.d);
            acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi[t]), acc[t]);
        }
    }
    [
        hsum_f32(acc[0]) - accm[0],
        hsum_f32(acc[1]) - accm[1],
        hsum_f32(acc[2]) - accm[2],
        hsum_f32(acc[3]) - accm[3],
    ]
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    let m4 = _mm256_set1_epi8(0x0F);
    let m2 = _mm256_set1_epi8(3);
    let m32 = _mm256_set1_epi8(32);
    for (a, b) in x.iter().zip(y) {
        let sc = a.scales;
        let mut sumi = _mm256_setzero_si256();
        for h in 0..2 {
            let ql = a.ql.as_ptr().add(64 * h);
            let qh = _mm256_loadu_si256(a.qh.as_ptr().add(32 * h).cast());
            let ql0 = _mm256_loadu_si256(ql.cast());
            let ql1 = _mm256_loadu_si256(ql.add(32).cast());
            let q = [
                _mm256_or_si256(
                    _mm256_and_si256(ql0, m4),
                    _mm256_slli_epi16::<4>(_mm256_and_si256(qh, m2)),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, m4),
                    _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<2>(qh), m2)),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4),
                    _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<4>(qh), m2)),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
                    _mm256_slli_epi16::<4>(_mm256_and_si256(_mm256_srli_epi16::<6>(qh), m2)),
                ),
            ];
            for (k, qk) in q.iter().enumerate() {
                let yv = _mm256_loadu_si256(b.qs.as_ptr().add(128 * h + 32 * k).cast());
                let p =
                    _mm256_sub_epi16(_mm256_maddubs_epi16(*qk, yv), _mm256_maddubs_epi16(m32, yv));
                let s = 8 * h + 2 * k;
                let scv = _mm256_set_m128i(
                    _mm_set1_epi16(sc[s + 1] as i16),
                    _mm_set1_epi16(sc[s] as i16),
                );
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scv));
            }
        }
        let d = _mm256_set1_ps(h2f(a.d) * b.d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f32_bytes(w: &[u8], x: &[f32]) -> f32 {
    let n = (w.len() / 4).min(x.len());
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for k in 0..4 {
            let a = _mm256_loadu_ps(wp.add(4 * (i + 8 * k)).cast());
            let b = _mm256_loadu_ps(xp.add(i + 8 * k));
            acc[k] = _mm256_fmadd_ps(a, b, acc[k]);
        }
        i += 32;
    }
    while i + 8 <= n {
        let a = _mm256_loadu_ps(wp.add(4 * i).cast());
        acc[0] = _mm256_fmadd_ps(a, _mm256_loadu_ps(xp.add(i)), acc[0]);
        i += 8;
    }
    let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut sum = hsum_f32(s);
    sum += super::scalar::vec_dot_f32_bytes(&w[4 * i..4 * n], &x[i..n]);
    sum
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_bytes(w: &[u8], x: &[f32]) -> f32 {
    let n = (w.len() / 2).min(x.len());
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut i = 0;
    while i + 16 <= n {
        for k in 0..2 {
            let a = _mm256_cvtph_ps(_mm_loadu_si128(wp.add(2 * (i + 8 * k)).cast()));
            acc[k] = _mm256_fmadd_ps(a, _mm256_loadu_ps(xp.add(i + 8 * k)), acc[k]);
        }
        i += 16;
    }
    let mut sum = hsum_f32(_mm256_add_ps(acc[0], acc[1]));
    sum += super::scalar::vec_dot_f16_bytes(&w[2 * i..2 * n], &x[i..n]);
    sum
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bf16_bytes(w: &[u8], x: &[f32]) -> f32 {
    let n = (w.len() / 2).min(x.len());
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(wp.add(2 * i).cast()));
        let a = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h));
        acc = _mm256_fmadd_ps(a, _mm256_loadu_ps(xp.add(i)), acc);
        i += 8;
    }
    let mut sum = hsum_f32(acc);
    sum += super::scalar::vec_dot_bf16_bytes(&w[2 * i..2 * n], &x[i..n]);
    sum
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn i8_dot(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (ap, bp) = (a.as_ptr(), b.as_ptr());
    let mut acc = _mm256_setzero_si256();
    let mut i = 0;
    while i + 16 <= n {
        // Widening to i16 keeps -128 * -128 exact (no sign trick).
        let va = _mm256_cvtepi8_epi16(_mm_loadu_si128(ap.add(i).cast()));
        let vb = _mm256_cvtepi8_epi16(_mm_loadu_si128(bp.add(i).cast()));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(va, vb));
        i += 16;
    }
    hsum_i32(acc).wrapping_add(super::scalar::dot_i8(&a[i..n], &b[i..n]))
}

/// [`super::scalar::dot_i8_rows`] four rows at a time: each 16-wide slice of `q` is widened
/// once for the four rows, and the four sums are reduced together. Integer adds wrap like
/// the scalar twin's, so the results are identical.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn i8_dot_rows(rows: &[i8], dim: usize, q: &[i8], out: &mut [i32]) {
    if dim == 0 {
        return;
    }
    let n = dim.min(q.len());
    let nrows = out.len().min(rows.len() / dim);
    let (rp, qp) = (rows.as_ptr(), q.as_ptr());
    let mut r = 0;
    while r + 4 <= nrows {
        let p = [0, 1, 2, 3].map(|j| rp.add((r + j) * dim));
        let mut acc = [_mm256_setzero_si256(); 4];
        let mut i = 0;
        while i + 16 <= n {
            // In bounds: i + 16 <= n <= q.len(), and row r + j spans (r + j) * dim ..
            // (r + j + 1) * dim <= nrows * dim <= rows.len() with n <= dim.
            let vq = _mm256_cvtepi8_epi16(_mm_loadu_si128(qp.add(i).cast()));
            for (a, pj) in acc.iter_mut().zip(p) {
                let va = _mm256_cvtepi8_epi16(_mm_loadu_si128(pj.add(i).cast()));
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(va, vq));
            }
            i += 16;
        }
        let s01 = _mm256_hadd_epi32(acc[0], acc[1]);
        let s23 = _mm256_hadd_epi32(acc[2], acc[3]);
        let s = _mm256_hadd_epi32(s01, s23);
        let v = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        let mut sums = [0i32; 4];
        _mm_storeu_si128(sums.as_mut_ptr().cast(), v);
        for (j, &sum) in sums.iter().enumerate() {
            let row = (r + j) * dim;
            let tail = super::scalar::dot_i8(&rows[row + i..row + n], &q[i..n]);
            out[r + j] = sum.wrapping_add(tail);
        }
        r += 4;
    }
    while r < nrows {
        out[r] = i8_dot(&rows[r * dim..(r + 1) * dim], q);
        r += 1;
    }
}

/// Four vectors of 8 i32 to their four sums, in order (integer adds wrap, so the order of
/// the additions cannot change a result).
#[inline(always)]
unsafe fn hsum4_i32(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> [i32; 4] {
    let s = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
    let v = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
    let mut sums = [0i32; 4];
    // SAFETY (of the store): `sums` is 16 writable bytes; unaligned store.
    _mm_storeu_si128(sums.as_mut_ptr().cast(), v);
    sums
}

/// One tile of the multi-query kernel: `Q` queries times `R` rows (each slice exactly
/// `dim` long), `out[j][r] = dot_i8(rows[r], queries[j])` exactly. Each 16-wide slice of a
/// row is widened to i16 once for the `Q` queries and each query slice once for the `R`
/// rows; `vpmaddwd` of two i16 vectors never overflows (|-128 * -128 * 2| < 2^31), and the
/// i32 adds wrap like the scalar twin's. 4 x 2: 8 accumulators, 12 registers in all.
#[inline(always)]
unsafe fn i8_tile_block<const Q: usize, const R: usize>(
    queries: [&[i8]; Q],
    rows: [&[i8]; R],
    dim: usize,
) -> [[i32; R]; Q] {
    let mut acc = [[_mm256_setzero_si256(); R]; Q];
    let mut i = 0;
    while i + 16 <= dim {
        // In bounds: every slice is `dim` long and i + 16 <= dim.
        let mut vr = [_mm256_setzero_si256(); R];
        for r in 0..R {
            vr[r] = _mm256_cvtepi8_epi16(_mm_loadu_si128(rows[r].as_ptr().add(i).cast()));
        }
        for j in 0..Q {
            let vq = _mm256_cvtepi8_epi16(_mm_loadu_si128(queries[j].as_ptr().add(i).cast()));
            for r in 0..R {
                acc[j][r] = _mm256_add_epi32(acc[j][r], _mm256_madd_epi16(vq, vr[r]));
            }
        }
        i += 16;
    }
    let mut sums = [[0i32; R]; Q];
    let mut f = 0;
    while f + 4 <= Q * R {
        let v = hsum4_i32(
            acc[f / R][f % R],
            acc[(f + 1) / R][(f + 1) % R],
            acc[(f + 2) / R][(f + 2) % R],
            acc[(f + 3) / R][(f + 3) % R],
        );
        for (t, &x) in v.iter().enumerate() {
            sums[(f + t) / R][(f + t) % R] = x;
        }
        f += 4;
    }
    while f < Q * R {
        sums[f / R][f % R] = hsum_i32(acc[f / R][f % R]);
        f += 1;
    }
    for j in 0..Q {
        for r in 0..R {
            let tail = super::scalar::dot_i8(&rows[r][i..dim], &queries[j][i..dim]);
            sums[j][r] = sums[j][r].wrapping_add(tail);
        }
    }
    sums
}

/// `Q` queries (`qs`, `Q * dim` values) against every row, two rows per tile, then the
/// odd row alone; `out` holds this group's first query's outputs (stride `nr`).
#[inline(always)]
unsafe fn i8_tile_group<const Q: usize>(
    rows: &[i8],
    qs: &[i8],
    dim: usize,
    nr: usize,
    out: &mut [i32],
) {
    let queries: [&[i8]; Q] = std::array::from_fn(|j| &qs[j * dim..(j + 1) * dim]);
    let mut r = 0;
    while r + 2 <= nr {
        let pair = [0, 1].map(|t| &rows[(r + t) * dim..(r + t + 1) * dim]);
        let s = i8_tile_block::<Q, 2>(queries, pair, dim);
        for j in 0..Q {
            out[j * nr + r] = s[j][0];
            out[j * nr + r + 1] = s[j][1];
        }
        r += 2;
    }
    if r < nr {
        let s = i8_tile_block::<Q, 1>(queries, [&rows[r * dim..(r + 1) * dim]], dim);
        for j in 0..Q {
            out[j * nr + r] = s[j][0];
        }
    }
}

/// [`super::scalar::dot_i8_tile`], four queries times two rows per tile (then the
/// remainders: 1-3 queries, one row), bit-identical to it.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn i8_tile(rows: &[i8], queries: &[i8], dim: usize, out: &mut [i32]) {
    if dim == 0 {
        return;
    }
    let (nr, nq) = (rows.len() / dim, queries.len() / dim);
    if out.len() < nq * nr {
        return;
    }
    let mut j = 0;
    while j < nq {
        let qs = &queries[j * dim..];
        let o = &mut out[j * nr..];
        match nq - j {
            1 => i8_tile_group::<1>(rows, qs, dim, nr, o),
            2 => i8_tile_group::<2>(rows, qs, dim, nr, o),
            3 => i8_tile_group::<3>(rows, qs, dim, nr, o),
            _ => i8_tile_group::<4>(rows, qs, dim, nr, o),
        }
        j += 4;
    }
}

/// Safe wrappers for the AVX2 kernels shared by all x86 paths.
pub(crate) mod common {
    use super::*;

    pub(crate) fn vec_dot_q4k_q8k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
        // SAFETY: installed in a dispatch table only after AVX2+FMA+F16C were detected.
        unsafe { q4k(x, y) }
    }
    pub(crate) fn vec_dot_q4k_q8k_x4(x: &[BlockQ4K], y: [&[BlockQ8K]; 4]) -> [f32; 4] {
        // SAFETY: as above.
        unsafe { q4k_x4(x, y) }
    }
    pub(crate) fn vec_dot_q6k_q8k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
        // SAFETY: as above.
        unsafe { q6k(x, y) }
    }
    pub(crate) fn vec_dot_f32_bytes(w: &[u8], x: &[f32]) -> f32 {
        // SAFETY: as above.
        unsafe { f32_bytes(w, x) }
    }
    pub(crate) fn vec_dot_f16_bytes(w: &[u8], x: &[f32]) -> f32 {
        // SAFETY: as above.
        unsafe { f16_bytes(w, x) }
    }
    pub(crate) fn vec_dot_bf16_bytes(w: &[u8], x: &[f32]) -> f32 {
        // SAFETY: as above.
        unsafe { bf16_bytes(w, x) }
    }
    pub(crate) fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        // SAFETY: as above.
        unsafe { i8_dot(a, b) }
    }
    pub(crate) fn dot_i8_rows(rows: &[i8], dim: usize, q: &[i8], out: &mut [i32]) {
        // SAFETY: as above (and the kernel bounds every access by the slices' lengths).
        unsafe { i8_dot_rows(rows, dim, q, out) }
    }
    pub(crate) fn dot_i8_tile(rows: &[i8], queries: &[i8], dim: usize, out: &mut [i32]) {
        // SAFETY: as above; every load is bounded by a `dim`-long subslice of `rows` or
        // `queries` (bounds-checked slicing), and `out` is written only through indexing.
        unsafe { i8_tile(rows, queries, dim, out) }
    }
}

/// AVX2 and AVX-VNNI kernels over packed tiles.
pub(crate) mod packed256;
/// AVX-512 VNNI kernels over packed tiles.
pub(crate) mod packed512;

/// The largest `f32` below 0.5: `trunc(x + copysign(HALF_DOWN, x))` is `x.round()` (ties away
/// from zero) for every finite `x` (LLVM's own expansion of `round`).
const HALF_DOWN: f32 = 0.49999997;

/// f32 -> f16 bits, round to nearest even (what `half::f16::from_f32` computes, without its
/// per-call feature check).
#[inline(always)]
unsafe fn f2h(x: f32) -> half::f16 {
    half::f16::from_bits(
        _mm_extract_epi16::<0>(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(x))) as u16,
    )
}

/// `scalar::q8_1_sum` with F16C conversions (the same IEEE rounding).
#[inline(always)]
unsafe fn q8_1_sum(d: f32, isum: i32) -> f32 {
    let exact = d * isum as f32;
    if exact.abs() <= 65504.0 {
        h2f(f2h(exact))
    } else {
        exact
    }
}

/// AVX2 activation quantizers: the bytes of the scalar reference (`scalar::quantize_act_*`),
/// faster. A block holding a NaN or an infinity, or whose scale inverts to an infinity, is
/// left to the scalar code, whose handling of those the vector instructions would not match.
pub(crate) mod quant256 {
    use super::*;
    use crate::quant::scalar;

    #[inline(always)]
    unsafe fn hmax(v: __m256) -> f32 {
        let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps::<1>(m, m)))
    }

    #[inline(always)]
    unsafe fn hsum_i32(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s)))
    }

    /// Four vectors of 8 i32 (each in -128..=127 after saturation) to 32 i8, in order.
    #[inline(always)]
    unsafe fn narrow32(v: [__m256i; 4], out: *mut i8) {
        let ab = _mm256_packs_epi32(v[0], v[1]);
        let cd = _mm256_packs_epi32(v[2], v[3]);
        let p = _mm256_packs_epi16(ab, cd);
        let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(out.cast(), p);
    }

    #[target_feature(enable = "avx2,f16c")]
    unsafe fn q8_0(x: &[f32], q: &mut [BlockQ8_0], sums: &mut [f32], isum: &mut [i32]) {
        let nb = (x.len() / 32).min(q.len()).min(sums.len()).min(isum.len());
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let inf = _mm256_set1_ps(f32::INFINITY);
        let half = _mm256_set1_ps(HALF_DOWN);
        let sign = _mm256_set1_ps(-0.0);
        for b in 0..nb {
            let xs = &x[32 * b..32 * b + 32];
            // In bounds: `xs` has 32 elements.
            let v: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(xs.as_ptr().add(8 * i)));
            let a = v.map(|v| _mm256_and_ps(v, abs_mask));
            let fin = a.iter().fold(0xFF, |m, &a| {
                m & _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(a, inf))
            });
            let amax = hmax(_mm256_max_ps(
                _mm256_max_ps(a[0], a[1]),
                _mm256_max_ps(a[2], a[3]),
            ));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            if fin != 0xFF || !id.is_finite() {
                scalar::quantize_act_q8_0(
                    xs,
                    &mut q[b..b + 1],
                    &mut sums[b..b + 1],
                    &mut isum[b..b + 1],
                );
                continue;
            }
            let vid = _mm256_set1_ps(id);
            let i = v.map(|v| {
                let s = _mm256_mul_ps(v, vid);
                let h = _mm256_or_ps(half, _mm256_and_ps(s, sign));
                _mm256_cvttps_epi32(_mm256_add_ps(s, h))
            });
            narrow32(i, q[b].qs.as_mut_ptr());
            q[b].d = f2h(d);
            let s = hsum_i32(_mm256_add_epi32(
                _mm256_add_epi32(i[0], i[1]),
                _mm256_add_epi32(i[2], i[3]),
            ));
            isum[b] = s;
            sums[b] = q8_1_sum(d, s);
        }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn q8k(x: &[f32], q: &mut [BlockQ8K]) {
        let nb = (x.len() / 256).min(q.len());
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let inf = _mm256_set1_ps(f32::INFINITY);
        let (lo, hi) = (_mm256_set1_epi32(-128), _mm256_set1_epi32(127));
        for b in 0..nb {
            let xs = &x[256 * b..256 * b + 256];
            // In bounds: `xs` has 256 elements.
            let v: [__m256; 32] = std::array::from_fn(|i| _mm256_loadu_ps(xs.as_ptr().add(8 * i)));
            let a = v.map(|v| _mm256_and_ps(v, abs_mask));
            let mut fin = 0xFF;
            let mut m = a[0];
            for a in &a {
                fin &= _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(*a, inf));
                m = _mm256_max_ps(m, *a);
            }
            let amax = hmax(m);
            if fin != 0xFF || amax == 0.0 {
                scalar::quantize_act_q8k(xs, &mut q[b..b + 1]);
                continue;
            }
            // The scalar code's `max`: the first value of largest magnitude.
            let want = _mm256_set1_ps(amax);
            let mut max = 0f32;
            for (i, a) in a.iter().enumerate() {
                let hit = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(*a, want));
                if hit != 0 {
                    max = xs[8 * i + hit.trailing_zeros() as usize];
                    break;
                }
            }
            let iscale = -127.0 / max;
            let vs = _mm256_set1_ps(iscale);
            let blk = &mut q[b];
            for g in 0..8 {
                let i: [__m256i; 4] = std::array::from_fn(|k| {
                    let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                        _mm256_mul_ps(v[4 * g + k], vs),
                    );
                    _mm256_min_epi32(_mm256_max_epi32(_mm256_cvttps_epi32(r), lo), hi)
                });
                narrow32(i, blk.qs.as_mut_ptr().add(32 * g));
                blk.bsums[2 * g] = hsum_i32(_mm256_add_epi32(i[0], i[1])) as i16;
                blk.bsums[2 * g + 1] = hsum_i32(_mm256_add_epi32(i[2], i[3])) as i16;
            }
            blk.d = 1.0 / iscale;
        }
    }

    pub(crate) fn quantize_act_q8_0(
        x: &[f32],
        q: &mut [BlockQ8_0],
        sums: &mut [f32],
        isum: &mut [i32],
    ) {
        // SAFETY: installed only in the AVX2 / AVX-VNNI tables, after `has_avx2()` (AVX2 +
        // FMA + F16C); every access is bounded by the slice lengths.
        unsafe { q8_0(x, q, sums, isum) }
    }

    pub(crate) fn quantize_act_q8k(x: &[f32], q: &mut [BlockQ8K]) {
        // SAFETY: as above.
        unsafe { q8k(x, q) }
    }
}

/// AVX-512 activation quantizers: as [`quant256`], 16 lanes wide.
pub(crate) mod quant512 {
    use super::*;
    use crate::quant::scalar;

    #[target_feature(enable = "avx512f,f16c")]
    unsafe fn q8_0(x: &[f32], q: &mut [BlockQ8_0], sums: &mut [f32], isum: &mut [i32]) {
        let nb = (x.len() / 32).min(q.len()).min(sums.len()).min(isum.len());
        let inf = _mm512_set1_ps(f32::INFINITY);
        let half = _mm512_castps_si512(_mm512_set1_ps(HALF_DOWN));
        let sign = _mm512_set1_epi32(i32::MIN);
        for b in 0..nb {
            let xs = &x[32 * b..32 * b + 32];
            // In bounds: `xs` has 32 elements.
            let v = [
                _mm512_loadu_ps(xs.as_ptr()),
                _mm512_loadu_ps(xs.as_ptr().add(16)),
            ];
            let a = v.map(|v| _mm512_abs_ps(v));
            let fin = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a[0], inf)
                & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a[1], inf);
            let amax = _mm512_reduce_max_ps(_mm512_max_ps(a[0], a[1]));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            if fin != 0xFFFF || !id.is_finite() {
                scalar::quantize_act_q8_0(
                    xs,
                    &mut q[b..b + 1],
                    &mut sums[b..b + 1],
                    &mut isum[b..b + 1],
                );
                continue;
            }
            let vid = _mm512_set1_ps(id);
            let i = v.map(|v| {
                let s = _mm512_mul_ps(v, vid);
                let h = _mm512_or_si512(half, _mm512_and_si512(_mm512_castps_si512(s), sign));
                _mm512_cvttps_epi32(_mm512_add_ps(s, _mm512_castsi512_ps(h)))
            });
            let out = q[b].qs.as_mut_ptr();
            _mm_storeu_si128(out.cast(), _mm512_cvtsepi32_epi8(i[0]));
            _mm_storeu_si128(out.add(16).cast(), _mm512_cvtsepi32_epi8(i[1]));
            q[b].d = f2h(d);
            let s = _mm512_reduce_add_epi32(_mm512_add_epi32(i[0], i[1]));
            isum[b] = s;
            sums[b] = q8_1_sum(d, s);
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn q8k(x: &[f32], q: &mut [BlockQ8K]) {
        let nb = (x.len() / 256).min(q.len());
        let inf = _mm512_set1_ps(f32::INFINITY);
        let (lo, hi) = (_mm512_set1_epi32(-128), _mm512_set1_epi32(127));
        for b in 0..nb {
            let xs = &x[256 * b..256 * b + 256];
            // In bounds: `xs` has 256 elements.
            let v: [__m512; 16] = std::array::from_fn(|i| _mm512_loadu_ps(xs.as_ptr().add(16 * i)));
            let a = v.map(|v| _mm512_abs_ps(v));
            let mut fin = 0xFFFF;
            let mut m = a[0];
            for a in &a {
                fin &= _mm512_cmp_ps_mask::<_CMP_LT_OQ>(*a, inf);
                m = _mm512_max_ps(m, *a);
            }
            let amax = _mm512_reduce_max_ps(m);
            if fin != 0xFFFF || amax == 0.0 {
                scalar::quantize_act_q8k(xs, &mut q[b..b + 1]);
                continue;
            }
            // The scalar code's `max`: the first value of largest magnitude.
            let want = _mm512_set1_ps(amax);
            let mut max = 0f32;
            for (i, a) in a.iter().enumerate() {
                let hit = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(*a, want);
                if hit != 0 {
                    max = xs[16 * i + hit.trailing_zeros() as usize];
                    break;
                }
            }
            let iscale = -127.0 / max;
            let vs = _mm512_set1_ps(iscale);
            let blk = &mut q[b];
            for (g, v) in v.iter().enumerate() {
                let r = _mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                    _mm512_mul_ps(*v, vs),
                );
                let r = _mm512_min_epi32(_mm512_max_epi32(r, lo), hi);
                _mm_storeu_si128(
                    blk.qs.as_mut_ptr().add(16 * g).cast(),
                    _mm512_cvtsepi32_epi8(r),
                );
                blk.bsums[g] = _mm512_reduce_add_epi32(r) as i16;
            }
            blk.d = 1.0 / iscale;
        }
    }

    pub(crate) fn quantize_act_q8_0(
        x: &[f32],
        q: &mut [BlockQ8_0],
        sums: &mut [f32],
        isum: &mut [i32],
    ) {
        // SAFETY: installed only in the AVX-512 VNNI table, after `has_avx512vnni()` (which
        // checks AVX-512 F and, through `has_avx2`, F16C); accesses are bounded by the slices.
        unsafe { q8_0(x, q, sums, isum) }
    }

    pub(crate) fn quantize_act_q8k(x: &[f32], q: &mut [BlockQ8K]) {
        // SAFETY: as above.
        unsafe { q8k(x, q) }
    }
}
