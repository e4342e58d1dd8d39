//! `Resize` / `Upsample` of N-D tensors, following the ONNX reference implementation:
//! separable per-axis interpolation (nearest, linear, cubic, with or without antialiasing)
//! on the host, with every coordinate transformation mode. The 2-D cases burn's
//! `interpolate` computes identically (integer nearest upsampling, linear half-pixel or
//! align-corners resizing to an exact size) run in burn.

use burn_backend::ops::{InterpolateMode, InterpolateOptions};

use super::*;
use crate::error::bail;
use crate::parse::Attrs;

/// The coordinate transformation modes `Resize` accepts.
const CTMS: &[&str] = &[
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_crop_and_resize",
];

/// The interpolation settings of one `Resize` / `Upsample` node.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    /// `nearest`, `linear` or `cubic` (`bilinear` is read as `linear`).
    mode: String,
    ctm: String,
    nearest: String,
    policy: String,
    cubic_a: f64,
    exclude_outside: bool,
    antialias: bool,
    extrapolation: f64,
}

impl Settings {
    /// The node's settings; `legacy` (`Upsample`, `Resize` before opset 11) resizes with
    /// asymmetric coordinates and floor rounding, the only form those had.
    fn new(a: &Attrs, legacy: bool) -> Self {
        let mode = match a.string("mode", "nearest").as_str() {
            "bilinear" => "linear".to_string(),
            m => m.to_string(),
        };
        let (ctm, nearest) = if legacy {
            ("asymmetric".to_string(), "floor".to_string())
        } else {
            (
                a.string("coordinate_transformation_mode", "half_pixel"),
                a.string("nearest_mode", "round_prefer_floor"),
            )
        };
        Settings {
            mode,
            ctm,
            nearest,
            policy: a.string("keep_aspect_ratio_policy", "stretch"),
            cubic_a: f64::from(a.float("cubic_coeff_a", -0.75)),
            exclude_outside: a.int("exclude_outside", 0) != 0,
            antialias: a.int("antialias", 0) != 0,
            extrapolation: f64::from(a.float("extrapolation_value", 0.0)),
        }
    }

    /// The first attribute with a value this module does not implement, as `name=value`.
    fn unsupported(&self) -> Option<String> {
        if !matches!(self.mode.as_str(), "nearest" | "linear" | "cubic") {
            return Some(format!("mode={}", self.mode));
        }
        if !CTMS.contains(&self.ctm.as_str()) {
            return Some(format!("coordinate_transformation_mode={}", self.ctm));
        }
        if !matches!(
            self.nearest.as_str(),
            "round_prefer_floor" | "round_prefer_ceil" | "floor" | "ceil"
        ) {
            return Some(format!("nearest_mode={}", self.nearest));
        }
        if !matches!(
            self.policy.as_str(),
            "stretch" | "not_larger" | "not_smaller"
        ) {
            return Some(format!("keep_aspect_ratio_policy={}", self.policy));
        }
        None
    }
}

/// The load-time check of a `Resize` / `Upsample` node: `Some("Resize(attr=value)")` when it
/// uses an attribute value [`resize`] does not implement.
pub(super) fn unsupported(node: &Node) -> Option<String> {
    let legacy = node.op == "Upsample";
    Settings::new(&node.attrs, legacy)
        .unsupported()
        .map(|what| format!("{}({what})", node.op))
}

/// The interpolation weights of one output coordinate along one axis.
#[derive(Debug, Clone, PartialEq)]
enum Taps {
    /// Outside the crop box (`tf_crop_and_resize`): the extrapolation value.
    Outside,
    /// `(input index, weight)` pairs.
    Sum(Vec<(usize, f64)>),
}

fn cubic_coeffs(r: f64, a: f64) -> Vec<f64> {
    let s = 1.0 - r;
    vec![
        ((a * (r + 1.0) - 5.0 * a) * (r + 1.0) + 8.0 * a) * (r + 1.0) - 4.0 * a,
        ((a + 2.0) * r - (a + 3.0)) * r * r + 1.0,
        ((a + 2.0) * s - (a + 3.0)) * s * s + 1.0,
        ((a * (s + 1.0) - 5.0 * a) * (s + 1.0) + 8.0 * a) * (s + 1.0) - 4.0 * a,
    ]
}

fn normalized(c: Vec<f64>) -> Vec<f64> {
    let sum: f64 = c.iter().sum();
    c.into_iter().map(|x| x / sum).collect()
}

/// Antialiased cubic weights: the kernel stretched by `1 / scale` when downsampling.
fn cubic_coeffs_antialias(r: f64, scale: f64, a: f64) -> Vec<f64> {
    let s = scale.min(1.0);
    let start = (-2.0 / s).floor() as i64 + 1;
    let f = |x: f64| {
        let x = x.abs();
        if x <= 1.0 {
            (a + 2.0) * x * x * x - (a + 3.0) * x * x + 1.0
        } else if x < 2.0 {
            a * x * x * x - 5.0 * a * x * x + 8.0 * a * x - 4.0 * a
        } else {
            0.0
        }
    };
    normalized((start..2 - start).map(|i| f(s * (i as f64 - r))).collect())
}

/// Antialiased linear weights: the triangle stretched by `1 / scale` when downsampling.
fn linear_coeffs_antialias(r: f64, scale: f64) -> Vec<f64> {
    let s = scale.min(1.0);
    let start = (-1.0 / s).floor() as i64 + 1;
    let footprint = 2 - 2 * start;
    normalized(
        (start..start + footprint)
            .map(|i| (1.0 - ((i as f64 - r) * s).abs()).clamp(0.0, 1.0))
            .collect(),
    )
}

/// The taps of output coordinate `x` along an axis of `len` input values resized by `scale`
/// to `out` values; `roi` is the axis' crop box for `tf_crop_and_resize`.
fn taps(st: &Settings, x: usize, len: usize, scale: f64, out: usize, roi: (f64, f64)) -> Taps {
    let (x, in_w) = (x as f64, len as f64);
    let out_w = scale * in_w;
    let x_ori = match st.ctm.as_str() {
        "align_corners" if out_w == 1.0 => 0.0,
        "align_corners" => x * (in_w - 1.0) / (out_w - 1.0),
        "asymmetric" => x / scale,
        "tf_crop_and_resize" => {
            let v = if out_w == 1.0 {
                (roi.1 - roi.0) * (in_w - 1.0) / 2.0
            } else {
                x * (roi.1 - roi.0) * (in_w - 1.0) / (out_w - 1.0)
            } + roi.0 * (in_w - 1.0);
            if v < 0.0 || v > in_w - 1.0 {
                return Taps::Outside;
            }
            v
        }
        "pytorch_half_pixel" if out_w == 1.0 => -0.5,
        "half_pixel_symmetric" => {
            let adjustment = out as f64 / out_w;
            let offset = in_w / 2.0 * (1.0 - adjustment);
            offset + (x + 0.5) / scale - 0.5
        }
        // half_pixel, pytorch_half_pixel
        _ => (x + 0.5) / scale - 0.5,
    };
    // ratio in (0, 1]: the left neighbour is preferred.
    let ratio = if x_ori.fract() == 0.0 {
        1.0
    } else {
        x_ori - x_ori.floor()
    };
    let coeffs = match st.mode.as_str() {
        "nearest" => {
            let up = if ratio == 1.0 {
                true
            } else {
                match st.nearest.as_str() {
                    "round_prefer_ceil" => ratio >= 0.5,
                    "floor" => false,
                    "ceil" => true,
                    _ => ratio > 0.5,
                }
            };
            if up {
                vec![0.0, 1.0]
            } else {
                vec![1.0, 0.0]
            }
        }
        "linear" if st.antialias => linear_coeffs_antialias(ratio, scale),
        "linear" => vec![1.0 - ratio, ratio],
        _ if st.antialias => cubic_coeffs_antialias(ratio, scale, st.cubic_a),
        _ => cubic_coeffs(ratio, st.cubic_a),
    };
    // The n input positions nearest x_ori on the input padded by n/2 edge values.
    let n = coeffs.len() as i64;
    let pad = (n + 1) / 2;
    let base = (x_ori - ratio).round() as i64;
    let lo = (base - n / 2 + 1 + pad).clamp(0, (len as i64 + 2 * pad - n).max(0)) - pad;
    let mut t: Vec<(i64, f64)> = coeffs
        .into_iter()
        .enumerate()
        .map(|(j, c)| (lo + j as i64, c))
        .collect();
    if st.exclude_outside {
        for (i, c) in &mut t {
            if *i < 0 || *i >= len as i64 {
                *c = 0.0;
            }
        }
        let sum: f64 = t.iter().map(|(_, c)| c).sum();
        t.iter_mut().for_each(|(_, c)| *c /= sum);
    }
    let last = len as i64 - 1;
    Taps::Sum(
        t.into_iter()
            .filter(|(_, c)| *c != 0.0)
            .map(|(i, c)| (i.clamp(0, last) as usize, c))
            .collect(),
    )
}

/// Resizes axis `axis` of `data` (shape `shape`) to `taps.len()` values.
fn resize_axis(data: &[f64], shape: &[usize], axis: usize, taps: &[Taps], extra: f64) -> Vec<f64> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let len = shape[axis];
    let mut out = Vec::with_capacity(outer * taps.len() * inner);
    for o in 0..outer {
        let block = &data[o * len * inner..(o + 1) * len * inner];
        for t in taps {
            match t {
                Taps::Outside => out.extend(std::iter::repeat_n(extra, inner)),
                Taps::Sum(t) => out.extend((0..inner).map(|k| {
                    t.iter()
                        .map(|&(i, c)| c * block[i * inner + k])
                        .sum::<f64>()
                })),
            }
        }
    }
    out
}

/// `Resize` and `Upsample`.
pub(super) fn resize<B: Backend>(node: &Node, cx: &mut Cx<B>) -> Out<B> {
    let (a, op, opset) = (&node.attrs, node.op.as_str(), cx.opset);
    let legacy = op == "Upsample" || opset < 11;
    let st = Settings::new(a, legacy);
    if let Some(what) = st.unsupported() {
        bail!(Unsupported, "{what} is not supported");
    }
    let x = cx.take(0)?;
    let (roi, scales, sizes) = if op == "Upsample" && opset < 9 {
        (None, a.floats("scales"), None)
    } else if legacy {
        (None, Some(cx.host(1)?.to_f32()), None)
    } else {
        let (roi, sc, sz) = (cx.opt_host(1)?, cx.opt_host(2)?, cx.opt_host(3)?);
        (
            roi.map(|h| h.to_f32()).filter(|v| !v.is_empty()),
            sc.map(|h| h.to_f32()).filter(|v| !v.is_empty()),
            sz.map(|h| h.to_i64()).filter(|v| !v.is_empty()),
        )
    };
    let xs = val_shape(&x);
    let rank = xs.len();
    let axes = match a.ints("axes") {
        Some(ax) if !legacy => {
            let ax = norm_axes(&ax, rank)?;
            let mut u = ax.clone();
            u.sort_unstable();
            u.dedup();
            if u.len() != ax.len() {
                bail!(Attr, "axes {ax:?} repeat an axis");
            }
            ax
        }
        _ => (0..rank).collect(),
    };
    let mut scale = vec![1f64; rank];
    let mut out = xs.clone();
    match (sizes, scales) {
        (Some(s), _) => {
            if s.len() != axes.len() || s.iter().any(|&d| d < 1) {
                bail!(Attr, "sizes {s:?} for axes {axes:?}");
            }
            if axes.iter().any(|&ax| xs[ax] == 0) {
                bail!(Shape, "cannot resize the empty input {xs:?} to sizes {s:?}");
            }
            let ratio = |j: usize| s[j] as f64 / xs[axes[j]] as f64;
            let keep = match st.policy.as_str() {
                "not_larger" => Some((0..axes.len()).map(ratio).fold(f64::INFINITY, f64::min)),
                "not_smaller" => Some((0..axes.len()).map(ratio).fold(0.0, f64::max)),
                _ => None,
            };
            for (j, &ax) in axes.iter().enumerate() {
                match keep {
                    Some(k) => {
                        scale[ax] = k;
                        out[ax] = (k * xs[ax] as f64 + 0.5).floor() as usize;
                    }
                    None => {
                        scale[ax] = ratio(j);
                        out[ax] = s[j] as usize;
                    }
                }
            }
        }
        (None, Some(s)) if s.len() == axes.len() && s.iter().all(|&f| f > 0.0 && f.is_finite()) => {
            for (j, &ax) in axes.iter().enumerate() {
                scale[ax] = f64::from(s[j]);
                out[ax] = (scale[ax] * xs[ax] as f64).floor() as usize;
            }
        }
        (_, s) => bail!(
            Attr,
            "needs {} positive scales or sizes (axes {axes:?}), got scales {s:?}",
            axes.len()
        ),
    }
    check_size(&out)?;
    if out.contains(&0) {
        bail!(Shape, "empty output size {out:?}");
    }
    let mut rois = vec![(0.0, 1.0); rank];
    if st.ctm == "tf_crop_and_resize" {
        match &roi {
            Some(r) if r.len() == 2 * axes.len() => {
                for (j, &ax) in axes.iter().enumerate() {
                    rois[ax] = (f64::from(r[j]), f64::from(r[j + axes.len()]));
                }
            }
            other => bail!(
                Attr,
                "tf_crop_and_resize needs a roi of {} values, got {other:?}",
                2 * axes.len()
            ),
        }
    }

    let fast = match &x {
        Val::F(_) => burn_interpolate(&st, &xs, &out, &scale),
        Val::I(_) => None,
    };
    match (x, fast) {
        (Val::F(t), Some(opts)) => one_f(B::interpolate(t, [out[2], out[3]], opts)),
        (x, _) => resize_host::<B>(x, &st, &xs, &out, &scale, &rois, cx.dev),
    }
}

/// burn's options for the resizes it computes exactly as ONNX does, else `None`.
fn burn_interpolate(
    st: &Settings,
    xs: &[usize],
    out: &[usize],
    scale: &[f64],
) -> Option<InterpolateOptions> {
    if xs.len() != 4 || out[..2] != xs[..2] || st.antialias {
        return None;
    }
    let exact = (2..4).all(|i| scale[i] == out[i] as f64 / xs[i] as f64);
    let mode = match st.mode.as_str() {
        "nearest"
            if st.ctm == "asymmetric"
                && st.nearest == "floor"
                && exact
                && (2..4).all(|i| out[i].is_multiple_of(xs[i])) =>
        {
            InterpolateMode::Nearest
        }
        "linear"
            if exact
                && (matches!(st.ctm.as_str(), "half_pixel" | "align_corners")
                    || (st.ctm == "pytorch_half_pixel" && out[2] > 1 && out[3] > 1)) =>
        {
            InterpolateMode::Bilinear
        }
        _ => return None,
    };
    let mut opts = InterpolateOptions::new(mode);
    opts.align_corners = st.ctm == "align_corners" && st.mode != "nearest";
    Some(opts)
}

fn resize_host<B: Backend>(
    x: Val<B>,
    st: &Settings,
    xs: &[usize],
    out: &[usize],
    scale: &[f64],
    rois: &[(f64, f64)],
    dev: &B::Device,
) -> Out<B> {
    let is_int = matches!(x, Val::I(_));
    let h = to_host::<B>(x)?;
    let mut data: Vec<f64> = match &h.data {
        HostData::F32(v) => v.iter().map(|&f| f64::from(f)).collect(),
        HostData::I64(v) => v.iter().map(|&i| i as f64).collect(),
    };
    let mut shape = xs.to_vec();
    for ax in (0..xs.len()).rev() {
        if out[ax] == xs[ax] && scale[ax] == 1.0 && st.ctm != "tf_crop_and_resize" {
            continue;
        }
        let t: Vec<Taps> = (0..out[ax])
            .map(|o| taps(st, o, xs[ax], scale[ax], out[ax], rois[ax]))
            .collect();
        data = resize_axis(&data, &shape, ax, &t, st.extrapolation);
        shape[ax] = out[ax];
    }
    one(if is_int {
        host_val(Host::ints(
            shape,
            data.iter().map(|&v| v.round() as i64).collect(),
        ))
    } else {
        settle::<B>(
            Host::floats(shape, data.iter().map(|&v| v as f32).collect()),
            dev,
        )
    })
}
