//! ONNX loading through the tract backend on arbitrary bytes; a model that loads and has
//! small fixed-size inputs is also run once on zeros.
#![no_main]

use edgeai_backend_tract::TractBackend;
use edgeai_core::{Backend, Dim, LoadOptions, ModelSource, Tensor};
use libfuzzer_sys::fuzz_target;

/// Inputs larger than this many elements are not run (keeps each execution short).
const MAX_RUN_ELEMENTS: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Ok(model) =
        TractBackend::new().load(ModelSource::Bytes(data.to_vec()), &LoadOptions::new())
    else {
        return;
    };
    let mut inputs = Vec::new();
    for spec in model.inputs() {
        let Some(shape) = spec.shape.as_ref() else {
            return;
        };
        let mut dims = Vec::new();
        for d in shape {
            match d {
                Dim::Fixed(n) => dims.push(*n),
                Dim::Symbolic(_) => dims.push(1),
            }
        }
        let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if !n.is_some_and(|n| n <= MAX_RUN_ELEMENTS) {
            return;
        }
        let Ok(t) = Tensor::zeros(spec.dtype, dims) else {
            return;
        };
        inputs.push(t);
    }
    let _ = model.run(inputs);
});
