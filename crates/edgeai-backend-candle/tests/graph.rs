//! The candle graph backend on its own: specs, the load-time operator checks, malformed
//! files, wrong inputs, threads. Its agreement with tract (real models, and the graphs its
//! load-time rewrites change) lives in the workspace's `tests/conformance.rs`, beside every
//! other backend's, so this crate depends on no other backend.

use std::sync::Arc;

use edgeai_backend_candle::{CandleBackend, SUPPORTED_OPS};
use edgeai_core::{Backend, DType, Error, LoadOptions, Model, ModelSource, Tensor};
use edgeai_onnx::build::{self, fixed};
use edgeai_onnx::proto::{dt, AttributeProto, NodeProto, TensorProto, ValueInfoProto};
use edgeai_testutil::{need, Rng};

fn random(n: usize, seed: u64) -> Vec<f32> {
    Rng(seed | 1).vec(n, -1.0, 1.0)
}

#[test]
fn yunet_specs() {
    let path = need!("face/yunet.onnx");
    let m = CandleBackend::new()
        .load(path.into(), &LoadOptions::new())
        .unwrap();
    assert_eq!(m.backend(), "candle");
    assert_eq!(m.inputs()[0].name, "input");
    assert_eq!(m.inputs()[0].fixed_shape(), Some(vec![1, 3, 640, 640]));
    let names: Vec<&str> = m.outputs().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 12);
    assert_eq!(names[0], "cls_8");
    assert_eq!(names[11], "kps_32");
}

#[test]
fn ppocr_keeps_its_symbolic_input() {
    let path = need!("cls/ppocr_mobilenetv3_cls.onnx");
    let m = CandleBackend::new()
        .load(path.into(), &LoadOptions::new())
        .unwrap();
    let shape = m.inputs()[0].shape.clone().unwrap();
    assert!(
        matches!(shape[0], edgeai_core::Dim::Symbolic(_)),
        "{shape:?}"
    );
    assert_eq!(shape[1], edgeai_core::Dim::Fixed(3));
    assert_ne!(shape[2], shape[3], "H and W must be independent dims");
}

#[test]
fn unknown_operators_are_all_named_at_load() {
    let path = need!("test/unknown_op.onnx");
    match CandleBackend::new().load(path.into(), &LoadOptions::new()) {
        Err(Error::UnsupportedOperator { backend, ops, .. }) => {
            assert_eq!(backend, "candle");
            assert_eq!(ops, vec!["EdgeaiNoSuchOp".to_string()]);
        }
        Err(e) => panic!("expected UnsupportedOperator, got {e}"),
        Ok(_) => panic!("a model with an unknown op loaded"),
    }
}

// --- Small synthetic graphs, built with edgeai-onnx. -------------------------------------

fn value(name: &str, elem: i32, dims: &[Option<i64>]) -> ValueInfoProto {
    let dims: Vec<_> = dims
        .iter()
        .map(|d| d.map_or_else(|| build::sym("n"), fixed))
        .collect();
    build::value(name, elem, &dims)
}

fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    attribute
        .into_iter()
        .fold(build::node(op, inputs, &[output]), NodeProto::with)
}

fn model(
    nodes: Vec<NodeProto>,
    init: Vec<TensorProto>,
    input: ValueInfoProto,
    output: ValueInfoProto,
) -> Vec<u8> {
    build::model(
        build::graph("g", nodes, init, vec![input], vec![output]),
        13,
    )
    .to_bytes()
}

#[test]
fn every_unsupported_operator_is_listed_once() {
    let bytes = model(
        vec![
            node("Einsum", &["x"], "a", vec![]),
            node("Relu", &["a"], "b", vec![]),
            node("GridSample", &["b"], "c", vec![]),
            node("Einsum", &["c"], "d", vec![]),
        ],
        vec![],
        value("x", dt::FLOAT, &[Some(4)]),
        value("d", dt::FLOAT, &[Some(4)]),
    );
    let e = CandleBackend::new()
        .load(ModelSource::Bytes(bytes), &LoadOptions::new())
        .err()
        .unwrap();
    match &e {
        Error::UnsupportedOperator { ops, .. } => {
            assert_eq!(ops, &["Einsum".to_string(), "GridSample".to_string()])
        }
        other => panic!("expected UnsupportedOperator, got {other}"),
    }
    assert!(e.to_string().contains("Einsum, GridSample"), "{e}");
}

#[test]
fn supported_list_is_sorted_and_has_the_vision_ops() {
    assert!(SUPPORTED_OPS.windows(2).all(|w| w[0] < w[1]));
    for op in [
        "Conv",
        "Relu",
        "MaxPool",
        "Resize",
        "Gemm",
        "BatchNormalization",
    ] {
        assert!(SUPPORTED_OPS.contains(&op), "{op}");
    }
    for op in ["GlobalAveragePool", "HardSigmoid", "Einsum"] {
        assert!(!SUPPORTED_OPS.contains(&op), "{op}");
    }
}

#[test]
fn malformed_files_are_errors_not_panics() {
    let b = CandleBackend::new();
    // Not protobuf, or protobuf without a graph.
    let e = b
        .load("/nonexistent/x.onnx".into(), &LoadOptions::new())
        .err()
        .unwrap();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    for bytes in [vec![], vec![0xff; 64], b"GGUF\x03\0\0\0".to_vec()] {
        match b.load(ModelSource::Bytes(bytes.clone()), &LoadOptions::new()) {
            Err(Error::InvalidModel { .. } | Error::UnsupportedFormat { .. }) => {}
            Err(e) => panic!("{bytes:?}: unexpected error {e}"),
            Ok(_) => panic!("{bytes:?} loaded"),
        }
    }
    // A Conv whose weight is missing and a Reshape with no shape input: they load (the
    // operators exist) and fail at run time with an error, not a panic.
    let bytes = model(
        vec![
            node("Conv", &["x", "nope"], "a", vec![]),
            node("Reshape", &["a"], "y", vec![]),
        ],
        vec![],
        value("x", dt::FLOAT, &[Some(1), Some(1), Some(4), Some(4)]),
        value("y", dt::FLOAT, &[Some(16)]),
    );
    let m = b
        .load(ModelSource::Bytes(bytes), &LoadOptions::new())
        .unwrap();
    let e = m
        .run(vec![Tensor::zeros(DType::F32, vec![1, 1, 4, 4]).unwrap()])
        .unwrap_err();
    assert!(matches!(e, Error::Run { .. }), "{e}");
    let bytes = model(
        vec![node("Reshape", &["x"], "y", vec![])],
        vec![],
        value("x", dt::FLOAT, &[Some(4)]),
        value("y", dt::FLOAT, &[Some(4)]),
    );
    let m = b
        .load(ModelSource::Bytes(bytes), &LoadOptions::new())
        .unwrap();
    let e = m
        .run(vec![Tensor::zeros(DType::F32, vec![4]).unwrap()])
        .unwrap_err();
    assert!(e.to_string().contains("panicked"), "{e}");
    // An initializer whose bytes do not fill its shape.
    let bytes = model(
        vec![node("Add", &["x", "c"], "y", vec![])],
        vec![TensorProto {
            name: "c".into(),
            dims: vec![1000],
            data_type: dt::FLOAT,
            raw_data: vec![0; 12],
            ..Default::default()
        }],
        value("x", dt::FLOAT, &[Some(4)]),
        value("y", dt::FLOAT, &[Some(4)]),
    );
    let e = b
        .load(ModelSource::Bytes(bytes), &LoadOptions::new())
        .err()
        .unwrap();
    assert!(matches!(e, Error::InvalidModel { .. }), "{e}");
    assert!(e.to_string().contains("initializer `c`"), "{e}");
}

#[test]
fn truncated_model_is_an_invalid_model() {
    let path = need!("face/sface.onnx");
    let bytes = std::fs::read(path).unwrap();
    for frac in [0.0, 0.3, 0.999] {
        let cut = (bytes.len() as f64 * frac) as usize;
        match CandleBackend::new().load(
            ModelSource::Bytes(bytes[..cut].to_vec()),
            &LoadOptions::new(),
        ) {
            Err(Error::InvalidModel { .. }) => {}
            Err(e) => panic!("cut at {cut}: {e}"),
            Ok(_) => panic!("cut at {cut}: loaded"),
        }
    }
}

#[test]
fn wrong_inputs_name_the_input_and_one_model_serves_threads() {
    let path = need!("face/sface.onnx");
    let m: Arc<dyn Model> = Arc::from(
        CandleBackend::new()
            .load(path.into(), &LoadOptions::new().with_threads(1))
            .unwrap(),
    );
    let e = m
        .run(vec![
            Tensor::zeros(DType::F32, vec![1, 3, 112, 111]).unwrap()
        ])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "input `data`: expected shape [1, 3, 112, 112], got [1, 3, 112, 111]"
    );
    let e = m
        .run(vec![
            Tensor::zeros(DType::I64, vec![1, 3, 112, 112]).unwrap()
        ])
        .unwrap_err();
    assert!(matches!(e, Error::InputDType { .. }), "{e}");
    let input = |s| Tensor::from_vec(vec![1, 3, 112, 112], random(3 * 112 * 112, s)).unwrap();
    let expected: Vec<Tensor> = (0..3)
        .map(|s| m.run(vec![input(s)]).unwrap().remove(0))
        .collect();
    let handles: Vec<_> = (0..3)
        .map(|s| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || m.run(vec![input(s)]).unwrap().remove(0))
        })
        .collect();
    for (h, want) in handles.into_iter().zip(expected) {
        assert_eq!(h.join().unwrap(), want);
    }
}
