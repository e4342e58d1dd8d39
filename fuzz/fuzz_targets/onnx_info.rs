//! `onnx_info` (the CLI's protobuf wire-format summary of an ONNX file) on arbitrary bytes.
#![no_main]

use edgeai_core::onnx_info::OnnxInfo;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = OnnxInfo::parse(data) {
        let _ = format!("{info:?}");
    }
});
