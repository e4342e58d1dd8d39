//! Cross-backend conformance: the same real inputs through every compiled-in backend give the
//! same outputs as tract (the reference, always first) within a stated tolerance.
//!
//! Tolerances (max absolute difference against tract):
//! - YuNet 640x640: 1e-3 on every output (scores in 0..1, box/landmark offsets in anchor units).
//! - SFace 112x112: 1e-3 on the raw 128-d embedding (|values| up to ~5), and cosine > 0.99999.
//!
//! With only one backend compiled in the test still runs the reference and checks the outputs'
//! shapes; `cargo test --features full` (the README's test command) compares them.

use edgeai::core::{paths::model_path, LoadOptions, Model, Tensor};
use edgeai::vision::image::{ChannelOrder, Image, ImageLimits, Normalization};

const PHOTOS: [&str; 4] = ["obama.jpg", "biden.jpg", "t1.jpg", "obama2.jpg"];

fn load_all(rel: &str) -> Option<Vec<Box<dyn Model>>> {
    let Some(path) = model_path(rel) else {
        eprintln!("skipping: {rel} not fetched (run scripts/fetch-models)");
        return None;
    };
    Some(
        edgeai::available_backends()
            .into_iter()
            .map(|n| {
                edgeai::backend(n)
                    .unwrap()
                    .load(path.clone().into(), &LoadOptions::new())
                    .unwrap()
            })
            .collect(),
    )
}

fn photo(name: &str) -> Option<Image> {
    let p = model_path(format!("photos/{name}"))?;
    Some(Image::open(p, &ImageLimits::default()).unwrap())
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape());
    let (a, b) = (a.as_slice::<f32>().unwrap(), b.as_slice::<f32>().unwrap());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
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
