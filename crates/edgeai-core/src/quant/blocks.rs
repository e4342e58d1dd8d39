//! ggml block layouts and their reference (scalar) quantize / dequantize routines.
//!
//! Every block struct is `#[repr(C)]` and byte-for-byte identical to its ggml twin in
//! `ggml-common.h`, so a slice of a GGUF file can be viewed as a slice of blocks. The weight
//! blocks (`Q4_0`, `Q4_1`, `Q8_0`, `Q4_K`, `Q6_K`) are also `packed` (alignment 1, no padding
//! exists anyway) so that any byte offset of a memory-mapped file can be viewed without copying.
//! [`BlockQ8K`] (activations only) keeps its natural 4-byte alignment.
//!
//! The API is one free function pair per format: `quantize_row_<fmt>(src, dst)` and
//! `dequantize_row_<fmt>(src, dst)`. `src`/`dst` lengths must agree (`dst.len() * block_len ==
//! src.len()` for quantize); extra elements on either side are ignored, never read out of bounds.
//!
//! Dequantization follows ggml's float operation order exactly (e.g. Q6_K is
//! `(d * scale) * q`), so results are bit-identical to ggml and candle.
//! Quantization of the 32-blocks and Q8_K follows ggml's `*_ref` functions; Q4_K / Q6_K use a
//! simpler (min/max based) search than ggml's `make_qkx2_quants` — valid blocks, slightly
//! higher error than llama.cpp's quantizer, only used for tests and ad-hoc conversion.

#![allow(clippy::needless_range_loop)] // index loops mirror ggml's reference code

use half::f16;

/// Weights per block of the 32-element formats.
pub const QK: usize = 32;
/// Weights per block of the K-quant formats.
pub const QK_K: usize = 256;

/// `Q4_0`: 32 weights, `value = d * (q - 8)`, `q` in 0..16. Low nibbles of `qs` are elements
/// 0..16, high nibbles 16..32.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// Packed 4-bit quants.
    pub qs: [u8; QK / 2],
}

/// `Q4_1`: 32 weights, `value = d * q + m`, `q` in 0..16 (nibble order as in [`BlockQ4_0`]).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Minimum (offset).
    pub m: f16,
    /// Packed 4-bit quants.
    pub qs: [u8; QK / 2],
}

/// `Q5_0`: 32 weights, `value = d * (q - 16)`, `q` 5 bits: the low 4 in `qs` (nibble order
/// as in [`BlockQ4_0`]), bit 4 of element `j` is bit `j` of the little-endian `qh`.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: f16,
    /// High bits, one per element.
    pub qh: [u8; 4],
    /// Packed low 4 bits.
    pub qs: [u8; QK / 2],
}

/// `Q8_0`: 32 weights, `value = d * q`.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Quants.
    pub qs: [i8; QK],
}

/// `Q4_K`: 256 weights in 8 sub-blocks of 32; each sub-block has a 6-bit scale and a 6-bit
/// min packed in `scales` (see [`get_scale_min_k4`]); `value = d*sc*q - dmin*m`.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ4K {
    /// Super-block scale of the quantized scales.
    pub d: f16,
    /// Super-block scale of the quantized mins.
    pub dmin: f16,
    /// 8 scales and 8 mins, 6 bits each, packed in 12 bytes.
    pub scales: [u8; 12],
    /// 4-bit quants: per 64 weights, 32 bytes; low nibbles first 32, high nibbles next 32.
    pub qs: [u8; QK_K / 2],
}

/// `Q6_K`: 256 weights in 16 sub-blocks of 16 with an `i8` scale each;
/// `value = d * scale * (q - 32)`, `q` 6 bits split into `ql` (low 4) and `qh` (high 2).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ6K {
    /// Low 4 bits of the quants.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits of the quants.
    pub qh: [u8; QK_K / 4],
    /// Sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: f16,
}

/// `Q8_K`: 256 activations, `value = d * q`, plus the sums of each group of 16 quants.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8K {
    /// Scale (f32, unlike the other formats).
    pub d: f32,
    /// Quants.
    pub qs: [i8; QK_K],
    /// Sum of `qs[16*i .. 16*i+16]`.
    pub bsums: [i16; QK_K / 16],
}

const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);
const _: () = assert!(std::mem::align_of::<BlockQ5_0>() == 1);
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);
const _: () = assert!(std::mem::size_of::<BlockQ8K>() == 292);
const _: () = assert!(std::mem::align_of::<BlockQ4_0>() == 1);
const _: () = assert!(std::mem::align_of::<BlockQ4_1>() == 1);
const _: () = assert!(std::mem::align_of::<BlockQ8_0>() == 1);
const _: () = assert!(std::mem::align_of::<BlockQ4K>() == 1);
const _: () = assert!(std::mem::align_of::<BlockQ6K>() == 1);

impl Default for BlockQ4K {
    fn default() -> Self {
        Self {
            d: f16::ZERO,
            dmin: f16::ZERO,
            scales: [0; 12],
            qs: [0; QK_K / 2],
        }
    }
}

impl Default for BlockQ6K {
    fn default() -> Self {
        Self {
            ql: [0; QK_K / 2],
            qh: [0; QK_K / 4],
            scales: [0; QK_K / 16],
            d: f16::ZERO,
        }
    }
}

impl Default for BlockQ8K {
    fn default() -> Self {
        Self {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; QK_K / 16],
        }
    }
}

/// Marker for the weight blocks that may be viewed directly from bytes.
///
/// # Safety
/// Implementors are `repr(C, packed)` (alignment 1), contain no padding and accept every bit
/// pattern (only integers, integer arrays and `f16`).
pub(crate) unsafe trait ByteBlock: Copy {}
// SAFETY: all five are repr(C, packed) structs of u8/i8 arrays and f16 (any bits valid).
unsafe impl ByteBlock for BlockQ4_0 {}
// SAFETY: see above.
unsafe impl ByteBlock for BlockQ4_1 {}
// SAFETY: see above.
unsafe impl ByteBlock for BlockQ8_0 {}
// SAFETY: see above.
unsafe impl ByteBlock for BlockQ5_0 {}
// SAFETY: see above.
unsafe impl ByteBlock for BlockQ4K {}
// SAFETY: see above.
unsafe impl ByteBlock for BlockQ6K {}

/// Views bytes as blocks; trailing bytes that do not fill a block are ignored.
pub(crate) fn as_blocks<B: ByteBlock>(bytes: &[u8]) -> &[B] {
    let n = bytes.len() / std::mem::size_of::<B>();
    // SAFETY: B has alignment 1, no padding and no invalid bit patterns (ByteBlock contract);
    // `n * size_of::<B>() <= bytes.len()`, and the lifetime is tied to `bytes`.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), n) }
}

/// Views weight blocks as their bytes (the inverse of the GGUF view).
pub fn blocks_as_bytes<B: Copy + private::Sealed>(blocks: &[B]) -> &[u8] {
    // SAFETY: every Sealed block type is repr(C) without padding (size asserts above), so all
    // its bytes are initialised; u8 has alignment 1 and the length is exactly the byte size.
    unsafe {
        std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), std::mem::size_of_val(blocks))
    }
}

mod private {
    pub trait Sealed {}
    impl Sealed for super::BlockQ4_0 {}
    impl Sealed for super::BlockQ4_1 {}
    impl Sealed for super::BlockQ8_0 {}
    impl Sealed for super::BlockQ5_0 {}
    impl Sealed for super::BlockQ4K {}
    impl Sealed for super::BlockQ6K {}
    impl Sealed for super::BlockQ8K {}
}

/// The 6-bit scale and min of sub-block `j` (0..8) of a Q4_K block, as in ggml.
#[inline]
pub fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// ggml's `nearest_int`: round half to even.
#[inline]
fn nearest_int(x: f32) -> i32 {
    x.round_ties_even() as i32
}

// ---------------------------------------------------------------- Q4_0

/// Quantizes `32 * dst.len()` floats to Q4_0 (ggml `quantize_row_q4_0_ref`).
pub fn quantize_row_q4_0(src: &[f32], dst: &mut [BlockQ4_0]) {
    for (x, y) in src.chunks_exact(QK).zip(dst.iter_mut()) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; 16];
        for j in 0..16 {
            let x0 = x[j] * id;
            let x1 = x[16 + j] * id;
            let xi0 = ((x0 + 8.5) as i8).clamp(0, 15) as u8;
            let xi1 = ((x1 + 8.5) as i8).clamp(0, 15) as u8;
            qs[j] = xi0 | (xi1 << 4);
        }
        *y = BlockQ4_0 {
            d: f16::from_f32(d),
            qs,
        };
    }
}

/// Dequantizes Q4_0 blocks into `32 * src.len()` floats.
pub fn dequantize_row_q4_0(src: &[BlockQ4_0], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        let qs = b.qs;
        for j in 0..16 {
            y[j] = ((qs[j] & 0xF) as i32 - 8) as f32 * d;
            y[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

// ---------------------------------------------------------------- Q4_1

/// Quantizes `32 * dst.len()` floats to Q4_1 (ggml `quantize_row_q4_1_ref`).
pub fn quantize_row_q4_1(src: &[f32], dst: &mut [BlockQ4_1]) {
    for (x, y) in src.chunks_exact(QK).zip(dst.iter_mut()) {
        let (mut min, mut max) = (f32::MAX, -f32::MAX);
        for &v in x {
            min = min.min(v);
            max = max.max(v);
        }
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; 16];
        for j in 0..16 {
            let x0 = (x[j] - min) * id;
            let x1 = (x[16 + j] - min) * id;
            let xi0 = ((x0 + 0.5) as i8).clamp(0, 15) as u8;
            let xi1 = ((x1 + 0.5) as i8).clamp(0, 15) as u8;
            qs[j] = xi0 | (xi1 << 4);
        }
        *y = BlockQ4_1 {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qs,
        };
    }
}

/// Dequantizes Q4_1 blocks into `32 * src.len()` floats.
pub fn dequantize_row_q4_1(src: &[BlockQ4_1], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        let m = b.m.to_f32();
        let qs = b.qs;
        for j in 0..16 {
            y[j] = (qs[j] & 0xF) as f32 * d + m;
            y[j + 16] = (qs[j] >> 4) as f32 * d + m;
        }
    }
}

// ---------------------------------------------------------------- Q5_0

/// Quantizes `32 * dst.len()` floats to Q5_0 (ggml `quantize_row_q5_0_ref`).
pub fn quantize_row_q5_0(src: &[f32], dst: &mut [BlockQ5_0]) {
    for (x, y) in src.chunks_exact(QK).zip(dst.iter_mut()) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0u8; 16];
        let mut qh = 0u32;
        for j in 0..16 {
            let xi0 = ((x[j] * id + 16.5) as i8).clamp(0, 31) as u8;
            let xi1 = ((x[16 + j] * id + 16.5) as i8).clamp(0, 31) as u8;
            qs[j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
            qh |= (((xi0 & 0x10) >> 4) as u32) << j;
            qh |= (((xi1 & 0x10) >> 4) as u32) << (j + 16);
        }
        *y = BlockQ5_0 {
            d: f16::from_f32(d),
            qh: qh.to_le_bytes(),
            qs,
        };
    }
}

/// Dequantizes Q5_0 blocks into `32 * src.len()` floats.
pub fn dequantize_row_q5_0(src: &[BlockQ5_0], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        let qh = u32::from_le_bytes(b.qh);
        let qs = b.qs;
        for j in 0..16 {
            let xh0 = ((qh >> j) << 4) & 0x10;
            let xh1 = (qh >> (j + 12)) & 0x10;
            let x0 = ((qs[j] as u32 & 0x0F) | xh0) as i32 - 16;
            let x1 = ((qs[j] as u32 >> 4) | xh1) as i32 - 16;
            y[j] = x0 as f32 * d;
            y[j + 16] = x1 as f32 * d;
        }
    }
}

/// The 32 signed quants (-16..16) of a Q5_0 block in element order.
#[inline]
pub(crate) fn q5_0_quants(b: &BlockQ5_0) -> [i8; QK] {
    let qh = u32::from_le_bytes(b.qh);
    let qs = b.qs;
    let mut out = [0i8; QK];
    for j in 0..16 {
        out[j] = ((qs[j] & 0x0F) | ((((qh >> j) & 1) as u8) << 4)) as i8 - 16;
        out[j + 16] = ((qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4)) as i8 - 16;
    }
    out
}

// ---------------------------------------------------------------- Q8_0

/// Quantizes `32 * dst.len()` floats to Q8_0 (ggml `quantize_row_q8_0_ref`).
pub fn quantize_row_q8_0(src: &[f32], dst: &mut [BlockQ8_0]) {
    for (x, y) in src.chunks_exact(QK).zip(dst.iter_mut()) {
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut qs = [0i8; QK];
        for (q, &v) in qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
        }
        *y = BlockQ8_0 {
            d: f16::from_f32(d),
            qs,
        };
    }
}

/// Dequantizes Q8_0 blocks into `32 * src.len()` floats.
pub fn dequantize_row_q8_0(src: &[BlockQ8_0], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        let qs = b.qs;
        for (o, &q) in y.iter_mut().zip(qs.iter()) {
            *o = q as f32 * d;
        }
    }
}

// ---------------------------------------------------------------- Q8_K

/// Quantizes `256 * dst.len()` floats to Q8_K (ggml `quantize_row_q8_K_ref`).
pub fn quantize_row_q8k(src: &[f32], dst: &mut [BlockQ8K]) {
    for (x, y) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 || !amax.is_finite() {
            *y = BlockQ8K::default();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in y.qs.iter_mut().zip(x) {
            *q = nearest_int(iscale * v).clamp(-128, 127) as i8;
        }
        for (s, g) in y.bsums.iter_mut().zip(y.qs.chunks_exact(16)) {
            *s = g.iter().map(|&q| q as i16).sum();
        }
        y.d = 1.0 / iscale;
    }
}

/// Dequantizes Q8_K blocks into `256 * src.len()` floats.
pub fn dequantize_row_q8k(src: &[BlockQ8K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        for (o, &q) in y.iter_mut().zip(b.qs.iter()) {
            *o = b.d * q as f32;
        }
    }
}

// ---------------------------------------------------------------- Q4_K

/// Quantizes `256 * dst.len()` floats to Q4_K (min/max per sub-block of 32; see module docs).
pub fn quantize_row_q4k(src: &[f32], dst: &mut [BlockQ4K]) {
    for (x, y) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
        let mut scales = [0f32; 8];
        let mut mins = [0f32; 8];
        for (j, sub) in x.chunks_exact(32).enumerate() {
            let mn = sub.iter().fold(0f32, |a, &v| a.min(v));
            let mx = sub.iter().fold(f32::MIN, |a, &v| a.max(v));
            scales[j] = ((mx - mn) / 15.0).max(0.0);
            mins[j] = -mn;
        }
        let max_scale = scales.iter().fold(0f32, |a, &v| a.max(v));
        let max_min = mins.iter().fold(0f32, |a, &v| a.max(v));
        let d = max_scale / 63.0;
        let dmin = max_min / 63.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        let idm = if dmin > 0.0 { 1.0 / dmin } else { 0.0 };
        let mut ls = [0u8; 8];
        let mut lm = [0u8; 8];
        for j in 0..8 {
            ls[j] = nearest_int(id * scales[j]).clamp(0, 63) as u8;
            lm[j] = nearest_int(idm * mins[j]).clamp(0, 63) as u8;
        }
        let mut packed = [0u8; 12];
        for j in 0..4 {
            packed[j] = ls[j] | ((ls[j + 4] >> 4) << 6);
            packed[j + 4] = lm[j] | ((lm[j + 4] >> 4) << 6);
            packed[j + 8] = (ls[j + 4] & 0xF) | ((lm[j + 4] & 0xF) << 4);
        }
        let d16 = f16::from_f32(d);
        let dmin16 = f16::from_f32(dmin);
        let (df, dminf) = (d16.to_f32(), dmin16.to_f32());
        let mut l = [0u8; QK_K];
        for j in 0..8 {
            let (sc, m) = get_scale_min_k4(j, &packed);
            let dd = df * sc as f32;
            if dd == 0.0 {
                continue;
            }
            let dm = dminf * m as f32;
            for ii in 0..32 {
                let v = nearest_int((x[32 * j + ii] + dm) / dd);
                l[32 * j + ii] = v.clamp(0, 15) as u8;
            }
        }
        let mut qs = [0u8; QK_K / 2];
        for j in (0..QK_K).step_by(64) {
            for ii in 0..32 {
                qs[j / 2 + ii] = l[j + ii] | (l[j + ii + 32] << 4);
            }
        }
        *y = BlockQ4K {
            d: d16,
            dmin: dmin16,
            scales: packed,
            qs,
        };
    }
}

/// Dequantizes Q4_K blocks into `256 * src.len()` floats (ggml `dequantize_row_q4_K`).
pub fn dequantize_row_q4k(src: &[BlockQ4K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let min = b.dmin.to_f32();
        let scales = b.scales;
        let qs = b.qs;
        let mut is = 0;
        for j in (0..QK_K).step_by(64) {
            let q = &qs[j / 2..j / 2 + 32];
            let (sc, m) = get_scale_min_k4(is, &scales);
            let d1 = d * sc as f32;
            let m1 = min * m as f32;
            let (sc, m) = get_scale_min_k4(is + 1, &scales);
            let d2 = d * sc as f32;
            let m2 = min * m as f32;
            for l in 0..32 {
                y[j + l] = d1 * (q[l] & 0xF) as f32 - m1;
                y[j + 32 + l] = d2 * (q[l] >> 4) as f32 - m2;
            }
            is += 2;
        }
    }
}

// ---------------------------------------------------------------- Q6_K

/// Quantizes `256 * dst.len()` floats to Q6_K (per-16 absmax scales; see module docs).
pub fn quantize_row_q6k(src: &[f32], dst: &mut [BlockQ6K]) {
    for (x, y) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
        let mut sub_scales = [0f32; 16];
        for (s, sub) in sub_scales.iter_mut().zip(x.chunks_exact(16)) {
            let (mut amax, mut max) = (0f32, 0f32);
            for &v in sub {
                if v.abs() > amax {
                    amax = v.abs();
                    max = v;
                }
            }
            *s = max / -32.0;
        }
        let (mut amax, mut max_scale) = (0f32, 0f32);
        for &s in &sub_scales {
            if s.abs() > amax {
                amax = s.abs();
                max_scale = s;
            }
        }
        let mut out = BlockQ6K::default();
        if amax == 0.0 || !amax.is_finite() {
            *y = out;
            continue;
        }
        let iscale = -128.0 / max_scale;
        let d16 = f16::from_f32(1.0 / iscale);
        out.d = d16;
        let df = d16.to_f32();
        let mut l = [32u8; QK_K];
        for (k, s) in sub_scales.iter().enumerate() {
            let sc = nearest_int(iscale * s).clamp(-128, 127) as i8;
            out.scales[k] = sc;
            let dd = df * sc as f32;
            if dd == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let v = nearest_int(x[16 * k + ii] / dd).clamp(-32, 31);
                l[16 * k + ii] = (v + 32) as u8;
            }
        }
        for half in 0..2 {
            let l = &l[128 * half..128 * half + 128];
            let ql = &mut out.ql[64 * half..64 * half + 64];
            for i in 0..32 {
                ql[i] = (l[i] & 0xF) | ((l[i + 64] & 0xF) << 4);
                ql[i + 32] = (l[i + 32] & 0xF) | ((l[i + 96] & 0xF) << 4);
            }
            let qh = &mut out.qh[32 * half..32 * half + 32];
            for i in 0..32 {
                qh[i] = (l[i] >> 4)
                    | ((l[i + 32] >> 4) << 2)
                    | ((l[i + 64] >> 4) << 4)
                    | ((l[i + 96] >> 4) << 6);
            }
        }
        *y = out;
    }
}

/// Decodes the 256 signed 6-bit quants (-32..32) of a Q6_K block in element order.
#[inline]
pub(crate) fn q6k_quants(b: &BlockQ6K) -> [i8; QK_K] {
    let mut out = [0i8; QK_K];
    for half in 0..2 {
        let ql = &b.ql[64 * half..64 * half + 64];
        let qh = &b.qh[32 * half..32 * half + 32];
        let o = &mut out[128 * half..128 * half + 128];
        for l in 0..32 {
            o[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            o[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            o[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            o[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    out
}

/// Dequantizes Q6_K blocks into `256 * src.len()` floats (ggml `dequantize_row_q6_K`).
pub fn dequantize_row_q6k(src: &[BlockQ6K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let q = q6k_quants(b);
        let sc = b.scales;
        for (i, (o, &q)) in y.iter_mut().zip(q.iter()).enumerate() {
            *o = d * sc[i / 16] as f32 * q as f32;
        }
    }
}
