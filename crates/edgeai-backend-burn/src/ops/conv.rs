//! Windowed operators on NCHW images: `Conv`, `MaxPool` / `AveragePool` and the global
//! pools.

use burn_backend::ops::ConvOptions;

use super::*;
use crate::error::bail;
use crate::parse::Attrs;

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
                bail!(Attr, "pads {p:?} is not 4 non-negative values");
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
        other => Err(E::Unsupported(format!("auto_pad {other} is not supported"))),
    }
}

fn pair(a: &Attrs, name: &str, default: usize) -> R<[usize; 2]> {
    match a.ints(name) {
        None => Ok([default; 2]),
        Some(v) if v.len() == 2 && v.iter().all(|&x| x >= 1) => Ok([v[0] as usize, v[1] as usize]),
        Some(v) => Err(E::Attr(format!("{name} {v:?} is not 2 positive values"))),
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

/// `MaxPool` and `AveragePool`.
pub(super) fn pool<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let a = &node.attrs;
    let x = cx.float(0)?;
    let xs = shp::<B>(&x);
    if xs.len() != 4 {
        bail!(Shape, "input {xs:?} is not 4-D");
    }
    let kernel = match a.ints("kernel_shape") {
        Some(k) if k.len() == 2 && k.iter().all(|&x| x >= 1) => [k[0] as usize, k[1] as usize],
        other => bail!(Attr, "kernel_shape {other:?}"),
    };
    let stride = pair(a, "strides", 1)?;
    let dil = pair(a, "dilations", 1)?;
    let pads = pads2(a, &xs[2..], kernel, stride, dil)?;
    check_window(&xs[2..], pads, kernel, dil)?;
    if pads[0].0 != pads[0].1 || pads[1].0 != pads[1].1 {
        bail!(Unsupported, "asymmetric padding {pads:?} is not supported");
    }
    let ceil = a.int("ceil_mode", 0) != 0;
    let p = [pads[0].0, pads[1].0];
    one_f(if node.op == "MaxPool" {
        B::max_pool2d(x, kernel, stride, p, dil, ceil)
    } else {
        if dil != [1, 1] {
            bail!(Unsupported, "dilated AveragePool is not supported");
        }
        let include_pad = a.int("count_include_pad", 0) != 0;
        B::avg_pool2d(x, kernel, stride, p, include_pad, ceil)
    })
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
