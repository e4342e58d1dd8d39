//! Face detection: the [`FaceDetector`] trait, [`Face`] results, non-maximum suppression
//! and the YuNet detector.

use edgeai_core::{DType, Dim, Model};
use tracing::debug;

use crate::image::{ChannelOrder, Normalization};
use crate::{Error, Image, Result};

/// An axis-aligned box in image pixels: top-left corner, width and height.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BBox {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width.
    pub width: f32,
    /// Height.
    pub height: f32,
}

impl BBox {
    /// Area (0 for a degenerate box).
    pub fn area(&self) -> f32 {
        self.width.max(0.0) * self.height.max(0.0)
    }

    /// Intersection over union with `other` (0 when either box is empty).
    pub fn iou(&self, other: &BBox) -> f32 {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = (self.x + self.width).min(other.x + other.width);
        let y1 = (self.y + self.height).min(other.y + other.height);
        let inter = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }

    /// Whether the point lies inside the box (edges included).
    pub fn contains(&self, x: f32, y: f32) -> bool {
        x >= self.x && y >= self.y && x <= self.x + self.width && y <= self.y + self.height
    }
}

/// A detected face.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Face {
    /// The face box, in the coordinates of the image given to the detector.
    pub bbox: BBox,
    /// Detection confidence in 0..1.
    pub score: f32,
    /// Five landmarks in image coordinates, in [`crate::align::ARCFACE_112`] order: the eye
    /// at image left, the other eye, the nose tip, the mouth corner at image left, the other
    /// mouth corner.
    pub landmarks: [(f32, f32); 5],
}

/// Anything that finds faces with five landmarks in an image.
pub trait FaceDetector: Send + Sync {
    /// The faces in `image`, best score first.
    fn detect(&self, image: &Image) -> Result<Vec<Face>>;
}

/// Greedy non-maximum suppression: keeps the best-scoring faces, dropping any face whose box
/// overlaps a kept one by more than `iou_threshold`; at most `top_k` are kept. The result is
/// sorted by score, best first.
pub fn nms(mut faces: Vec<Face>, iou_threshold: f32, top_k: usize) -> Vec<Face> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Face> = Vec::new();
    for f in faces {
        if kept.len() >= top_k {
            break;
        }
        if kept.iter().all(|k| k.bbox.iou(&f.bbox) <= iou_threshold) {
            kept.push(f);
        }
    }
    kept
}

/// YuNet settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YuNetConfig {
    /// Faces scoring below this are dropped. OpenCV's demo uses 0.9; lower finds more
    /// partial and small faces, with more false positives.
    pub score_threshold: f32,
    /// NMS IoU threshold (OpenCV: 0.3).
    pub nms_threshold: f32,
    /// At most this many faces.
    pub top_k: usize,
    /// For a model with a symbolic input size, images whose longer side exceeds this are
    /// scaled down to it first (the model's cost grows with the pixel count). A model with a
    /// fixed input size is always fed at that size.
    pub max_side: u32,
}

impl Default for YuNetConfig {
    fn default() -> Self {
        YuNetConfig {
            score_threshold: 0.8,
            nms_threshold: 0.3,
            top_k: 5000,
            max_side: 640,
        }
    }
}

const STRIDES: [usize; 3] = [8, 16, 32];
const HEADS: [&str; 4] = ["cls", "obj", "bbox", "kps"];

/// The YuNet face detector (OpenCV zoo, `face_detection_yunet_2023mar`), on any backend.
///
/// Input: BGR, 0..255, no normalisation, `[1, 3, H, W]` with H and W multiples of 32, the
/// image padded on the right and bottom (as OpenCV's `FaceDetectorYN`). Outputs
/// `cls_*`, `obj_*`, `bbox_*`, `kps_*` for strides 8, 16 and 32, one row per grid cell;
/// score = `sqrt(clamp(cls) * clamp(obj))`; box centre = `(cell + offset) * stride`, size =
/// `exp(pred) * stride`; landmarks = `(cell + offset) * stride`.
pub struct YuNet {
    model: Box<dyn Model>,
    fixed: Option<(u32, u32)>,
    /// Output positions of cls/obj/bbox/kps for strides 8/16/32: `heads[head][stride]`.
    heads: [[usize; 3]; 4],
    config: YuNetConfig,
}

impl std::fmt::Debug for YuNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YuNet")
            .field("backend", &self.model.backend())
            .field("fixed_input", &self.fixed)
            .field("config", &self.config)
            .finish()
    }
}

fn mismatch(reason: String) -> Error {
    Error::ModelMismatch {
        stage: "YuNet detector",
        reason,
    }
}

/// Output positions `heads[head][stride]`: by name (`cls_8`...), or, when a backend does not
/// keep the ONNX output names, by OpenCV's output order (cls, obj, bbox, kps for strides
/// 8, 16, 32) after checking each output's last dimension (1, 1, 4, 10) where it is known.
fn head_positions(outputs: &[edgeai_core::TensorSpec]) -> Result<[[usize; 3]; 4]> {
    let mut heads = [[0usize; 3]; 4];
    let mut by_name = true;
    'find: for (h, head) in HEADS.iter().enumerate() {
        for (s, stride) in STRIDES.iter().enumerate() {
            let name = format!("{head}_{stride}");
            match outputs.iter().position(|o| o.name == name) {
                Some(i) => heads[h][s] = i,
                None => {
                    by_name = false;
                    break 'find;
                }
            }
        }
    }
    if by_name {
        return Ok(heads);
    }
    let names = || {
        outputs
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if outputs.len() != 12 {
        return Err(mismatch(format!(
            "no output `cls_8`.. `kps_32` and not 12 outputs (outputs: {})",
            names()
        )));
    }
    for (h, (width, row)) in [1usize, 1, 4, 10].into_iter().zip(&mut heads).enumerate() {
        for (s, slot) in row.iter_mut().enumerate() {
            let i = h * 3 + s;
            if let Some(Some(Dim::Fixed(w))) = outputs[i].shape.as_ref().map(|d| d.last()) {
                if *w != width {
                    return Err(mismatch(format!(
                        "outputs are not named cls_8.. kps_32 and output {i} ends in {w}, \
                         not {width} (outputs: {})",
                        names()
                    )));
                }
            }
            *slot = i;
        }
    }
    debug!(outputs = %names(), "YuNet outputs matched by position");
    Ok(heads)
}

impl YuNet {
    /// Wraps a loaded YuNet model; checks its input and outputs.
    pub fn new(model: Box<dyn Model>, config: YuNetConfig) -> Result<Self> {
        let inputs = model.inputs();
        if inputs.len() != 1 {
            return Err(mismatch(format!(
                "expected 1 input, the model has {}",
                inputs.len()
            )));
        }
        let input = &inputs[0];
        if input.dtype != DType::F32 {
            return Err(mismatch(format!(
                "input dtype is {}, expected f32",
                input.dtype
            )));
        }
        let fixed = match input.shape.as_deref() {
            Some([_, Dim::Fixed(3), h, w]) => match (h, w) {
                (Dim::Fixed(h), Dim::Fixed(w)) => {
                    if h % 32 != 0 || w % 32 != 0 {
                        return Err(mismatch(format!(
                            "fixed input {w}x{h} is not a multiple of 32"
                        )));
                    }
                    Some((*w as u32, *h as u32))
                }
                _ => None,
            },
            None => None,
            Some(_) => {
                return Err(mismatch(format!(
                    "input shape {} is not [1, 3, H, W]",
                    input.shape_string()
                )))
            }
        };
        let heads = head_positions(model.outputs())?;
        if !(0.0..=1.0).contains(&config.score_threshold) || config.max_side < 32 {
            return Err(Error::InvalidArgument(format!(
                "YuNet config out of range: {config:?}"
            )));
        }
        debug!(backend = model.backend(), ?fixed, "YuNet ready");
        Ok(YuNet {
            model,
            fixed,
            heads,
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &YuNetConfig {
        &self.config
    }

    /// Changes the settings (thresholds apply from the next call).
    pub fn set_config(&mut self, config: YuNetConfig) {
        self.config = config;
    }

    /// The fixed input size `(width, height)` of the model, if it has one.
    pub fn fixed_input(&self) -> Option<(u32, u32)> {
        self.fixed
    }

    /// Prepares the padded network input and the scale from image to input coordinates.
    fn prepare(&self, image: &Image) -> Result<(Image, f32, f32)> {
        match self.fixed {
            Some((w, h)) => {
                let (img, lb) = image.letterbox(w, h)?;
                Ok((img, lb.scale_x, lb.scale_y))
            }
            None => {
                let long = image.width().max(image.height());
                let (img, sx, sy) = if long > self.config.max_side {
                    let s = self.config.max_side as f32 / long as f32;
                    let w = ((image.width() as f32 * s).round() as u32).max(1);
                    let h = ((image.height() as f32 * s).round() as u32).max(1);
                    let r = image.resize(w, h)?;
                    let (sx, sy) = (
                        w as f32 / image.width() as f32,
                        h as f32 / image.height() as f32,
                    );
                    (r, sx, sy)
                } else {
                    (image.clone(), 1.0, 1.0)
                };
                let pw = img.width().div_ceil(32) * 32;
                let ph = img.height().div_ceil(32) * 32;
                Ok((img.pad_to(pw, ph), sx, sy))
            }
        }
    }
}

impl FaceDetector for YuNet {
    fn detect(&self, image: &Image) -> Result<Vec<Face>> {
        let (input, sx, sy) = self.prepare(image)?;
        let (pw, ph) = (input.width() as usize, input.height() as usize);
        let tensor = input.to_tensor(ChannelOrder::Bgr, &Normalization::NONE)?;
        let outs = self.model.run(vec![tensor])?;
        let mut faces = Vec::new();
        let thr = self.config.score_threshold;
        for (s, &stride) in STRIDES.iter().enumerate() {
            let (cols, rows) = (pw / stride, ph / stride);
            let n = cols * rows;
            let get = |head: usize, width: usize| -> Result<&[f32]> {
                let t = outs.get(self.heads[head][s]).ok_or_else(|| {
                    mismatch(format!("the backend returned {} outputs", outs.len()))
                })?;
                let v = t.as_slice::<f32>()?;
                if v.len() != n * width {
                    return Err(mismatch(format!(
                        "output {}_{stride} has {} values, expected {n} x {width} for a {pw}x{ph} input",
                        HEADS[head],
                        v.len()
                    )));
                }
                Ok(v)
            };
            let (cls, obj, bbox, kps) = (get(0, 1)?, get(1, 1)?, get(2, 4)?, get(3, 10)?);
            let st = stride as f32;
            for idx in 0..n {
                let score = (cls[idx].clamp(0.0, 1.0) * obj[idx].clamp(0.0, 1.0)).sqrt();
                if score < thr || !score.is_finite() {
                    continue;
                }
                let (r, c) = ((idx / cols) as f32, (idx % cols) as f32);
                let b = &bbox[idx * 4..idx * 4 + 4];
                let cx = (c + b[0]) * st;
                let cy = (r + b[1]) * st;
                let w = b[2].exp() * st;
                let h = b[3].exp() * st;
                let k = &kps[idx * 10..idx * 10 + 10];
                let mut landmarks = [(0.0f32, 0.0f32); 5];
                for (i, lm) in landmarks.iter_mut().enumerate() {
                    *lm = ((k[2 * i] + c) * st / sx, (k[2 * i + 1] + r) * st / sy);
                }
                faces.push(Face {
                    bbox: BBox {
                        x: (cx - w / 2.0) / sx,
                        y: (cy - h / 2.0) / sy,
                        width: w / sx,
                        height: h / sy,
                    },
                    score,
                    landmarks,
                });
            }
        }
        let candidates = faces.len();
        let faces = nms(faces, self.config.nms_threshold, self.config.top_k);
        debug!(candidates, kept = faces.len(), "YuNet detect");
        Ok(faces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32, y: f32, s: f32, score: f32) -> Face {
        Face {
            bbox: BBox {
                x,
                y,
                width: s,
                height: s,
            },
            score,
            landmarks: [(x, y); 5],
        }
    }

    /// A stand-in for YuNet: a fixed 640x640 input and hand-made head outputs.
    struct FakeYuNet {
        inputs: Vec<edgeai_core::TensorSpec>,
        outputs: Vec<edgeai_core::TensorSpec>,
    }

    impl FakeYuNet {
        fn new() -> Self {
            let spec = |name: String, shape: Vec<usize>| edgeai_core::TensorSpec {
                name,
                dtype: DType::F32,
                shape: Some(shape.into_iter().map(Dim::Fixed).collect()),
            };
            let mut outputs = Vec::new();
            for (head, w) in [("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10)] {
                for s in STRIDES {
                    outputs.push(spec(
                        format!("{head}_{s}"),
                        vec![1, (640 / s) * (640 / s), w],
                    ));
                }
            }
            FakeYuNet {
                inputs: vec![spec("input".into(), vec![1, 3, 640, 640])],
                outputs,
            }
        }
    }

    impl Model for FakeYuNet {
        fn backend(&self) -> &str {
            "fake"
        }
        fn inputs(&self) -> &[edgeai_core::TensorSpec] {
            &self.inputs
        }
        fn outputs(&self) -> &[edgeai_core::TensorSpec] {
            &self.outputs
        }
        fn run(
            &self,
            inputs: Vec<edgeai_core::Tensor>,
        ) -> edgeai_core::Result<Vec<edgeai_core::Tensor>> {
            edgeai_core::validate_inputs(&self.inputs, &inputs)?;
            // The input is BGR: the test image is pure red, so channel 2 holds 255.
            let x = inputs[0].view::<f32>()?;
            assert_eq!(x[[0, 2, 10, 10]], 255.0);
            assert_eq!(x[[0, 0, 10, 10]], 0.0);
            // Below the letterboxed image (320 rows) the padding is black.
            assert_eq!(x[[0, 2, 400, 10]], 0.0);
            // Head and stride from the position (OpenCV's order), not the name.
            self.outputs
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    let shape = o.fixed_shape().unwrap_or_default();
                    let (cells, w) = (shape[1], shape[2]);
                    let mut v = vec![0f32; cells * w];
                    if i % 3 == 1 {
                        // cell (row 5, col 10) of the 40-column grid: a face
                        let idx = 5 * 40 + 10;
                        // cell (row 5, col 11): an overlapping, weaker duplicate
                        let dup = idx + 1;
                        match HEADS[i / 3] {
                            "cls" | "obj" => {
                                v[idx] = 0.81;
                                v[dup] = 0.8;
                                v[0] = 0.5; // below the threshold
                            }
                            "bbox" => {
                                v[idx * 4..idx * 4 + 4].copy_from_slice(&[
                                    0.5,
                                    0.5,
                                    4f32.ln(),
                                    2f32.ln(),
                                ]);
                                v[dup * 4..dup * 4 + 4].copy_from_slice(&[
                                    -0.3,
                                    0.5,
                                    4f32.ln(),
                                    2f32.ln(),
                                ]);
                            }
                            _ => {}
                        }
                    }
                    edgeai_core::Tensor::from_vec(shape, v)
                })
                .collect()
        }
    }

    #[test]
    fn yunet_decodes_heads_and_maps_back_through_the_letterbox() {
        let det = YuNet::new(Box::new(FakeYuNet::new()), YuNetConfig::default()).unwrap();
        assert_eq!(det.fixed_input(), Some((640, 640)));
        let red: Vec<u8> = (0..1280 * 640).flat_map(|_| [255u8, 0, 0]).collect();
        let img = Image::from_rgb(1280, 640, red).unwrap();
        let faces = det.detect(&img).unwrap();
        assert_eq!(faces.len(), 1, "{faces:?}");
        let f = faces[0];
        assert!((f.score - 0.81).abs() < 1e-6);
        // centre (10.5, 5.5) * 16 = (168, 88), size (4, 2) * 16, then / 0.5 (letterbox)
        let want = BBox {
            x: 272.0,
            y: 144.0,
            width: 128.0,
            height: 64.0,
        };
        for (g, w) in [
            (f.bbox.x, want.x),
            (f.bbox.y, want.y),
            (f.bbox.width, want.width),
            (f.bbox.height, want.height),
        ] {
            assert!((g - w).abs() < 1e-3, "{:?} vs {want:?}", f.bbox);
        }
        assert_eq!(f.landmarks[0], (320.0, 160.0));
    }

    #[test]
    fn yunet_rejects_models_without_its_heads() {
        let mut m = FakeYuNet::new();
        m.outputs.retain(|o| o.name != "kps_32");
        let e = YuNet::new(Box::new(m), YuNetConfig::default()).unwrap_err();
        assert!(e.to_string().contains("not 12 outputs"), "{e}");
        // unnamed outputs in OpenCV's order are matched by position and shape
        let mut m = FakeYuNet::new();
        for (i, o) in m.outputs.iter_mut().enumerate() {
            o.name = format!("out{i}");
        }
        let det = YuNet::new(Box::new(m), YuNetConfig::default()).unwrap();
        let red: Vec<u8> = (0..1280 * 640).flat_map(|_| [255u8, 0, 0]).collect();
        let faces = det
            .detect(&Image::from_rgb(1280, 640, red).unwrap())
            .unwrap();
        assert_eq!(faces.len(), 1);
        // ... but not when the shapes say otherwise
        let mut m = FakeYuNet::new();
        for o in m.outputs.iter_mut() {
            o.name = format!("x{}", o.name);
        }
        m.outputs.swap(0, 6);
        let e = YuNet::new(Box::new(m), YuNetConfig::default()).unwrap_err();
        assert!(e.to_string().contains("ends in 4"), "{e}");
    }

    #[test]
    fn iou_of_known_boxes() {
        let a = BBox {
            x: 0.0,
            y: 0.0,
            width: 10.0,
            height: 10.0,
        };
        let b = BBox {
            x: 5.0,
            y: 0.0,
            width: 10.0,
            height: 10.0,
        };
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(a.iou(&BBox { x: 20.0, ..a }), 0.0);
        assert_eq!(a.iou(&a), 1.0);
        assert!(a.contains(10.0, 10.0) && !a.contains(10.1, 5.0));
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_faces() {
        let faces = vec![
            face(0.0, 0.0, 10.0, 0.8),
            face(1.0, 1.0, 10.0, 0.95),
            face(50.0, 50.0, 10.0, 0.7),
            face(51.0, 50.0, 10.0, 0.6),
        ];
        let kept = nms(faces.clone(), 0.3, 10);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].score, 0.95);
        assert_eq!(kept[1].score, 0.7);
        assert_eq!(nms(faces.clone(), 0.3, 1).len(), 1);
        assert_eq!(nms(faces, 1.0, 10).len(), 4);
    }
}
