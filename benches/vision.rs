//! Face-recognition benchmarks: per-stage latency (decode, detect, align, embed) on every
//! compiled-in backend. Gallery search throughput needs no model or backend and lives with
//! the gallery: `cargo bench -p edgeai-vision --bench gallery`.
//!
//! `cargo bench --bench vision` (add `--features ort` for ONNX Runtime). Model stages are
//! skipped when `scripts/fetch-models` has not been run.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use edgeai::core::LoadOptions;
use edgeai::vision::align::align_face;
use edgeai::vision::{FaceRecognizer, Image, ImageLimits, YuNetConfig};
use edgeai_testutil::model_path;

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

criterion_group!(benches, stages);
criterion_main!(benches);
