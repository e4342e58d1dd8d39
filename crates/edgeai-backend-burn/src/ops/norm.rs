//! Normalisations: `BatchNormalization` (inference form) and `Softmax`.

use super::*;
use crate::error::bail;

pub(super) fn batch_norm<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
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
