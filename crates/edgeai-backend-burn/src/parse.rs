//! ONNX protobuf -> the parsed graph as plain data: value slots, nodes with their
//! attributes, constant host tensors. Nothing here depends on burn.

use std::collections::HashMap;

use edgeai_core::{Error, Result, TensorSpec};
use edgeai_onnx::proto::{self, dt, AttributeProto, TensorProto};

use crate::error::{bail, invalid, OpError as E};
use crate::{ops, NAME};

/// A host tensor: weights, constants and integer (shape) values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Host {
    pub shape: Vec<usize>,
    pub data: HostData,
}

/// Host storage: floats (any ONNX float type, widened or narrowed to f32) or integers (any
/// ONNX integer type and bool, widened to i64).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HostData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Host {
    pub fn ints(shape: Vec<usize>, v: Vec<i64>) -> Self {
        Host {
            shape,
            data: HostData::I64(v),
        }
    }

    pub fn floats(shape: Vec<usize>, v: Vec<f32>) -> Self {
        Host {
            shape,
            data: HostData::F32(v),
        }
    }

    pub fn count(&self) -> usize {
        match &self.data {
            HostData::F32(v) => v.len(),
            HostData::I64(v) => v.len(),
        }
    }

    /// The values as i64 (floats truncated).
    pub fn to_i64(&self) -> Vec<i64> {
        match &self.data {
            HostData::F32(v) => v.iter().map(|&x| x as i64).collect(),
            HostData::I64(v) => v.clone(),
        }
    }

    /// The values as f32.
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            HostData::F32(v) => v.clone(),
            HostData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
}

/// Number of elements of a shape, or an error when it overflows.
pub(crate) fn numel(shape: &[usize]) -> ops::R<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| E::Overflow(shape.to_vec()))
}

fn chunks<const N: usize, T>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            f(a)
        })
        .collect()
}

/// Decodes an ONNX tensor (raw or typed fields) into a host tensor.
pub(crate) fn host_from_proto(t: &TensorProto) -> ops::R<Host> {
    let name = &t.name;
    if t.data_location == 1 {
        bail!(
            Unsupported,
            "tensor `{name}` keeps its data in an external file, which is not supported"
        );
    }
    let shape = t
        .dims
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| E::Shape(format!("tensor `{name}` has dimension {d}")))
        })
        .collect::<ops::R<Vec<_>>>()?;
    let n = numel(&shape)?;
    let (raw, ty) = (&t.raw_data, t.data_type);
    let unsupported = || {
        E::DType(format!(
            "tensor `{name}` has ONNX data type {ty}, which is not supported"
        ))
    };
    let (f, i) = (HostData::F32, HostData::I64);
    let data = if raw.is_empty() {
        let bits = |g: fn(u16) -> f32| f(t.int32_data.iter().map(|&x| g(x as u16)).collect());
        match ty {
            dt::FLOAT => f(t.float_data.clone()),
            dt::DOUBLE => f(t.double_data.iter().map(|&x| x as f32).collect()),
            dt::FLOAT16 => bits(|b| half::f16::from_bits(b).to_f32()),
            dt::BFLOAT16 => bits(|b| half::bf16::from_bits(b).to_f32()),
            dt::INT64 => i(t.int64_data.clone()),
            dt::UINT64 | dt::UINT32 => i(t.uint64_data.iter().map(|&x| x as i64).collect()),
            dt::INT32 | dt::INT16 | dt::UINT16 | dt::INT8 | dt::UINT8 | dt::BOOL => {
                i(t.int32_data.iter().map(|&x| x as i64).collect())
            }
            _ => return Err(unsupported()),
        }
    } else {
        match ty {
            dt::FLOAT => f(chunks::<4, _>(raw, f32::from_le_bytes)),
            dt::DOUBLE => f(chunks::<8, _>(raw, |b| f64::from_le_bytes(b) as f32)),
            dt::FLOAT16 => f(chunks::<2, _>(raw, |b| {
                half::f16::from_le_bytes(b).to_f32()
            })),
            dt::BFLOAT16 => f(chunks::<2, _>(raw, |b| {
                half::bf16::from_le_bytes(b).to_f32()
            })),
            dt::INT64 => i(chunks::<8, _>(raw, i64::from_le_bytes)),
            dt::UINT64 => i(chunks::<8, _>(raw, |b| u64::from_le_bytes(b) as i64)),
            dt::INT32 => i(chunks::<4, _>(raw, |b| i32::from_le_bytes(b) as i64)),
            dt::UINT32 => i(chunks::<4, _>(raw, |b| u32::from_le_bytes(b) as i64)),
            dt::INT16 => i(chunks::<2, _>(raw, |b| i16::from_le_bytes(b) as i64)),
            dt::UINT16 => i(chunks::<2, _>(raw, |b| u16::from_le_bytes(b) as i64)),
            dt::INT8 => i(raw.iter().map(|&b| b as i8 as i64).collect()),
            dt::UINT8 => i(raw.iter().map(|&b| b as i64).collect()),
            dt::BOOL => i(raw.iter().map(|&b| (b != 0) as i64).collect()),
            _ => return Err(unsupported()),
        }
    };
    let host = Host { shape, data };
    if host.count() != n {
        bail!(
            Shape,
            "tensor `{name}` has shape {:?} ({n} elements) but holds {} values",
            host.shape,
            host.count()
        );
    }
    Ok(host)
}

/// A node's attributes by name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Attrs(HashMap<String, AttributeProto>);

impl Attrs {
    pub fn new(list: &[AttributeProto]) -> Self {
        Attrs(list.iter().map(|a| (a.name.clone(), a.clone())).collect())
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.0.get(name).map_or(default, |a| a.i)
    }

    pub fn float(&self, name: &str, default: f32) -> f32 {
        self.0.get(name).map_or(default, |a| a.f)
    }

    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.0.get(name).map(|a| a.ints.clone())
    }

    pub fn floats(&self, name: &str) -> Option<Vec<f32>> {
        self.0.get(name).map(|a| a.floats.clone())
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.0.get(name).map_or(default.to_string(), |a| {
            String::from_utf8_lossy(&a.s).into_owned()
        })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorProto> {
        self.0.get(name).and_then(|a| a.t.as_ref())
    }

    pub fn set_int(&mut self, name: &str, value: i64) {
        self.0.insert(
            name.to_string(),
            AttributeProto {
                name: name.to_string(),
                r#type: 2,
                i: value,
                ..Default::default()
            },
        );
    }

    pub fn has_subgraph(&self) -> bool {
        self.0.values().any(|a| a.subgraphs().next().is_some())
    }
}

/// One node of the graph.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub op: String,
    pub name: String,
    /// Input slots; `None` for an omitted optional input (empty name).
    pub inputs: Vec<Option<usize>>,
    pub outputs: Vec<usize>,
    pub attrs: Attrs,
}

/// Element type codes of the tensors a graph takes and returns. Integers and bools travel as
/// i64 (exactly; a u64 input above `i64::MAX` is a run error), floats as f32, so `double`
/// graph inputs and outputs are refused rather than narrowed.
fn dtype_of(elem: i32) -> Option<edgeai_core::DType> {
    use edgeai_core::DType;
    Some(match elem {
        dt::FLOAT => DType::F32,
        dt::FLOAT16 => DType::F16,
        dt::BFLOAT16 => DType::BF16,
        dt::INT8 => DType::I8,
        dt::UINT8 => DType::U8,
        dt::BOOL => DType::Bool,
        dt::INT16 => DType::I16,
        dt::UINT16 => DType::U16,
        dt::INT32 => DType::I32,
        dt::UINT32 => DType::U32,
        dt::INT64 => DType::I64,
        dt::UINT64 => DType::U64,
        _ => return None,
    })
}

/// The spec of a graph input or output.
fn spec_of(v: &proto::ValueInfoProto) -> ops::R<TensorSpec> {
    use edgeai_core::{DType, Dim};
    let tt = v.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
    let dtype = match tt {
        Some(t) => dtype_of(t.elem_type).ok_or_else(|| {
            E::DType(format!(
                "graph input/output `{}` has ONNX data type {} ({}), which backend `burn` \
                 does not support",
                v.name,
                t.elem_type,
                edgeai_onnx::elem_type_name(t.elem_type)
            ))
        })?,
        None => DType::F32,
    };
    let shape = tt.and_then(|t| t.shape.as_ref()).map(|s| {
        s.dim
            .iter()
            .enumerate()
            .map(|(i, d)| match (&d.dim_value, &d.dim_param) {
                (Some(n), _) if *n > 0 => Dim::Fixed(*n as usize),
                (_, Some(p)) if !p.is_empty() && p != "?" => Dim::Symbolic(p.clone()),
                // Unnamed or unknown: a name of its own, so it need not equal another one.
                _ => Dim::Symbolic(format!("d{i}")),
            })
            .collect()
    });
    Ok(TensorSpec {
        name: v.name.clone(),
        dtype,
        shape,
    })
}

/// The parsed graph: plain data, independent of the burn engine.
pub(crate) struct Graph {
    pub nodes: Vec<Node>,
    pub n_slots: usize,
    pub inputs: Vec<(usize, TensorSpec)>,
    pub outputs: Vec<(usize, TensorSpec)>,
    /// Initializers by slot.
    pub initializers: Vec<(usize, Host)>,
    pub opset: i64,
}

impl Graph {
    /// Decodes an ONNX file; every unsupported operator is reported at once, first.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Graph> {
        let model = edgeai_onnx::decode(bytes, origin)?;
        let opset = model.default_opset();
        let graph = model
            .graph
            .ok_or_else(|| invalid(origin, "not an ONNX model: no graph"))?;

        // Slots are filled in below, once every operator is known to be supported.
        let mut nodes: Vec<Node> = graph
            .node
            .iter()
            .map(|n| Node {
                op: n.op_type.clone(),
                name: n.name.clone(),
                inputs: vec![],
                outputs: vec![0; n.output.len()],
                attrs: Attrs::new(&n.attribute),
            })
            .collect();
        // Every unsupported operator at once, before anything else can fail.
        let mut missing: Vec<String> = Vec::new();
        for (n, node) in graph.node.iter().zip(&nodes) {
            let label = if !(n.domain.is_empty() || n.domain == "ai.onnx") {
                Some(format!("{}:{}", n.domain, n.op_type))
            } else if !ops::SUPPORTED.contains(&n.op_type.as_str()) {
                Some(n.op_type.clone())
            } else {
                ops::unsupported_variant(node)
            };
            if let Some(l) = label {
                if !missing.contains(&l) {
                    missing.push(l);
                }
            }
        }
        if !missing.is_empty() {
            missing.sort();
            return Err(Error::UnsupportedOperator {
                backend: NAME.into(),
                origin: origin.to_string(),
                ops: missing,
            });
        }

        let mut slots: HashMap<String, usize> = HashMap::new();
        let new_slot = |slots: &mut HashMap<String, usize>, name: &str| -> Result<usize> {
            let id = slots.len();
            if slots.insert(name.to_string(), id).is_some() {
                return Err(invalid(origin, format!("tensor `{name}` is defined twice")));
            }
            Ok(id)
        };
        let mut initializers = Vec::new();
        for t in &graph.initializer {
            let h = host_from_proto(t).map_err(|e| invalid(origin, e))?;
            let id = new_slot(&mut slots, &t.name)?;
            initializers.push((id, h));
        }
        let mut inputs = Vec::new();
        for v in &graph.input {
            if slots.contains_key(&v.name) {
                continue; // an initializer listed as an input (IR < 4): a constant
            }
            let spec = spec_of(v).map_err(|e| invalid(origin, e))?;
            inputs.push((new_slot(&mut slots, &v.name)?, spec));
        }
        for (n, node) in graph.node.iter().zip(&mut nodes) {
            node.inputs = n
                .input
                .iter()
                .map(|name| {
                    if name.is_empty() {
                        return Ok(None);
                    }
                    slots.get(name).copied().map(Some).ok_or_else(|| {
                        invalid(
                            origin,
                            format!(
                                "node `{}` ({}) reads `{name}`, which no input, initializer or \
                                 earlier node produces",
                                n.name, n.op_type
                            ),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            node.outputs = n
                .output
                .iter()
                .map(|name| {
                    if name.is_empty() {
                        // An unused optional output: a slot nobody reads.
                        let id = slots.len();
                        slots.insert(format!("\u{0}unused{id}"), id);
                        Ok(id)
                    } else {
                        new_slot(&mut slots, name)
                    }
                })
                .collect::<Result<Vec<_>>>()?;
        }
        let outputs = graph
            .output
            .iter()
            .map(|v| {
                let id = *slots.get(&v.name).ok_or_else(|| {
                    invalid(
                        origin,
                        format!("graph output `{}` is never produced", v.name),
                    )
                })?;
                Ok((id, spec_of(v).map_err(|e| invalid(origin, e))?))
            })
            .collect::<Result<Vec<_>>>()?;
        if outputs.is_empty() {
            return Err(invalid(origin, "the graph has no outputs"));
        }
        Ok(Graph {
            nodes,
            n_slots: slots.len(),
            inputs,
            outputs,
            initializers,
            opset,
        })
    }
}
