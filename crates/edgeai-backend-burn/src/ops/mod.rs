//! ONNX operators executed with burn backend tensor operations: one file per family, the
//! shared helpers, and the registry that both lists the operators ([`SUPPORTED`]) and
//! dispatches to them ([`exec`]), so the two cannot diverge.
//!
//! Float tensors live in the burn backend (`B::FloatTensorPrimitive`, rank-dynamic); integer
//! tensors (shapes, indices, axes: the small shape-computing subgraphs) stay on the host as
//! `i64`, where they are cheap and exact.

mod conv;
mod elementwise;
mod linear;
mod norm;
mod reduce;
mod resize;
mod shape;
mod tensor;

use std::sync::Arc;

use burn_backend::tensor::FloatTensor;
use burn_backend::{Backend, Shape, TensorData, TensorMetadata};

use crate::error::{NodeError, OpError as E};
use crate::parse::{numel, Host, HostData, Node};

/// A value flowing through the graph.
#[derive(Debug, Clone)]
pub(crate) enum Val<B: Backend> {
    /// A float tensor in the burn backend.
    F(FloatTensor<B>),
    /// An integer (or bool) tensor on the host.
    I(Arc<Host>),
}

pub(crate) type R<T> = Result<T, E>;
/// What an operator returns: its output values in order.
type Out<B> = R<Vec<Val<B>>>;
/// An operator: runs a node on the inputs in the context.
type OpFn<B> = fn(&Node, &mut Cx<'_, B>) -> Out<B>;

/// Generates, from one list, [`SUPPORTED`] and the `dispatch` that [`exec`] uses.
macro_rules! registry {
    ($($op:literal => $f:path,)*) => {
        /// Every operator type [`exec`] implements (default ONNX domain), sorted.
        pub(crate) const SUPPORTED: &[&str] = &[$($op),*];

        /// The function that runs operator type `op`, if the registry has it.
        fn dispatch<B: Backend>(op: &str) -> Option<OpFn<B>> {
            let f: OpFn<B> = match op {
                $($op => $f,)*
                _ => return None,
            };
            Some(f)
        }
    };
}

// The one list of operators, sorted case-insensitively: `SUPPORTED` (the public
// `SUPPORTED_OPS`) and `dispatch` are both generated from it.
registry! {
    "Abs" => elementwise::unary, "Add" => elementwise::binary, "AveragePool" => conv::pool,
    "BatchNormalization" => norm::batch_norm, "Cast" => tensor::cast, "Clip" => elementwise::clip,
    "Concat" => shape::concat, "Constant" => tensor::constant,
    "ConstantOfShape" => tensor::constant_of_shape, "Conv" => conv::conv,
    "Div" => elementwise::binary, "Dropout" => tensor::dropout, "Equal" => elementwise::binary,
    "Erf" => elementwise::unary, "Exp" => elementwise::unary, "Expand" => shape::expand,
    "Flatten" => shape::flatten, "Gather" => shape::gather, "Gemm" => linear::gemm,
    "GlobalAveragePool" => conv::global_pool, "GlobalMaxPool" => conv::global_pool,
    "HardSigmoid" => elementwise::unary, "HardSwish" => elementwise::unary,
    "Identity" => tensor::identity, "LeakyRelu" => elementwise::unary, "Log" => elementwise::unary,
    "MatMul" => linear::matmul, "MaxPool" => conv::pool, "Mul" => elementwise::binary,
    "Neg" => elementwise::unary, "Pow" => elementwise::binary, "PRelu" => elementwise::prelu,
    "Reciprocal" => elementwise::unary, "ReduceMax" => reduce::reduce,
    "ReduceMean" => reduce::reduce, "ReduceSum" => reduce::reduce, "Relu" => elementwise::unary,
    "Reshape" => shape::reshape, "Resize" => resize::resize, "Shape" => shape::shape,
    "Sigmoid" => elementwise::unary, "Slice" => shape::slice, "Softmax" => norm::softmax,
    "Sqrt" => elementwise::unary, "Squeeze" => shape::squeeze, "Sub" => elementwise::binary,
    "Tanh" => elementwise::unary, "Transpose" => shape::transpose, "Unsqueeze" => shape::squeeze,
    "Upsample" => resize::resize,
}

/// Runs one node. `ins` holds the node's inputs in order (`None` for omitted ones).
pub(crate) fn exec<B: Backend>(
    node: &Node,
    ins: Vec<Option<Val<B>>>,
    dev: &B::Device,
    opset: i64,
) -> Result<Vec<Val<B>>, NodeError> {
    let run =
        dispatch::<B>(&node.op).ok_or_else(|| E::Unsupported("operator not implemented".into()));
    run.and_then(|f| f(node, &mut Cx { ins, dev, opset }))
        .map_err(|source| NodeError {
            node: node.name.clone(),
            op: node.op.clone(),
            source,
        })
}

/// What an operator runs with: its inputs (each taken at most once), device and opset.
pub(crate) struct Cx<'d, B: Backend> {
    ins: Vec<Option<Val<B>>>,
    dev: &'d B::Device,
    opset: i64,
}

impl<B: Backend> Cx<'_, B> {
    /// Input `i`, moved out; `None` when omitted (or already taken).
    fn opt(&mut self, i: usize) -> Option<Val<B>> {
        self.ins.get_mut(i).and_then(Option::take)
    }

    /// Input `i`, moved out; an error when it is absent.
    fn take(&mut self, i: usize) -> R<Val<B>> {
        self.opt(i).ok_or(E::MissingInput(i))
    }

    /// Input `i` as a burn float tensor.
    fn float(&mut self, i: usize) -> R<FloatTensor<B>> {
        Ok(to_f::<B>(self.take(i)?, self.dev))
    }

    /// Input `i` on the host.
    fn host(&mut self, i: usize) -> R<Arc<Host>> {
        to_host::<B>(self.take(i)?)
    }

    /// Optional input `i` on the host.
    fn opt_host(&mut self, i: usize) -> R<Option<Arc<Host>>> {
        self.opt(i).map(to_host::<B>).transpose()
    }
}

fn one<B: Backend>(v: Val<B>) -> Out<B> {
    Ok(vec![v])
}

fn one_f<B: Backend>(t: FloatTensor<B>) -> Out<B> {
    Ok(vec![Val::F(t)])
}

/// Attribute combinations that [`exec`] cannot run, found at load time: returns a label like
/// `Resize(mode=cubic)` for the unsupported-operator error.
pub(crate) fn unsupported_variant(node: &Node) -> Option<String> {
    let a = &node.attrs;
    if a.has_subgraph() {
        return Some(format!("{}(sub-graph)", node.op));
    }
    match node.op.as_str() {
        "Resize" | "Upsample" => {
            let mode = a.string("mode", "nearest");
            let ctm = a.string("coordinate_transformation_mode", "half_pixel");
            let nearest = a.string("nearest_mode", "round_prefer_floor");
            match mode.as_str() {
                "nearest"
                    if node.op == "Upsample" || (ctm == "asymmetric" && nearest == "floor") =>
                {
                    None
                }
                "linear" | "bilinear"
                    if node.op == "Upsample"
                        || matches!(
                            ctm.as_str(),
                            "half_pixel" | "pytorch_half_pixel" | "align_corners"
                        ) =>
                {
                    None
                }
                _ => Some(format!(
                    "{}(mode={mode}, coordinate_transformation_mode={ctm}, nearest_mode={nearest})",
                    node.op
                )),
            }
        }
        "MaxPool" if node.outputs.len() > 1 => Some("MaxPool(Indices output)".into()),
        "Conv" | "MaxPool" | "AveragePool" => {
            let k = a.ints("kernel_shape").map_or(2, |k| k.len());
            (k != 2).then(|| format!("{}({k}-D)", node.op))
        }
        _ => None,
    }
}

pub(crate) fn shp<B: Backend>(t: &FloatTensor<B>) -> Vec<usize> {
    t.shape().to_vec()
}

fn reshape<B: Backend>(t: FloatTensor<B>, s: &[usize]) -> FloatTensor<B> {
    if t.shape().as_slice() == s {
        return t;
    }
    B::float_reshape(t, Shape::from(s.to_vec()))
}

/// Uploads a host tensor as a burn float tensor.
pub(crate) fn upload<B: Backend>(h: &Host, dev: &B::Device) -> FloatTensor<B> {
    B::float_from_data(TensorData::new(h.to_f32(), h.shape.clone()), dev)
}

/// Downloads a burn float tensor as shape and row-major f32 values.
pub(crate) fn download<B: Backend>(t: FloatTensor<B>) -> R<(Vec<usize>, Vec<f32>)> {
    let data = burn_backend::try_read_sync(B::float_into_data(t))
        .ok_or_else(|| E::Read("the backend cannot read tensors synchronously".into()))?
        .map_err(|e| E::Read(format!("reading a tensor failed: {e:?}")))?;
    let shape = data.shape().to_vec();
    let v = data
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| E::Read(format!("reading a tensor failed: {e:?}")))?;
    Ok((shape, v))
}

fn to_f<B: Backend>(v: Val<B>, dev: &B::Device) -> FloatTensor<B> {
    match v {
        Val::F(t) => t,
        Val::I(h) => upload::<B>(&h, dev),
    }
}

fn to_host<B: Backend>(v: Val<B>) -> R<Arc<Host>> {
    match v {
        Val::I(h) => Ok(h),
        Val::F(t) => {
            let (shape, data) = download::<B>(t)?;
            Ok(Arc::new(Host::floats(shape, data)))
        }
    }
}

fn val_shape<B: Backend>(v: &Val<B>) -> Vec<usize> {
    match v {
        Val::F(t) => shp::<B>(t),
        Val::I(h) => h.shape.clone(),
    }
}

fn norm_axis(axis: i64, rank: usize) -> R<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(E::Axis { axis, rank })
    }
}

fn norm_axes(axes: &[i64], rank: usize) -> R<Vec<usize>> {
    axes.iter().map(|&a| norm_axis(a, rank)).collect()
}

/// `shape` with leading ones up to `rank`.
fn pad_rank(shape: &[usize], rank: usize) -> Vec<usize> {
    let mut s = vec![1; rank.saturating_sub(shape.len())];
    s.extend_from_slice(shape);
    s
}

/// The most elements a tensor that the graph builds from attribute or shape data (Expand,
/// ConstantOfShape, Resize, broadcasts) may have: a corrupt file asking for more is an error,
/// not an allocation failure.
const MAX_ELEMENTS: usize = 1 << 28;

fn check_size(shape: &[usize]) -> R<()> {
    match numel(shape) {
        Ok(n) if n <= MAX_ELEMENTS => Ok(()),
        _ => Err(E::TooLarge(shape.to_vec())),
    }
}

fn broadcast_shape(a: &[usize], b: &[usize]) -> R<Vec<usize>> {
    let r = a.len().max(b.len());
    let (pa, pb) = (pad_rank(a, r), pad_rank(b, r));
    pa.iter()
        .zip(&pb)
        .map(|(&x, &y)| {
            if x == y || y == 1 {
                Ok(x)
            } else if x == 1 {
                Ok(y)
            } else {
                Err(E::Broadcast(a.to_vec(), b.to_vec()))
            }
        })
        .collect()
}

/// For each element of `out` (row-major), the flat index of the element of a tensor of
/// shape `inp` that broadcasts to it.
fn broadcast_index(out: &[usize], inp: &[usize]) -> Vec<usize> {
    let inp = pad_rank(inp, out.len());
    let sel: Vec<Vec<usize>> = out
        .iter()
        .zip(&inp)
        .map(|(&o, &i)| (0..o).map(|k| if i == 1 { 0 } else { k }).collect())
        .collect();
    take_index(&inp, &sel)
}

/// The flat (row-major) indices into a tensor of `shape` of the cartesian product of the
/// per-axis indices `sel`, in row-major order.
fn take_index(shape: &[usize], sel: &[Vec<usize>]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    let n: usize = sel.iter().map(|s| s.len()).product();
    let mut idx = vec![0usize; sel.len()];
    let mut flat = Vec::with_capacity(n);
    for _ in 0..n {
        flat.push(
            idx.iter()
                .enumerate()
                .map(|(d, &i)| sel[d][i] * strides[d])
                .sum(),
        );
        for d in (0..sel.len()).rev() {
            idx[d] += 1;
            if idx[d] < sel[d].len() {
                break;
            }
            idx[d] = 0;
        }
    }
    flat
}

fn host_val<B: Backend>(h: Host) -> Val<B> {
    Val::I(Arc::new(h))
}

/// Turns a host value into the right kind: floats go to the backend.
pub(crate) fn settle<B: Backend>(h: Host, dev: &B::Device) -> Val<B> {
    match h.data {
        HostData::F32(_) => Val::F(upload::<B>(&h, dev)),
        HostData::I64(_) => host_val::<B>(h),
    }
}

fn reshape_val<B: Backend>(x: Val<B>, target: &[usize]) -> Val<B> {
    match x {
        Val::F(t) => Val::F(reshape::<B>(t, target)),
        Val::I(h) => {
            let mut h = (*h).clone();
            h.shape = target.to_vec();
            Val::I(Arc::new(h))
        }
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;

    #[test]
    fn every_registered_op_dispatches_and_the_list_is_sorted_and_unique() {
        for op in SUPPORTED {
            assert!(dispatch::<burn_flex::Flex>(op).is_some(), "{op}");
        }
        assert!(dispatch::<burn_flex::Flex>("Loop").is_none());
        let mut sorted = SUPPORTED.to_vec();
        sorted.sort_by_key(|op| op.to_lowercase());
        sorted.dedup();
        assert_eq!(sorted, SUPPORTED, "sorted case-insensitively, each once");
    }
}
