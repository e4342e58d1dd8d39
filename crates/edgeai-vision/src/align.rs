//! Face alignment: a least-squares similarity transform (Umeyama) from five landmarks to
//! the ArcFace 112x112 template, and a bilinear affine warp.

use crate::{Error, Image, Result};

/// The ArcFace reference landmarks in a 112x112 crop: eye at image left (the person's right
/// eye), other eye, nose tip, mouth corner at image left, other mouth corner.
pub const ARCFACE_112: [(f32, f32); 5] = [
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
];

/// Side of the aligned crop.
pub const ALIGNED_SIZE: u32 = 112;

/// A 2x3 affine transform: `x' = a x + b y + c`, `y' = d x + e y + f`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    /// Row-major coefficients `[a, b, c, d, e, f]`.
    pub m: [f64; 6],
}

impl Affine {
    /// Rotation by `angle` radians (counter-clockwise in a y-up frame), uniform `scale`,
    /// then translation.
    pub fn similarity(scale: f64, angle: f64, tx: f64, ty: f64) -> Affine {
        let (s, c) = angle.sin_cos();
        Affine {
            m: [scale * c, -scale * s, tx, scale * s, scale * c, ty],
        }
    }

    /// Applies the transform to a point.
    pub fn apply(&self, x: f32, y: f32) -> (f32, f32) {
        let [a, b, c, d, e, f] = self.m;
        let (x, y) = (f64::from(x), f64::from(y));
        ((a * x + b * y + c) as f32, (d * x + e * y + f) as f32)
    }

    /// The inverse transform, if the linear part is invertible.
    pub fn inverse(&self) -> Option<Affine> {
        let [a, b, c, d, e, f] = self.m;
        let det = a * e - b * d;
        if !det.is_finite() || det.abs() < 1e-12 {
            return None;
        }
        let (ia, ib, id, ie) = (e / det, -b / det, -d / det, a / det);
        Some(Affine {
            m: [ia, ib, -(ia * c + ib * f), id, ie, -(id * c + ie * f)],
        })
    }

    /// The uniform scale of a similarity transform (`sqrt(|det|)`).
    pub fn scale(&self) -> f64 {
        let [a, b, _, d, e, _] = self.m;
        (a * e - b * d).abs().sqrt()
    }

    /// The rotation angle of a similarity transform, in radians.
    pub fn angle(&self) -> f64 {
        self.m[3].atan2(self.m[0])
    }
}

/// The similarity transform (rotation, uniform scale, translation; no reflection) that maps
/// `src` onto `dst` with the least squared error: Umeyama's method. In 2-D Umeyama's SVD
/// solution has the closed form used here (the least-squares fit of `dst = z * src + t` with
/// complex `z`), which is the optimum over proper rotations and non-negative scales.
///
/// Errors when fewer than two points are given, the counts differ, a value is not finite,
/// or all `src` points coincide.
pub fn similarity_transform(src: &[(f32, f32)], dst: &[(f32, f32)]) -> Result<Affine> {
    if src.len() != dst.len() || src.len() < 2 {
        return Err(Error::Alignment(format!(
            "need the same number (>= 2) of source and target points, got {} and {}",
            src.len(),
            dst.len()
        )));
    }
    if src
        .iter()
        .chain(dst)
        .any(|(x, y)| !x.is_finite() || !y.is_finite())
    {
        return Err(Error::Alignment("a landmark is not finite".into()));
    }
    let n = src.len() as f64;
    let mean = |p: &[(f32, f32)]| {
        let (sx, sy) = p.iter().fold((0.0, 0.0), |(ax, ay), &(x, y)| {
            (ax + f64::from(x), ay + f64::from(y))
        });
        (sx / n, sy / n)
    };
    let (msx, msy) = mean(src);
    let (mdx, mdy) = mean(dst);
    let (mut re, mut im, mut var) = (0.0f64, 0.0f64, 0.0f64);
    for (&(sx, sy), &(dx, dy)) in src.iter().zip(dst) {
        let (sx, sy) = (f64::from(sx) - msx, f64::from(sy) - msy);
        let (dx, dy) = (f64::from(dx) - mdx, f64::from(dy) - mdy);
        re += sx * dx + sy * dy;
        im += sx * dy - sy * dx;
        var += sx * sx + sy * sy;
    }
    if var <= 1e-9 * n {
        return Err(Error::Alignment(
            "the source landmarks all lie at one point".into(),
        ));
    }
    let (a, b) = (re / var, im / var);
    Ok(Affine {
        m: [
            a,
            -b,
            mdx - (a * msx - b * msy),
            b,
            a,
            mdy - (b * msx + a * msy),
        ],
    })
}

/// Warps `image` with `transform` (source -> output coordinates) into a `width x height`
/// image, sampling bilinearly; pixels that fall outside the source are black (OpenCV's
/// `warpAffine` with `INTER_LINEAR` and a constant border).
pub fn warp_affine(image: &Image, transform: &Affine, width: u32, height: u32) -> Result<Image> {
    let inv = transform
        .inverse()
        .ok_or_else(|| Error::Alignment("the transform is not invertible".into()))?;
    let [a, b, c, d, e, f] = inv.m;
    let (sw, sh) = (i64::from(image.width()), i64::from(image.height()));
    let src = image.as_rgb();
    let mut out = vec![0u8; width as usize * height as usize * 3];
    let fetch = |x: i64, y: i64, ch: usize| -> f64 {
        if x < 0 || y < 0 || x >= sw || y >= sh {
            0.0
        } else {
            f64::from(src[((y * sw + x) * 3) as usize + ch])
        }
    };
    for oy in 0..height {
        for ox in 0..width {
            let (fx, fy) = (f64::from(ox), f64::from(oy));
            let sx = a * fx + b * fy + c;
            let sy = d * fx + e * fy + f;
            if !(sx > -1.0 && sy > -1.0 && sx < sw as f64 && sy < sh as f64) {
                continue;
            }
            let (x0, y0) = (sx.floor(), sy.floor());
            let (wx, wy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            let o = (oy as usize * width as usize + ox as usize) * 3;
            for ch in 0..3 {
                let top = fetch(x0, y0, ch) * (1.0 - wx) + fetch(x0 + 1, y0, ch) * wx;
                let bot = fetch(x0, y0 + 1, ch) * (1.0 - wx) + fetch(x0 + 1, y0 + 1, ch) * wx;
                out[o + ch] = (top * (1.0 - wy) + bot * wy).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    Image::from_rgb(width, height, out)
}

/// Aligns a face: the similarity transform from its five `landmarks` (in [`ARCFACE_112`]
/// order) to the ArcFace template, applied to make a 112x112 crop.
pub fn align_face(image: &Image, landmarks: &[(f32, f32); 5]) -> Result<Image> {
    let t = similarity_transform(landmarks, &ARCFACE_112)?;
    warp_affine(image, &t, ALIGNED_SIZE, ALIGNED_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn recovers_hand_made_similarity_transforms() {
        for &(scale, angle, tx, ty) in &[
            (1.0, 0.0, 0.0, 0.0),
            (2.5, 0.3, -10.0, 42.0),
            (0.4, -1.2, 100.0, -3.5),
            (1.7, 3.0, 7.0, 7.0),
        ] {
            let truth = Affine::similarity(scale, angle, tx, ty);
            let dst: Vec<(f32, f32)> = ARCFACE_112
                .iter()
                .map(|&(x, y)| truth.apply(x, y))
                .collect();
            let got = similarity_transform(&ARCFACE_112, &dst).unwrap();
            for (g, t) in got.m.iter().zip(truth.m) {
                assert!(close(*g, t, 1e-3), "{:?} vs {:?}", got.m, truth.m);
            }
            assert!(close(got.scale(), scale, 1e-4));
            assert!(close(got.angle(), angle, 1e-4));
            // and the inverse maps the points back
            let inv = got.inverse().unwrap();
            for (&(x, y), &(u, v)) in ARCFACE_112.iter().zip(&dst) {
                let (bx, by) = inv.apply(u, v);
                assert!(close(f64::from(bx), f64::from(x), 1e-3));
                assert!(close(f64::from(by), f64::from(y), 1e-3));
            }
        }
    }

    #[test]
    fn least_squares_beats_perturbed_solutions() {
        let truth = Affine::similarity(1.3, 0.2, 5.0, -4.0);
        let noise = [
            (0.5, -0.3),
            (-0.2, 0.4),
            (0.1, 0.1),
            (-0.6, 0.2),
            (0.3, -0.5),
        ];
        let dst: Vec<(f32, f32)> = ARCFACE_112
            .iter()
            .zip(noise)
            .map(|(&(x, y), (nx, ny))| {
                let (u, v) = truth.apply(x, y);
                (u + nx, v + ny)
            })
            .collect();
        let fit = similarity_transform(&ARCFACE_112, &dst).unwrap();
        let err = |t: &Affine| -> f64 {
            ARCFACE_112
                .iter()
                .zip(&dst)
                .map(|(&(x, y), &(u, v))| {
                    let (px, py) = t.apply(x, y);
                    f64::from((px - u).powi(2) + (py - v).powi(2))
                })
                .sum()
        };
        let best = err(&fit);
        for i in 0..6 {
            for delta in [-1e-2, 1e-2] {
                let mut p = fit;
                p.m[i] += delta;
                // keep it a similarity when perturbing the linear part
                match i {
                    0 => p.m[4] += delta,
                    1 => p.m[3] -= delta,
                    3 => p.m[1] -= delta,
                    4 => p.m[0] += delta,
                    _ => {}
                }
                assert!(err(&p) > best, "perturbing m[{i}] lowered the error");
            }
        }
    }

    #[test]
    fn degenerate_landmarks_are_errors() {
        let same = [(3.0, 3.0); 5];
        assert!(similarity_transform(&same, &ARCFACE_112).is_err());
        let mut nan = ARCFACE_112;
        nan[2].0 = f32::NAN;
        assert!(similarity_transform(&nan, &ARCFACE_112).is_err());
        assert!(similarity_transform(&ARCFACE_112[..1], &ARCFACE_112[..1]).is_err());
    }

    #[test]
    fn warp_moves_a_marked_pixel_where_the_transform_says() {
        let mut img = Image::from_rgb(64, 64, vec![0; 64 * 64 * 3]).unwrap();
        img.put_pixel(10, 20, [255, 0, 0]);
        let t = Affine::similarity(1.0, std::f64::consts::FRAC_PI_2, 50.0, 5.0);
        let (u, v) = t.apply(10.0, 20.0);
        let out = warp_affine(&img, &t, 64, 64).unwrap();
        assert_eq!(
            out.pixel(u.round() as u32, v.round() as u32),
            Some([255, 0, 0])
        );
        assert_eq!(out.as_rgb().iter().filter(|&&b| b > 0).count(), 1);
    }

    #[test]
    fn align_face_maps_landmarks_onto_the_template() {
        // Draw 5 dots at known positions of a rotated, scaled face and align it.
        let truth = Affine::similarity(2.0, 0.25, 30.0, 10.0);
        let lm: Vec<(f32, f32)> = ARCFACE_112
            .iter()
            .map(|&(x, y)| truth.apply(x, y))
            .collect();
        let mut img = Image::from_rgb(300, 300, vec![0; 300 * 300 * 3]).unwrap();
        for &(x, y) in &lm {
            for dy in -2..=2 {
                for dx in -2..=2 {
                    img.put_pixel(
                        x.round() as i64 + dx,
                        y.round() as i64 + dy,
                        [255, 255, 255],
                    );
                }
            }
        }
        let lm: [(f32, f32); 5] = [lm[0], lm[1], lm[2], lm[3], lm[4]];
        let out = align_face(&img, &lm).unwrap();
        assert_eq!((out.width(), out.height()), (112, 112));
        for &(x, y) in &ARCFACE_112 {
            let p = out.pixel(x.round() as u32, y.round() as u32).unwrap();
            assert!(p[0] > 200, "template point ({x}, {y}) is not white: {p:?}");
        }
    }
}
