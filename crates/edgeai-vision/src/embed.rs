//! Face embeddings: the [`FaceEmbedder`] trait and the SFace model.

use edgeai_core::{DType, Dim, Model};
use tracing::debug;

use crate::image::{images_to_tensor, ChannelOrder, Normalization};
use crate::{Error, Image, Result};

/// Anything that maps aligned face crops to L2-normalised embeddings.
pub trait FaceEmbedder: Send + Sync {
    /// Side of the square aligned crop the model takes (112 for SFace).
    fn input_size(&self) -> u32;

    /// Embedding dimension.
    fn dim(&self) -> usize;

    /// One L2-normalised embedding per aligned face, in order.
    fn embed(&self, faces: &[Image]) -> Result<Vec<Vec<f32>>>;
}

/// L2-normalises `v` in place; errors when it is all zeros or not finite.
pub fn l2_normalize(v: &mut [f32]) -> Result<()> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm <= f32::MIN_POSITIVE {
        return Err(Error::InvalidEmbedding(format!(
            "norm {norm} cannot be normalised"
        )));
    }
    v.iter_mut().for_each(|x| *x /= norm);
    Ok(())
}

/// Cosine similarity of two vectors (their dot product divided by both norms); 0 when either
/// is zero.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na <= 0.0 || nb <= 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// Cosine threshold for SFace from the OpenCV zoo (`face_recognition_sface`): pairs scoring
/// at or above it are the same person.
pub const SFACE_COSINE_THRESHOLD: f32 = 0.363;

/// The SFace embedder (OpenCV zoo, `face_recognition_sface_2021dec`): 112x112 aligned face,
/// RGB 0..255 (OpenCV's `blobFromImage(swapRB=true)` of a BGR crop, no scaling), 128-d output.
/// Several faces run as one batch when the model's batch dimension is symbolic.
pub struct SFace {
    model: Box<dyn Model>,
    batched: bool,
    dim: usize,
}

impl std::fmt::Debug for SFace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SFace")
            .field("backend", &self.model.backend())
            .field("batched", &self.batched)
            .field("dim", &self.dim)
            .finish()
    }
}

fn mismatch(reason: String) -> Error {
    Error::ModelMismatch {
        stage: "SFace embedder",
        reason,
    }
}

impl SFace {
    /// Wraps a loaded SFace model; checks its input (`[N, 3, 112, 112]` f32) and output.
    pub fn new(model: Box<dyn Model>) -> Result<Self> {
        let (inputs, outputs) = (model.inputs(), model.outputs());
        if inputs.len() != 1 || outputs.is_empty() {
            return Err(mismatch(format!(
                "expected 1 input and an output, the model has {} and {}",
                inputs.len(),
                outputs.len()
            )));
        }
        let input = &inputs[0];
        if input.dtype != DType::F32 {
            return Err(mismatch(format!(
                "input dtype is {}, expected f32",
                input.dtype
            )));
        }
        let batched = match input.shape.as_deref() {
            Some([b, c, h, w]) => {
                let ok = |d: &Dim| matches!(d, Dim::Fixed(112) | Dim::Symbolic(_));
                if !matches!(c, Dim::Fixed(3) | Dim::Symbolic(_)) || !ok(h) || !ok(w) {
                    return Err(mismatch(format!(
                        "input shape {} is not [N, 3, 112, 112]",
                        input.shape_string()
                    )));
                }
                matches!(b, Dim::Symbolic(_))
            }
            None => false,
            Some(_) => {
                return Err(mismatch(format!(
                    "input shape {} is not [N, 3, 112, 112]",
                    input.shape_string()
                )))
            }
        };
        let dim = match outputs[0].shape.as_deref() {
            Some([_, Dim::Fixed(d)]) => *d,
            _ => 128,
        };
        debug!(backend = model.backend(), batched, dim, "SFace ready");
        Ok(SFace {
            model,
            batched,
            dim,
        })
    }

    /// Whether several faces run as one batch.
    pub fn is_batched(&self) -> bool {
        self.batched
    }

    fn run(&self, faces: &[Image]) -> Result<Vec<Vec<f32>>> {
        let t = images_to_tensor(faces, ChannelOrder::Rgb, &Normalization::NONE)?;
        let out = self.model.run(vec![t])?;
        let first = out
            .into_iter()
            .next()
            .ok_or_else(|| mismatch("the backend returned no output".into()))?;
        let v = first.into_vec::<f32>()?;
        if v.len() != faces.len() * self.dim {
            return Err(mismatch(format!(
                "output has {} values for {} faces, expected {} each",
                v.len(),
                faces.len(),
                self.dim
            )));
        }
        v.chunks_exact(self.dim)
            .map(|c| {
                let mut e = c.to_vec();
                l2_normalize(&mut e)?;
                Ok(e)
            })
            .collect()
    }
}

impl FaceEmbedder for SFace {
    fn input_size(&self) -> u32 {
        112
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&self, faces: &[Image]) -> Result<Vec<Vec<f32>>> {
        if let Some(bad) = faces.iter().find(|f| f.width() != 112 || f.height() != 112) {
            return Err(Error::InvalidArgument(format!(
                "SFace takes 112x112 aligned faces, got {bad:?}"
            )));
        }
        if faces.is_empty() {
            return Ok(Vec::new());
        }
        if self.batched {
            self.run(faces)
        } else {
            let mut out = Vec::with_capacity(faces.len());
            for f in faces {
                out.extend(self.run(std::slice::from_ref(f))?);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_and_cosine() {
        let mut v = vec![3.0, 4.0];
        l2_normalize(&mut v).unwrap();
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert!(l2_normalize(&mut [0.0, 0.0]).is_err());
        assert!(l2_normalize(&mut [f32::NAN, 1.0]).is_err());
        assert!((cosine(&[1.0, 0.0], &[2.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 5.0]).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }
}
