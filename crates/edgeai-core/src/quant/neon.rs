//! aarch64 kernels: NEON (`smull` + pairwise add), NEON + dotprod (`sdot`), and NEON + i8mm
//! (`smmla` two-row prefill kernels, see [`i8mm`]).
//!
//! All weights are widened to signed 8-bit lanes (nibbles minus offsets fit), so products
//! need no sign tricks; integer dot products are exact (i16 products <= 128*128 = 16384,
//! i32 accumulation). `sdot` and `smmla` are emitted with `asm!` because their intrinsics
//! (`vdotq_s32`, `vmmlaq_s32`) are not yet stable Rust. Only the order of the final f32
//! accumulation differs from the scalar twin. Safe wrappers are installed in the dispatch
//! table only after runtime detection.

#![allow(clippy::needless_range_loop)]

use std::arch::aarch64::*;

use super::blocks::{BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ6K, BlockQ8K, BlockQ8_0};
use super::scalar::q4k_scales_mins;

/// Runtime check for the NEON path (always true on aarch64 Linux, checked anyway).
pub(crate) fn has_neon() -> bool {
    std::arch::is_aarch64_feature_detected!("neon")
}

/// Runtime check for the dotprod path.
pub(crate) fn has_dotprod() -> bool {
    has_neon() && std::arch::is_aarch64_feature_detected!("dotprod")
}

/// Runtime check for the i8mm path (which also uses `sdot`).
pub(crate) fn has_i8mm() -> bool {
    has_dotprod() && std::arch::is_aarch64_feature_detected!("i8mm")
}

/// `acc + dot4(a, b)` per i32 lane, plain NEON.
#[inline(always)]
unsafe fn dot_neon(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let p0 = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    let p1 = vmull_high_s8(a, b);
    vpadalq_s16(vpadalq_s16(acc, p0), p1)
}

/// `acc + dot4(a, b)` per i32 lane with `sdot` (caller enables `dotprod`).
#[inline(always)]
unsafe fn dot_sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: register-only instruction; the enclosing function enables `dotprod` and is
    // called only when the CPU has it.
    std::arch::asm!(
        "sdot {0:v}.4s, {1:v}.16b, {2:v}.16b",
        inout(vreg) acc, in(vreg) a, in(vreg) b,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

macro_rules! neon_kernels {
    ($feat:literal, $m:ident, $dot:ident) => {
        pub(crate) mod $m {
            use super::*;

            #[target_feature(enable = $feat)]
            unsafe fn q4_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
                let mut acc = vdupq_n_f32(0.0);
                let m4 = vdupq_n_u8(0x0F);
                let off = vdupq_n_s8(8);
                for (a, b) in x.iter().zip(y) {
                    let v = vld1q_u8(a.qs.as_ptr());
                    let lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, m4)), off);
                    let hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(v)), off);
                    let y0 = vld1q_s8(b.qs.as_ptr());
                    let y1 = vld1q_s8(b.qs.as_ptr().add(16));
                    let p = $dot($dot(vdupq_n_s32(0), lo, y0), hi, y1);
                    acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), a.d.to_f32() * b.d.to_f32());
                }
                vaddvq_f32(acc)
            }

            #[target_feature(enable = $feat)]
            unsafe fn q4_1(x: &[BlockQ4_1], y: &[BlockQ8_0], s: &[f32]) -> f32 {
                let mut acc = vdupq_n_f32(0.0);
                let mut summ = 0f32;
                let m4 = vdupq_n_u8(0x0F);
                for ((a, b), &sy) in x.iter().zip(y).zip(s) {
                    summ += a.m.to_f32() * sy;
                    let v = vld1q_u8(a.qs.as_ptr());
                    let lo = vreinterpretq_s8_u8(vandq_u8(v, m4));
                    let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(v));
                    let y0 = vld1q_s8(b.qs.as_ptr());
                    let y1 = vld1q_s8(b.qs.as_ptr().add(16));
                    let p = $dot($dot(vdupq_n_s32(0), lo, y0), hi, y1);
                    acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), a.d.to_f32() * b.d.to_f32());
                }
                vaddvq_f32(acc) + summ
            }

            #[target_feature(enable = $feat)]
            unsafe fn q5_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
                let mut acc = vdupq_n_f32(0.0);
                let m4 = vdupq_n_u8(0x0F);
                let off = vdupq_n_s8(16);
                let bitmask: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
                let bm = vld1q_u8(bitmask.as_ptr());
                let h5 = vdupq_n_u8(0x10);
                for (a, b) in x.iter().zip(y) {
                    let qh = a.qh;
                    // 0xFF where the element's 5th bit is set (elements 0..16, then 16..32).
                    let h_lo = vtstq_u8(vcombine_u8(vdup_n_u8(qh[0]), vdup_n_u8(qh[1])), bm);
                    let h_hi = vtstq_u8(vcombine_u8(vdup_n_u8(qh[2]), vdup_n_u8(qh[3])), bm);
                    let v = vld1q_u8(a.qs.as_ptr());
                    let lo = vorrq_u8(vandq_u8(v, m4), vandq_u8(h_lo, h5));
                    let hi = vorrq_u8(vshrq_n_u8::<4>(v), vandq_u8(h_hi, h5));
                    let lo = vsubq_s8(vreinterpretq_s8_u8(lo), off);
                    let hi = vsubq_s8(vreinterpretq_s8_u8(hi), off);
                    let y0 = vld1q_s8(b.qs.as_ptr());
                    let y1 = vld1q_s8(b.qs.as_ptr().add(16));
                    let p = $dot($dot(vdupq_n_s32(0), lo, y0), hi, y1);
                    acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), a.d.to_f32() * b.d.to_f32());
                }
                vaddvq_f32(acc)
            }

            pub(crate) fn vec_dot_q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
                // SAFETY: installed in the dispatch table only after runtime detection of
                // this module's target features.
                unsafe { q5_0(x, y) }
            }

            #[target_feature(enable = $feat)]
            unsafe fn q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
                let mut acc = vdupq_n_f32(0.0);
                for (a, b) in x.iter().zip(y) {
                    let x0 = vld1q_s8(a.qs.as_ptr());
                    let x1 = vld1q_s8(a.qs.as_ptr().add(16));
                    let y0 = vld1q_s8(b.qs.as_ptr());
                    let y1 = vld1q_s8(b.qs.as_ptr().add(16));
                    let p = $dot($dot(vdupq_n_s32(0), x0, y0), x1, y1);
                    acc = vmlaq_n_f32(acc, vcvtq_f32_s32(p), a.d.to_f32() * b.d.to_f32());
                }
                vaddvq_f32(acc)
            }

            #[target_feature(enable = $feat)]
            unsafe fn q4k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
                let mut sumf = 0f32;
                let m4 = vdupq_n_u8(0x0F);
                for (a, b) in x.iter().zip(y) {
                    let (sc, m) = q4k_scales_mins(&a.scales);
                    let mut summ = 0i32;
                    for k in 0..8 {
                        summ += m[k] as i32 * (b.bsums[2 * k] as i32 + b.bsums[2 * k + 1] as i32);
                    }
                    let qs = a.qs.as_ptr();
                    let ys = b.qs.as_ptr();
                    let mut sumi = 0i32;
                    for j in 0..4 {
                        let q0 = vld1q_u8(qs.add(32 * j));
                        let q1 = vld1q_u8(qs.add(32 * j + 16));
                        let yp = ys.add(64 * j);
                        let lo = $dot(
                            $dot(
                                vdupq_n_s32(0),
                                vreinterpretq_s8_u8(vandq_u8(q0, m4)),
                                vld1q_s8(yp),
                            ),
                            vreinterpretq_s8_u8(vandq_u8(q1, m4)),
                            vld1q_s8(yp.add(16)),
                        );
                        let hi = $dot(
                            $dot(
                                vdupq_n_s32(0),
                                vreinterpretq_s8_u8(vshrq_n_u8::<4>(q0)),
                                vld1q_s8(yp.add(32)),
                            ),
                            vreinterpretq_s8_u8(vshrq_n_u8::<4>(q1)),
                            vld1q_s8(yp.add(48)),
                        );
                        sumi += sc[2 * j] as i32 * vaddvq_s32(lo)
                            + sc[2 * j + 1] as i32 * vaddvq_s32(hi);
                    }
                    let d = a.d.to_f32() * b.d;
                    let dmin = a.dmin.to_f32() * b.d;
                    sumf += d * sumi as f32 - dmin * summ as f32;
                }
                sumf
            }

            #[target_feature(enable = $feat)]
            unsafe fn q6k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
                let mut sumf = 0f32;
                let m4 = vdupq_n_u8(0x0F);
                let m2 = vdupq_n_u8(3);
                let off = vdupq_n_s8(32);
                for (a, b) in x.iter().zip(y) {
                    let sc = a.scales;
                    let mut sumi = 0i32;
                    for h in 0..2 {
                        let ql = a.ql.as_ptr().add(64 * h);
                        let qh = a.qh.as_ptr().add(32 * h);
                        for i in 0..2 {
                            let l0 = vld1q_u8(ql.add(16 * i));
                            let l1 = vld1q_u8(ql.add(32 + 16 * i));
                            let hb = vld1q_u8(qh.add(16 * i));
                            let q = [
                                vorrq_u8(vandq_u8(l0, m4), vshlq_n_u8::<4>(vandq_u8(hb, m2))),
                                vorrq_u8(
                                    vandq_u8(l1, m4),
                                    vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<2>(hb), m2)),
                                ),
                                vorrq_u8(
                                    vshrq_n_u8::<4>(l0),
                                    vshlq_n_u8::<4>(vandq_u8(vshrq_n_u8::<4>(hb), m2)),
                                ),
                                vorrq_u8(vshrq_n_u8::<4>(l1), vshlq_n_u8::<4>(vshrq_n_u8::<6>(hb))),
                            ];
                            for g in 0..4 {
                                let e = 128 * h + 32 * g + 16 * i;
                                let qs = vsubq_s8(vreinterpretq_s8_u8(q[g]), off);
                                let p = $dot(vdupq_n_s32(0), qs, vld1q_s8(b.qs.as_ptr().add(e)));
                                sumi += sc[e / 16] as i32 * vaddvq_s32(p);
                            }
                        }
                    }
                    sumf += (a.d.to_f32() * b.d) * sumi as f32;
                }
                sumf
            }

            #[target_feature(enable = $feat)]
            unsafe fn i8_dot(a: &[i8], b: &[i8]) -> i32 {
                let n = a.len().min(b.len());
                let mut acc = vdupq_n_s32(0);
                let mut i = 0;
                while i + 16 <= n {
                    acc = $dot(
                        acc,
                        vld1q_s8(a.as_ptr().add(i)),
                        vld1q_s8(b.as_ptr().add(i)),
                    );
                    i += 16;
                }
                vaddvq_s32(acc).wrapping_add(crate::quant::scalar::dot_i8(&a[i..n], &b[i..n]))
            }

            /// One tile of the multi-query kernel: `Q` queries times `R` rows (each slice
            /// exactly `dim` long), `out[j][r] = dot_i8(rows[r], queries[j])` exactly (the
            /// lanes' i32 adds wrap like the scalar twin's). Each 16-byte load of a row or
            /// a query serves the whole tile: 4 x 4 keeps 16 accumulators and 8 inputs in
            /// the 32 vector registers.
            #[inline(always)]
            unsafe fn i8_tile_block<const Q: usize, const R: usize>(
                queries: [&[i8]; Q],
                rows: [&[i8]; R],
                dim: usize,
            ) -> [[i32; R]; Q] {
                let mut acc = [[vdupq_n_s32(0); R]; Q];
                let mut i = 0;
                while i + 16 <= dim {
                    // In bounds: every slice is `dim` long and i + 16 <= dim.
                    let mut vr = [vdupq_n_s8(0); R];
                    for r in 0..R {
                        vr[r] = vld1q_s8(rows[r].as_ptr().add(i));
                    }
                    for j in 0..Q {
                        let vq = vld1q_s8(queries[j].as_ptr().add(i));
                        for r in 0..R {
                            acc[j][r] = $dot(acc[j][r], vr[r], vq);
                        }
                    }
                    i += 16;
                }
                let mut sums = [[0i32; R]; Q];
                for j in 0..Q {
                    for r in 0..R {
                        let tail =
                            crate::quant::scalar::dot_i8(&rows[r][i..dim], &queries[j][i..dim]);
                        sums[j][r] = vaddvq_s32(acc[j][r]).wrapping_add(tail);
                    }
                }
                sums
            }

            /// `Q` queries (`qs`) against every row, four rows per tile, then the rest one
            /// at a time; `out` holds this group's first query's outputs (stride `nr`).
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
                while r + 4 <= nr {
                    let four: [&[i8]; 4] =
                        std::array::from_fn(|t| &rows[(r + t) * dim..(r + t + 1) * dim]);
                    let s = i8_tile_block::<Q, 4>(queries, four, dim);
                    for j in 0..Q {
                        out[j * nr + r..j * nr + r + 4].copy_from_slice(&s[j]);
                    }
                    r += 4;
                }
                while r < nr {
                    let s = i8_tile_block::<Q, 1>(queries, [&rows[r * dim..(r + 1) * dim]], dim);
                    for j in 0..Q {
                        out[j * nr + r] = s[j][0];
                    }
                    r += 1;
                }
            }

            /// The scalar `dot_i8_tile`, four queries times four rows per tile,
            /// bit-identical to it.
            #[target_feature(enable = $feat)]
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
            pub(crate) fn vec_dot_q4k_q8k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
                // SAFETY: as above.
                unsafe { q4k(x, y) }
            }
            pub(crate) fn vec_dot_q6k_q8k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
                // SAFETY: as above.
                unsafe { q6k(x, y) }
            }
            pub(crate) fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
                // SAFETY: as above.
                unsafe { i8_dot(a, b) }
            }
            pub(crate) fn dot_i8_tile(rows: &[i8], queries: &[i8], dim: usize, out: &mut [i32]) {
                // SAFETY: as above; every load is bounded by a `dim`-long subslice of
                // `rows` or `queries` (bounds-checked slicing), `out` is written only
                // through indexing.
                unsafe { i8_tile(rows, queries, dim, out) }
            }
        }
    };
}

neon_kernels!("neon", plain, dot_neon);
neon_kernels!("neon,dotprod", dotprod, dot_sdot);

#[target_feature(enable = "neon")]
unsafe fn f32_bytes(w: &[u8], x: &[f32]) -> f32 {
    let n = (w.len() / 4).min(x.len());
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for k in 0..4 {
            let a = vreinterpretq_f32_u8(vld1q_u8(w.as_ptr().add(4 * (i + 4 * k))));
            acc[k] = vfmaq_f32(acc[k], a, vld1q_f32(x.as_ptr().add(i + 4 * k)));
        }
        i += 16;
    }
    let s = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    vaddvq_f32(s) + super::scalar::vec_dot_f32_bytes(&w[4 * i..4 * n], &x[i..n])
}

#[target_feature(enable = "neon")]
unsafe fn bf16_bytes(w: &[u8], x: &[f32]) -> f32 {
    let n = (w.len() / 2).min(x.len());
    let mut acc = vdupq_n_f32(0.0);
    let mut i = 0;
    while i + 4 <= n {
        let h = vreinterpret_u16_u8(vld1_u8(w.as_ptr().add(2 * i)));
        let a = vreinterpretq_f32_u32(vshll_n_u16::<16>(h));
        acc = vfmaq_f32(acc, a, vld1q_f32(x.as_ptr().add(i)));
        i += 4;
    }
    vaddvq_f32(acc) + super::scalar::vec_dot_bf16_bytes(&w[2 * i..2 * n], &x[i..n])
}

/// Float kernels shared by both NEON paths.
pub(crate) mod common {
    pub(crate) fn vec_dot_f32_bytes(w: &[u8], x: &[f32]) -> f32 {
        // SAFETY: installed only after NEON was detected.
        unsafe { super::f32_bytes(w, x) }
    }
    pub(crate) fn vec_dot_bf16_bytes(w: &[u8], x: &[f32]) -> f32 {
        // SAFETY: as above.
        unsafe { super::bf16_bytes(w, x) }
    }
}

/// Packed (row-interleaved) tiles: the layout of `quant::packed`, read as four 16-byte
/// registers per 64-byte group (rows 0-3, 4-7, 8-11, 12-15), each multiplied by the group's 4
/// activation bytes broadcast to every lane, with `sdot` (`dotprod`) or with `smull` +
/// `sadalp` + `addp` (`plain`, for CPUs without dotprod such as the Pi 4's Cortex-A72). Per
/// row the integer dots and the `f32` operations (fused multiply-adds included) are those of
/// the scalar twin, so results are bit-identical to it.
pub(crate) mod packed {
    use super::*;
    use crate::quant::packed::{tile_block_len, TILE};
    use crate::quant::GgmlType;

    /// 8 f16 at `p` to two f32 vectors (`fcvtl`, base AdvSIMD).
    #[inline(always)]
    unsafe fn f16x8(p: *const u8) -> (float32x4_t, float32x4_t) {
        let h = vld1q_u16(p.cast());
        let (lo, hi): (float32x4_t, float32x4_t);
        // SAFETY: register-only conversions available on every AArch64 CPU.
        std::arch::asm!(
            "fcvtl {lo:v}.4s, {h:v}.4h",
            "fcvtl2 {hi:v}.4s, {h:v}.8h",
            h = in(vreg) h, lo = out(vreg) lo, hi = out(vreg) hi,
            options(pure, nomem, nostack, preserves_flags)
        );
        (lo, hi)
    }

    /// The 16 f16 at `p` as f32, times `s`.
    #[inline(always)]
    unsafe fn scales(p: *const u8, s: f32) -> [float32x4_t; 4] {
        let (a, b) = f16x8(p);
        let (c, d) = f16x8(p.add(16));
        [a, b, c, d].map(|v| vmulq_n_f32(v, s))
    }

    /// 16 bytes at `p` as four i32x4 (zero-extended).
    #[inline(always)]
    unsafe fn u8x16_to_i32(p: *const u8) -> [int32x4_t; 4] {
        let v = vld1q_u8(p);
        let (lo, hi) = (vmovl_u8(vget_low_u8(v)), vmovl_high_u8(v));
        [
            vmovl_u16(vget_low_u16(lo)),
            vmovl_high_u16(lo),
            vmovl_u16(vget_low_u16(hi)),
            vmovl_high_u16(hi),
        ]
        .map(|v| vreinterpretq_s32_u32(v))
    }

    /// 16 bytes at `p` as four i32x4 (sign-extended: Q6_K's scales).
    #[inline(always)]
    unsafe fn i8x16_to_i32(p: *const u8) -> [int32x4_t; 4] {
        let v = vld1q_s8(p.cast());
        let (lo, hi) = (vmovl_s8(vget_low_s8(v)), vmovl_high_s8(v));
        [
            vmovl_s16(vget_low_s16(lo)),
            vmovl_high_s16(lo),
            vmovl_s16(vget_low_s16(hi)),
            vmovl_high_s16(hi),
        ]
    }

    /// The 6-bit quants of Q6_K nibble groups `2p` and `2p + 1` (see `packed.rs`), 16 bytes
    /// of each: from their nibbles `v0`, `v1` and shared high bits `h`, `[lo(2p), hi(2p),
    /// lo(2p+1), hi(2p+1)]` (byte shifts: nothing crosses a byte).
    #[inline(always)]
    unsafe fn q6_quants(v0: uint8x16_t, v1: uint8x16_t, h: uint8x16_t) -> [int8x16_t; 4] {
        let (m4, m30) = (vdupq_n_u8(0x0F), vdupq_n_u8(0x30));
        [
            vorrq_u8(vandq_u8(v0, m4), vandq_u8(vshlq_n_u8::<4>(h), m30)),
            vorrq_u8(vshrq_n_u8::<4>(v0), vandq_u8(vshlq_n_u8::<2>(h), m30)),
            vorrq_u8(vandq_u8(v1, m4), vandq_u8(h, m30)),
            vorrq_u8(vshrq_n_u8::<4>(v1), vandq_u8(vshrq_n_u8::<2>(h), m30)),
        ]
        .map(|v| vreinterpretq_s8_u8(v))
    }

    /// The 4 activation bytes at `p` in every 32-bit lane.
    #[inline(always)]
    unsafe fn bcast4(p: *const i8) -> int8x16_t {
        vreinterpretq_s8_s32(vdupq_n_s32(p.cast::<i32>().read_unaligned()))
    }

    /// dotprod: `acc[q] += sdot(w[q], y)` for the four row quads of one 64-byte group (only
    /// `acc[0..4]` are used).
    #[inline(always)]
    unsafe fn group_sdot(acc: &mut [int32x4_t; 8], w: [int8x16_t; 4], y: int8x16_t) {
        for q in 0..4 {
            acc[q] = dot_sdot(acc[q], w[q], y);
        }
    }

    /// The per-row dots of [`group_sdot`]'s accumulators.
    #[inline(always)]
    unsafe fn finish_sdot(acc: [int32x4_t; 8]) -> [int32x4_t; 4] {
        [acc[0], acc[1], acc[2], acc[3]]
    }

    /// Plain NEON (Cortex-A72, no dotprod): the exact i16 products of quad `q`'s rows
    /// `4q, 4q+1` (low 8 bytes, `smull`) and `4q+2, 4q+3` (high 8 bytes, `smull2`), added
    /// pairwise into i32 (`sadalp`): `acc[2q]` holds two half-dots of each of the first two
    /// rows, `acc[2q+1]` of the other two; [`finish_mull`] adds the halves.
    #[inline(always)]
    unsafe fn group_mull(acc: &mut [int32x4_t; 8], w: [int8x16_t; 4], y: int8x16_t) {
        let y_lo = vget_low_s8(y);
        for q in 0..4 {
            acc[2 * q] = vpadalq_s16(acc[2 * q], vmull_s8(vget_low_s8(w[q]), y_lo));
            acc[2 * q + 1] = vpadalq_s16(acc[2 * q + 1], vmull_high_s8(w[q], y));
        }
    }

    /// The per-row dots of [`group_mull`]'s accumulators (`addp`: lanes `[r, r, r+1, r+1]` of
    /// each half to `[r, r+1, r+2, r+3]`).
    #[inline(always)]
    unsafe fn finish_mull(acc: [int32x4_t; 8]) -> [int32x4_t; 4] {
        std::array::from_fn(|q| vpaddq_s32(acc[2 * q], acc[2 * q + 1]))
    }

    #[inline(always)]
    unsafe fn load64(p: *const u8) -> [uint8x16_t; 4] {
        [
            vld1q_u8(p),
            vld1q_u8(p.add(16)),
            vld1q_u8(p.add(32)),
            vld1q_u8(p.add(48)),
        ]
    }

    fn store(acc: [float32x4_t; 4]) -> [f32; TILE] {
        let mut out = [0f32; TILE];
        for (q, v) in acc.into_iter().enumerate() {
            // SAFETY: `out[4q..4q+4]` is in bounds (q < 4, TILE = 16).
            unsafe { vst1q_f32(out.as_mut_ptr().add(4 * q), v) };
        }
        out
    }

    /// Stamps out the packed kernels for one instruction set: `$group` accumulates one
    /// 64-byte group, `$finish` turns its accumulators into per-row dots.
    macro_rules! packed_kernels {
        ($feat:literal, $m:ident, $group:ident, $finish:ident) => {
            pub(crate) mod $m {
                use super::*;

                /// Tile `k` of a unit of `k_u` tiles (blocks side by side), Q8_0 / Q4_0 / Q4_1.
                #[target_feature(enable = $feat)]
                unsafe fn q8_family(
                    ty: GgmlType,
                    unit: &[u8],
                    k_u: usize,
                    k: usize,
                    act: &[BlockQ8_0],
                    sums: &[f32],
                    isum: &[i32],
                ) -> [f32; TILE] {
                    let tbb = tile_block_len(ty);
                    let k = k.min(k_u.saturating_sub(1));
                    let nb = (unit.len() / (k_u * tbb))
                        .min(act.len())
                        .min(sums.len())
                        .min(isum.len());
                    let m4 = vdupq_n_u8(0x0F);
                    let flip = vdupq_n_u8(0x80);
                    let mut acc = [vdupq_n_f32(0.0); 4];
                    for b in 0..nb {
                        // In bounds: (b * k_u + k) * tbb + (offset < tbb) <= nb * k_u * tbb <= unit.len().
                        let blk = unit.as_ptr().add((b * k_u + k) * tbb);
                        let a = &act[b];
                        let ys = a.qs.as_ptr();
                        let d = scales(blk, a.d.to_f32());
                        let mut dot8 = [vdupq_n_s32(0); 8];
                        match ty {
                            GgmlType::Q8_0 => {
                                // Stored as w + 128: flipping the top bit gives w back as i8, so the
                                // signed dot is already sum(w * y) = sum((w + 128) * y) - 128 * sum(y).
                                for g in 0..8 {
                                    let w = load64(blk.add(32 + 64 * g))
                                        .map(|v| vreinterpretq_s8_u8(veorq_u8(v, flip)));
                                    $group(&mut dot8, w, bcast4(ys.add(4 * g)));
                                }
                            }
                            _ => {
                                let wo = if ty == GgmlType::Q4_1 { 64 } else { 32 };
                                for c in 0..4 {
                                    let v = load64(blk.add(wo + 64 * c));
                                    let lo = v.map(|x| vreinterpretq_s8_u8(vandq_u8(x, m4)));
                                    let hi = v.map(|x| vreinterpretq_s8_u8(vshrq_n_u8::<4>(x)));
                                    $group(&mut dot8, lo, bcast4(ys.add(4 * c)));
                                    $group(&mut dot8, hi, bcast4(ys.add(16 + 4 * c)));
                                }
                            }
                        }
                        let mut dot = $finish(dot8);
                        if ty == GgmlType::Q4_0 {
                            let off = vdupq_n_s32(8 * isum[b]);
                            dot = dot.map(|v| vsubq_s32(v, off));
                        }
                        for q in 0..4 {
                            acc[q] = vfmaq_f32(acc[q], d[q], vcvtq_f32_s32(dot[q]));
                        }
                        if ty == GgmlType::Q4_1 {
                            let m = scales(blk.add(32), 1.0);
                            let s = vdupq_n_f32(sums[b]);
                            for q in 0..4 {
                                acc[q] = vfmaq_f32(acc[q], m[q], s);
                            }
                        }
                    }
                    store(acc)
                }

                /// Tile `k` of a unit of `k_u` Q4_K tiles.
                #[target_feature(enable = $feat)]
                unsafe fn q4k(unit: &[u8], k_u: usize, k: usize, act: &[BlockQ8K]) -> [f32; TILE] {
                    let tbb = tile_block_len(GgmlType::Q4K);
                    let k = k.min(k_u.saturating_sub(1));
                    let nb = (unit.len() / (k_u * tbb)).min(act.len());
                    let m4 = vdupq_n_u8(0x0F);
                    let mut acc = [vdupq_n_f32(0.0); 4];
                    for b in 0..nb {
                        // In bounds: as in `q8_family`.
                        let blk = unit.as_ptr().add((b * k_u + k) * tbb);
                        let a = &act[b];
                        let ys = a.qs.as_ptr();
                        let bsums = a.bsums;
                        let mut isum = [vdupq_n_s32(0); 4];
                        for j in 0..4 {
                            let (mut lo8, mut hi8) = ([vdupq_n_s32(0); 8], [vdupq_n_s32(0); 8]);
                            for c in 0..8 {
                                let v = load64(blk.add(320 + 512 * j + 64 * c));
                                let lo = v.map(|x| vreinterpretq_s8_u8(vandq_u8(x, m4)));
                                let hi = v.map(|x| vreinterpretq_s8_u8(vshrq_n_u8::<4>(x)));
                                $group(&mut lo8, lo, bcast4(ys.add(64 * j + 4 * c)));
                                $group(&mut hi8, hi, bcast4(ys.add(64 * j + 32 + 4 * c)));
                            }
                            let (lo_acc, hi_acc) = ($finish(lo8), $finish(hi8));
                            let sc_lo = u8x16_to_i32(blk.add(64 + 32 * j));
                            let sc_hi = u8x16_to_i32(blk.add(64 + 32 * j + 16));
                            for q in 0..4 {
                                isum[q] = vmlaq_s32(isum[q], lo_acc[q], sc_lo[q]);
                                isum[q] = vmlaq_s32(isum[q], hi_acc[q], sc_hi[q]);
                            }
                        }
                        let mut msum = [vdupq_n_s32(0); 4];
                        for s in 0..8 {
                            let bs = bsums[2 * s] as i32 + bsums[2 * s + 1] as i32;
                            let m = u8x16_to_i32(blk.add(192 + 16 * s));
                            for q in 0..4 {
                                msum[q] = vmlaq_n_s32(msum[q], m[q], bs);
                            }
                        }
                        let dd = scales(blk, a.d);
                        let dm = scales(blk.add(32), a.d);
                        for q in 0..4 {
                            acc[q] = vfmaq_f32(acc[q], dd[q], vcvtq_f32_s32(isum[q]));
                            acc[q] = vfmsq_f32(acc[q], dm[q], vcvtq_f32_s32(msum[q]));
                        }
                    }
                    store(acc)
                }

                /// Tile `k` of a unit of `k_u` Q6_K tiles.
                #[target_feature(enable = $feat)]
                unsafe fn q6k(unit: &[u8], k_u: usize, k: usize, act: &[BlockQ8K]) -> [f32; TILE] {
                    const SC: usize = 32;
                    const LOW: usize = SC + 256;
                    const HIGH: usize = LOW + 2048;
                    let tbb = tile_block_len(GgmlType::Q6K);
                    let k = k.min(k_u.saturating_sub(1));
                    let nb = (unit.len() / (k_u * tbb)).min(act.len());
                    let mut acc = [vdupq_n_f32(0.0); 4];
                    for b in 0..nb {
                        // In bounds: as in `q8_family`.
                        let blk = unit.as_ptr().add((b * k_u + k) * tbb);
                        let a = &act[b];
                        let ys = a.qs.as_ptr();
                        let mut isum = [vdupq_n_s32(0); 4];
                        for j in 0..4 {
                            // Nibble groups 4g .. 4g + 4: sub-blocks 4j + g (low nibbles) and
                            // 4j + 2 + g (high nibbles).
                            for g in 0..2 {
                                let (mut lo8, mut hi8) = ([vdupq_n_s32(0); 8], [vdupq_n_s32(0); 8]);
                                for p in 2 * g..2 * g + 2 {
                                    let v0 = load64(blk.add(LOW + 512 * j + 128 * p));
                                    let v1 = load64(blk.add(LOW + 512 * j + 128 * p + 64));
                                    let h = load64(blk.add(HIGH + 256 * j + 64 * p));
                                    let q: [[int8x16_t; 4]; 4] =
                                        std::array::from_fn(|r| q6_quants(v0[r], v1[r], h[r]));
                                    let part = |i: usize| std::array::from_fn(|r| q[r][i]);
                                    let y = |c: usize, hi: usize| {
                                        bcast4(ys.add(64 * j + 32 * hi + 4 * c))
                                    };
                                    $group(&mut lo8, part(0), y(2 * p, 0));
                                    $group(&mut hi8, part(1), y(2 * p, 1));
                                    $group(&mut lo8, part(2), y(2 * p + 1, 0));
                                    $group(&mut hi8, part(3), y(2 * p + 1, 1));
                                }
                                let (lo, hi) = ($finish(lo8), $finish(hi8));
                                let sc_lo = i8x16_to_i32(blk.add(SC + 16 * (4 * j + g)));
                                let sc_hi = i8x16_to_i32(blk.add(SC + 16 * (4 * j + 2 + g)));
                                for q in 0..4 {
                                    isum[q] = vmlaq_s32(isum[q], lo[q], sc_lo[q]);
                                    isum[q] = vmlaq_s32(isum[q], hi[q], sc_hi[q]);
                                }
                            }
                        }
                        let mut msum = [vdupq_n_s32(0); 4];
                        for s in 0..16 {
                            let m = i8x16_to_i32(blk.add(SC + 16 * s));
                            for q in 0..4 {
                                msum[q] = vmlaq_n_s32(msum[q], m[q], a.bsums[s] as i32);
                            }
                        }
                        let d = scales(blk, a.d);
                        for q in 0..4 {
                            let v = vsubq_s32(isum[q], vshlq_n_s32::<5>(msum[q]));
                            acc[q] = vfmaq_f32(acc[q], d[q], vcvtq_f32_s32(v));
                        }
                    }
                    store(acc)
                }

                fn tile_q8_family(
                    ty: GgmlType,
                    unit: &[u8],
                    k_u: usize,
                    k: usize,
                    act: &[BlockQ8_0],
                    sums: &[f32],
                    isum: &[i32],
                ) -> [f32; TILE] {
                    // SAFETY: reached only through the kernel tables of paths whose features this
                    // module's kernels enable (`$feat`), which exist only after run-time detection; the
                    // kernel bounds every pointer offset by the slice lengths it is given.
                    unsafe { q8_family(ty, unit, k_u, k, act, sums, isum) }
                }

                fn tile_q4k(unit: &[u8], k_u: usize, k: usize, act: &[BlockQ8K]) -> [f32; TILE] {
                    // SAFETY: as above.
                    unsafe { q4k(unit, k_u, k, act) }
                }

                fn tile_q6k(unit: &[u8], k_u: usize, k: usize, act: &[BlockQ8K]) -> [f32; TILE] {
                    // SAFETY: as above.
                    unsafe { q6k(unit, k_u, k, act) }
                }

                /// A unit of one or two tiles (`data.len()` = 1 or 2 x `tile_bytes`) of a Q8_0 / Q4_0 /
                /// Q4_1 matrix, as the kernel table holds it.
                pub(crate) fn tiles_q8_family(
                    ty: GgmlType,
                    data: &[u8],
                    tile_bytes: usize,
                    act: &[BlockQ8_0],
                    sums: &[f32],
                    isum: &[i32],
                    _stream: bool,
                ) -> [[f32; TILE]; 2] {
                    crate::quant::packed::per_tile(data.len(), tile_bytes, |k_u, k| {
                        tile_q8_family(ty, data, k_u, k, act, sums, isum)
                    })
                }

                /// One or two tiles of a Q4_K matrix.
                pub(crate) fn tiles_q4k(
                    data: &[u8],
                    tile_bytes: usize,
                    act: &[BlockQ8K],
                    _stream: bool,
                ) -> [[f32; TILE]; 2] {
                    crate::quant::packed::per_tile(data.len(), tile_bytes, |k_u, k| {
                        tile_q4k(data, k_u, k, act)
                    })
                }

                /// One or two tiles of a Q6_K matrix.
                pub(crate) fn tiles_q6k(
                    data: &[u8],
                    tile_bytes: usize,
                    act: &[BlockQ8K],
                    _stream: bool,
                ) -> [[f32; TILE]; 2] {
                    crate::quant::packed::per_tile(data.len(), tile_bytes, |k_u, k| {
                        tile_q6k(data, k_u, k, act)
                    })
                }
            }
        };
    }

    packed_kernels!("neon,dotprod", dotprod, group_sdot, finish_sdot);
    packed_kernels!("neon", plain, group_mull, finish_mull);
}

/// NEON activation quantizers: the bytes of the scalar reference (`scalar::quantize_act_*`),
/// faster. `fcvtas` rounds ties away from zero (`f32::round`), `fcvtns` ties to even (ggml's
/// `nearest_int`). A block holding a NaN or an infinity, or whose scale inverts to an
/// infinity, is left to the scalar code, whose handling of those the vector instructions would
/// not match.
pub(crate) mod quant {
    use super::*;
    use crate::quant::scalar;

    /// Whether every lane of `a` (absolute values) is finite.
    #[inline(always)]
    unsafe fn all_finite(a: &[float32x4_t]) -> bool {
        let inf = vdupq_n_f32(f32::INFINITY);
        let m = a.iter().fold(vdupq_n_u32(u32::MAX), |m, &a| {
            vandq_u32(m, vcltq_f32(a, inf))
        });
        vminvq_u32(m) == u32::MAX
    }

    /// Four vectors of 4 i32 to 16 saturated i8, in order.
    #[inline(always)]
    unsafe fn narrow16(v: [int32x4_t; 4]) -> int8x16_t {
        let a = vcombine_s16(vqmovn_s32(v[0]), vqmovn_s32(v[1]));
        let b = vcombine_s16(vqmovn_s32(v[2]), vqmovn_s32(v[3]));
        vcombine_s8(vqmovn_s16(a), vqmovn_s16(b))
    }

    #[target_feature(enable = "neon")]
    unsafe fn q8_0(x: &[f32], q: &mut [BlockQ8_0], sums: &mut [f32], isum: &mut [i32]) {
        let nb = (x.len() / 32).min(q.len()).min(sums.len()).min(isum.len());
        for b in 0..nb {
            let xs = &x[32 * b..32 * b + 32];
            // In bounds: `xs` has 32 elements.
            let v: [float32x4_t; 8] = std::array::from_fn(|i| vld1q_f32(xs.as_ptr().add(4 * i)));
            let a = v.map(|v| vabsq_f32(v));
            let m = a.iter().fold(a[0], |m, &a| vmaxq_f32(m, a));
            let amax = vmaxvq_f32(m);
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            if !all_finite(&a) || !id.is_finite() {
                scalar::quantize_act_q8_0(
                    xs,
                    &mut q[b..b + 1],
                    &mut sums[b..b + 1],
                    &mut isum[b..b + 1],
                );
                continue;
            }
            let i = v.map(|v| vcvtaq_s32_f32(vmulq_n_f32(v, id)));
            let out = q[b].qs.as_mut_ptr();
            vst1q_s8(out, narrow16([i[0], i[1], i[2], i[3]]));
            vst1q_s8(out.add(16), narrow16([i[4], i[5], i[6], i[7]]));
            q[b].d = half::f16::from_f32(d);
            let s = vaddvq_s32(i.iter().fold(vdupq_n_s32(0), |s, &v| vaddq_s32(s, v)));
            isum[b] = s;
            sums[b] = scalar::q8_1_sum(d, s);
        }
    }

    #[target_feature(enable = "neon")]
    unsafe fn q8k(x: &[f32], q: &mut [BlockQ8K]) {
        let nb = (x.len() / 256).min(q.len());
        let (lo, hi) = (vdupq_n_s32(-128), vdupq_n_s32(127));
        for b in 0..nb {
            let xs = &x[256 * b..256 * b + 256];
            // In bounds: `xs` has 256 elements.
            let v: [float32x4_t; 64] = std::array::from_fn(|i| vld1q_f32(xs.as_ptr().add(4 * i)));
            let a = v.map(|v| vabsq_f32(v));
            let amax = vmaxvq_f32(a.iter().fold(a[0], |m, &a| vmaxq_f32(m, a)));
            if !all_finite(&a) || amax == 0.0 {
                scalar::quantize_act_q8k(xs, &mut q[b..b + 1]);
                continue;
            }
            // The scalar code's `max`: the first value of largest magnitude.
            let max = xs.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
            let iscale = -127.0 / max;
            let blk = &mut q[b];
            for g in 0..16 {
                let i: [int32x4_t; 4] = std::array::from_fn(|k| {
                    let r = vcvtnq_s32_f32(vmulq_n_f32(v[4 * g + k], iscale));
                    vminq_s32(vmaxq_s32(r, lo), hi)
                });
                vst1q_s8(blk.qs.as_mut_ptr().add(16 * g), narrow16(i));
                let s = vaddq_s32(vaddq_s32(i[0], i[1]), vaddq_s32(i[2], i[3]));
                blk.bsums[g] = vaddvq_s32(s) as i16;
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
        // SAFETY: installed only in the NEON tables, after `has_neon()`; accesses are bounded
        // by the slice lengths.
        unsafe { q8_0(x, q, sums, isum) }
    }

    pub(crate) fn quantize_act_q8k(x: &[f32], q: &mut [BlockQ8K]) {
        // SAFETY: as above.
        unsafe { q8k(x, q) }
    }
}

/// The i8mm path: `smmla` multiplies a 2x8 by an 8x2 int8 matrix into 2x2 int32 lanes, so the
/// prefill product of two weight rows and two tokens over 8 columns is one instruction (32
/// multiply-adds, twice an `sdot`'s). [`i8mm::vec_dot_q8_0_q8_0_2x4`] and its Q4_0 / Q4_1
/// siblings compute two rows x four tokens per call from the ggml row-major blocks as stored,
/// interleaving 8-byte halves of the two rows (and of two tokens) with `zip1`/`zip2`.
///
/// Each (row, token) output is accumulated exactly as by this path's one-row kernels: per
/// block the exact integer dot, then `sum = fma(dot, d_w * d_x, sum)` (and, for Q4_1,
/// `summ += m * s` added at the end), so a matrix product equals repeated matrix-vector
/// products bit for bit. The one-row kernels use `sdot` and reduce each block's dot to a
/// scalar, a slightly longer chain per block than the dotprod path's lane-wise accumulation:
/// that is the price of the bit-identity.
pub(crate) mod i8mm {
    use super::*;

    /// `acc + a * b^T`: `a`, `b` each two rows of 8 i8; lanes `[a0.b0, a0.b1, a1.b0, a1.b1]`.
    #[inline(always)]
    unsafe fn mmla(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: register-only instruction; the enclosing functions enable `i8mm` and are
        // called only when the CPU has it.
        std::arch::asm!(
            "smmla {0:v}.4s, {1:v}.16b, {2:v}.16b",
            inout(vreg) acc, in(vreg) a, in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
        acc
    }

    /// Columns 0-7 of `a` and `b`, and columns 8-15 of both, as `smmla` operands.
    #[inline(always)]
    unsafe fn zip(a: int8x16_t, b: int8x16_t) -> [int8x16_t; 2] {
        let (a, b) = (vreinterpretq_s64_s8(a), vreinterpretq_s64_s8(b));
        [
            vreinterpretq_s8_s64(vzip1q_s64(a, b)),
            vreinterpretq_s8_s64(vzip2q_s64(a, b)),
        ]
    }

    /// A 32-column weight block as two signed 16-byte halves (columns 0-15, 16-31), its
    /// scale, and its min (Q4_1; 0 elsewhere).
    pub(crate) trait Block32 {
        const HAS_MIN: bool;
        unsafe fn halves(&self) -> [int8x16_t; 2];
        fn d(&self) -> f32;
        fn m(&self) -> f32;
    }

    impl Block32 for BlockQ8_0 {
        const HAS_MIN: bool = false;
        #[inline(always)]
        unsafe fn halves(&self) -> [int8x16_t; 2] {
            [
                vld1q_s8(self.qs.as_ptr()),
                vld1q_s8(self.qs.as_ptr().add(16)),
            ]
        }
        fn d(&self) -> f32 {
            self.d.to_f32()
        }
        fn m(&self) -> f32 {
            0.0
        }
    }

    impl Block32 for BlockQ4_0 {
        const HAS_MIN: bool = false;
        #[inline(always)]
        unsafe fn halves(&self) -> [int8x16_t; 2] {
            let v = vld1q_u8(self.qs.as_ptr());
            let off = vdupq_n_s8(8);
            [
                vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F))), off),
                vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(v)), off),
            ]
        }
        fn d(&self) -> f32 {
            self.d.to_f32()
        }
        fn m(&self) -> f32 {
            0.0
        }
    }

    impl Block32 for BlockQ4_1 {
        const HAS_MIN: bool = true;
        #[inline(always)]
        unsafe fn halves(&self) -> [int8x16_t; 2] {
            let v = vld1q_u8(self.qs.as_ptr());
            [
                vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F))),
                vreinterpretq_s8_u8(vshrq_n_u8::<4>(v)),
            ]
        }
        fn d(&self) -> f32 {
            self.d.to_f32()
        }
        fn m(&self) -> f32 {
            self.m.to_f32()
        }
    }

    /// One row, one token (`s`: the activation blocks' Q8_1 sums, used by Q4_1 only).
    #[target_feature(enable = "neon,dotprod,i8mm")]
    unsafe fn one<W: Block32>(x: &[W], y: &[BlockQ8_0], s: &[f32]) -> f32 {
        let mut nb = x.len().min(y.len());
        if W::HAS_MIN {
            nb = nb.min(s.len());
        }
        let (mut sum, mut summ) = (0f32, 0f32);
        for b in 0..nb {
            let (a, t) = (&x[b], &y[b]);
            let w = a.halves();
            let p = dot_sdot(
                dot_sdot(vdupq_n_s32(0), w[0], vld1q_s8(t.qs.as_ptr())),
                w[1],
                vld1q_s8(t.qs.as_ptr().add(16)),
            );
            sum = (vaddvq_s32(p) as f32).mul_add(a.d() * t.d.to_f32(), sum);
            if W::HAS_MIN {
                summ += a.m() * s[b];
            }
        }
        sum + summ
    }

    /// Rows `x[0]`, `x[1]` times tokens `y[0..4]`: `out[i][j]` = row `i` . token `j`.
    #[target_feature(enable = "neon,dotprod,i8mm")]
    unsafe fn two_by_four<W: Block32>(
        x: [&[W]; 2],
        y: [&[BlockQ8_0]; 4],
        s: [&[f32]; 4],
    ) -> [[f32; 4]; 2] {
        let mut nb = x[0].len().min(x[1].len());
        for t in 0..4 {
            nb = nb.min(y[t].len());
            if W::HAS_MIN {
                nb = nb.min(s[t].len());
            }
        }
        // acc[h] lanes: [row 0 . token 2h, row 0 . token 2h+1, row 1 . token 2h, row 1 . token 2h+1].
        let mut acc = [vdupq_n_f32(0.0); 2];
        let mut summ = [vdupq_n_f32(0.0); 2];
        for b in 0..nb {
            let (a0, a1) = (&x[0][b], &x[1][b]);
            let (w0, w1) = (a0.halves(), a1.halves());
            let [c0, c1] = zip(w0[0], w1[0]);
            let [c2, c3] = zip(w0[1], w1[1]);
            let (d0, d1) = (a0.d(), a1.d());
            for h in 0..2 {
                let (t0, t1) = (&y[2 * h][b], &y[2 * h + 1][b]);
                let (p, q) = (t0.qs.as_ptr(), t1.qs.as_ptr());
                let [e0, e1] = zip(vld1q_s8(p), vld1q_s8(q));
                let [e2, e3] = zip(vld1q_s8(p.add(16)), vld1q_s8(q.add(16)));
                let mut dot = mmla(vdupq_n_s32(0), c0, e0);
                dot = mmla(dot, c1, e1);
                dot = mmla(dot, c2, e2);
                dot = mmla(dot, c3, e3);
                let (dy0, dy1) = (t0.d.to_f32(), t1.d.to_f32());
                let scale = [d0 * dy0, d0 * dy1, d1 * dy0, d1 * dy1];
                acc[h] = vfmaq_f32(acc[h], vcvtq_f32_s32(dot), vld1q_f32(scale.as_ptr()));
                if W::HAS_MIN {
                    let (m0, m1) = (a0.m(), a1.m());
                    let (s0, s1) = (s[2 * h][b], s[2 * h + 1][b]);
                    let mins = [m0 * s0, m0 * s1, m1 * s0, m1 * s1];
                    summ[h] = vaddq_f32(summ[h], vld1q_f32(mins.as_ptr()));
                }
            }
        }
        let mut lanes = [[0f32; 4]; 2];
        for h in 0..2 {
            vst1q_f32(lanes[h].as_mut_ptr(), vaddq_f32(acc[h], summ[h]));
        }
        [
            [lanes[0][0], lanes[0][1], lanes[1][0], lanes[1][1]],
            [lanes[0][2], lanes[0][3], lanes[1][2], lanes[1][3]],
        ]
    }

    // SAFETY (every wrapper below): installed only in the i8mm table, after `has_i8mm()`
    // (NEON + dotprod + i8mm); every access is bounded by the slice lengths.

    pub(crate) fn vec_dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
        // SAFETY: see above.
        unsafe { one(x, y, &[]) }
    }
    pub(crate) fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
        // SAFETY: see above.
        unsafe { one(x, y, &[]) }
    }
    pub(crate) fn vec_dot_q4_1_q8_0(x: &[BlockQ4_1], y: &[BlockQ8_0], s: &[f32]) -> f32 {
        // SAFETY: see above.
        unsafe { one(x, y, s) }
    }
    /// The two-row kernel of `W` (one instance per format in the i8mm table).
    pub(crate) fn vec_dot_2x4<W: Block32>(
        x: [&[W]; 2],
        y: [&[BlockQ8_0]; 4],
        s: [&[f32]; 4],
    ) -> [[f32; 4]; 2] {
        // SAFETY: see above.
        unsafe { two_by_four(x, y, s) }
    }
}
