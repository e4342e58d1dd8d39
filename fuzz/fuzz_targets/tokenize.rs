//! SmolLM2's real tokenizer (built from its GGUF metadata) on arbitrary text: encoding then
//! decoding gives the text back byte for byte, less the bytes the vocabulary has no token for
//! (dropped, as llama.cpp does), and decoding arbitrary ids never panics.
//! Needs `models/llm/SmolLM2-135M-Instruct.Q4_1.gguf` (scripts/fetch-models); without it
//! every input is a no-op.
#![no_main]

use std::sync::OnceLock;

use edgeai_llm::gguf::GgufFile;
use edgeai_llm::Tokenizer;
use libfuzzer_sys::fuzz_target;

fn tokenizer() -> Option<&'static Tokenizer> {
    static TOK: OnceLock<Option<Tokenizer>> = OnceLock::new();
    TOK.get_or_init(|| {
        let path = edgeai_core::paths::model_path(std::env::var_os(edgeai_core::paths::MODELS_ENV), "llm/SmolLM2-135M-Instruct.Q4_1.gguf")?;
        let gguf = GgufFile::open(path).ok()?;
        Tokenizer::from_gguf(&gguf).ok()
    })
    .as_ref()
}

fuzz_target!(|data: &[u8]| {
    let Some(tok) = tokenizer() else { return };
    if let Ok(text) = std::str::from_utf8(data) {
        // What encoding adds to any text (a BOS token when the model asks for one).
        let prefix = tok.encode("").expect("encoding the empty text succeeds");
        let ids = tok.encode(text).expect("encoding valid UTF-8 succeeds");
        assert!(ids.starts_with(&prefix));
        let ids = &ids[prefix.len()..];
        let back = tok.decode_bytes(ids).expect("ids from encode decode");
        let expected: Vec<u8> = text.bytes().filter(|&b| tok.encodes_byte(b)).collect();
        assert_eq!(back, expected, "round trip of {text:?} via {ids:?}");
    }
    // Arbitrary ids (2 bytes each), in and out of range.
    let ids: Vec<u32> = data
        .chunks(2)
        .map(|c| c.iter().fold(0u32, |a, &b| a << 8 | b as u32))
        .collect();
    match tok.decode(&ids) {
        Ok(_) => assert!(ids.iter().all(|&i| (i as usize) < tok.vocab_size())),
        Err(e) => assert!(e.to_string().contains("outside the vocabulary"), "{e}"),
    }
});
