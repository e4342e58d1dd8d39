//! Image decoding (JPEG/PNG, with the pixel limit) and YuNet face detection on arbitrary
//! bytes. The detector is YuNet through tract when `models/face/yunet.onnx` is present
//! (`EDGEAI_MODELS` or a `models/` folder above the working directory); otherwise only the
//! decoder is exercised.
#![no_main]

use std::sync::OnceLock;

use edgeai_backend_tract::TractBackend;
use edgeai_core::{Backend, LoadOptions};
use edgeai_vision::{FaceDetector, Image, ImageLimits, YuNet, YuNetConfig};
use libfuzzer_sys::fuzz_target;

fn detector() -> Option<&'static YuNet> {
    static DET: OnceLock<Option<YuNet>> = OnceLock::new();
    DET.get_or_init(|| {
        let path = edgeai_core::paths::model_path(std::env::var_os(edgeai_core::paths::MODELS_ENV), "face/yunet.onnx")?;
        let model = TractBackend::new()
            .load(path.into(), &LoadOptions::new())
            .ok()?;
        // A small working size keeps each execution fast; decoding still sees the full image.
        let config = YuNetConfig {
            max_side: 160,
            score_threshold: 0.5,
            ..YuNetConfig::default()
        };
        YuNet::new(model, config).ok()
    })
    .as_ref()
}

fuzz_target!(|data: &[u8]| {
    // 4 Mpx: large enough for real photos, small enough to keep executions fast.
    let limits = ImageLimits {
        max_pixels: 4 << 20,
    };
    let Ok(img) = Image::decode(data, &limits) else {
        return;
    };
    assert!(u64::from(img.width()) * u64::from(img.height()) <= limits.max_pixels);
    assert_eq!(
        img.as_rgb().len(),
        img.width() as usize * img.height() as usize * 3
    );
    if let Some(det) = detector() {
        if let Ok(faces) = det.detect(&img) {
            for f in faces {
                assert!(f.score.is_finite(), "{f:?}");
            }
        }
    }
});
