//! The candle graph backend against tract (the reference) on the fetched ONNX models, plus its
//! load-time checks: unsupported operators, malformed files, specs, wrong inputs.

use std::sync::Arc;

use candle_onnx::onnx::{
    self, tensor_proto::DataType, tensor_shape_proto::dimension, type_proto, AttributeProto,
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};
use edgeai_backend_candle::{CandleBackend, SUPPORTED_OPS};
use edgeai_backend_tract::TractBackend;
use edgeai_core::{
    paths::model_path, Backend, DType, Dim, Error, LoadOptions, Model, ModelSource, Tensor,
};
use prost::Message;

macro_rules! need {
    ($rel:expr) => {
        match model_path($rel) {
            Some(p) => p,
            None => {
                eprintln!("skipping: {} not fetched (run scripts/fetch-models)", $rel);
                return;
            }
        }
    };
}

/// Seeded values in [-1, 1) (a fixed LCG: the same on every run).
fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    let (a, b) = (a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Loads `model` with candle and tract, runs both on the same seeded input of `shape`, and
/// checks every output (by position) agrees within `tol`. Returns candle's outputs.
fn matches_tract(model: &ModelSource, shape: &[usize], scale: f32, tol: f32) -> Vec<Tensor> {
    matches_reference(model, model, shape, scale, tol)
}

/// [`matches_tract`] with a separate file for tract (one tract can load).
fn matches_reference(
    model: &ModelSource,
    for_tract: &ModelSource,
    shape: &[usize],
    scale: f32,
    tol: f32,
) -> Vec<Tensor> {
    let candle = CandleBackend::new()
        .load(model.clone(), &LoadOptions::new().with_threads(2))
        .unwrap_or_else(|e| panic!("candle failed to load: {e}"));
    let tract = TractBackend::new()
        .load(for_tract.clone(), &LoadOptions::new())
        .unwrap();
    assert_eq!(candle.inputs().len(), tract.inputs().len());
    assert_eq!(candle.outputs().len(), tract.outputs().len());
    let n = shape.iter().product();
    let x: Vec<f32> = random(n, 7).into_iter().map(|v| v * scale).collect();
    let input = Tensor::from_vec(shape.to_vec(), x).unwrap();
    let got = candle.run(vec![input.clone()]).unwrap();
    let want = tract.run(vec![input]).unwrap();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.shape(), w.shape(), "output {i}");
        let d = max_abs_diff(g, w);
        let peak = w
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()));
        eprintln!(
            "output {i} `{}` {:?}: max |candle - tract| = {d:.3e} (max |tract| = {peak:.3})",
            candle.outputs()[i].name,
            g.shape()
        );
        assert!(d <= tol, "output {i}: max abs diff {d} > {tol}");
    }
    got
}

#[test]
fn yunet_matches_tract() {
    let path = need!("face/yunet.onnx");
    let src = ModelSource::from(path);
    let m = CandleBackend::new()
        .load(src.clone(), &LoadOptions::new())
        .unwrap();
    assert_eq!(m.backend(), "candle");
    assert_eq!(m.inputs()[0].name, "input");
    assert_eq!(m.inputs()[0].fixed_shape(), Some(vec![1, 3, 640, 640]));
    let names: Vec<&str> = m.outputs().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 12);
    assert_eq!(names[0], "cls_8");
    assert_eq!(names[11], "kps_32");
    // YuNet takes 0..255 pixel values.
    matches_tract(&src, &[1, 3, 640, 640], 127.0, 1e-3);
}

#[test]
fn sface_matches_tract() {
    let path = need!("face/sface.onnx");
    let src = ModelSource::from(path);
    let out = matches_tract(&src, &[1, 3, 112, 112], 127.0, 1e-3);
    assert_eq!(out[0].shape(), &[1, 128]);
}

#[test]
fn ppocr_cls_matches_tract_through_the_rewrites() {
    // GlobalAveragePool, HardSigmoid and stride-(2,1) convolutions: all three rewrites.
    let path = need!("cls/ppocr_mobilenetv3_cls.onnx");
    let src = ModelSource::from(path.clone());
    let m = CandleBackend::new()
        .load(src.clone(), &LoadOptions::new())
        .unwrap();
    let shape = m.inputs()[0].shape.clone().unwrap();
    assert!(matches!(shape[0], Dim::Symbolic(_)), "{shape:?}");
    assert_eq!(shape[1], Dim::Fixed(3));
    assert_ne!(shape[2], shape[3], "H and W must be independent dims");
    // tract cannot type the declared input [-1, 3, ?, ?] (nor the Shape -> Reshape chain
    // with symbolic sizes): give it the concrete shape.
    let bytes = std::fs::read(&path).unwrap();
    let fixed = |dims: [i64; 4]| {
        let mut proto = ModelProto::decode(bytes.as_slice()).unwrap();
        let input = &mut proto.graph.as_mut().unwrap().input[0];
        let Some(type_proto::Value::TensorType(tt)) = input.r#type.as_mut().unwrap().value.as_mut()
        else {
            panic!("ppocr input is not a tensor")
        };
        for (d, v) in tt.shape.as_mut().unwrap().dim.iter_mut().zip(dims) {
            d.value = Some(dimension::Value::DimValue(v));
        }
        ModelSource::Bytes(proto.encode_to_vec())
    };
    for n in [1usize, 3] {
        let for_tract = fixed([n as i64, 3, 48, 192]);
        let out = matches_reference(&src, &for_tract, &[n, 3, 48, 192], 1.0, 1e-3);
        assert_eq!(out[0].shape(), &[n, 2]);
        // Softmax rows.
        for row in out[0].as_slice::<f32>().unwrap().chunks(2) {
            assert!((row[0] + row[1] - 1.0).abs() < 1e-5, "{row:?}");
        }
    }
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

// --- Small synthetic graphs, built with candle-onnx's own protobuf types. -------------------

fn value(name: &str, elem: DataType, dims: &[Option<i64>]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| onnx::tensor_shape_proto::Dimension {
                            value: Some(match d {
                                Some(v) => dimension::Value::DimValue(*v),
                                None => dimension::Value::DimParam("n".into()),
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        name: format!("{op}_{output}"),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

fn attr_f(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: onnx::attribute_proto::AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}

fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: onnx::attribute_proto::AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn model(
    nodes: Vec<NodeProto>,
    init: Vec<TensorProto>,
    input: ValueInfoProto,
    output: ValueInfoProto,
) -> Vec<u8> {
    ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(GraphProto {
            name: "g".into(),
            node: nodes,
            initializer: init,
            input: vec![input],
            output: vec![output],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
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
        value("x", DataType::Float, &[Some(4)]),
        value("d", DataType::Float, &[Some(4)]),
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

/// Rank-3 (1-D) GlobalAveragePool and HardSigmoid with non-default attributes, against tract:
/// the rewrites hold beyond the 4-D case ppocr exercises.
#[test]
fn rewrites_match_tract_on_a_1d_graph() {
    let bytes = model(
        vec![
            node(
                "HardSigmoid",
                &["x"],
                "h",
                vec![attr_f("alpha", 0.3), attr_f("beta", 0.4)],
            ),
            node("GlobalAveragePool", &["h"], "y", vec![]),
        ],
        vec![],
        value("x", DataType::Float, &[None, Some(3), Some(10)]),
        value("y", DataType::Float, &[None, Some(3), Some(1)]),
    );
    let out = matches_tract(&ModelSource::Bytes(bytes), &[2, 3, 10], 4.0, 1e-6);
    assert_eq!(out[0].shape(), &[2, 3, 1]);
}

#[test]
fn strided_conv_rewrite_matches_tract() {
    // 2 -> 4 channels, 3x3 kernel, pads 1, strides (2, 1) and (1, 3).
    let w = random(4 * 2 * 3 * 3, 3);
    let weight = TensorProto {
        name: "w".into(),
        dims: vec![4, 2, 3, 3],
        data_type: DataType::Float as i32,
        float_data: w,
        ..Default::default()
    };
    let conv = |out: &str, input: &str, strides: &[i64]| {
        node(
            "Conv",
            &[input, "w2"],
            out,
            vec![
                attr_ints("kernel_shape", &[3, 3]),
                attr_ints("pads", &[1, 1, 1, 1]),
                attr_ints("strides", strides),
            ],
        )
    };
    let bytes = model(
        vec![
            node(
                "Conv",
                &["x", "w"],
                "a",
                vec![
                    attr_ints("kernel_shape", &[3, 3]),
                    attr_ints("pads", &[1, 1, 1, 1]),
                    attr_ints("strides", &[2, 1]),
                ],
            ),
            node("Relu", &["a"], "r", vec![]),
            conv("y", "r", &[1, 3]),
        ],
        vec![
            weight,
            TensorProto {
                name: "w2".into(),
                dims: vec![2, 4, 3, 3],
                data_type: DataType::Float as i32,
                float_data: random(2 * 4 * 9, 5),
                ..Default::default()
            },
        ],
        value(
            "x",
            DataType::Float,
            &[Some(1), Some(2), Some(11), Some(14)],
        ),
        value("y", DataType::Float, &[Some(1), Some(2), Some(6), Some(5)]),
    );
    let out = matches_tract(&ModelSource::Bytes(bytes), &[1, 2, 11, 14], 1.0, 1e-5);
    assert_eq!(out[0].shape(), &[1, 2, 6, 5]);
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
        value("x", DataType::Float, &[Some(1), Some(1), Some(4), Some(4)]),
        value("y", DataType::Float, &[Some(16)]),
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
        value("x", DataType::Float, &[Some(4)]),
        value("y", DataType::Float, &[Some(4)]),
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
            data_type: DataType::Float as i32,
            raw_data: vec![0; 12],
            ..Default::default()
        }],
        value("x", DataType::Float, &[Some(4)]),
        value("y", DataType::Float, &[Some(4)]),
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
