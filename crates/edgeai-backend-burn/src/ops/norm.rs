//! Normalisations: `BatchNormalization` (inference form) and `Softmax`.

use super::*;
use crate::error::bail;

/// `BatchNormalization`: the inference form in burn; the training form (opset 14's
/// `training_mode`, normalising with the batch statistics and returning the updated running
/// mean and variance) on the host.
pub(super) fn batch_norm<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let training = node.attrs.int("training_mode", 0) != 0;
    if node.outputs.len() > 1 && !(training && cx.opset >= 14) {
        bail!(
            Unsupported,
            "training outputs (mean, var) without training_mode=1 at opset 14 or later are \
             not supported"
        );
    }
    if training {
        return batch_norm_training(node, cx);
    }
    let x = cx.float(0)?;
    let xs = shp::<B>(&x);
    let c = *xs
        .get(1)
        .ok_or_else(|| E::Shape("input has no channel dimension".into()))?;
    let mut param = |i: usize| -> R<FloatTensor<B>> {
        let t = cx.float(i)?;
        if shp::<B>(&t) != [c] {
            bail!(Shape, "parameter {i} is not [{c}]");
        }
        Ok(t)
    };
    let (scale, bias, mean, var) = (param(1)?, param(2)?, param(3)?, param(4)?);
    let eps = node.attrs.float("epsilon", 1e-5);
    let mut bshape = vec![1; xs.len()];
    bshape[1] = c;
    let inv = B::float_div(scale, B::float_sqrt(B::float_add_scalar(var, eps.into())));
    let shift = B::float_sub(bias, B::float_mul(mean, inv.clone()));
    one_f(B::float_add(
        B::float_mul(x, reshape::<B>(inv, &bshape)),
        reshape::<B>(shift, &bshape),
    ))
}

fn batch_norm_training<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let x = cx.host(0)?;
    let xs = x.shape.clone();
    let c = *xs
        .get(1)
        .ok_or_else(|| E::Shape("input has no channel dimension".into()))?;
    let mut param = |i: usize| -> R<Vec<f32>> {
        let t = cx.host(i)?;
        if t.shape != [c] {
            bail!(Shape, "parameter {i} is not [{c}]");
        }
        Ok(t.to_f32())
    };
    let (scale, bias, mean, var) = (param(1)?, param(2)?, param(3)?, param(4)?);
    let eps = f64::from(node.attrs.float("epsilon", 1e-5));
    let momentum = f64::from(node.attrs.float("momentum", 0.9));
    let inner: usize = xs[2..].iter().product();
    let xv = x.to_f32();
    let count = (xv.len() / c.max(1)).max(1) as f64;
    let (mut bm, mut bv) = (vec![0f64; c], vec![0f64; c]);
    for (i, &v) in xv.iter().enumerate() {
        bm[(i / inner.max(1)) % c] += f64::from(v);
    }
    bm.iter_mut().for_each(|m| *m /= count);
    for (i, &v) in xv.iter().enumerate() {
        let ch = (i / inner.max(1)) % c;
        bv[ch] += (f64::from(v) - bm[ch]).powi(2);
    }
    bv.iter_mut().for_each(|v| *v /= count);
    let y: Vec<f32> = xv
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = (i / inner.max(1)) % c;
            let n = (f64::from(v) - bm[ch]) / (bv[ch] + eps).sqrt();
            (n * f64::from(scale[ch]) + f64::from(bias[ch])) as f32
        })
        .collect();
    let run = |old: &[f32], batch: &[f64]| -> Vec<f32> {
        old.iter()
            .zip(batch)
            .map(|(&o, &b)| (f64::from(o) * momentum + b * (1.0 - momentum)) as f32)
            .collect()
    };
    let mut out = vec![settle::<B>(Host::floats(xs, y), cx.dev)];
    for stats in [run(&mean, &bm), run(&var, &bv)]
        .into_iter()
        .take(node.outputs.len() - 1)
    {
        out.push(settle::<B>(Host::floats(vec![c], stats), cx.dev));
    }
    Ok(out)
}

pub(super) fn softmax<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let x = cx.float(0)?;
    let xs = shp::<B>(&x);
    let default = if cx.opset < 13 { 1 } else { -1 };
    let axis = norm_axis(node.attrs.int("axis", default), xs.len())?;
    if cx.opset >= 13 || axis + 1 == xs.len() {
        return one_f(B::softmax(x, axis));
    }
    // Before opset 13: softmax over the input flattened to 2-D at `axis`.
    let rows: usize = xs[..axis].iter().product();
    let cols: usize = xs[axis..].iter().product();
    let y = B::softmax(reshape::<B>(x, &[rows, cols]), 1);
    one_f(reshape::<B>(y, &xs))
}
