//! Windowed operators on NCHW images: `Conv`, `MaxPool` / `AveragePool` and the global
//! pools.

use burn_backend::ops::ConvOptions;

use super::*;
use crate::error::bail;
use crate::parse::Attrs;

/// `(begin, end)` paddings per spatial axis for a window op, honouring `auto_pad`.
fn pads_nd(
    a: &Attrs,
    input: &[usize],
    kernel: &[usize],
    stride: &[usize],
    dil: &[usize],
) -> R<Vec<(usize, usize)>> {
    let n = input.len();
    let auto = a.string("auto_pad", "NOTSET");
    match auto.as_str() {
        "NOTSET" | "" => {
            let p = a.ints("pads").unwrap_or_else(|| vec![0; 2 * n]);
            if p.len() != 2 * n || p.iter().any(|&x| x < 0) {
                bail!(Attr, "pads {p:?} is not {} non-negative values", 2 * n);
            }
            Ok((0..n).map(|i| (p[i] as usize, p[i + n] as usize)).collect())
        }
        "VALID" => Ok(vec![(0, 0); n]),
        "SAME_UPPER" | "SAME_LOWER" => Ok((0..n)
            .map(|i| {
                let out = input[i].div_ceil(stride[i]);
                let eff = (kernel[i].max(1) - 1) * dil[i] + 1;
                let total = (out.saturating_sub(1) * stride[i] + eff).saturating_sub(input[i]);
                let small = total / 2;
                if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                }
            })
            .collect()),
        other => Err(E::Unsupported(format!("auto_pad {other} is not supported"))),
    }
}

/// `[(begin, end); 2]` paddings for a 2-D window op, honouring `auto_pad`.
fn pads2(
    a: &Attrs,
    input: &[usize],
    kernel: [usize; 2],
    stride: [usize; 2],
    dil: [usize; 2],
) -> R<[(usize, usize); 2]> {
    let p = pads_nd(a, input, &kernel, &stride, &dil)?;
    Ok([p[0], p[1]])
}

/// Attribute `name` as `n` positive values (`default` each when absent).
fn spatial(a: &Attrs, name: &str, n: usize, default: usize) -> R<Vec<usize>> {
    match a.ints(name) {
        None => Ok(vec![default; n]),
        Some(v) if v.len() == n && v.iter().all(|&x| x >= 1) => {
            Ok(v.iter().map(|&x| x as usize).collect())
        }
        Some(v) => Err(E::Attr(format!("{name} {v:?} is not {n} positive values"))),
    }
}

fn pair(a: &Attrs, name: &str, default: usize) -> R<[usize; 2]> {
    let v = spatial(a, name, 2, default)?;
    Ok([v[0], v[1]])
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
            bail!(
                Shape,
                "window {kernel:?} (dilation {dil:?}) does not fit the padded input {input:?}"
            );
        }
    }
    Ok(())
}

pub(super) fn conv<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let a = &node.attrs;
    let (x, w) = (cx.float(0)?, cx.float(1)?);
    let bias = cx.opt(2).map(|v| to_f::<B>(v, cx.dev));
    let (xs, ws) = (shp::<B>(&x), shp::<B>(&w));
    if xs.len() != 4 || ws.len() != 4 {
        bail!(Shape, "input {xs:?} and weight {ws:?} are not 4-D");
    }
    let group = a.int("group", 1);
    if group < 1 {
        bail!(Attr, "group {group}");
    }
    let group = group as usize;
    if xs[1] != ws[1] * group || ws[0] % group != 0 {
        bail!(
            Shape,
            "input {xs:?}, weight {ws:?} and group {group} do not match"
        );
    }
    if let Some(b) = &bias {
        if shp::<B>(b) != [ws[0]] {
            bail!(Shape, "bias {:?} for {} outputs", shp::<B>(b), ws[0]);
        }
    }
    let stride = pair(a, "strides", 1)?;
    let dil = pair(a, "dilations", 1)?;
    let kernel = [ws[2], ws[3]];
    let pads = pads2(a, &xs[2..], kernel, stride, dil)?;
    check_window(&xs[2..], pads, kernel, dil)?;
    let opts = ConvOptions::new_with_padding(stride, pads, dil, group);
    one_f(B::conv2d(x, w, bias, opts))
}

/// The geometry of a pooling window along one spatial axis.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Axis {
    /// Input length.
    len: usize,
    kernel: usize,
    stride: usize,
    dil: usize,
    /// Explicit (or `auto_pad`) padding before and after.
    begin: usize,
    end: usize,
    /// Output length.
    out: usize,
}

impl Axis {
    /// The axis with its output length: ONNX's formula, where with `ceil_mode` a last window
    /// that would start in the end padding is dropped.
    fn new(
        len: usize,
        kernel: usize,
        stride: usize,
        dil: usize,
        pad: (usize, usize),
        ceil: bool,
    ) -> R<Self> {
        let eff = (kernel - 1) * dil + 1;
        let padded = len + pad.0 + pad.1;
        if padded < eff {
            bail!(
                Shape,
                "window {kernel} (dilation {dil}) does not fit the padded input {len}"
            );
        }
        let span = padded - eff;
        let mut out = if ceil {
            span.div_ceil(stride)
        } else {
            span / stride
        } + 1;
        if ceil && (out - 1) * stride >= len + pad.0 {
            out -= 1;
        }
        Ok(Axis {
            len,
            kernel,
            stride,
            dil,
            begin: pad.0,
            end: pad.1,
            out,
        })
    }
}

/// Pools `x` (`[N, C, spatial...]`, row-major) over the windows `axes` on the host: the max
/// (with the flat input index of the first maximum, row-major or, with `col_major`, spatial
/// axes column-major) or the average (dividing by the in-bounds count, or with `include_pad`
/// by the whole window, as the ONNX reference does, also where `ceil_mode` extends it past
/// the explicit padding). Padding never wins a max.
fn pool_host(
    x: &[f64],
    shape: &[usize],
    axes: &[Axis],
    max: bool,
    include_pad: bool,
    col_major: bool,
) -> (Vec<f64>, Vec<i64>) {
    let plane: usize = shape[2..].iter().product();
    let planes = shape[0] * shape[1];
    let out_plane: usize = axes.iter().map(|a| a.out).product();
    let nd = axes.len();
    let mut strides = vec![1usize; nd];
    for i in (0..nd.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * axes[i + 1].len;
    }
    let mut idx_strides = strides.clone();
    if col_major {
        let mut s = 1;
        for (i, a) in axes.iter().enumerate() {
            idx_strides[i] = s;
            s *= a.len;
        }
    }
    let window: usize = axes.iter().map(|a| a.kernel).product();
    let mut ys = Vec::with_capacity(planes * out_plane);
    let mut is = Vec::with_capacity(if max { planes * out_plane } else { 0 });
    let mut o = vec![0usize; nd];
    let mut k = vec![0usize; nd];
    for p in 0..planes {
        let base = &x[p * plane..(p + 1) * plane];
        o.iter_mut().for_each(|v| *v = 0);
        for _ in 0..out_plane {
            let (mut best, mut best_i, mut sum, mut count) = (f64::NEG_INFINITY, None, 0.0, 0usize);
            k.iter_mut().for_each(|v| *v = 0);
            for _ in 0..window {
                let (mut flat, mut iflat, mut inside) = (0, 0, true);
                for d in 0..nd {
                    let a = &axes[d];
                    let pos = (o[d] * a.stride + k[d] * a.dil) as isize - a.begin as isize;
                    if pos < 0 || pos >= a.len as isize {
                        inside = false;
                    } else {
                        flat += pos as usize * strides[d];
                        iflat += pos as usize * idx_strides[d];
                    }
                }
                if inside {
                    let v = base[flat];
                    if max {
                        if best_i.is_none() || v > best {
                            best = v;
                            best_i = Some(iflat);
                        }
                    } else {
                        sum += v;
                        count += 1;
                    }
                }
                for d in (0..nd).rev() {
                    k[d] += 1;
                    if k[d] < axes[d].kernel {
                        break;
                    }
                    k[d] = 0;
                }
            }
            if max {
                ys.push(best);
                is.push((p * plane + best_i.unwrap_or(0)) as i64);
            } else {
                let n = if include_pad { window } else { count };
                ys.push(if n == 0 { f64::NAN } else { sum / n as f64 });
            }
            for d in (0..nd).rev() {
                o[d] += 1;
                if o[d] < axes[d].out {
                    break;
                }
                o[d] = 0;
            }
        }
    }
    (ys, is)
}

/// `MaxPool` (with its optional `Indices` output, and on integer tensors) and `AveragePool`,
/// 1-D to N-D. Plain 2-D float pools run in burn; the rest (asymmetric or `auto_pad`
/// padding, `ceil_mode` windows that burn would size differently, dilated averages, indices,
/// integers, other ranks) on the host.
pub(super) fn pool<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let a = &node.attrs;
    let is_max = node.op == "MaxPool";
    let x = cx.take(0)?;
    let xs = val_shape(&x);
    if xs.len() < 3 {
        bail!(Shape, "input {xs:?} has no spatial dimensions");
    }
    let nd = xs.len() - 2;
    let kernel = match a.ints("kernel_shape") {
        Some(k) if k.len() == nd && k.iter().all(|&x| x >= 1) => {
            k.iter().map(|&x| x as usize).collect::<Vec<_>>()
        }
        other => bail!(Attr, "kernel_shape {other:?} for a {nd}-D input"),
    };
    let stride = spatial(a, "strides", nd, 1)?;
    let dil = spatial(a, "dilations", nd, 1)?;
    let pads = pads_nd(a, &xs[2..], &kernel, &stride, &dil)?;
    let ceil = a.int("ceil_mode", 0) != 0;
    let include_pad = !is_max && a.int("count_include_pad", 0) != 0;
    let col_major = match a.int("storage_order", 0) {
        0 => false,
        1 => true,
        s => bail!(Attr, "storage_order {s}"),
    };
    let want_idx = is_max && node.outputs.len() > 1;
    let axes = (0..nd)
        .map(|i| Axis::new(xs[i + 2], kernel[i], stride[i], dil[i], pads[i], ceil))
        .collect::<R<Vec<_>>>()?;
    // burn's 2-D pools take symmetric padding and size ceil-mode outputs without dropping
    // windows that start in the padding: use them only where that cannot matter.
    let burn_ok = nd == 2
        && !want_idx
        && matches!(x, Val::F(_))
        && pads.iter().all(|p| p.0 == p.1)
        && (is_max || dil.iter().all(|&d| d == 1))
        && axes.iter().all(|ax| {
            let span = ax.len + ax.begin + ax.end - ((ax.kernel - 1) * ax.dil + 1);
            !ceil || span % ax.stride == 0
        });
    if burn_ok {
        let x = to_f::<B>(x, cx.dev);
        let (k, s, d) = (
            [kernel[0], kernel[1]],
            [stride[0], stride[1]],
            [dil[0], dil[1]],
        );
        let p = [pads[0].0, pads[1].0];
        return one_f(if is_max {
            B::max_pool2d(x, k, s, p, d, ceil)
        } else {
            B::avg_pool2d(x, k, s, p, include_pad, ceil)
        });
    }
    let is_int = matches!(x, Val::I(_));
    let h = to_host::<B>(x)?;
    let data: Vec<f64> = match &h.data {
        HostData::F32(v) => v.iter().map(|&f| f64::from(f)).collect(),
        HostData::I64(v) if is_max => v.iter().map(|&i| i as f64).collect(),
        HostData::I64(_) => bail!(DType, "AveragePool of an integer tensor"),
    };
    let mut out_shape = xs[..2].to_vec();
    out_shape.extend(axes.iter().map(|ax| ax.out));
    check_size(&out_shape)?;
    let (ys, idx) = pool_host(&data, &xs, &axes, is_max, include_pad, col_major);
    let y = if is_int {
        host_val(Host::ints(
            out_shape.clone(),
            ys.iter().map(|&v| v as i64).collect(),
        ))
    } else {
        settle::<B>(
            Host::floats(out_shape.clone(), ys.iter().map(|&v| v as f32).collect()),
            cx.dev,
        )
    };
    let mut out = vec![y];
    if want_idx {
        out.push(host_val(Host::ints(out_shape, idx)));
    }
    Ok(out)
}

/// `GlobalAveragePool` and `GlobalMaxPool`.
pub(super) fn global_pool<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let avg = node.op == "GlobalAveragePool";
    let x = cx.float(0)?;
    let xs = shp::<B>(&x);
    if xs.len() < 3 {
        bail!(Shape, "input {xs:?} has no spatial dimensions");
    }
    one_f(if avg && xs.len() == 4 {
        B::adaptive_avg_pool2d(x, [1, 1])
    } else {
        (2..xs.len()).fold(x, |t, d| {
            if avg {
                B::float_mean_dim(t, d)
            } else {
                B::float_max_dim(t, d)
            }
        })
    })
}
