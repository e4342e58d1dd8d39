//! Face-recognition benchmarks: per-stage latency (decode, detect, align, embed) and the whole
//! pipeline per photo (`vision_e2e`: a portrait and a 6-face group photo, from the JPEG bytes
//! and from decoded pixels) on every compiled-in backend, `EDGEAI_BENCH_THREADS` threads
//! (default 2). `scripts/bench-faces-opencv` runs OpenCV's own pipeline on the same models and
//! photos, the reference to run beside it. Gallery search throughput needs no model or backend and lives with
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

/// Detect, align and embed every face of a photo, as `FaceRecognizer::analyze` does for the
/// CLI's `face identify`; OpenCV's `FaceDetectorYN` + `FaceRecognizerSF` do the same work in
/// `scripts/bench-faces-opencv`.
fn end_to_end(c: &mut Criterion) {
    let (Some(det), Some(emb)) = (model_path("face/yunet.onnx"), model_path("face/sface.onnx"))
    else {
        eprintln!("skipping vision_e2e: face models not fetched (run scripts/fetch-models)");
        return;
    };
    let limits = ImageLimits::default();
    let photos: Vec<(&str, Vec<u8>)> = ["obama.jpg", "t1.jpg"]
        .into_iter()
        .filter_map(|p| {
            let path = model_path(format!("photos/{p}"))?;
            Some((p.trim_end_matches(".jpg"), std::fs::read(path).ok()?))
        })
        .collect();
    let threads = edgeai_testutil::bench_threads();
    let mut g = c.benchmark_group("vision_e2e");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for name in edgeai::available_backends() {
        let backend = edgeai::backend(name).expect("backend");
        let rec = match FaceRecognizer::from_backend(
            backend.as_ref(),
            det.clone(),
            emb.clone(),
            &LoadOptions::new().with_threads(threads),
            YuNetConfig::default(),
        ) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("skipping backend {name}: {e}");
                continue;
            }
        };
        for (photo, bytes) in &photos {
            let img = Image::decode(bytes, &limits).expect("decode");
            let faces = rec.analyze(&img).expect("analyze").len();
            eprintln!("vision_e2e {photo} on {name}: {faces} faces");
            g.bench_function(
                BenchmarkId::new(format!("{photo}/pixels"), format!("{name}/{threads}t")),
                |b| b.iter(|| rec.analyze(black_box(&img)).expect("analyze")),
            );
            g.bench_function(
                BenchmarkId::new(format!("{photo}/bytes"), format!("{name}/{threads}t")),
                |b| {
                    b.iter(|| {
                        let img = Image::decode(black_box(bytes), &limits).expect("decode");
                        rec.analyze(&img).expect("analyze")
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, stages, end_to_end);
criterion_main!(benches);
