//! Images: decoding (JPEG/PNG) with a pixel limit, raw camera buffers, resizing,
//! letterboxing and conversion to NCHW tensors with per-model normalisation.

use std::io::Cursor;
use std::path::Path;

use edgeai_core::Tensor;
use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::{Error, Result};

/// Default pixel limit: 64 megapixels (a 8000x8000 photo), about 192 MiB decoded as RGB.
pub const DEFAULT_MAX_PIXELS: u64 = 64 * 1024 * 1024;

/// Limits applied while decoding untrusted images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Images with more than this many pixels (`width * height`) are refused before their
    /// pixels are decoded: a small file that claims a huge size (a decompression bomb) costs
    /// nothing.
    pub max_pixels: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

/// Layout of a raw pixel buffer, e.g. a camera frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// 3 bytes per pixel, red first.
    Rgb8,
    /// 3 bytes per pixel, blue first (OpenCV's order).
    Bgr8,
    /// 4 bytes per pixel, red first; alpha is dropped.
    Rgba8,
    /// 4 bytes per pixel, blue first; alpha is dropped.
    Bgra8,
    /// 1 byte per pixel, grey.
    Gray8,
}

impl PixelFormat {
    /// Bytes per pixel.
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::Rgb8 | PixelFormat::Bgr8 => 3,
            PixelFormat::Rgba8 | PixelFormat::Bgra8 => 4,
            PixelFormat::Gray8 => 1,
        }
    }
}

/// Channel order a model expects in its input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red (models trained with OpenCV).
    Bgr,
}

/// Per-channel normalisation `(value - mean) / std`, applied to 0..255 values, in the
/// model's channel order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    /// Subtracted first.
    pub mean: [f32; 3],
    /// Divided by after.
    pub std: [f32; 3],
}

impl Normalization {
    /// Raw 0..255 values (YuNet, SFace).
    pub const NONE: Normalization = Normalization {
        mean: [0.0; 3],
        std: [1.0; 3],
    };
    /// 0..1 (`value / 255`).
    pub const UNIT: Normalization = Normalization {
        mean: [0.0; 3],
        std: [255.0; 3],
    };
    /// -1..1 (`(value - 127.5) / 127.5`, BlazeFace, ArcFace-style models).
    pub const SYMMETRIC: Normalization = Normalization {
        mean: [127.5; 3],
        std: [127.5; 3],
    };
}

/// An 8-bit RGB image, row-major, 3 bytes per pixel (HWC).
#[derive(Clone, PartialEq, Eq)]
pub struct Image {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Image({}x{} RGB)", self.width, self.height)
    }
}

fn pixel_count(width: u32, height: u32) -> u64 {
    u64::from(width) * u64::from(height)
}

/// Whether a JPEG ends: an end-of-image marker (`FF D9`) follows the last start-of-scan
/// (`FF DA`). Entropy-coded data never holds `FF D9` (a data `FF` is stuffed as `FF 00`), and
/// an EXIF thumbnail's own markers come before the main image's scans.
fn jpeg_has_end(bytes: &[u8]) -> bool {
    let last = |m: u8| bytes.windows(2).rposition(|w| w == [0xFF, m]);
    match (last(0xD9), last(0xDA)) {
        (Some(eoi), Some(sos)) => eoi > sos,
        _ => false,
    }
}

fn check_limits(origin: &str, width: u32, height: u32, limits: &ImageLimits) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(Error::InvalidImage(format!(
            "{origin} has zero size ({width}x{height})"
        )));
    }
    let pixels = pixel_count(width, height);
    if pixels > limits.max_pixels {
        return Err(Error::ImageTooLarge {
            origin: origin.to_string(),
            width: width.into(),
            height: height.into(),
            pixels,
            limit: limits.max_pixels,
        });
    }
    Ok(())
}

impl Image {
    /// Wraps an RGB8 buffer (`width * height * 3` bytes).
    pub fn from_rgb(width: u32, height: u32, data: Vec<u8>) -> Result<Self> {
        Self::from_raw(width, height, PixelFormat::Rgb8, &data).map(|mut img| {
            img.data = data;
            img
        })
    }

    /// Converts a raw pixel buffer (a camera frame) of the given layout. Errors on a zero
    /// size or a buffer whose length is not `width * height * bytes_per_pixel`.
    pub fn from_raw(width: u32, height: u32, format: PixelFormat, data: &[u8]) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(Error::InvalidImage(format!("zero size ({width}x{height})")));
        }
        let n = usize::try_from(pixel_count(width, height))
            .ok()
            .and_then(|p| p.checked_mul(format.bytes_per_pixel()))
            .ok_or_else(|| Error::InvalidImage(format!("{width}x{height} is too large")))?;
        if data.len() != n {
            return Err(Error::InvalidImage(format!(
                "{width}x{height} {format:?} needs {n} bytes, the buffer has {}",
                data.len()
            )));
        }
        let bpp = format.bytes_per_pixel();
        let out = match format {
            PixelFormat::Rgb8 => data.to_vec(),
            PixelFormat::Gray8 => data.iter().flat_map(|&g| [g, g, g]).collect(),
            PixelFormat::Rgba8 => data
                .chunks_exact(bpp)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect(),
            PixelFormat::Bgr8 | PixelFormat::Bgra8 => data
                .chunks_exact(bpp)
                .flat_map(|p| [p[2], p[1], p[0]])
                .collect(),
        };
        Ok(Image {
            width,
            height,
            data: out,
        })
    }

    /// Decodes a JPEG or PNG from memory, refusing images above `limits` before decoding
    /// their pixels. EXIF orientation is applied.
    pub fn decode(bytes: &[u8], limits: &ImageLimits) -> Result<Self> {
        Self::decode_named(bytes, &format!("<{} bytes>", bytes.len()), limits)
    }

    /// Reads and decodes a JPEG or PNG file (see [`Image::decode`]).
    pub fn open(path: impl AsRef<Path>, limits: &ImageLimits) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::decode_named(&bytes, &path.display().to_string(), limits)
    }

    fn decode_named(bytes: &[u8], origin: &str, limits: &ImageLimits) -> Result<Self> {
        let bad = |reason: String| Error::Decode {
            origin: origin.to_string(),
            reason,
        };
        if bytes.is_empty() {
            return Err(bad("the file is empty".into()));
        }
        let reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| bad(e.to_string()))?;
        match reader.format() {
            None => return Err(bad("not a JPEG or PNG image".into())),
            // The JPEG decoder fills a cut-off image with grey instead of failing; a half
            // photo must not reach detection and recognition as if it were whole.
            Some(image::ImageFormat::Jpeg) if !jpeg_has_end(bytes) => {
                return Err(bad(
                    "truncated JPEG: no end-of-image marker after the last scan".into(),
                ))
            }
            Some(_) => {}
        }
        // Header only: the size is known before any pixel is decoded.
        let (w, h) = reader.into_dimensions().map_err(|e| bad(e.to_string()))?;
        check_limits(origin, w, h, limits)?;
        let mut reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| bad(e.to_string()))?;
        let mut l = image::Limits::default();
        l.max_image_width = Some(w);
        l.max_image_height = Some(h);
        // Decoded RGBA16 at most, plus the decoder's own buffers.
        l.max_alloc = Some(pixel_count(w, h).saturating_mul(8).saturating_add(64 << 20));
        reader.limits(l);
        let mut decoder = reader.into_decoder().map_err(|e| bad(e.to_string()))?;
        let orientation = decoder.orientation().ok();
        let mut img = DynamicImage::from_decoder(decoder).map_err(|e| bad(e.to_string()))?;
        if let Some(o) = orientation {
            img.apply_orientation(o);
        }
        let rgb = img.into_rgb8();
        let (width, height) = rgb.dimensions();
        check_limits(origin, width, height, limits)?;
        Ok(Image {
            width,
            height,
            data: rgb.into_raw(),
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The RGB8 pixels, row-major.
    pub fn as_rgb(&self) -> &[u8] {
        &self.data
    }

    /// The RGB8 pixels, row-major, mutably.
    pub fn as_rgb_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// The pixel at `(x, y)`; `None` outside the image.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        Some([self.data[i], self.data[i + 1], self.data[i + 2]])
    }

    /// Sets the pixel at `(x, y)`; does nothing outside the image.
    pub fn put_pixel(&mut self, x: i64, y: i64, rgb: [u8; 3]) {
        if x < 0 || y < 0 || x >= i64::from(self.width) || y >= i64::from(self.height) {
            return;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        self.data[i..i + 3].copy_from_slice(&rgb);
    }

    /// Converts into the `image` crate's RGB buffer (to save or to process further).
    pub fn into_rgb_image(self) -> image::RgbImage {
        // The length always matches: every constructor checks it.
        image::RgbImage::from_raw(self.width, self.height, self.data)
            .unwrap_or_else(|| image::RgbImage::new(0, 0))
    }

    /// Saves as PNG (or any format the extension names that the `image` crate was built
    /// with).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.clone()
            .into_rgb_image()
            .save(path)
            .map_err(|e| match e {
                image::ImageError::IoError(io) => Error::io(path, io),
                other => Error::InvalidImage(format!("cannot save {}: {other}", path.display())),
            })
    }

    /// Bilinear resize (pixel centres aligned as in OpenCV's `INTER_LINEAR`). When shrinking
    /// by more than 2x, the image is first box-averaged to avoid aliasing.
    pub fn resize(&self, width: u32, height: u32) -> Result<Image> {
        if width == 0 || height == 0 {
            return Err(Error::InvalidImage(format!(
                "cannot resize to zero size ({width}x{height})"
            )));
        }
        if width == self.width && height == self.height {
            return Ok(self.clone());
        }
        let fx = self.width / width;
        let fy = self.height / height;
        if fx >= 2 || fy >= 2 {
            let shrunk = self.box_shrink(fx.max(1), fy.max(1));
            return shrunk.resize(width, height);
        }
        let sx = self.width as f32 / width as f32;
        let sy = self.height as f32 / height as f32;
        let mut out = vec![0u8; width as usize * height as usize * 3];
        let xs: Vec<(usize, usize, f32)> = (0..width)
            .map(|x| axis_sample((x as f32 + 0.5) * sx - 0.5, self.width))
            .collect();
        let w = self.width as usize;
        for y in 0..height {
            let (y0, y1, wy) = axis_sample((y as f32 + 0.5) * sy - 0.5, self.height);
            let row = &mut out[y as usize * width as usize * 3..][..width as usize * 3];
            for (x, &(x0, x1, wx)) in xs.iter().enumerate() {
                for c in 0..3 {
                    let p = |yy: usize, xx: usize| f32::from(self.data[(yy * w + xx) * 3 + c]);
                    let top = p(y0, x0) * (1.0 - wx) + p(y0, x1) * wx;
                    let bot = p(y1, x0) * (1.0 - wx) + p(y1, x1) * wx;
                    row[x * 3 + c] = (top * (1.0 - wy) + bot * wy).round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        Ok(Image {
            width,
            height,
            data: out,
        })
    }

    /// Averages `fx x fy` blocks (the last partial blocks included).
    fn box_shrink(&self, fx: u32, fy: u32) -> Image {
        let width = self.width.div_ceil(fx);
        let height = self.height.div_ceil(fy);
        let mut out = Vec::with_capacity(width as usize * height as usize * 3);
        let w = self.width as usize;
        for by in 0..height {
            let ys = (by * fy) as usize..((by + 1) * fy).min(self.height) as usize;
            for bx in 0..width {
                let xs = (bx * fx) as usize..((bx + 1) * fx).min(self.width) as usize;
                let mut acc = [0u32; 3];
                let mut n = 0u32;
                for yy in ys.clone() {
                    for xx in xs.clone() {
                        let i = (yy * w + xx) * 3;
                        for (a, &v) in acc.iter_mut().zip(&self.data[i..i + 3]) {
                            *a += u32::from(v);
                        }
                        n += 1;
                    }
                }
                out.extend(acc.iter().map(|&a| ((a + n / 2) / n) as u8));
            }
        }
        Image {
            width,
            height,
            data: out,
        }
    }

    /// Scales the image by `scale` (aspect kept) and pads it on the right and bottom with
    /// black to `width x height`, as OpenCV's detectors do. Returns the padded image and the
    /// mapping back to this image's coordinates.
    pub fn letterbox(&self, width: u32, height: u32) -> Result<(Image, Letterbox)> {
        let scale = (width as f32 / self.width as f32).min(height as f32 / self.height as f32);
        let sw = ((self.width as f32 * scale).round() as u32).clamp(1, width);
        let sh = ((self.height as f32 * scale).round() as u32).clamp(1, height);
        let scaled = self.resize(sw, sh)?;
        let padded = scaled.pad_to(width, height);
        Ok((
            padded,
            Letterbox {
                scale_x: sw as f32 / self.width as f32,
                scale_y: sh as f32 / self.height as f32,
            },
        ))
    }

    /// Pads with black on the right and bottom to at least `width x height` (never crops).
    pub fn pad_to(&self, width: u32, height: u32) -> Image {
        let width = width.max(self.width);
        let height = height.max(self.height);
        if width == self.width && height == self.height {
            return self.clone();
        }
        let mut data = vec![0u8; width as usize * height as usize * 3];
        let src_row = self.width as usize * 3;
        for y in 0..self.height as usize {
            data[y * width as usize * 3..][..src_row]
                .copy_from_slice(&self.data[y * src_row..][..src_row]);
        }
        Image {
            width,
            height,
            data,
        }
    }

    /// The image as a `[1, 3, height, width]` f32 tensor in `order`, normalised.
    pub fn to_tensor(&self, order: ChannelOrder, norm: &Normalization) -> Result<Tensor> {
        images_to_tensor(std::slice::from_ref(self), order, norm)
    }

    /// The image as a `[1, height, width, 3]` (NHWC, TensorFlow Lite layout) f32 tensor in
    /// `order`, normalised.
    pub fn to_tensor_nhwc(&self, order: ChannelOrder, norm: &Normalization) -> Result<Tensor> {
        let src_channel = match order {
            ChannelOrder::Rgb => [0usize, 1, 2],
            ChannelOrder::Bgr => [2usize, 1, 0],
        };
        let inv_std = norm.std.map(|s| 1.0 / s);
        let mut out = Vec::with_capacity(self.data.len());
        for px in self.data.chunks_exact(3) {
            for ((&sc, &mean), &inv) in src_channel.iter().zip(&norm.mean).zip(&inv_std) {
                out.push((f32::from(px[sc]) - mean) * inv);
            }
        }
        Ok(Tensor::from_vec(
            vec![1, self.height as usize, self.width as usize, 3],
            out,
        )?)
    }
}

fn axis_sample(pos: f32, len: u32) -> (usize, usize, f32) {
    let max = (len - 1) as f32;
    let p = pos.clamp(0.0, max);
    let i0 = p.floor();
    let i1 = (i0 + 1.0).min(max);
    (i0 as usize, i1 as usize, p - i0)
}

/// How a letterboxed image maps back to the original: original = letterboxed / scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Horizontal scale applied (letterboxed x = original x * scale_x).
    pub scale_x: f32,
    /// Vertical scale applied.
    pub scale_y: f32,
}

impl Letterbox {
    /// The identity mapping.
    pub const IDENTITY: Letterbox = Letterbox {
        scale_x: 1.0,
        scale_y: 1.0,
    };

    /// Maps a point of the letterboxed image back to the original image.
    pub fn to_original(&self, x: f32, y: f32) -> (f32, f32) {
        (x / self.scale_x, y / self.scale_y)
    }
}

/// Stacks same-size images into one `[n, 3, height, width]` f32 tensor in `order`,
/// normalised with `norm`.
pub fn images_to_tensor(
    images: &[Image],
    order: ChannelOrder,
    norm: &Normalization,
) -> Result<Tensor> {
    let first = images
        .first()
        .ok_or_else(|| Error::InvalidArgument("no images to convert".into()))?;
    let (w, h) = (first.width as usize, first.height as usize);
    if let Some(other) = images
        .iter()
        .find(|i| i.width != first.width || i.height != first.height)
    {
        return Err(Error::InvalidArgument(format!(
            "images of different sizes in one batch: {first:?} and {other:?}"
        )));
    }
    let plane = w * h;
    let mut out = vec![0f32; images.len() * 3 * plane];
    let src_channel = match order {
        ChannelOrder::Rgb => [0usize, 1, 2],
        ChannelOrder::Bgr => [2usize, 1, 0],
    };
    for (img, dst) in images.iter().zip(out.chunks_exact_mut(3 * plane)) {
        for (c, &sc) in src_channel.iter().enumerate() {
            let (mean, inv_std) = (norm.mean[c], 1.0 / norm.std[c]);
            let d = &mut dst[c * plane..][..plane];
            for (o, px) in d.iter_mut().zip(img.data.chunks_exact(3)) {
                *o = (f32::from(px[sc]) - mean) * inv_std;
            }
        }
    }
    Ok(Tensor::from_vec(vec![images.len(), 3, h, w], out)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> Image {
        let mut d = Vec::new();
        for y in 0..h {
            for x in 0..w {
                d.extend([(x * 10) as u8, (y * 10) as u8, 7]);
            }
        }
        Image::from_rgb(w, h, d).unwrap()
    }

    #[test]
    fn raw_formats_convert_to_rgb() {
        let bgr = Image::from_raw(1, 1, PixelFormat::Bgr8, &[1, 2, 3]).unwrap();
        assert_eq!(bgr.pixel(0, 0), Some([3, 2, 1]));
        let bgra = Image::from_raw(1, 1, PixelFormat::Bgra8, &[1, 2, 3, 4]).unwrap();
        assert_eq!(bgra.pixel(0, 0), Some([3, 2, 1]));
        let g = Image::from_raw(1, 1, PixelFormat::Gray8, &[9]).unwrap();
        assert_eq!(g.pixel(0, 0), Some([9, 9, 9]));
        assert!(Image::from_raw(2, 1, PixelFormat::Rgb8, &[1, 2, 3]).is_err());
        assert!(matches!(
            Image::from_raw(0, 5, PixelFormat::Rgb8, &[]),
            Err(Error::InvalidImage(_))
        ));
    }

    #[test]
    fn nhwc_tensor_keeps_pixels_together() {
        let img = gradient(3, 2);
        let t = img
            .to_tensor_nhwc(ChannelOrder::Bgr, &Normalization::NONE)
            .unwrap();
        assert_eq!(t.shape(), &[1, 2, 3, 3]);
        let v = t.view::<f32>().unwrap();
        assert_eq!(v[[0, 1, 2, 0]], 7.0); // blue first
        assert_eq!(v[[0, 1, 2, 1]], 10.0); // green = y*10
        assert_eq!(v[[0, 1, 2, 2]], 20.0); // red = x*10
        let t = img
            .to_tensor_nhwc(ChannelOrder::Rgb, &Normalization::SYMMETRIC)
            .unwrap();
        let v = t.view::<f32>().unwrap();
        assert!((v[[0, 0, 0, 2]] - (7.0 - 127.5) / 127.5).abs() < 1e-6);
    }

    #[test]
    fn tensor_is_nchw_in_the_requested_order() {
        let img = gradient(3, 2);
        let t = img
            .to_tensor(ChannelOrder::Bgr, &Normalization::NONE)
            .unwrap();
        assert_eq!(t.shape(), &[1, 3, 2, 3]);
        let v = t.view::<f32>().unwrap();
        assert_eq!(v[[0, 0, 1, 2]], 7.0); // blue plane first
        assert_eq!(v[[0, 2, 1, 2]], 20.0); // red = x*10
        assert_eq!(v[[0, 1, 1, 2]], 10.0); // green = y*10
        let t = img
            .to_tensor(ChannelOrder::Rgb, &Normalization::SYMMETRIC)
            .unwrap();
        let v = t.view::<f32>().unwrap();
        assert!((v[[0, 0, 0, 0]] + 1.0).abs() < 1e-6);
    }

    #[test]
    fn resize_keeps_a_linear_gradient_linear() {
        let img = gradient(20, 10);
        let r = img.resize(10, 5).unwrap();
        assert_eq!((r.width(), r.height()), (10, 5));
        // box-shrunk by 2: each output pixel is the mean of two columns: x*20 + 5
        assert_eq!(r.pixel(3, 0).unwrap()[0], 65);
        let up = img.resize(40, 20).unwrap();
        assert_eq!(up.pixel(0, 0).unwrap()[0], 0);
        assert_eq!(up.pixel(39, 19).unwrap()[0], 190);
        assert!(img.resize(0, 3).is_err());
    }

    #[test]
    fn letterbox_pads_right_and_bottom_and_maps_back() {
        let img = gradient(20, 10);
        let (lb, m) = img.letterbox(40, 40).unwrap();
        assert_eq!((lb.width(), lb.height()), (40, 40));
        assert_eq!(lb.pixel(10, 30), Some([0, 0, 0]));
        assert_eq!(m.to_original(40.0, 20.0), (20.0, 10.0));
    }

    #[test]
    fn decode_refuses_bad_input_clearly() {
        let l = ImageLimits::default();
        let e = Image::decode(&[], &l).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = Image::decode(b"hello, not an image", &l).unwrap_err();
        assert!(e.to_string().contains("not a JPEG or PNG"), "{e}");
        let mut png = Vec::new();
        image::RgbImage::from_pixel(64, 48, image::Rgb([1, 2, 3]))
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let ok = Image::decode(&png, &l).unwrap();
        assert_eq!((ok.width(), ok.height()), (64, 48));
        assert_eq!(ok.pixel(5, 5), Some([1, 2, 3]));
        let e = Image::decode(&png[..png.len() / 2], &l).unwrap_err();
        assert!(matches!(e, Error::Decode { .. }), "{e}");
        let tiny = ImageLimits { max_pixels: 1000 };
        let e = Image::decode(&png, &tiny).unwrap_err();
        assert!(
            matches!(e, Error::ImageTooLarge { pixels: 3072, .. }),
            "{e}"
        );
    }

    #[test]
    fn decompression_bomb_is_refused_before_decoding() {
        // A PNG header claiming 100000 x 100000 pixels, with no pixel data at all.
        let mut png = Vec::new();
        image::GrayImage::new(1, 1)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        // IHDR width/height sit at bytes 16..24; the CRC after them no longer matches, so
        // patch it too.
        png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        let e = Image::decode(&png, &ImageLimits::default()).unwrap_err();
        assert!(matches!(e, Error::ImageTooLarge { .. }), "{e}");
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
