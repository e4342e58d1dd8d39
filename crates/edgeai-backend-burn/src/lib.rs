//! # edgeai-backend-burn
//!
//! An edgeai backend on [burn](https://crates.io/crates/burn)'s tensor operations that loads
//! ONNX models **at run time**. burn's own ONNX import (`burn-import` / `onnx-ir`) generates
//! Rust code at build time, which does not fit a library whose users pick model files at run
//! time; this crate instead reads the ONNX protobuf itself, checks every operator against the
//! list it implements, and executes the graph node by node with burn backend operations
//! (`conv2d`, `max_pool2d`, `float_matmul`, `interpolate`, `softmax`...).
//!
//! - Engines (Cargo features): `flex` (default; burn's portable pure-Rust CPU backend, the
//!   recommended one since burn 0.22) and `ndarray` (burn's older ndarray backend, deprecated
//!   upstream, kept for comparison). [`BurnBackend::new`] picks `flex` when it is compiled in;
//!   [`BurnBackend::with_engine`] picks explicitly.
//! - Float tensors run in burn; integer tensors (the `Shape` / `Gather` / `Slice` / `Concat` /
//!   `Cast` subgraphs that compute shapes) are evaluated on the host. Nodes whose inputs are
//!   all constant are folded once at load time.
//! - With [`OptLevel::Basic`] or [`OptLevel::All`] (the default), a `BatchNormalization` that
//!   follows a `Conv` with constant weights is folded into the convolution at load time.
//! - [`LoadOptions::threads`] runs the model in a rayon pool of that size (burn's CPU
//!   kernels parallelise with rayon); `None` uses rayon's global pool.
//! - A loaded model holds its weights as burn tensors (cheap, reference-counted clones per
//!   run) and no lock: one model serves many threads at once.
//! - Operators the crate lacks are reported at load time, all of them in one
//!   [`Error::UnsupportedOperator`]; a corrupt or truncated file is [`Error::InvalidModel`];
//!   a shape problem found while running is [`Error::Run`]. Library code does not panic on
//!   bad files: a panic inside a burn kernel is caught and returned as [`Error::Run`].
//!
//! Supported operators: see [`SUPPORTED_OPS`].
//!
//! ```no_run
//! use edgeai_backend_burn::BurnBackend;
//! use edgeai_core::{Backend, DType, LoadOptions, Tensor};
//!
//! let model = BurnBackend::new().load("models/face/sface.onnx".into(), &LoadOptions::new())?;
//! let out = model.run(vec![Tensor::zeros(DType::F32, vec![1, 3, 112, 112])?])?;
//! assert_eq!(out[0].shape(), &[1, 128]);
//! # Ok::<(), edgeai_core::Error>(())
//! ```
#![warn(missing_docs)]

mod ops;
mod parse;

use std::collections::HashMap;
use std::sync::Arc;

use burn_backend::Backend as BurnEngine;
use edgeai_core::{
    guard_load, guard_run, validate_inputs, Backend, DType, Error, LoadOptions, Model, ModelFormat,
    ModelSource, OptLevel, Result, RunPool, Tensor, TensorData, TensorSpec,
};

use ops::Val;
use parse::{host_from_proto, Attrs, Host, HostData, Node};

const NAME: &str = "burn";

/// The ONNX operators (default domain) this backend executes.
pub const SUPPORTED_OPS: &[&str] = ops::SUPPORTED;

/// Which burn backend executes the operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// `burn-flex`: burn's portable pure-Rust CPU backend (feature `flex`, the default).
    Flex,
    /// `burn-ndarray`: burn's ndarray CPU backend (feature `ndarray`; deprecated upstream).
    NdArray,
}

impl Engine {
    /// The engine [`BurnBackend::new`] uses: `Flex` when compiled in, else `NdArray`.
    pub fn default_compiled() -> Self {
        if cfg!(feature = "flex") || !cfg!(feature = "ndarray") {
            Engine::Flex
        } else {
            Engine::NdArray
        }
    }

    /// Whether this engine's Cargo feature is enabled.
    pub fn is_compiled(self) -> bool {
        match self {
            Engine::Flex => cfg!(feature = "flex"),
            Engine::NdArray => cfg!(feature = "ndarray"),
        }
    }
}

/// The burn backend. Cheap to create; holds only the engine choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BurnBackend {
    engine: Engine,
}

impl Default for BurnBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl BurnBackend {
    /// The backend on the default engine ([`Engine::default_compiled`]).
    pub fn new() -> Self {
        BurnBackend {
            engine: Engine::default_compiled(),
        }
    }

    /// The backend on a chosen engine. Loading fails with [`Error::BackendUnavailable`] when
    /// that engine's Cargo feature is not enabled.
    pub fn with_engine(engine: Engine) -> Self {
        BurnBackend { engine }
    }

    /// The engine models are loaded on.
    pub fn engine(&self) -> Engine {
        self.engine
    }
}

impl Backend for BurnBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn formats(&self) -> &'static [ModelFormat] {
        &[ModelFormat::Onnx]
    }

    fn load(&self, source: ModelSource, options: &LoadOptions) -> Result<Box<dyn Model>> {
        self.check_format(&source)?;
        if !self.engine.is_compiled() {
            // Say so before reading anything: no file can load on a missing engine.
            return Err(Error::BackendUnavailable {
                backend: NAME.into(),
                reason: format!(
                    "edgeai-backend-burn was built without the `{}` feature",
                    match self.engine {
                        Engine::Flex => "flex",
                        Engine::NdArray => "ndarray",
                    }
                ),
            });
        }
        let origin = source.origin();
        let bytes = source.into_bytes()?;
        let plan = Plan::parse(&bytes, &origin)?;
        match self.engine {
            #[cfg(feature = "flex")]
            Engine::Flex => load_on::<burn_flex::Flex>(plan, Default::default(), options, &origin),
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            // burn-ndarray is deprecated upstream; offered for comparison
            Engine::NdArray => load_on::<burn_ndarray::NdArray>(
                plan,
                burn_ndarray::NdArrayDevice::Cpu,
                options,
                &origin,
            ),
            #[allow(unreachable_patterns)]
            other => Err(Error::BackendUnavailable {
                backend: NAME.into(),
                reason: format!(
                    "edgeai-backend-burn was built without the `{}` feature",
                    match other {
                        Engine::Flex => "flex",
                        Engine::NdArray => "ndarray",
                    }
                ),
            }),
        }
    }
}

/// The parsed graph: plain data, independent of the burn engine.
struct Plan {
    nodes: Vec<Node>,
    n_slots: usize,
    inputs: Vec<(usize, TensorSpec)>,
    outputs: Vec<(usize, TensorSpec)>,
    /// Initializers by slot.
    initializers: Vec<(usize, Host)>,
    opset: i64,
}

fn invalid(origin: &str, reason: impl Into<String>) -> Error {
    Error::InvalidModel {
        origin: origin.to_string(),
        reason: reason.into(),
    }
}

impl Plan {
    fn parse(bytes: &[u8], origin: &str) -> Result<Plan> {
        let model = edgeai_onnx::decode(bytes, origin)?;
        let opset = model.default_opset();
        let graph = model
            .graph
            .ok_or_else(|| invalid(origin, "not an ONNX model: no graph"))?;

        // Every unsupported operator at once, before anything else can fail.
        let mut missing: Vec<String> = Vec::new();
        for n in &graph.node {
            let node = Node {
                op: n.op_type.clone(),
                name: n.name.clone(),
                inputs: vec![],
                outputs: vec![0; n.output.len()],
                attrs: Attrs::new(&n.attribute),
            };
            let label = if !(n.domain.is_empty() || n.domain == "ai.onnx") {
                Some(format!("{}:{}", n.domain, n.op_type))
            } else if !ops::SUPPORTED.contains(&n.op_type.as_str()) {
                Some(n.op_type.clone())
            } else {
                ops::unsupported_variant(&node)
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
            let spec = parse::spec_of(v).map_err(|e| invalid(origin, e))?;
            inputs.push((new_slot(&mut slots, &v.name)?, spec));
        }
        let mut nodes = Vec::with_capacity(graph.node.len());
        for n in &graph.node {
            let ins = n
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
            let outs = n
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
            nodes.push(Node {
                op: n.op_type.clone(),
                name: n.name.clone(),
                inputs: ins,
                outputs: outs,
                attrs: Attrs::new(&n.attribute),
            });
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
                Ok((id, parse::spec_of(v).map_err(|e| invalid(origin, e))?))
            })
            .collect::<Result<Vec<_>>>()?;
        if outputs.is_empty() {
            return Err(invalid(origin, "the graph has no outputs"));
        }
        Ok(Plan {
            nodes,
            n_slots: slots.len(),
            inputs,
            outputs,
            initializers,
            opset,
        })
    }
}

/// One step of the run: a node with, per input, whether the run may move the value out of
/// its slot (its last use) instead of cloning it.
struct Step {
    node: Node,
    take: Vec<bool>,
}

/// A model loaded by the burn backend on engine `B`.
///
/// Weights and folded constants are burn tensors shared (reference-counted) by every run;
/// each run owns its intermediate values, so concurrent runs need no lock.
pub struct BurnModel<B: BurnEngine> {
    steps: Vec<Step>,
    constants: Vec<Option<Val<B>>>,
    input_slots: Vec<usize>,
    output_slots: Vec<usize>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    device: B::Device,
    opset: i64,
    pool: RunPool,
}

impl<B: BurnEngine> std::fmt::Debug for BurnModel<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BurnModel")
            .field("engine", &std::any::type_name::<B>())
            .field("nodes", &self.steps.len())
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

fn load_on<B: BurnEngine>(
    plan: Plan,
    device: B::Device,
    options: &LoadOptions,
    origin: &str,
) -> Result<Box<dyn Model>> {
    let Plan {
        nodes,
        n_slots,
        inputs,
        outputs,
        initializers,
        opset,
    } = plan;
    let mut hosts: Vec<Option<Host>> = vec![None; n_slots];
    for (id, h) in initializers {
        hosts[id] = Some(h);
    }
    let nodes = if options.optimization == OptLevel::None {
        nodes
    } else {
        let keep: Vec<usize> = outputs.iter().map(|(s, _)| *s).collect();
        let mut nodes = fuse_conv_bn(nodes, &mut hosts, &keep);
        pretranspose_gemm(&mut nodes, &mut hosts);
        nodes
    };
    let n_slots = hosts.len();
    let mut constants: Vec<Option<Val<B>>> = hosts
        .into_iter()
        .map(|h| {
            h.map(|h| match h.data {
                HostData::F32(_) => Val::F(ops::upload::<B>(&h, &device)),
                HostData::I64(_) => Val::I(Arc::new(h)),
            })
        })
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
            ops::exec::<B>(&node, ins, &device, opset).map_err(|e| invalid(origin, e))
        })?;
        for (slot, v) in node.outputs.iter().zip(outs) {
            constants[*slot] = Some(v);
        }
    }

    // Constants that no remaining node or output reads (folded away, fused) are dropped.
    let mut read = vec![false; n_slots];
    for n in &kept {
        for s in n.inputs.iter().flatten() {
            read[*s] = true;
        }
    }
    for (s, _) in &outputs {
        read[*s] = true;
    }
    for (c, r) in constants.iter_mut().zip(&read) {
        if !r {
            *c = None;
        }
    }

    // Last use of each slot, to move values out instead of cloning them.
    let is_output: Vec<bool> = {
        let mut v = vec![false; n_slots];
        for (s, _) in &outputs {
            v[*s] = true;
        }
        v
    };
    let mut last_use = vec![usize::MAX; n_slots];
    for (i, n) in kept.iter().enumerate() {
        for s in n.inputs.iter().flatten() {
            last_use[*s] = i;
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
        .collect::<Vec<_>>();

    let pool = RunPool::new(NAME, options)?;
    tracing::debug!(
        %origin,
        engine = std::any::type_name::<B>(),
        nodes = steps.len(),
        opset,
        "burn model loaded"
    );
    let (input_slots, input_specs): (Vec<_>, Vec<_>) = inputs.into_iter().unzip();
    let (output_slots, output_specs): (Vec<_>, Vec<_>) = outputs.into_iter().unzip();
    Ok(Box::new(BurnModel::<B> {
        steps,
        constants,
        input_slots,
        output_slots,
        inputs: input_specs,
        outputs: output_specs,
        device,
        opset,
        pool,
    }))
}

/// Folds `BatchNormalization(Conv(x, W, b))` into `Conv(x, W', b')` when the weights and
/// the normalisation parameters are constants and the convolution feeds nothing else.
fn fuse_conv_bn(nodes: Vec<Node>, hosts: &mut Vec<Option<Host>>, keep: &[usize]) -> Vec<Node> {
    let mut readers = vec![0usize; hosts.len()];
    for n in &nodes {
        for s in n.inputs.iter().flatten() {
            readers[*s] += 1;
        }
    }
    let producer: HashMap<usize, usize> = nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.outputs.iter().map(move |&s| (s, i)))
        .collect();
    let mut nodes: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    let f32s = |hosts: &[Option<Host>], s: Option<usize>| -> Option<(Vec<usize>, Vec<f32>)> {
        match hosts.get(s?)?.as_ref()? {
            Host {
                shape,
                data: HostData::F32(v),
            } => Some((shape.clone(), v.clone())),
            _ => None,
        }
    };
    for i in 0..nodes.len() {
        let Some(bn) = nodes[i].as_ref() else {
            continue;
        };
        if bn.op != "BatchNormalization" || bn.outputs.len() != 1 || bn.inputs.len() != 5 {
            continue;
        }
        let Some(x) = bn.inputs[0] else { continue };
        let Some(&ci) = producer.get(&x) else {
            continue;
        };
        if readers[x] != 1 || keep.contains(&x) {
            continue;
        }
        let Some(conv) = nodes[ci].as_ref() else {
            continue;
        };
        if conv.op != "Conv" || conv.inputs.len() < 2 {
            continue;
        }
        let params: Option<Vec<Vec<f32>>> = (1..5)
            .map(|k| f32s(hosts, bn.inputs[k]).map(|(_, v)| v))
            .collect();
        let Some(p) = params else { continue };
        let Some((wshape, mut w)) = f32s(hosts, conv.inputs[1]) else {
            continue;
        };
        let m = wshape.first().copied().unwrap_or(0);
        if m == 0 || w.is_empty() || p.iter().any(|v| v.len() != m) || w.len() % m != 0 {
            continue;
        }
        let bias = match conv.inputs.get(2).copied().flatten() {
            Some(s) => match f32s(hosts, Some(s)) {
                Some((_, b)) if b.len() == m => b,
                _ => continue,
            },
            None => vec![0.0; m],
        };
        let eps = bn.attrs.float("epsilon", 1e-5);
        let per = w.len() / m;
        let mut nb = vec![0.0f32; m];
        for (o, (nbo, wo)) in nb.iter_mut().zip(w.chunks_mut(per)).enumerate() {
            let a = p[0][o] / (p[3][o] + eps).sqrt();
            for v in wo {
                *v *= a;
            }
            *nbo = (bias[o] - p[2][o]) * a + p[1][o];
        }
        // Fused weights in fresh slots: the originals may be read elsewhere; unread
        // constants are dropped after folding.
        let ws = hosts.len();
        hosts.push(Some(Host {
            shape: wshape,
            data: HostData::F32(w),
        }));
        let bias_slot = hosts.len();
        hosts.push(Some(Host {
            shape: vec![m],
            data: HostData::F32(nb),
        }));
        let out = bn.outputs[0];
        let mut fused = conv.clone();
        fused.inputs = vec![conv.inputs[0], Some(ws), Some(bias_slot)];
        fused.outputs = vec![out];
        nodes[ci] = Some(fused);
        nodes[i] = None;
    }
    nodes.into_iter().flatten().collect()
}

/// Stores a constant `Gemm` weight with `transB = 1` transposed once, so that runs multiply
/// by a contiguous matrix instead of a transposed view.
fn pretranspose_gemm(nodes: &mut [Node], hosts: &mut Vec<Option<Host>>) {
    for n in nodes.iter_mut() {
        if n.op != "Gemm" || n.attrs.int("transB", 0) == 0 {
            continue;
        }
        let Some(Some(ws)) = n.inputs.get(1).copied() else {
            continue;
        };
        let Some(Some(Host {
            shape,
            data: HostData::F32(w),
        })) = hosts.get(ws)
        else {
            continue;
        };
        let [r, c] = shape[..] else { continue };
        let mut t = vec![0.0f32; w.len()];
        for i in 0..r {
            for j in 0..c {
                t[j * r + i] = w[i * c + j];
            }
        }
        let slot = hosts.len();
        hosts.push(Some(Host {
            shape: vec![c, r],
            data: HostData::F32(t),
        }));
        n.inputs[1] = Some(slot);
        n.attrs.set_int("transB", 0);
    }
}

impl<B: BurnEngine> BurnModel<B> {
    fn val_of(&self, t: Tensor) -> Val<B> {
        let (shape, data) = t.into_parts();
        let f = |v: Vec<f32>| {
            Val::F(ops::upload::<B>(
                &Host {
                    shape: shape.clone(),
                    data: HostData::F32(v),
                },
                &self.device,
            ))
        };
        let i = |v: Vec<i64>| Val::I(Arc::new(Host::ints(shape.clone(), v)));
        match data {
            TensorData::F32(v) => f(v),
            TensorData::F16(v) => f(v.iter().map(|x| x.to_f32()).collect()),
            TensorData::BF16(v) => f(v.iter().map(|x| x.to_f32()).collect()),
            TensorData::I8(v) => i(v.iter().map(|&x| x as i64).collect()),
            TensorData::U8(v) => i(v.iter().map(|&x| x as i64).collect()),
            TensorData::I32(v) => i(v.iter().map(|&x| x as i64).collect()),
            TensorData::I64(v) => i(v),
        }
    }

    fn tensor_of(&self, v: Val<B>, spec: &TensorSpec) -> std::result::Result<Tensor, String> {
        let (shape, data) = match v {
            Val::F(t) => {
                let (shape, v) = ops::download::<B>(t)?;
                let data = match spec.dtype {
                    DType::F16 => {
                        TensorData::F16(v.iter().map(|&x| half::f16::from_f32(x)).collect())
                    }
                    DType::BF16 => {
                        TensorData::BF16(v.iter().map(|&x| half::bf16::from_f32(x)).collect())
                    }
                    _ => TensorData::F32(v),
                };
                (shape, data)
            }
            Val::I(h) => {
                let v = h.to_i64();
                let data = match spec.dtype {
                    DType::I32 => TensorData::I32(v.iter().map(|&x| x as i32).collect()),
                    DType::I8 => TensorData::I8(v.iter().map(|&x| x as i8).collect()),
                    DType::U8 => TensorData::U8(v.iter().map(|&x| x as u8).collect()),
                    DType::F32 => TensorData::F32(h.to_f32()),
                    _ => TensorData::I64(v),
                };
                (h.shape.clone(), data)
            }
        };
        Tensor::from_data(shape, data).map_err(|e| e.to_string())
    }

    fn run_graph(&self, inputs: Vec<Tensor>) -> std::result::Result<Vec<Tensor>, String> {
        let mut slots = self.constants.clone();
        for (&s, t) in self.input_slots.iter().zip(inputs) {
            slots[s] = Some(self.val_of(t));
        }
        for step in &self.steps {
            let node = &step.node;
            let ins: Vec<Option<Val<B>>> = node
                .inputs
                .iter()
                .zip(&step.take)
                .map(|(s, &take)| {
                    s.and_then(|s| {
                        if take {
                            slots[s].take()
                        } else {
                            slots[s].clone()
                        }
                    })
                })
                .collect();
            let outs = ops::exec::<B>(node, ins, &self.device, self.opset)?;
            if outs.len() < node.outputs.len() {
                return Err(format!(
                    "{} node `{}` produced {} outputs, the graph expects {}",
                    node.op,
                    node.name,
                    outs.len(),
                    node.outputs.len()
                ));
            }
            for (&s, v) in node.outputs.iter().zip(outs) {
                slots[s] = Some(v);
            }
        }
        self.output_slots
            .iter()
            .zip(&self.outputs)
            .map(|(&s, spec)| {
                let v = slots[s]
                    .clone()
                    .ok_or_else(|| format!("output `{}` was not computed", spec.name))?;
                self.tensor_of(v, spec)
            })
            .collect()
    }
}

impl<B: BurnEngine> Model for BurnModel<B> {
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
        guard_run(NAME, || {
            self.pool
                .install(|| self.run_graph(inputs))
                .map_err(|reason| Error::Run {
                    backend: NAME.into(),
                    reason,
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeai_onnx::build::{self, attr_int, attr_string, fixed, sym};
    use edgeai_onnx::proto::{dt, NodeProto, TensorProto, ValueInfoProto};

    fn vi(name: &str, dims: &[i64]) -> ValueInfoProto {
        let dims: Vec<_> = dims
            .iter()
            .map(|&d| if d > 0 { fixed(d) } else { sym("n") })
            .collect();
        build::value(name, dt::FLOAT, &dims)
    }

    fn node(
        op: &str,
        ins: &[&str],
        outs: &[&str],
        attrs: Vec<edgeai_onnx::proto::AttributeProto>,
    ) -> NodeProto {
        attrs
            .into_iter()
            .fold(build::node(op, ins, outs), NodeProto::with)
    }

    fn model(
        nodes: Vec<NodeProto>,
        inits: Vec<TensorProto>,
        inp: ValueInfoProto,
        out: ValueInfoProto,
    ) -> Vec<u8> {
        build::model(build::graph("g", nodes, inits, vec![inp], vec![out]), 13).to_bytes()
    }

    fn i64s(name: &str, v: &[i64]) -> TensorProto {
        build::tensor_i64(name, &[v.len() as i64], v)
    }

    #[test]
    fn all_unsupported_operators_are_listed() {
        let bytes = model(
            vec![
                node("Relu", &["x"], &["a"], vec![]),
                node("FancyOp", &["a"], &["b"], vec![]),
                node("Loop", &["b"], &["c"], vec![]),
                node("FancyOp", &["c"], &["y"], vec![]),
            ],
            vec![],
            vi("x", &[1, 4]),
            vi("y", &[1, 4]),
        );
        let err = BurnBackend::new()
            .load(bytes.into(), &LoadOptions::new())
            .err()
            .unwrap_or_else(|| panic!("the model loaded"));
        match err {
            Error::UnsupportedOperator { ops, backend, .. } => {
                assert_eq!(backend, "burn");
                assert_eq!(ops.as_slice(), ["FancyOp", "Loop"]);
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn unsupported_attribute_variant_is_reported_at_load() {
        let mode = attr_string("mode", "cubic");
        let bytes = model(
            vec![node("Resize", &["x", "", "s"], &["y"], vec![mode])],
            vec![build::tensor_f32("s", &[4], &[1.0, 1.0, 2.0, 2.0])],
            vi("x", &[1, 1, 2, 2]),
            vi("y", &[1, 1, 4, 4]),
        );
        let err = BurnBackend::new()
            .load(bytes.into(), &LoadOptions::new())
            .err()
            .unwrap_or_else(|| panic!("the model loaded"));
        assert!(err.to_string().contains("Resize(mode=cubic"), "{err}");
    }

    #[test]
    fn shape_subgraph_on_a_symbolic_batch() {
        // y = Reshape(x, Concat(Slice(Shape(x), 0, 1), [-1])): [n, 2, 3] -> [n, 6]
        let bytes = model(
            vec![
                node("Shape", &["x"], &["s"], vec![]),
                node("Slice", &["s", "st", "en"], &["n"], vec![]),
                node("Concat", &["n", "m1"], &["t"], vec![attr_int("axis", 0)]),
                node("Reshape", &["x", "t"], &["y"], vec![]),
            ],
            vec![i64s("st", &[0]), i64s("en", &[1]), i64s("m1", &[-1])],
            vi("x", &[0, 2, 3]),
            vi("y", &[0, 6]),
        );
        let m = BurnBackend::new()
            .load(bytes.into(), &LoadOptions::new())
            .unwrap();
        let x = Tensor::from_vec(vec![3, 2, 3], (0..18).map(|i| i as f32).collect()).unwrap();
        let y = m.run(vec![x]).unwrap();
        assert_eq!(y[0].shape(), &[3, 6]);
        assert_eq!(y[0].as_slice::<f32>().unwrap()[7], 7.0);
    }

    #[test]
    fn dangling_input_is_invalid_not_a_panic() {
        let bytes = model(
            vec![node("Relu", &["nowhere"], &["y"], vec![])],
            vec![],
            vi("x", &[1]),
            vi("y", &[1]),
        );
        let err = BurnBackend::new()
            .load(bytes.into(), &LoadOptions::new())
            .err()
            .unwrap_or_else(|| panic!("the model loaded"));
        assert!(matches!(err, Error::InvalidModel { .. }), "{err}");
        assert!(err.to_string().contains("nowhere"));
    }

    #[test]
    fn shape_mismatch_inside_the_graph_is_a_run_error() {
        // Add of [1, 3] and a [4] initializer: valid file, impossible broadcast.
        let bytes = model(
            vec![node("Add", &["x", "w"], &["y"], vec![])],
            vec![build::tensor_f32("w", &[4], &[1.0; 4])],
            vi("x", &[1, 3]),
            vi("y", &[1, 3]),
        );
        let m = BurnBackend::new()
            .load(bytes.into(), &LoadOptions::new())
            .unwrap();
        let err = m
            .run(vec![Tensor::zeros(DType::F32, vec![1, 3]).unwrap()])
            .unwrap_err();
        assert!(matches!(err, Error::Run { .. }), "{err}");
    }
}
