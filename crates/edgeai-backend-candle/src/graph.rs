//! ONNX graphs through `candle-onnx`'s `simple_eval` evaluator.

use std::collections::HashMap;

use candle_core::{DType as CDType, Device, Tensor as CTensor};
use candle_onnx::onnx::{
    self, tensor_proto::DataType, tensor_shape_proto::dimension, type_proto, GraphProto,
    ModelProto, ValueInfoProto,
};
use edgeai_core::{
    guard_load, guard_run, validate_inputs, Backend, DType, Dim, Error, LoadOptions, Model,
    ModelFormat, ModelSource, Result, RunPool, Tensor, TensorData, TensorSpec,
};
use prost::Message;

use crate::rewrite;

const NAME: &str = "candle";

/// Operator types that `candle-onnx` 0.11.1's `simple_eval` implements (the arms of its
/// operator `match` in `eval.rs`), in the default ONNX domain. Anything else fails at load.
pub const SUPPORTED_OPS: &[&str] = &[
    "Abs",
    "Add",
    "And",
    "ArgMax",
    "ArgMin",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Ceil",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "Cos",
    "CumSum",
    "Div",
    "Dropout",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Floor",
    "Gather",
    "GatherElements",
    "Gelu",
    "Gemm",
    "Greater",
    "GreaterOrEqual",
    "HardSwish",
    "Identity",
    "If",
    "LSTM",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "Log",
    "LogSoftmax",
    "MatMul",
    "MaxPool",
    "Min",
    "Mul",
    "Neg",
    "Not",
    "OneHot",
    "Or",
    "PRelu",
    "Pad",
    "Pow",
    "RNN",
    "Range",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Resize",
    "ScatterND",
    "Selu",
    "Shape",
    "Sigmoid",
    "Sign",
    "Sin",
    "Size",
    "Slice",
    "Softmax",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Tanh",
    "Tile",
    "Transpose",
    "Trilu",
    "Unsqueeze",
    "Where",
    "Xor",
];

/// The candle graph backend: ONNX models run by `candle-onnx`'s reference evaluator on the
/// CPU. Cheap to create; holds no state.
///
/// - Operators `candle-onnx` lacks are found when the model is loaded and reported all at
///   once as [`Error::UnsupportedOperator`]. Three small gaps are closed by rewriting the
///   graph at load: `GlobalAveragePool` and `HardSigmoid` become supported operators, and a
///   `Conv` with different strides per axis becomes a stride-1 `Conv` plus a strided `Slice`.
/// - Limits of a supported operator's attributes (e.g. a `Resize` mode candle lacks) surface
///   when the model runs, as [`Error::Run`].
/// - [`LoadOptions::threads`] sets the size of a thread pool owned by the model (candle's
///   matrix products run on the rayon pool they are called from); `None` uses rayon's global
///   pool. [`LoadOptions::optimization`] is ignored: candle-onnx evaluates the graph as written.
#[derive(Debug, Default, Clone, Copy)]
pub struct CandleBackend;

impl CandleBackend {
    /// Creates the backend.
    pub fn new() -> Self {
        CandleBackend
    }
}

impl Backend for CandleBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn formats(&self) -> &'static [ModelFormat] {
        &[ModelFormat::Onnx]
    }

    fn load(&self, source: ModelSource, options: &LoadOptions) -> Result<Box<dyn Model>> {
        let origin = source.origin();
        self.check_format(&source)?;
        let bytes = source.into_bytes()?;
        // candle-onnx indexes and unwraps freely; a malformed file must be an Err, not a panic.
        let pool = RunPool::new("candle-onnx", options)?;
        let model = guard_load("candle-onnx", &origin, || prepare(&bytes, &origin, pool))?;
        tracing::debug!(
            %origin,
            threads = ?options.threads,
            inputs = model.inputs.len(),
            outputs = model.outputs.len(),
            constants = model.consts.len(),
            "candle-onnx model loaded"
        );
        Ok(Box::new(model))
    }
}

/// A model loaded by the candle backend: the (rewritten) ONNX graph with its weights decoded
/// once into candle tensors, shared read-only by every run.
pub struct CandleModel {
    proto: ModelProto,
    consts: HashMap<String, CTensor>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    pool: RunPool,
}

impl std::fmt::Debug for CandleModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CandleModel")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("constants", &self.consts.len())
            .finish()
    }
}

impl Model for CandleModel {
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
        let mut values = self.consts.clone();
        for (spec, t) in self.inputs.iter().zip(inputs) {
            values.insert(spec.name.clone(), to_candle(t)?);
        }
        let mut outs = guard_run(NAME, || {
            self.pool
                .install(|| candle_onnx::simple_eval(&self.proto, values))
                .map_err(|e| run_err(e.to_string()))
        })?;
        self.outputs
            .iter()
            .map(|spec| {
                let t = outs
                    .remove(&spec.name)
                    .ok_or_else(|| run_err(format!("output `{}` was not computed", spec.name)))?;
                from_candle(t, spec.dtype)
            })
            .collect()
    }
}

fn run_err(reason: String) -> Error {
    Error::Run {
        backend: NAME.into(),
        reason,
    }
}

/// Parses, rewrites and checks the model; decodes its weights.
fn prepare(bytes: &[u8], origin: &str, pool: RunPool) -> Result<CandleModel> {
    let invalid = |reason: String| Error::InvalidModel {
        origin: origin.to_string(),
        reason,
    };
    let mut proto = ModelProto::decode(bytes).map_err(|e| invalid(format!("not ONNX: {e}")))?;
    let Some(graph) = proto.graph.as_mut() else {
        return Err(invalid("not an ONNX model: no graph".into()));
    };
    if graph.node.is_empty() && graph.output.is_empty() {
        return Err(invalid("not an ONNX model: empty graph".into()));
    }
    for opset in &proto.opset_import {
        if matches!(opset.domain.as_str(), "" | "ai.onnx") && opset.version > 0 {
            tracing::debug!(version = opset.version, "ONNX opset");
        }
    }

    let mut consts: HashMap<String, CTensor> = HashMap::new();
    for t in std::mem::take(&mut graph.initializer) {
        let tensor = candle_onnx::eval::get_tensor(&t, &t.name)
            .map_err(|e| invalid(format!("initializer `{}`: {e}", t.name)))?;
        consts.insert(t.name, tensor);
    }
    rewrite::hoist_constants(graph, &mut consts).map_err(invalid)?;
    rewrite::rewrite(graph, &mut consts);

    let mut missing = Vec::new();
    unsupported_ops(graph, &mut missing);
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        return Err(Error::UnsupportedOperator {
            backend: NAME.into(),
            origin: origin.to_string(),
            ops: missing,
        });
    }

    // candle-onnx compares every declared input dimension with the tensor it is given; a
    // dimension declared as -1 (some exporters' "any") would never match: make it symbolic.
    for input in &mut graph.input {
        if let Some(shape) = tensor_type_mut(input).and_then(|t| t.shape.as_mut()) {
            for d in &mut shape.dim {
                if let Some(dimension::Value::DimValue(v)) = d.value {
                    if v < 0 {
                        d.value = Some(dimension::Value::DimParam(String::new()));
                    }
                }
            }
        }
    }

    // Every graph output must come from a node, an input or a constant: a dangling one would
    // only fail (or panic) inside simple_eval at run time.
    {
        let produced: std::collections::HashSet<&str> = graph
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str))
            .chain(graph.input.iter().map(|i| i.name.as_str()))
            .chain(consts.keys().map(String::as_str))
            .collect();
        if let Some(o) = graph
            .output
            .iter()
            .find(|o| !produced.contains(o.name.as_str()))
        {
            return Err(invalid(format!(
                "graph output `{}` is produced by no node, input or initializer",
                o.name
            )));
        }
    }
    let inputs = graph
        .input
        .iter()
        .filter(|i| !consts.contains_key(&i.name))
        .map(|i| spec(i, true).map_err(&invalid))
        .collect::<Result<Vec<_>>>()?;
    let outputs = graph
        .output
        .iter()
        .map(|o| spec(o, false).map_err(&invalid))
        .collect::<Result<Vec<_>>>()?;
    Ok(CandleModel {
        proto,
        consts,
        inputs,
        outputs,
        pool,
    })
}

/// Collects the op types (recursively through subgraphs) that `simple_eval` cannot run.
fn unsupported_ops(graph: &GraphProto, out: &mut Vec<String>) {
    for node in &graph.node {
        let default_domain = matches!(node.domain.as_str(), "" | "ai.onnx");
        if !default_domain {
            out.push(format!("{}:{}", node.domain, node.op_type));
        } else if !SUPPORTED_OPS.contains(&node.op_type.as_str()) {
            out.push(node.op_type.clone());
        }
        for a in &node.attribute {
            if let Some(g) = &a.g {
                unsupported_ops(g, out);
            }
            for g in &a.graphs {
                unsupported_ops(g, out);
            }
        }
    }
}

fn tensor_type(v: &ValueInfoProto) -> Option<&type_proto::Tensor> {
    match v.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(t) => Some(t),
        _ => None,
    }
}

fn tensor_type_mut(v: &mut ValueInfoProto) -> Option<&mut type_proto::Tensor> {
    match v.r#type.as_mut()?.value.as_mut()? {
        type_proto::Value::TensorType(t) => Some(t),
        _ => None,
    }
}

/// The edgeai spec of a graph input or output. Inputs are limited to the element types
/// candle-onnx accepts as graph inputs (f32, f16, u8, bool, i64); outputs are converted to
/// their declared type after a run. Bool travels through candle as u8 (0/1). Element types
/// candle has no dtype for (u16, u64) are refused by name at load.
fn spec(v: &ValueInfoProto, input: bool) -> std::result::Result<TensorSpec, String> {
    let kind = if input { "input" } else { "output" };
    let name = &v.name;
    let tt = tensor_type(v).ok_or_else(|| format!("{kind} `{name}` is not a tensor"))?;
    let dt = DataType::try_from(tt.elem_type).unwrap_or(DataType::Undefined);
    let dtype = match (dt, input) {
        (DataType::Float, _) => DType::F32,
        (DataType::Float16, _) => DType::F16,
        (DataType::Uint8, _) => DType::U8,
        (DataType::Bool, _) => DType::Bool,
        (DataType::Int64, _) => DType::I64,
        (DataType::Bfloat16, false) => DType::BF16,
        (DataType::Int32, false) => DType::I32,
        (DataType::Int16, false) => DType::I16,
        (DataType::Uint32, false) => DType::U32,
        (DataType::Double, false) => DType::F64,
        (DataType::Int8, false) => DType::I8,
        (dt, _) => {
            return Err(format!(
                "{kind} `{name}` has element type {}, which the candle backend cannot {}",
                dt.as_str_name(),
                if input { "take as input" } else { "return" }
            ))
        }
    };
    let shape = tt.shape.as_ref().map(|s| {
        s.dim
            .iter()
            .enumerate()
            .map(|(i, d)| match &d.value {
                Some(dimension::Value::DimValue(v)) if *v >= 0 => Dim::Fixed(*v as usize),
                Some(dimension::Value::DimParam(p)) if !p.is_empty() && p != "?" => {
                    Dim::Symbolic(p.clone())
                }
                // Unnamed, "?" or -1: a dimension of its own (named like the ort backend's).
                _ => Dim::Symbolic(format!("{name}_dim{i}")),
            })
            .collect()
    });
    Ok(TensorSpec {
        name: name.clone(),
        dtype,
        shape,
    })
}

fn candle_dtype(dt: DType) -> Option<CDType> {
    Some(match dt {
        DType::F32 => CDType::F32,
        DType::F16 => CDType::F16,
        DType::BF16 => CDType::BF16,
        DType::U8 => CDType::U8,
        DType::I32 => CDType::I32,
        DType::I64 => CDType::I64,
        DType::Bool => CDType::U8,
        DType::F64 => CDType::F64,
        DType::I16 => CDType::I16,
        DType::U32 => CDType::U32,
        DType::I8 | DType::U16 | DType::U64 => return None,
    })
}

fn to_candle(t: Tensor) -> Result<CTensor> {
    let (shape, data) = t.into_parts();
    let dev = &Device::Cpu;
    let r = match data {
        TensorData::F32(v) => CTensor::from_vec(v, shape, dev),
        TensorData::F16(v) => CTensor::from_vec(v, shape, dev),
        TensorData::BF16(v) => CTensor::from_vec(v, shape, dev),
        TensorData::U8(v) => CTensor::from_vec(v, shape, dev),
        TensorData::I32(v) => CTensor::from_vec(v, shape, dev),
        TensorData::I64(v) => CTensor::from_vec(v, shape, dev),
        TensorData::I8(v) => {
            let v: Vec<i32> = v.into_iter().map(i32::from).collect();
            CTensor::from_vec(v, shape, dev)
        }
        TensorData::Bool(v) => {
            let v: Vec<u8> = v.into_iter().map(u8::from).collect();
            CTensor::from_vec(v, shape, dev)
        }
        TensorData::F64(v) => CTensor::from_vec(v, shape, dev),
        TensorData::I16(v) => CTensor::from_vec(v, shape, dev),
        TensorData::U32(v) => CTensor::from_vec(v, shape, dev),
        d @ (TensorData::U16(_) | TensorData::U64(_)) => {
            return Err(Error::Tensor(format!(
                "backend `candle` has no {} dtype",
                d.dtype()
            )))
        }
    };
    r.map_err(|e| Error::Tensor(e.to_string()))
}

/// Converts a candle tensor to a host tensor of the declared dtype `want`.
fn from_candle(t: CTensor, want: DType) -> Result<Tensor> {
    let err = |e: candle_core::Error| run_err(format!("output conversion: {e}"));
    let t = match candle_dtype(want) {
        Some(c) if c != t.dtype() => t.to_dtype(c).map_err(err)?,
        _ => t,
    };
    let shape = t.dims().to_vec();
    let flat = t.flatten_all().map_err(err)?;
    let data = match flat.dtype() {
        CDType::F32 => TensorData::F32(flat.to_vec1().map_err(err)?),
        CDType::F16 => TensorData::F16(flat.to_vec1().map_err(err)?),
        CDType::BF16 => TensorData::BF16(flat.to_vec1().map_err(err)?),
        CDType::U8 if want == DType::Bool => TensorData::Bool(
            flat.to_vec1::<u8>()
                .map_err(err)?
                .into_iter()
                .map(|x| x != 0)
                .collect(),
        ),
        CDType::U8 => TensorData::U8(flat.to_vec1().map_err(err)?),
        CDType::F64 => TensorData::F64(flat.to_vec1().map_err(err)?),
        CDType::I16 => TensorData::I16(flat.to_vec1().map_err(err)?),
        CDType::U32 => TensorData::U32(flat.to_vec1().map_err(err)?),
        CDType::I32 => TensorData::I32(flat.to_vec1().map_err(err)?),
        CDType::I64 if want == DType::I8 => TensorData::I8(
            flat.to_vec1::<i64>()
                .map_err(err)?
                .into_iter()
                .map(|x| x.clamp(i8::MIN.into(), i8::MAX.into()) as i8)
                .collect(),
        ),
        CDType::I64 => TensorData::I64(flat.to_vec1().map_err(err)?),
        other => {
            return Err(run_err(format!(
                "output dtype {other:?} is not supported by edgeai"
            )))
        }
    };
    Tensor::from_data(shape, data)
}

/// `onnx` re-exported for the rewrite module's node builders.
pub(crate) use onnx::{AttributeProto, NodeProto};
