//! AVX2 and AVX-VNNI kernels over [`crate::quant::PackedMatrix`] tiles, 256 bits wide.
//!
//! A 16-row tile's 64-byte group (4 consecutive weights of each of 16 rows) is two `ymm`
//! halves of 8 rows, so every `i32` / `f32` lane is still one row and there is no horizontal
//! sum. The operations per lane are those of the scalar twins in `packed.rs` (exact integer
//! dots, then the same `f32` multiplies and fused multiply-adds in the same order), so every
//! path gives bit-identical outputs.
//!
//! The integer dots differ only in how they are formed, never in their value:
//! - AVX-VNNI: one `vpdpbusd` per 32 bytes (unsigned weights times signed activations, summed
//!   in `i32`), as the AVX-512 kernel does at twice the width.
//! - AVX2: `vpmaddubsw` (pairs of u8 x i8 summed to i16, saturating) then one `vpmaddwd` by
//!   ones to i32. For 4-bit weights (0..=15) against activations in -127..=127 a `maddubs`
//!   lane is at most 2 * 15 * 127 = 3810 in magnitude, so up to 8 of them add in i16 without
//!   overflow (30480 < 32767) and one `madd` finishes 8 products per row. Q8_0 weights are
//!   stored with a +128 offset (for `vpdpbusd`); AVX2 flips them back to signed and uses the
//!   sign trick (`|w|` times `y * sign(w)`: at most 2 * 128 * 127 = 32512, no saturation), so
//!   its dot is the signed one directly while the VNNI dot subtracts `128 * sum(y)`.

use std::arch::x86_64::*;

use super::{h2f, prefetch, PREFETCH_DISTANCE};
use crate::quant::blocks::{BlockQ8K, BlockQ8_0};
use crate::quant::packed::{tile_block_len, TILE};
use crate::quant::GgmlType;

/// 8 f16 at `p` to f32.
#[inline(always)]
unsafe fn load_f16x8(p: *const u8) -> __m256 {
    _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
}

/// 4 activation bytes at `p`, broadcast to every 32-bit lane.
#[inline(always)]
unsafe fn bcast4(p: *const i8) -> __m256i {
    _mm256_set1_epi32(p.cast::<i32>().read_unaligned())
}

/// 8 bytes at `p`, zero-extended to i32.
#[inline(always)]
unsafe fn u8x8(p: *const u8) -> __m256i {
    _mm256_cvtepu8_epi32(_mm_loadl_epi64(p.cast()))
}

/// 8 bytes at `p` and 8 at `p + 16`, interleaved and zero-extended to i16: i32 lane `i` holds
/// the pair `(p[i], p[16 + i])`.
#[inline(always)]
unsafe fn u8x8_pairs(p: *const u8) -> __m256i {
    let lo = _mm_loadl_epi64(p.cast());
    let hi = _mm_loadl_epi64(p.add(16).cast());
    _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(lo, hi))
}

/// As [`u8x8_pairs`], sign-extended (Q6_K's scales are i8).
#[inline(always)]
unsafe fn i8x8_pairs(p: *const u8) -> __m256i {
    let lo = _mm_loadl_epi64(p.cast());
    let hi = _mm_loadl_epi64(p.add(16).cast());
    _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(lo, hi))
}

/// The 6-bit quants of Q6_K nibble groups `2p` and `2p + 1` (see `packed.rs`) from their
/// nibble vectors `v` and shared high-bit vector `h`: `[lo(2p), hi(2p), lo(2p+1), hi(2p+1)]`.
/// The shifts are 16-bit; the masks keep only bits that stayed in their byte.
#[inline(always)]
unsafe fn q6_quants(v: [__m256i; 2], h: __m256i) -> [__m256i; 4] {
    // No closures here: they would not inherit the caller's target features.
    let (m4, m30) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x30));
    let lo0 = _mm256_and_si256(v[0], m4);
    let hi0 = _mm256_and_si256(_mm256_srli_epi16::<4>(v[0]), m4);
    let lo1 = _mm256_and_si256(v[1], m4);
    let hi1 = _mm256_and_si256(_mm256_srli_epi16::<4>(v[1]), m4);
    [
        _mm256_or_si256(lo0, _mm256_and_si256(_mm256_slli_epi16::<4>(h), m30)),
        _mm256_or_si256(hi0, _mm256_and_si256(_mm256_slli_epi16::<2>(h), m30)),
        _mm256_or_si256(lo1, _mm256_and_si256(h, m30)),
        _mm256_or_si256(hi1, _mm256_and_si256(_mm256_srli_epi16::<2>(h), m30)),
    ]
}

#[inline(always)]
unsafe fn load(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p.cast())
}

/// AVX2: per i32 lane, the dot of the 4 unsigned bytes of each `w[k]` with those of `y[k]`,
/// summed over `k`. Exact when every `w` byte is <= 15 and every `y` byte in -127..=127 and
/// `K <= 8` (see the module docs).
#[inline(always)]
unsafe fn nib_avx2<const K: usize>(w: [__m256i; K], y: [__m256i; K]) -> __m256i {
    let mut s = _mm256_maddubs_epi16(w[0], y[0]);
    for k in 1..K {
        s = _mm256_add_epi16(s, _mm256_maddubs_epi16(w[k], y[k]));
    }
    _mm256_madd_epi16(s, _mm256_set1_epi16(1))
}

/// AVX2: [`nib_avx2`] times a per-row scale (`sc`, i32 lanes of 0..=255): the i16 sums are
/// multiplied by the scale in the same `vpmaddwd` that widens them (`|sum| <= 30480`, so
/// `2 * 30480 * 255` fits i32), which saves a `vpmulld` (10-cycle latency) per 8 products.
#[inline(always)]
unsafe fn nib_scaled_avx2<const K: usize>(
    w: [__m256i; K],
    y: [__m256i; K],
    sc: __m256i,
) -> __m256i {
    let mut s = _mm256_maddubs_epi16(w[0], y[0]);
    for k in 1..K {
        s = _mm256_add_epi16(s, _mm256_maddubs_epi16(w[k], y[k]));
    }
    _mm256_madd_epi16(s, _mm256_or_si256(sc, _mm256_slli_epi32::<16>(sc)))
}

/// AVX2: the dot per row of 4 vectors of 6-bit weights (0..=63) with `y` (-127..=127), times
/// a per-row signed scale (`sc`, i32 lanes of -128..=127): `maddubs` lanes are at most
/// 2 * 63 * 127 = 16002, so two add in i16 (32004 < 32767), and each such sum is widened and
/// scaled by one `vpmaddwd` with the scale in both halves of the lane.
#[inline(always)]
unsafe fn q6_scaled_avx2(w: [__m256i; 4], y: [__m256i; 4], sc: __m256i) -> __m256i {
    let pair = _mm256_blend_epi16::<0b1010_1010>(sc, _mm256_slli_epi32::<16>(sc));
    let s0 = _mm256_add_epi16(
        _mm256_maddubs_epi16(w[0], y[0]),
        _mm256_maddubs_epi16(w[1], y[1]),
    );
    let s1 = _mm256_add_epi16(
        _mm256_maddubs_epi16(w[2], y[2]),
        _mm256_maddubs_epi16(w[3], y[3]),
    );
    _mm256_add_epi32(_mm256_madd_epi16(s0, pair), _mm256_madd_epi16(s1, pair))
}

/// AVX2: the signed Q8_0 dot per row of 8 offset weight vectors (`w + 128`) with `y`.
#[inline(always)]
unsafe fn q8_avx2(w: [__m256i; 8], y: [__m256i; 8], _isum: i32) -> __m256i {
    let flip = _mm256_set1_epi8(-128);
    let ones = _mm256_set1_epi16(1);
    let mut s = _mm256_setzero_si256();
    for g in 0..8 {
        let ws = _mm256_xor_si256(w[g], flip);
        let p = _mm256_maddubs_epi16(_mm256_abs_epi8(ws), _mm256_sign_epi8(y[g], ws));
        s = _mm256_add_epi32(s, _mm256_madd_epi16(p, ones));
    }
    s
}

/// AVX-VNNI: as [`nib_avx2`], one `vpdpbusd` per vector (exact for any bytes).
#[inline(always)]
unsafe fn nib_vnni<const K: usize>(w: [__m256i; K], y: [__m256i; K]) -> __m256i {
    let mut s = _mm256_setzero_si256();
    for k in 0..K {
        s = _mm256_dpbusd_avx_epi32(s, w[k], y[k]);
    }
    s
}

/// AVX-VNNI: [`nib_vnni`] times a per-row scale.
#[inline(always)]
unsafe fn nib_scaled_vnni<const K: usize>(
    w: [__m256i; K],
    y: [__m256i; K],
    sc: __m256i,
) -> __m256i {
    _mm256_mullo_epi32(nib_vnni(w, y), sc)
}

/// AVX-VNNI: as [`q6_scaled_avx2`], four `vpdpbusd` and one `vpmulld`.
#[inline(always)]
unsafe fn q6_scaled_vnni(w: [__m256i; 4], y: [__m256i; 4], sc: __m256i) -> __m256i {
    _mm256_mullo_epi32(nib_vnni(w, y), sc)
}

/// AVX-VNNI: the signed Q8_0 dot, `sum((w + 128) * y) - 128 * sum(y)`.
#[inline(always)]
unsafe fn q8_vnni(w: [__m256i; 8], y: [__m256i; 8], isum: i32) -> __m256i {
    _mm256_sub_epi32(nib_vnni(w, y), _mm256_set1_epi32(128 * isum))
}

/// Stamps out the packed kernels for one instruction set: `$nib` forms nibble dots,
/// `$nibsc` nibble dots times a per-row scale, `$q8` Q8_0 dots, `$q6sc` 6-bit dots times a
/// signed per-row scale.
macro_rules! packed256_kernels {
    ($feat:literal, $m:ident, $nib:ident, $nibsc:ident, $q8:ident, $q6sc:ident) => {
        pub(crate) mod $m {
            use super::*;

            /// `data` holds a unit of `T` tiles, their blocks side by side.
            #[target_feature(enable = $feat)]
            unsafe fn q8_family<const T: usize>(
                ty: GgmlType,
                data: &[u8],
                act: &[BlockQ8_0],
                sums: &[f32],
                isum: &[i32],
                stream: bool,
            ) -> [[f32; TILE]; T] {
                let tbb = tile_block_len(ty);
                let nb = (data.len() / (T * tbb))
                    .min(act.len())
                    .min(sums.len())
                    .min(isum.len());
                let m4 = _mm256_set1_epi8(0x0F);
                let mut acc = [[_mm256_setzero_ps(); 2]; T];
                for b in 0..nb {
                    // In bounds: (b * T + t) * tbb + (offset < tbb) <= nb * T * tbb <= data.len().
                    let blk: [*const u8; T] =
                        std::array::from_fn(|t| data.as_ptr().add((b * T + t) * tbb));
                    if stream {
                        prefetch(data.as_ptr(), b * T * tbb + PREFETCH_DISTANCE, T * tbb);
                    }
                    let a = &act[b];
                    let ys = a.qs.as_ptr();
                    let dy = _mm256_set1_ps(h2f(a.d));
                    if ty == GgmlType::Q8_0 {
                        let y: [__m256i; 8] = std::array::from_fn(|g| bcast4(ys.add(4 * g)));
                        for t in 0..T {
                            for h in 0..2 {
                                let w: [__m256i; 8] =
                                    std::array::from_fn(|g| load(blk[t].add(32 + 64 * g + 32 * h)));
                                let v = $q8(w, y, isum[b]);
                                let d = _mm256_mul_ps(load_f16x8(blk[t].add(16 * h)), dy);
                                acc[t][h] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(v), acc[t][h]);
                            }
                        }
                        continue;
                    }
                    let q1 = ty == GgmlType::Q4_1;
                    let wo = if q1 { 64 } else { 32 };
                    // Low nibbles of group c are columns 4c..4c+4, high nibbles 16+4c..
                    let y: [__m256i; 8] =
                        std::array::from_fn(|i| bcast4(ys.add(4 * (i % 4) + 16 * (i / 4))));
                    let off = _mm256_set1_epi32(8 * isum[b]);
                    let sy = _mm256_set1_ps(sums[b]);
                    for t in 0..T {
                        for h in 0..2 {
                            let v: [__m256i; 4] =
                                std::array::from_fn(|c| load(blk[t].add(wo + 64 * c + 32 * h)));
                            let w: [__m256i; 8] = std::array::from_fn(|i| {
                                if i < 4 {
                                    _mm256_and_si256(v[i], m4)
                                } else {
                                    _mm256_and_si256(_mm256_srli_epi16::<4>(v[i - 4]), m4)
                                }
                            });
                            let dot = $nib(w, y);
                            let d = _mm256_mul_ps(load_f16x8(blk[t].add(16 * h)), dy);
                            if q1 {
                                let m = load_f16x8(blk[t].add(32 + 16 * h));
                                acc[t][h] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot), acc[t][h]);
                                acc[t][h] = _mm256_fmadd_ps(m, sy, acc[t][h]);
                            } else {
                                let v = _mm256_sub_epi32(dot, off);
                                acc[t][h] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(v), acc[t][h]);
                            }
                        }
                    }
                }
                store(acc)
            }

            /// `data` holds a unit of `T` tiles, their blocks side by side.
            #[target_feature(enable = $feat)]
            unsafe fn q4k<const T: usize>(
                data: &[u8],
                act: &[BlockQ8K],
                stream: bool,
            ) -> [[f32; TILE]; T] {
                let tbb = tile_block_len(GgmlType::Q4K);
                let nb = (data.len() / (T * tbb)).min(act.len());
                let m4 = _mm256_set1_epi8(0x0F);
                let mut acc = [[_mm256_setzero_ps(); 2]; T];
                for b in 0..nb {
                    // In bounds: as in `q8_family`.
                    let blk: [*const u8; T] =
                        std::array::from_fn(|t| data.as_ptr().add((b * T + t) * tbb));
                    if stream {
                        // The next block (several KiB: more than PREFETCH_DISTANCE).
                        prefetch(data.as_ptr(), (b + 1) * T * tbb, T * tbb);
                    }
                    let a = &act[b];
                    let ys = a.qs.as_ptr();
                    let dy = _mm256_set1_ps(a.d);
                    // Sub-block activation sums, two sub-blocks per i32 lane as i16 pairs
                    // (each <= 32 * 128 = 4096 in magnitude) for `vpmaddwd` with the mins.
                    let bs: [__m256i; 4] = std::array::from_fn(|p| {
                        let b = |s: usize| (a.bsums[2 * s] + a.bsums[2 * s + 1]) as u16 as i32;
                        _mm256_set1_epi32(b(2 * p) | (b(2 * p + 1) << 16))
                    });
                    for t in 0..T {
                        for h in 0..2 {
                            let mut isum = _mm256_setzero_si256();
                            for j in 0..4 {
                                let v: [__m256i; 8] = std::array::from_fn(|c| {
                                    load(blk[t].add(320 + 512 * j + 64 * c + 32 * h))
                                });
                                let ylo: [__m256i; 8] =
                                    std::array::from_fn(|c| bcast4(ys.add(64 * j + 4 * c)));
                                let yhi: [__m256i; 8] =
                                    std::array::from_fn(|c| bcast4(ys.add(64 * j + 32 + 4 * c)));
                                let sc_lo = u8x8(blk[t].add(64 + 16 * (2 * j) + 8 * h));
                                let sc_hi = u8x8(blk[t].add(64 + 16 * (2 * j + 1) + 8 * h));
                                let lo = $nibsc(v.map(|v| _mm256_and_si256(v, m4)), ylo, sc_lo);
                                let hi = $nibsc(
                                    v.map(|v| _mm256_and_si256(_mm256_srli_epi16::<4>(v), m4)),
                                    yhi,
                                    sc_hi,
                                );
                                isum = _mm256_add_epi32(isum, _mm256_add_epi32(lo, hi));
                            }
                            // sum_s min_s * bsum_s, two sub-blocks per `vpmaddwd` (mins
                            // are 0..=63: exact in i16 products summed to i32), not one
                            // `vpmulld` (10-cycle latency) per sub-block.
                            let mut msum = _mm256_setzero_si256();
                            for p in 0..4 {
                                let m = u8x8_pairs(blk[t].add(192 + 32 * p + 8 * h));
                                msum = _mm256_add_epi32(msum, _mm256_madd_epi16(m, bs[p]));
                            }
                            let dd = _mm256_mul_ps(load_f16x8(blk[t].add(16 * h)), dy);
                            let dm = _mm256_mul_ps(load_f16x8(blk[t].add(32 + 16 * h)), dy);
                            acc[t][h] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(isum), acc[t][h]);
                            acc[t][h] = _mm256_fnmadd_ps(dm, _mm256_cvtepi32_ps(msum), acc[t][h]);
                        }
                    }
                }
                store(acc)
            }

            /// `data` holds a unit of `T` Q6_K tiles, their blocks side by side.
            #[target_feature(enable = $feat)]
            unsafe fn q6k<const T: usize>(
                data: &[u8],
                act: &[BlockQ8K],
                stream: bool,
            ) -> [[f32; TILE]; T] {
                const SC: usize = 32;
                const LOW: usize = SC + 256;
                const HIGH: usize = LOW + 2048;
                let tbb = tile_block_len(GgmlType::Q6K);
                let nb = (data.len() / (T * tbb)).min(act.len());
                let mut acc = [[_mm256_setzero_ps(); 2]; T];
                for b in 0..nb {
                    // In bounds: as in `q8_family`.
                    let blk: [*const u8; T] =
                        std::array::from_fn(|t| data.as_ptr().add((b * T + t) * tbb));
                    if stream {
                        // The next block (several KiB: more than PREFETCH_DISTANCE).
                        prefetch(data.as_ptr(), (b + 1) * T * tbb, T * tbb);
                    }
                    let a = &act[b];
                    let ys = a.qs.as_ptr();
                    let dy = _mm256_set1_ps(a.d);
                    // Sub-block activation sums in i16 pairs for `vpmaddwd` with the scales.
                    let bs: [__m256i; 8] = std::array::from_fn(|p| {
                        let b = |s: usize| a.bsums[s] as u16 as i32;
                        _mm256_set1_epi32(b(2 * p) | (b(2 * p + 1) << 16))
                    });
                    for t in 0..T {
                        for h in 0..2 {
                            let mut isum = _mm256_setzero_si256();
                            for j in 0..4 {
                                // Loops, not `array::from_fn`: closures would not inherit
                                // `$feat` (objdump showed them called out of line).
                                let mut q = [[_mm256_setzero_si256(); 4]; 4];
                                for (p, q) in q.iter_mut().enumerate() {
                                    let g = blk[t].add(LOW + 512 * j + 128 * p + 32 * h);
                                    let v = [load(g), load(g.add(64))];
                                    *q = q6_quants(
                                        v,
                                        load(blk[t].add(HIGH + 256 * j + 64 * p + 32 * h)),
                                    );
                                }
                                // Sub-block 4j + s: low (s < 2) or high nibbles of groups
                                // 4(s % 2) .. 4(s % 2) + 4, i.e. pairs 2(s % 2) and the next.
                                for s in 0..4 {
                                    let (hi, p0) = (s / 2, 2 * (s % 2));
                                    let w = [
                                        q[p0][hi],
                                        q[p0][2 + hi],
                                        q[p0 + 1][hi],
                                        q[p0 + 1][2 + hi],
                                    ];
                                    let mut y = [_mm256_setzero_si256(); 4];
                                    for (c, y) in y.iter_mut().enumerate() {
                                        *y = bcast4(ys.add(64 * j + 32 * hi + 4 * (2 * p0 + c)));
                                    }
                                    let sc = _mm256_cvtepi8_epi32(_mm_loadl_epi64(
                                        blk[t].add(SC + 16 * (4 * j + s) + 8 * h).cast(),
                                    ));
                                    isum = _mm256_add_epi32(isum, $q6sc(w, y, sc));
                                }
                            }
                            let mut msum = _mm256_setzero_si256();
                            for p in 0..8 {
                                let m = i8x8_pairs(blk[t].add(SC + 32 * p + 8 * h));
                                msum = _mm256_add_epi32(msum, _mm256_madd_epi16(m, bs[p]));
                            }
                            let v = _mm256_sub_epi32(isum, _mm256_slli_epi32::<5>(msum));
                            let d = _mm256_mul_ps(load_f16x8(blk[t].add(16 * h)), dy);
                            acc[t][h] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(v), acc[t][h]);
                        }
                    }
                }
                store(acc)
            }

            /// A unit of one or two tiles (`data.len()` = 1 or 2 x `tile_bytes`) of a Q8_0 /
            /// Q4_0 / Q4_1 matrix.
            pub(crate) fn tiles_q8_family(
                ty: GgmlType,
                data: &[u8],
                tile_bytes: usize,
                act: &[BlockQ8_0],
                sums: &[f32],
                isum: &[i32],
                stream: bool,
            ) -> [[f32; TILE]; 2] {
                // SAFETY: installed only in the kernel table of this path, which exists only
                // after run-time detection of its features; the kernel bounds every pointer
                // offset by the slice lengths it is given.
                unsafe {
                    if data.len() >= 2 * tile_bytes {
                        q8_family::<2>(ty, data, act, sums, isum, stream)
                    } else {
                        let [one] = q8_family::<1>(ty, data, act, sums, isum, stream);
                        [one, [0.0; TILE]]
                    }
                }
            }

            /// One or two tiles of a Q4_K matrix.
            pub(crate) fn tiles_q4k(
                data: &[u8],
                tile_bytes: usize,
                act: &[BlockQ8K],
                stream: bool,
            ) -> [[f32; TILE]; 2] {
                // SAFETY: as above.
                unsafe {
                    if data.len() >= 2 * tile_bytes {
                        q4k::<2>(data, act, stream)
                    } else {
                        let [one] = q4k::<1>(data, act, stream);
                        [one, [0.0; TILE]]
                    }
                }
            }

            /// One or two tiles of a Q6_K matrix.
            pub(crate) fn tiles_q6k(
                data: &[u8],
                tile_bytes: usize,
                act: &[BlockQ8K],
                stream: bool,
            ) -> [[f32; TILE]; 2] {
                // SAFETY: as above.
                unsafe {
                    if data.len() >= 2 * tile_bytes {
                        q6k::<2>(data, act, stream)
                    } else {
                        let [one] = q6k::<1>(data, act, stream);
                        [one, [0.0; TILE]]
                    }
                }
            }
        }
    };
}

/// Stores `T` tiles of two 8-row halves.
#[inline(always)]
unsafe fn store<const T: usize>(acc: [[__m256; 2]; T]) -> [[f32; TILE]; T] {
    let mut out = [[0f32; TILE]; T];
    for t in 0..T {
        _mm256_storeu_ps(out[t].as_mut_ptr(), acc[t][0]);
        _mm256_storeu_ps(out[t].as_mut_ptr().add(8), acc[t][1]);
    }
    out
}

packed256_kernels!(
    "avx2,fma,f16c",
    avx2,
    nib_avx2,
    nib_scaled_avx2,
    q8_avx2,
    q6_scaled_avx2
);
packed256_kernels!(
    "avx2,fma,f16c,avxvnni",
    avxvnni,
    nib_vnni,
    nib_scaled_vnni,
    q8_vnni,
    q6_scaled_vnni
);
