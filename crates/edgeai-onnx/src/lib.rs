//! # edgeai-onnx
//!
//! The workspace's one ONNX protobuf codec. Everything in edgeai that reads or writes ONNX
//! bytes itself goes through here: burn's run-time interpreter, the CLI's `inspect`, the tests
//! that hand-build models and the fuzz targets. (tract, ONNX Runtime and candle parse files
//! with their own engines' parsers.)
//!
//! - [`proto`]: the `onnx.proto` messages edgeai uses, as `prost` structs (plain data: decode,
//!   edit in place, encode).
//! - [`decode`] / [`read`]: bytes or a file to a [`proto::ModelProto`], a corrupt file being an
//!   [`Error::InvalidModel`] that names it, never a panic.
//! - [`OnnxInfo`]: the summary `edgeai inspect` prints (IR version, producer, opsets, inputs
//!   and outputs with symbolic dimensions, an operator histogram over all subgraphs).
//! - [`tensor_from_proto`] / [`read_tensor`]: a `TensorProto` (an initializer, a test's
//!   `input_0.pb`) to an edgeai [`edgeai_core::Tensor`]; a data type edgeai has no
//!   [`edgeai_core::DType`] for is an error that names it.
//! - [`build`]: small constructors for values, nodes, attributes, initializers and models.
//!
//! ```
//! use edgeai_onnx::{build, proto::dt, OnnxInfo};
//!
//! let x = build::value("x", dt::FLOAT, &[build::sym("n"), build::fixed(4)]);
//! let y = build::value("y", dt::FLOAT, &[build::sym("n"), build::fixed(4)]);
//! let graph = build::graph("relu", vec![build::node("Relu", &["x"], &["y"])], vec![], vec![x], vec![y]);
//! let bytes = build::model(graph, 13).to_bytes();
//!
//! let info = OnnxInfo::parse(&bytes)?;
//! assert_eq!(info.op_histogram, vec![("Relu".to_string(), 1)]);
//! assert_eq!(info.inputs[0].shape_string(), "[n, 4]");
//! # Ok::<(), edgeai_core::Error>(())
//! ```
#![warn(missing_docs)]

pub mod build;
pub mod proto;
mod summary;
mod tensor;

use std::path::Path;

pub use edgeai_core::{Error, Result};
use prost::Message;
pub use summary::{dtype_elem_type, elem_type_dtype, elem_type_name, OnnxInfo, ValueInfo};
pub use tensor::{decode_tensor, read_tensor, tensor_from_proto};

/// Decodes an ONNX model from its bytes. `origin` names the bytes in errors (a path, or
/// `<N bytes>`). An empty buffer, a protobuf that does not decode or a model without a graph
/// is an [`Error::InvalidModel`].
pub fn decode(bytes: &[u8], origin: &str) -> Result<proto::ModelProto> {
    let invalid = |reason: String| Error::InvalidModel {
        origin: origin.to_string(),
        reason,
    };
    if bytes.is_empty() {
        return Err(invalid("empty file".into()));
    }
    let model = proto::ModelProto::decode(bytes)
        .map_err(|e| invalid(format!("not a valid ONNX protobuf: {e}")))?;
    if model.graph.is_none() {
        return Err(invalid("no graph (not an ONNX model?)".into()));
    }
    Ok(model)
}

/// Reads and decodes an ONNX file; errors name the file.
pub fn read(path: impl AsRef<Path>) -> Result<proto::ModelProto> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(&bytes, &path.display().to_string())
}

/// The name bytes get in errors when they have no path.
pub fn bytes_origin(bytes: &[u8]) -> String {
    format!("<{} bytes>", bytes.len())
}

impl proto::ModelProto {
    /// The encoded model, ready to write to a `.onnx` file or to load from bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// The main graph (a decoded model always has one, see [`decode`]).
    pub fn main_graph(&self) -> Option<&proto::GraphProto> {
        self.graph.as_ref()
    }

    /// The opset version of the default (`ai.onnx`) domain, 1 when the model imports none.
    pub fn default_opset(&self) -> i64 {
        self.opset_import
            .iter()
            .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .max()
            .unwrap_or(1)
    }
}

#[cfg(test)]
mod tests;
