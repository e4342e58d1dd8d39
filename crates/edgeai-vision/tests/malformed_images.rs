//! Regression tests for malformed images found while hardening the decoder.

use edgeai_vision::{Error, Image, ImageLimits};

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8 * 5, y as u8 * 3, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// The JPEG decoder used to return a whole image, grey where data was missing, for a file
/// cut anywhere in its last scan (found at 700 of 778 bytes).
#[test]
fn truncated_jpeg_is_an_error() {
    let bytes = jpeg(48, 40);
    let limits = ImageLimits::default();
    let whole = Image::decode(&bytes, &limits).unwrap();
    assert_eq!((whole.width(), whole.height()), (48, 40));
    for cut in (1..bytes.len())
        .step_by(7)
        .chain([bytes.len() - 2, bytes.len() - 1])
    {
        match Image::decode(&bytes[..cut], &limits) {
            Err(Error::Decode { reason, .. }) => assert!(!reason.is_empty()),
            Err(e) => panic!("cut at {cut}: unexpected error {e}"),
            Ok(_) => panic!("JPEG cut at {cut} of {} bytes decoded", bytes.len()),
        }
    }
    let e = Image::decode(&bytes[..bytes.len() * 9 / 10], &limits).unwrap_err();
    assert!(e.to_string().contains("truncated JPEG"), "{e}");
}

/// Bytes after the end-of-image marker (some cameras append data) are still accepted.
#[test]
fn jpeg_with_trailing_bytes_decodes() {
    let mut bytes = jpeg(16, 8);
    bytes.extend_from_slice(b"trailing camera data \x00\x01\x02");
    let img = Image::decode(&bytes, &ImageLimits::default()).unwrap();
    assert_eq!((img.width(), img.height()), (16, 8));
}
