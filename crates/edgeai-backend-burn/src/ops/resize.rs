//! `Resize` / `Upsample` of NCHW images: nearest and bilinear.

use burn_backend::ops::{InterpolateMode, InterpolateOptions};

use super::*;
use crate::error::bail;

/// `Resize` and `Upsample`; which modes run is decided at load by `unsupported_variant`.
pub(super) fn resize<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let (a, op, opset) = (&node.attrs, node.op.as_str(), cx.opset);
    let x = cx.float(0)?;
    let (scales, sizes) = if op == "Upsample" && opset < 9 {
        (a.floats("scales"), None)
    } else if op == "Upsample" || opset < 11 {
        (Some(cx.host(1)?.to_f32()), None)
    } else {
        let (sc, sz) = (cx.opt_host(2)?, cx.opt_host(3)?);
        (
            sc.map(|h| h.to_f32()).filter(|v| !v.is_empty()),
            sz.map(|h| h.to_i64()).filter(|v| !v.is_empty()),
        )
    };
    let xs = shp::<B>(&x);
    if xs.len() != 4 {
        bail!(Shape, "input {xs:?} is not 4-D");
    }
    let out: Vec<usize> = match (sizes, scales) {
        (Some(s), _) if !s.is_empty() => {
            if s.len() != 4 || s.iter().any(|&d| d < 1) {
                bail!(Attr, "sizes {s:?}");
            }
            s.iter().map(|&d| d as usize).collect()
        }
        (_, Some(s)) if s.len() == 4 && s.iter().all(|&f| f > 0.0 && f.is_finite()) => xs
            .iter()
            .zip(&s)
            .map(|(&d, &f)| (d as f32 * f).floor() as usize)
            .collect(),
        (_, s) => bail!(Attr, "needs 4 positive scales or sizes, got {s:?}"),
    };
    if out[0] != xs[0] || out[1] != xs[1] {
        bail!(
            Unsupported,
            "resizing the batch or channel dimension is not supported"
        );
    }
    check_size(&out)?;
    if out[2] == 0 || out[3] == 0 {
        bail!(Shape, "empty output size {out:?}");
    }
    let mode = a.string("mode", "nearest");
    let ctm = a.string("coordinate_transformation_mode", "half_pixel");
    let mut opts = InterpolateOptions::new(if mode == "nearest" {
        InterpolateMode::Nearest
    } else {
        InterpolateMode::Bilinear
    });
    opts.align_corners = ctm == "align_corners" && mode != "nearest";
    one_f(B::interpolate(x, [out[2], out[3]], opts))
}
