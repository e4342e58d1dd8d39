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
        "Resize" | "Upsample" => resize::unsupported(node),
        "Conv" => {
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
    use crate::parse::Attrs;
    use edgeai_onnx::build::{attr_float, attr_int, attr_ints, attr_string};
    use edgeai_onnx::proto::AttributeProto;

    type F = burn_flex::Flex;

    /// Runs operator `op` (`n_out` outputs) on `ins` at `opset` with `attrs`.
    fn run(
        op: &str,
        attrs: Vec<AttributeProto>,
        ins: Vec<Option<Val<F>>>,
        n_out: usize,
        opset: i64,
    ) -> Result<Vec<Val<F>>, NodeError> {
        let node = Node {
            op: op.into(),
            name: "n".into(),
            inputs: (0..ins.len()).map(Some).collect(),
            outputs: (0..n_out).collect(),
            attrs: Attrs::new(&attrs),
        };
        exec::<F>(&node, ins, &Default::default(), opset)
    }

    fn floats(shape: &[usize], v: &[f32]) -> Option<Val<F>> {
        Some(Val::F(upload::<F>(
            &Host::floats(shape.to_vec(), v.to_vec()),
            &Default::default(),
        )))
    }

    fn ints(shape: &[usize], v: &[i64]) -> Option<Val<F>> {
        Some(host_val(Host::ints(shape.to_vec(), v.to_vec())))
    }

    /// Shape and values of a result, floats rounded to 1e-4.
    fn values(v: &Val<F>) -> (Vec<usize>, Vec<f32>) {
        let h = to_host::<F>(v.clone()).unwrap();
        let r = h.to_f32().iter().map(|x| (x * 1e4).round() / 1e4).collect();
        (h.shape.clone(), r)
    }

    #[test]
    fn average_pool_counts_padding_only_with_count_include_pad() {
        // 1-D [1, 2, 3], window 2, pads (1, 0): the first window is [pad, 1].
        let x = || floats(&[1, 1, 3], &[1.0, 2.0, 3.0]);
        let attrs = |inc| {
            vec![
                attr_ints("kernel_shape", &[2]),
                attr_ints("pads", &[1, 0]),
                attr_int("count_include_pad", inc),
            ]
        };
        let y = run("AveragePool", attrs(0), vec![x()], 1, 19).unwrap();
        assert_eq!(values(&y[0]), (vec![1, 1, 3], vec![1.0, 1.5, 2.5]));
        let y = run("AveragePool", attrs(1), vec![x()], 1, 19).unwrap();
        assert_eq!(values(&y[0]).1, vec![0.5, 1.5, 2.5]);
    }

    #[test]
    fn ceil_mode_drops_a_window_starting_in_the_end_padding() {
        // len 5, window 2, stride 2, pads (1, 1): ceil gives 4 windows, the last starting
        // at padded position 6 = 5 + 1 (all padding), so 3 remain.
        let x = floats(&[1, 1, 5], &[1.0, 2.0, 3.0, 4.0, 5.0]);
        let attrs = vec![
            attr_ints("kernel_shape", &[2]),
            attr_ints("strides", &[2]),
            attr_ints("pads", &[1, 1]),
            attr_int("ceil_mode", 1),
        ];
        let y = run("MaxPool", attrs, vec![x], 1, 19).unwrap();
        assert_eq!(values(&y[0]), (vec![1, 1, 3], vec![1.0, 3.0, 5.0]));
    }

    #[test]
    fn max_pool_indices_are_flat_and_follow_storage_order() {
        // Two 2x2 planes, one 2x2 window: the max of plane 1 is at (0, 1).
        let x = || floats(&[1, 2, 2, 2], &[0.0, 0.0, 9.0, 0.0, 1.0, 4.0, 3.0, 2.0]);
        let attrs = |order| {
            vec![
                attr_ints("kernel_shape", &[2, 2]),
                attr_int("storage_order", order),
            ]
        };
        let y = run("MaxPool", attrs(0), vec![x()], 2, 19).unwrap();
        assert_eq!(values(&y[0]).1, vec![9.0, 4.0]);
        assert_eq!(values(&y[1]).1, vec![2.0, 5.0]);
        let y = run("MaxPool", attrs(1), vec![x()], 2, 19).unwrap();
        assert_eq!(
            values(&y[1]).1,
            vec![1.0, 6.0],
            "column-major spatial index"
        );
    }

    #[test]
    fn same_lower_pads_before_and_integer_pools_stay_integers() {
        let x = ints(&[1, 1, 1, 3], &[5, -2, 7]);
        let attrs = vec![
            attr_ints("kernel_shape", &[1, 2]),
            attr_string("auto_pad", "SAME_LOWER"),
        ];
        let y = run("MaxPool", attrs, vec![x], 1, 19).unwrap();
        assert!(
            matches!(y[0], Val::I(_)),
            "an integer MaxPool stays on the host"
        );
        assert_eq!(values(&y[0]), (vec![1, 1, 1, 3], vec![5.0, 5.0, 7.0]));
    }

    #[test]
    fn clip_keeps_integers_and_reads_opset_6_attributes() {
        let y = run(
            "Clip",
            vec![],
            vec![ints(&[4], &[-100, -1, 3, 100]), ints(&[], &[-2]), None],
            1,
            13,
        )
        .unwrap();
        assert!(matches!(y[0], Val::I(_)));
        assert_eq!(values(&y[0]).1, vec![-2.0, -1.0, 3.0, 100.0]);
        let attrs = vec![attr_float("min", -1.0), attr_float("max", 1.0)];
        let y = run("Clip", attrs, vec![floats(&[3], &[-5.0, 0.5, 5.0])], 1, 6).unwrap();
        assert_eq!(values(&y[0]).1, vec![-1.0, 0.5, 1.0]);
        // min > max: everything becomes max.
        let bounds = vec![
            floats(&[3], &[-5.0, 0.5, 5.0]),
            floats(&[], &[2.0]),
            floats(&[], &[1.0]),
        ];
        let y = run("Clip", vec![], bounds, 1, 13).unwrap();
        assert_eq!(values(&y[0]).1, vec![1.0, 1.0, 1.0]);
    }

    #[test]
    fn resize_downsamples_by_the_given_scale_not_the_size_ratio() {
        // ONNX test_resize_downsample_scales_linear: scale 0.6 of a 2x4 image gives 1x2
        // values sampled at (x + 0.5) / 0.6 - 0.5, not at the 0.5 ratio of the sizes.
        let x = floats(&[1, 1, 2, 4], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        let s = floats(&[4], &[1.0, 1.0, 0.6, 0.6]);
        let y = run(
            "Resize",
            vec![attr_string("mode", "linear")],
            vec![x, None, s],
            1,
            19,
        )
        .unwrap();
        assert_eq!(values(&y[0]), (vec![1, 1, 1, 2], vec![2.6667, 4.3333]));
    }

    #[test]
    fn resize_nearest_mode_and_crop_extrapolation() {
        // 1-D [10, 20] upsampled 4x with asymmetric coordinates x / 4: 0, .25, .5, .75, ...
        let run_nearest = |mode: &str| {
            let attrs = vec![
                attr_string("coordinate_transformation_mode", "asymmetric"),
                attr_string("nearest_mode", mode),
            ];
            let ins = vec![floats(&[2], &[10.0, 20.0]), None, floats(&[1], &[4.0])];
            values(&run("Resize", attrs, ins, 1, 19).unwrap()[0]).1
        };
        assert_eq!(
            run_nearest("round_prefer_floor")[..4],
            [10.0, 10.0, 10.0, 20.0]
        );
        assert_eq!(
            run_nearest("round_prefer_ceil")[..4],
            [10.0, 10.0, 20.0, 20.0]
        );
        assert_eq!(run_nearest("ceil")[..4], [10.0, 20.0, 20.0, 20.0]);
        // tf_crop_and_resize over roi [0.5, 1.5]: samples past the last input are -1.
        let attrs = vec![
            attr_string("mode", "linear"),
            attr_string("coordinate_transformation_mode", "tf_crop_and_resize"),
            attr_float("extrapolation_value", -1.0),
        ];
        let ins = vec![
            floats(&[3], &[0.0, 10.0, 20.0]),
            floats(&[2], &[0.5, 1.5]),
            None,
            ints(&[1], &[3]),
        ];
        let y = run("Resize", attrs, ins, 1, 19).unwrap();
        assert_eq!(values(&y[0]).1, vec![10.0, 20.0, -1.0]);
    }

    #[test]
    fn unknown_resize_and_pool_attributes_are_errors_not_panics() {
        let x = || floats(&[1, 1, 2, 2], &[1.0; 4]);
        let err = run(
            "Resize",
            vec![attr_string("mode", "lanczos")],
            vec![x(), None, floats(&[4], &[1.0, 1.0, 2.0, 2.0])],
            1,
            19,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("Resize") && err.to_string().contains("mode=lanczos"),
            "{err}"
        );
        let err = run(
            "MaxPool",
            vec![attr_ints("kernel_shape", &[2])],
            vec![x()],
            1,
            19,
        )
        .unwrap_err();
        assert!(err.to_string().contains("kernel_shape"), "{err}");
        let err = run(
            "BatchNormalization",
            vec![],
            vec![
                x(),
                floats(&[1], &[1.0]),
                floats(&[1], &[0.0]),
                floats(&[1], &[0.0]),
                floats(&[1], &[1.0]),
            ],
            3,
            19,
        )
        .unwrap_err();
        assert!(err.to_string().contains("training"), "{err}");
    }

    #[test]
    fn batch_norm_training_uses_batch_statistics() {
        // One channel [1, 3]: batch mean 2 and variance 1; the running statistics (0 and 0)
        // move by 1 - momentum = 0.1 towards them.
        let ins = vec![
            floats(&[1, 1, 2], &[1.0, 3.0]),
            floats(&[1], &[1.0]),
            floats(&[1], &[0.0]),
            floats(&[1], &[0.0]),
            floats(&[1], &[0.0]),
        ];
        let attrs = vec![attr_int("training_mode", 1), attr_float("epsilon", 0.0)];
        let y = run("BatchNormalization", attrs, ins, 3, 15).unwrap();
        assert_eq!(values(&y[0]).1, vec![-1.0, 1.0]);
        assert_eq!(values(&y[1]).1, vec![0.2]);
        assert_eq!(values(&y[2]).1, vec![0.1]);
    }

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
