use edgeai_core::{paths, DType};

use crate::build::{self, fixed, sym};
use crate::proto::{dt, OperatorSetIdProto};
use crate::OnnxInfo;

fn model() -> Vec<u8> {
    let body = build::graph(
        "then",
        vec![
            build::node("Relu", &["x"], &["y"]),
            build::node("Add", &["x"], &["y"]),
        ],
        vec![],
        vec![],
        vec![],
    );
    let graph = build::graph(
        "main",
        vec![
            build::node("Conv", &["x"], &["y"]),
            build::node("Relu", &["x"], &["y"]),
            build::node("If", &["x"], &["y"]).with(build::attr_graph("then_branch", body)),
            build::node("FusedThing", &["x"], &["y"]).in_domain("com.microsoft"),
        ],
        vec![build::tensor_raw("weight", &[2], dt::FLOAT, vec![0; 8])],
        vec![
            build::value(
                "data",
                dt::FLOAT,
                &[sym("batch"), fixed(3), fixed(224), fixed(224)],
            ),
            build::value("weight", dt::FLOAT, &[fixed(2)]),
        ],
        vec![build::value("prob", dt::INT64, &[sym("batch"), fixed(-1)])],
    );
    let mut m = build::model(graph, 17);
    m.producer_name = "pytorch".into();
    m.producer_version = "2.1".into();
    m.opset_import.push(OperatorSetIdProto {
        domain: "com.microsoft".into(),
        version: 1,
    });
    m.to_bytes()
}

#[test]
fn summary_of_a_built_model() {
    let info = OnnxInfo::parse(&model()).unwrap();
    assert_eq!(info.ir_version, 8);
    assert_eq!(info.producer_name, "pytorch");
    assert_eq!(info.producer_version, "2.1");
    assert_eq!(
        info.opsets,
        vec![("ai.onnx".into(), 17), ("com.microsoft".into(), 1)]
    );
    assert_eq!(info.graph_name, "main");
    assert_eq!(info.initializers, 1);
    assert_eq!(info.inputs.len(), 1, "the initializer input is not listed");
    assert_eq!(info.inputs[0].name, "data");
    assert_eq!(info.inputs[0].dtype(), Some(DType::F32));
    assert_eq!(info.inputs[0].shape_string(), "[batch, 3, 224, 224]");
    assert_eq!(info.outputs[0].elem_type_name(), "int64");
    assert_eq!(info.outputs[0].shape_string(), "[batch, ?]");
    assert_eq!(info.nodes, 6);
    assert_eq!(info.subgraphs, 1);
    assert_eq!(
        info.op_histogram,
        vec![
            ("Relu".to_string(), 2),
            ("Add".to_string(), 1),
            ("Conv".to_string(), 1),
            ("If".to_string(), 1),
            ("com.microsoft:FusedThing".to_string(), 1),
        ]
    );
}

#[test]
fn encode_decode_round_trip() {
    let bytes = model();
    let m = crate::decode(&bytes, "m").unwrap();
    assert_eq!(m.to_bytes(), bytes);
    assert_eq!(m.default_opset(), 17);
    let g = m.main_graph().unwrap();
    let sub = g.node[2].attribute[0].subgraphs().next().unwrap();
    assert_eq!(sub.node.len(), 2);
}

#[test]
fn truncations_and_garbage_are_errors() {
    let m = model();
    for n in 0..m.len() {
        // A prefix may happen to end on a field boundary; it must never panic.
        if let Ok(i) = OnnxInfo::parse(&m[..n]) {
            assert!(i.nodes <= 6);
        }
    }
    assert!(OnnxInfo::parse(&m[..m.len() - 1]).is_err());
    let e = OnnxInfo::parse(b"").unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");
    let e = OnnxInfo::parse(b"GGUF\x03\0\0\0").unwrap_err().to_string();
    assert!(e.starts_with("invalid model <8 bytes>"), "{e}");
    let e = OnnxInfo::parse(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a valid ONNX protobuf"), "{e}");
    let mut long = vec![0x08];
    long.extend([0xff; 11]);
    let e = OnnxInfo::parse(&long).unwrap_err().to_string();
    assert!(e.contains("varint"), "{e}");
    let e = OnnxInfo::parse(&[0x08; 12]).unwrap_err().to_string();
    assert!(e.contains("no graph"), "{e}");
    for i in 0..m.len() {
        let mut c = m.clone();
        c[i] ^= 0xa5;
        let _ = OnnxInfo::parse(&c);
    }
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let mut g = build::graph(
        "g",
        vec![build::node("Relu", &["x"], &["y"])],
        vec![],
        vec![],
        vec![],
    );
    for _ in 0..200 {
        let n = build::node("If", &["c"], &["y"]).with(build::attr_graph("then_branch", g));
        g = build::graph("g", vec![n], vec![], vec![], vec![]);
    }
    let e = OnnxInfo::parse(&build::model(g, 13).to_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("recursion limit"), "{e}");
}

#[test]
fn fetched_sface_is_summarised() {
    let Some(p) = paths::model_path(std::env::var_os(paths::MODELS_ENV), "face/sface.onnx") else {
        eprintln!("skipping: face/sface.onnx not fetched (run scripts/fetch-models)");
        return;
    };
    let info = OnnxInfo::read(&p).unwrap();
    assert_eq!(info.inputs.len(), 1);
    assert_eq!(info.inputs[0].dtype(), Some(DType::F32));
    assert_eq!(info.inputs[0].dims.as_ref().map(|d| d.len()), Some(4));
    assert_eq!(info.outputs.len(), 1);
    assert!(info.initializers > 10);
    assert!(info.op_histogram.iter().any(|(op, _)| op == "Conv"));
    assert_eq!(
        info.op_histogram.iter().map(|(_, n)| n).sum::<usize>(),
        info.nodes
    );
    assert!(info.opsets.iter().any(|(d, v)| d == "ai.onnx" && *v > 0));
    let e = OnnxInfo::read(p.with_extension("missing"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("sface.missing"), "{e}");
}
