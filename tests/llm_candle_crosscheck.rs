//! Native decoder vs candle-transformers' quantized llama on the same SmolLM2 GGUF
//! (`--features candle`; skipped when the model is not fetched).
//!
//! Ten prompts, fixed before the first run (plain text, ChatML, code). For each, both engines
//! decode 64 greedy tokens; then both are teacher-forced on candle's 64 tokens, so that every
//! position of prompt and continuation is compared on the same input.
//!
//! What is asserted, and why:
//! - Per-position logits: `max |ours - candle| / max |candle|` over every position must stay
//!   below [`LOGIT_TOLERANCE`] (measured: ~0.05). Both engines quantize activations to 8 bits
//!   before every matmul (ggml style, block sums in f16 in both, as in ggml's `block_q8_1`);
//!   the remaining arithmetic differences (accumulation order in the SIMD kernels, attention and
//!   norm details) flip roundings that cascade through 30 layers, so each engine sits ~5% (max)
//!   from the exact-activation result, and they differ from each other by about as much. With
//!   the same weights dequantized to F32 the two agree to ~2e-6 and greedy 64 tokens are
//!   identical (the candle crate's `f32_reference` test): the model logic is the same.
//! - Teacher-forced next-token choice: wherever the engines pick different top-1 tokens, it
//!   is a near tie in both: ours ranks candle's pick within [`TIE_GAP`] of its own, and candle
//!   ours likewise (the sum of the two gaps is below it). A wrong RoPE, norm or GQA detail
//!   fails this by whole logits.
//! - Greedy 64 tokens: the first divergence, if any, is such a near tie. How many prompts
//!   come out identical is printed, not asserted: it moves with any change of summation order
//!   (3 of these 10 at the time of writing; every divergence was at a tie of < 0.5 logit).
//!   For scale, the same count is printed for our own engine with packed kernels against our
//!   own engine with row-major kernels: two layouts of the same arithmetic that differ only in
//!   the order of f32 accumulations diverge at near ties just the same.

#![cfg(feature = "candle")]

use edgeai::backend_candle::CandleLlama;
use edgeai::llm::gguf::GgufFile;
use edgeai::llm::{EngineOptions, LanguageModel, LlamaEngine, LlamaModel, Llm};

const MODEL: &str = "llm/SmolLM2-135M-Instruct.Q4_1.gguf";
const LOGIT_TOLERANCE: f32 = 0.10;
/// Largest accepted `gap_ours + gap_candle` (in logits) where the engines' top-1 differ.
/// Measured worst: 0.49.
const TIE_GAP: f32 = 1.0;
const STEPS: usize = 64;

fn prompts() -> Vec<String> {
    let chat = |q: &str| format!("<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n");
    vec![
        "The capital of France is".into(),
        chat("Write a haiku about the sea."),
        "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n".into(),
        "Once upon a time, in a small village by the sea,".into(),
        chat("What is the boiling point of water in Celsius?"),
        "The three primary colors are".into(),
        "import numpy as np\n\n# Compute the mean of a list\n".into(),
        chat("Explain photosynthesis in one sentence."),
        "Water is made of hydrogen and".into(),
        "Dear Sir or Madam,\n\nI am writing to".into(),
    ]
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
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

#[test]
fn logits_and_greedy_tokens_match_candle() {
    let Some(path) = edgeai_core::paths::model_path(MODEL) else {
        eprintln!("skipping: {MODEL} not fetched (run scripts/fetch-models)");
        return;
    };
    let mut ours = Llm::open(
        &path,
        &EngineOptions {
            context_length: 256,
            batch: 64,
        },
    )
    .unwrap();
    let mut candle = CandleLlama::open(&path, 256, 0).unwrap();
    let other_layout = !LlamaModel::packing_by_default();
    let mut ours_other = LlamaEngine::new(
        std::sync::Arc::new(
            LlamaModel::from_gguf_with(GgufFile::open(&path).unwrap(), other_layout).unwrap(),
        ),
        &EngineOptions {
            context_length: 256,
            batch: 64,
        },
    )
    .unwrap();
    let mut self_identical = 0;
    assert_eq!(ours.engine.vocab_size(), candle.vocab_size());
    let v = candle.vocab_size();
    let (mut worst, mut worst_gap) = (0f32, 0f32);
    let (mut identical, mut agree, mut compared) = (0, 0, 0);
    for p in prompts() {
        let toks = ours.tokenizer.encode(&p).unwrap();
        let ga = greedy(&mut ours.engine, &toks, STEPS);
        let gb = greedy(&mut candle, &toks, STEPS);
        let first = ga.iter().zip(&gb).position(|(x, y)| x != y);
        if greedy(&mut ours_other, &toks, STEPS) == ga {
            self_identical += 1;
        }

        // Teacher forcing: both engines read the prompt and candle's continuation.
        let mut seq = toks.clone();
        seq.extend(&gb[..STEPS - 1]);
        ours.engine.reset();
        candle.reset();
        let a = ours.engine.forward_all(&seq).unwrap();
        let b = candle.forward_all(&seq).unwrap();
        let mut ties = Vec::new();
        for i in 0..seq.len() {
            let (ra, rb) = (&a[i * v..(i + 1) * v], &b[i * v..(i + 1) * v]);
            let m = rb.iter().fold(0f32, |m, x| m.max(x.abs()));
            let d = ra
                .iter()
                .zip(rb)
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            worst = worst.max(d / m);
            if i + 1 < toks.len() {
                continue; // next-token choices are compared from the end of the prompt on
            }
            let step = i + 1 - toks.len();
            let (x, y) = (argmax(ra) as usize, argmax(rb) as usize);
            compared += 1;
            if x == y {
                agree += 1;
                continue;
            }
            let gap = (ra[x] - ra[y]) + (rb[y] - rb[x]);
            worst_gap = worst_gap.max(gap);
            ties.push(format!("step {step}: gap {gap:.3}"));
            assert!(
                gap < TIE_GAP,
                "{p:?} step {step}: ours picks {x}, candle {y}, gaps {} + {}: not a near tie",
                ra[x] - ra[y],
                rb[y] - rb[x]
            );
        }
        match first {
            None => identical += 1,
            Some(k) => {
                assert!(
                    ties.iter().any(|t| t.starts_with(&format!("step {k}:"))),
                    "{p:?}: greedy diverges at step {k}, where teacher forcing agrees"
                );
                eprintln!(
                    "{p:?}: greedy diverges at step {k} (near tie); top-1 differs under teacher forcing at {ties:?}\n  ours:   {:?}\n  candle: {:?}",
                    ours.tokenizer.decode(&ga).unwrap(),
                    ours.tokenizer.decode(&gb).unwrap()
                );
            }
        }
    }
    let n = prompts().len();
    eprintln!(
        "max |ours - candle| / max |candle logit|: {worst:.4}; teacher-forced top-1 agrees at \
         {agree}/{compared} positions, worst tie gap {worst_gap:.3}; greedy identical for \
         {STEPS} tokens on {identical}/{n} prompts (ours {} vs ours {}: {self_identical}/{n})",
        if other_layout { "row-major" } else { "packed" },
        if other_layout { "packed" } else { "row-major" },
    );
    assert!(worst < LOGIT_TOLERANCE, "{worst}");
}
