//! AVX-512 VNNI kernels over [`crate::quant::PackedMatrix`] tiles: each of the 16 `i32` /
//! `f32` lanes is one row, and the operations per lane are exactly those of the scalar twins
//! in `packed.rs` (exact integer dots, then the same `f32` multiplies and fused multiply-adds
//! in the same order), so both give bit-identical outputs. `T` tiles (1 or 2, adjacent in
//! memory) run together so that each activation broadcast feeds `T` multiply-adds.
//!
//! On a unit's last pass (`stream`: its bytes come from memory) the kernels prefetch ahead as
//! the AVX2 ones do ([`super::PREFETCH_DISTANCE`]); a prefetch changes no output.

use std::arch::x86_64::*;

use super::{h2f, prefetch, PREFETCH_DISTANCE};
use crate::quant::blocks::{BlockQ8K, BlockQ8_0};
use crate::quant::packed::{tile_block_len, TILE};
use crate::quant::GgmlType;

/// 16 f16 at `p` to f32.
#[inline(always)]
unsafe fn load_f16x16(p: *const u8) -> __m512 {
    _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))
}

/// 4 activation bytes at `p`, broadcast to every 32-bit lane.
#[inline(always)]
unsafe fn bcast4(p: *const i8) -> __m512i {
    _mm512_set1_epi32(p.cast::<i32>().read_unaligned())
}

/// Stores `T` accumulators.
#[inline(always)]
unsafe fn store<const T: usize>(acc: [__m512; T]) -> [[f32; TILE]; T] {
    let mut out = [[0f32; TILE]; T];
    for t in 0..T {
        _mm512_storeu_ps(out[t].as_mut_ptr(), acc[t]);
    }
    out
}

/// `data` holds a unit of `T` tiles, their blocks side by side.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c,fma")]
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
    let m4 = _mm512_set1_epi8(0x0F);
    let mut acc = [_mm512_setzero_ps(); T];
    for b in 0..nb {
        // In bounds: (b * T + t) * tbb + (offset < tbb) <= nb * T * tbb <= data.len().
        let blk: [*const u8; T] = std::array::from_fn(|t| data.as_ptr().add((b * T + t) * tbb));
        if stream {
            prefetch(data.as_ptr(), b * T * tbb + PREFETCH_DISTANCE, T * tbb);
        }
        let a = &act[b];
        let ys = a.qs.as_ptr();
        let dy = _mm512_set1_ps(h2f(a.d));
        match ty {
            GgmlType::Q8_0 => {
                // Two chains per tile (even / odd groups), fully unrolled.
                let mut dot0 = [_mm512_setzero_si512(); T];
                let mut dot1 = [_mm512_setzero_si512(); T];
                for g in [0usize, 2, 4, 6] {
                    let y0 = bcast4(ys.add(4 * g));
                    let y1 = bcast4(ys.add(4 * g + 4));
                    for t in 0..T {
                        let w0 = _mm512_loadu_si512(blk[t].add(32 + 64 * g).cast());
                        let w1 = _mm512_loadu_si512(blk[t].add(96 + 64 * g).cast());
                        dot0[t] = _mm512_dpbusd_epi32(dot0[t], w0, y0);
                        dot1[t] = _mm512_dpbusd_epi32(dot1[t], w1, y1);
                    }
                }
                let off = _mm512_set1_epi32(128 * isum[b]);
                for t in 0..T {
                    let d = _mm512_mul_ps(load_f16x16(blk[t]), dy);
                    let v = _mm512_sub_epi32(_mm512_add_epi32(dot0[t], dot1[t]), off);
                    acc[t] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(v), acc[t]);
                }
            }
            _ => {
                let q1 = ty == GgmlType::Q4_1;
                let wo = if q1 { 64 } else { 32 };
                let mut dot = [[_mm512_setzero_si512(); 2]; T];
                for c in [0usize, 1, 2, 3] {
                    let ylo = bcast4(ys.add(4 * c));
                    let yhi = bcast4(ys.add(16 + 4 * c));
                    for t in 0..T {
                        let v = _mm512_loadu_si512(blk[t].add(wo + 64 * c).cast());
                        let lo = _mm512_and_si512(v, m4);
                        let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4);
                        dot[t][0] = _mm512_dpbusd_epi32(dot[t][0], lo, ylo);
                        dot[t][1] = _mm512_dpbusd_epi32(dot[t][1], hi, yhi);
                    }
                }
                let off = _mm512_set1_epi32(8 * isum[b]);
                let sy = _mm512_set1_ps(sums[b]);
                for t in 0..T {
                    let d = _mm512_mul_ps(load_f16x16(blk[t]), dy);
                    let v = _mm512_add_epi32(dot[t][0], dot[t][1]);
                    if q1 {
                        acc[t] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(v), acc[t]);
                        acc[t] = _mm512_fmadd_ps(load_f16x16(blk[t].add(32)), sy, acc[t]);
                    } else {
                        let v = _mm512_sub_epi32(v, off);
                        acc[t] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(v), acc[t]);
                    }
                }
            }
        }
    }
    store(acc)
}

/// `data` holds a unit of `T` tiles, their blocks side by side.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c,fma")]
unsafe fn q4k<const T: usize>(data: &[u8], act: &[BlockQ8K], stream: bool) -> [[f32; TILE]; T] {
    let tbb = tile_block_len(GgmlType::Q4K);
    let nb = (data.len() / (T * tbb)).min(act.len());
    let m4 = _mm512_set1_epi8(0x0F);
    let mut acc = [_mm512_setzero_ps(); T];
    for b in 0..nb {
        // In bounds: as in `q8_family`.
        let blk: [*const u8; T] = std::array::from_fn(|t| data.as_ptr().add((b * T + t) * tbb));
        if stream {
            // The next block (several KiB: more than PREFETCH_DISTANCE).
            prefetch(data.as_ptr(), (b + 1) * T * tbb, T * tbb);
        }
        let a = &act[b];
        let ys = a.qs.as_ptr();
        let bsums = a.bsums;
        let mut isum = [_mm512_setzero_si512(); T];
        for j in 0..4 {
            let mut lo_acc = [_mm512_setzero_si512(); T];
            let mut hi_acc = [_mm512_setzero_si512(); T];
            for c in 0..8 {
                let ylo = bcast4(ys.add(64 * j + 4 * c));
                let yhi = bcast4(ys.add(64 * j + 32 + 4 * c));
                for t in 0..T {
                    let v = _mm512_loadu_si512(blk[t].add(320 + 512 * j + 64 * c).cast());
                    let lo = _mm512_and_si512(v, m4);
                    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m4);
                    lo_acc[t] = _mm512_dpbusd_epi32(lo_acc[t], lo, ylo);
                    hi_acc[t] = _mm512_dpbusd_epi32(hi_acc[t], hi, yhi);
                }
            }
            for t in 0..T {
                let p = blk[t].add(64 + 32 * j);
                let sc_lo = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.cast()));
                let sc_hi = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.add(16).cast()));
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(lo_acc[t], sc_lo));
                isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(hi_acc[t], sc_hi));
            }
        }
        let dy = _mm512_set1_ps(a.d);
        // Sub-block activation sums, two sub-blocks per i32 lane as i16 pairs (each at most
        // 32 * 128 = 4096 in magnitude) for `vpmaddwd` with the mins (0..=63).
        let bs: [__m512i; 4] = std::array::from_fn(|p| {
            let b = |s: usize| (bsums[2 * s] + bsums[2 * s + 1]) as u16 as i32;
            _mm512_set1_epi32(b(2 * p) | (b(2 * p + 1) << 16))
        });
        for t in 0..T {
            // sum_s min_s * bsum_s: two sub-blocks per `vpmaddwd`, not a `vpmulld` each.
            let mut msum = _mm512_setzero_si512();
            for (p, bs) in bs.iter().enumerate() {
                let m0 = _mm_loadu_si128(blk[t].add(192 + 32 * p).cast());
                let m1 = _mm_loadu_si128(blk[t].add(192 + 32 * p + 16).cast());
                // i32 lane r = row r holds (min of sub-block 2p, min of 2p + 1).
                let pairs = _mm256_set_m128i(_mm_unpackhi_epi8(m0, m1), _mm_unpacklo_epi8(m0, m1));
                let m = _mm512_cvtepu8_epi16(pairs);
                msum = _mm512_add_epi32(msum, _mm512_madd_epi16(m, *bs));
            }
            let dd = _mm512_mul_ps(load_f16x16(blk[t]), dy);
            let dm = _mm512_mul_ps(load_f16x16(blk[t].add(32)), dy);
            acc[t] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(isum[t]), acc[t]);
            acc[t] = _mm512_fnmadd_ps(dm, _mm512_cvtepi32_ps(msum), acc[t]);
        }
    }
    store(acc)
}

/// Q6_K tile block offsets (see `packed.rs`): scales, low nibbles, high bit pairs.
const SC: usize = 32;
const LOW: usize = SC + 256;
const HIGH: usize = LOW + 2048;

/// The 6-bit quants of nibble groups `2p` and `2p + 1` from their nibble vectors `v` and
/// their shared high-bit vector `h`: `[lo(2p), hi(2p), lo(2p+1), hi(2p+1)]`.
#[inline(always)]
unsafe fn q6_quants(v: [__m512i; 2], h: __m512i) -> [__m512i; 4] {
    // No closures here: they would not inherit the caller's target features.
    let (m4, m30) = (_mm512_set1_epi8(0x0F), _mm512_set1_epi8(0x30));
    let l0 = _mm512_and_si512(v[0], m4);
    let h0 = _mm512_and_si512(_mm512_srli_epi16::<4>(v[0]), m4);
    let l1 = _mm512_and_si512(v[1], m4);
    let h1 = _mm512_and_si512(_mm512_srli_epi16::<4>(v[1]), m4);
    // The shifts are 16-bit, but the masks keep only bits that stayed in their byte.
    [
        _mm512_or_si512(l0, _mm512_and_si512(_mm512_slli_epi16::<4>(h), m30)),
        _mm512_or_si512(h0, _mm512_and_si512(_mm512_slli_epi16::<2>(h), m30)),
        _mm512_or_si512(l1, _mm512_and_si512(h, m30)),
        _mm512_or_si512(h1, _mm512_and_si512(_mm512_srli_epi16::<2>(h), m30)),
    ]
}

/// `data` holds a unit of `T` Q6_K tiles, their blocks side by side.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c,fma")]
unsafe fn q6k<const T: usize>(data: &[u8], act: &[BlockQ8K], stream: bool) -> [[f32; TILE]; T] {
    let tbb = tile_block_len(GgmlType::Q6K);
    let nb = (data.len() / (T * tbb)).min(act.len());
    let mut acc = [_mm512_setzero_ps(); T];
    for b in 0..nb {
        // In bounds: as in `q8_family`.
        let blk: [*const u8; T] = std::array::from_fn(|t| data.as_ptr().add((b * T + t) * tbb));
        if stream {
            // The next block (several KiB: more than PREFETCH_DISTANCE).
            prefetch(data.as_ptr(), (b + 1) * T * tbb, T * tbb);
        }
        let a = &act[b];
        let ys = a.qs.as_ptr();
        let mut isum = [_mm512_setzero_si512(); T];
        for j in 0..4 {
            // Per tile, the dots of sub-blocks 4j .. 4j + 4 (low nibbles of groups 0..4,
            // 4..8, then high nibbles of the same).
            let mut dot = [[_mm512_setzero_si512(); 4]; T];
            for p in 0..4 {
                let y = [
                    bcast4(ys.add(64 * j + 8 * p)),
                    bcast4(ys.add(64 * j + 32 + 8 * p)),
                    bcast4(ys.add(64 * j + 8 * p + 4)),
                    bcast4(ys.add(64 * j + 32 + 8 * p + 4)),
                ];
                let s = p / 2;
                for t in 0..T {
                    let g = blk[t].add(LOW + 512 * j + 128 * p);
                    let v = [
                        _mm512_loadu_si512(g.cast()),
                        _mm512_loadu_si512(g.add(64).cast()),
                    ];
                    let h = _mm512_loadu_si512(blk[t].add(HIGH + 256 * j + 64 * p).cast());
                    let q = q6_quants(v, h);
                    dot[t][s] = _mm512_dpbusd_epi32(dot[t][s], q[0], y[0]);
                    dot[t][2 + s] = _mm512_dpbusd_epi32(dot[t][2 + s], q[1], y[1]);
                    dot[t][s] = _mm512_dpbusd_epi32(dot[t][s], q[2], y[2]);
                    dot[t][2 + s] = _mm512_dpbusd_epi32(dot[t][2 + s], q[3], y[3]);
                }
            }
            for t in 0..T {
                for (q, d) in dot[t].iter().enumerate() {
                    let sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(
                        blk[t].add(SC + 16 * (4 * j + q)).cast(),
                    ));
                    isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(*d, sc));
                }
            }
        }
        // sum_s scale_s * bsum_s, two sub-blocks per `vpmaddwd` (|scale| <= 128, |bsum| <=
        // 16 * 127: exact), for the -32 offset of the stored quants.
        let bs: [__m512i; 8] = std::array::from_fn(|p| {
            let b = |s: usize| a.bsums[s] as u16 as i32;
            _mm512_set1_epi32(b(2 * p) | (b(2 * p + 1) << 16))
        });
        let dy = _mm512_set1_ps(a.d);
        for t in 0..T {
            let mut msum = _mm512_setzero_si512();
            for (p, bs) in bs.iter().enumerate() {
                let s0 = _mm_loadu_si128(blk[t].add(SC + 32 * p).cast());
                let s1 = _mm_loadu_si128(blk[t].add(SC + 32 * p + 16).cast());
                // i32 lane r = row r holds (scale of sub-block 2p, scale of 2p + 1).
                let pairs = _mm256_set_m128i(_mm_unpackhi_epi8(s0, s1), _mm_unpacklo_epi8(s0, s1));
                let m = _mm512_cvtepi8_epi16(pairs);
                msum = _mm512_add_epi32(msum, _mm512_madd_epi16(m, *bs));
            }
            let v = _mm512_sub_epi32(isum[t], _mm512_slli_epi32::<5>(msum));
            let d = _mm512_mul_ps(load_f16x16(blk[t]), dy);
            acc[t] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(v), acc[t]);
        }
    }
    store(acc)
}

/// A unit of one or two tiles (`data.len()` = 1 or 2 x `tile_bytes`) of a Q8_0 / Q4_0 /
/// Q4_1 matrix.
pub(crate) fn tiles_q8_family(
    ty: GgmlType,
    data: &[u8],
    tile_bytes: usize,
    act: &[BlockQ8_0],
    sums: &[f32],
    isum: &[i32],
    stream: bool,
) -> [[f32; TILE]; 2] {
    // SAFETY: installed only in the AVX-512 VNNI kernel table, which exists only after
    // run-time detection of AVX-512 F, BW, VL and VNNI; the kernel bounds every pointer
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
