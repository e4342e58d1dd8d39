//! The parsed ONNX graph as plain data: value slots, nodes with their attributes, constant
//! host tensors. Nothing here depends on burn.

use std::collections::HashMap;

use edgeai_onnx::proto::{self, dt, AttributeProto, TensorProto};

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
pub(crate) fn numel(shape: &[usize]) -> Result<usize, String> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} is too large"))
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
pub(crate) fn host_from_proto(t: &TensorProto) -> Result<Host, String> {
    let name = &t.name;
    if t.data_location == 1 {
        return Err(format!(
            "tensor `{name}` keeps its data in an external file, which is not supported"
        ));
    }
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("tensor `{name}` has dimension {d}")))
        .collect::<Result<Vec<_>, _>>()?;
    let n = numel(&shape)?;
    let raw = &t.raw_data;
    let has_raw = !raw.is_empty();
    let data = match t.data_type {
        dt::FLOAT => HostData::F32(if has_raw {
            chunks::<4, _>(raw, f32::from_le_bytes)
        } else {
            t.float_data.clone()
        }),
        dt::DOUBLE => HostData::F32(if has_raw {
            chunks::<8, _>(raw, |b| f64::from_le_bytes(b) as f32)
        } else {
            t.double_data.iter().map(|&x| x as f32).collect()
        }),
        dt::FLOAT16 | dt::BFLOAT16 => {
            let bits: Vec<u16> = if has_raw {
                chunks::<2, _>(raw, u16::from_le_bytes)
            } else {
                t.int32_data.iter().map(|&x| x as u16).collect()
            };
            HostData::F32(if t.data_type == dt::FLOAT16 {
                bits.iter()
                    .map(|&b| half::f16::from_bits(b).to_f32())
                    .collect()
            } else {
                bits.iter()
                    .map(|&b| half::bf16::from_bits(b).to_f32())
                    .collect()
            })
        }
        dt::INT64 => HostData::I64(if has_raw {
            chunks::<8, _>(raw, i64::from_le_bytes)
        } else {
            t.int64_data.clone()
        }),
        dt::UINT64 => HostData::I64(if has_raw {
            chunks::<8, _>(raw, |b| u64::from_le_bytes(b) as i64)
        } else {
            t.uint64_data.iter().map(|&x| x as i64).collect()
        }),
        dt::INT32 => HostData::I64(if has_raw {
            chunks::<4, _>(raw, |b| i32::from_le_bytes(b) as i64)
        } else {
            t.int32_data.iter().map(|&x| x as i64).collect()
        }),
        dt::UINT32 => HostData::I64(if has_raw {
            chunks::<4, _>(raw, |b| u32::from_le_bytes(b) as i64)
        } else {
            t.uint64_data.iter().map(|&x| x as i64).collect()
        }),
        dt::INT16 | dt::UINT16 => HostData::I64(if has_raw {
            if t.data_type == dt::INT16 {
                chunks::<2, _>(raw, |b| i16::from_le_bytes(b) as i64)
            } else {
                chunks::<2, _>(raw, |b| u16::from_le_bytes(b) as i64)
            }
        } else {
            t.int32_data.iter().map(|&x| x as i64).collect()
        }),
        dt::INT8 | dt::UINT8 | dt::BOOL => HostData::I64(if has_raw {
            match t.data_type {
                dt::INT8 => raw.iter().map(|&b| b as i8 as i64).collect(),
                dt::BOOL => raw.iter().map(|&b| (b != 0) as i64).collect(),
                _ => raw.iter().map(|&b| b as i64).collect(),
            }
        } else {
            t.int32_data.iter().map(|&x| x as i64).collect()
        }),
        other => {
            return Err(format!(
                "tensor `{name}` has ONNX data type {other}, which is not supported"
            ))
        }
    };
    let host = Host { shape, data };
    if host.count() != n {
        return Err(format!(
            "tensor `{name}` has shape {:?} ({n} elements) but holds {} values",
            host.shape,
            host.count()
        ));
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

/// One node of the execution plan.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub op: String,
    pub name: String,
    /// Input slots; `None` for an omitted optional input (empty name).
    pub inputs: Vec<Option<usize>>,
    pub outputs: Vec<usize>,
    pub attrs: Attrs,
}

/// Element type codes of the tensors a graph takes and returns.
pub(crate) fn dtype_of(elem: i32) -> Option<edgeai_core::DType> {
    use edgeai_core::DType;
    Some(match elem {
        dt::FLOAT | dt::DOUBLE => DType::F32,
        dt::FLOAT16 => DType::F16,
        dt::BFLOAT16 => DType::BF16,
        dt::INT8 => DType::I8,
        dt::UINT8 | dt::BOOL => DType::U8,
        dt::INT32 => DType::I32,
        dt::INT64 => DType::I64,
        _ => return None,
    })
}

/// The spec of a graph input or output.
pub(crate) fn spec_of(v: &proto::ValueInfoProto) -> Result<edgeai_core::TensorSpec, String> {
    use edgeai_core::{DType, Dim, TensorSpec};
    let tt = v.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
    let dtype = match tt {
        Some(t) => dtype_of(t.elem_type).ok_or_else(|| {
            format!(
                "graph input/output `{}` has ONNX data type {}, which is not supported",
                v.name, t.elem_type
            )
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
