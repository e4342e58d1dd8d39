//! Element-wise operators: broadcasting arithmetic (on the host for integers), activations,
//! `PRelu` and `Clip`.

use super::*;
use crate::error::bail;

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
                    "Div" => p
                        .checked_div(q)
                        .ok_or_else(|| E::Value("integer division by zero".into()))?,
                    "Pow" => p.wrapping_pow(
                        u32::try_from(q).map_err(|_| E::Value("negative power".into()))?,
                    ),
                    "Equal" => (p == q) as i64,
                    _ => bail!(DType, "{op} on integers is not supported"),
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
                bail!(DType, "{op} on mixed host tensors is not supported");
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

pub(super) fn float_binary<B: Backend>(
    op: &str,
    a: FloatTensor<B>,
    b: FloatTensor<B>,
) -> R<FloatTensor<B>> {
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
        _ => bail!(DType, "{op} on float tensors is not supported"),
    })
}

/// `Add`, `Sub`, `Mul`, `Div`, `Pow`, `Equal`: integers on the host, floats in burn.
pub(super) fn binary<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let op = node.op.as_str();
    match (cx.take(0)?, cx.take(1)?) {
        (Val::I(p), Val::I(q)) => one(host_val(host_binary(op, &p, &q)?)),
        (x, y) if op == "Equal" => {
            let (p, q) = (to_host::<B>(x)?, to_host::<B>(y)?);
            one(host_val(host_binary(op, &p, &q)?))
        }
        (x, y) => one_f(float_binary::<B>(
            op,
            to_f::<B>(x, cx.dev),
            to_f::<B>(y, cx.dev),
        )?),
    }
}

/// The activations and one-input maths functions.
pub(super) fn unary<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let a = &node.attrs;
    let x = cx.float(0)?;
    one_f(match node.op.as_str() {
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
        _ => bail!(Unsupported, "not a unary operator"),
    })
}

pub(super) fn prelu<B: Backend>(_: &Node, cx: &mut Cx<B>) -> Out<B> {
    let (x, s) = (cx.float(0)?, cx.float(1)?);
    let (xs, ss) = (shp::<B>(&x), shp::<B>(&s));
    if broadcast_shape(&xs, &ss).ok().as_deref() != Some(&xs[..]) {
        bail!(Shape, "slope {ss:?} does not broadcast to {xs:?}");
    }
    let s = reshape::<B>(s, &pad_rank(&ss, xs.len()));
    one_f(B::prelu(x, s))
}

/// `Clip`: bounds from attributes (before opset 11) or optional scalar inputs (an omitted or
/// empty one is no bound). Integer tensors are clipped on the host and stay integers. With
/// `min > max` every value becomes `max`, as ONNX specifies.
pub(super) fn clip<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let a = &node.attrs;
    let x = cx.take(0)?;
    let (lo, hi) = if cx.opset < 11 {
        let f = |name: &str| {
            a.has(name)
                .then(|| Host::floats(vec![], vec![a.float(name, 0.0)]))
        };
        (f("min").map(Arc::new), f("max").map(Arc::new))
    } else {
        (cx.opt_host(1)?, cx.opt_host(2)?)
    };
    for (name, b) in [("min", &lo), ("max", &hi)] {
        if let Some(b) = b {
            if b.count() > 1 {
                bail!(Attr, "{name} has shape {:?}, not a scalar", b.shape);
            }
        }
    }
    let lo = lo.filter(|h| h.count() == 1);
    let hi = hi.filter(|h| h.count() == 1);
    match x {
        Val::I(h) => {
            let (l, u) = (
                lo.map_or(i64::MIN, |b| b.to_i64()[0]),
                hi.map_or(i64::MAX, |b| b.to_i64()[0]),
            );
            let v = h.to_i64().into_iter().map(|v| v.max(l).min(u)).collect();
            one(host_val(Host::ints(h.shape.clone(), v)))
        }
        x => {
            let mut x = to_f::<B>(x, cx.dev);
            if let Some(l) = lo {
                x = B::float_clamp_min(x, l.to_f32()[0].into());
            }
            if let Some(u) = hi {
                x = B::float_clamp_max(x, u.to_f32()[0].into());
            }
            one_f(x)
        }
    }
}
