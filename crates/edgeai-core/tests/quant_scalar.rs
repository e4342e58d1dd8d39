//! Scalar-path correctness of the quantized formats and kernels.

use edgeai_core::half::f16;
use edgeai_core::quant::*;

fn lcg(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed;
    move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn randv(n: usize, seed: u64) -> Vec<f32> {
    let mut r = lcg(seed);
    (0..n).map(|_| r()).collect()
}

/// Quantizes a row-major matrix to the bytes of `ty`.
fn quantize(ty: GgmlType, w: &[f32]) -> Vec<u8> {
    match ty {
        GgmlType::Q4_0 => {
            let mut b = vec![BlockQ4_0::default(); w.len() / 32];
            quantize_row_q4_0(w, &mut b);
            blocks_as_bytes(&b).to_vec()
        }
        GgmlType::Q4_1 => {
            let mut b = vec![BlockQ4_1::default(); w.len() / 32];
            quantize_row_q4_1(w, &mut b);
            blocks_as_bytes(&b).to_vec()
        }
        GgmlType::Q8_0 => {
            let mut b = vec![BlockQ8_0::default(); w.len() / 32];
            quantize_row_q8_0(w, &mut b);
            blocks_as_bytes(&b).to_vec()
        }
        GgmlType::Q5_0 => {
            let mut b = vec![BlockQ5_0::default(); w.len() / 32];
            quantize_row_q5_0(w, &mut b);
            blocks_as_bytes(&b).to_vec()
        }
        GgmlType::Q4K => {
            let mut b = vec![BlockQ4K::default(); w.len() / 256];
            quantize_row_q4k(w, &mut b);
            blocks_as_bytes(&b).to_vec()
        }
        GgmlType::Q6K => {
            let mut b = vec![BlockQ6K::default(); w.len() / 256];
            quantize_row_q6k(w, &mut b);
            blocks_as_bytes(&b).to_vec()
        }
        GgmlType::F32 => w.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => w
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect(),
        GgmlType::BF16 => w
            .iter()
            .flat_map(|v| edgeai_core::half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
        GgmlType::Q8K => unreachable!("not a weight type"),
    }
}

const WEIGHT_TYPES: [GgmlType; 9] = [
    GgmlType::Q5_0,
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q8_0,
    GgmlType::Q4K,
    GgmlType::Q6K,
];

#[test]
fn type_table() {
    let sizes = [
        (GgmlType::F32, 0, 1, 4),
        (GgmlType::F16, 1, 1, 2),
        (GgmlType::BF16, 30, 1, 2),
        (GgmlType::Q4_0, 2, 32, 18),
        (GgmlType::Q4_1, 3, 32, 20),
        (GgmlType::Q5_0, 6, 32, 22),
        (GgmlType::Q8_0, 8, 32, 34),
        (GgmlType::Q4K, 12, 256, 144),
        (GgmlType::Q6K, 14, 256, 210),
        (GgmlType::Q8K, 15, 256, 292),
    ];
    for (t, id, bl, bb) in sizes {
        assert_eq!(t.ggml_id(), id);
        assert_eq!(GgmlType::from_ggml_id(id), Some(t));
        assert_eq!(t.block_len(), bl);
        assert_eq!(t.block_bytes(), bb);
        assert_eq!(t.row_bytes(bl * 3).unwrap(), bb * 3);
    }
    assert_eq!(GgmlType::from_ggml_id(7), None); // Q5_1: not supported
    assert!(GgmlType::Q4K.row_bytes(100).is_err());
    assert!(GgmlType::F32.row_bytes(usize::MAX).is_err());
    assert_eq!(GgmlType::Q4K.name(), "Q4_K");
}

#[test]
fn q4_1_layout_by_hand() {
    // d = 0.5, m = -1.0; byte j holds element j (low) and j+16 (high).
    let mut qs = [0u8; 16];
    for (j, q) in qs.iter_mut().enumerate() {
        *q = (j as u8) | ((15 - j as u8) << 4);
    }
    let b = BlockQ4_1 {
        d: f16::from_f32(0.5),
        m: f16::from_f32(-1.0),
        qs,
    };
    let mut out = [0f32; 32];
    dequantize_row_q4_1(&[b], &mut out);
    for j in 0..16 {
        assert_eq!(out[j], 0.5 * j as f32 - 1.0);
        assert_eq!(out[j + 16], 0.5 * (15 - j) as f32 - 1.0);
    }
    let bytes = blocks_as_bytes(std::slice::from_ref(&b));
    assert_eq!(&bytes[..4], &[0x00, 0x38, 0x00, 0xBC]); // f16 0.5, -1.0 little-endian
}

#[test]
fn q4k_scale_packing_round_trips() {
    // Pack arbitrary 6-bit scales/mins the way ggml does and read them back.
    let sc: [u8; 8] = [1, 63, 17, 40, 33, 62, 5, 48];
    let m: [u8; 8] = [63, 0, 21, 9, 58, 16, 47, 31];
    let mut p = [0u8; 12];
    for j in 0..4 {
        p[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
        p[j + 4] = m[j] | ((m[j + 4] >> 4) << 6);
        p[j + 8] = (sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4);
    }
    for j in 0..8 {
        assert_eq!(get_scale_min_k4(j, &p), (sc[j], m[j]));
    }
}

fn round_trip_err(ty: GgmlType, x: &[f32]) -> f32 {
    let bytes = quantize(ty, x);
    let mut out = vec![0f32; x.len()];
    dequantize(ty, &bytes, &mut out).unwrap();
    x.iter()
        .zip(&out)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

#[test]
fn round_trip_errors_are_bounded() {
    let x = randv(1024, 1);
    // inputs in [-1, 1): max error is about half a quantization step.
    assert!(round_trip_err(GgmlType::Q8_0, &x) <= 1.0 / 127.0 * 0.5 + 1e-3);
    assert!(round_trip_err(GgmlType::Q4_0, &x) <= 1.0 / 8.0 + 2e-3);
    assert!(round_trip_err(GgmlType::Q4_1, &x) <= 2.0 / 15.0 * 0.5 + 2e-3);
    assert!(round_trip_err(GgmlType::Q5_0, &x) <= 1.0 / 16.0 + 2e-3);
    assert!(
        round_trip_err(GgmlType::Q4K, &x) < 0.1,
        "{}",
        round_trip_err(GgmlType::Q4K, &x)
    );
    assert!(
        round_trip_err(GgmlType::Q6K, &x) < 0.03,
        "{}",
        round_trip_err(GgmlType::Q6K, &x)
    );
    assert_eq!(round_trip_err(GgmlType::F32, &x), 0.0);
    assert!(round_trip_err(GgmlType::F16, &x) < 1e-3);
    assert!(round_trip_err(GgmlType::BF16, &x) < 1e-2);
    let mut k = vec![BlockQ8K::default(); 4];
    quantize_row_q8k(&x, &mut k);
    let mut out = vec![0f32; 1024];
    dequantize_row_q8k(&k, &mut out);
    let e = x
        .iter()
        .zip(&out)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(e <= 0.5 / 127.0 + 1e-4, "{e}");
    for b in &k {
        for (g, s) in b.qs.chunks(16).zip(b.bsums) {
            assert_eq!(g.iter().map(|&q| q as i16).sum::<i16>(), s);
        }
    }
}

#[test]
fn all_zero_blocks() {
    let x = vec![0f32; 512];
    for ty in WEIGHT_TYPES {
        assert_eq!(round_trip_err(ty, &x), 0.0, "{ty}");
        let bytes = quantize(ty, &x);
        let m = QMatrix::new(ty, 2, 256, &bytes).unwrap();
        let mut y = [1f32; 2];
        m.matvec(&randv(256, 3), &mut y, &mut Scratch::new())
            .unwrap();
        assert_eq!(y, [0.0, 0.0], "{ty}");
    }
}

/// Reference: dequantized weights times the activations as the kernel sees them (quantized
/// to Q8_0 / Q8_K), accumulated in f64.
fn reference(ty: GgmlType, w: &[f32], rows: usize, cols: usize, x: &[f32]) -> Vec<f64> {
    let bytes = quantize(ty, w);
    let m = QMatrix::new(ty, rows, cols, &bytes).unwrap();
    let wd = m.dequantize();
    let xq: Vec<f32> = match ty {
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
    let mut out: Vec<f64> = wd
        .chunks(cols)
        .map(|row| {
            row.iter()
                .zip(&xq)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum()
        })
        .collect();
    if ty == GgmlType::Q4_1 {
        // The min term `m * d8 * sum(q8)` uses ggml's block_q8_1 sum, kept in f16 (computed
        // from the unrounded activation scale): mirror that rounding.
        let nb = cols / 32;
        for (r, o) in out.iter_mut().enumerate() {
            for b in 0..nb {
                let blk = &bytes[(r * nb + b) * 20..][..20];
                let m = half::f16::from_le_bytes([blk[2], blk[3]]).to_f32() as f64;
                let xs = &x[b * 32..][..32];
                let d = xs.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
                let qsum: f32 = xq[b * 32..][..32].iter().sum::<f32>();
                let d8 = if d == 0.0 {
                    0.0
                } else {
                    half::f16::from_f32(d).to_f32()
                };
                let isum = if d8 == 0.0 { 0.0 } else { (qsum / d8).round() };
                let exact = d * isum;
                let s16 = if exact.abs() <= f32::from(half::f16::MAX) {
                    half::f16::from_f32(exact).to_f32() as f64
                } else {
                    exact as f64
                };
                *o += m * (s16 - qsum as f64);
            }
        }
    }
    out
}

#[test]
fn matvec_matches_dequantized_reference() {
    let (rows, cols) = (37, 512);
    let w = randv(rows * cols, 7);
    let x = randv(cols, 8);
    let mut scratch = Scratch::new();
    for ty in WEIGHT_TYPES {
        let bytes = quantize(ty, &w);
        let m = QMatrix::new(ty, rows, cols, &bytes).unwrap();
        let mut y = vec![0f32; rows];
        m.matvec_with(KernelPath::Scalar, &x, &mut y, &mut scratch)
            .unwrap();
        let want = reference(ty, &w, rows, cols, &x);
        for r in 0..rows {
            // f32 accumulation of ~cols terms of size <= 1: relative 1e-5 of the L1 mass.
            assert!(
                (y[r] as f64 - want[r]).abs() < 1e-3,
                "{ty} row {r}: {} vs {}",
                y[r],
                want[r]
            );
        }
        // And against the unquantized product (activation + weight quantization error).
        let exact: Vec<f32> = w
            .chunks(cols)
            .map(|row| row.iter().zip(&x).map(|(a, b)| a * b).sum())
            .collect();
        let err = y
            .iter()
            .zip(&exact)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 1.5, "{ty}: max err {err}");
    }
}

/// Multi-threaded `matmul` (3 kernel threads: the output-row chunks written in parallel
/// through `threads::OutPtr`, the `unsafe` this covers) equals single-threaded `matvec`, token
/// by token, bit for bit, row-major and packed. Small enough to run under Miri, where it
/// checks those parallel writes for data races and out-of-bounds access.
#[test]
fn matmul_equals_repeated_matvec_and_threads_agree() {
    // Under Miri 80 x 512 x 2 tokens = 81,920 multiply-adds: above the row-major kernels'
    // parallel threshold (65,536), below the packed kernels' (64x that: serial there).
    // Natively 1024 x 2048 x 2 = 4.2M: both run in parallel.
    let (rows, cols, n) = if cfg!(miri) {
        (80, 512, 2)
    } else {
        (1024, 2048, 2)
    };
    let w = randv(rows * cols, 11);
    let x = randv(n * cols, 12);
    let mut scratch = Scratch::new();
    let single = |f: &mut dyn FnMut()| {
        set_num_threads(1);
        f();
        set_num_threads(3);
    };
    set_num_threads(3);
    for ty in WEIGHT_TYPES {
        let bytes = quantize(ty, &w);
        let m = QMatrix::new(ty, rows, cols, &bytes).unwrap();
        let packed =
            PackedMatrix::supports(ty, rows, cols).then(|| PackedMatrix::pack(&m).unwrap());
        let mut y = vec![0f32; n * rows];
        m.matmul(&x, n, &mut y, &mut scratch).unwrap();
        let mut yp = vec![0f32; n * rows];
        if let Some(p) = &packed {
            p.matmul(&x, n, &mut yp, &mut scratch).unwrap();
        }
        for t in 0..n {
            let xt = &x[t * cols..(t + 1) * cols];
            let mut yt = vec![0f32; rows];
            single(&mut || m.matvec(xt, &mut yt, &mut scratch).unwrap());
            assert_eq!(&y[t * rows..(t + 1) * rows], &yt[..], "{ty} token {t}");
            if let Some(p) = &packed {
                single(&mut || p.matvec(xt, &mut yt, &mut scratch).unwrap());
                assert_eq!(
                    &yp[t * rows..(t + 1) * rows],
                    &yt[..],
                    "packed {ty} token {t}"
                );
            }
        }
    }
    set_num_threads(0);
}

#[test]
fn bad_arguments_are_errors() {
    let bytes = vec![0u8; 20 * 4];
    assert!(QMatrix::new(GgmlType::Q4_1, 2, 64, &bytes[..79]).is_err());
    assert!(QMatrix::new(GgmlType::Q4_1, 2, 48, &bytes).is_err());
    assert!(QMatrix::new(GgmlType::Q8K, 1, 256, &[0u8; 292]).is_err());
    let m = QMatrix::new(GgmlType::Q4_1, 2, 64, &bytes).unwrap();
    let mut s = Scratch::new();
    assert!(m.matvec(&[0.0; 63], &mut [0.0; 2], &mut s).is_err());
    assert!(m.matvec(&[0.0; 64], &mut [0.0; 3], &mut s).is_err());
    assert!(m.matmul(&[0.0; 128], 2, &mut [0.0; 3], &mut s).is_err());
    assert!(m.dequantize_row(2, &mut [0.0; 64]).is_err());
    assert!(m.dequantize_row(0, &mut [0.0; 65]).is_err());
    assert!(m.row_bytes(5).is_empty());
    assert_eq!(m.row_bytes(1).len(), 40);
}

#[test]
fn unaligned_weights_work() {
    let w = randv(2 * 64, 5);
    let bytes = quantize(GgmlType::Q4_1, &w);
    let mut shifted = vec![0u8; bytes.len() + 1];
    shifted[1..].copy_from_slice(&bytes);
    let a = QMatrix::new(GgmlType::Q4_1, 2, 64, &bytes).unwrap();
    let b = QMatrix::new(GgmlType::Q4_1, 2, 64, &shifted[1..]).unwrap();
    assert_eq!(a.dequantize(), b.dequantize());
    let x = randv(64, 6);
    let (mut ya, mut yb) = ([0f32; 2], [0f32; 2]);
    a.matvec(&x, &mut ya, &mut Scratch::new()).unwrap();
    b.matvec(&x, &mut yb, &mut Scratch::new()).unwrap();
    assert_eq!(ya, yb);
}

#[test]
fn kernel_path_is_available_and_scalar_forceable() {
    let p = kernel_path();
    assert!(available_kernel_paths().contains(&p));
    assert!(available_kernel_paths().contains(&KernelPath::Scalar));
    assert_eq!(KernelPath::from_name("AVX2"), Some(KernelPath::Avx2));
    assert_eq!(
        KernelPath::from_name("neon-dotprod"),
        Some(KernelPath::NeonDotprod)
    );
    assert_eq!(KernelPath::from_name("nope"), None);
    #[cfg(target_arch = "x86_64")]
    assert!(force_kernel_path(KernelPath::Neon).is_err());
    #[cfg(target_arch = "aarch64")]
    assert!(force_kernel_path(KernelPath::Avx2).is_err());
}

#[test]
fn int8_gallery() {
    use edgeai_core::quant::int8::*;
    let (rows, cols) = (50, 128);
    let data = randv(rows * cols, 21);
    let m = I8Matrix::from_f32(rows, cols, &data).unwrap();
    assert_eq!((m.rows(), m.cols()), (rows, cols));
    let q = randv(cols, 22);
    let mut scores = vec![0f32; rows];
    m.dot_all(&q, &mut scores).unwrap();
    for r in 0..rows {
        let exact: f32 = data[r * cols..(r + 1) * cols]
            .iter()
            .zip(&q)
            .map(|(a, b)| a * b)
            .sum();
        assert!(
            (scores[r] - exact).abs() < 0.15,
            "row {r}: {} vs {exact}",
            scores[r]
        );
    }
    let (row0, s0) = m.row(0);
    assert_eq!(row0.len(), cols);
    assert!(s0 > 0.0);
    assert!(row0.iter().any(|&v| v == 127 || v == -127));
    assert!((cosine_i8(row0, row0) - 1.0).abs() < 1e-6);
    assert_eq!(cosine_i8(row0, &vec![0i8; cols]), 0.0);
    assert_eq!(
        dot_i8(&[127, -128, 3], &[127, -128, -2]),
        127 * 127 + 128 * 128 - 6
    );
    let mut g = I8Matrix::new(cols);
    assert!(g.push_row(&q[..10]).is_err());
    g.push_row(&q).unwrap();
    assert_eq!(g.rows(), 1);
    assert!(m.dot_all(&q[..5], &mut scores).is_err());
    let mut z = [5i8; 4];
    assert_eq!(quantize_row(&[0.0; 4], &mut z), 0.0);
    assert_eq!(z, [0; 4]);
}
