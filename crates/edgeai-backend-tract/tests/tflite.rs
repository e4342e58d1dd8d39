//! TensorFlow Lite loading through tract-tflite, on MediaPipe's BlazeFace files.

use edgeai_backend_tract::TractBackend;
use edgeai_core::{paths, Backend, Error, LoadOptions, ModelSource};

fn fetched(rel: &str) -> Option<std::path::PathBuf> {
    let p = paths::model_path(std::env::var_os(paths::MODELS_ENV), rel);
    if p.is_none() {
        println!("skipping: {rel} not fetched (run scripts/fetch-models)");
    }
    p
}

/// MediaPipe ships BlazeFace with float16 weights behind `DEQUANTIZE` operators, which
/// tract-tflite 0.23 lacks: loading must say exactly that (scripts/fetch-models converts the
/// files to ONNX, which every backend runs; see tests/vision_faces.rs).
#[test]
fn blazeface_tflite_names_the_missing_dequantize_operator() {
    for rel in [
        "face/blazeface_short_range.tflite",
        "face/blazeface_full_range.tflite",
    ] {
        let Some(path) = fetched(rel) else { return };
        let err = TractBackend::new()
            .load(path.as_path().into(), &LoadOptions::new())
            .err()
            .unwrap_or_else(|| {
                panic!("{rel} loaded: update this test, tract-tflite grew DEQUANTIZE")
            });
        match &err {
            Error::UnsupportedOperator { backend, ops, .. } => {
                assert_eq!(backend, "tract");
                assert_eq!(ops, &["DEQUANTIZE".to_string()], "{err}");
            }
            other => panic!("{rel}: {other}"),
        }
    }
}

#[test]
fn bytes_that_claim_tflite_but_are_garbage_give_an_error() {
    let mut bytes = vec![0u8; 64];
    bytes[4..8].copy_from_slice(b"TFL3");
    bytes[0] = 0xff;
    let err = TractBackend::new()
        .load(ModelSource::Bytes(bytes), &LoadOptions::new())
        .err()
        .expect("garbage must not load");
    assert!(matches!(err, Error::InvalidModel { .. }), "{err}");
}

#[test]
fn truncated_blazeface_gives_an_error_not_a_panic() {
    let Some(path) = fetched("face/blazeface_short_range.tflite") else {
        return;
    };
    let bytes = std::fs::read(path).unwrap();
    for cut in [8usize, 100, bytes.len() / 3, bytes.len() - 10] {
        let r = TractBackend::new().load(
            ModelSource::Bytes(bytes[..cut].to_vec()),
            &LoadOptions::new(),
        );
        assert!(r.is_err(), "cut at {cut} loaded");
    }
}
