//! Diagnostic: both engines on an all-F32 copy of the GGUF (no quantized kernels involved on
//! either side) must agree tightly; this isolates model-logic differences (RoPE layout, GQA,
//! norms) from activation-quantization noise.

use edgeai_backend_candle::CandleLlama;
use edgeai_core::quant::{GgmlType, QMatrix};
use edgeai_llm::gguf::{writer::GgufWriter, GgufFile};
use edgeai_llm::{EngineOptions, LanguageModel, LlamaEngine, LlamaModel};

const MODEL: &str = "llm/SmolLM2-135M-Instruct.Q4_1.gguf";

fn dequantized(src: &GgufFile) -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.metadata = src.metadata().to_vec();
    for t in src.tensors() {
        let (rows, cols) = t.matrix_shape();
        let m = QMatrix::new(t.ty, rows, cols, src.tensor_data(t)).unwrap();
        let bytes: Vec<u8> = m
            .dequantize()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        w.tensors
            .push((t.name.clone(), t.dims.clone(), GgmlType::F32, bytes));
    }
    w.build()
}

#[test]
fn f32_weights_agree_with_candle() {
    let Some(path) = edgeai_core::paths::model_path(MODEL) else {
        eprintln!("skipping: {MODEL} not fetched (run scripts/fetch-models)");
        return;
    };
    let bytes = dequantized(&GgufFile::open(&path).unwrap());
    let tmp = std::env::temp_dir().join(format!("edgeai-f32-{}.gguf", std::process::id()));
    std::fs::write(&tmp, &bytes).unwrap();
    let model =
        std::sync::Arc::new(LlamaModel::from_gguf(GgufFile::from_bytes(bytes).unwrap()).unwrap());
    let mut ours = LlamaEngine::new(
        model,
        &EngineOptions {
            context_length: 128,
            batch: 16,
        },
    )
    .unwrap();
    let mut candle = CandleLlama::open(&tmp, 128, 0).unwrap();
    let _ = std::fs::remove_file(&tmp);
    let toks = [
        504u32, 3575, 282, 4649, 314, 12, 1, 2, 198, 216, 35, 33, 33, 30,
    ];
    let a = ours.forward_all(&toks).unwrap();
    let b = candle.forward_all(&toks).unwrap();
    let v = ours.vocab_size();
    let mut worst = 0f32;
    for i in 0..toks.len() {
        let (ra, rb) = (&a[i * v..(i + 1) * v], &b[i * v..(i + 1) * v]);
        let m = rb.iter().fold(0f32, |m, x| m.max(x.abs()));
        let d = ra
            .iter()
            .zip(rb)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        eprintln!("pos {i}: max abs diff {d:.5}, max |logit| {m:.2}");
        worst = worst.max(d / m);
    }
    eprintln!("f32 weights: max rel diff {worst:.2e}");
    assert!(worst < 1e-3, "{worst}");
    // Greedy decoding agrees token for token on three prompts.
    let prompts: [&[u32]; 3] = [
        &[504, 3575, 282, 4649, 314],
        &toks,
        &[1, 4093, 198, 19556, 1489, 42, 2, 198],
    ];
    for p in prompts {
        let ga = greedy(&mut ours, p, 64);
        let gb = greedy(&mut candle, p, 64);
        assert_eq!(ga, gb, "greedy differs on F32 weights for prompt {p:?}");
    }
}

fn greedy(m: &mut dyn LanguageModel, prompt: &[u32], n: usize) -> Vec<u32> {
    m.reset();
    let mut out = vec![argmax(m.forward(prompt).unwrap())];
    while out.len() < n {
        let next = out[out.len() - 1];
        out.push(argmax(m.forward(&[next]).unwrap()));
    }
    out
}

/// Accuracy of the quantized engines against the exact-activation reference (the same
/// quantized weights dequantized to F32, run by our engine with no activation quantization):
/// ours with packed kernels, ours row-major, and candle, all teacher-forced on the reference's
/// own greedy continuation of ten prompts. Where the two quantized engines pick different
/// tokens, this says whether either is systematically further from the exact model.
#[test]
fn quantized_engines_vs_exact_activation_reference() {
    let Some(path) = edgeai_core::paths::model_path(MODEL) else {
        eprintln!("skipping: {MODEL} not fetched (run scripts/fetch-models)");
        return;
    };
    let gguf = GgufFile::open(&path).unwrap();
    let tokenizer = edgeai_llm::Tokenizer::from_gguf(&gguf).unwrap();
    let bytes = dequantized(&gguf);
    let model =
        std::sync::Arc::new(LlamaModel::from_gguf(GgufFile::from_bytes(bytes).unwrap()).unwrap());
    let opts = EngineOptions {
        context_length: 160,
        batch: 64,
    };
    let mut reference = LlamaEngine::new(model, &opts).unwrap();
    let packed = std::sync::Arc::new(
        LlamaModel::from_gguf_with(GgufFile::open(&path).unwrap(), true).unwrap(),
    );
    let row_major = std::sync::Arc::new(
        LlamaModel::from_gguf_with(GgufFile::open(&path).unwrap(), false).unwrap(),
    );
    let mut engines: Vec<(&str, Box<dyn LanguageModel>)> = vec![
        (
            "ours (packed)",
            Box::new(LlamaEngine::new(packed, &opts).unwrap()),
        ),
        (
            "ours (row-major)",
            Box::new(LlamaEngine::new(row_major, &opts).unwrap()),
        ),
        (
            "candle",
            Box::new(CandleLlama::open(&path, 160, 0).unwrap()),
        ),
    ];
    let v = reference.vocab_size();
    // (agreeing top-1, worst max-rel, sum of squared logit errors)
    let mut stats = vec![(0usize, 0f32, 0f64); engines.len()];
    let (mut positions, mut values) = (0usize, 0usize);
    let mut picks: Vec<Vec<u32>> = vec![Vec::new(); engines.len()];
    for p in PROMPTS_TEXT {
        let toks = tokenizer.encode(p).unwrap();
        let mut seq = toks.clone();
        seq.extend(&greedy(&mut reference, &toks, 64)[..63]);
        reference.reset();
        let r = reference.forward_all(&seq).unwrap();
        for (k, (_, e)) in engines.iter_mut().enumerate() {
            e.reset();
            let x = e.forward_all(&seq).unwrap();
            for i in toks.len() - 1..seq.len() {
                let (rx, rr) = (&x[i * v..(i + 1) * v], &r[i * v..(i + 1) * v]);
                let m = rr.iter().fold(0f32, |m, x| m.max(x.abs()));
                let d = rx
                    .iter()
                    .zip(rr)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                stats[k].1 = stats[k].1.max(d / m);
                stats[k].2 += rx
                    .iter()
                    .zip(rr)
                    .map(|(a, b)| ((a - b) as f64).powi(2))
                    .sum::<f64>();
                let pick = argmax(rx);
                picks[k].push(pick);
                if pick == argmax(rr) {
                    stats[k].0 += 1;
                }
            }
        }
        positions += seq.len() + 1 - toks.len();
        values += (seq.len() + 1 - toks.len()) * v;
    }
    for ((name, _), (agree, worst, sq)) in engines.iter().zip(&stats) {
        let rms = (sq / values as f64).sqrt();
        eprintln!(
            "{name:>16} vs exact-activation reference: top-1 agrees at {agree}/{positions}, \
             logits max rel {worst:.4}, rms {rms:.4}"
        );
    }
    let same = |a: usize, b: usize| {
        picks[a]
            .iter()
            .zip(&picks[b])
            .filter(|(x, y)| x == y)
            .count()
    };
    eprintln!(
        "top-1 agreement between engines: packed vs row-major {}/{positions}, packed vs candle \
         {}/{positions}, row-major vs candle {}/{positions}",
        same(0, 1),
        same(0, 2),
        same(1, 2)
    );
    // Measured (session 5): packed 625/640, max rel 0.071; row-major 625, 0.070; candle 621,
    // 0.074. The bounds catch an engine that drifts from the model, not rounding noise.
    for (name, (agree, worst, _)) in engines.iter().map(|e| e.0).zip(&stats) {
        assert!(*worst < 0.12, "{name}: max rel {worst}");
        assert!(
            *agree * 100 >= positions * 90,
            "{name}: {agree}/{positions}"
        );
    }
}

const PROMPTS_TEXT: [&str; 10] = [
    "The capital of France is",
    "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Once upon a time, in a small village by the sea,",
    "<|im_start|>user\nWhat is the boiling point of water in Celsius?<|im_end|>\n<|im_start|>assistant\n",
    "The three primary colors are",
    "import numpy as np\n\n# Compute the mean of a list\n",
    "<|im_start|>user\nExplain photosynthesis in one sentence.<|im_end|>\n<|im_start|>assistant\n",
    "Water is made of hydrogen and",
    "Dear Sir or Madam,\n\nI am writing to",
];

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}
