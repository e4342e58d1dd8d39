//! The crate's errors: what an operator or the tensor decoder rejects ([`OpError`]), the node
//! it happened in ([`NodeError`]), and their conversion to [`edgeai_core::Error`] at the edge:
//! [`Error::InvalidModel`] while loading, [`Error::Run`] while running.

use edgeai_core::Error;

/// Why an operator (or the decoding of a tensor) failed. The text is the message users see.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpError {
    /// A required input is absent.
    #[error("missing input {0}")]
    MissingInput(usize),
    /// An attribute (or constant input) with a value the operator does not accept.
    #[error("{0}")]
    Attr(String),
    /// Operand shapes that do not fit together.
    #[error("{0}")]
    Shape(String),
    /// An axis outside the tensor's rank.
    #[error("axis {axis} is out of range for rank {rank}")]
    Axis { axis: i64, rank: usize },
    /// Shapes that do not broadcast.
    #[error("shapes {0:?} and {1:?} do not broadcast")]
    Broadcast(Vec<usize>, Vec<usize>),
    /// A tensor built from file data with more elements than the crate allows.
    #[error("a tensor of shape {0:?} is too large")]
    TooLarge(Vec<usize>),
    /// A shape whose element count overflows `usize`.
    #[error("shape {0:?} is too large")]
    Overflow(Vec<usize>),
    /// An element type the operation does not handle.
    #[error("{0}")]
    DType(String),
    /// A valid operator (or tensor) in a form this crate does not implement.
    #[error("{0}")]
    Unsupported(String),
    /// Values the operation cannot compute with (an index out of range, a division by zero).
    #[error("{0}")]
    Value(String),
    /// Reading a tensor back from the backend failed.
    #[error("{0}")]
    Read(String),
}

/// Returns `Err(OpError::$kind(format!(...)))`: an operator gives up, saying why.
macro_rules! bail {
    ($kind:ident, $($msg:tt)+) => {
        return Err($crate::error::OpError::$kind(format!($($msg)+)))
    };
}
pub(crate) use bail;

/// An [`OpError`] in a named node.
#[derive(Debug, thiserror::Error)]
#[error("{op} node `{node}`: {source}")]
pub(crate) struct NodeError {
    pub node: String,
    pub op: String,
    pub source: OpError,
}

/// A file the parser or the load-time folding rejects.
pub(crate) fn invalid(origin: &str, reason: impl ToString) -> Error {
    Error::InvalidModel {
        origin: origin.to_string(),
        reason: reason.to_string(),
    }
}

/// A failure while running a loaded model.
pub(crate) fn run_error(reason: impl ToString) -> Error {
    Error::Run {
        backend: crate::NAME.into(),
        reason: reason.to_string(),
    }
}
