//! The crate's error type.

/// Result alias for edgeai-llm.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in edgeai-llm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The GGUF file is malformed; `offset` is the byte offset where the problem was found.
    #[error("invalid GGUF ({origin}) at byte {offset}: {reason}")]
    Gguf {
        /// Where the file came from (path or `<bytes>`).
        origin: String,
        /// Byte offset of the problem.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A metadata key is missing or has the wrong type.
    #[error("GGUF metadata `{key}`: {reason}")]
    Metadata {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The model's architecture or a tensor's layout is not supported.
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// Building or running the tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary (size {vocab})")]
    TokenOutOfRange {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// The session's context is full.
    #[error("context overflow: {needed} tokens needed, the context holds {capacity}")]
    ContextOverflow {
        /// Tokens the request needs in total.
        needed: usize,
        /// The context length of the session.
        capacity: usize,
    },
    /// The chat template is not one edgeai can apply.
    #[error("unsupported chat template: {0}")]
    ChatTemplate(String),
    /// An invalid argument (sampler settings, empty prompt, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A kernel or core error.
    #[error(transparent)]
    Core(#[from] edgeai_core::Error),
    /// An error from another engine (e.g. candle).
    #[error("engine `{engine}`: {reason}")]
    Engine {
        /// The engine's name.
        engine: String,
        /// Its message.
        reason: String,
    },
}
