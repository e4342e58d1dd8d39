//! SmolLM2 on the native decoder: tokenizer, greedy answers, chat, streaming, stop strings,
//! seeded sampling, context overflow (skipped when the model is not fetched).

use edgeai::llm::generate::{generate, GenerateOptions};
use edgeai::llm::{EngineOptions, LanguageModel, Llm, Message, SamplerConfig, StopReason};

const MODEL: &str = "llm/SmolLM2-135M-Instruct.Q4_1.gguf";

fn llm() -> Option<Llm> {
    let Some(path) = edgeai_testutil::model_path(MODEL) else {
        eprintln!("skipping: {MODEL} not fetched (run scripts/fetch-models)");
        return None;
    };
    Some(
        Llm::open(
            path,
            &EngineOptions {
                context_length: 512,
                batch: 64,
                ..Default::default()
            },
        )
        .unwrap(),
    )
}

#[test]
fn tokenizer_roundtrip_and_specials() {
    let Some(llm) = llm() else { return };
    let t = &llm.tokenizer;
    for s in [
        "Hello, world!",
        "Ça va? Voilà l'été à Zürich, naïve façade.",
        "emoji 🦀🚀 and 日本語 mixed 123456",
        "fn main() {\n    println!(\"{}\", 1 + 2);\n}\n",
        "   leading   and\ttabs\t\tand\n\n\nnewlines   ",
        "",
    ] {
        assert!(t.encodes_losslessly(s));
        let ids = t.encode(s).unwrap();
        assert_eq!(t.decode(&ids).unwrap(), s, "ids {ids:?}");
    }
    // Found by the `tokenize` fuzz target: SmolLM2's vocabulary has no token for byte 0x14
    // (nor for 20 other bytes); encoding drops it, like llama.cpp, and says so.
    let s = "<|im_start\u{14}>user\nWhat is >\n<|im_start|>assistant\n";
    assert!(!t.encodes_byte(0x14) && t.encodes_byte(b'<') && !t.encodes_losslessly(s));
    let missing = (0..=255u8).filter(|&b| !t.encodes_byte(b)).count();
    assert_eq!(missing, 21);
    let ids = t.encode(s).unwrap();
    assert_eq!(t.decode(&ids).unwrap(), s.replace('\u{14}', ""));
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 1);
    assert_eq!(t.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(t.token_to_id("<|im_end|>"), Some(2));
    let ids = t.encode("<|im_start|>user\nHi<|im_end|>").unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(*ids.last().unwrap(), 2);
    assert_eq!(ids.iter().filter(|&&i| i == 1 || i == 2).count(), 2);
    // Digits are split one by one (smollm pre-tokenizer).
    let ids = t.encode("2024").unwrap();
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert!(t.is_end_of_generation(2));
}

#[test]
fn greedy_paris() {
    let Some(mut llm) = llm() else { return };
    let opts = GenerateOptions {
        max_tokens: 8,
        sampler: SamplerConfig::greedy(),
        ..Default::default()
    };
    let out = llm.complete("The capital of France is", &opts).unwrap();
    eprintln!(
        "{:?} prefill {:.1} tok/s decode {:.1} tok/s",
        out.text,
        out.prefill_tok_s(),
        out.decode_tok_s()
    );
    assert!(out.text.starts_with(" Paris"), "{:?}", out.text);
}

#[test]
fn chat_berlin_and_cache_reuse() {
    let Some(mut llm) = llm() else { return };
    let opts = GenerateOptions {
        max_tokens: 48,
        sampler: SamplerConfig::greedy(),
        ..Default::default()
    };
    let mut chat = llm.chat(None);
    let g = chat
        .send(
            &mut llm.engine,
            &llm.tokenizer,
            "What is the capital of Germany?",
            &opts,
            &mut |_| true,
        )
        .unwrap();
    eprintln!("{:?}", g.text);
    assert!(g.text.contains("Berlin"), "{:?}", g.text);
    let pos_after_first = llm.engine.position();
    let g2 = chat
        .send(
            &mut llm.engine,
            &llm.tokenizer,
            "And of Italy?",
            &opts,
            &mut |_| true,
        )
        .unwrap();
    eprintln!("{:?} (fed {} prompt tokens)", g2.text, g2.prompt_tokens);
    // Only the new turn was fed.
    assert!(g2.prompt_tokens < 30, "{}", g2.prompt_tokens);
    assert!(llm.engine.position() > pos_after_first);
    assert_eq!(chat.messages().len(), 4);
    assert_eq!(chat.messages()[2], Message::user("And of Italy?"));
}

#[test]
fn batched_prefill_matches_token_by_token() {
    let Some(mut llm) = llm() else { return };
    let toks = llm
        .tokenizer
        .encode("One two three four five six seven")
        .unwrap();
    let all = llm.engine.forward_all(&toks).unwrap();
    let v = llm.engine.vocab_size();
    llm.engine.reset();
    let mut max_rel = 0f32;
    for (i, &t) in toks.iter().enumerate() {
        let l = llm.engine.forward(&[t]).unwrap();
        let row = &all[i * v..(i + 1) * v];
        let m = row.iter().fold(0f32, |a, b| a.max(b.abs()));
        let d = row
            .iter()
            .zip(l)
            .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
        max_rel = max_rel.max(d / m);
    }
    eprintln!("batched vs incremental max rel diff {max_rel}");
    assert!(max_rel < 0.02, "{max_rel}");
    // Context overflow is an error, not a panic, and leaves the state unchanged.
    let pos = llm.engine.position();
    let long = vec![5u32; 600];
    assert!(matches!(
        llm.engine.forward(&long),
        Err(edgeai::llm::Error::ContextOverflow { .. })
    ));
    assert_eq!(llm.engine.position(), pos);
    assert!(llm.engine.forward(&[u32::MAX]).is_err());
}

#[test]
fn streaming_stop_strings_and_budget() {
    let Some(mut llm) = llm() else { return };
    let prompt = llm.tokenizer.encode("The capital of France is").unwrap();
    let opts = GenerateOptions {
        max_tokens: 32,
        stop: vec![".\n".into()],
        sampler: SamplerConfig::greedy(),
    };
    let mut pieces = Vec::new();
    let g = generate(&mut llm.engine, &llm.tokenizer, &prompt, &opts, &mut |p| {
        pieces.push(p.to_string());
        true
    })
    .unwrap();
    // Greedy continues " Paris.\n\n...": ".\n" spans the "." and "\n" tokens.
    assert_eq!(g.stop_reason, StopReason::StopString);
    assert_eq!(g.text, " Paris");
    assert_eq!(pieces.concat(), g.text);
    llm.engine.reset();
    let opts = GenerateOptions {
        max_tokens: 3,
        sampler: SamplerConfig::greedy(),
        ..Default::default()
    };
    let g = generate(&mut llm.engine, &llm.tokenizer, &prompt, &opts, &mut |_| {
        true
    })
    .unwrap();
    assert_eq!(g.stop_reason, StopReason::MaxTokens);
    assert_eq!(g.tokens.len(), 3);
    assert_eq!(llm.engine.position(), prompt.len() + 2);
}

#[test]
fn same_seed_same_text() {
    let Some(mut llm) = llm() else { return };
    let run = |llm: &mut Llm, seed| {
        let opts = GenerateOptions {
            max_tokens: 24,
            sampler: SamplerConfig {
                temperature: 1.0,
                seed,
                ..SamplerConfig::default()
            },
            ..Default::default()
        };
        llm.complete("Once upon a time", &opts).unwrap().text
    };
    let a = run(&mut llm, 1);
    let b = run(&mut llm, 1);
    let c = run(&mut llm, 2);
    eprintln!("{a:?} / {c:?}");
    assert_eq!(a, b);
    assert_ne!(a, c);
}
