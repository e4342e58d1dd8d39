//! The execution plan: the parsed graph after the load-time passes, with its constants
//! uploaded, the nodes whose inputs are all constant folded away, and for every step which
//! inputs it reads for the last time (moved out of their slot instead of cloned).

use burn_backend::Backend;
use edgeai_core::{guard_load, OptLevel, Result, TensorSpec};

use crate::error::invalid;
use crate::ops::{self, Val};
use crate::parse::{Graph, Host, Node};
use crate::{passes, NAME};

/// One step of the run: a node with, per input, whether the run may move the value out of
/// its slot (its last use) instead of cloning it.
pub(crate) struct Step {
    pub node: Node,
    pub take: Vec<bool>,
}

/// What a loaded model runs, on engine `B`.
pub(crate) struct Plan<B: Backend> {
    pub steps: Vec<Step>,
    /// Weights and folded constants by slot (`None` for the values each run computes).
    pub constants: Vec<Option<Val<B>>>,
    pub input_slots: Vec<usize>,
    pub output_slots: Vec<usize>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    pub opset: i64,
}

impl<B: Backend> Plan<B> {
    /// Plans `graph` on `device`; a node that fails while folding makes the file invalid.
    pub fn new(graph: Graph, device: &B::Device, opt: OptLevel, origin: &str) -> Result<Self> {
        let Graph {
            nodes,
            n_slots,
            inputs,
            outputs,
            initializers,
            opset,
        } = graph;
        let mut hosts: Vec<Option<Host>> = vec![None; n_slots];
        for (id, h) in initializers {
            hosts[id] = Some(h);
        }
        let nodes = if opt == OptLevel::None {
            nodes
        } else {
            let keep: Vec<usize> = outputs.iter().map(|(s, _)| *s).collect();
            let mut nodes = passes::fuse_conv_bn(nodes, &mut hosts, &keep);
            passes::pretranspose_gemm(&mut nodes, &mut hosts);
            nodes
        };
        let n_slots = hosts.len();
        let mut constants: Vec<Option<Val<B>>> = hosts
            .into_iter()
            .map(|h| h.map(|h| ops::settle::<B>(h, device)))
            .collect();

        // Fold nodes whose inputs are all constant (Constant nodes, shape arithmetic on
        // constants, reshapes of weights...).
        let mut kept = Vec::with_capacity(nodes.len());
        for node in nodes {
            let all_const = node
                .inputs
                .iter()
                .all(|s| s.is_none_or(|s| constants[s].is_some()));
            if !all_const {
                kept.push(node);
                continue;
            }
            let ins: Vec<Option<Val<B>>> = node
                .inputs
                .iter()
                .map(|s| s.and_then(|s| constants[s].clone()))
                .collect();
            let outs = guard_load(NAME, origin, || {
                ops::exec::<B>(&node, ins, device, opset).map_err(|e| invalid(origin, e))
            })?;
            for (slot, v) in node.outputs.iter().zip(outs) {
                constants[*slot] = Some(v);
            }
        }

        // Last use of each slot, to move values out instead of cloning them.
        let mut is_output = vec![false; n_slots];
        for (s, _) in &outputs {
            is_output[*s] = true;
        }
        let mut last_use = vec![usize::MAX; n_slots];
        for (i, n) in kept.iter().enumerate() {
            for s in n.inputs.iter().flatten() {
                last_use[*s] = i;
            }
        }
        // Constants that no remaining node or output reads (folded away, fused) are dropped.
        for (s, c) in constants.iter_mut().enumerate() {
            if last_use[s] == usize::MAX && !is_output[s] {
                *c = None;
            }
        }
        let steps = kept
            .into_iter()
            .enumerate()
            .map(|(i, node)| {
                let take = node
                    .inputs
                    .iter()
                    .enumerate()
                    .map(|(j, s)| match s {
                        Some(s) => {
                            last_use[*s] == i
                                && constants[*s].is_none()
                                && !is_output[*s]
                                && !node.inputs[j + 1..].contains(&Some(*s))
                        }
                        None => false,
                    })
                    .collect();
                Step { node, take }
            })
            .collect();
        let (input_slots, inputs) = inputs.into_iter().unzip();
        let (output_slots, outputs) = outputs.into_iter().unzip();
        Ok(Plan {
            steps,
            constants,
            input_slots,
            output_slots,
            inputs,
            outputs,
            opset,
        })
    }
}
