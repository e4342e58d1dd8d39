//! Every SIMD kernel path available on this machine against the scalar reference, on random
//! raw blocks (every bit pattern of the quants, including -128 in Q8_0 weights), random and
//! edge-case scales (zero, subnormal f16, large) and activations (zeros, +-extremes, huge).
//!
//! Tolerance: the integer dot products are exact on every path; only the order of the final
//! f32 accumulation differs, so `|simd - scalar| <= 1e-5 * sum_c |w_c * xq_c|` (L1 mass of the
//! products with the quantized activations). With power-of-two scales and integer activations
//! every partial sum is exactly representable, and the test then demands bit equality.

use edgeai_core::half::f16;
use edgeai_core::quant::*;
use proptest::prelude::*;

const TYPES: [GgmlType; 9] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q8_0,
    GgmlType::Q4K,
    GgmlType::Q6K,
    GgmlType::Q5_0,
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
];

fn simd_paths() -> Vec<KernelPath> {
    available_kernel_paths()
        .into_iter()
        .filter(|p| *p != KernelPath::Scalar)
        .collect()
}

/// Byte offsets of the f16 scale fields in one block.
fn scale_offsets(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q8_0 | GgmlType::Q5_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q4K => &[0, 2],
        GgmlType::Q6K => &[208],
        _ => &[],
    }
}

/// A scale: zero, f16 subnormal, small, ordinary or large, either sign.
fn scale_strategy() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(0.0f32),
        (1u16..1024).prop_map(|m| f16::from_bits(m).to_f32()), // subnormals
        -1.0e-3f32..1.0e-3,
        -2.0f32..2.0,
        -3000.0f32..3000.0,
    ]
}

/// Builds `rows` x `cols` weights of `ty` from random bytes, with the given scales.
fn weights(
    ty: GgmlType,
    rows: usize,
    cols: usize,
    bytes: &[u8],
    scales: &[f32],
    float_w: &[f32],
) -> Vec<u8> {
    match ty {
        GgmlType::F32 => return float_w.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => {
            return float_w
                .iter()
                .flat_map(|v| f16::from_f32(*v).to_le_bytes())
                .collect()
        }
        GgmlType::BF16 => {
            return float_w
                .iter()
                .flat_map(|v| edgeai_core::half::bf16::from_f32(*v).to_le_bytes())
                .collect()
        }
        _ => {}
    }
    let n = rows * ty.row_bytes(cols).unwrap();
    let mut out: Vec<u8> = bytes.iter().cycle().take(n).copied().collect();
    let mut si = 0;
    for blk in out.chunks_exact_mut(ty.block_bytes()) {
        for &o in scale_offsets(ty) {
            let s = f16::from_f32(scales[si % scales.len()]);
            blk[o..o + 2].copy_from_slice(&s.to_le_bytes());
            si += 1;
        }
    }
    out
}

fn activation_strategy(len: usize) -> impl Strategy<Value = Vec<f32>> {
    prop_oneof![
        1 => Just(vec![0.0f32; len]),
        4 => proptest::collection::vec(-1.0f32..1.0, len),
        1 => proptest::collection::vec(prop_oneof![Just(-1.0e5f32), Just(1.0e5), Just(0.0), -1.0e5f32..1.0e5], len),
        1 => proptest::collection::vec(prop_oneof![Just(-1.0e-30f32), Just(1.0e-30), -1.0e-6f32..1.0e-6], len),
    ]
}

/// L1 mass of the products with the activations as the kernel quantizes them.
fn mass(m: &QMatrix, x: &[f32]) -> Vec<f64> {
    let cols = m.cols();
    let xq: Vec<f32> = match m.ty() {
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q8_0 => {
            let mut b = vec![BlockQ8_0::default(); cols / 32];
            quantize_row_q8_0(x, &mut b);
            let mut o = vec![0f32; cols];
            dequantize_row_q8_0(&b, &mut o);
            o
        }
        GgmlType::Q4K | GgmlType::Q6K => {
            let mut b = vec![BlockQ8K::default(); cols / 256];
            quantize_row_q8k(x, &mut b);
            let mut o = vec![0f32; cols];
            dequantize_row_q8k(&b, &mut o);
            o
        }
        _ => x.to_vec(),
    };
    let w = m.dequantize();
    let mut masses: Vec<f64> = w
        .chunks(cols.max(1))
        .map(|row| {
            row.iter()
                .zip(&xq)
                .map(|(a, b)| (*a as f64 * *b as f64).abs())
                .sum()
        })
        .collect();
    // Q4_1's min term uses the activation block sum as the kernels keep it (f16 of the
    // unrounded scale times the integer sum, as ggml's block_q8_1), which stays non-zero where
    // the f16 scale, and so `xq`, underflows to zero: add |m * s| per block.
    if m.ty() == GgmlType::Q4_1 {
        let mut b = vec![BlockQ8_0::default(); cols / 32];
        quantize_row_q8_0(x, &mut b);
        let sums: Vec<f64> = b
            .iter()
            .zip(x.chunks_exact(32))
            .map(|(blk, xs)| {
                let qs = blk.qs;
                let sum: i32 = qs.iter().map(|&q| q as i32).sum();
                let d = xs.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
                (d * sum as f32).abs() as f64 * 1.001
            })
            .collect();
        for (r, mass) in masses.iter_mut().enumerate() {
            let row = m.row_bytes(r);
            for (blk, s) in row.chunks_exact(20).zip(&sums) {
                let min = f16::from_le_bytes([blk[2], blk[3]]).to_f32().abs() as f64;
                *mass += min * s;
            }
        }
    }
    masses
}

/// (type, rows, cols, tokens, raw bytes, scales, float weights, activations)
type Case = (
    GgmlType,
    usize,
    usize,
    usize,
    Vec<u8>,
    Vec<f32>,
    Vec<f32>,
    Vec<f32>,
);

fn case() -> impl Strategy<Value = Case> {
    (0..TYPES.len(), 1usize..24, 1usize..4, 1usize..7).prop_flat_map(|(ti, rows, nblk, n)| {
        let ty = TYPES[ti];
        let cols = if ty.block_len() == 1 {
            32 * nblk + 7
        } else {
            ty.block_len().max(32) * nblk
        };
        (
            Just(ty),
            Just(rows),
            Just(cols),
            Just(n),
            proptest::collection::vec(any::<u8>(), 64..512),
            proptest::collection::vec(scale_strategy(), 1..8),
            proptest::collection::vec(-10.0f32..10.0, rows * cols),
            activation_strategy(n * cols),
        )
    })
}

proptest! {
    // 256 cases natively; PROPTEST_CASES overrides (scripts/test-aarch64 uses fewer under qemu).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn simd_matches_scalar((ty, rows, cols, n, bytes, scales, fw, x) in case()) {
        let data = weights(ty, rows, cols, &bytes, &scales, &fw);
        let m = QMatrix::new(ty, rows, cols, &data).unwrap();
        let mut s = Scratch::new();
        let mut want = vec![0f32; n * rows];
        m.matmul_with(KernelPath::Scalar, &x, n, &mut want, &mut s).unwrap();
        let masses: Vec<Vec<f64>> = (0..n).map(|t| mass(&m, &x[t * cols..(t + 1) * cols])).collect();
        for p in simd_paths() {
            let mut got = vec![0f32; n * rows];
            m.matmul_with(p, &x, n, &mut got, &mut s).unwrap();
            for t in 0..n {
                // Prefill equals decode on every path, bit for bit (the x4 and 2x4 kernels).
                let mut one = vec![0f32; rows];
                m.matvec_with(p, &x[t * cols..(t + 1) * cols], &mut one, &mut s).unwrap();
                prop_assert_eq!(
                    one.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    got[t * rows..(t + 1) * rows].iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{} {} {}x{} token {} of {}: matmul vs matvec", p, ty, rows, cols, t, n
                );
                for r in 0..rows {
                    let (g, w) = (got[t * rows + r], want[t * rows + r]);
                    let tol = 1e-5 * masses[t][r];
                    prop_assert!(
                        ((g - w) as f64).abs() <= tol,
                        "{p} {ty} {rows}x{cols} token {t} row {r}: simd {g} scalar {w} tol {tol}"
                    );
                }
            }
        }
    }

    /// Power-of-two scales and integer activations (one +-127 per block, so the activation
    /// scale is exactly 1): every path must give bit-identical results.
    #[test]
    fn simd_exact_on_representable_data(
        ti in 0usize..6, rows in 1usize..9, nblk in 1usize..3,
        bytes in proptest::collection::vec(any::<u8>(), 64..512),
        exps in proptest::collection::vec(-6i32..1, 1..8),
        xi in proptest::collection::vec(-9i32..=9, 512),
        neg in any::<bool>(),
    ) {
        let ty = TYPES[ti];
        let cols = ty.block_len() * nblk;
        let scales: Vec<f32> = exps.iter().map(|&e| 2f32.powi(e)).collect();
        let data = weights(ty, rows, cols, &bytes, &scales, &[]);
        let m = QMatrix::new(ty, rows, cols, &data).unwrap();
        let mut x: Vec<f32> = xi.iter().cycle().take(cols).map(|&v| v as f32).collect();
        let blk = if ty.block_len() == 256 { 256 } else { 32 };
        for b in x.chunks_mut(blk) {
            b[0] = if neg { -127.0 } else { 127.0 };
        }
        let mut s = Scratch::new();
        let mut want = vec![0f32; rows];
        m.matvec_with(KernelPath::Scalar, &x, &mut want, &mut s).unwrap();
        // Every product is a multiple of 2^min_exp; demand that a bound on any partial sum
        // fits the 24-bit mantissa at that granularity, so every summation order is exact.
        let per_elem = match ty {
            GgmlType::Q4_0 => 8.0,
            GgmlType::Q5_0 => 16.0,
            GgmlType::Q4_1 => 16.0,
            GgmlType::Q8_0 => 128.0,
            GgmlType::Q4K => 63.0 * 15.0 + 63.0,
            _ => 128.0 * 32.0,
        };
        let max_scale = scales.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
        let bound = max_scale * per_elem * x.iter().map(|v| v.abs() as f64).sum::<f64>();
        let min_exp = *exps.iter().min().unwrap();
        prop_assume!(bound * 2f64.powi(-min_exp) < (1u64 << 24) as f64);
        for p in simd_paths() {
            let mut got = vec![0f32; rows];
            m.matvec_with(p, &x, &mut got, &mut s).unwrap();
            prop_assert_eq!(&got, &want, "{} {}", p, ty);
        }
    }

    /// Row-interleaved packed matrices: the scalar twin equals every SIMD path's packed
    /// kernels bit for bit (same operations per lane), and both equal the row-major scalar
    /// path within the accumulation-order tolerance above.
    #[test]
    fn packed_matches_row_major(
        ti in 0usize..6, tiles in 1usize..4, nblk in 1usize..4,
        bytes in proptest::collection::vec(any::<u8>(), 64..512),
        scales in proptest::collection::vec(scale_strategy(), 1..8),
        seed_x in activation_strategy(3 * 3 * 256),
    ) {
        let ty = [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q4K, GgmlType::Q5_0,
            GgmlType::Q6K][ti];
        let (rows, cols) = (tiles * packed::TILE, ty.block_len() * nblk);
        let data = weights(ty, rows, cols, &bytes, &scales, &[]);
        let m = QMatrix::new(ty, rows, cols, &data).unwrap();
        let p = PackedMatrix::pack(&m).unwrap();
        prop_assert_eq!((p.rows(), p.cols(), p.ty()), (rows, cols, ty));
        let x = &seed_x[..cols];
        let mut s = Scratch::new();
        let mut want = vec![0f32; rows];
        m.matvec_with(KernelPath::Scalar, x, &mut want, &mut s).unwrap();
        let mut twin = vec![0f32; rows];
        p.matvec_with(KernelPath::Scalar, x, &mut twin, &mut s).unwrap();
        let masses = mass(&m, x);
        for r in 0..rows {
            let tol = 1e-5 * masses[r];
            prop_assert!(((twin[r] - want[r]) as f64).abs() <= tol,
                "{ty} {rows}x{cols} row {r}: packed {} row-major {} tol {tol}", twin[r], want[r]);
        }
        // Several activations at once: the same as one at a time, bit for bit.
        let x3 = &seed_x[..3 * cols];
        let mut many = vec![0f32; 3 * rows];
        p.matmul(x3, 3, &mut many, &mut s).unwrap();
        for t in 0..3 {
            let mut one = vec![0f32; rows];
            p.matvec(&x3[t * cols..(t + 1) * cols], &mut one, &mut s).unwrap();
            prop_assert_eq!(&many[t * rows..(t + 1) * rows], &one[..]);
        }
        for path in packed_kernel_paths() {
            let mut simd = vec![0f32; rows];
            p.matvec_with(path, x, &mut simd, &mut s).unwrap();
            prop_assert_eq!(simd.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                twin.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{} {}", path, ty);
        }
    }

    /// Several packed matrices sharing one input (q / k / v, gate / up) as one parallel job
    /// (`PackedMatrix::matmul_many`): each output equals its own `matmul` bit for bit, for
    /// any mix of types (Q4_K / Q6_K next to the Q8_0 family run one after another), one or
    /// several activations; a wrong output length is an error that writes no output.
    #[test]
    fn fused_products_equal_separate_ones(
        types in proptest::collection::vec(0usize..6, 1..4),
        tiles in proptest::collection::vec(1usize..4, 3),
        nblk in 1usize..3, n in 1usize..4,
        bytes in proptest::collection::vec(any::<u8>(), 64..512),
        scales in proptest::collection::vec(scale_strategy(), 1..8),
        seed_x in activation_strategy(3 * 2 * 256),
    ) {
        let all = [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q4K, GgmlType::Q5_0,
            GgmlType::Q6K];
        let cols = 256 * nblk;
        let ms: Vec<PackedMatrix> = types.iter().zip(&tiles).map(|(&t, &k)| {
            let (ty, rows) = (all[t], k * packed::TILE);
            let data = weights(ty, rows, cols, &bytes, &scales, &[]);
            PackedMatrix::pack(&QMatrix::new(ty, rows, cols, &data).unwrap()).unwrap()
        }).collect();
        let x = &seed_x[..n * cols];
        let mut s = Scratch::new();
        let want: Vec<Vec<f32>> = ms.iter().map(|m| {
            let mut y = vec![0f32; n * m.rows()];
            m.matmul(x, n, &mut y, &mut s).unwrap();
            y
        }).collect();
        let mut got: Vec<Vec<f32>> = ms.iter().map(|m| vec![f32::NAN; n * m.rows()]).collect();
        let mut parts: Vec<(&PackedMatrix, &mut [f32])> =
            ms.iter().zip(got.iter_mut()).map(|(m, y)| (m, &mut y[..])).collect();
        PackedMatrix::matmul_many(&mut parts, x, n, &mut s).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            prop_assert_eq!(g.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                w.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "matrix {} {:?}", i, types);
        }
        let mut short = vec![0f32; n * ms[0].rows() - 1];
        let mut parts: Vec<(&PackedMatrix, &mut [f32])> = vec![(&ms[0], &mut short[..])];
        if ms.len() > 1 {
            parts.insert(0, (&ms[1], &mut got[1][..]));
        }
        if ms.len() > 1 {
            parts[0].1.fill(f32::NAN);
        }
        prop_assert!(PackedMatrix::matmul_many(&mut parts, x, n, &mut s).is_err());
        if ms.len() > 1 {
            prop_assert!(parts[0].1.iter().all(|v| v.is_nan()), "written before the error");
        }
    }

    /// Every path's activation quantizers give exactly the bytes of ggml's reference
    /// rounding: random data, ties (`k / 2` after scaling), both signs of the largest
    /// magnitude, subnormals, zeros, and NaN / infinity / f32::MAX (left to the scalar code).
    #[test]
    fn activation_quantizers_match_scalar(
        x in proptest::collection::vec(prop_oneof![
            6 => -1.0f32..1.0,
            2 => (-254i32..=254).prop_map(|k| k as f32 * 0.5),
            1 => prop_oneof![Just(0.0f32), Just(-0.0), Just(1.0e-40), Just(-3.0e-39), Just(127.0), Just(-127.0)],
            1 => -1.0e-37f32..1.0e-37,
            1 => any::<f32>(),
        ], 256..=256 * 3).prop_map(|mut v| { v.truncate(v.len() / 256 * 256); v })
    ) {
        let mut want = vec![BlockQ8_0::default(); x.len() / 32];
        quantize_activations_q8_0(KernelPath::Scalar, &x, &mut want).unwrap();
        let mut want_k = vec![BlockQ8K::default(); x.len() / 256];
        quantize_activations_q8k(KernelPath::Scalar, &x, &mut want_k).unwrap();
        let mut reference = vec![BlockQ8_0::default(); x.len() / 32];
        quantize_row_q8_0(&x, &mut reference);
        prop_assert_eq!(blocks_as_bytes(&want), blocks_as_bytes(&reference));
        for p in simd_paths() {
            let mut got = vec![BlockQ8_0::default(); x.len() / 32];
            quantize_activations_q8_0(p, &x, &mut got).unwrap();
            prop_assert_eq!(blocks_as_bytes(&got), blocks_as_bytes(&want), "Q8_0 {}", p);
            let mut got = vec![BlockQ8K::default(); x.len() / 256];
            quantize_activations_q8k(p, &x, &mut got).unwrap();
            prop_assert_eq!(blocks_as_bytes(&got), blocks_as_bytes(&want_k), "Q8_K {}", p);
        }
    }

    #[test]
    fn dot_i8_exact(a in proptest::collection::vec(any::<i8>(), 0..700), b in proptest::collection::vec(any::<i8>(), 0..700)) {
        let want = scalar::dot_i8(&a, &b);
        let naive: i64 = a.iter().zip(&b).map(|(&p, &q)| p as i64 * q as i64).sum();
        prop_assert_eq!(want as i64, naive);
        for p in simd_paths() {
            prop_assert_eq!(int8::dot_i8_with(p, &a, &b).unwrap(), want, "{}", p);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    /// Row-major matrices sharing one input as one parallel job (`QMatrix::matvec_many`):
    /// each output equals its own `matvec` bit for bit, for any mix of the quantized types
    /// (the Q8_0 family next to Q4_K / Q6_K, or unquantized F16, run one after another);
    /// a wrong output length is an error that writes no output.
    #[test]
    fn fused_row_major_products_equal_separate_ones(
        types in proptest::collection::vec(0usize..7, 1..5),
        rows in proptest::collection::vec(1usize..40, 4),
        nblk in 1usize..3,
        bytes in proptest::collection::vec(any::<u8>(), 64..512),
        scales in proptest::collection::vec(scale_strategy(), 1..8),
        seed_x in activation_strategy(2 * 256),
    ) {
        let all = [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q4K, GgmlType::Q5_0,
            GgmlType::Q6K, GgmlType::F16];
        let cols = 256 * nblk;
        let data: Vec<(GgmlType, usize, Vec<u8>)> = types.iter().zip(&rows).map(|(&t, &r)| {
            let float_w: Vec<f32> = (0..r * cols).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
            (all[t], r, weights(all[t], r, cols, &bytes, &scales, &float_w))
        }).collect();
        let ms: Vec<QMatrix> =
            data.iter().map(|(ty, r, d)| QMatrix::new(*ty, *r, cols, d).unwrap()).collect();
        let x = &seed_x[..cols];
        let mut s = Scratch::new();
        let want: Vec<Vec<f32>> = ms.iter().map(|m| {
            let mut y = vec![0f32; m.rows()];
            m.matvec(x, &mut y, &mut s).unwrap();
            y
        }).collect();
        let mut got: Vec<Vec<f32>> = ms.iter().map(|m| vec![f32::NAN; m.rows()]).collect();
        let mut parts: Vec<(&QMatrix, &mut [f32])> =
            ms.iter().zip(got.iter_mut()).map(|(m, y)| (m, &mut y[..])).collect();
        QMatrix::matvec_many(&mut parts, x, &mut s).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            prop_assert_eq!(g.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                w.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "matrix {} {:?}", i, types);
        }
        // A short output anywhere: an error, and no part written.
        let mut outs: Vec<Vec<f32>> = ms.iter().map(|m| vec![f32::NAN; m.rows()]).collect();
        outs.last_mut().unwrap().pop();
        let mut parts: Vec<(&QMatrix, &mut [f32])> =
            ms.iter().zip(outs.iter_mut()).map(|(m, y)| (m, &mut y[..])).collect();
        prop_assert!(QMatrix::matvec_many(&mut parts, x, &mut s).is_err());
        prop_assert!(outs.iter().flatten().all(|v| v.is_nan()));
    }
}

#[test]
fn saturation_extremes_are_exact() {
    // All-(-128) Q8_0 weights against +-127 activations, and 4-bit extremes.
    let cols = 256;
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q4K,
        GgmlType::Q6K,
    ] {
        for fill in [0x80u8, 0xFF, 0x00, 0x7F] {
            let data = weights(ty, 3, cols, &[fill], &[1.0], &[]);
            let m = QMatrix::new(ty, 3, cols, &data).unwrap();
            for xv in [127.0f32, -127.0] {
                let x = vec![xv; cols];
                let mut s = Scratch::new();
                let mut want = vec![0f32; 3];
                m.matvec_with(KernelPath::Scalar, &x, &mut want, &mut s)
                    .unwrap();
                for p in simd_paths() {
                    let mut got = vec![0f32; 3];
                    m.matvec_with(p, &x, &mut got, &mut s).unwrap();
                    assert_eq!(got, want, "{p} {ty} fill {fill:#x} x {xv}");
                }
            }
        }
    }
    let a = vec![-128i8; 1000];
    for p in simd_paths() {
        assert_eq!(int8::dot_i8_with(p, &a, &a).unwrap(), 1000 * 128 * 128);
    }
}

/// Packed kernels at the integer extremes (every weight byte 0x00, 0xFF, 0x80 or 0x7F: Q6_K
/// quants of 0 and 63, 4-bit 0 and 15, scales of -128 and 127) against +-127 activations:
/// every SIMD path equals the scalar twin bit for bit (no i16 saturation in `maddubs`, no
/// overflow in the scaled sums), and the twin the row-major reference within rounding.
#[test]
fn packed_saturation_extremes_are_exact() {
    let (rows, cols) = (2 * packed::TILE, 512);
    for ty in [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q4K,
        GgmlType::Q6K,
    ] {
        for fill in [0x80u8, 0xFF, 0x00, 0x7F] {
            let data = weights(ty, rows, cols, &[fill], &[1.0], &[]);
            let m = QMatrix::new(ty, rows, cols, &data).unwrap();
            let p = PackedMatrix::pack(&m).unwrap();
            for xv in [127.0f32, -127.0] {
                let x = vec![xv; cols];
                let mut s = Scratch::new();
                let (mut want, mut twin) = (vec![0f32; rows], vec![0f32; rows]);
                m.matvec_with(KernelPath::Scalar, &x, &mut want, &mut s)
                    .unwrap();
                p.matvec_with(KernelPath::Scalar, &x, &mut twin, &mut s)
                    .unwrap();
                for (t, w) in twin.iter().zip(&want) {
                    assert!(
                        (t - w).abs() <= 1e-5 * w.abs().max(1.0),
                        "{ty} {fill:#x}: {t} vs {w}"
                    );
                }
                for path in packed_kernel_paths() {
                    let mut got = vec![0f32; rows];
                    p.matvec_with(path, &x, &mut got, &mut s).unwrap();
                    assert_eq!(got, twin, "{path} {ty} fill {fill:#x} x {xv}");
                }
            }
        }
    }
}

#[test]
fn best_path_is_selected() {
    let p = kernel_path();
    let forced = std::env::var("EDGEAI_KERNEL").is_ok();
    eprintln!(
        "kernel path: {p}; available: {:?}",
        available_kernel_paths()
    );
    #[cfg(target_arch = "x86_64")]
    if !forced && std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        assert_ne!(p, KernelPath::Scalar);
    }
    #[cfg(target_arch = "aarch64")]
    if !forced && std::arch::is_aarch64_feature_detected!("dotprod") {
        assert!(
            matches!(p, KernelPath::NeonDotprod | KernelPath::NeonI8mm),
            "{p}"
        );
    }
    let _ = forced;
}

#[test]
fn packing_rejects_what_it_cannot_pack() {
    let q8 = vec![0u8; 15 * 34];
    let m = QMatrix::new(GgmlType::Q8_0, 15, 32, &q8).unwrap();
    let e = PackedMatrix::pack(&m).unwrap_err().to_string();
    assert!(e.contains("multiple of 16 rows"), "{e}");
    let f16s = vec![0u8; 16 * 512];
    let m = QMatrix::new(GgmlType::F16, 16, 256, &f16s).unwrap();
    assert!(PackedMatrix::pack(&m).is_err());
    assert!(PackedMatrix::supports(GgmlType::Q4K, 48, 512));
    assert!(!PackedMatrix::supports(GgmlType::Q4K, 48, 0));
    let q8 = vec![0u8; 16 * 34];
    let p = PackedMatrix::pack(&QMatrix::new(GgmlType::Q8_0, 16, 32, &q8).unwrap()).unwrap();
    let mut s = Scratch::new();
    let e = p
        .matvec(&[0.0; 31], &mut [0.0; 16], &mut s)
        .unwrap_err()
        .to_string();
    assert!(e.contains("input has 31"), "{e}");
    let e = p
        .matmul(&[0.0; 64], 3, &mut [0.0; 48], &mut s)
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected 3 x 32"), "{e}");
    // A path of the other architecture never runs.
    let foreign = if cfg!(target_arch = "x86_64") {
        KernelPath::Neon
    } else {
        KernelPath::Avx2
    };
    let e = p
        .matvec_with(foreign, &[0.0; 32], &mut [0.0; 16], &mut s)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no packed kernel for path"), "{e}");
}

/// Every SIMD path has packed kernels, so the bit-identity proptest above covers each (AVX2,
/// AVX-VNNI and AVX-512 VNNI on x86_64; NEON, dotprod and i8mm on aarch64), and a forced
/// path packs with its own kernels.
#[test]
fn packed_kernels_exist_on_every_simd_path() {
    let packed = packed_kernel_paths();
    eprintln!("packed kernel paths: {packed:?}");
    for p in available_kernel_paths() {
        assert_eq!(packed.contains(&p), p != KernelPath::Scalar, "{p}");
    }
    assert!(!packed.contains(&KernelPath::Scalar));
    assert_eq!(
        packed_simd_path().is_some(),
        packed.contains(&kernel_path())
    );
}

/// Values for the f32 vector kernels: ordinary, tiny, large, zeros and signed zeros.
fn f32_values(n: usize) -> impl Strategy<Value = Vec<f32>> {
    proptest::collection::vec(
        prop_oneof![
            8 => -4.0f32..4.0,
            1 => -1.0e-30f32..1.0e-30,
            1 => -1.0e4f32..1.0e4,
            1 => Just(0.0f32),
            1 => Just(-0.0f32),
        ],
        n,
    )
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    /// Attention scores and weighted sums (odd widths, partial query blocks, strides) on
    /// every path equal the scalar twin bit for bit, and the f64 reference within rounding.
    #[test]
    fn vector_attention_kernels_match_scalar(
        (m, nk, hd, extra, q, k, w, o) in (1usize..10, 1usize..40, 1usize..70, 0usize..3)
            .prop_flat_map(|(m, nk, hd, extra)| {
                let st = hd + extra;
                (
                    Just(m), Just(nk), Just(hd), Just(extra),
                    f32_values(m * st), f32_values(nk * st), f32_values(m * nk),
                    f32_values(m * hd),
                )
            })
    ) {
        use edgeai_core::quant::vector::{Strided, StridedMut, VectorPath};
        let st = hd + extra;
        let scalar = VectorPath::new(KernelPath::Scalar).unwrap();
        let run = |p: &VectorPath| {
            let mut s = vec![0f32; m * nk];
            p.scores(Strided::new(&q, m, hd, st), Strided::new(&k, nk, hd, st), &mut StridedMut::new(&mut s, m, nk, nk));
            let mut out = o.clone();
            p.weighted_sum(Strided::new(&w, m, nk, nk), Strided::new(&k, nk, hd, st), &mut StridedMut::new(&mut out, m, hd, hd));
            (s, out)
        };
        let (s0, o0) = run(&scalar);
        for i in 0..m {
            for j in 0..nk {
                let (mut want, mut mass) = (0f64, 0f64);
                for d in 0..hd {
                    let p = q[i * st + d] as f64 * k[j * st + d] as f64;
                    want += p;
                    mass += p.abs();
                }
                prop_assert!((s0[i * nk + j] as f64 - want).abs() <= 1e-5 * mass + 1e-30);
            }
            for d in 0..hd {
                let (mut want, mut mass) = (o[i * hd + d] as f64, (o[i * hd + d] as f64).abs());
                for j in 0..nk {
                    let p = w[i * nk + j] as f64 * k[j * st + d] as f64;
                    want += p;
                    mass += p.abs();
                }
                prop_assert!((o0[i * hd + d] as f64 - want).abs() <= 1e-5 * mass + 1e-30);
            }
        }
        // One query alone gets the bits it gets inside a block of four.
        if m >= 4 {
            let mut one = vec![0f32; nk];
            scalar.scores(Strided::new(&q[st..], 1, hd, st), Strided::new(&k, nk, hd, st), &mut StridedMut::new(&mut one, 1, nk, nk));
            prop_assert_eq!(bits(&one), bits(&s0[nk..2 * nk]));
        }
        for p in simd_paths() {
            let (s, out) = run(&VectorPath::new(p).unwrap());
            prop_assert_eq!(bits(&s), bits(&s0), "scores on {}", p);
            prop_assert_eq!(bits(&out), bits(&o0), "weighted sum on {}", p);
        }
        // Half-precision keys / values (an f16 KV cache): the f32 kernels on the widened
        // values, bit for bit, on every path.
        let kh: Vec<f16> = k.iter().map(|&v| f16::from_f32(v)).collect();
        let kw: Vec<f32> = kh.iter().map(|v| v.to_f32()).collect();
        let run16 = |p: &VectorPath| {
            let mut s = vec![0f32; m * nk];
            p.scores_f16(Strided::new(&q, m, hd, st), Strided::new(&kh, nk, hd, st), &mut StridedMut::new(&mut s, m, nk, nk));
            let mut out = o.clone();
            p.weighted_sum_f16(Strided::new(&w, m, nk, nk), Strided::new(&kh, nk, hd, st), &mut StridedMut::new(&mut out, m, hd, hd));
            (s, out)
        };
        let (sw, ow) = {
            let mut s = vec![0f32; m * nk];
            scalar.scores(Strided::new(&q, m, hd, st), Strided::new(&kw, nk, hd, st), &mut StridedMut::new(&mut s, m, nk, nk));
            let mut out = o.clone();
            scalar.weighted_sum(Strided::new(&w, m, nk, nk), Strided::new(&kw, nk, hd, st), &mut StridedMut::new(&mut out, m, hd, hd));
            (s, out)
        };
        for p in std::iter::once(KernelPath::Scalar).chain(simd_paths()) {
            let (s, out) = run16(&VectorPath::new(p).unwrap());
            prop_assert_eq!(bits(&s), bits(&sw), "f16 scores on {}", p);
            prop_assert_eq!(bits(&out), bits(&ow), "f16 weighted sum on {}", p);
        }
    }

    /// A q8_0 KV cache (as llama.cpp's `-ctk q8_0 -ctv q8_0`): scores and weighted sums over
    /// rows of blocks (1-5 blocks wide, strided, partial query blocks, an all-zero block)
    /// equal the f32 kernels on the dequantized values bit for bit, on every path.
    #[test]
    fn vector_attention_kernels_on_q8_0_rows_equal_the_dequantized_f32_ones(
        (m, nk, nb, extra, q, k, w, o) in (1usize..10, 1usize..40, 1usize..6, 0usize..2)
            .prop_flat_map(|(m, nk, nb, extra)| {
                let (hd, st) = (nb * QK, (nb + extra) * QK);
                (
                    Just(m), Just(nk), Just(nb), Just(extra),
                    f32_values(m * hd), f32_values(nk * st), f32_values(m * nk),
                    f32_values(m * hd),
                )
            })
    ) {
        use edgeai_core::quant::vector::{Strided, StridedMut, VectorPath};
        let (hd, sb) = (nb * QK, nb + extra);
        let mut k = k;
        k[..QK].fill(0.0); // an all-zero block: scale 0
        let mut kb = vec![BlockQ8_0 { d: f16::ZERO, qs: [0; QK] }; nk * sb];
        quantize_row_q8_0(&k, &mut kb);
        // The dequantized values, laid out as f32 rows of hd at stride hd.
        let mut kw = vec![0f32; nk * hd];
        for j in 0..nk {
            for e in 0..hd {
                let b = &kb[j * sb + e / QK];
                kw[j * hd + e] = b.qs[e % QK] as f32 * b.d.to_f32();
            }
        }
        let scalar = VectorPath::new(KernelPath::Scalar).unwrap();
        let mut sw = vec![0f32; m * nk];
        scalar.scores(Strided::new(&q, m, hd, hd), Strided::new(&kw, nk, hd, hd), &mut StridedMut::new(&mut sw, m, nk, nk));
        let mut ow = o.clone();
        scalar.weighted_sum(Strided::new(&w, m, nk, nk), Strided::new(&kw, nk, hd, hd), &mut StridedMut::new(&mut ow, m, hd, hd));
        for p in std::iter::once(KernelPath::Scalar).chain(simd_paths()) {
            let p8 = VectorPath::new(p).unwrap();
            let mut s = vec![0f32; m * nk];
            p8.scores_q8_0(Strided::new(&q, m, hd, hd), Strided::new(&kb, nk, nb, sb), &mut StridedMut::new(&mut s, m, nk, nk));
            let mut out = o.clone();
            p8.weighted_sum_q8_0(Strided::new(&w, m, nk, nk), Strided::new(&kb, nk, nb, sb), &mut StridedMut::new(&mut out, m, hd, hd));
            prop_assert_eq!(bits(&s), bits(&sw), "q8_0 scores on {}", p);
            prop_assert_eq!(bits(&out), bits(&ow), "q8_0 weighted sum on {}", p);
        }
    }

    /// Softmax, GeGLU, SwiGLU, exp and dot on every path equal the scalar twin bit for bit.
    #[test]
    fn vector_elementwise_kernels_match_scalar(
        x in proptest::collection::vec(prop_oneof![
            8 => -20.0f32..20.0,
            1 => -200.0f32..200.0,
            1 => Just(0.0f32),
            1 => Just(f32::NEG_INFINITY),
        ], 1..90),
        scale in 0.01f32..2.0,
    ) {
        use edgeai_core::quant::vector::VectorPath;
        let u: Vec<f32> = x.iter().rev().map(|v| v * 0.5).collect();
        let run = |p: &VectorPath| {
            let mut s: Vec<f32> = x.iter().map(|v| v.max(-1e30)).collect();
            p.softmax(&mut s, scale);
            let (mut g, mut h, mut e) = (x.clone(), x.clone(), x.clone());
            p.gelu_tanh_mul(&mut g, &u);
            p.silu_mul(&mut h, &u);
            p.exp(&mut e);
            let d = p.dot(&x, &u);
            (s, g, h, e, d)
        };
        let (s0, g0, h0, e0, d0) = run(&VectorPath::new(KernelPath::Scalar).unwrap());
        prop_assert!((s0.iter().map(|v| *v as f64).sum::<f64>() - 1.0).abs() < 1e-5);
        for p in simd_paths() {
            let (s, g, h, e, d) = run(&VectorPath::new(p).unwrap());
            prop_assert_eq!(bits(&s), bits(&s0), "softmax on {}", p);
            prop_assert_eq!(bits(&g), bits(&g0), "gelu on {}", p);
            prop_assert_eq!(bits(&h), bits(&h0), "silu on {}", p);
            prop_assert_eq!(bits(&e), bits(&e0), "exp on {}", p);
            prop_assert_eq!(d.to_bits(), d0.to_bits(), "dot on {}", p);
        }
    }
}

proptest! {
    /// `dot_i8_rows` on every path equals its scalar twin and `dot_i8` row by row, exactly:
    /// any row length (the 16-wide loop's tails), 0-10 rows (the 4-row kernel's leftovers),
    /// a query shorter or longer than a row, an `out` longer than the rows (left untouched).
    #[test]
    fn dot_i8_rows_exact(
        (dim, nrows, rows, q, extra) in (1usize..300, 0usize..11).prop_flat_map(|(dim, nrows)| (
            Just(dim),
            Just(nrows),
            proptest::collection::vec(any::<i8>(), dim * nrows),
            proptest::collection::vec(any::<i8>(), 0..dim + 20),
            0usize..3,
        ))
    ) {
        let mut want = vec![7i32; nrows + extra];
        scalar::dot_i8_rows(&rows, dim, &q, &mut want);
        for r in 0..nrows {
            prop_assert_eq!(want[r], scalar::dot_i8(&rows[r * dim..(r + 1) * dim], &q));
        }
        prop_assert!(want[nrows..].iter().all(|&v| v == 7));
        for p in std::iter::once(KernelPath::Scalar).chain(simd_paths()) {
            let mut got = vec![7i32; nrows + extra];
            let n = int8::dot_i8_rows_with(p, &rows, dim, &q, &mut got).unwrap();
            prop_assert_eq!(n, nrows);
            prop_assert_eq!(&got, &want, "{}", p);
        }
    }
}

proptest! {
    /// `dot_i8_tile` on every path equals its scalar twin and `dot_i8` pair by pair, bit for
    /// bit: any row length (the 16-wide loops' tails), 0-9 queries and 0-10 rows (the 4-query
    /// and 2- / 4-row tiles' remainders), values biased to the -128 / 127 extremes.
    #[test]
    fn dot_i8_tile_exact(
        (dim, nq, nr, rows, queries) in (1usize..200, 0usize..10, 0usize..11).prop_flat_map(
            |(dim, nq, nr)| {
                let v = prop_oneof![
                    3 => any::<i8>(),
                    1 => Just(-128i8),
                    1 => Just(127i8),
                ];
                (
                    Just(dim),
                    Just(nq),
                    Just(nr),
                    proptest::collection::vec(v.clone(), dim * nr),
                    proptest::collection::vec(v, dim * nq),
                )
            }
        )
    ) {
        let mut want = vec![7i32; nq * nr];
        scalar::dot_i8_tile(&rows, &queries, dim, &mut want);
        for j in 0..nq {
            for r in 0..nr {
                let d = scalar::dot_i8(&rows[r * dim..(r + 1) * dim], &queries[j * dim..(j + 1) * dim]);
                prop_assert_eq!(want[j * nr + r], d);
            }
        }
        for p in std::iter::once(KernelPath::Scalar).chain(simd_paths()) {
            let mut got = vec![7i32; nq * nr];
            int8::dot_i8_tile_with(p, &rows, &queries, dim, &mut got).unwrap();
            prop_assert_eq!(&got, &want, "{}", p);
        }
    }
}

/// `dot_i8_tile` at the extremes (-128 everywhere: no i16 overflow, 1000 x 128 x 128), and
/// its argument checks.
#[test]
fn dot_i8_tile_extremes_and_errors() {
    let (dim, nq, nr) = (1000, 5, 7);
    let rows = vec![-128i8; dim * nr];
    let queries = vec![-128i8; dim * nq];
    for p in std::iter::once(KernelPath::Scalar).chain(simd_paths()) {
        let mut out = vec![0i32; nq * nr];
        int8::dot_i8_tile_with(p, &rows, &queries, dim, &mut out).unwrap();
        assert!(out.iter().all(|&v| v == 1000 * 128 * 128), "{p} {out:?}");
        let mut short = vec![0i32; nq * nr - 1];
        assert!(int8::dot_i8_tile_with(p, &rows, &queries, dim, &mut short).is_err());
        assert!(int8::dot_i8_tile_with(p, &rows[1..], &queries, dim, &mut out).is_err());
        assert!(int8::dot_i8_tile_with(p, &rows, &queries, 0, &mut out).is_err());
        let mut none: [i32; 0] = [];
        int8::dot_i8_tile_with(p, &[], &queries, dim, &mut none).unwrap();
    }
}

/// `dot_i8_rows` at the extremes (-128 everywhere: no i16 overflow) and `dim == 0`.
#[test]
fn dot_i8_rows_extremes() {
    let (dim, nrows) = (1000, 6);
    let rows = vec![-128i8; dim * nrows];
    for p in std::iter::once(KernelPath::Scalar).chain(simd_paths()) {
        let mut out = vec![0i32; nrows];
        assert_eq!(
            int8::dot_i8_rows_with(p, &rows, dim, &rows[..dim], &mut out).unwrap(),
            nrows
        );
        assert!(out.iter().all(|&v| v == 1000 * 128 * 128), "{p} {out:?}");
        assert_eq!(
            int8::dot_i8_rows_with(p, &rows, 0, &rows, &mut out).unwrap(),
            0
        );
    }
}
