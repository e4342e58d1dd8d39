//! MediaPipe BlazeFace, the second [`FaceDetector`]: the short-range (128x128, faces within
//! about 2 m of a selfie camera) and full-range (192x192, smaller faces) models, on any
//! backend. MediaPipe ships them as TensorFlow Lite with float16 weights behind `DEQUANTIZE`,
//! which tract-tflite lacks, so `scripts/fetch-models` converts them to ONNX
//! (`face/blazeface_*_range.onnx`, checked against the LiteRT interpreter); the detector takes
//! either layout.
//!
//! The model regresses a box and six keypoints relative to a fixed grid of SSD anchors:
//! 896 for short range (strides 8 and 16, 2 and 6 anchors per cell), 2304 for full range
//! (stride 4, 1 anchor per cell). Decoding follows MediaPipe's
//! `TensorsToDetectionsCalculator`: `centre = raw / input_size + anchor`, `size = raw /
//! input_size`, score = `sigmoid(clamp(raw, -100, 100))`, then non-maximum suppression (greedy
//! here; MediaPipe blends overlapping boxes).
//!
//! BlazeFace's keypoints are the two eyes, the nose tip, the mouth centre and the two ear
//! tragions. The ArcFace alignment needs the two mouth corners instead of the mouth centre;
//! they are estimated from it: in the ArcFace template the corners sit at the mouth centre
//! plus or minus 0.414 times the eye-to-eye vector, and that ratio is applied to the
//! detected eyes. The result feeds [`crate::align::align_face`] like YuNet's landmarks.

use edgeai_core::{DType, Dim, Model};
use tracing::debug;

use crate::detect::{nms, BBox, Face, FaceDetector};
use crate::image::{ChannelOrder, Normalization};
use crate::{Error, Image, Result};

/// Mouth-corner offset from the mouth centre, as a fraction of the eye-to-eye vector, in the
/// ArcFace 112x112 template (corners 41.55/70.73, eyes 38.29/73.53: 14.59 / 35.24).
const MOUTH_CORNER_RATIO: f32 = 0.414;

/// BlazeFace settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlazeFaceConfig {
    /// Faces scoring below this are dropped (MediaPipe: 0.5).
    pub score_threshold: f32,
    /// NMS IoU threshold (MediaPipe: 0.3).
    pub nms_threshold: f32,
    /// At most this many faces.
    pub top_k: usize,
}

impl Default for BlazeFaceConfig {
    fn default() -> Self {
        BlazeFaceConfig {
            score_threshold: 0.5,
            nms_threshold: 0.3,
            top_k: 100,
        }
    }
}

/// An SSD anchor centre in 0..1 input coordinates (BlazeFace uses a fixed anchor size of 1).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Anchor {
    x: f32,
    y: f32,
}

/// MediaPipe's SSD anchors for a square input of `side` pixels: for each (stride, anchors per
/// cell) layer group, one anchor centre per cell repeated `per_cell` times, row-major.
fn anchors(side: usize, layers: &[(usize, usize)]) -> Vec<Anchor> {
    let mut out = Vec::new();
    for &(stride, per_cell) in layers {
        let grid = side.div_ceil(stride);
        for y in 0..grid {
            for x in 0..grid {
                let a = Anchor {
                    x: (x as f32 + 0.5) / grid as f32,
                    y: (y as f32 + 0.5) / grid as f32,
                };
                out.extend(std::iter::repeat_n(a, per_cell));
            }
        }
    }
    out
}

fn mismatch(reason: String) -> Error {
    Error::ModelMismatch {
        stage: "BlazeFace detector",
        reason,
    }
}

/// The BlazeFace detector (MediaPipe `face_detection_short_range.tflite` or
/// `face_detection_full_range.tflite`).
///
/// Input: RGB, `(value - 127.5) / 127.5`, `[1, S, S, 3]` (NHWC, the TensorFlow Lite file) or
/// `[1, 3, S, S]` (NCHW, the ONNX conversion `scripts/fetch-models` makes) with S = 128 (short
/// range) or 192 (full range); the image is scaled to fit and padded on the right and bottom.
/// Outputs:
/// regressors `[1, N, 16]` and scores `[1, N, 1]`, told apart by their last dimension.
///
/// ```no_run
/// use edgeai_core::{Backend, LoadOptions};
/// use edgeai_vision::{BlazeFace, BlazeFaceConfig, FaceDetector, Image, ImageLimits};
///
/// // `backend`: any edgeai backend (tract, ort, ...).
/// fn count_faces(backend: &dyn Backend) -> Result<usize, Box<dyn std::error::Error>> {
///     let model = backend.load(
///         "models/face/blazeface_short_range.onnx".into(),
///         &LoadOptions::new(),
///     )?;
///     let detector = BlazeFace::new(model, BlazeFaceConfig::default())?;
///     let image = Image::open("models/photos/obama.jpg", &ImageLimits::default())?;
///     Ok(detector.detect(&image)?.len())
/// }
/// ```
pub struct BlazeFace {
    model: Box<dyn Model>,
    side: usize,
    /// Input layout: NCHW (the ONNX conversion) or NHWC (the original TensorFlow Lite file).
    nchw: bool,
    anchors: Vec<Anchor>,
    /// Output positions of the regressors and the scores.
    regressors: usize,
    scores: usize,
    config: BlazeFaceConfig,
}

impl std::fmt::Debug for BlazeFace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlazeFace")
            .field("backend", &self.model.backend())
            .field("input_side", &self.side)
            .field("anchors", &self.anchors.len())
            .field("config", &self.config)
            .finish()
    }
}

impl BlazeFace {
    /// Wraps a loaded BlazeFace model; checks its input and outputs and builds the anchors
    /// for its input size (128: short range, 192: full range).
    pub fn new(model: Box<dyn Model>, config: BlazeFaceConfig) -> Result<Self> {
        if !(0.0..=1.0).contains(&config.score_threshold) {
            return Err(Error::InvalidArgument(format!(
                "BlazeFace score threshold {} is not in 0..=1",
                config.score_threshold
            )));
        }
        let inputs = model.inputs();
        let [input] = inputs else {
            return Err(mismatch(format!(
                "expected 1 input, the model has {}",
                inputs.len()
            )));
        };
        if input.dtype != DType::F32 {
            return Err(mismatch(format!(
                "input dtype is {}, expected f32",
                input.dtype
            )));
        }
        let (side, nchw) = match input.shape.as_deref() {
            Some([_, Dim::Fixed(h), Dim::Fixed(w), Dim::Fixed(3)]) if h == w => (*h, false),
            Some([_, Dim::Fixed(3), Dim::Fixed(h), Dim::Fixed(w)]) if h == w => (*h, true),
            _ => {
                return Err(mismatch(format!(
                    "input shape {} is neither [1, S, S, 3] nor [1, 3, S, S]",
                    input.shape_string()
                )))
            }
        };
        let layers: &[(usize, usize)] = match side {
            128 => &[(8, 2), (16, 6)],
            192 => &[(4, 1)],
            other => {
                return Err(mismatch(format!(
                    "input side {other} is neither 128 (short range) nor 192 (full range)"
                )))
            }
        };
        let anchors = anchors(side, layers);
        let outputs = model.outputs();
        let last = |i: usize| match outputs[i].shape.as_deref() {
            Some([.., Dim::Fixed(n)]) => Some(*n),
            _ => None,
        };
        if outputs.len() != 2 {
            return Err(mismatch(format!(
                "expected 2 outputs (regressors, scores), the model has {}",
                outputs.len()
            )));
        }
        let (regressors, scores) = match (last(0), last(1)) {
            (Some(16), Some(1)) => (0, 1),
            (Some(1), Some(16)) => (1, 0),
            (a, b) => {
                return Err(mismatch(format!(
                    "outputs end in {a:?} and {b:?}, expected 16 (regressors) and 1 (scores)"
                )))
            }
        };
        debug!(
            backend = model.backend(),
            side,
            anchors = anchors.len(),
            "BlazeFace ready"
        );
        Ok(BlazeFace {
            model,
            side,
            nchw,
            anchors,
            regressors,
            scores,
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &BlazeFaceConfig {
        &self.config
    }

    /// The model's square input side: 128 (short range) or 192 (full range).
    pub fn input_side(&self) -> usize {
        self.side
    }
}

/// The two mouth corners (image-left first) estimated from the mouth centre and the eyes.
fn mouth_corners(
    left_eye: (f32, f32),
    right_eye: (f32, f32),
    mouth: (f32, f32),
) -> [(f32, f32); 2] {
    let (dx, dy) = (
        (right_eye.0 - left_eye.0) * MOUTH_CORNER_RATIO,
        (right_eye.1 - left_eye.1) * MOUTH_CORNER_RATIO,
    );
    [(mouth.0 - dx, mouth.1 - dy), (mouth.0 + dx, mouth.1 + dy)]
}

impl FaceDetector for BlazeFace {
    fn detect(&self, image: &Image) -> Result<Vec<Face>> {
        let side = self.side as u32;
        let (input, lb) = image.letterbox(side, side)?;
        let tensor = if self.nchw {
            input.to_tensor(ChannelOrder::Rgb, &Normalization::SYMMETRIC)?
        } else {
            input.to_tensor_nhwc(ChannelOrder::Rgb, &Normalization::SYMMETRIC)?
        };
        let outs = self.model.run(vec![tensor])?;
        let n = self.anchors.len();
        let get = |i: usize, width: usize| -> Result<&[f32]> {
            let t = outs
                .get(i)
                .ok_or_else(|| mismatch(format!("the backend returned {} outputs", outs.len())))?;
            let v = t.as_slice::<f32>()?;
            if v.len() != n * width {
                return Err(mismatch(format!(
                    "output {i} has {} values, expected {n} x {width}",
                    v.len()
                )));
            }
            Ok(v)
        };
        let (reg, scores) = (get(self.regressors, 16)?, get(self.scores, 1)?);
        let s = self.side as f32;
        // Input coordinates (0..1) back to original image pixels.
        let to_image = |x: f32, y: f32| lb.to_original(x * s, y * s);
        let mut faces = Vec::new();
        for (i, (a, r)) in self.anchors.iter().zip(reg.chunks_exact(16)).enumerate() {
            let score = 1.0 / (1.0 + (-scores[i].clamp(-100.0, 100.0)).exp());
            if score < self.config.score_threshold || !score.is_finite() {
                continue;
            }
            let (cx, cy) = (r[0] / s + a.x, r[1] / s + a.y);
            let (w, h) = (r[2] / s, r[3] / s);
            let (x0, y0) = to_image(cx - w / 2.0, cy - h / 2.0);
            let (x1, y1) = to_image(cx + w / 2.0, cy + h / 2.0);
            let kp = |k: usize| to_image(r[4 + 2 * k] / s + a.x, r[5 + 2 * k] / s + a.y);
            let (e0, e1, nose, mouth) = (kp(0), kp(1), kp(2), kp(3));
            // Order the eyes by image x, as the ArcFace template does.
            let (le, re) = if e0.0 <= e1.0 { (e0, e1) } else { (e1, e0) };
            let [ml, mr] = mouth_corners(le, re, mouth);
            let face = Face {
                bbox: BBox {
                    x: x0,
                    y: y0,
                    width: x1 - x0,
                    height: y1 - y0,
                },
                score,
                landmarks: [le, re, nose, ml, mr],
            };
            if face
                .landmarks
                .iter()
                .all(|p| p.0.is_finite() && p.1.is_finite())
            {
                faces.push(face);
            }
        }
        let faces = nms(faces, self.config.nms_threshold, self.config.top_k);
        debug!(faces = faces.len(), "BlazeFace detections");
        Ok(faces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_grids_match_mediapipe_counts_and_centres() {
        let short = anchors(128, &[(8, 2), (16, 6)]);
        assert_eq!(short.len(), 896);
        assert_eq!(
            short[0],
            Anchor {
                x: 0.5 / 16.0,
                y: 0.5 / 16.0
            }
        );
        assert_eq!(short[1], short[0], "two anchors per stride-8 cell");
        assert_eq!(short[2].x, 1.5 / 16.0);
        // The stride-16 group starts after 16*16*2 anchors, six per 8x8 cell.
        assert_eq!(
            short[512],
            Anchor {
                x: 0.5 / 8.0,
                y: 0.5 / 8.0
            }
        );
        assert_eq!(short[517], short[512]);
        assert_eq!(short[518].x, 1.5 / 8.0);
        assert_eq!(
            short[895],
            Anchor {
                x: 7.5 / 8.0,
                y: 7.5 / 8.0
            }
        );
        let full = anchors(192, &[(4, 1)]);
        assert_eq!(full.len(), 2304);
        assert_eq!(
            full[48],
            Anchor {
                x: 0.5 / 48.0,
                y: 1.5 / 48.0
            }
        );
    }

    #[test]
    fn mouth_corners_follow_the_eye_line() {
        // Template geometry: eyes 35.24 apart, mouth centre below their midpoint.
        let [l, r] = mouth_corners((38.29, 51.7), (73.53, 51.5), (56.14, 92.285));
        assert!(
            (l.0 - 41.55).abs() < 0.1 && (l.1 - 92.37).abs() < 0.1,
            "{l:?}"
        );
        assert!(
            (r.0 - 70.73).abs() < 0.1 && (r.1 - 92.20).abs() < 0.1,
            "{r:?}"
        );
        // A face rolled by 90 degrees: the corners turn with the eyes.
        let [l, r] = mouth_corners((0.0, 0.0), (0.0, 10.0), (-10.0, 5.0));
        assert!((l.0 + 10.0).abs() < 1e-5 && (l.1 - 0.86).abs() < 1e-5);
        assert!((r.0 + 10.0).abs() < 1e-5 && (r.1 - 9.14).abs() < 1e-5);
    }
}
