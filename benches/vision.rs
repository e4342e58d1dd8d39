//! Face-recognition benchmarks: per-stage latency (decode, detect, align, embed) on every
//! compiled-in backend, and gallery search throughput (1k/10k/100k identities, f32 vs int8,
//! 1 and 2 threads).
//!
//! `cargo bench --bench vision` (add `--features ort` for ONNX Runtime). Model stages are
//! skipped when `scripts/fetch-models` has not been run.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use edgeai::core::{paths::model_path, LoadOptions};
use edgeai::vision::align::align_face;
use edgeai::vision::{
    EmbeddingIndex, FaceRecognizer, Image, ImageLimits, SearchPrecision, YuNetConfig,
};

fn stages(c: &mut Criterion) {
    let Some(photo) = model_path("photos/obama.jpg") else {
        eprintln!("skipping: photos/obama.jpg not fetched (run scripts/fetch-models)");
        return;
    };
    let bytes = std::fs::read(&photo).expect("read photo");
    let limits = ImageLimits::default();
    let img = Image::decode(&bytes, &limits).expect("decode");
    let mut g = c.benchmark_group("vision_stage");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    g.bench_function(
        BenchmarkId::new("decode_jpeg", format!("{}x{}", img.width(), img.height())),
        |b| b.iter(|| Image::decode(black_box(&bytes), &limits).expect("decode")),
    );
    let (Some(det), Some(emb)) = (model_path("face/yunet.onnx"), model_path("face/sface.onnx"))
    else {
        eprintln!("skipping model stages: face models not fetched (run scripts/fetch-models)");
        return;
    };
    let mut aligned_once = false;
    for name in edgeai::available_backends() {
        let backend = edgeai::backend(name).expect("backend");
        let rec = match FaceRecognizer::from_backend(
            backend.as_ref(),
            det.clone(),
            emb.clone(),
            &LoadOptions::new(),
            YuNetConfig::default(),
        ) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("skipping backend {name}: {e}");
                continue;
            }
        };
        let faces = rec.detect(&img).expect("detect");
        let face = *faces.first().expect("a face in obama.jpg");
        g.bench_function(BenchmarkId::new("detect_yunet_640", name), |b| {
            b.iter(|| rec.detect(black_box(&img)).expect("detect"))
        });
        if !aligned_once {
            g.bench_function("align_112", |b| {
                b.iter(|| align_face(black_box(&img), &face.landmarks).expect("align"))
            });
            aligned_once = true;
        }
        let crop = align_face(&img, &face.landmarks).expect("align");
        g.bench_function(BenchmarkId::new("embed_sface", name), |b| {
            b.iter(|| {
                rec.embedder()
                    .embed(std::slice::from_ref(black_box(&crop)))
                    .expect("embed")
            })
        });
    }
    g.finish();
}

/// Deterministic pseudo-random unit-ish vectors (xorshift*).
fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed;
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
    let mut g = c.benchmark_group("vision_gallery_search");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    let queries = random_vectors(64, dim, 42);
    for n in [1_000usize, 10_000, 100_000] {
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
                let id = BenchmarkId::new(format!("{label}_t{threads}"), n);
                let mut qi = 0;
                g.bench_function(id, |b| {
                    b.iter(|| {
                        qi = (qi + 1) % queries.len();
                        idx.search(black_box(&queries[qi]), 10, p).expect("search")
                    })
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, stages, gallery_search);
criterion_main!(benches);
