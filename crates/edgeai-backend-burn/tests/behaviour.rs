//! The burn backend on its own: batching, threads, and the error paths (unknown operators,
//! truncated and garbage files, wrong inputs). Its agreement with tract on real models lives
//! in the workspace's `tests/conformance.rs`, beside every other backend's, so this crate
//! depends on no other backend.

use edgeai_backend_burn::{BurnBackend, Engine};
use edgeai_core::{Backend, DType, Error, LoadOptions, Tensor};
use edgeai_testutil::{max_abs_diff, model_or_skip as path_or_skip, Rng};

#[test]
fn ppocr_classifier_runs_with_a_dynamic_batch() {
    // Shape -> Cast -> Slice -> Concat -> Reshape on a run-time batch size. tract cannot type
    // this model as shipped (input [-1, 3, ?, ?]), so the reference is burn itself at batch 1:
    // every row of a batch-3 run must equal the batch-1 run of that image. (Against ONNX
    // Runtime the outputs agree to 8.6e-7; see the README's conformance section.)
    let Some(p) = path_or_skip("cls/ppocr_mobilenetv3_cls.onnx") else {
        return;
    };
    let burn = BurnBackend::new()
        .load(p.into(), &LoadOptions::new())
        .unwrap_or_else(|e| panic!("burn cannot load the classifier: {e}"));
    let mut rng = Rng(0x5eed_0003);
    let images: Vec<Tensor> = (0..3)
        .map(|_| rng.tensor(&[1, 3, 48, 192], -1.0, 1.0))
        .collect();
    let singles: Vec<Vec<f32>> = images
        .iter()
        .map(|x| {
            let out = burn.run(vec![x.clone()]).unwrap();
            assert_eq!(out[0].shape(), &[1, 2]);
            out[0].as_slice::<f32>().unwrap().to_vec()
        })
        .collect();
    let mut batch = Vec::new();
    for x in &images {
        batch.extend_from_slice(x.as_slice::<f32>().unwrap());
    }
    let out = burn
        .run(vec![Tensor::from_vec(vec![3, 3, 48, 192], batch).unwrap()])
        .unwrap();
    assert_eq!(out[0].shape(), &[3, 2]);
    let rows = out[0].as_slice::<f32>().unwrap();
    for (i, (row, single)) in rows.chunks(2).zip(&singles).enumerate() {
        // Softmax rows sum to one, and batching changes nothing beyond rounding.
        assert!((row[0] + row[1] - 1.0).abs() < 1e-5, "{row:?}");
        for (a, b) in row.iter().zip(single) {
            assert!((a - b).abs() < 1e-5, "image {i}: batched {a} vs alone {b}");
        }
    }
}

#[test]
fn engine_without_its_feature_is_unavailable() {
    for e in [Engine::Flex, Engine::NdArray] {
        if e.is_compiled() {
            continue;
        }
        let err = BurnBackend::with_engine(e)
            .load(vec![0u8; 4].into(), &LoadOptions::new())
            .err()
            .unwrap_or_else(|| panic!("the model loaded"));
        assert!(matches!(err, Error::BackendUnavailable { .. }), "{err}");
    }
    assert!(BurnBackend::new().engine().is_compiled());
}

#[test]
fn unknown_operator_is_named() {
    let Some(p) = path_or_skip("test/unknown_op.onnx") else {
        return;
    };
    let err = BurnBackend::new()
        .load(p.into(), &LoadOptions::new())
        .err()
        .unwrap_or_else(|| panic!("the model loaded"));
    match &err {
        Error::UnsupportedOperator { backend, ops, .. } => {
            assert_eq!(backend, "burn");
            assert_eq!(ops.as_slice(), ["EdgeaiNoSuchOp"]);
        }
        other => panic!("expected UnsupportedOperator, got {other}"),
    }
    assert!(err.to_string().contains("EdgeaiNoSuchOp"));
}

#[test]
fn truncated_and_garbage_files_are_errors() {
    let Some(p) = path_or_skip("face/yunet.onnx") else {
        return;
    };
    let bytes = std::fs::read(p).unwrap();
    for cut in [1, 7, 100, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
        let r = BurnBackend::new().load(bytes[..cut].to_vec().into(), &LoadOptions::new());
        assert!(r.is_err(), "yunet cut at {cut} bytes loaded");
    }
    for junk in [vec![], vec![0xff; 64], b"not an onnx file at all".to_vec()] {
        let err = BurnBackend::new()
            .load(junk.clone().into(), &LoadOptions::new())
            .err()
            .unwrap_or_else(|| panic!("the model loaded"));
        assert!(
            matches!(err, Error::InvalidModel { .. }),
            "{} junk bytes: {err}",
            junk.len()
        );
    }
}

#[test]
fn wrong_inputs_are_errors_naming_the_input() {
    let Some(p) = path_or_skip("test/add_batch.onnx") else {
        return;
    };
    let m = BurnBackend::new()
        .load(p.into(), &LoadOptions::new())
        .unwrap();
    let spec = m.inputs()[0].clone();
    let bad = Tensor::zeros(DType::I64, vec![1, 1]).unwrap();
    let err = m.run(vec![bad]).unwrap_err();
    assert!(err.to_string().contains(&spec.name), "{err}");
    assert!(m.run(vec![]).is_err());
}

#[test]
fn one_model_serves_many_threads() {
    let Some(p) = path_or_skip("face/sface.onnx") else {
        return;
    };
    let burn = BurnBackend::new()
        .load(p.into(), &LoadOptions::new())
        .unwrap();
    let x = Rng(11).tensor(&[1, 3, 112, 112], 0.0, 255.0);
    let want = burn.run(vec![x.clone()]).unwrap();
    let burn = std::sync::Arc::new(burn);
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (m, x) = (burn.clone(), x.clone());
            std::thread::spawn(move || m.run(vec![x]).unwrap())
        })
        .collect();
    for h in handles {
        let got = h.join().unwrap();
        assert!(max_abs_diff(&got[0], &want[0]) <= 1e-5);
    }
}

#[test]
fn threads_option_gives_the_same_result() {
    let Some(p) = path_or_skip("face/sface.onnx") else {
        return;
    };
    let x = Rng(13).tensor(&[1, 3, 112, 112], 0.0, 255.0);
    let one = BurnBackend::new()
        .load(p.clone().into(), &LoadOptions::new().with_threads(1))
        .unwrap()
        .run(vec![x.clone()])
        .unwrap();
    let two = BurnBackend::new()
        .load(p.into(), &LoadOptions::new().with_threads(2))
        .unwrap()
        .run(vec![x])
        .unwrap();
    assert!(max_abs_diff(&one[0], &two[0]) <= 1e-4);
}

#[test]
fn symbolic_batch_runs_at_any_size() {
    let Some(p) = path_or_skip("test/add_batch.onnx") else {
        return;
    };
    let m = BurnBackend::new()
        .load(p.into(), &LoadOptions::new())
        .unwrap();
    assert_eq!(m.inputs()[0].shape_string(), "[batch, 3]");
    for batch in [1usize, 4] {
        let x =
            Tensor::from_vec(vec![batch, 3], (0..batch * 3).map(|i| i as f32).collect()).unwrap();
        let y = m.run(vec![x]).unwrap();
        assert_eq!(y[0].shape(), &[batch, 3]);
        let want: Vec<f32> = (0..batch * 3).map(|i| i as f32 + 1.0).collect();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &want[..]);
    }
}
