//! Scalar dot-product kernels: the reference every SIMD path is tested against.
//!
//! Each function returns `sum_blocks (float scale of block) * (exact integer dot of block)`,
//! accumulated in block order in `f32`. The SIMD twins compute the same integer dots exactly
//! and differ only in the order of the final `f32` accumulation.

#![allow(clippy::needless_range_loop)] // index loops mirror ggml's reference code

use super::blocks::{
    q5_0_quants, q6k_quants, quantize_row_q8_0, quantize_row_q8k, BlockQ4K, BlockQ4_0, BlockQ4_1,
    BlockQ5_0, BlockQ6K, BlockQ8K, BlockQ8_0, QK,
};

/// ggml's `block_q8_1` sum term for a Q8_0 activation block of scale `d` (the unrounded
/// `amax / 127`) and quant sum `isum`: `d * isum` rounded to f16 as ggml, llama.cpp and
/// candle store it (which keeps Q4_1 logits bit-close to theirs where two tokens nearly tie
/// under greedy decoding). Beyond f16's range ggml would store an infinity (and 0 * inf = NaN
/// for a zero min): the f32 value is kept there instead.
#[inline]
pub(crate) fn q8_1_sum(d: f32, isum: i32) -> f32 {
    let exact = d * isum as f32;
    if exact.abs() <= f32::from(half::f16::MAX) {
        half::f16::from_f32(exact).to_f32()
    } else {
        exact
    }
}

/// Quantizes activations `x` to Q8_0 (ggml's reference rounding), with each block's
/// [`q8_1_sum`] in `sums` and integer quant sum in `isum`. The reference for the SIMD
/// activation quantizers, which must produce the same bytes.
pub(crate) fn quantize_act_q8_0(
    x: &[f32],
    q: &mut [BlockQ8_0],
    sums: &mut [f32],
    isum: &mut [i32],
) {
    let nb = (x.len() / QK).min(q.len()).min(sums.len()).min(isum.len());
    quantize_row_q8_0(&x[..nb * QK], &mut q[..nb]);
    for b in 0..nb {
        let xs = &x[b * QK..(b + 1) * QK];
        let d = xs.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        isum[b] = q[b].qs.iter().map(|&v| v as i32).sum();
        sums[b] = q8_1_sum(d, isum[b]);
    }
}

/// Quantizes activations to Q8_K (ggml's reference, [`quantize_row_q8k`]).
pub(crate) fn quantize_act_q8k(x: &[f32], q: &mut [BlockQ8K]) {
    quantize_row_q8k(x, q);
}

/// Q4_0 weights · Q8_0 activations.
pub fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0f32;
    for (a, b) in x.iter().zip(y) {
        let (qs, ys) = (a.qs, b.qs);
        let mut sumi = 0i32;
        for j in 0..16 {
            sumi += ((qs[j] & 0xF) as i32 - 8) * ys[j] as i32;
            sumi += ((qs[j] >> 4) as i32 - 8) * ys[j + 16] as i32;
        }
        sumf += sumi as f32 * (a.d.to_f32() * b.d.to_f32());
    }
    sumf
}

/// Q4_1 weights · Q8_0 activations; `ys[i]` = `d8 * sum(q8)` of activation block `i`
/// (the Q8_1 trick: the min term is `m * ys[i]`).
pub fn vec_dot_q4_1_q8_0(x: &[BlockQ4_1], y: &[BlockQ8_0], ysum: &[f32]) -> f32 {
    let mut sumf = 0f32;
    for ((a, b), &s) in x.iter().zip(y).zip(ysum) {
        let (qs, ys) = (a.qs, b.qs);
        let mut sumi = 0i32;
        for j in 0..16 {
            sumi += (qs[j] & 0xF) as i32 * ys[j] as i32;
            sumi += (qs[j] >> 4) as i32 * ys[j + 16] as i32;
        }
        sumf += sumi as f32 * (a.d.to_f32() * b.d.to_f32()) + a.m.to_f32() * s;
    }
    sumf
}

/// Q5_0 weights · Q8_0 activations.
pub fn vec_dot_q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0f32;
    for (a, b) in x.iter().zip(y) {
        let q = q5_0_quants(a);
        let ys = b.qs;
        let sumi: i32 = q
            .iter()
            .zip(ys.iter())
            .map(|(&p, &v)| p as i32 * v as i32)
            .sum();
        sumf += sumi as f32 * (a.d.to_f32() * b.d.to_f32());
    }
    sumf
}

/// Q8_0 weights · Q8_0 activations.
pub fn vec_dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0f32;
    for (a, b) in x.iter().zip(y) {
        let (qa, qb) = (a.qs, b.qs);
        let sumi: i32 = qa
            .iter()
            .zip(qb.iter())
            .map(|(&p, &q)| p as i32 * q as i32)
            .sum();
        sumf += sumi as f32 * (a.d.to_f32() * b.d.to_f32());
    }
    sumf
}

/// Decoded Q4_K scales and mins of one block (ggml's branch-free `utmp` bit trick; the
/// same values as [`get_scale_min_k4`](super::blocks::get_scale_min_k4) for `j = 0..8`).
#[inline(always)]
pub(crate) fn q4k_scales_mins(scales: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    const KMASK1: u32 = 0x3f3f_3f3f;
    const KMASK2: u32 = 0x0f0f_0f0f;
    const KMASK3: u32 = 0x0303_0303;
    let u0 = u32::from_le_bytes([scales[0], scales[1], scales[2], scales[3]]);
    let u1 = u32::from_le_bytes([scales[4], scales[5], scales[6], scales[7]]);
    let u2 = u32::from_le_bytes([scales[8], scales[9], scales[10], scales[11]]);
    let sc_lo = u0 & KMASK1;
    let sc_hi = (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4);
    let m_lo = u1 & KMASK1;
    let m_hi = ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4);
    let mut sc = [0u8; 8];
    let mut m = [0u8; 8];
    sc[..4].copy_from_slice(&sc_lo.to_le_bytes());
    sc[4..].copy_from_slice(&sc_hi.to_le_bytes());
    m[..4].copy_from_slice(&m_lo.to_le_bytes());
    m[4..].copy_from_slice(&m_hi.to_le_bytes());
    (sc, m)
}

/// Q4_K weights · Q8_K activations.
pub fn vec_dot_q4k_q8k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0f32;
    for (a, b) in x.iter().zip(y) {
        let (sc, m) = q4k_scales_mins(&a.scales);
        let qs = a.qs;
        let mut sumi = 0i32;
        for j in 0..4 {
            let q = &qs[32 * j..32 * j + 32];
            let y0 = &b.qs[64 * j..64 * j + 32];
            let y1 = &b.qs[64 * j + 32..64 * j + 64];
            let mut s1 = 0i32;
            let mut s2 = 0i32;
            for l in 0..32 {
                s1 += (q[l] & 0xF) as i32 * y0[l] as i32;
                s2 += (q[l] >> 4) as i32 * y1[l] as i32;
            }
            sumi += sc[2 * j] as i32 * s1 + sc[2 * j + 1] as i32 * s2;
        }
        let mut summ = 0i32;
        for k in 0..8 {
            summ += m[k] as i32 * (b.bsums[2 * k] as i32 + b.bsums[2 * k + 1] as i32);
        }
        let d = a.d.to_f32() * b.d;
        let dmin = a.dmin.to_f32() * b.d;
        sumf += d * sumi as f32 - dmin * summ as f32;
    }
    sumf
}

/// Q6_K weights · Q8_K activations.
pub fn vec_dot_q6k_q8k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0f32;
    for (a, b) in x.iter().zip(y) {
        let q = q6k_quants(a);
        let sc = a.scales;
        let mut sumi = 0i32;
        for k in 0..16 {
            let mut s = 0i32;
            for l in 16 * k..16 * k + 16 {
                s += q[l] as i32 * b.qs[l] as i32;
            }
            sumi += sc[k] as i32 * s;
        }
        sumf += (a.d.to_f32() * b.d) * sumi as f32;
    }
    sumf
}

/// f32 · f32 (weights given as little-endian bytes, any alignment).
pub fn vec_dot_f32_bytes(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = w.chunks_exact(32).zip(x.chunks_exact(8));
    let done = chunks.len() * 8;
    for (wb, xs) in chunks {
        for i in 0..8 {
            let v = f32::from_le_bytes([wb[4 * i], wb[4 * i + 1], wb[4 * i + 2], wb[4 * i + 3]]);
            acc[i] += v * xs[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (wb, &xv) in w[done * 4..].chunks_exact(4).zip(&x[done..]) {
        s += f32::from_le_bytes([wb[0], wb[1], wb[2], wb[3]]) * xv;
    }
    s
}

/// f16 · f32 (weights given as little-endian bytes).
pub fn vec_dot_f16_bytes(w: &[u8], x: &[f32]) -> f32 {
    w.chunks_exact(2)
        .zip(x)
        .map(|(b, &xv)| half::f16::from_le_bytes([b[0], b[1]]).to_f32() * xv)
        .sum()
}

/// bf16 · f32 (weights given as little-endian bytes).
pub fn vec_dot_bf16_bytes(w: &[u8], x: &[f32]) -> f32 {
    w.chunks_exact(2)
        .zip(x)
        .map(|(b, &xv)| half::bf16::from_le_bytes([b[0], b[1]]).to_f32() * xv)
        .sum()
}

/// Exact `i8` dot product over `min(a.len(), b.len())` elements.
/// (Sums wrap on `i32` overflow, like the SIMD twins: exact up to 131072 elements.)
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter()
        .zip(b)
        .fold(0i32, |s, (&p, &q)| s.wrapping_add(p as i32 * q as i32))
}

/// Exact `i8` dot products of contiguous rows with one vector: `out[r] = dot_i8(row r, q)`
/// for `r < min(out.len(), rows.len() / dim)`, rows `dim` apart (nothing for `dim == 0`).
/// The twin of the SIMD row kernels behind [`crate::quant::int8::dot_i8_rows`].
pub fn dot_i8_rows(rows: &[i8], dim: usize, q: &[i8], out: &mut [i32]) {
    if dim == 0 {
        return;
    }
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(dim)) {
        *o = dot_i8(row, q);
    }
}

/// Exact `i8` dot products of `nq` queries with `nr` rows (both contiguous, `dim` apart):
/// `out[j * nr + r] = dot_i8(row r, query j)`, for `nr = rows.len() / dim`,
/// `nq = queries.len() / dim` and `nq * nr <= out.len()` (nothing for `dim == 0`). The
/// twin of the SIMD multi-query tile kernels behind [`crate::quant::int8::dot_i8_tile`].
pub fn dot_i8_tile(rows: &[i8], queries: &[i8], dim: usize, out: &mut [i32]) {
    if dim == 0 {
        return;
    }
    let nr = rows.len() / dim;
    for (j, q) in queries.chunks_exact(dim).enumerate() {
        for (r, row) in rows.chunks_exact(dim).enumerate() {
            if let Some(o) = out.get_mut(j * nr + r) {
                *o = dot_i8(row, q);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn q4k_scale_decode_matches_reference() {
        let mut state = 0x1234_5678_u32;
        for _ in 0..1000 {
            let mut q = [0u8; 12];
            for b in q.iter_mut() {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                *b = (state >> 24) as u8;
            }
            let (sc, m) = super::q4k_scales_mins(&q);
            for j in 0..8 {
                assert_eq!(
                    (sc[j], m[j]),
                    super::super::blocks::get_scale_min_k4(j, &q),
                    "{q:?} {j}"
                );
            }
        }
    }
}
