use std::path::PathBuf;

use crate::DType;

/// Result alias used across edgeai.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in edgeai-core and in the backends built on it.
///
/// Every variant names what it is about (the file, the input, the operator), so the message
/// alone tells a user what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The model file could not be parsed (corrupt, truncated, not the expected format).
    #[error("invalid model {origin}: {reason}")]
    InvalidModel {
        /// Where the model came from (a path, or `<bytes>`).
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The model uses operators the backend cannot run.
    #[error("model {origin} uses operators that backend `{backend}` does not support: {}", ops.join(", "))]
    UnsupportedOperator {
        /// The backend's name.
        backend: String,
        /// Where the model came from.
        origin: String,
        /// The unsupported operator types (deduplicated).
        ops: Vec<String>,
    },
    /// The backend cannot load models of this format.
    #[error("backend `{backend}` cannot load {format} models")]
    UnsupportedFormat {
        /// The backend's name.
        backend: String,
        /// The format that was asked for.
        format: String,
    },
    /// `run` was given the wrong number of inputs.
    #[error("model expects {expected} input(s) ({names}), got {got}")]
    InputCount {
        /// How many the model takes.
        expected: usize,
        /// How many were given.
        got: usize,
        /// The model's input names, comma separated.
        names: String,
    },
    /// An input name that the model does not have.
    #[error("model has no input named `{name}` (inputs: {known})")]
    UnknownInput {
        /// The name given.
        name: String,
        /// The model's input names, comma separated.
        known: String,
    },
    /// An input the model needs was not given.
    #[error("missing input `{name}`")]
    MissingInput {
        /// The missing input's name.
        name: String,
    },
    /// An input has the wrong element type.
    #[error("input `{name}`: expected dtype {expected}, got {got}")]
    InputDType {
        /// The input's name.
        name: String,
        /// What the model wants.
        expected: DType,
        /// What was given.
        got: DType,
    },
    /// An input has the wrong shape.
    #[error("input `{name}`: expected shape {expected}, got {got:?}")]
    InputShape {
        /// The input's name.
        name: String,
        /// What the model wants (symbolic dimensions shown by name).
        expected: String,
        /// What was given.
        got: Vec<usize>,
    },
    /// A tensor's data does not match its shape or dtype.
    #[error("tensor: {0}")]
    Tensor(String),
    /// The backend failed while running the model.
    #[error("backend `{backend}` failed to run the model: {reason}")]
    Run {
        /// The backend's name.
        backend: String,
        /// The backend's message.
        reason: String,
    },
    /// The backend could not be initialised (e.g. a shared library is missing).
    #[error("backend `{backend}` is not available: {reason}")]
    BackendUnavailable {
        /// The backend's name.
        backend: String,
        /// Why, and what to do about it.
        reason: String,
    },
    /// A quantized-kernel call with inconsistent arguments.
    #[error("kernel: {0}")]
    Kernel(String),
    /// A call whose arguments disagree with each other or with the model.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
