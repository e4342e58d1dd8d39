//! Matrix products: `MatMul` (batched, NumPy broadcasting) and `Gemm`.

use super::elementwise::float_binary;
use super::*;
use crate::error::bail;

pub(super) fn gemm<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let a = &node.attrs;
    let (x, w) = (cx.float(0)?, cx.float(1)?);
    let c = cx.opt(2).map(|v| to_f::<B>(v, cx.dev));
    let (xs, ws) = (shp::<B>(&x), shp::<B>(&w));
    if xs.len() != 2 || ws.len() != 2 {
        bail!(Shape, "operands {xs:?} and {ws:?} are not 2-D");
    }
    let t = |m, attr| match a.int(attr, 0) {
        0 => m,
        _ => B::float_swap_dims(m, 0, 1),
    };
    let (x, w) = (t(x, "transA"), t(w, "transB"));
    let (xs, ws) = (shp::<B>(&x), shp::<B>(&w));
    if xs[1] != ws[0] {
        bail!(Shape, "operands {xs:?} and {ws:?} do not multiply");
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
        y = float_binary::<B>("Add", y, c)?;
    }
    one_f(y)
}

pub(super) fn matmul<B: Backend>(_: &Node, cx: &mut Cx<B>) -> Out<B> {
    let (a, b) = (cx.float(0)?, cx.float(1)?);
    let (sa, sb) = (shp::<B>(&a), shp::<B>(&b));
    if sa.is_empty() || sb.is_empty() {
        bail!(Shape, "scalar operands");
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
        bail!(Shape, "shapes {sa:?} and {sb:?} do not multiply");
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
        let batch = broadcast_shape(&sa2[..sa2.len() - 2], &sb2[..sb2.len() - 2])?;
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
    one_f(reshape::<B>(out, &out_shape))
}
