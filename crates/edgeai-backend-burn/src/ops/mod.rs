//! ONNX operators executed with burn backend tensor operations.
//!
//! Float tensors live in the burn backend (`B::FloatTensorPrimitive`, rank-dynamic); integer
//! tensors (shapes, indices, axes: the small shape-computing subgraphs) stay on the host as
//! `i64`, where they are cheap and exact.

use std::sync::Arc;

use burn_backend::ops::{ConvOptions, InterpolateMode, InterpolateOptions};
use burn_backend::tensor::FloatTensor;
use burn_backend::{Backend, Shape, Slice, TensorData, TensorMetadata};

use crate::parse::{numel, Attrs, Host, HostData, Node};
use edgeai_onnx::proto::dt;

/// A value flowing through the graph.
#[derive(Debug)]
pub(crate) enum Val<B: Backend> {
    /// A float tensor in the burn backend.
    F(FloatTensor<B>),
    /// An integer (or bool) tensor on the host.
    I(Arc<Host>),
}

impl<B: Backend> Clone for Val<B> {
    fn clone(&self) -> Self {
        match self {
            Val::F(t) => Val::F(t.clone()),
            Val::I(h) => Val::I(h.clone()),
        }
    }
}

pub(crate) type R<T> = Result<T, String>;

/// Every operator type [`exec`] implements (default ONNX domain).
pub(crate) const SUPPORTED: &[&str] = &[
    "Abs",
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "Div",
    "Dropout",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Gather",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LeakyRelu",
    "Log",
    "MatMul",
    "MaxPool",
    "Mul",
    "Neg",
    "Pow",
    "PRelu",
    "Reciprocal",
    "ReduceMax",
    "ReduceMean",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Resize",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Tanh",
    "Transpose",
    "Unsqueeze",
    "Upsample",
];

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

fn bad(node: &Node, msg: impl std::fmt::Display) -> String {
    format!("{} node `{}`: {msg}", node.op, node.name)
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
        .ok_or("the backend cannot read tensors synchronously")?
        .map_err(|e| format!("reading a tensor failed: {e:?}"))?;
    let shape = data.shape().to_vec();
    let v = data
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("reading a tensor failed: {e:?}"))?;
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
            Ok(Arc::new(Host {
                shape,
                data: HostData::F32(data),
            }))
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
        Err(format!("axis {axis} is out of range for rank {rank}"))
    }
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
        _ => Err(format!("a tensor of shape {shape:?} is too large")),
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
                Err(format!("shapes {a:?} and {b:?} do not broadcast"))
            }
        })
        .collect()
}

/// For each element of `out` (row-major), the flat index of the element of a tensor of
/// shape `inp` that broadcasts to it.
fn broadcast_index(out: &[usize], inp: &[usize]) -> Vec<usize> {
    let inp = pad_rank(inp, out.len());
    let mut strides = vec![0usize; out.len()];
    let mut acc = 1;
    for i in (0..out.len()).rev() {
        strides[i] = if inp[i] == 1 { 0 } else { acc };
        acc *= inp[i];
    }
    let n: usize = out.iter().product();
    let mut idx = vec![0usize; out.len()];
    let mut res = Vec::with_capacity(n);
    for _ in 0..n {
        res.push(idx.iter().zip(&strides).map(|(i, s)| i * s).sum());
        for d in (0..out.len()).rev() {
            idx[d] += 1;
            if idx[d] < out[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    res
}

fn host_binary(op: &str, a: &Host, b: &Host) -> R<Host> {
    let out = broadcast_shape(&a.shape, &b.shape)?;
    check_size(&out)?;
    let ia = broadcast_index(&out, &a.shape);
    let ib = broadcast_index(&out, &b.shape);
    match (&a.data, &b.data) {
        (HostData::I64(x), HostData::I64(y)) => {
            let f = |p: i64, q: i64| -> R<i64> {
                Ok(match op {
                    "Add" => p.wrapping_add(q),
                    "Sub" => p.wrapping_sub(q),
                    "Mul" => p.wrapping_mul(q),
                    "Div" => p.checked_div(q).ok_or("integer division by zero")?,
                    "Pow" => p.wrapping_pow(u32::try_from(q).map_err(|_| "negative power")?),
                    "Equal" => (p == q) as i64,
                    _ => return Err(format!("{op} on integers is not supported")),
                })
            };
            let v = ia
                .iter()
                .zip(&ib)
                .map(|(&i, &j)| f(x[i], y[j]))
                .collect::<R<Vec<_>>>()?;
            Ok(Host::ints(out, v))
        }
        _ => {
            let (x, y) = (a.to_f32(), b.to_f32());
            if op != "Equal" {
                return Err(format!("{op} on mixed host tensors is not supported"));
            }
            let v = ia
                .iter()
                .zip(&ib)
                .map(|(&i, &j)| (x[i] == y[j]) as i64)
                .collect();
            Ok(Host::ints(out, v))
        }
    }
}

fn float_binary<B: Backend>(op: &str, a: FloatTensor<B>, b: FloatTensor<B>) -> R<FloatTensor<B>> {
    let (sa, sb) = (shp::<B>(&a), shp::<B>(&b));
    let out = broadcast_shape(&sa, &sb)?;
    let r = out.len();
    let a = reshape::<B>(a, &pad_rank(&sa, r));
    let b = reshape::<B>(b, &pad_rank(&sb, r));
    Ok(match op {
        "Add" => B::float_add(a, b),
        "Sub" => B::float_sub(a, b),
        "Mul" => B::float_mul(a, b),
        "Div" => B::float_div(a, b),
        "Pow" => B::float_powf(a, b),
        _ => return Err(format!("{op} on float tensors is not supported")),
    })
}

/// Gathers `h` along every axis at the given indices (a cartesian product).
fn host_take(h: &Host, sel: &[Vec<usize>]) -> Host {
    let shape: Vec<usize> = sel.iter().map(|s| s.len()).collect();
    let mut strides = vec![1usize; h.shape.len()];
    for i in (0..h.shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * h.shape[i + 1];
    }
    let n: usize = shape.iter().product();
    let mut flat = Vec::with_capacity(n);
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..n {
        flat.push(
            idx.iter()
                .enumerate()
                .map(|(d, &i)| sel[d][i] * strides[d])
                .sum::<usize>(),
        );
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    let data = match &h.data {
        HostData::F32(v) => HostData::F32(flat.iter().map(|&i| v[i]).collect()),
        HostData::I64(v) => HostData::I64(flat.iter().map(|&i| v[i]).collect()),
    };
    Host { shape, data }
}

fn host_concat(parts: &[Arc<Host>], axis: usize) -> R<Host> {
    let first = parts.first().ok_or("Concat of nothing")?;
    let rank = first.shape.len();
    let mut out_shape = first.shape.clone();
    out_shape[axis] = 0;
    for p in parts {
        if p.shape.len() != rank
            || p.shape
                .iter()
                .enumerate()
                .any(|(i, &d)| i != axis && d != first.shape[i])
        {
            return Err(format!(
                "Concat inputs {:?} and {:?} differ off axis {axis}",
                first.shape, p.shape
            ));
        }
        out_shape[axis] += p.shape[axis];
    }
    let outer: usize = first.shape[..axis].iter().product();
    let inner: usize = first.shape[axis + 1..].iter().product();
    let ints = parts.iter().all(|p| matches!(p.data, HostData::I64(_)));
    if ints {
        let mut v = Vec::new();
        let src: Vec<Vec<i64>> = parts.iter().map(|p| p.to_i64()).collect();
        for o in 0..outer {
            for (p, s) in parts.iter().zip(&src) {
                let len = p.shape[axis] * inner;
                v.extend_from_slice(&s[o * len..(o + 1) * len]);
            }
        }
        Ok(Host::ints(out_shape, v))
    } else {
        let mut v = Vec::new();
        let src: Vec<Vec<f32>> = parts.iter().map(|p| p.to_f32()).collect();
        for o in 0..outer {
            for (p, s) in parts.iter().zip(&src) {
                let len = p.shape[axis] * inner;
                v.extend_from_slice(&s[o * len..(o + 1) * len]);
            }
        }
        Ok(Host {
            shape: out_shape,
            data: HostData::F32(v),
        })
    }
}

/// ONNX Reshape's target shape: `0` copies the input dimension (unless `allowzero`), `-1`
/// is inferred.
fn reshape_target(inp: &[usize], spec: &[i64], allowzero: bool) -> R<Vec<usize>> {
    let total = numel(inp)?;
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(
                *inp.get(i)
                    .ok_or_else(|| format!("Reshape: dimension {i} of {inp:?} does not exist"))?,
            ),
            d if d >= 0 => out.push(d as usize),
            _ => return Err(format!("Reshape: invalid target shape {spec:?}")),
        }
    }
    let known = numel(&out)?;
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            return Err(format!("Reshape: cannot reshape {inp:?} to {spec:?}"));
        }
        out[i] = total / known;
    }
    if numel(&out)? != total {
        return Err(format!("Reshape: cannot reshape {inp:?} to {spec:?}"));
    }
    Ok(out)
}

/// `[(begin, end); 2]` paddings for a 2-D window op, honouring `auto_pad`.
fn pads2(
    a: &Attrs,
    input: &[usize],
    kernel: [usize; 2],
    stride: [usize; 2],
    dil: [usize; 2],
) -> R<[(usize, usize); 2]> {
    let auto = a.string("auto_pad", "NOTSET");
    match auto.as_str() {
        "NOTSET" | "" => {
            let p = a.ints("pads").unwrap_or_else(|| vec![0; 4]);
            if p.len() != 4 || p.iter().any(|&x| x < 0) {
                return Err(format!("pads {p:?} is not 4 non-negative values"));
            }
            Ok([
                (p[0] as usize, p[2] as usize),
                (p[1] as usize, p[3] as usize),
            ])
        }
        "VALID" => Ok([(0, 0), (0, 0)]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut res = [(0, 0); 2];
            for (i, r) in res.iter_mut().enumerate() {
                let out = input[i].div_ceil(stride[i]);
                let eff = (kernel[i].max(1) - 1) * dil[i] + 1;
                let total = (out.saturating_sub(1) * stride[i] + eff).saturating_sub(input[i]);
                let small = total / 2;
                *r = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
            }
            Ok(res)
        }
        other => Err(format!("auto_pad {other} is not supported")),
    }
}

fn pair(a: &Attrs, name: &str, default: usize) -> R<[usize; 2]> {
    match a.ints(name) {
        None => Ok([default; 2]),
        Some(v) if v.len() == 2 && v.iter().all(|&x| x >= 1) => Ok([v[0] as usize, v[1] as usize]),
        Some(v) => Err(format!("{name} {v:?} is not 2 positive values")),
    }
}

fn check_window(
    input: &[usize],
    pads: [(usize, usize); 2],
    kernel: [usize; 2],
    dil: [usize; 2],
) -> R<()> {
    for (i, (&k, &d)) in kernel.iter().zip(&dil).enumerate() {
        let eff = (k.max(1) - 1) * d + 1;
        if input[i] + pads[i].0 + pads[i].1 < eff {
            return Err(format!(
                "window {kernel:?} (dilation {dil:?}) does not fit the padded input {input:?}"
            ));
        }
    }
    Ok(())
}

fn conv<B: Backend>(
    node: &Node,
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
) -> R<FloatTensor<B>> {
    let a = &node.attrs;
    let (xs, ws) = (shp::<B>(&x), shp::<B>(&w));
    if xs.len() != 4 || ws.len() != 4 {
        return Err(bad(
            node,
            format!("input {xs:?} and weight {ws:?} are not 4-D"),
        ));
    }
    let group = a.int("group", 1);
    if group < 1 {
        return Err(bad(node, format!("group {group}")));
    }
    let group = group as usize;
    if xs[1] != ws[1] * group || ws[0] % group != 0 {
        return Err(bad(
            node,
            format!("input {xs:?}, weight {ws:?} and group {group} do not match"),
        ));
    }
    if let Some(b) = &bias {
        if shp::<B>(b) != [ws[0]] {
            return Err(bad(
                node,
                format!("bias {:?} for {} outputs", shp::<B>(b), ws[0]),
            ));
        }
    }
    let stride = pair(a, "strides", 1).map_err(|e| bad(node, e))?;
    let dil = pair(a, "dilations", 1).map_err(|e| bad(node, e))?;
    let kernel = [ws[2], ws[3]];
    let pads = pads2(a, &xs[2..], kernel, stride, dil).map_err(|e| bad(node, e))?;
    check_window(&xs[2..], pads, kernel, dil).map_err(|e| bad(node, e))?;
    let opts = ConvOptions::new_with_padding(stride, pads, dil, group);
    Ok(B::conv2d(x, w, bias, opts))
}

fn pool<B: Backend>(node: &Node, x: FloatTensor<B>, max: bool) -> R<FloatTensor<B>> {
    let a = &node.attrs;
    let xs = shp::<B>(&x);
    if xs.len() != 4 {
        return Err(bad(node, format!("input {xs:?} is not 4-D")));
    }
    let kernel = match a.ints("kernel_shape") {
        Some(k) if k.len() == 2 && k.iter().all(|&x| x >= 1) => [k[0] as usize, k[1] as usize],
        other => return Err(bad(node, format!("kernel_shape {other:?}"))),
    };
    let stride = pair(a, "strides", 1).map_err(|e| bad(node, e))?;
    let dil = pair(a, "dilations", 1).map_err(|e| bad(node, e))?;
    let pads = pads2(a, &xs[2..], kernel, stride, dil).map_err(|e| bad(node, e))?;
    check_window(&xs[2..], pads, kernel, dil).map_err(|e| bad(node, e))?;
    if pads[0].0 != pads[0].1 || pads[1].0 != pads[1].1 {
        return Err(bad(
            node,
            format!("asymmetric padding {pads:?} is not supported"),
        ));
    }
    let ceil = a.int("ceil_mode", 0) != 0;
    let p = [pads[0].0, pads[1].0];
    Ok(if max {
        B::max_pool2d(x, kernel, stride, p, dil, ceil)
    } else {
        if dil != [1, 1] {
            return Err(bad(node, "dilated AveragePool is not supported"));
        }
        B::avg_pool2d(
            x,
            kernel,
            stride,
            p,
            a.int("count_include_pad", 0) != 0,
            ceil,
        )
    })
}

fn matmul<B: Backend>(node: &Node, a: FloatTensor<B>, b: FloatTensor<B>) -> R<FloatTensor<B>> {
    let (sa, sb) = (shp::<B>(&a), shp::<B>(&b));
    if sa.is_empty() || sb.is_empty() {
        return Err(bad(node, "scalar operands"));
    }
    // 1-D operands: promote, multiply, then drop the added dimension.
    let (a, sa2) = if sa.len() == 1 {
        (reshape::<B>(a, &[1, sa[0]]), vec![1, sa[0]])
    } else {
        (a, sa.clone())
    };
    let (b, sb2) = if sb.len() == 1 {
        (reshape::<B>(b, &[sb[0], 1]), vec![sb[0], 1])
    } else {
        (b, sb.clone())
    };
    let (k1, k2) = (sa2[sa2.len() - 1], sb2[sb2.len() - 2]);
    if k1 != k2 {
        return Err(bad(
            node,
            format!("shapes {sa:?} and {sb:?} do not multiply"),
        ));
    }
    let n = sb2[sb2.len() - 1];
    let mut out_shape;
    let out = if sb2.len() == 2 {
        // [.., M, K] x [K, N]: one 2-D product over the flattened leading dimensions.
        let m: usize = sa2[..sa2.len() - 1].iter().product();
        out_shape = sa2[..sa2.len() - 1].to_vec();
        out_shape.push(n);
        let a2 = reshape::<B>(a, &[m, k1]);
        B::float_matmul(a2, b)
    } else {
        let batch = broadcast_shape(&sa2[..sa2.len() - 2], &sb2[..sb2.len() - 2])
            .map_err(|e| bad(node, e))?;
        let r = batch.len() + 2;
        let a = reshape::<B>(a, &pad_rank(&sa2, r));
        let b = reshape::<B>(b, &pad_rank(&sb2, r));
        out_shape = batch;
        out_shape.push(sa2[sa2.len() - 2]);
        out_shape.push(n);
        B::float_matmul(a, b)
    };
    // Undo the 1-D promotions.
    if sb.len() == 1 {
        out_shape.pop();
    }
    if sa.len() == 1 {
        let l = out_shape.len();
        out_shape.remove(l - if sb.len() == 1 { 1 } else { 2 });
    }
    Ok(reshape::<B>(out, &out_shape))
}

fn softmax<B: Backend>(node: &Node, x: FloatTensor<B>, opset: i64) -> R<FloatTensor<B>> {
    let xs = shp::<B>(&x);
    let default = if opset < 13 { 1 } else { -1 };
    let axis = norm_axis(node.attrs.int("axis", default), xs.len()).map_err(|e| bad(node, e))?;
    if opset >= 13 || axis + 1 == xs.len() {
        return Ok(B::softmax(x, axis));
    }
    // Before opset 13: softmax over the input flattened to 2-D at `axis`.
    let rows: usize = xs[..axis].iter().product();
    let cols: usize = xs[axis..].iter().product();
    let y = B::softmax(reshape::<B>(x, &[rows, cols]), 1);
    Ok(reshape::<B>(y, &xs))
}

fn resize<B: Backend>(
    node: &Node,
    x: FloatTensor<B>,
    scales: Option<Vec<f32>>,
    sizes: Option<Vec<i64>>,
) -> R<FloatTensor<B>> {
    let a = &node.attrs;
    let xs = shp::<B>(&x);
    if xs.len() != 4 {
        return Err(bad(node, format!("input {xs:?} is not 4-D")));
    }
    let out: Vec<usize> = match (sizes, scales) {
        (Some(s), _) if !s.is_empty() => {
            if s.len() != 4 || s.iter().any(|&d| d < 1) {
                return Err(bad(node, format!("sizes {s:?}")));
            }
            s.iter().map(|&d| d as usize).collect()
        }
        (_, Some(s)) if s.len() == 4 && s.iter().all(|&f| f > 0.0 && f.is_finite()) => xs
            .iter()
            .zip(&s)
            .map(|(&d, &f)| (d as f32 * f).floor() as usize)
            .collect(),
        (_, s) => {
            return Err(bad(
                node,
                format!("needs 4 positive scales or sizes, got {s:?}"),
            ))
        }
    };
    if out[0] != xs[0] || out[1] != xs[1] {
        return Err(bad(
            node,
            "resizing the batch or channel dimension is not supported",
        ));
    }
    check_size(&out).map_err(|e| bad(node, e))?;
    if out[2] == 0 || out[3] == 0 {
        return Err(bad(node, format!("empty output size {out:?}")));
    }
    let mode = a.string("mode", "nearest");
    let ctm = a.string("coordinate_transformation_mode", "half_pixel");
    let mut opts = InterpolateOptions::new(if mode == "nearest" {
        InterpolateMode::Nearest
    } else {
        InterpolateMode::Bilinear
    });
    opts.align_corners = ctm == "align_corners" && mode != "nearest";
    Ok(B::interpolate(x, [out[2], out[3]], opts))
}

fn slice_params<B: Backend>(
    node: &Node,
    ins: &mut [Option<Val<B>>],
    opset: i64,
    rank: usize,
    shape: &[usize],
) -> R<Vec<Vec<usize>>> {
    let a = &node.attrs;
    let take = |ins: &mut [Option<Val<B>>], i: usize| -> R<Option<Vec<i64>>> {
        match ins.get_mut(i).and_then(Option::take) {
            Some(v) => Ok(Some(to_host::<B>(v)?.to_i64())),
            None => Ok(None),
        }
    };
    let (starts, ends, axes, steps) = if opset < 10 {
        (a.ints("starts"), a.ints("ends"), a.ints("axes"), None)
    } else {
        (take(ins, 1)?, take(ins, 2)?, take(ins, 3)?, take(ins, 4)?)
    };
    let starts = starts.ok_or_else(|| bad(node, "missing starts"))?;
    let ends = ends.ok_or_else(|| bad(node, "missing ends"))?;
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(bad(node, "starts, ends, axes and steps differ in length"));
    }
    let mut sel: Vec<Vec<usize>> = shape.iter().map(|&d| (0..d).collect()).collect();
    for i in 0..starts.len() {
        let ax = norm_axis(axes[i], rank).map_err(|e| bad(node, e))?;
        let d = shape[ax] as i64;
        let step = steps[i];
        if step == 0 {
            return Err(bad(node, "step 0"));
        }
        let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
        let (s, e) = (norm(starts[i]), norm(ends[i]));
        let mut idx = Vec::new();
        if step > 0 {
            let (mut s, e) = (s.clamp(0, d), e.clamp(0, d));
            while s < e {
                idx.push(s as usize);
                s += step;
            }
        } else {
            let (mut s, e) = (s.clamp(-1, d - 1), e.clamp(-1, d - 1));
            while s > e {
                idx.push(s as usize);
                s += step;
            }
        }
        sel[ax] = idx;
    }
    Ok(sel)
}

fn unary<B: Backend>(op: &str, node: &Node, x: FloatTensor<B>) -> R<FloatTensor<B>> {
    let a = &node.attrs;
    Ok(match op {
        "Relu" => B::relu(x),
        "Sigmoid" => B::sigmoid(x),
        "Tanh" => B::float_tanh(x),
        "Exp" => B::float_exp(x),
        "Log" => B::float_log(x),
        "Sqrt" => B::float_sqrt(x),
        "Neg" => B::float_neg(x),
        "Abs" => B::float_abs(x),
        "Reciprocal" => B::float_recip(x),
        "Erf" => B::float_erf(x),
        "LeakyRelu" => B::leaky_relu(x, a.float("alpha", 0.01).into()),
        "HardSigmoid" => {
            B::hard_sigmoid(x, a.float("alpha", 0.2).into(), a.float("beta", 0.5).into())
        }
        "HardSwish" => {
            let g = B::hard_sigmoid(x.clone(), (1.0f32 / 6.0).into(), 0.5f32.into());
            B::float_mul(x, g)
        }
        _ => return Err(bad(node, "not a unary operator")),
    })
}

fn reduce<B: Backend>(node: &Node, x: FloatTensor<B>, axes: Option<Vec<i64>>) -> R<FloatTensor<B>> {
    let xs = shp::<B>(&x);
    let keep = node.attrs.int("keepdims", 1) != 0;
    let mut axes = match axes {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|&ax| norm_axis(ax, xs.len()))
            .collect::<R<Vec<_>>>()
            .map_err(|e| bad(node, e))?,
        _ if node.attrs.int("noop_with_empty_axes", 0) != 0 => return Ok(x),
        _ => (0..xs.len()).collect(),
    };
    axes.sort_unstable();
    axes.dedup();
    let mut y = x;
    for &ax in &axes {
        y = match node.op.as_str() {
            "ReduceMean" => B::float_mean_dim(y, ax),
            "ReduceSum" => B::float_sum_dim(y, ax),
            _ => B::float_max_dim(y, ax),
        };
    }
    if keep {
        return Ok(y);
    }
    let out: Vec<usize> = xs
        .iter()
        .enumerate()
        .filter(|(i, _)| !axes.contains(i))
        .map(|(_, &d)| d)
        .collect();
    Ok(reshape::<B>(y, &out))
}

fn cast<B: Backend>(node: &Node, v: Val<B>, dev: &B::Device) -> R<Val<B>> {
    let to = node.attrs.int("to", dt::FLOAT as i64) as i32;
    match to {
        dt::FLOAT | dt::DOUBLE | dt::FLOAT16 | dt::BFLOAT16 => Ok(Val::F(to_f::<B>(v, dev))),
        dt::BOOL => {
            let h = to_host::<B>(v)?;
            let d = match &h.data {
                HostData::F32(x) => x.iter().map(|&f| (f != 0.0) as i64).collect(),
                HostData::I64(x) => x.iter().map(|&i| (i != 0) as i64).collect(),
            };
            Ok(Val::I(Arc::new(Host::ints(h.shape.clone(), d))))
        }
        dt::INT8
        | dt::UINT8
        | dt::INT16
        | dt::UINT16
        | dt::INT32
        | dt::UINT32
        | dt::INT64
        | dt::UINT64 => {
            let h = to_host::<B>(v)?;
            Ok(Val::I(Arc::new(Host::ints(h.shape.clone(), h.to_i64()))))
        }
        other => Err(bad(node, format!("cast to ONNX type {other}"))),
    }
}

fn host_val<B: Backend>(h: Host) -> Val<B> {
    Val::I(Arc::new(h))
}

/// Turns a host value into the right kind: floats go to the backend.
fn settle<B: Backend>(h: Host, dev: &B::Device) -> Val<B> {
    match h.data {
        HostData::F32(_) => Val::F(upload::<B>(&h, dev)),
        HostData::I64(_) => host_val::<B>(h),
    }
}

/// Runs one node. `ins` holds the node's inputs in order (`None` for omitted ones).
pub(crate) fn exec<B: Backend>(
    node: &Node,
    mut ins: Vec<Option<Val<B>>>,
    dev: &B::Device,
    opset: i64,
) -> R<Vec<Val<B>>> {
    let op = node.op.as_str();
    let a = &node.attrs;
    let n_in = ins.len();
    let mut take = |i: usize| -> R<Val<B>> {
        ins.get_mut(i)
            .and_then(Option::take)
            .ok_or_else(|| bad(node, format!("missing input {i}")))
    };
    let one = |v: Val<B>| Ok(vec![v]);
    match op {
        "Identity" => one(take(0)?),
        "Dropout" => {
            let x = take(0)?;
            let mut out = vec![x.clone()];
            if node.outputs.len() > 1 {
                let s = val_shape(&x);
                let n = numel(&s)?;
                out.push(Val::I(Arc::new(Host::ints(s, vec![1; n]))));
            }
            Ok(out)
        }
        "Constant" => {
            let h = if let Some(t) = a.tensor("value") {
                crate::parse::host_from_proto(t).map_err(|e| bad(node, e))?
            } else if a.has("value_float") {
                Host {
                    shape: vec![],
                    data: HostData::F32(vec![a.float("value_float", 0.0)]),
                }
            } else if let Some(v) = a.floats("value_floats").filter(|_| a.has("value_floats")) {
                Host {
                    shape: vec![v.len()],
                    data: HostData::F32(v),
                }
            } else if a.has("value_int") {
                Host::ints(vec![], vec![a.int("value_int", 0)])
            } else if let Some(v) = a.ints("value_ints") {
                Host::ints(vec![v.len()], v)
            } else {
                return Err(bad(node, "no supported value attribute"));
            };
            one(settle::<B>(h, dev))
        }
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Equal" => {
            let (x, y) = (take(0)?, take(1)?);
            match (x, y) {
                (Val::I(p), Val::I(q)) => one(host_val::<B>(
                    host_binary(op, &p, &q).map_err(|e| bad(node, e))?,
                )),
                (x, y) if op == "Equal" => {
                    let (p, q) = (to_host::<B>(x)?, to_host::<B>(y)?);
                    one(host_val::<B>(
                        host_binary(op, &p, &q).map_err(|e| bad(node, e))?,
                    ))
                }
                (x, y) => one(Val::F(
                    float_binary::<B>(op, to_f::<B>(x, dev), to_f::<B>(y, dev))
                        .map_err(|e| bad(node, e))?,
                )),
            }
        }
        "Relu" | "Sigmoid" | "Tanh" | "Exp" | "Log" | "Sqrt" | "Neg" | "Abs" | "Reciprocal"
        | "Erf" | "LeakyRelu" | "HardSigmoid" | "HardSwish" => {
            let x = to_f::<B>(take(0)?, dev);
            one(Val::F(unary::<B>(op, node, x)?))
        }
        "PRelu" => {
            let x = to_f::<B>(take(0)?, dev);
            let s = to_f::<B>(take(1)?, dev);
            let (xs, ss) = (shp::<B>(&x), shp::<B>(&s));
            if broadcast_shape(&xs, &ss).ok().as_deref() != Some(&xs[..]) {
                return Err(bad(
                    node,
                    format!("slope {ss:?} does not broadcast to {xs:?}"),
                ));
            }
            let s = reshape::<B>(s, &pad_rank(&ss, xs.len()));
            one(Val::F(B::prelu(x, s)))
        }
        "Clip" => {
            let x = to_f::<B>(take(0)?, dev);
            let (lo, hi) = if opset < 11 {
                (
                    Some(a.float("min", f32::NEG_INFINITY)),
                    Some(a.float("max", f32::INFINITY)),
                )
            } else {
                let mut bound = |i: usize| -> R<Option<f32>> {
                    if i >= n_in {
                        return Ok(None);
                    }
                    match take(i) {
                        Ok(v) => Ok(to_host::<B>(v)?.to_f32().first().copied()),
                        Err(_) => Ok(None),
                    }
                };
                (bound(1)?, bound(2)?)
            };
            let y = match (lo, hi) {
                (Some(l), Some(h)) => B::float_clamp(x, l.into(), h.into()),
                (Some(l), None) => B::float_clamp_min(x, l.into()),
                (None, Some(h)) => B::float_clamp_max(x, h.into()),
                (None, None) => x,
            };
            one(Val::F(y))
        }
        "Conv" => {
            let x = to_f::<B>(take(0)?, dev);
            let w = to_f::<B>(take(1)?, dev);
            let b = if n_in > 2 {
                take(2).ok().map(|v| to_f::<B>(v, dev))
            } else {
                None
            };
            one(Val::F(conv::<B>(node, x, w, b)?))
        }
        "BatchNormalization" => {
            let x = to_f::<B>(take(0)?, dev);
            let xs = shp::<B>(&x);
            let c = *xs
                .get(1)
                .ok_or_else(|| bad(node, "input has no channel dimension"))?;
            let mut p = Vec::with_capacity(4);
            for i in 1..5 {
                let t = to_f::<B>(take(i)?, dev);
                if shp::<B>(&t) != [c] {
                    return Err(bad(node, format!("parameter {i} is not [{c}]")));
                }
                p.push(t);
            }
            let eps = a.float("epsilon", 1e-5);
            let mut bshape = vec![1; xs.len()];
            bshape[1] = c;
            let (var, mean, bias, scale) = (p.pop(), p.pop(), p.pop(), p.pop());
            let (Some(scale), Some(bias), Some(mean), Some(var)) = (scale, bias, mean, var) else {
                return Err(bad(node, "missing parameters"));
            };
            let inv = B::float_div(scale, B::float_sqrt(B::float_add_scalar(var, eps.into())));
            let shift = B::float_sub(bias, B::float_mul(mean, inv.clone()));
            let y = B::float_add(
                B::float_mul(x, reshape::<B>(inv, &bshape)),
                reshape::<B>(shift, &bshape),
            );
            one(Val::F(y))
        }
        "MaxPool" | "AveragePool" => {
            let x = to_f::<B>(take(0)?, dev);
            one(Val::F(pool::<B>(node, x, op == "MaxPool")?))
        }
        "GlobalAveragePool" | "GlobalMaxPool" => {
            let x = to_f::<B>(take(0)?, dev);
            let xs = shp::<B>(&x);
            if xs.len() < 3 {
                return Err(bad(node, format!("input {xs:?} has no spatial dimensions")));
            }
            let y = if op == "GlobalAveragePool" && xs.len() == 4 {
                B::adaptive_avg_pool2d(x, [1, 1])
            } else {
                (2..xs.len()).fold(x, |t, d| {
                    if op == "GlobalAveragePool" {
                        B::float_mean_dim(t, d)
                    } else {
                        B::float_max_dim(t, d)
                    }
                })
            };
            one(Val::F(y))
        }
        "Gemm" => {
            let x = to_f::<B>(take(0)?, dev);
            let w = to_f::<B>(take(1)?, dev);
            let c = if n_in > 2 {
                take(2).ok().map(|v| to_f::<B>(v, dev))
            } else {
                None
            };
            let (xs, ws) = (shp::<B>(&x), shp::<B>(&w));
            if xs.len() != 2 || ws.len() != 2 {
                return Err(bad(node, format!("operands {xs:?} and {ws:?} are not 2-D")));
            }
            let x = if a.int("transA", 0) != 0 {
                B::float_swap_dims(x, 0, 1)
            } else {
                x
            };
            let w = if a.int("transB", 0) != 0 {
                B::float_swap_dims(w, 0, 1)
            } else {
                w
            };
            let (xs, ws) = (shp::<B>(&x), shp::<B>(&w));
            if xs[1] != ws[0] {
                return Err(bad(
                    node,
                    format!("operands {xs:?} and {ws:?} do not multiply"),
                ));
            }
            let mut y = B::float_matmul(x, w);
            let alpha = a.float("alpha", 1.0);
            if alpha != 1.0 {
                y = B::float_mul_scalar(y, alpha.into());
            }
            if let Some(c) = c {
                let beta = a.float("beta", 1.0);
                let c = if beta != 1.0 {
                    B::float_mul_scalar(c, beta.into())
                } else {
                    c
                };
                y = float_binary::<B>("Add", y, c).map_err(|e| bad(node, e))?;
            }
            one(Val::F(y))
        }
        "MatMul" => {
            let x = to_f::<B>(take(0)?, dev);
            let w = to_f::<B>(take(1)?, dev);
            one(Val::F(matmul::<B>(node, x, w)?))
        }
        "Softmax" => {
            let x = to_f::<B>(take(0)?, dev);
            one(Val::F(softmax::<B>(node, x, opset)?))
        }
        "Flatten" => {
            let x = take(0)?;
            let s = val_shape(&x);
            let axis = a.int("axis", 1);
            let axis = if axis == s.len() as i64 {
                s.len()
            } else {
                norm_axis(axis, s.len()).map_err(|e| bad(node, e))?
            };
            let target = [s[..axis].iter().product(), s[axis..].iter().product()];
            one(reshape_val::<B>(x, &target))
        }
        "Reshape" => {
            let x = take(0)?;
            let spec = if opset < 5 {
                a.ints("shape").unwrap_or_default()
            } else {
                to_host::<B>(take(1)?)?.to_i64()
            };
            let s = val_shape(&x);
            let t =
                reshape_target(&s, &spec, a.int("allowzero", 0) != 0).map_err(|e| bad(node, e))?;
            one(reshape_val::<B>(x, &t))
        }
        "Squeeze" | "Unsqueeze" => {
            let x = take(0)?;
            let s = val_shape(&x);
            let axes = if opset < 13 {
                a.ints("axes")
            } else if n_in > 1 {
                take(1)
                    .ok()
                    .map(to_host::<B>)
                    .transpose()?
                    .map(|h| h.to_i64())
            } else {
                None
            };
            let t = if op == "Squeeze" {
                match axes {
                    None => s.iter().copied().filter(|&d| d != 1).collect(),
                    Some(ax) => {
                        let ax = ax
                            .iter()
                            .map(|&v| norm_axis(v, s.len()))
                            .collect::<R<Vec<_>>>()
                            .map_err(|e| bad(node, e))?;
                        if ax.iter().any(|&i| s[i] != 1) {
                            return Err(bad(node, format!("squeezing {ax:?} of {s:?}")));
                        }
                        s.iter()
                            .enumerate()
                            .filter(|(i, _)| !ax.contains(i))
                            .map(|(_, &d)| d)
                            .collect()
                    }
                }
            } else {
                let ax = axes.ok_or_else(|| bad(node, "missing axes"))?;
                let r = s.len() + ax.len();
                let mut ax = ax
                    .iter()
                    .map(|&v| norm_axis(v, r))
                    .collect::<R<Vec<_>>>()
                    .map_err(|e| bad(node, e))?;
                ax.sort_unstable();
                let mut out = s.clone();
                for &i in &ax {
                    if i > out.len() {
                        return Err(bad(node, format!("axes {ax:?} for {s:?}")));
                    }
                    out.insert(i, 1);
                }
                out
            };
            one(reshape_val::<B>(x, &t))
        }
        "Transpose" => {
            let x = take(0)?;
            let s = val_shape(&x);
            let perm: Vec<usize> = match a.ints("perm") {
                Some(p) => p
                    .iter()
                    .map(|&v| norm_axis(v, s.len()))
                    .collect::<R<Vec<_>>>()
                    .map_err(|e| bad(node, e))?,
                None => (0..s.len()).rev().collect(),
            };
            let mut sorted = perm.clone();
            sorted.sort_unstable();
            if sorted != (0..s.len()).collect::<Vec<_>>() {
                return Err(bad(node, format!("perm {perm:?} for rank {}", s.len())));
            }
            match x {
                Val::F(t) => one(Val::F(B::float_permute(t, &perm))),
                Val::I(h) => {
                    // Host: gather with a permuted index.
                    let f = upload::<B>(&h, dev);
                    let y = B::float_permute(f, &perm);
                    let (shape, v) = download::<B>(y)?;
                    one(Val::I(Arc::new(Host::ints(
                        shape,
                        v.iter().map(|&x| x as i64).collect(),
                    ))))
                }
            }
        }
        "Concat" => {
            let vals: Vec<Val<B>> = (0..n_in).filter_map(|i| take(i).ok()).collect();
            let first = vals.first().ok_or_else(|| bad(node, "no inputs"))?;
            let rank = val_shape(first).len();
            let axis = norm_axis(a.int("axis", 0), rank).map_err(|e| bad(node, e))?;
            if vals.iter().all(|v| matches!(v, Val::I(_))) {
                let hs: Vec<Arc<Host>> = vals.into_iter().map(to_host::<B>).collect::<R<_>>()?;
                return one(host_val::<B>(
                    host_concat(&hs, axis).map_err(|e| bad(node, e))?,
                ));
            }
            let ts: Vec<FloatTensor<B>> = vals.into_iter().map(|v| to_f::<B>(v, dev)).collect();
            let s0 = shp::<B>(&ts[0]);
            for t in &ts {
                let s = shp::<B>(t);
                if s.len() != s0.len()
                    || s.iter()
                        .zip(&s0)
                        .enumerate()
                        .any(|(i, (p, q))| i != axis && p != q)
                {
                    return Err(bad(
                        node,
                        format!("inputs {s0:?} and {s:?} differ off axis {axis}"),
                    ));
                }
            }
            one(Val::F(B::float_cat(ts, axis)))
        }
        "Shape" => {
            let s = val_shape(&take(0)?);
            let r = s.len() as i64;
            let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let start = clampi(a.int("start", 0));
            let end = clampi(a.int("end", r));
            let v: Vec<i64> = s[start..end.max(start)].iter().map(|&d| d as i64).collect();
            one(Val::I(Arc::new(Host::ints(vec![v.len()], v))))
        }
        "Gather" => {
            let x = take(0)?;
            let idx = to_host::<B>(take(1)?)?;
            let s = val_shape(&x);
            let axis = norm_axis(a.int("axis", 0), s.len()).map_err(|e| bad(node, e))?;
            let d = s[axis] as i64;
            let ids = idx
                .to_i64()
                .iter()
                .map(|&i| {
                    let j = if i < 0 { i + d } else { i };
                    if (0..d).contains(&j) {
                        Ok(j as usize)
                    } else {
                        Err(bad(node, format!("index {i} out of range for {d}")))
                    }
                })
                .collect::<R<Vec<usize>>>()?;
            let mut out_shape = s[..axis].to_vec();
            out_shape.extend_from_slice(&idx.shape);
            out_shape.extend_from_slice(&s[axis + 1..]);
            match x {
                Val::I(h) => {
                    let mut sel: Vec<Vec<usize>> = s.iter().map(|&d| (0..d).collect()).collect();
                    sel[axis] = ids;
                    let mut g = host_take(&h, &sel);
                    g.shape = out_shape;
                    one(Val::I(Arc::new(g)))
                }
                Val::F(t) => {
                    if ids.is_empty() {
                        return Err(bad(node, "empty indices"));
                    }
                    let it = B::int_from_data(
                        TensorData::new(
                            ids.iter().map(|&i| i as i64).collect::<Vec<_>>(),
                            [ids.len()],
                        ),
                        dev,
                    );
                    let y = B::float_select(t, axis, it);
                    one(Val::F(reshape::<B>(y, &out_shape)))
                }
            }
        }
        "Slice" => {
            let x = take(0)?;
            let s = val_shape(&x);
            let sel = slice_params::<B>(node, &mut ins, opset, s.len(), &s)?;
            let contiguous = sel.iter().all(|v| v.windows(2).all(|w| w[1] > w[0]));
            match x {
                Val::F(t) if contiguous && sel.iter().all(|v| !v.is_empty()) => {
                    let slices: Vec<Slice> = sel
                        .iter()
                        .map(|v| {
                            let step = if v.len() > 1 { v[1] - v[0] } else { 1 };
                            Slice::new(
                                v[0] as isize,
                                Some(v[v.len() - 1] as isize + 1),
                                step as isize,
                            )
                        })
                        .collect();
                    one(Val::F(B::float_slice(t, &slices)))
                }
                x => {
                    let h = to_host::<B>(x)?;
                    one(settle_like::<B>(host_take(&h, &sel), dev))
                }
            }
        }
        "Cast" => one(cast::<B>(node, take(0)?, dev)?),
        "ConstantOfShape" => {
            let s = to_host::<B>(take(0)?)?.to_i64();
            let shape = s
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| bad(node, format!("shape {s:?}"))))
                .collect::<R<Vec<_>>>()?;
            check_size(&shape).map_err(|e| bad(node, e))?;
            let n = numel(&shape).map_err(|e| bad(node, e))?;
            let fill = match a.tensor("value") {
                Some(t) => crate::parse::host_from_proto(t).map_err(|e| bad(node, e))?,
                None => Host {
                    shape: vec![1],
                    data: HostData::F32(vec![0.0]),
                },
            };
            let h = match &fill.data {
                HostData::F32(v) => Host {
                    shape,
                    data: HostData::F32(vec![v.first().copied().unwrap_or(0.0); n]),
                },
                HostData::I64(v) => Host::ints(shape, vec![v.first().copied().unwrap_or(0); n]),
            };
            one(settle::<B>(h, dev))
        }
        "Expand" => {
            let x = take(0)?;
            let spec = to_host::<B>(take(1)?)?.to_i64();
            let spec: Vec<usize> = spec
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| bad(node, format!("shape {spec:?}"))))
                .collect::<R<_>>()?;
            let s = val_shape(&x);
            let out = broadcast_shape(&s, &spec).map_err(|e| bad(node, e))?;
            check_size(&out).map_err(|e| bad(node, e))?;
            match x {
                Val::F(t) => {
                    let t = reshape::<B>(t, &pad_rank(&s, out.len()));
                    one(Val::F(B::float_expand(t, Shape::from(out))))
                }
                Val::I(h) => {
                    let idx = broadcast_index(&out, &h.shape);
                    let v = h.to_i64();
                    one(Val::I(Arc::new(Host::ints(
                        out,
                        idx.iter().map(|&i| v[i]).collect(),
                    ))))
                }
            }
        }
        "ReduceMean" | "ReduceSum" | "ReduceMax" => {
            let x = to_f::<B>(take(0)?, dev);
            let from_input = (op == "ReduceSum" && opset >= 13) || opset >= 18;
            let axes = if from_input && n_in > 1 {
                take(1)
                    .ok()
                    .map(to_host::<B>)
                    .transpose()?
                    .map(|h| h.to_i64())
            } else if from_input {
                None
            } else {
                a.ints("axes")
            };
            one(Val::F(reduce::<B>(node, x, axes)?))
        }
        "Resize" | "Upsample" => {
            let x = to_f::<B>(take(0)?, dev);
            let (scales, sizes) = if op == "Upsample" && opset < 9 {
                (a.floats("scales"), None)
            } else if op == "Upsample" || opset < 11 {
                (Some(to_host::<B>(take(1)?)?.to_f32()), None)
            } else {
                let sc = if n_in > 2 {
                    take(2).ok().map(to_host::<B>).transpose()?
                } else {
                    None
                };
                let sz = if n_in > 3 {
                    take(3).ok().map(to_host::<B>).transpose()?
                } else {
                    None
                };
                (
                    sc.map(|h| h.to_f32()).filter(|v| !v.is_empty()),
                    sz.map(|h| h.to_i64()).filter(|v| !v.is_empty()),
                )
            };
            one(Val::F(resize::<B>(node, x, scales, sizes)?))
        }
        _ => Err(bad(node, "operator not implemented")),
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

/// Floats that came from a host computation go back to the backend; integers stay.
fn settle_like<B: Backend>(h: Host, dev: &B::Device) -> Val<B> {
    settle::<B>(h, dev)
}
