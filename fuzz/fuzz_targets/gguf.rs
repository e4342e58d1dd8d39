//! The GGUF reader on arbitrary bytes: header, metadata, tensor infos, tensor data slices.
//! Every input must give `Ok` or `Err`; a panic, an abort or a huge allocation is a finding.
#![no_main]

use edgeai_llm::gguf::GgufFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = GgufFile::from_bytes(data.to_vec()) else {
        return;
    };
    // Walk everything a loader would touch.
    let _ = f.get_str("general.architecture");
    let _ = f.require_u64("llama.context_length");
    let _ = f.opt_f64("llama.rope.freq_base");
    let _ = f.string_array("tokenizer.ggml.tokens");
    for (k, v) in f.metadata() {
        let _ = (
            k.len(),
            v.as_u64(),
            v.as_i64(),
            v.as_f64(),
            v.as_str(),
            v.as_array(),
        );
    }
    for t in f.tensors() {
        let (rows, cols) = t.matrix_shape();
        let bytes = f.tensor_data(t);
        assert_eq!(bytes.len(), t.size, "tensor `{}` data slice", t.name);
        let _ = (rows, cols, t.elements());
        assert!(f.tensor(&t.name).is_some());
    }
});
