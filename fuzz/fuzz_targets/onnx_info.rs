//! `edgeai_onnx` (the workspace's one ONNX codec: decode + the summary `edgeai inspect` prints)
//! on arbitrary bytes, then a re-encode of whatever decoded.
#![no_main]

use edgeai_onnx::OnnxInfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = edgeai_onnx::decode(data, "fuzz") {
        let info = OnnxInfo::of(&model);
        let _ = format!("{info:?}");
        let again = edgeai_onnx::decode(&model.to_bytes(), "re-encoded").expect("re-encode decodes");
        assert_eq!(again, model);
    }
});
