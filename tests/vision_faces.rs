//! Real photos through the real models: detection counts, landmarks, same-person and
//! different-person similarities, on tract (default) and on ONNX Runtime (`--features ort`).
//!
//! Skips (with a message) when `scripts/fetch-models` has not been run.

use std::collections::BTreeMap;

use edgeai::core::{paths::model_path, LoadOptions};
use edgeai::vision::{
    cosine, FaceRecognizer, Image, ImageLimits, VisionError, YuNetConfig, SFACE_COSINE_THRESHOLD,
};

/// Faces YuNet (score >= 0.8) finds in each photo, checked by eye on annotated output:
/// one portrait each, six people in `t1.jpg` (insightface group photo), and an already
/// aligned 112x112 crop.
const EXPECTED_FACES: &[(&str, usize)] = &[
    ("obama.jpg", 1),
    ("obama2.jpg", 1),
    ("obama3.jpg", 1),
    ("biden.jpg", 1),
    ("obama_partial_face.jpg", 1),
    ("obama_partial_face2.jpg", 1),
    ("t1.jpg", 6),
    ("Tom_Hanks_54745.png", 1),
];

fn recognizer(backend: &str) -> Option<FaceRecognizer> {
    let (Some(det), Some(emb)) = (model_path("face/yunet.onnx"), model_path("face/sface.onnx"))
    else {
        println!(
            "skipping: face/yunet.onnx, face/sface.onnx not fetched (run scripts/fetch-models)"
        );
        return None;
    };
    let b = edgeai::backend(backend).expect("backend compiled in");
    match FaceRecognizer::from_backend(
        b.as_ref(),
        det,
        emb,
        &LoadOptions::new(),
        YuNetConfig::default(),
    ) {
        Ok(r) => Some(r),
        // e.g. ONNX Runtime's shared library not fetched
        Err(VisionError::Core(e @ edgeai::core::Error::BackendUnavailable { .. })) => {
            println!("skipping: {e} (run scripts/fetch-models)");
            None
        }
        Err(e) => panic!("load YuNet and SFace on {backend}: {e}"),
    }
}

/// Embedding of the largest face per photo, after checking the face count and landmarks.
fn embeddings(rec: &FaceRecognizer, backend: &str) -> Option<BTreeMap<String, Vec<f32>>> {
    let mut out = BTreeMap::new();
    for &(name, want) in EXPECTED_FACES {
        let Some(path) = model_path(format!("photos/{name}")) else {
            println!("skipping: photos/{name} not fetched (run scripts/fetch-models)");
            return None;
        };
        let img = Image::open(&path, &ImageLimits::default()).expect("decode photo");
        let faces = rec.detect(&img).expect("detect");
        println!(
            "[{backend}] {name}: {} face(s) {:?}",
            faces.len(),
            faces.iter().map(|f| f.score).collect::<Vec<_>>()
        );
        assert_eq!(faces.len(), want, "[{backend}] {name}: face count");
        for f in &faces {
            assert!(
                f.score >= 0.8 && f.score <= 1.0,
                "{name}: score {}",
                f.score
            );
            for &(x, y) in &f.landmarks {
                assert!(
                    f.bbox.contains(x, y),
                    "{name}: landmark ({x}, {y}) outside {:?}",
                    f.bbox
                );
            }
            // eyes above the mouth, image-left eye left of the other
            assert!(f.landmarks[0].0 < f.landmarks[1].0, "{name}: eye order");
            assert!(
                f.landmarks[0].1 < f.landmarks[3].1,
                "{name}: eye above mouth"
            );
        }
        let best = rec.largest_face(&img, name).expect("embed");
        assert_eq!(best.embedding.len(), 128);
        let norm: f32 = best.embedding.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
        out.insert(name.to_string(), best.embedding);
    }
    Some(out)
}

/// Who is in each photo (its largest face): the obama*.jpg files are one person, everyone
/// else is a different person.
fn person(photo: &str) -> &str {
    if photo.starts_with("obama") {
        "obama"
    } else {
        photo
    }
}

/// Every same-person pair above the SFace threshold, every different-person pair below;
/// prints the scores and margins.
fn check_identities(emb: &BTreeMap<String, Vec<f32>>, backend: &str) {
    let names: Vec<&String> = emb.keys().collect();
    let (mut min_same, mut max_diff) = (f32::MAX, f32::MIN);
    let (mut same_pairs, mut diff_pairs) = (0, 0);
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            let s = cosine(&emb[*a], &emb[*b]);
            if person(a) == person(b) {
                println!(
                    "[{backend}] same {a} ~ {b}: {s:.3} (margin {:+.3})",
                    s - SFACE_COSINE_THRESHOLD
                );
                assert!(
                    s >= SFACE_COSINE_THRESHOLD,
                    "[{backend}] same person {a} vs {b}: {s}"
                );
                min_same = min_same.min(s);
                same_pairs += 1;
            } else {
                println!(
                    "[{backend}] diff {a} ~ {b}: {s:.3} (margin {:+.3})",
                    SFACE_COSINE_THRESHOLD - s
                );
                assert!(
                    s < SFACE_COSINE_THRESHOLD,
                    "[{backend}] different people {a} vs {b}: {s}"
                );
                max_diff = max_diff.max(s);
                diff_pairs += 1;
            }
        }
    }
    assert_eq!((same_pairs, diff_pairs), (10, 18));
    println!(
        "[{backend}] {same_pairs} same-person pairs, lowest {min_same:.3}; {diff_pairs} \
         different-person pairs, highest {max_diff:.3}; threshold {SFACE_COSINE_THRESHOLD}"
    );
}

#[test]
#[cfg(feature = "tract")]
fn tract_detects_and_recognises_faces() {
    let Some(rec) = recognizer("tract") else {
        return;
    };
    let Some(emb) = embeddings(&rec, "tract") else {
        return;
    };
    check_identities(&emb, "tract");
}

#[test]
#[cfg(feature = "ort")]
fn ort_detects_and_recognises_the_same_identities() {
    let Some(rec) = recognizer("ort") else { return };
    let Some(emb) = embeddings(&rec, "ort") else {
        return;
    };
    check_identities(&emb, "ort");
    #[cfg(feature = "tract")]
    {
        let Some(tr) = recognizer("tract") else {
            return;
        };
        let Some(temb) = embeddings(&tr, "tract") else {
            return;
        };
        for (name, e) in &emb {
            let s = cosine(e, &temb[name]);
            println!("{name}: ort vs tract embedding cosine {s:.5}");
            assert!(
                s > 0.99,
                "{name}: ort and tract embeddings differ (cosine {s})"
            );
        }
    }
}

#[test]
#[cfg(feature = "tract")]
fn photo_without_a_face_and_bad_files_are_clear_errors() {
    let Some(rec) = recognizer("tract") else {
        return;
    };
    // A flat grey image has no face.
    let grey = Image::from_rgb(320, 240, vec![128; 320 * 240 * 3]).expect("image");
    assert!(rec.detect(&grey).expect("detect").is_empty());
    let e = rec.largest_face(&grey, "grey.png").unwrap_err();
    assert!(matches!(e, VisionError::NoFace(_)), "{e}");
    assert_eq!(e.to_string(), "no face found in grey.png");
    // Truncated JPEG.
    if let Some(p) = model_path("photos/obama.jpg") {
        let bytes = std::fs::read(p).expect("read");
        let e = Image::decode(&bytes[..bytes.len() / 3], &ImageLimits::default());
        // A truncated baseline JPEG either errors or decodes a partial image; it must not
        // panic, and a header-only slice must be an error.
        let _ = e;
        let e = Image::decode(&bytes[..200], &ImageLimits::default()).unwrap_err();
        assert!(matches!(e, VisionError::Decode { .. }), "{e}");
    }
}
