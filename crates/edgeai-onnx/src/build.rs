//! Constructors for ONNX messages: enough to write a model by hand in a test, a fuzz seed or a
//! tool that rewrites graphs. The result is the plain [`crate::proto`] structs, so anything
//! these helpers do not cover is a field assignment away.
//!
//! ```
//! use edgeai_onnx::{build, proto::dt};
//!
//! // y = Add(x, w) with a [3] initializer w.
//! let w = build::tensor_f32("w", &[3], &[1.0, 2.0, 3.0]);
//! let graph = build::graph(
//!     "add",
//!     vec![build::node("Add", &["x", "w"], &["y"])],
//!     vec![w],
//!     vec![build::value("x", dt::FLOAT, &[build::fixed(3)])],
//!     vec![build::value("y", dt::FLOAT, &[build::fixed(3)])],
//! );
//! let model = build::model(graph, 13);
//! assert_eq!(edgeai_onnx::decode(&model.to_bytes(), "add")?, model);
//! # Ok::<(), edgeai_core::Error>(())
//! ```

use crate::proto::{
    attr_type, dt, AttributeProto, Dimension, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto,
};

/// A fixed dimension.
pub fn fixed(n: i64) -> Dimension {
    Dimension {
        dim_value: Some(n),
        dim_param: None,
    }
}

/// A symbolic (named) dimension.
pub fn sym(name: &str) -> Dimension {
    Dimension {
        dim_value: None,
        dim_param: Some(name.to_string()),
    }
}

/// A tensor value (graph input, output or `value_info`) of element type `elem` ([`dt`]).
pub fn value(name: &str, elem: i32, dims: &[Dimension]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: elem,
                shape: Some(TensorShapeProto { dim: dims.to_vec() }),
            }),
        }),
    }
}

/// A node of the default domain, named after its operator and first output.
pub fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: format!("{op}_{}", outputs.first().copied().unwrap_or("")),
        op_type: op.to_string(),
        domain: String::new(),
        attribute: Vec::new(),
    }
}

impl NodeProto {
    /// The node with `attr` added.
    pub fn with(mut self, attr: AttributeProto) -> Self {
        self.attribute.push(attr);
        self
    }

    /// The node in operator domain `domain` (e.g. `com.microsoft`).
    pub fn in_domain(mut self, domain: &str) -> Self {
        self.domain = domain.to_string();
        self
    }
}

fn attr(name: &str, ty: i32) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: ty,
        ..Default::default()
    }
}

/// An `INT` attribute.
pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        i: v,
        ..attr(name, attr_type::INT)
    }
}

/// An `INTS` attribute.
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: v.to_vec(),
        ..attr(name, attr_type::INTS)
    }
}

/// A `FLOAT` attribute.
pub fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        f: v,
        ..attr(name, attr_type::FLOAT)
    }
}

/// A `FLOATS` attribute.
pub fn attr_floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto {
        floats: v.to_vec(),
        ..attr(name, attr_type::FLOATS)
    }
}

/// A `STRING` attribute.
pub fn attr_string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        s: v.as_bytes().to_vec(),
        ..attr(name, attr_type::STRING)
    }
}

/// A `TENSOR` attribute (e.g. `Constant`'s `value`).
pub fn attr_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        t: Some(t),
        ..attr(name, attr_type::TENSOR)
    }
}

/// A `GRAPH` attribute (e.g. `If`'s `then_branch`).
pub fn attr_graph(name: &str, g: GraphProto) -> AttributeProto {
    AttributeProto {
        g: Some(Box::new(g)),
        ..attr(name, attr_type::GRAPH)
    }
}

/// A tensor of element type `elem` whose little-endian bytes are `raw` (`raw_data`).
pub fn tensor_raw(name: &str, dims: &[i64], elem: i32, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: elem,
        name: name.to_string(),
        raw_data: raw,
        ..Default::default()
    }
}

/// An f32 tensor, stored in `raw_data`.
pub fn tensor_f32(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
    let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    tensor_raw(name, dims, dt::FLOAT, raw)
}

/// An i64 tensor, stored in `int64_data`.
pub fn tensor_i64(name: &str, dims: &[i64], v: &[i64]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: dt::INT64,
        name: name.to_string(),
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

/// A graph.
pub fn graph(
    name: &str,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
) -> GraphProto {
    GraphProto {
        node: nodes,
        name: name.to_string(),
        initializer: initializers,
        input: inputs,
        output: outputs,
        value_info: Vec::new(),
    }
}

/// A model (IR version 8, producer `edgeai`) importing the default domain at `opset`.
pub fn model(graph: GraphProto, opset: i64) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        producer_name: "edgeai".into(),
        graph: Some(graph),
        ..Default::default()
    }
}
