//! # edgeai-backend-tract
//!
//! The default edgeai backend: [tract](https://crates.io/crates/tract-onnx), a pure-Rust
//! inference engine. It loads ONNX models from a path or bytes, optimises them, and runs them
//! behind edgeai-core's [`Backend`] / [`Model`] traits. TensorFlow Lite flatbuffers (`.tflite`,
//! e.g. MediaPipe's BlazeFace) load through tract-tflite the same way.
//!
//! - Symbolic dimensions (a batch size, an image size) stay symbolic: the model is optimised
//!   once and the sizes are resolved at each run from the inputs.
//! - [`LoadOptions::threads`] sets the size of a thread pool owned by the loaded model
//!   (tract's matrix-multiply executor); `None` or `1` runs single-threaded.
//! - An operator tract lacks, a truncated or corrupt file, or bytes that are not ONNX give an
//!   [`Error`] that names the operator or the problem.
//!
//! ```no_run
//! use edgeai_backend_tract::TractBackend;
//! use edgeai_core::{Backend, DType, LoadOptions, Tensor};
//!
//! let model = TractBackend::new().load("models/face/sface.onnx".into(), &LoadOptions::new())?;
//! let out = model.run(vec![Tensor::zeros(DType::F32, vec![1, 3, 112, 112])?])?;
//! assert_eq!(out[0].shape(), &[1, 128]);
//! # Ok::<(), edgeai_core::Error>(())
//! ```
#![warn(missing_docs)]

use std::sync::Arc;

use edgeai_core::{
    guard_load, guard_run, validate_inputs, Backend, DType, Dim, Error, LoadOptions, Model,
    ModelFormat, ModelSource, OptLevel, Result, Tensor, TensorData, TensorSpec,
};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::unimpl::UnimplementedOp;

const NAME: &str = "tract";

/// The tract backend. Cheap to create; holds no state.
#[derive(Debug, Default, Clone, Copy)]
pub struct TractBackend;

impl TractBackend {
    /// Creates the backend.
    pub fn new() -> Self {
        TractBackend
    }
}

impl Backend for TractBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn formats(&self) -> &'static [ModelFormat] {
        &[ModelFormat::Onnx, ModelFormat::Tflite]
    }

    fn load(&self, source: ModelSource, options: &LoadOptions) -> Result<Box<dyn Model>> {
        let origin = source.origin();
        let format = self.check_format(&source)?;
        let bytes = source.into_bytes()?;
        // tract panics on some malformed graphs (e.g. a graph output that no node produces:
        // found by fuzz/, target onnx_tract); a bad file must be an error, not a panic.
        // Nothing outlives a panicking load, so no broken state can be observed.
        guard_load(NAME, &origin, || {
            load_bytes(format, &bytes, &origin, options)
        })
    }
}

fn load_bytes(
    format: ModelFormat,
    bytes: &[u8],
    origin: &str,
    options: &LoadOptions,
) -> Result<Box<dyn Model>> {
    {
        let origin = origin.to_string();
        let typed = match format {
            ModelFormat::Tflite => load_tflite(bytes, &origin)?,
            _ => load_onnx(bytes, &origin)?,
        };
        let invalid = |reason: String| Error::InvalidModel {
            origin: origin.clone(),
            reason,
        };
        let typed = match options.optimization {
            OptLevel::None => typed,
            OptLevel::Basic => typed.into_decluttered().map_err(|e| invalid(chain(&e)))?,
            OptLevel::All => typed.into_optimized().map_err(|e| invalid(chain(&e)))?,
        };
        let inputs = specs(
            &typed,
            typed.input_outlets().map_err(|e| invalid(chain(&e)))?,
        )?;
        let outputs = specs(
            &typed,
            typed.output_outlets().map_err(|e| invalid(chain(&e)))?,
        )?;
        let threads = options.threads.unwrap_or(1);
        let run_options = RunOptions {
            executor: (threads > 1).then(|| multithread::Executor::multithread(threads)),
            ..Default::default()
        };
        let plan = typed
            .into_runnable_with_options(&run_options)
            .map_err(|e| invalid(chain(&e)))?;
        tracing::debug!(%origin, threads, inputs = inputs.len(), outputs = outputs.len(), "tract model loaded");
        Ok(Box::new(TractModel {
            plan,
            inputs,
            outputs,
        }))
    }
}

/// Parses ONNX bytes into a typed model, listing every operator tract lacks.
fn load_onnx(bytes: &[u8], origin: &str) -> Result<TypedModel> {
    let invalid = |reason: String| Error::InvalidModel {
        origin: origin.to_string(),
        reason,
    };
    let onnx = tract_onnx::onnx();
    let proto = onnx
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| invalid(chain(&e)))?;
    if proto.graph.is_none() {
        return Err(invalid("not an ONNX model: no graph".into()));
    }
    let inference = onnx
        .model_for_proto_model(&proto)
        .map_err(|e| invalid(chain(&e)))?;
    let mut missing: Vec<String> = inference
        .nodes()
        .iter()
        .filter(|n| n.op_is::<UnimplementedOp>())
        .map(|n| {
            let name = n.op().name();
            name.strip_prefix("Unimplemented(")
                .and_then(|s| s.strip_suffix(')'))
                .unwrap_or(&name)
                .to_string()
        })
        .collect();
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        return Err(Error::UnsupportedOperator {
            backend: NAME.into(),
            origin: origin.to_string(),
            ops: missing,
        });
    }
    inference.into_typed().map_err(|e| invalid(chain(&e)))
}

/// Parses a TensorFlow Lite flatbuffer into a typed model (tract-tflite).
///
/// tract-tflite stops at the first operator it lacks with a debug dump of the operator code;
/// that becomes [`Error::UnsupportedOperator`] naming the builtin or custom operator.
fn load_tflite(bytes: &[u8], origin: &str) -> Result<TypedModel> {
    if bytes.len() < 8 || &bytes[4..8] != b"TFL3" {
        return Err(Error::InvalidModel {
            origin: origin.to_string(),
            reason: "not a TensorFlow Lite flatbuffer (no `TFL3` identifier)".into(),
        });
    }
    // tract-tflite 0.23 unwraps some flatbuffer fields while walking the graph: `load` runs
    // this under the same catch_unwind as ONNX loading, so such a panic is an error too.
    let parsed = tract_tflite::tflite().model_for_read(&mut &bytes[..]);
    parsed.map_err(|e| {
        let msg = chain(&e);
        match unsupported_tflite_op(&msg) {
            Some(op) => Error::UnsupportedOperator {
                backend: NAME.into(),
                origin: origin.to_string(),
                ops: vec![op],
            },
            None => Error::InvalidModel {
                origin: origin.to_string(),
                reason: msg,
            },
        }
    })
}

/// The operator named in tract-tflite's "Unsupported: OperatorCode { deprecated_builtin_code:
/// 6, custom_code: None, .. builtin_code: DEQUANTIZE .. }" (numbers mapped to their names).
fn unsupported_tflite_op(msg: &str) -> Option<String> {
    let rest = &msg[msg.find("Unsupported:")?..];
    if let Some(i) = rest.find("custom_code: Some(\"") {
        let name: String = rest[i + 19..].chars().take_while(|c| *c != '"').collect();
        if !name.is_empty() {
            return Some(name);
        }
    }
    // As tract-tflite itself decides: the deprecated 8-bit code unless it is the placeholder
    // (127) that points to the 32-bit `builtin_code` field.
    let token_after = |key: &str| -> Option<String> {
        let i = rest.find(key)? + key.len();
        let t: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        (!t.is_empty()).then_some(t)
    };
    let name_of = |token: String| match token.parse::<i32>() {
        Ok(n) => tract_tflite::tflite::BuiltinOperator(n)
            .variant_name()
            .map(str::to_string)
            .unwrap_or(token),
        Err(_) => token,
    };
    match token_after("deprecated_builtin_code: ") {
        Some(t) if t != "127" => Some(name_of(t)),
        _ => token_after("\n    builtin_code: ")
            .or_else(|| token_after(" builtin_code: "))
            .map(name_of),
    }
}

/// A model loaded by tract: an optimised, immutable plan shared by every run.
///
/// Each [`Model::run`] creates its own execution state, so concurrent runs from many threads
/// do not serialise on a lock.
pub struct TractModel {
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
}

impl std::fmt::Debug for TractModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractModel")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

impl Model for TractModel {
    fn backend(&self) -> &str {
        NAME
    }

    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        validate_inputs(&self.inputs, &inputs)?;
        let values = inputs
            .into_iter()
            .map(|t| to_tract(t).map(TValue::from))
            .collect::<Result<TVec<_>>>()?;
        // The plan is immutable and each run builds its own state, so a panicking run
        // leaves nothing behind; report it as a failed run rather than unwinding into the
        // caller.
        let outs = guard_run(NAME, || {
            self.plan.run(values).map_err(|e| Error::Run {
                backend: NAME.into(),
                reason: chain(&e),
            })
        })?;
        outs.into_iter()
            .map(|v| from_tract(v.into_tensor()))
            .collect()
    }
}

/// The whole anyhow context chain in one line: tract's outer message alone ("Translating
/// node #3") rarely says what is wrong.
fn chain(e: &TractError) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

fn dtype_of(dt: DatumType) -> Option<DType> {
    Some(match dt {
        DatumType::F32 => DType::F32,
        DatumType::F16 => DType::F16,
        DatumType::I8 => DType::I8,
        DatumType::U8 => DType::U8,
        DatumType::I32 => DType::I32,
        DatumType::I64 => DType::I64,
        DatumType::Bool => DType::Bool,
        DatumType::F64 => DType::F64,
        DatumType::I16 => DType::I16,
        DatumType::U16 => DType::U16,
        DatumType::U32 => DType::U32,
        DatumType::U64 => DType::U64,
        _ => return None,
    })
}

fn specs(model: &TypedModel, outlets: &[OutletId]) -> Result<Vec<TensorSpec>> {
    outlets
        .iter()
        .map(|o| {
            let node = model.node(o.node);
            // Optimisation renames nodes; the ONNX input/output name survives as the label.
            let name = model.outlet_label(*o).unwrap_or(&node.name).to_string();
            let fact = model.outlet_fact(*o).map_err(|e| Error::InvalidModel {
                origin: name.clone(),
                reason: chain(&e),
            })?;
            let dtype = dtype_of(fact.datum_type).ok_or_else(|| Error::InvalidModel {
                origin: name.clone(),
                reason: format!(
                    "tensor `{name}` has dtype {:?}, which edgeai does not support",
                    fact.datum_type
                ),
            })?;
            let shape = fact
                .shape
                .iter()
                .map(|d| match d.as_i64() {
                    Some(n) => Dim::Fixed(n as usize),
                    None => Dim::Symbolic(d.to_string()),
                })
                .collect();
            Ok(TensorSpec {
                name,
                dtype,
                shape: Some(shape),
            })
        })
        .collect()
}

fn to_tract(t: Tensor) -> Result<tract_onnx::prelude::Tensor> {
    let (shape, data) = t.into_parts();
    let err = |e: TractError| Error::Tensor(chain(&e));
    Ok(match data {
        TensorData::F32(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::F16(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::BF16(v) => {
            let f: Vec<f32> = v.iter().map(|x| x.to_f32()).collect();
            tract_onnx::prelude::Tensor::from_shape(&shape, &f).map_err(err)?
        }
        TensorData::I8(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::U8(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::I32(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::I64(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::Bool(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::F64(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::I16(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::U16(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::U32(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
        TensorData::U64(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v).map_err(err)?,
    })
}

fn plain<T: Datum>(t: &tract_onnx::prelude::Tensor) -> Result<&[T]> {
    t.try_as_plain_ram()
        .and_then(|v| v.as_slice::<T>())
        .map_err(|e| Error::Tensor(chain(&e)))
}

fn from_tract(t: tract_onnx::prelude::Tensor) -> Result<Tensor> {
    let shape = t.shape().to_vec();
    let data = match t.datum_type() {
        DatumType::F32 => TensorData::F32(plain::<f32>(&t)?.to_vec()),
        DatumType::F16 => TensorData::F16(plain::<f16>(&t)?.to_vec()),
        DatumType::I8 => TensorData::I8(plain::<i8>(&t)?.to_vec()),
        DatumType::U8 => TensorData::U8(plain::<u8>(&t)?.to_vec()),
        DatumType::I32 => TensorData::I32(plain::<i32>(&t)?.to_vec()),
        DatumType::I64 => TensorData::I64(plain::<i64>(&t)?.to_vec()),
        DatumType::Bool => TensorData::Bool(plain::<bool>(&t)?.to_vec()),
        DatumType::F64 => TensorData::F64(plain::<f64>(&t)?.to_vec()),
        DatumType::I16 => TensorData::I16(plain::<i16>(&t)?.to_vec()),
        DatumType::U16 => TensorData::U16(plain::<u16>(&t)?.to_vec()),
        DatumType::U32 => TensorData::U32(plain::<u32>(&t)?.to_vec()),
        DatumType::U64 => TensorData::U64(plain::<u64>(&t)?.to_vec()),
        other => {
            return Err(Error::Run {
                backend: NAME.into(),
                reason: format!("output dtype {other:?} is not supported by edgeai"),
            })
        }
    };
    Tensor::from_data(shape, data)
}
