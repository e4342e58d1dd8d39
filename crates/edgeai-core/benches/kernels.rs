//! Quantized GEMV/GEMM kernels: edgeai (best path and scalar) vs candle-core on the same
//! weights and thread count, plus copy/triad/read memory-bandwidth references (`-- bandwidth`).
//!
//! Run: `cargo bench -p edgeai-core --bench kernels` (filter e.g. `-- gemv/Q4_1`). Throughput is reported as
//! weight bytes per second for the matrix kernels and bytes moved for copy/triad/read.

use std::hint::black_box;
use std::time::Duration;

use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType, QMatMul};
use candle_core::{Device, Module, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use edgeai_core::quant::*;
use rayon::prelude::*;

fn randv(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn quantize(ty: GgmlType, w: &[f32]) -> Vec<u8> {
    match ty {
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
        _ => unreachable!(),
    }
}

fn candle_type(ty: GgmlType) -> GgmlDType {
    match ty {
        GgmlType::Q4_1 => GgmlDType::Q4_1,
        GgmlType::Q8_0 => GgmlDType::Q8_0,
        GgmlType::Q6K => GgmlDType::Q6K,
        _ => GgmlDType::Q4K,
    }
}

/// (rows, cols): the SmolLM2-135M projection shapes. Q4_K and Q6_K need cols % 256 == 0,
/// so their 576-wide shapes use 512 columns instead; Q6_K adds Gemma 3 270M's `ffn_down`
/// (640 x 2048, the shape its Q6_K matrices have).
fn shapes(ty: GgmlType) -> Vec<(usize, usize)> {
    let k_quant = matches!(ty, GgmlType::Q4K | GgmlType::Q6K);
    let c = if k_quant { 512 } else { 576 };
    let mut v = vec![(576, c), (1536, c), (576, 1536), (49152, c)];
    if ty == GgmlType::Q6K {
        v.push((640, 2048));
    }
    v
}

/// `EDGEAI_KERNEL=avx2|...` forces a path (e.g. the AVX2 kernels on an AVX-512 host).
fn kernel_from_env() {
    if let Ok(v) = std::env::var("EDGEAI_KERNEL") {
        force_kernel_path_by_name(&v).expect("EDGEAI_KERNEL");
    }
}

fn bench_matrix(c: &mut Criterion) {
    kernel_from_env();
    let threads = candle_core::utils::get_num_threads();
    set_num_threads(threads);
    eprintln!(
        "kernel path {:?}, {threads} threads (edgeai and candle)",
        kernel_path()
    );
    for ty in [GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4K, GgmlType::Q6K] {
        for (rows, cols) in shapes(ty) {
            let w = randv(rows * cols, 1);
            let raw = quantize(ty, &w);
            drop(w);
            let m = QMatrix::new(ty, rows, cols, &raw).unwrap();
            let qt =
                qtensor_from_ggml(candle_type(ty), &raw, vec![rows, cols], &Device::Cpu).unwrap();
            let cm = QMatMul::from_qtensor(qt).unwrap();
            let shape = format!("{rows}x{cols}");

            // GEMV (one token).
            let x = randv(cols, 2);
            let xt = Tensor::from_vec(x.clone(), (1, cols), &Device::Cpu).unwrap();
            let mut y = vec![0f32; rows];
            let mut s = Scratch::new();
            let mut g = c.benchmark_group(format!("gemv/{}", ty.name()));
            g.throughput(Throughput::Bytes(raw.len() as u64));
            g.bench_function(BenchmarkId::new("edgeai", &shape), |b| {
                b.iter(|| m.matvec(black_box(&x), &mut y, &mut s).unwrap())
            });
            // The row-interleaved form, where the current path has packed kernels.
            if packed_kernels_available() && PackedMatrix::supports(ty, rows, cols) {
                let p = PackedMatrix::pack(&m).unwrap();
                g.bench_function(BenchmarkId::new("edgeai-packed", &shape), |b| {
                    b.iter(|| p.matvec(black_box(&x), &mut y, &mut s).unwrap())
                });
            }
            g.bench_function(BenchmarkId::new("edgeai-scalar", &shape), |b| {
                b.iter(|| {
                    m.matvec_with(KernelPath::Scalar, black_box(&x), &mut y, &mut s)
                        .unwrap()
                })
            });
            g.bench_function(BenchmarkId::new("candle", &shape), |b| {
                b.iter(|| cm.forward(black_box(&xt)).unwrap())
            });
            g.finish();

            // GEMM, 64 tokens (prompt processing), on the smaller shapes.
            if rows * cols <= 1536 * 576 {
                let n = 64;
                let x = randv(n * cols, 3);
                let xt = Tensor::from_vec(x.clone(), (n, cols), &Device::Cpu).unwrap();
                let mut y = vec![0f32; n * rows];
                let mut g = c.benchmark_group(format!("gemm64/{}", ty.name()));
                g.throughput(Throughput::Bytes(raw.len() as u64));
                g.bench_function(BenchmarkId::new("edgeai", &shape), |b| {
                    b.iter(|| m.matmul(black_box(&x), n, &mut y, &mut s).unwrap())
                });
                if packed_kernels_available() && PackedMatrix::supports(ty, rows, cols) {
                    let p = PackedMatrix::pack(&m).unwrap();
                    g.bench_function(BenchmarkId::new("edgeai-packed", &shape), |b| {
                        b.iter(|| p.matmul(black_box(&x), n, &mut y, &mut s).unwrap())
                    });
                }
                g.bench_function(BenchmarkId::new("candle", &shape), |b| {
                    b.iter(|| cm.forward(black_box(&xt)).unwrap())
                });
                g.finish();
            }
        }
    }
}

/// Copy and triad over 64 MiB arrays (far beyond the caches): single-threaded and on all
/// threads. Throughput counts bytes read + written (no write-allocate traffic).
fn bench_bandwidth(c: &mut Criterion) {
    let n = 16 << 20; // f32 elements: 64 MiB per array
    let a = vec![1.0f32; n];
    let b = vec![2.0f32; n];
    let mut d = vec![0.0f32; n];
    let threads = candle_core::utils::get_num_threads();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let chunk = n / threads;
    let mut g = c.benchmark_group("bandwidth");
    g.throughput(Throughput::Bytes((n * 4 * 2) as u64));
    g.bench_function("copy/1-thread", |bch| {
        bch.iter(|| d.copy_from_slice(black_box(&a)))
    });
    g.bench_function(format!("copy/{threads}-threads"), |bch| {
        bch.iter(|| {
            pool.install(|| {
                d.par_chunks_mut(chunk)
                    .zip(a.par_chunks(chunk))
                    .for_each(|(o, i)| o.copy_from_slice(i))
            })
        })
    });
    g.throughput(Throughput::Bytes((n * 4 * 3) as u64));
    g.bench_function("triad/1-thread", |bch| {
        bch.iter(|| {
            for ((o, x), y) in d.iter_mut().zip(&a).zip(&b) {
                *o = x + 3.0 * y;
            }
        })
    });
    g.bench_function(format!("triad/{threads}-threads"), |bch| {
        bch.iter(|| {
            pool.install(|| {
                d.par_chunks_mut(chunk)
                    .zip(a.par_chunks(chunk))
                    .zip(b.par_chunks(chunk))
                    .for_each(|((o, x), y)| {
                        for ((o, x), y) in o.iter_mut().zip(x).zip(y) {
                            *o = x + 3.0 * y;
                        }
                    })
            })
        })
    });
    // Read-only streaming, what a decode step does with the weights: a wrapping u64 sum
    // (vectorises without fast-math) over 256 MiB, well past any L3 here.
    let words = 32 << 20;
    let r = vec![1u64; words];
    let rchunk = words / threads;
    g.throughput(Throughput::Bytes((words * 8) as u64));
    g.bench_function("read/1-thread", |bch| bch.iter(|| sum_words(black_box(&r))));
    g.bench_function(format!("read/{threads}-threads"), |bch| {
        bch.iter(|| {
            pool.install(|| {
                black_box(&r)
                    .par_chunks(rchunk)
                    .map(sum_words)
                    .reduce(|| 0, u64::wrapping_add)
            })
        })
    });
    g.finish();
    black_box(&d);
}

/// Wrapping sum of `w`: the read-bandwidth probe. Compiled for AVX2 where the CPU has it, so
/// the loads are as wide as the AVX2 kernels' (the default x86-64 target only has SSE2).
fn sum_words(w: &[u64]) -> u64 {
    fn sum(w: &[u64]) -> u64 {
        w.iter().fold(0u64, |s, &v| s.wrapping_add(v))
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        unsafe fn sum_avx2(w: &[u64]) -> u64 {
            w.iter().fold(0u64, |s, &v| s.wrapping_add(v))
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked on the line above).
            return unsafe { sum_avx2(w) };
        }
    }
    sum(w)
}

/// Activation quantization (part of every GEMV): the scalar reference vs the current path's
/// SIMD quantizer (same bytes), at the SmolLM2 widths.
fn bench_quantize(c: &mut Criterion) {
    kernel_from_env();
    let best = kernel_path();
    for (name, len) in [("576", 576usize), ("1536", 1536)] {
        let x = randv(len, 5);
        let mut g = c.benchmark_group(format!("quantize/{name}"));
        for path in [KernelPath::Scalar, best] {
            let mut q8 = vec![BlockQ8_0::default(); len / 32];
            g.bench_function(BenchmarkId::new("Q8_0", path.name()), |b| {
                b.iter(|| quantize_activations_q8_0(path, black_box(&x), &mut q8).unwrap())
            });
            let k = len / 256 * 256;
            let mut q8k = vec![BlockQ8K::default(); k / 256];
            g.bench_function(BenchmarkId::new("Q8_K", path.name()), |b| {
                b.iter(|| quantize_activations_q8k(path, black_box(&x[..k]), &mut q8k).unwrap())
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    // The build machine is shared with other builders: short, small samples.
    config = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(10);
    targets = bench_bandwidth, bench_quantize, bench_matrix
}
criterion_main!(benches);
