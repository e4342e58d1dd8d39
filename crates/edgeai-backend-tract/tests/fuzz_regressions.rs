//! Regression tests for malformed ONNX files found by fuzzing (`fuzz/`, target `onnx_tract`).

use edgeai_backend_tract::TractBackend;
use edgeai_core::{Backend, Error, LoadOptions, ModelSource};

/// `add_batch.onnx` (Y = X + 1) with one bit flipped so that the graph output is named `a`,
/// which no node produces: tract-onnx 0.23.9 panicked (`no entry found for key`, in
/// `parse_graph`) instead of returning an error.
const FUZZ_CRASH_DANGLING_OUTPUT: &str = concat!(
    "08083a620a100a01580a036f6e65120159220341646412096164645f62617463682a0f0801100122040000803f42036f",
    "6e655a180a015812130a110801120d0a07120562617467680a02080362180a016112130a110801120d0a071205626174",
    "63680a02080342040a00100d",
);

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn graph_output_without_producer_is_an_error_not_a_panic() {
    let bytes = unhex(FUZZ_CRASH_DANGLING_OUTPUT);
    let r = TractBackend::new().load(ModelSource::Bytes(bytes), &LoadOptions::new());
    match r {
        Err(e @ Error::InvalidModel { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("<108 bytes>") && msg.contains("panicked"),
                "{msg}"
            );
        }
        Err(e) => panic!("unexpected error kind: {e}"),
        Ok(_) => panic!("a graph whose output no node produces loaded"),
    }
}
