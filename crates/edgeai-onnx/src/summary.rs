//! [`OnnxInfo`]: what `edgeai inspect` shows of a model, computed from its decoded protobuf.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use edgeai_core::{DType, Dim, Result};

use crate::proto::{GraphProto, ModelProto, ValueInfoProto};

/// What [`OnnxInfo::of`] found in a model.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct OnnxInfo {
    /// The ONNX IR version.
    pub ir_version: i64,
    /// The exporting tool's name (`pytorch`, `tf2onnx`...), possibly empty.
    pub producer_name: String,
    /// The exporting tool's version, possibly empty.
    pub producer_version: String,
    /// `(domain, version)` opset imports; the default ONNX domain is written `ai.onnx`.
    pub opsets: Vec<(String, i64)>,
    /// The main graph's name.
    pub graph_name: String,
    /// Graph inputs that are not initializers, in file order.
    pub inputs: Vec<ValueInfo>,
    /// Graph outputs, in file order.
    pub outputs: Vec<ValueInfo>,
    /// Initializers (weights) in the main graph.
    pub initializers: usize,
    /// Nodes in the main graph and all subgraphs.
    pub nodes: usize,
    /// Subgraphs (node attributes of graph type) found.
    pub subgraphs: usize,
    /// Operator types and how often each occurs, most frequent first (ties by name). Ops of
    /// a domain other than the default one are written `domain:Op`.
    pub op_histogram: Vec<(String, usize)>,
}

/// A graph input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    /// The tensor's name.
    pub name: String,
    /// The ONNX `TensorProto.DataType` code (1 = FLOAT...), 0 when not a tensor or unset.
    pub elem_type: i32,
    /// The dimensions; `None` when the file declares no shape. A dimension with neither a
    /// value nor a name is `Symbolic("?")`.
    pub dims: Option<Vec<Dim>>,
}

impl ValueInfo {
    /// The element type's ONNX name (`float`, `int64`...).
    pub fn elem_type_name(&self) -> &'static str {
        elem_type_name(self.elem_type)
    }

    /// The matching [`DType`], if edgeai has one.
    pub fn dtype(&self) -> Option<DType> {
        elem_type_dtype(self.elem_type)
    }

    /// The shape as text, e.g. `[batch, 3, 112, 112]`, or `[?]` when undeclared.
    pub fn shape_string(&self) -> String {
        match &self.dims {
            None => "[?]".into(),
            Some(d) => format!(
                "[{}]",
                d.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// The ONNX name of a `TensorProto.DataType` code.
pub fn elem_type_name(code: i32) -> &'static str {
    match code {
        1 => "float",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "double",
        12 => "uint32",
        13 => "uint64",
        14 => "complex64",
        15 => "complex128",
        16 => "bfloat16",
        17 => "float8e4m3fn",
        18 => "float8e4m3fnuz",
        19 => "float8e5m2",
        20 => "float8e5m2fnuz",
        21 => "uint4",
        22 => "int4",
        23 => "float4e2m1",
        0 => "undefined",
        _ => "unknown",
    }
}

/// The [`DType`] for a `TensorProto.DataType` code, if edgeai has one.
pub fn elem_type_dtype(code: i32) -> Option<DType> {
    Some(match code {
        1 => DType::F32,
        2 => DType::U8,
        3 => DType::I8,
        6 => DType::I32,
        7 => DType::I64,
        10 => DType::F16,
        16 => DType::BF16,
        9 => DType::Bool,
        11 => DType::F64,
        5 => DType::I16,
        4 => DType::U16,
        12 => DType::U32,
        13 => DType::U64,
        _ => return None,
    })
}

/// The `TensorProto.DataType` code for a [`DType`] (the inverse of [`elem_type_dtype`]).
pub fn dtype_elem_type(dtype: DType) -> i32 {
    match dtype {
        DType::F32 => 1,
        DType::U8 => 2,
        DType::I8 => 3,
        DType::U16 => 4,
        DType::I16 => 5,
        DType::I32 => 6,
        DType::I64 => 7,
        DType::Bool => 9,
        DType::F16 => 10,
        DType::F64 => 11,
        DType::U32 => 12,
        DType::U64 => 13,
        DType::BF16 => 16,
    }
}

impl OnnxInfo {
    /// Reads and summarises an ONNX file. Errors name the file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self::of(&crate::read(path)?))
    }

    /// Decodes and summarises the bytes of an ONNX model.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        Ok(Self::of(&crate::decode(
            bytes,
            &crate::bytes_origin(bytes),
        )?))
    }

    /// Summarises a decoded model. Graph inputs that are also initializers (as exporters
    /// for IR < 4 write them) are not listed as inputs; nodes of `If` / `Loop` / `Scan`
    /// subgraphs are counted in [`OnnxInfo::nodes`] and the histogram.
    pub fn of(model: &ModelProto) -> Self {
        let mut info = OnnxInfo {
            ir_version: model.ir_version,
            producer_name: model.producer_name.clone(),
            producer_version: model.producer_version.clone(),
            opsets: model
                .opset_import
                .iter()
                .map(|o| {
                    let d = if o.domain.is_empty() {
                        "ai.onnx"
                    } else {
                        &o.domain
                    };
                    (d.to_string(), o.version)
                })
                .collect(),
            ..Default::default()
        };
        let Some(graph) = &model.graph else {
            return info;
        };
        info.graph_name = graph.name.clone();
        info.initializers = graph.initializer.len();
        let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        info.inputs = graph
            .input
            .iter()
            .filter(|i| !inits.contains(i.name.as_str()))
            .map(value_info)
            .collect();
        info.outputs = graph.output.iter().map(value_info).collect();
        let mut hist = HashMap::new();
        count_nodes(graph, &mut hist, &mut info);
        let mut h: Vec<(String, usize)> = hist.into_iter().collect();
        h.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        info.op_histogram = h;
        info
    }
}

/// Counts the nodes of `graph` and of every subgraph below it. The decoder's recursion limit
/// bounds the nesting, so this recursion is bounded too.
fn count_nodes(graph: &GraphProto, hist: &mut HashMap<String, usize>, info: &mut OnnxInfo) {
    for node in &graph.node {
        let key = if node.domain.is_empty() || node.domain == "ai.onnx" {
            node.op_type.clone()
        } else {
            format!("{}:{}", node.domain, node.op_type)
        };
        *hist.entry(key).or_default() += 1;
        info.nodes += 1;
        for sub in node.attribute.iter().flat_map(|a| a.subgraphs()) {
            info.subgraphs += 1;
            count_nodes(sub, hist, info);
        }
    }
}

fn value_info(v: &ValueInfoProto) -> ValueInfo {
    let tensor = v.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
    ValueInfo {
        name: v.name.clone(),
        elem_type: tensor.map_or(0, |t| t.elem_type),
        dims: tensor.and_then(|t| t.shape.as_ref()).map(|s| {
            s.dim
                .iter()
                .map(|d| match (d.dim_value, d.dim_param.as_deref()) {
                    (Some(n), _) => {
                        usize::try_from(n).map_or_else(|_| Dim::Symbolic("?".into()), Dim::Fixed)
                    }
                    (None, Some(p)) if !p.is_empty() => Dim::Symbolic(p.to_string()),
                    _ => Dim::Symbolic("?".into()),
                })
                .collect()
        }),
    }
}
