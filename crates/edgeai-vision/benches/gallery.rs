//! Gallery search throughput without any model or backend: 10k/100k identities of 128-d
//! embeddings, f32 vs int8 (+ f32 re-score of k + 16) vs int8 + f32 re-ranking (of 8k), 1 and
//! 2 threads (at most; the kernels' pool), top-10; one query per call (`single`) and batches
//! of 32 queries per `search_batch` call (`batch32`, throughput counted per query).
//!
//! `cargo bench -p edgeai-vision --bench gallery`. The root `benches/vision.rs` runs the same
//! search benchmark next to the model stages.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use edgeai_vision::{EmbeddingIndex, SearchPrecision};

fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        ((s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    };
    (0..n).map(|_| (0..dim).map(|_| next()).collect()).collect()
}

fn gallery_search(c: &mut Criterion) {
    let dim = 128;
    let mut g = c.benchmark_group("gallery_search");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let queries = random_vectors(64, dim, 42);
    let batches: Vec<&[Vec<f32>]> = queries.chunks(32).collect();
    for n in [10_000usize, 100_000] {
        let mut idx = EmbeddingIndex::new(dim).expect("index");
        for (i, v) in random_vectors(n, dim, n as u64).iter().enumerate() {
            idx.add(&format!("id{i}"), std::slice::from_ref(v))
                .expect("add");
        }
        for threads in [1usize, 2] {
            idx.set_threads(threads).expect("threads");
            for (label, p) in [
                ("f32", SearchPrecision::F32),
                ("int8", SearchPrecision::Int8),
                ("int8_rerank", SearchPrecision::Int8Rerank),
            ] {
                g.throughput(Throughput::Elements(1));
                let mut qi = 0;
                let id = BenchmarkId::new(format!("{label}_single_t{threads}"), n);
                g.bench_function(id, |b| {
                    b.iter(|| {
                        qi = (qi + 1) % queries.len();
                        idx.search(black_box(&queries[qi]), 10, p).expect("search")
                    })
                });
                g.throughput(Throughput::Elements(32));
                let mut bi = 0;
                let id = BenchmarkId::new(format!("{label}_batch32_t{threads}"), n);
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
    g.finish();
}

criterion_group!(benches, gallery_search);
criterion_main!(benches);
