//! Operators that move or select elements without arithmetic: `Reshape`, `Flatten`,
//! `Squeeze` / `Unsqueeze`, `Transpose`, `Expand`, `Shape`, `Concat`, `Gather`, `Slice`.
//! Integer (host) tensors are handled on the host.

use burn_backend::Slice;

use super::reshape as reshape_f;
use super::*;
use crate::error::bail;

pub(super) fn flatten<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let x = cx.take(0)?;
    let s = val_shape(&x);
    let axis = node.attrs.int("axis", 1);
    let axis = if axis == s.len() as i64 {
        s.len()
    } else {
        norm_axis(axis, s.len())?
    };
    let target = [s[..axis].iter().product(), s[axis..].iter().product()];
    one(reshape_val::<B>(x, &target))
}

pub(super) fn reshape<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let a = &node.attrs;
    let x = cx.take(0)?;
    let spec = if cx.opset < 5 {
        a.ints("shape").unwrap_or_default()
    } else {
        cx.host(1)?.to_i64()
    };
    let t = reshape_target(&val_shape(&x), &spec, a.int("allowzero", 0) != 0)?;
    one(reshape_val::<B>(x, &t))
}

/// `Squeeze` and `Unsqueeze`.
pub(super) fn squeeze<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let x = cx.take(0)?;
    let s = val_shape(&x);
    let axes = if cx.opset < 13 {
        node.attrs.ints("axes")
    } else {
        cx.opt_host(1)?.map(|h| h.to_i64())
    };
    let t = if node.op == "Squeeze" {
        match axes {
            None => s.iter().copied().filter(|&d| d != 1).collect(),
            Some(ax) => {
                let ax = norm_axes(&ax, s.len())?;
                if ax.iter().any(|&i| s[i] != 1) {
                    bail!(Shape, "squeezing {ax:?} of {s:?}");
                }
                s.iter()
                    .enumerate()
                    .filter(|(i, _)| !ax.contains(i))
                    .map(|(_, &d)| d)
                    .collect()
            }
        }
    } else {
        let ax = axes.ok_or_else(|| E::Attr("missing axes".into()))?;
        let r = s.len() + ax.len();
        let mut ax = norm_axes(&ax, r)?;
        ax.sort_unstable();
        let mut out = s.clone();
        for &i in &ax {
            if i > out.len() {
                bail!(Attr, "axes {ax:?} for {s:?}");
            }
            out.insert(i, 1);
        }
        out
    };
    one(reshape_val::<B>(x, &t))
}

pub(super) fn transpose<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let x = cx.take(0)?;
    let s = val_shape(&x);
    let perm: Vec<usize> = match node.attrs.ints("perm") {
        Some(p) => norm_axes(&p, s.len())?,
        None => (0..s.len()).rev().collect(),
    };
    let mut sorted = perm.clone();
    sorted.sort_unstable();
    if sorted != (0..s.len()).collect::<Vec<_>>() {
        bail!(Attr, "perm {perm:?} for rank {}", s.len());
    }
    match x {
        Val::F(t) => one_f(B::float_permute(t, &perm)),
        Val::I(h) => {
            // Host: gather with a permuted index.
            let y = B::float_permute(upload::<B>(&h, cx.dev), &perm);
            let (shape, v) = download::<B>(y)?;
            let v = v.iter().map(|&x| x as i64).collect();
            one(host_val(Host::ints(shape, v)))
        }
    }
}

pub(super) fn concat<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let vals: Vec<Val<B>> = cx.ins.drain(..).flatten().collect();
    let first = vals.first().ok_or_else(|| E::Value("no inputs".into()))?;
    let axis = norm_axis(node.attrs.int("axis", 0), val_shape(first).len())?;
    if vals.iter().all(|v| matches!(v, Val::I(_))) {
        let hs: Vec<Arc<Host>> = vals.into_iter().map(to_host::<B>).collect::<R<_>>()?;
        return one(host_val(host_concat(&hs, axis)?));
    }
    let ts: Vec<FloatTensor<B>> = vals.into_iter().map(|v| to_f::<B>(v, cx.dev)).collect();
    let s0 = shp::<B>(&ts[0]);
    for t in &ts {
        let s = shp::<B>(t);
        if s.len() != s0.len()
            || s.iter()
                .zip(&s0)
                .enumerate()
                .any(|(i, (p, q))| i != axis && p != q)
        {
            bail!(Shape, "inputs {s0:?} and {s:?} differ off axis {axis}");
        }
    }
    one_f(B::float_cat(ts, axis))
}

pub(super) fn shape<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let s = val_shape(&cx.take(0)?);
    let r = s.len() as i64;
    let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clampi(node.attrs.int("start", 0));
    let end = clampi(node.attrs.int("end", r));
    let v: Vec<i64> = s[start..end.max(start)].iter().map(|&d| d as i64).collect();
    one(host_val(Host::ints(vec![v.len()], v)))
}

pub(super) fn gather<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let x = cx.take(0)?;
    let idx = cx.host(1)?;
    let s = val_shape(&x);
    let axis = norm_axis(node.attrs.int("axis", 0), s.len())?;
    let d = s[axis] as i64;
    let ids = idx
        .to_i64()
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + d } else { i };
            if (0..d).contains(&j) {
                Ok(j as usize)
            } else {
                Err(E::Value(format!("index {i} out of range for {d}")))
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
            one(host_val(g))
        }
        Val::F(t) => {
            if ids.is_empty() {
                bail!(Unsupported, "empty indices");
            }
            let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
            let n = ids.len();
            let it = B::int_from_data(TensorData::new(ids, [n]), cx.dev);
            one_f(reshape_f::<B>(B::float_select(t, axis, it), &out_shape))
        }
    }
}

pub(super) fn slice<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let x = cx.take(0)?;
    let s = val_shape(&x);
    let sel = slice_params::<B>(node, cx, &s)?;
    let contiguous = sel.iter().all(|v| v.windows(2).all(|w| w[1] > w[0]));
    match x {
        Val::F(t) if contiguous && sel.iter().all(|v| !v.is_empty()) => {
            let slices: Vec<Slice> = sel
                .iter()
                .map(|v| {
                    let step = if v.len() > 1 { v[1] - v[0] } else { 1 };
                    let end = Some(v[v.len() - 1] as isize + 1);
                    Slice::new(v[0] as isize, end, step as isize)
                })
                .collect();
            one_f(B::float_slice(t, &slices))
        }
        x => one(settle::<B>(host_take(&*to_host::<B>(x)?, &sel), cx.dev)),
    }
}

pub(super) fn expand<B: Backend>(_: &Node, cx: &mut Cx<B>) -> Out<B> {
    let x = cx.take(0)?;
    let spec = cx.host(1)?.to_i64();
    let spec: Vec<usize> = spec
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| E::Attr(format!("shape {spec:?}"))))
        .collect::<R<_>>()?;
    let s = val_shape(&x);
    let out = broadcast_shape(&s, &spec)?;
    check_size(&out)?;
    match x {
        Val::F(t) => {
            let t = reshape_f::<B>(t, &pad_rank(&s, out.len()));
            one_f(B::float_expand(t, Shape::from(out)))
        }
        Val::I(h) => {
            let idx = broadcast_index(&out, &h.shape);
            let v = h.to_i64();
            let v = idx.iter().map(|&i| v[i]).collect();
            one(host_val(Host::ints(out, v)))
        }
    }
}

/// Gathers `h` along every axis at the given indices (a cartesian product).
fn host_take(h: &Host, sel: &[Vec<usize>]) -> Host {
    let shape: Vec<usize> = sel.iter().map(|s| s.len()).collect();
    let flat = take_index(&h.shape, sel);
    let data = match &h.data {
        HostData::F32(v) => HostData::F32(flat.iter().map(|&i| v[i]).collect()),
        HostData::I64(v) => HostData::I64(flat.iter().map(|&i| v[i]).collect()),
    };
    Host { shape, data }
}

fn host_concat(parts: &[Arc<Host>], axis: usize) -> R<Host> {
    let first = parts
        .first()
        .ok_or_else(|| E::Value("Concat of nothing".into()))?;
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
            bail!(
                Shape,
                "Concat inputs {:?} and {:?} differ off axis {axis}",
                first.shape,
                p.shape
            );
        }
        out_shape[axis] += p.shape[axis];
    }
    let outer: usize = first.shape[..axis].iter().product();
    let inner: usize = first.shape[axis + 1..].iter().product();
    let lens: Vec<usize> = parts.iter().map(|p| p.shape[axis] * inner).collect();
    fn cat<T: Copy>(src: Vec<Vec<T>>, lens: &[usize], outer: usize) -> Vec<T> {
        let mut v = Vec::new();
        for o in 0..outer {
            for (s, &len) in src.iter().zip(lens) {
                v.extend_from_slice(&s[o * len..(o + 1) * len]);
            }
        }
        v
    }
    let data = if parts.iter().all(|p| matches!(p.data, HostData::I64(_))) {
        HostData::I64(cat(
            parts.iter().map(|p| p.to_i64()).collect(),
            &lens,
            outer,
        ))
    } else {
        HostData::F32(cat(
            parts.iter().map(|p| p.to_f32()).collect(),
            &lens,
            outer,
        ))
    };
    Ok(Host {
        shape: out_shape,
        data,
    })
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
            0 if !allowzero => out.push(*inp.get(i).ok_or_else(|| {
                E::Shape(format!("Reshape: dimension {i} of {inp:?} does not exist"))
            })?),
            d if d >= 0 => out.push(d as usize),
            _ => bail!(Attr, "Reshape: invalid target shape {spec:?}"),
        }
    }
    let known = numel(&out)?;
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            bail!(Shape, "Reshape: cannot reshape {inp:?} to {spec:?}");
        }
        out[i] = total / known;
    }
    if numel(&out)? != total {
        bail!(Shape, "Reshape: cannot reshape {inp:?} to {spec:?}");
    }
    Ok(out)
}

/// The indices `Slice` keeps, per axis of `shape`.
fn slice_params<B: Backend>(node: &Node, cx: &mut Cx<B>, shape: &[usize]) -> R<Vec<Vec<usize>>> {
    let a = &node.attrs;
    let (starts, ends, axes, steps) = if cx.opset < 10 {
        (a.ints("starts"), a.ints("ends"), a.ints("axes"), None)
    } else {
        let mut ints = |i| -> R<Option<Vec<i64>>> { Ok(cx.opt_host(i)?.map(|h| h.to_i64())) };
        (ints(1)?, ints(2)?, ints(3)?, ints(4)?)
    };
    let starts = starts.ok_or_else(|| E::Attr("missing starts".into()))?;
    let ends = ends.ok_or_else(|| E::Attr("missing ends".into()))?;
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        bail!(Attr, "starts, ends, axes and steps differ in length");
    }
    let mut sel: Vec<Vec<usize>> = shape.iter().map(|&d| (0..d).collect()).collect();
    for i in 0..starts.len() {
        let ax = norm_axis(axes[i], shape.len())?;
        let d = shape[ax] as i64;
        let step = steps[i];
        if step == 0 {
            bail!(Attr, "step 0");
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
