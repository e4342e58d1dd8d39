//! `edgeai_llm::export`: a llama GGUF exported to ONNX runs on every graph backend compiled
//! in (tract by default; `--features ort`, `candle`, `burn` add ONNX Runtime, candle-onnx and
//! burn's interpreter) and matches the native decoder on the same f32 weights: one prefill from an empty past (zero-length past tensors) and one decode step
//! fed the returned `present.*` tensors.
//!
//! - [`tiny_export_matches_native`]: a synthetic 2-layer GQA model, no fetched file needed.
//! - [`smollm2_export_matches_native`]: SmolLM2-135M (skipped when not fetched); the
//!   reference is the native engine on the GGUF dequantized to F32 with an f32 KV cache,
//!   and the exported `tokenizer.json` must encode the prompts as the GGUF's tokenizer does.
//!
//! Asserted per backend and prompt: `max |onnx - native| / max |native|` of the last
//! position's logits below [`TOLERANCE`], and the same top-1 token.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use edgeai::core::quant::GgmlType;
use edgeai::core::{LoadOptions, Model, Tensor};
use edgeai::llm::engine::argmax;
use edgeai::llm::export::{export_onnx, ExportOptions};
use edgeai::llm::gguf::{writer::GgufWriter, GgufFile, Value};
use edgeai::llm::{
    DecoderEngine, DecoderModel, EngineOptions, KvCacheType, LanguageModel, Tokenizer,
};

const TOLERANCE: f32 = 1e-4;
const MODEL: &str = "llm/SmolLM2-135M-Instruct.Q4_1.gguf";

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("edgeai-export-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The decoder's shape as the export declares it.
#[derive(Clone, Copy)]
struct Shape {
    layers: usize,
    kv_heads: usize,
    head_dim: usize,
    vocab: usize,
}

/// One run of the exported graph at batch 1: `ids` after a past of `past` (`2 * layers`
/// tensors, `[1, kv, P, hd]`). Returns the last position's logits and the presents.
fn run(m: &dyn Model, s: Shape, ids: &[u32], past: Vec<Tensor>) -> (Vec<f32>, Vec<Tensor>) {
    let p = past[0].shape()[2];
    let n = ids.len();
    let t = p + n;
    let mut inputs = vec![
        Tensor::from_vec(
            vec![1, n],
            ids.iter().map(|&i| i as i64).collect::<Vec<_>>(),
        )
        .unwrap(),
        Tensor::from_vec(vec![1, t], vec![1i64; t]).unwrap(),
        Tensor::from_vec(vec![1, n], (p as i64..t as i64).collect::<Vec<_>>()).unwrap(),
    ];
    inputs.extend(past);
    let mut out = m.run(inputs).unwrap();
    assert_eq!(out.len(), 1 + 2 * s.layers);
    let presents = out.split_off(1);
    for pr in &presents {
        assert_eq!(pr.shape(), &[1, s.kv_heads, t, s.head_dim]);
    }
    let logits = out.pop().unwrap();
    assert_eq!(logits.shape(), &[1, n, s.vocab]);
    let all = logits.as_slice::<f32>().unwrap();
    (all[(n - 1) * s.vocab..].to_vec(), presents)
}

fn empty_past(s: Shape) -> Vec<Tensor> {
    (0..2 * s.layers)
        .map(|_| Tensor::from_vec(vec![1, s.kv_heads, 0, s.head_dim], Vec::<f32>::new()).unwrap())
        .collect()
}

fn rel(x: &[f32], r: &[f32]) -> f32 {
    let m = r.iter().fold(0f32, |m, v| m.max(v.abs()));
    x.iter().zip(r).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / m
}

/// Exports `gguf`, then for every compiled-in backend: prefill + one decode step of each
/// prompt against the native engine on `exact` (f32 weights, f32 KV cache), printing the
/// relative errors.
fn check(gguf: &GgufFile, exact: Arc<DecoderModel>, prompts: &[Vec<u32>], tag: &str) {
    let dir = temp_dir(tag);
    let t0 = Instant::now();
    let report = export_onnx(
        gguf,
        &dir,
        &ExportOptions::default().with_max_positions(512),
    )
    .unwrap();
    eprintln!(
        "{tag}: exported in {:.1} s: {:?}",
        t0.elapsed().as_secs_f64(),
        report.files
    );
    let c = exact.config();
    let s = Shape {
        layers: c.n_layer,
        kv_heads: c.n_kv_head,
        head_dim: c.head_dim,
        vocab: c.vocab,
    };
    let opts = EngineOptions {
        context_length: 512,
        batch: 64,
        kv_cache: KvCacheType::F32,
        ..Default::default()
    };
    let mut native = DecoderEngine::new(exact, &opts).unwrap();
    // The native reference, per prompt: logits after the prompt and after its greedy token.
    let reference: Vec<(Vec<f32>, u32, Vec<f32>)> = prompts
        .iter()
        .map(|ids| {
            native.reset();
            let a = native.forward(ids).unwrap().to_vec();
            let next = argmax(&a);
            let b = native.forward(&[next]).unwrap().to_vec();
            (a, next, b)
        })
        .collect();
    let path = dir.join("model.onnx");
    let mut failures = Vec::new();
    for name in edgeai::available_backends() {
        let t0 = Instant::now();
        let model = edgeai::backend(name)
            .and_then(|b| b.load(path.as_path().into(), &LoadOptions::new().with_threads(2)));
        let model = match model {
            Ok(m) => m,
            Err(e) => {
                eprintln!("{tag}: {name}: load failed: {e}");
                failures.push(format!("{name}: load: {e}"));
                continue;
            }
        };
        let load_s = t0.elapsed().as_secs_f64();
        let t0 = Instant::now();
        for (i, (ids, (want_a, next, want_b))) in prompts.iter().zip(&reference).enumerate() {
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let (a, presents) = run(model.as_ref(), s, ids, empty_past(s));
                let (b, _) = run(model.as_ref(), s, &[*next], presents);
                (a, b)
            }));
            let (a, b) = match step {
                Ok(v) => v,
                Err(_) => {
                    eprintln!("{tag}: {name}: prompt {i}: run failed (see the panic above)");
                    failures.push(format!("{name}: prompt {i}: run failed"));
                    break;
                }
            };
            let (ea, eb) = (rel(&a, want_a), rel(&b, want_b));
            let top = (argmax(&a) == *next, argmax(&b) == argmax(want_b));
            eprintln!(
                "{tag}: {name}: prompt {i} ({} tokens): prefill rel err {ea:.2e}, decode step \
                 rel err {eb:.2e}, top-1 agrees {top:?}",
                ids.len()
            );
            if !(ea < TOLERANCE && eb < TOLERANCE && top == (true, true)) {
                failures.push(format!(
                    "{name}: prompt {i}: rel err {ea:.2e} / {eb:.2e}, top-1 {top:?}"
                ));
            }
        }
        eprintln!(
            "{tag}: {name}: load {load_s:.1} s, {} prompts run in {:.1} s",
            prompts.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A synthetic llama GGUF: 2 layers, 4 query heads on 2 KV heads of 16, untied output when
/// `tied` is false. No tokenizer metadata (the export skips tokenizer.json).
fn tiny_llama(tied: bool) -> GgufFile {
    const DIM: usize = 64;
    const HEADS: usize = 4;
    const KV: usize = 2;
    const HD: usize = 16;
    const FFN: usize = 96;
    const VOCAB: usize = 50;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15u64);
    let u = |v: usize| Value::U32(v as u32);
    let mut g = GgufWriter::new()
        .kv("general.architecture", Value::String("llama".into()))
        .kv("llama.block_count", u(2))
        .kv("llama.context_length", u(512))
        .kv("llama.embedding_length", u(DIM))
        .kv("llama.feed_forward_length", u(FFN))
        .kv("llama.attention.head_count", u(HEADS))
        .kv("llama.attention.head_count_kv", u(KV))
        .kv("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5))
        .kv("llama.rope.freq_base", Value::F32(10_000.0));
    let mat = |g: GgufWriter, rng: &mut Rng, name: &str, rows: usize, cols: usize, scale: f32| {
        let data = rng.bytes(rows * cols, scale, 0.0);
        g.tensor(name, &[cols as u64, rows as u64], GgmlType::F32, data)
    };
    g = mat(g, &mut rng, "token_embd.weight", VOCAB, DIM, 2.0);
    for l in 0..2 {
        let n = |s: &str| format!("blk.{l}.{s}.weight");
        for (name, rows, cols) in [
            ("attn_q", HEADS * HD, DIM),
            ("attn_k", KV * HD, DIM),
            ("attn_v", KV * HD, DIM),
            ("attn_output", DIM, HEADS * HD),
            ("ffn_gate", FFN, DIM),
            ("ffn_up", FFN, DIM),
            ("ffn_down", DIM, FFN),
        ] {
            g = mat(g, &mut rng, &n(name), rows, cols, 0.6);
        }
        for name in ["attn_norm", "ffn_norm"] {
            let data = rng.bytes(DIM, 0.5, 1.0);
            g = g.tensor(&n(name), &[DIM as u64], GgmlType::F32, data);
        }
    }
    let norm = rng.bytes(DIM, 0.5, 1.0);
    g = g.tensor("output_norm.weight", &[DIM as u64], GgmlType::F32, norm);
    if !tied {
        g = mat(g, &mut rng, "output.weight", VOCAB, DIM, 0.6);
    }
    GgufFile::from_bytes(g.build()).unwrap()
}

#[test]
fn tiny_export_matches_native() {
    let prompts: Vec<Vec<u32>> = vec![vec![3], vec![1, 7, 22, 49, 0, 13, 5], (0..40).collect()];
    for tied in [true, false] {
        let bytes = tiny_llama(tied).bytes().to_vec();
        let exact =
            Arc::new(DecoderModel::from_gguf(GgufFile::from_bytes(bytes).unwrap()).unwrap());
        let tag = if tied { "tiny-tied" } else { "tiny-untied" };
        check(&tiny_llama(tied), exact, &prompts, tag);
    }
}

/// A batch of two with the shorter row left-padded (attention_mask 0, HF's
/// `cumsum(mask) - 1` positions): each row's logits equal those of the row run alone.
#[test]
fn tiny_left_padded_batch_matches_rows_run_alone() {
    let gguf = tiny_llama(true);
    let dir = temp_dir("tiny-batch");
    export_onnx(&gguf, &dir, &ExportOptions::default()).unwrap();
    let s = Shape {
        layers: 2,
        kv_heads: 2,
        head_dim: 16,
        vocab: 50,
    };
    let (a, b): (Vec<u32>, Vec<u32>) = (vec![1, 7, 22, 49, 0], vec![3, 9, 4]);
    let n = a.len();
    let pad = n - b.len();
    let ids: Vec<i64> = a
        .iter()
        .map(|&t| t as i64)
        .chain(std::iter::repeat_n(0, pad))
        .chain(b.iter().map(|&t| t as i64))
        .collect();
    let mask: Vec<i64> = std::iter::repeat_n(1, n)
        .chain(std::iter::repeat_n(0, pad))
        .chain(std::iter::repeat_n(1, b.len()))
        .collect();
    let pos: Vec<i64> = (0..n as i64)
        .chain(std::iter::repeat_n(1, pad))
        .chain(0..b.len() as i64)
        .collect();
    for name in edgeai::available_backends() {
        let m = edgeai::backend(name)
            .and_then(|be| be.load(dir.join("model.onnx").as_path().into(), &LoadOptions::new()))
            .unwrap();
        let mut inputs = vec![
            Tensor::from_vec(vec![2, n], ids.clone()).unwrap(),
            Tensor::from_vec(vec![2, n], mask.clone()).unwrap(),
            Tensor::from_vec(vec![2, n], pos.clone()).unwrap(),
        ];
        inputs.extend((0..2 * s.layers).map(|_| {
            Tensor::from_vec(vec![2, s.kv_heads, 0, s.head_dim], Vec::<f32>::new()).unwrap()
        }));
        let out = m.run(inputs).unwrap();
        let logits = out[0].as_slice::<f32>().unwrap();
        let last = |row: usize| &logits[(row * n + n - 1) * s.vocab..(row * n + n) * s.vocab];
        for (row, seq) in [(0, &a), (1, &b)] {
            let (alone, _) = run(m.as_ref(), s, seq, empty_past(s));
            let e = rel(last(row), &alone);
            eprintln!("{name}: batch row {row} vs alone: rel err {e:.2e}");
            assert!(e < TOLERANCE, "{name}: row {row}: {e}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The first three cross-check prompts (one plain, one ChatML, one code).
fn smollm2_prompts() -> Vec<String> {
    let mut p = edgeai_testutil::smollm2_cross_check_prompts();
    p.truncate(3);
    p
}

#[test]
fn smollm2_export_matches_native() {
    let Some(path) = edgeai_testutil::model_path(MODEL) else {
        eprintln!("skipping: {MODEL} not fetched (run scripts/fetch-models)");
        return;
    };
    let t0 = Instant::now();
    let gguf = GgufFile::open(&path).unwrap();
    let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
    let prompts: Vec<Vec<u32>> = smollm2_prompts()
        .iter()
        .map(|p| tokenizer.encode(p).unwrap())
        .collect();
    let exact = GgufFile::from_bytes(GgufWriter::dequantized(&gguf).unwrap().build()).unwrap();
    let exact = Arc::new(DecoderModel::from_gguf(exact).unwrap());

    // The exported tokenizer.json encodes as the GGUF's tokenizer.
    let dir = temp_dir("smollm2-tokenizer");
    let report = export_onnx(
        &gguf,
        &dir,
        &ExportOptions::default().with_max_positions(16),
    )
    .unwrap();
    assert!(report.tokenizer_json);
    assert_eq!((report.layers, report.opset), (30, 17));
    let json = Tokenizer::from_json_file(dir.join("tokenizer.json")).unwrap();
    for (p, ids) in smollm2_prompts().iter().zip(&prompts) {
        assert_eq!(&json.encode(p).unwrap(), ids, "{p:?}");
    }
    let config: String = std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap();
    assert!(gguf.get_str("tokenizer.chat_template").is_some());
    assert!(config.contains("\"chat_template\": \""), "{config}");
    check_config(&dir);
    let _ = std::fs::remove_dir_all(&dir);

    check(&gguf, exact, &prompts, "smollm2");
    eprintln!("smollm2: {:.1} s in all", t0.elapsed().as_secs_f64());
}

fn check_config(dir: &Path) {
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    for needle in [
        "\"model_type\": \"llama\"",
        "\"num_hidden_layers\": 30",
        "\"num_attention_heads\": 9",
        "\"num_key_value_heads\": 3",
        "\"head_dim\": 64",
        "\"hidden_size\": 576",
        "\"vocab_size\": 49152",
        "\"tie_word_embeddings\": true",
    ] {
        assert!(cfg.contains(needle), "{needle} not in {cfg}");
    }
}

/// xorshift64: the same weights on every run.
struct Rng(u64);

impl Rng {
    /// `n` f32 values in `offset ± scale / 2`, as little-endian bytes.
    fn bytes(&mut self, n: usize, scale: f32, offset: f32) -> Vec<u8> {
        (0..n)
            .flat_map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                let v = offset + ((self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale;
                v.to_le_bytes()
            })
            .collect()
    }
}
