use std::path::PathBuf;

/// Result alias for edgeai-vision.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in edgeai-vision.
///
/// Each variant names what it is about (the file, the image size, the model output), so the
/// message alone tells a user what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error from edgeai-core or a backend (loading or running a model).
    #[error(transparent)]
    Core(#[from] edgeai_core::Error),
    /// Reading or writing a file failed.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a decodable JPEG or PNG image (empty, truncated, another format).
    #[error("cannot decode image {origin}: {reason}")]
    Decode {
        /// Where the bytes came from (a path, or `<N bytes>`).
        origin: String,
        /// What the decoder said.
        reason: String,
    },
    /// The image has more pixels than the configured limit (a decompression bomb guard).
    #[error(
        "image {origin} is {width}x{height} = {pixels} pixels, above the limit of {limit} pixels"
    )]
    ImageTooLarge {
        /// Where the image came from.
        origin: String,
        /// Width in pixels.
        width: u64,
        /// Height in pixels.
        height: u64,
        /// `width * height`.
        pixels: u64,
        /// The configured limit.
        limit: u64,
    },
    /// An image with zero width or height, or a pixel buffer whose length does not match.
    #[error("invalid image: {0}")]
    InvalidImage(String),
    /// A model whose inputs or outputs are not what this pipeline stage expects.
    #[error("model does not fit {stage}: {reason}")]
    ModelMismatch {
        /// The pipeline stage (`YuNet detector`, `SFace embedder`...).
        stage: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Landmarks that do not determine a similarity transform (all at one point, NaN...).
    #[error("cannot align face: {0}")]
    Alignment(String),
    /// An embedding of the wrong dimension, all zeros or with non-finite values.
    #[error("invalid embedding: {0}")]
    InvalidEmbedding(String),
    /// An invalid argument (empty name, `k == 0`, a bad threshold...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The file exists but is not an edgeai gallery.
    #[error("{path} is not an edgeai gallery: {reason}")]
    NotAGallery {
        /// The file.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// The gallery was written by a newer edgeai with a schema this version cannot read.
    #[error(
        "gallery {path} has schema version {found}; this edgeai reads up to version {supported}: upgrade edgeai"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The schema version in the file.
        found: i64,
        /// The newest schema this build reads.
        supported: i64,
    },
    /// A SQLite error while reading or writing the gallery.
    #[error("gallery database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// A search needs `f32` rows that the index does not keep in memory
    /// ([`crate::index::RowStorage::Int8Only`]) and was given no
    /// [`crate::index::RowSource`] for them (or cannot use one: an `f32` scan).
    #[error("no f32 rows in memory: {0}")]
    NoF32Rows(String),
    /// The `f32` rows an index re-scores from (its [`crate::index::RowSource`], e.g. the
    /// gallery's SQLite file) no longer hold a row the in-memory index does, or hold a
    /// different one: the file was changed behind this process. Reopen the gallery.
    #[error("stale gallery: row {key} {reason}; the stored rows changed behind the in-memory index (reopen the gallery)")]
    StaleGallery {
        /// The row's key (a gallery's embedding row id).
        key: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// No face was found where one was needed (e.g. a photo to enrol).
    #[error("no face found in {0}")]
    NoFace(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
