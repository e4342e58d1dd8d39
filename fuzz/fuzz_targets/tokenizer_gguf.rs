//! The tokenizer built from GGUF metadata, with a fuzzed vocabulary, merges, token types and
//! special-token ids, then encode/decode of arbitrary bytes: byte-level BPE (`gpt2`) or, when
//! bit 1 of the text's first byte is set, SentencePiece (`llama`, scores from the merges
//! section's bytes, `add_space_prefix` from bit 2).
//!
//! Input layout: sections separated by 0xFF bytes: vocabulary (tokens split on `\n`), merges
//! (split on `\n`), token types (one byte each), then the text to encode; the bytes of the
//! text also serve as token ids to decode. SentencePiece without the space prefix must
//! round-trip every text without `▁` whose bytes all have tokens.
#![no_main]

use edgeai_core::quant::GgmlType;
use edgeai_llm::gguf::{writer::GgufWriter, GgufFile, Value};
use edgeai_llm::Tokenizer;
use libfuzzer_sys::fuzz_target;

fn strings(b: &[u8]) -> Vec<Value> {
    b.split(|&c| c == b'\n')
        .take(4096)
        .map(|s| Value::String(String::from_utf8_lossy(s).into_owned()))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |&c| c == 0xFF);
    let vocab = parts.next().unwrap_or_default();
    let merges = parts.next().unwrap_or_default();
    let types = parts.next().unwrap_or_default();
    let text = parts.next().unwrap_or_default();
    let n_tokens = vocab.split(|&c| c == b'\n').take(4096).count();
    let spm = text.first().is_some_and(|b| b & 2 == 2);
    let space_prefix = text.first().is_some_and(|b| b & 4 == 4);
    let mut w = GgufWriter::new()
        .kv(
            "tokenizer.ggml.model",
            Value::String(if spm { "llama" } else { "gpt2" }.into()),
        )
        .kv(
            "tokenizer.ggml.pre",
            Value::String(
                if text.first().is_some_and(|b| b & 1 == 1) {
                    "smollm"
                } else {
                    "gpt2"
                }
                .into(),
            ),
        )
        .kv("tokenizer.ggml.tokens", Value::Array(strings(vocab)))
        .kv("tokenizer.ggml.merges", Value::Array(strings(merges)))
        .kv(
            "tokenizer.ggml.token_type",
            Value::Array(
                types
                    .iter()
                    .take(n_tokens)
                    .map(|&t| Value::I32((t % 7) as i32))
                    .collect(),
            ),
        )
        .kv(
            "tokenizer.ggml.scores",
            Value::Array(
                (0..n_tokens)
                    .map(|i| {
                        let b = merges.get(i % merges.len().max(1)).copied().unwrap_or(0);
                        Value::F32(b as f32 - 128.0)
                    })
                    .collect(),
            ),
        )
        .kv("tokenizer.ggml.add_space_prefix", Value::Bool(space_prefix))
        .kv(
            "tokenizer.ggml.add_bos_token",
            Value::Bool(text.len() % 2 == 0),
        );
    if let Some(&b) = text.get(1) {
        w = w.kv("tokenizer.ggml.bos_token_id", Value::U32(b as u32));
    }
    if let Some(&b) = text.get(2) {
        w = w.kv("tokenizer.ggml.eos_token_id", Value::U32(b as u32));
    }
    let w = w.tensor("t", &[1], GgmlType::F32, vec![0; 4]);
    let f = GgufFile::from_bytes(w.build()).expect("the writer's output parses");
    let Ok(tok) = Tokenizer::from_gguf(&f) else {
        return;
    };
    let s = String::from_utf8_lossy(text);
    if let Ok(ids) = tok.encode(&s) {
        for &id in &ids {
            assert!(
                (id as usize) < tok.vocab_size() || tok.bos_id() == Some(id),
                "id {id} out of the vocabulary"
            );
        }
        let back = tok.decode(&ids);
        let body = match tok.bos_id() {
            Some(b) if ids.first() == Some(&b) => &ids[1..],
            _ => &ids[..],
        };
        if spm && !space_prefix && !s.contains('\u{2581}') && tok.encodes_losslessly(&s) {
            let back = tok.decode(body).expect("ids from encode decode");
            assert_eq!(back, s, "round trip of {s:?} via {ids:?}");
        }
        let _ = back;
    }
    let ids: Vec<u32> = text.iter().map(|&b| b as u32).collect();
    let _ = tok.decode(&ids);
    for &id in &ids {
        let _ = (tok.is_special(id), tok.is_end_of_generation(id));
    }
});
