//! Regression tests for malformed GGUF files found while hardening the loader: each must be
//! an error, without allocating what the file's header claims; and for memory the tokenizer
//! must not keep once dropped.

use edgeai_core::quant::GgmlType;
use edgeai_llm::gguf::{writer::GgufWriter, GgufFile, Value};
use edgeai_llm::DecoderModel;
use edgeai_testutil::alloc::{largest_anywhere, measure, Counting};

#[global_allocator]
static ALLOC: Counting = Counting;

/// `llama.block_count` = 2^24 - 1 in a file with one tensor: the loader used to reserve
/// space for 16.7 million layers (about 5.5 GB) before finding the first one missing.
#[test]
fn absurd_block_count_does_not_reserve_layers() {
    let bytes = GgufWriter::new()
        .kv("general.architecture", Value::String("llama".into()))
        .kv("llama.embedding_length", Value::U32(32))
        .kv("llama.attention.head_count", Value::U32(4))
        .kv("llama.feed_forward_length", Value::U32(64))
        .kv("llama.context_length", Value::U32(64))
        .kv("llama.block_count", Value::U32((1 << 24) - 1))
        .tensor("token_embd.weight", &[32, 4], GgmlType::F32, vec![0; 512])
        .build();
    let g = GgufFile::from_bytes(bytes).unwrap();
    let e = DecoderModel::from_gguf(g).unwrap_err().to_string();
    assert!(
        e.contains("blk.0.attn_norm.weight") && e.contains("missing"),
        "{e}"
    );
    let largest = largest_anywhere();
    assert!(largest < 1 << 20, "largest allocation {largest} bytes");
}

/// Found by `fuzz/` (target `gguf`): a tensor whose first dimension is 0 and whose other
/// dimensions multiply past u64. The full product is 0, so the parser accepted it, and
/// `TensorInfo::matrix_shape` then overflowed (a panic in debug builds, a wrong row count in
/// release).
const FUZZ_CRASH_ZERO_DIM: &str = concat!(
    "474755460200000001000000000000000400000000000000140000000000000067656e6572616c2e6172636869746563",
    "747572650800000005000000000000006c6c616d61110000000000000067656e6572616c2e616c69679a929291740500",
    "00002000000014000000000000006c656e6572616c2e6172636869746563747572650800000005000000000000006c6c",
    "616d61110000000000000067656e6572616c2e616c69679a92929174040000002000000014000000000000006c6c616d",
    "612e636f6e746578745f6c656e67746804000000000000000000000000006c6c616d61110000000000000067656e6572",
    "616c000000000000000000000000000000040000000000000002000000000000000000000000000000000000",
);

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn zero_first_dim_with_overflowing_rows_is_an_error() {
    let e = GgufFile::from_bytes(unhex(FUZZ_CRASH_ZERO_DIM))
        .unwrap_err()
        .to_string();
    assert!(e.contains("overflow"), "{e}");
    let bytes = GgufWriter::new()
        .tensor("z", &[0, 1 << 40, 1 << 40], GgmlType::F32, Vec::new())
        .build();
    let e = GgufFile::from_bytes(bytes).unwrap_err().to_string();
    assert!(e.contains("`z`") && e.contains("overflow"), "{e}");
    // The accessors saturate on hand-built infos instead of overflowing.
    let t = edgeai_llm::gguf::TensorInfo {
        name: "t".into(),
        dims: vec![0, u64::MAX, 2],
        ty: GgmlType::F32,
        offset: 0,
        size: 0,
    };
    assert_eq!(t.matrix_shape(), (usize::MAX, 0));
    assert_eq!(t.elements(), 0);
}

/// fuzz/ (target tokenizer_gguf): a vocabulary with a duplicate token and merges whose result
/// is not in it made tokenizers' BPE builder panic ("range end index 2 out of range"). It
/// must be an error naming the merges, found by our own check before the builder runs (the
/// fuzzer's panic hook aborts even on a caught panic, so catching it was not enough).
#[test]
fn duplicate_vocabulary_with_dangling_merges_is_not_a_panic() {
    let strs = |v: &[&str]| Value::Array(v.iter().map(|s| Value::String(s.to_string())).collect());
    let bytes = GgufWriter::new()
        .kv("tokenizer.ggml.model", Value::String("gpt2".into()))
        .kv("tokenizer.ggml.pre", Value::String("gpt2".into()))
        .kv("tokenizer.ggml.tokens", strs(&["a", "b", "c", "a", ">"]))
        .kv("tokenizer.ggml.merges", strs(&["a b", "ab c"]))
        .kv(
            "tokenizer.ggml.token_type",
            Value::Array(vec![Value::I32(1); 5]),
        )
        .kv("tokenizer.ggml.add_bos_token", Value::Bool(true))
        .kv("tokenizer.ggml.bos_token_id", Value::U32(98))
        .kv("tokenizer.ggml.eos_token_id", Value::U32(52))
        .tensor("t", &[1], GgmlType::F32, vec![0; 4])
        .build();
    let f = GgufFile::from_bytes(bytes).expect("the writer's output parses");
    let Err(err) = edgeai_llm::Tokenizer::from_gguf(&f) else {
        panic!("these merges do not form a BPE model")
    };
    let msg = err.to_string();
    assert!(
        msg.contains("merges") && msg.contains("`ab` is not in the vocabulary"),
        "{msg}"
    );
}

/// A byte-level vocabulary (all 256 bytes, two merges, two control tokens) as GGUF bytes.
fn small_vocabulary() -> Vec<u8> {
    let strs = |v: &[String]| Value::Array(v.iter().map(|s| Value::String(s.clone())).collect());
    let mut tokens = vec!["<|im_start|>".to_string(), "<|im_end|>".to_string()];
    tokens.extend(
        edgeai_llm::tokenizer::bytes_to_unicode()
            .iter()
            .map(|c| c.to_string()),
    );
    tokens.extend(["he".to_string(), "hel".to_string()]);
    let mut types = vec![Value::I32(3); 2];
    types.resize(tokens.len(), Value::I32(1));
    GgufWriter::new()
        .kv("tokenizer.ggml.model", Value::String("gpt2".into()))
        .kv("tokenizer.ggml.pre", Value::String("smollm".into()))
        .kv("tokenizer.ggml.tokens", strs(&tokens))
        .kv("tokenizer.ggml.token_type", Value::Array(types))
        .kv(
            "tokenizer.ggml.merges",
            strs(&["h e".into(), "he l".into()]),
        )
        .build()
}

/// fuzz/ (target tokenizer_gguf ran out of memory): tokenizers 0.23 keeps its BPE word cache
/// in a thread-local map keyed by a per-instance id and never removes an instance's entry,
/// so every tokenizer that encoded on a thread left ~0.7 KB behind on it when dropped. Ours
/// builds the BPE without that cache: building, using and dropping one must give every byte
/// back.
#[test]
fn a_dropped_tokenizer_leaves_nothing_behind() {
    let file = GgufFile::from_bytes(small_vocabulary()).unwrap();
    let round = || {
        let t = edgeai_llm::Tokenizer::from_gguf(&file).unwrap();
        let ids = t
            .encode("hello world, 42 cats say hello! <|im_end|>")
            .unwrap();
        assert_eq!(
            t.decode(&ids).unwrap(),
            "hello world, 42 cats say hello! <|im_end|>"
        );
    };
    // The first rounds initialise tokenizers' process-wide tables (byte maps, regexes).
    round();
    round();
    let ((), usage) = measure(|| {
        for _ in 0..50 {
            round();
        }
    });
    let kept = usage.net;
    assert!(kept < 1024, "50 dropped tokenizers kept {kept} bytes");
}
