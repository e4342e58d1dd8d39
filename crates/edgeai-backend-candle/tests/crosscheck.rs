//! Native decoder vs candle-transformers on the same GGUF (skipped when the model is absent).

use edgeai_backend_candle::CandleLlama;
use edgeai_llm::{EngineOptions, LanguageModel, Llm};

const MODEL: &str = "llm/SmolLM2-135M-Instruct.Q4_1.gguf";
const PROMPTS: [&str; 3] = [
    "The capital of France is",
    "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
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

fn greedy(m: &mut dyn LanguageModel, prompt: &[u32], n: usize) -> Vec<u32> {
    m.reset();
    let mut next = argmax(m.forward(prompt).unwrap());
    let mut out = vec![next];
    while out.len() < n {
        next = argmax(m.forward(&[next]).unwrap());
        out.push(next);
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
    assert_eq!(ours.engine.vocab_size(), candle.vocab_size());
    let v = candle.vocab_size();
    let mut worst = 0f32;
    let mut mismatches = Vec::new();
    for p in PROMPTS {
        let toks = ours.tokenizer.encode(p).unwrap();
        ours.engine.reset();
        candle.reset();
        let a = ours.engine.forward_all(&toks).unwrap();
        let b = candle.forward_all(&toks).unwrap();
        for i in 0..toks.len() {
            let (ra, rb) = (&a[i * v..(i + 1) * v], &b[i * v..(i + 1) * v]);
            let m = rb.iter().fold(0f32, |m, x| m.max(x.abs()));
            let d = ra
                .iter()
                .zip(rb)
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            worst = worst.max(d / m);
        }
        let ga = greedy(&mut ours.engine, &toks, 64);
        let gb = greedy(&mut candle, &toks, 64);
        eprintln!(
            "{p:?}\n  ours:   {:?}\n  candle: {:?}",
            ours.tokenizer.decode(&ga).unwrap(),
            ours.tokenizer.decode(&gb).unwrap()
        );
        if let Some(k) = ga.iter().zip(&gb).position(|(x, y)| x != y) {
            // Diagnose: margins of both engines at the divergence.
            let mut ctx = toks.clone();
            ctx.extend_from_slice(&ga[..k]);
            ours.engine.reset();
            candle.reset();
            let la = ours.engine.forward(&ctx).unwrap().to_vec();
            let lb = candle.forward(&ctx).unwrap().to_vec();
            eprintln!(
                "diverge at {k}: ours {} ({}) vs {} ({}); candle {} vs {}",
                ga[k],
                la[ga[k] as usize],
                gb[k],
                la[gb[k] as usize],
                lb[ga[k] as usize],
                lb[gb[k] as usize]
            );
            mismatches.push((p, k));
        }
    }
    eprintln!("max |ours - candle| / max |candle logit| over all positions: {worst:.4}");
    assert!(worst < 0.03, "{worst}");
    assert!(
        mismatches.is_empty(),
        "greedy tokens differ: {mismatches:?}"
    );
}
