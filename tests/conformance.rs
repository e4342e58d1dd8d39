//! Cross-backend conformance: the same real inputs through every compiled-in backend give the
//! same outputs as tract (the reference, always first) within a stated tolerance.
//!
//! Tolerances (max absolute difference against tract):
//! - YuNet 640x640: 1e-3 on every output (scores in 0..1, box/landmark offsets in anchor units).
//! - SFace 112x112: 1e-3 on the raw 128-d embedding (|values| up to ~5), and cosine > 0.99999.
//!
//! With only one backend compiled in the test still runs the reference and checks the outputs'
//! shapes; `cargo test --features full` (the README's test command) compares them.

use edgeai::core::{Error, LoadOptions, Model, ModelSource, Tensor};
use edgeai::onnx::{
    build::{self, attr_float, attr_ints, fixed, sym},
    proto::dt,
};
use edgeai::vision::image::{ChannelOrder, Normalization};
use edgeai_testutil::{max_abs_diff, model_or_skip, photo, Rng};

const PHOTOS: [&str; 4] = ["obama.jpg", "biden.jpg", "t1.jpg", "obama2.jpg"];

fn load_all(rel: &str) -> Option<Vec<Box<dyn Model>>> {
    let path = model_or_skip(rel)?;
    Some(
        edgeai::available_backends()
            .into_iter()
            .map(|n| {
                edgeai::backend(n)
                    .unwrap()
                    .load(path.clone().into(), &LoadOptions::new())
                    .unwrap_or_else(|e| panic!("{n} cannot load {rel}: {e}"))
            })
            .collect(),
    )
}

fn compare(
    models: &[Box<dyn Model>],
    input: impl Fn() -> Vec<Tensor>,
    tol: f32,
    what: &str,
) -> Vec<Vec<Tensor>> {
    let outs: Vec<Vec<Tensor>> = models.iter().map(|m| m.run(input()).unwrap()).collect();
    for (m, out) in models.iter().zip(&outs).skip(1) {
        for ((spec, a), b) in m.outputs().iter().zip(&outs[0]).zip(out) {
            let d = max_abs_diff(a, b);
            println!(
                "conformance {what} {} vs tract: output {} max abs diff {d:.2e}",
                m.backend(),
                spec.name
            );
            assert!(
                d <= tol,
                "{what}: {} differs from tract on {} by {d} > {tol}",
                m.backend(),
                spec.name
            );
        }
    }
    outs
}

#[test]
fn yunet_agrees_across_backends() {
    let Some(models) = load_all("face/yunet.onnx") else {
        return;
    };
    let mut seen = 0;
    for name in PHOTOS {
        let Some(img) = photo(name) else { continue };
        seen += 1;
        let (boxed, _) = img.letterbox(640, 640).unwrap();
        let outs = compare(
            &models,
            || {
                vec![boxed
                    .to_tensor(ChannelOrder::Bgr, &Normalization::NONE)
                    .unwrap()]
            },
            1e-3,
            &format!("yunet {name}"),
        );
        // 12 heads: cls/obj/bbox/kps at strides 8, 16, 32, under their ONNX names everywhere.
        assert_eq!(outs[0].len(), 12);
        for m in &models {
            let names: Vec<&str> = m.outputs().iter().map(|s| s.name.as_str()).collect();
            assert_eq!(
                names[0],
                "cls_8",
                "{}: outputs named {names:?}",
                m.backend()
            );
            assert_eq!(
                names[11],
                "kps_32",
                "{}: outputs named {names:?}",
                m.backend()
            );
        }
        assert_eq!(outs[0][0].shape(), &[1, 6400, 1]);
    }
    assert!(seen > 0, "no photos fetched");
}

#[test]
fn sface_agrees_across_backends() {
    let Some(models) = load_all("face/sface.onnx") else {
        return;
    };
    for name in PHOTOS {
        let Some(img) = photo(name) else { continue };
        let face = img.resize(112, 112).unwrap();
        let outs = compare(
            &models,
            || {
                vec![face
                    .to_tensor(ChannelOrder::Rgb, &Normalization::NONE)
                    .unwrap()]
            },
            1e-3,
            &format!("sface {name}"),
        );
        assert_eq!(outs[0][0].shape(), &[1, 128]);
        let a = outs[0][0].as_slice::<f32>().unwrap();
        for (m, o) in models.iter().zip(&outs).skip(1) {
            let b = o[0].as_slice::<f32>().unwrap();
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let cos = dot
                / (a.iter().map(|x| x * x).sum::<f32>().sqrt()
                    * b.iter().map(|x| x * x).sum::<f32>().sqrt());
            println!(
                "conformance sface {name} {} vs tract: cosine {cos:.7}",
                m.backend()
            );
            assert!(cos > 0.99999, "{}: cosine {cos}", m.backend());
        }
    }
}

/// Seeded random inputs (the photos above cover the real range; these cover the rest).
#[test]
fn yunet_and_sface_agree_on_random_inputs() {
    for (rel, shape) in [
        ("face/yunet.onnx", [1usize, 3, 640, 640]),
        ("face/sface.onnx", [1, 3, 112, 112]),
    ] {
        let Some(models) = load_all(rel) else {
            return;
        };
        for seed in [1u64, 2] {
            let x = Rng(0x5eed_0000 + seed).tensor(&shape, 0.0, 255.0);
            compare(
                &models,
                || vec![x.clone()],
                1e-3,
                &format!("{rel} random #{seed}"),
            );
        }
    }
}

/// tract, the reference; `None` (printed) in a build without it.
fn reference_backend() -> Option<Box<dyn edgeai::core::Backend>> {
    let b = edgeai::backend("tract").ok();
    if b.is_none() {
        eprintln!("skipping: tract, the reference, is not compiled in");
    }
    b
}

/// Every compiled-in backend against tract on a small hand-built graph. A backend that
/// refuses an operator says which (printed, and the test goes on); any other failure fails.
fn small_graph_agrees(what: &str, bytes: Vec<u8>, shape: &[usize], scale: f32, tol: f32) {
    let Some(tract) = reference_backend() else {
        return;
    };
    let reference = tract
        .load(ModelSource::Bytes(bytes.clone()), &LoadOptions::new())
        .unwrap();
    let x = Rng(7).tensor(shape, -scale, scale);
    let want = reference.run(vec![x.clone()]).unwrap();
    for name in edgeai::available_backends()
        .into_iter()
        .filter(|n| *n != "tract")
    {
        let b = edgeai::backend(name).unwrap();
        let m = match b.load(ModelSource::Bytes(bytes.clone()), &LoadOptions::new()) {
            Ok(m) => m,
            Err(e @ Error::UnsupportedOperator { .. }) => {
                println!("conformance {what}: {name} refuses it: {e}");
                continue;
            }
            Err(e @ Error::BackendUnavailable { .. }) => {
                println!("skipping {name}: {e}");
                continue;
            }
            Err(e) => panic!("{what}: {name} cannot load it: {e}"),
        };
        let got = m.run(vec![x.clone()]).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let d = max_abs_diff(g, w);
            println!("conformance {what} {name} vs tract: output {i} max abs diff {d:.2e}");
            assert!(d <= tol, "{what}: {name} output {i} differs by {d} > {tol}");
        }
    }
}

/// Rank-3 (1-D) GlobalAveragePool and HardSigmoid with non-default attributes (candle runs
/// both through load-time rewrites; this holds them beyond the 4-D case ppocr exercises).
#[test]
fn hard_sigmoid_and_1d_global_pool_agree() {
    let g = build::graph(
        "gap1d",
        vec![
            build::node("HardSigmoid", &["x"], &["h"])
                .with(attr_float("alpha", 0.3))
                .with(attr_float("beta", 0.4)),
            build::node("GlobalAveragePool", &["h"], &["y"]),
        ],
        vec![],
        vec![build::value(
            "x",
            dt::FLOAT,
            &[sym("n"), fixed(3), fixed(10)],
        )],
        vec![build::value(
            "y",
            dt::FLOAT,
            &[sym("n"), fixed(3), fixed(1)],
        )],
    );
    small_graph_agrees(
        "1-D pool",
        build::model(g, 13).to_bytes(),
        &[2, 3, 10],
        4.0,
        1e-6,
    );
}

/// Convolutions with a different stride per axis, (2, 1) then (1, 3) (candle rewrites them
/// into a stride-1 Conv and a strided Slice).
#[test]
fn per_axis_strided_convolutions_agree() {
    let mut rng = Rng(3);
    let conv = |x: &str, w: &str, y: &str, strides: &[i64]| {
        build::node("Conv", &[x, w], &[y])
            .with(attr_ints("kernel_shape", &[3, 3]))
            .with(attr_ints("pads", &[1, 1, 1, 1]))
            .with(attr_ints("strides", strides))
    };
    let g = build::graph(
        "strided",
        vec![
            conv("x", "w", "a", &[2, 1]),
            build::node("Relu", &["a"], &["r"]),
            conv("r", "w2", "y", &[1, 3]),
        ],
        vec![
            build::tensor_f32("w", &[4, 2, 3, 3], &rng.vec(4 * 2 * 9, -1.0, 1.0)),
            build::tensor_f32("w2", &[2, 4, 3, 3], &rng.vec(2 * 4 * 9, -1.0, 1.0)),
        ],
        vec![build::value(
            "x",
            dt::FLOAT,
            &[fixed(1), fixed(2), fixed(11), fixed(14)],
        )],
        vec![build::value(
            "y",
            dt::FLOAT,
            &[fixed(1), fixed(2), fixed(6), fixed(5)],
        )],
    );
    small_graph_agrees(
        "strided conv",
        build::model(g, 13).to_bytes(),
        &[1, 2, 11, 14],
        1.0,
        1e-5,
    );
}

/// PP-OCR's direction classifier: a `[-1, 3, ?, ?]` input, a Shape -> Reshape chain,
/// GlobalAveragePool, HardSigmoid and stride-(2, 1) convolutions. tract cannot type the file
/// as shipped, so its reference runs a copy whose input is fixed (edited with edgeai-onnx);
/// every other backend runs the file as shipped, at batch 1 and 3.
#[test]
fn ppocr_classifier_agrees_at_a_dynamic_batch() {
    let Some(path) = model_or_skip("cls/ppocr_mobilenetv3_cls.onnx") else {
        return;
    };
    for n in [1usize, 3] {
        let mut fixed_input = edgeai::onnx::read(&path).unwrap();
        let input = &mut fixed_input.graph.as_mut().unwrap().input[0];
        let tt = input
            .r#type
            .as_mut()
            .and_then(|t| t.tensor_type.as_mut())
            .unwrap();
        tt.shape.as_mut().unwrap().dim = vec![fixed(n as i64), fixed(3), fixed(48), fixed(192)];
        let Some(tract) = reference_backend() else {
            return;
        };
        let reference = tract
            .load(
                ModelSource::Bytes(fixed_input.to_bytes()),
                &LoadOptions::new(),
            )
            .unwrap();
        let x = Rng(0x5eed_0003).tensor(&[n, 3, 48, 192], -1.0, 1.0);
        let want = reference.run(vec![x.clone()]).unwrap();
        assert_eq!(want[0].shape(), &[n, 2]);
        for name in edgeai::available_backends()
            .into_iter()
            .filter(|n| *n != "tract")
        {
            let m = match edgeai::backend(name)
                .unwrap()
                .load(path.clone().into(), &LoadOptions::new())
            {
                Err(e @ Error::BackendUnavailable { .. }) => {
                    println!("skipping {name}: {e}");
                    continue;
                }
                r => r.unwrap_or_else(|e| panic!("{name} cannot load ppocr: {e}")),
            };
            let got = m.run(vec![x.clone()]).unwrap();
            let d = max_abs_diff(&got[0], &want[0]);
            println!("conformance ppocr batch {n} {name} vs tract: max abs diff {d:.2e}");
            assert!(d <= 1e-3, "ppocr batch {n}: {name} differs by {d}");
            for row in got[0].as_slice::<f32>().unwrap().chunks(2) {
                assert!((row[0] + row[1] - 1.0).abs() < 1e-5, "{name}: {row:?}");
            }
        }
    }
}

/// burn's deprecated ndarray engine (feature `burn-ndarray`) against tract on SFace.
#[cfg(feature = "burn-ndarray")]
#[test]
fn burn_ndarray_engine_agrees_with_tract() {
    use edgeai::backend_burn::{BurnBackend, Engine};
    use edgeai::core::Backend;
    let Some(p) = model_or_skip("face/sface.onnx") else {
        return;
    };
    let models = vec![
        edgeai::backend("tract")
            .unwrap()
            .load(p.clone().into(), &LoadOptions::new())
            .unwrap(),
        BurnBackend::with_engine(Engine::NdArray)
            .load(p.into(), &LoadOptions::new())
            .unwrap(),
    ];
    let x = Rng(7).tensor(&[1, 3, 112, 112], 0.0, 255.0);
    compare(&models, || vec![x.clone()], 1e-3, "sface on burn-ndarray");
}
