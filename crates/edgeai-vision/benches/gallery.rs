//! Gallery search throughput without any model or backend: 1k to 1M identities of 128-d and
//! 512-d random unit vectors (the hard case for int8: the top-10 scores lie ~2e-3 apart), one
//! embedding per identity, top-10; `f32`, `int8` (scan + f32 re-score of k + 16),
//! `int8_rerank` (scan + f32 re-score of max(8k, 64)) and `int8_scan` (the bare scan), and
//! the same int8 precisions on a `RowStorage::Int8Only` index (`int8only_*`: the f32 rows
//! of the re-score fetched from an in-memory `RowSource`); 1 and 2 threads (at most; the kernels'
//! pool); one query per call (`single`) and 32 queries per `search_batch` call (`batch32`,
//! throughput counted per query). Before timing each gallery it prints recall@10 of `int8`
//! and `int8_rerank` against exact `f32` over the 64 bench queries, and the bytes one query's
//! scan reads (rows x dim for int8, 4x that for f32): queries/s times that is the scan's
//! effective bandwidth, to set next to `cargo bench -p edgeai-core --bench kernels -- bandwidth`.
//!
//! ```text
//! cargo bench -p edgeai-vision --bench gallery
//! EDGEAI_GALLERY_SIZES=100000 EDGEAI_GALLERY_DIMS=128 cargo bench -p edgeai-vision --bench gallery
//! ```
//!
//! `EDGEAI_GALLERY_SIZES` / `EDGEAI_GALLERY_DIMS` (comma-separated) pick the galleries
//! (default 1000,10000,100000,1000000 and 128,512). The root `benches/vision.rs` times the
//! model stages.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use edgeai_vision::{EmbeddingIndex, RowStorage, SearchPrecision};

/// xorshift* values in -1..1.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        let s = &mut self.0;
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        ((s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }

    fn vec(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.next()).collect()
    }
}

fn list(var: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(var) {
        Ok(v) => v
            .split(',')
            .map(|s| s.trim().parse().unwrap_or_else(|_| panic!("{var}: `{s}`")))
            .collect(),
        Err(_) => default.to_vec(),
    }
}

const PRECISIONS: [(&str, SearchPrecision); 4] = [
    ("f32", SearchPrecision::F32),
    ("int8", SearchPrecision::Int8),
    ("int8_rerank", SearchPrecision::Int8Rerank),
    ("int8_scan", SearchPrecision::Int8Scan),
];

/// The precisions timed on the `RowStorage::Int8Only` index (re-scores fetch the f32 rows
/// from an in-memory `RowSource`, the cost of the lookup without SQLite's).
const LEAN_PRECISIONS: [(&str, SearchPrecision); 3] = [
    ("int8only_int8", SearchPrecision::Int8),
    ("int8only_int8_rerank", SearchPrecision::Int8Rerank),
    ("int8only_int8_scan", SearchPrecision::Int8Scan),
];

fn gallery_search(c: &mut Criterion) {
    let sizes = list("EDGEAI_GALLERY_SIZES", &[1_000, 10_000, 100_000, 1_000_000]);
    let dims = list("EDGEAI_GALLERY_DIMS", &[128, 512]);
    let mut g = c.benchmark_group("gallery_search");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for &dim in &dims {
        let mut rng = Rng(42);
        let queries: Vec<Vec<f32>> = (0..64).map(|_| rng.vec(dim)).collect();
        let batches: Vec<&[Vec<f32>]> = queries.chunks(32).collect();
        for &n in &sizes {
            let mut idx = EmbeddingIndex::new(dim).expect("index");
            let mut lean = EmbeddingIndex::with_storage(dim, RowStorage::Int8Only).expect("index");
            idx.reserve(n, n);
            lean.reserve(n, n);
            // the f32 rows an Int8Only index fetches, by key (= row number here)
            let mut store: Vec<f32> = Vec::with_capacity(n * dim);
            let mut rng = Rng(n as u64 * 31 + dim as u64);
            for i in 0..n {
                let v = rng.vec(dim);
                let name = format!("id{i}");
                idx.add_keyed(&name, &[(i as u64, &v)]).expect("add");
                lean.add_keyed(&name, &[(i as u64, &v)]).expect("add");
                store.extend_from_slice(&idx.normalized(&v).expect("normalise"));
            }
            let source = |key: u64, out: &mut [f32]| -> edgeai_vision::Result<bool> {
                let r = key as usize;
                out.copy_from_slice(&store[r * dim..(r + 1) * dim]);
                Ok(true)
            };
            idx.set_threads(2).expect("threads");
            let exact = idx
                .search_batch(&queries, 10, SearchPrecision::F32)
                .expect("search");
            let recall = |p| {
                let got = idx.search_batch(&queries, 10, p).expect("search");
                let hits: usize = exact
                    .iter()
                    .zip(&got)
                    .map(|(e, g)| {
                        e.iter()
                            .filter(|m| g.iter().any(|a| a.name == m.name))
                            .count()
                    })
                    .sum();
                hits as f64 / (10 * queries.len()) as f64
            };
            eprintln!(
                "gallery {n} x {dim}: recall@10 vs f32 int8 {:.4} int8_rerank {:.4} int8_scan \
                 {:.4}; one query scans {} bytes (int8), {} bytes (f32); index heap {} bytes \
                 (F32AndInt8), {} bytes (Int8Only)",
                recall(SearchPrecision::Int8),
                recall(SearchPrecision::Int8Rerank),
                recall(SearchPrecision::Int8Scan),
                n * dim,
                n * dim * 4,
                idx.heap_bytes(),
                lean.heap_bytes()
            );
            for threads in [1usize, 2] {
                idx.set_threads(threads).expect("threads");
                lean.set_threads(threads).expect("threads");
                for (label, p) in LEAN_PRECISIONS {
                    g.throughput(Throughput::Elements(1));
                    let mut qi = 0;
                    let id = BenchmarkId::new(
                        format!("{label}_single_t{threads}"),
                        format!("{n}x{dim}"),
                    );
                    g.bench_function(id, |b| {
                        b.iter(|| {
                            qi = (qi + 1) % queries.len();
                            lean.search_with(black_box(&queries[qi]), 10, p, &source)
                                .expect("search")
                        })
                    });
                    g.throughput(Throughput::Elements(32));
                    let mut bi = 0;
                    let id = BenchmarkId::new(
                        format!("{label}_batch32_t{threads}"),
                        format!("{n}x{dim}"),
                    );
                    g.bench_function(id, |b| {
                        b.iter(|| {
                            bi = (bi + 1) % batches.len();
                            lean.search_batch_with(black_box(batches[bi]), 10, p, &source)
                                .expect("search_batch")
                        })
                    });
                }
                for (label, p) in PRECISIONS {
                    g.throughput(Throughput::Elements(1));
                    let mut qi = 0;
                    let id = BenchmarkId::new(
                        format!("{label}_single_t{threads}"),
                        format!("{n}x{dim}"),
                    );
                    g.bench_function(id, |b| {
                        b.iter(|| {
                            qi = (qi + 1) % queries.len();
                            idx.search(black_box(&queries[qi]), 10, p).expect("search")
                        })
                    });
                    g.throughput(Throughput::Elements(32));
                    let mut bi = 0;
                    let id = BenchmarkId::new(
                        format!("{label}_batch32_t{threads}"),
                        format!("{n}x{dim}"),
                    );
                    g.bench_function(id, |b| {
                        b.iter(|| {
                            bi = (bi + 1) % batches.len();
                            idx.search_batch(black_box(batches[bi]), 10, p)
                                .expect("search_batch")
                        })
                    });
                }
            }
        }
    }
    g.finish();
}

criterion_group!(benches, gallery_search);
criterion_main!(benches);
