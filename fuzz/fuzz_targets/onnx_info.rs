//! `edgeai_onnx` (the workspace's one ONNX codec: decode + the summary `edgeai inspect` prints)
//! on arbitrary bytes, then a re-encode of whatever decoded.
#![no_main]

use edgeai_onnx::OnnxInfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = edgeai_onnx::decode(data, "fuzz") {
        let info = OnnxInfo::of(&model);
        let _ = format!("{info:?}");
        // Bytes, not `==`: a NaN attribute is never equal to itself.
        let bytes = model.to_bytes();
        let again = edgeai_onnx::decode(&bytes, "re-encoded").expect("a re-encoded model decodes");
        assert_eq!(
            again.to_bytes(),
            bytes,
            "decode -> encode is not a fixed point"
        );
    }
});
