//! The graph backends side by side: one criterion group per model (YuNet 640x640, SFace
//! 112x112, PP-OCR direction classifier 48x192), one entry per backend compiled in.
//!
//! `cargo bench --features full --bench backends` (or `--features tract,ort,candle`).
//! Threads per backend: `EDGEAI_BENCH_THREADS` (default 2). A model that is not fetched, or
//! that a backend cannot load or run, is skipped with the reason printed.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use edgeai::core::{DType, Dim, LoadOptions, TensorSpec};
use edgeai_testutil::model_path;

/// (group, model file, input shape)
const MODELS: &[(&str, &str, &[usize])] = &[
    ("yunet_640", "face/yunet.onnx", &[1, 3, 640, 640]),
    ("sface_112", "face/sface.onnx", &[1, 3, 112, 112]),
    (
        "ppocr_cls_48x192",
        "cls/ppocr_mobilenetv3_cls.onnx",
        &[1, 3, 48, 192],
    ),
];

fn backends(c: &mut Criterion) {
    let threads = edgeai_testutil::bench_threads();
    for &(group, file, shape) in MODELS {
        let Some(path) = model_path(file) else {
            eprintln!("skipping {group}: {file} not fetched (run scripts/fetch-models)");
            continue;
        };
        let spec = TensorSpec {
            name: "input".into(),
            dtype: DType::F32,
            shape: Some(shape.iter().map(|&d| Dim::Fixed(d)).collect()),
        };
        let inputs = edgeai::bench::random_inputs(&[spec], 42, 1).expect("inputs");
        let mut g = c.benchmark_group(group);
        g.sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5));
        for name in edgeai::available_backends() {
            let backend = edgeai::backend(name).expect("compiled-in backend");
            let options = LoadOptions::new().with_threads(threads);
            let model = match backend.load(path.clone().into(), &options) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("skipping {group} on {name}: cannot load: {e}");
                    continue;
                }
            };
            if let Err(e) = model.run(inputs.clone()) {
                eprintln!("skipping {group} on {name}: cannot run: {e}");
                continue;
            }
            g.bench_function(BenchmarkId::new(name, format!("{threads}t")), |b| {
                b.iter(|| model.run(black_box(inputs.clone())).expect("run"))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, backends);
criterion_main!(benches);
