use edgeai_core::{Backend, LoadOptions, ModelSource};
use tracing::debug;

use crate::align::align_face;
use crate::{Error, Face, FaceDetector, FaceEmbedder, Image, Result, SFace, YuNet, YuNetConfig};

/// A detected face and its L2-normalised embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct RecognizedFace {
    /// The detection (box, score, landmarks).
    pub face: Face,
    /// The embedding of the aligned face.
    pub embedding: Vec<f32>,
}

/// Detection, alignment and embedding in one object.
pub struct FaceRecognizer {
    detector: Box<dyn FaceDetector>,
    embedder: Box<dyn FaceEmbedder>,
}

impl std::fmt::Debug for FaceRecognizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceRecognizer")
            .field("embedding_dim", &self.embedder.dim())
            .finish()
    }
}

impl FaceRecognizer {
    /// Combines any detector and embedder.
    pub fn new(detector: Box<dyn FaceDetector>, embedder: Box<dyn FaceEmbedder>) -> Self {
        FaceRecognizer { detector, embedder }
    }

    /// Loads YuNet and SFace with `backend`.
    pub fn from_backend(
        backend: &dyn Backend,
        yunet: impl Into<ModelSource>,
        sface: impl Into<ModelSource>,
        options: &LoadOptions,
        config: YuNetConfig,
    ) -> Result<Self> {
        let det = YuNet::new(backend.load(yunet.into(), options)?, config)?;
        let emb = SFace::new(backend.load(sface.into(), options)?)?;
        debug!(backend = backend.name(), "face recognizer loaded");
        Ok(Self::new(Box::new(det), Box::new(emb)))
    }

    /// The fetched YuNet and SFace (`face/yunet.onnx`, `face/sface.onnx` under `models_dir`,
    /// as `scripts/fetch-models` lays them out), each replaced by `yunet` / `sface` when
    /// given, loaded with `backend`. A missing file is [`Error::Io`] naming it and saying how
    /// to fetch it.
    pub fn from_default_models(
        backend: &dyn Backend,
        models_dir: Option<&std::path::Path>,
        yunet: Option<std::path::PathBuf>,
        sface: Option<std::path::PathBuf>,
        options: &LoadOptions,
    ) -> Result<Self> {
        let find = |given: Option<std::path::PathBuf>, rel: &str| {
            let p = match (given, models_dir) {
                (Some(p), _) => p,
                (None, Some(d)) => d.join(rel),
                (None, None) => std::path::PathBuf::from("models").join(rel),
            };
            if p.is_file() {
                Ok(p)
            } else {
                Err(Error::io(
                    &p,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "not found (run scripts/fetch-models, or give the model's path)",
                    ),
                ))
            }
        };
        let det = find(yunet, "face/yunet.onnx")?;
        let emb = find(sface, "face/sface.onnx")?;
        Self::from_backend(backend, det, emb, options, YuNetConfig::default())
    }

    /// The detector.
    pub fn detector(&self) -> &dyn FaceDetector {
        self.detector.as_ref()
    }

    /// The embedder.
    pub fn embedder(&self) -> &dyn FaceEmbedder {
        self.embedder.as_ref()
    }

    /// Faces in `image`, best first.
    pub fn detect(&self, image: &Image) -> Result<Vec<Face>> {
        self.detector.detect(image)
    }

    /// The aligned crops of `faces` (their landmarks mapped onto the ArcFace template).
    pub fn align(&self, image: &Image, faces: &[Face]) -> Result<Vec<Image>> {
        faces
            .iter()
            .map(|f| align_face(image, &f.landmarks))
            .collect()
    }

    /// Embeddings of given faces of `image`.
    pub fn embed_faces(&self, image: &Image, faces: &[Face]) -> Result<Vec<Vec<f32>>> {
        let crops = self.align(image, faces)?;
        self.embedder.embed(&crops)
    }

    /// Every face in `image` with its embedding, best detection first.
    pub fn analyze(&self, image: &Image) -> Result<Vec<RecognizedFace>> {
        let faces = self.detect(image)?;
        let embs = self.embed_faces(image, &faces)?;
        Ok(faces
            .into_iter()
            .zip(embs)
            .map(|(face, embedding)| RecognizedFace { face, embedding })
            .collect())
    }

    /// The embedding of the largest face in `image` (for enrolment from a portrait).
    /// `origin` names the image in the error when there is no face.
    pub fn largest_face(&self, image: &Image, origin: &str) -> Result<RecognizedFace> {
        let faces = self.detect(image)?;
        let face = faces
            .into_iter()
            .max_by(|a, b| a.bbox.area().total_cmp(&b.bbox.area()))
            .ok_or_else(|| Error::NoFace(origin.to_string()))?;
        let embedding = self
            .embed_faces(image, std::slice::from_ref(&face))?
            .into_iter()
            .next()
            .ok_or_else(|| Error::NoFace(origin.to_string()))?;
        Ok(RecognizedFace { face, embedding })
    }
}
