//! # edgeai-core
//!
//! The common currency of the edgeai workspace:
//!
//! - [`Tensor`]: a host tensor (shape, [`DType`], contiguous storage) that converts to and
//!   from [`ndarray::ArrayD`] without copying where the layout allows.
//! - [`Model`]: a loaded, runnable model with named, typed input and output specs
//!   ([`TensorSpec`], with symbolic dimensions). `Send + Sync`: one model serves many threads.
//! - [`Backend`]: a factory that loads a [`ModelSource`] (path or bytes) with
//!   [`LoadOptions`] (threads, optimisation level) into a `Box<dyn Model>`.
//! - [`Value`]: a host tensor or a [`BackendValue`], a value a backend keeps in its own form
//!   between runs ([`Model::run_values`]), for state such as a decoder's KV cache.
//! - [`Error`]: the one error type; a wrong input names the input and what was expected.
//!
//! Backends (tract, ONNX Runtime, candle, burn) live in their own crates and implement these
//! traits; `edgeai-vision` and `edgeai-llm` build on them and never on a backend directly.
//!
//! ```
//! use edgeai_core::{DType, Tensor};
//!
//! let t = Tensor::from_vec(vec![2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
//! assert_eq!(t.dtype(), DType::F32);
//! assert_eq!(t.shape(), &[2, 3]);
//! let view = t.view::<f32>().unwrap();
//! assert_eq!(view[[1, 2]], 6.0);
//! ```
#![warn(missing_docs)]

mod backend;
mod error;
mod model;
pub mod npy;
pub mod paths;
#[cfg(feature = "rayon")]
mod pool;
pub mod quant;
mod tensor;
mod value;

pub use backend::{
    guard_load, guard_run, panic_message, Backend, LoadOptions, ModelFormat, ModelSource, OptLevel,
};
pub use error::{Error, Result};
pub use model::{check_keep, validate_inputs, validate_values, Dim, Model, TensorSpec};
#[cfg(feature = "rayon")]
pub use pool::RunPool;
pub use quant::{GgmlType, KernelPath, QMatrix, Scratch};
pub use tensor::{DType, Element, Tensor, TensorData};
pub use value::{BackendValue, Held, Value};

/// Re-exported so users convert tensors with the same `ndarray` version edgeai uses.
pub use half;
/// Re-exported so users convert tensors with the same `ndarray` version edgeai uses.
pub use ndarray;
