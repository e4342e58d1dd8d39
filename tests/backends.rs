//! The contract every compiled-in backend keeps: bad files are errors that say what is wrong,
//! wrong inputs are errors that name the input, symbolic batch dimensions work, and one model
//! serves many threads. Runs over `edgeai::available_backends()`, so a new backend joins by
//! being compiled in (`cargo test --features full`).

use std::sync::Arc;

use edgeai::core::{DType, Dim, Error, LoadOptions, Model, ModelSource, Tensor};

fn backends() -> Vec<Box<dyn edgeai::core::Backend>> {
    edgeai_testutil::backends(edgeai::available_backends(), edgeai::backend)
}

use edgeai_testutil::need;

#[test]
fn unknown_backend_is_a_clear_error() {
    let e = edgeai::backend("no-such").err().unwrap();
    assert!(e.to_string().contains("not compiled in"), "{e}");
}

#[test]
fn missing_file_names_the_path() {
    for b in backends() {
        let e = b
            .load("/nonexistent/model.onnx".into(), &LoadOptions::new())
            .err()
            .unwrap();
        assert!(
            matches!(e, Error::Io { .. } | Error::BackendUnavailable { .. }),
            "{}: {e}",
            b.name()
        );
        if let Error::Io { .. } = e {
            assert!(e.to_string().contains("/nonexistent/model.onnx"), "{e}");
        }
    }
}

#[test]
fn random_bytes_are_an_error_not_a_panic() {
    // A fixed LCG so the bytes are the same on every run.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for len in [0usize, 1, 7, 100, 4096] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 56) as u8
            })
            .collect();
        for b in backends() {
            let r = b.load(ModelSource::Bytes(bytes.clone()), &LoadOptions::new());
            let e = r
                .err()
                .unwrap_or_else(|| panic!("{}: {len} random bytes loaded as a model", b.name()));
            assert!(
                matches!(
                    e,
                    Error::InvalidModel { .. } | Error::BackendUnavailable { .. }
                ),
                "{}: {len} random bytes: unexpected error {e}",
                b.name()
            );
        }
    }
}

#[test]
fn truncated_model_is_an_error_not_a_panic() {
    let path = need!("face/yunet.onnx");
    let bytes = std::fs::read(path).unwrap();
    for b in backends() {
        for frac in [0.1, 0.5, 0.9, 0.999] {
            let cut = (bytes.len() as f64 * frac) as usize;
            let r = b.load(
                ModelSource::Bytes(bytes[..cut].to_vec()),
                &LoadOptions::new(),
            );
            let e = r
                .err()
                .unwrap_or_else(|| panic!("{}: model truncated at {cut} bytes loaded", b.name()));
            assert!(
                matches!(
                    e,
                    Error::InvalidModel { .. } | Error::BackendUnavailable { .. }
                ),
                "{}: truncated at {cut}: {e}",
                b.name()
            );
            eprintln!("{} truncated at {cut}/{}: {e}", b.name(), bytes.len());
        }
    }
}

#[test]
fn unknown_operator_is_named() {
    let path = need!("test/unknown_op.onnx");
    for b in backends() {
        match b.load(path.clone().into(), &LoadOptions::new()) {
            Err(Error::UnsupportedOperator { ops, backend, .. }) => {
                assert_eq!(ops, vec!["EdgeaiNoSuchOp".to_string()], "{backend}");
            }
            Err(e @ Error::BackendUnavailable { .. }) => panic!("{e}"),
            Err(e) => panic!("{}: expected UnsupportedOperator, got {e}", b.name()),
            Ok(_) => panic!("{}: a model with an unknown op loaded", b.name()),
        }
    }
}

#[test]
fn symbolic_batch_runs_at_several_sizes() {
    let path = need!("test/add_batch.onnx");
    for b in backends() {
        let m = b.load(path.clone().into(), &LoadOptions::new()).unwrap();
        let spec = &m.inputs()[0];
        assert_eq!(spec.dtype, DType::F32);
        let shape = spec.shape.as_ref().unwrap();
        assert!(
            matches!(shape[0], Dim::Symbolic(_)),
            "{}: batch dim is {:?}",
            b.name(),
            shape[0]
        );
        assert_eq!(shape[1], Dim::Fixed(3));
        for n in [1usize, 2, 5] {
            let x: Vec<f32> = (0..n * 3).map(|i| i as f32).collect();
            let out = m
                .run(vec![Tensor::from_vec(vec![n, 3], x.clone()).unwrap()])
                .unwrap();
            assert_eq!(out[0].shape(), &[n, 3], "{}", b.name());
            let y = out[0].as_slice::<f32>().unwrap();
            assert!(
                y.iter().zip(&x).all(|(y, x)| *y == x + 1.0),
                "{}: {y:?}",
                b.name()
            );
        }
        // Named inputs, and wrong ones.
        let out = m
            .run_named(vec![(
                "X".into(),
                Tensor::from_vec(vec![1, 3], vec![0f32; 3]).unwrap(),
            )])
            .unwrap();
        assert_eq!(out[0].0, "Y");
        let e = m
            .run(vec![Tensor::from_vec(vec![2, 4], vec![0f32; 8]).unwrap()])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "input `X`: expected shape {}, got [2, 4]",
                spec.shape_string()
            )
        );
        let e = m
            .run(vec![Tensor::from_vec(vec![1, 3], vec![0i64; 3]).unwrap()])
            .unwrap_err();
        assert_eq!(e.to_string(), "input `X`: expected dtype f32, got i64");
        let e = m.run(vec![]).unwrap_err();
        assert_eq!(e.to_string(), "model expects 1 input(s) (X), got 0");
    }
}

#[test]
fn one_model_serves_eight_threads() {
    let path = need!("face/sface.onnx");
    for b in backends() {
        let m: Arc<dyn Model> =
            Arc::from(b.load(path.clone().into(), &LoadOptions::new()).unwrap());
        let input = |seed: usize| {
            let v: Vec<f32> = (0..3 * 112 * 112)
                .map(|i| ((i * 31 + seed * 17) % 255) as f32)
                .collect();
            Tensor::from_vec(vec![1, 3, 112, 112], v).unwrap()
        };
        let expected: Vec<Tensor> = (0..8)
            .map(|s| m.run(vec![input(s)]).unwrap().remove(0))
            .collect();
        let handles: Vec<_> = (0..8)
            .map(|s| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || m.run(vec![input(s)]).unwrap().remove(0))
            })
            .collect();
        for (s, h) in handles.into_iter().enumerate() {
            assert_eq!(
                h.join().unwrap(),
                expected[s],
                "{}: thread {s} differs from the sequential run",
                b.name()
            );
        }
    }
}
