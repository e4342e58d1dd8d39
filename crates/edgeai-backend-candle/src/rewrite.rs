//! Load-time graph rewrites: decode `Constant` nodes once, and express three operators
//! candle-onnx 0.11 lacks through ones it has.
//!
//! - `GlobalAveragePool(x)` -> `Reshape(ReduceMean(Flatten(x, axis=2), axes=[1]), [N, C, 1...])`
//!   (the target shape is computed from `Shape(x)`, so it holds for any rank);
//! - `HardSigmoid(x; alpha, beta)` -> `Clip(x * alpha + beta, 0, 1)`;
//! - `Conv` with strides `[sh, sw]`, `sh != sw` (candle's conv2d takes one stride) ->
//!   stride-1 `Conv` then `Slice(steps=[sh, sw])` over the spatial axes. Rows `0, sh, 2sh...`
//!   of the stride-1 output are exactly the strided output; it costs the stride-1 compute.

use std::collections::HashMap;

use candle_core::{Device, Tensor as CTensor};
use candle_onnx::onnx::{attribute_proto::AttributeType, GraphProto};

use crate::graph::{AttributeProto, NodeProto};

/// Moves every top-level `Constant` node holding a `value` tensor into `consts` (decoded
/// once here instead of at every run).
pub(crate) fn hoist_constants(
    graph: &mut GraphProto,
    consts: &mut HashMap<String, CTensor>,
) -> Result<(), String> {
    let mut kept = Vec::with_capacity(graph.node.len());
    for node in std::mem::take(&mut graph.node) {
        let value = (node.op_type == "Constant" && matches!(node.domain.as_str(), "" | "ai.onnx"))
            .then(|| node.attribute.iter().find(|a| a.name == "value"))
            .flatten()
            .and_then(|a| a.t.as_ref());
        match (value, node.output.first()) {
            (Some(t), Some(out)) if node.output.len() == 1 => {
                let tensor = candle_onnx::eval::get_tensor(t, &node.name)
                    .map_err(|e| format!("Constant `{}`: {e}", node.name))?;
                consts.insert(out.clone(), tensor);
            }
            _ => kept.push(node),
        }
    }
    graph.node = kept;
    Ok(())
}

/// Rewrites the operators listed in the module docs, recursively through subgraphs.
pub(crate) fn rewrite(graph: &mut GraphProto, consts: &mut HashMap<String, CTensor>) {
    let mut b = Builder {
        consts,
        next: 0,
        nodes: Vec::with_capacity(graph.node.len()),
    };
    for mut node in std::mem::take(&mut graph.node) {
        for a in &mut node.attribute {
            if let Some(g) = a.g.as_mut() {
                rewrite(g, b.consts);
            }
            for g in &mut a.graphs {
                rewrite(g, b.consts);
            }
        }
        let default_domain = matches!(node.domain.as_str(), "" | "ai.onnx");
        let shape_ok = node.input.len() == 1 && node.output.len() == 1;
        match node.op_type.as_str() {
            "GlobalAveragePool" if default_domain && shape_ok => b.global_average_pool(&node),
            "HardSigmoid" if default_domain && shape_ok => b.hard_sigmoid(&node),
            "Conv" if default_domain && node.output.len() == 1 => b.conv(node),
            _ => b.nodes.push(node),
        }
    }
    graph.node = b.nodes;
}

struct Builder<'a> {
    consts: &'a mut HashMap<String, CTensor>,
    next: usize,
    nodes: Vec<NodeProto>,
}

impl Builder<'_> {
    fn fresh(&mut self, what: &str) -> String {
        self.next += 1;
        format!("edgeai_candle_rw/{}/{what}", self.next)
    }

    fn constant(&mut self, what: &str, t: candle_core::Result<CTensor>) -> Option<String> {
        let name = self.fresh(what);
        self.consts.insert(name.clone(), t.ok()?);
        Some(name)
    }

    fn ints(&mut self, what: &str, v: &[i64]) -> Option<String> {
        let t = CTensor::from_slice(v, v.len(), &Device::Cpu);
        self.constant(what, t)
    }

    fn f32(&mut self, what: &str, v: f32) -> Option<String> {
        let t = CTensor::from_slice(&[v], 1, &Device::Cpu);
        self.constant(what, t)
    }

    fn push(&mut self, op: &str, from: &str, inputs: &[&str], output: &str) {
        self.push_with(op, from, inputs, output, vec![]);
    }

    fn push_with(
        &mut self,
        op: &str,
        from: &str,
        inputs: &[&str],
        output: &str,
        attribute: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            name: format!("{from}/{op}"),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            attribute,
            ..Default::default()
        });
    }

    fn global_average_pool(&mut self, node: &NodeProto) {
        let (x, y, n) = (&node.input[0], &node.output[0], node.name.as_str());
        let (Some(zero), Some(two), Some(end), Some(axis0), Some(one)) = (
            self.ints("zero", &[0]),
            self.ints("two", &[2]),
            self.ints("end", &[i64::MAX]),
            self.ints("axis0", &[0]),
            self.ints("one", &[1]),
        ) else {
            return self.nodes.push(node.clone());
        };
        let [shape, nc, spatial, zeros, ones, target, flat, mean] = [
            "shape", "nc", "spatial", "zeros", "ones", "target", "flat", "mean",
        ]
        .map(|w| self.fresh(w));
        self.push("Shape", n, &[x], &shape);
        self.push("Slice", n, &[&shape, &zero, &two, &axis0], &nc);
        self.push("Slice", n, &[&shape, &two, &end, &axis0], &spatial);
        self.push("Sub", n, &[&spatial, &spatial], &zeros);
        self.push("Add", n, &[&zeros, &one], &ones);
        self.push_with("Concat", n, &[&nc, &ones], &target, vec![int("axis", 0)]);
        self.push_with("Flatten", n, &[x], &flat, vec![int("axis", 2)]);
        self.push_with(
            "ReduceMean",
            n,
            &[&flat],
            &mean,
            vec![ints("axes", vec![1]), int("keepdims", 1)],
        );
        self.push("Reshape", n, &[&mean, &target], y);
    }

    fn hard_sigmoid(&mut self, node: &NodeProto) {
        let attr = |name: &str, default: f32| {
            node.attribute
                .iter()
                .find(|a| a.name == name)
                .map_or(default, |a| a.f)
        };
        let (x, y, n) = (&node.input[0], &node.output[0], node.name.as_str());
        let (Some(alpha), Some(beta), Some(lo), Some(hi)) = (
            self.f32("alpha", attr("alpha", 0.2)),
            self.f32("beta", attr("beta", 0.5)),
            self.f32("lo", 0.0),
            self.f32("hi", 1.0),
        ) else {
            return self.nodes.push(node.clone());
        };
        let [scaled, shifted] = ["scaled", "shifted"].map(|w| self.fresh(w));
        self.push("Mul", n, &[x, &alpha], &scaled);
        self.push("Add", n, &[&scaled, &beta], &shifted);
        self.push("Clip", n, &[&shifted, &lo, &hi], y);
    }

    fn conv(&mut self, mut node: NodeProto) {
        let Some(strides) = node.attribute.iter_mut().find(|a| a.name == "strides") else {
            return self.nodes.push(node);
        };
        let &[sh, sw] = strides.ints.as_slice() else {
            return self.nodes.push(node);
        };
        if sh == sw || sh < 1 || sw < 1 {
            return self.nodes.push(node);
        }
        let (Some(starts), Some(ends), Some(axes), Some(steps)) = (
            self.ints("starts", &[0, 0]),
            self.ints("ends", &[i64::MAX, i64::MAX]),
            self.ints("axes", &[2, 3]),
            self.ints("steps", &[sh, sw]),
        ) else {
            return self.nodes.push(node);
        };
        strides.ints = vec![1, 1];
        let y = std::mem::take(&mut node.output[0]);
        let dense = self.fresh("dense");
        node.output[0] = dense.clone();
        let n = node.name.clone();
        self.nodes.push(node);
        self.push("Slice", &n, &[&dense, &starts, &ends, &axes, &steps], &y);
    }
}

fn int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

fn ints(name: &str, v: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v,
        ..Default::default()
    }
}
