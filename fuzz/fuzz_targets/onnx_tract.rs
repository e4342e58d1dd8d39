//! ONNX loading through the tract backend on arbitrary bytes; a model that loads and has
//! small fixed-size inputs is also run once on zeros.
#![no_main]

use edgeai_backend_tract::TractBackend;
use edgeai_core::{Backend, Dim, LoadOptions, ModelSource, Tensor};
use libfuzzer_sys::fuzz_target;

/// libfuzzer-sys's panic hook aborts even on a panic that is caught. The backend catches
/// panics inside the engine and returns an error (a malformed file must not panic the
/// caller), so that hook is replaced by the default one: a caught panic is printed and
/// fuzzing goes on; a panic that escapes `load`/`run` still aborts (libfuzzer-sys catches it
/// at the target's boundary) and is reported as a crash.
fn keep_going_on_caught_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = std::panic::take_hook();
        std::panic::set_hook(Box::new(|info| eprintln!("caught engine panic: {info}")));
    });
}

/// Inputs larger than this many elements are not run (keeps each execution short).
const MAX_RUN_ELEMENTS: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    keep_going_on_caught_panics();
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
