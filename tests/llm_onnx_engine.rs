//! SmolLM2 exported to ONNX (`edgeai export-onnx`, f32 weights) and run as an LLM through the
//! engine registry (`onnx:<backend>` for every graph backend compiled in): the `OnnxDecoder`
//! feeds the `present.*` outputs back as the past each step. The reference is the native
//! engine on the same GGUF dequantized to F32 with an f32 KV cache (skipped when the model
//! is not fetched).
//!
//! Asserted on each backend that loads the export, on the ten cross-check prompts (ort; the
//! first two on the slower backends, to bound the suite's time):
//! - greedy 32 tokens (one token per run, the cache going round) identical to the reference;
//! - teacher-forced on prompt + continuation (one run), every position's logits within
//!   [`TOLERANCE`] of the reference: `max |onnx - ref| / max |ref|`;
//! - the cache goes round in ONNX Runtime's and tract's own values (`cache_backend`), and the
//!   same engine with the cache forced through host tensors gives the same tokens;
//! - the exported `tokenizer.json` encodes every prompt as the GGUF's tokenizer does, and the
//!   template from `tokenizer_config.json` is ChatML, so a chat turn works end to end.
//!
//! Backends that cannot load or run the export print what stops them (not asserted: burn's
//! interpreter, say); tract and ort must run it.

use std::sync::Arc;

use edgeai::llm::engine::greedy;
use edgeai::llm::export::{export_onnx, ExportOptions};
use edgeai::llm::gguf::{writer::GgufWriter, GgufFile};
use edgeai::llm::{
    ChatTemplate, DecoderEngine, DecoderModel, EngineOptions, GenerateOptions, KvCacheType,
    LanguageModel, LlmEngine, LlmOptions, OnnxDecoder, OnnxEngine, SamplerConfig, Tokenizer,
};

const MODEL: &str = "llm/SmolLM2-135M-Instruct.Q4_1.gguf";
const TOLERANCE: f32 = 1e-4;
const STEPS: usize = 32;
const CTX: usize = 256;

fn prompts() -> Vec<String> {
    edgeai_testutil::smollm2_cross_check_prompts()
}

fn rel(x: &[f32], r: &[f32]) -> f32 {
    let m = r.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = x.iter().zip(r).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    d / m
}

#[test]
fn exported_smollm2_on_every_backend_matches_the_f32_reference() {
    let Some(path) = edgeai_testutil::model_path(MODEL) else {
        eprintln!("skipping: {MODEL} not fetched (run scripts/fetch-models)");
        return;
    };
    let gguf = GgufFile::open(&path).unwrap();
    let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
    let exact = GgufFile::from_bytes(GgufWriter::dequantized(&gguf).unwrap().build()).unwrap();
    let mut reference = DecoderEngine::new(
        Arc::new(DecoderModel::from_gguf(exact).unwrap()),
        &EngineOptions {
            context_length: CTX,
            kv_cache: KvCacheType::F32,
            ..Default::default()
        },
    )
    .unwrap();
    let prompts: Vec<Vec<u32>> = prompts()
        .iter()
        .map(|p| tokenizer.encode(p).unwrap())
        .collect();
    // The reference's greedy continuations and teacher-forced logits.
    let expected: Vec<(Vec<u32>, Vec<f32>)> = prompts
        .iter()
        .map(|p| {
            let cont = greedy(&mut reference, p, STEPS).unwrap();
            let seq: Vec<u32> = p.iter().chain(&cont).copied().collect();
            reference.reset();
            (cont, reference.forward_all(&seq).unwrap())
        })
        .collect();

    let dir = std::env::temp_dir().join(format!("edgeai-onnx-engine-{}", std::process::id()));
    export_onnx(
        &gguf,
        &dir,
        &ExportOptions::default().with_max_positions(CTX),
    )
    .unwrap();
    let mut ran = Vec::new();
    for backend in edgeai::available_backends() {
        let name = format!("onnx:{backend}");
        let opts = LlmOptions {
            context_length: CTX,
            threads: 2,
            ..Default::default()
        };
        let mut llm = match edgeai::llm_engine(&name).unwrap().open(&dir, &opts) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{name}: cannot load the export: {e}");
                assert!(!matches!(backend, "tract" | "ort"), "{name}: {e}");
                continue;
            }
        };
        assert_eq!(llm.engine.name(), name);
        assert_eq!(llm.engine.context_length(), CTX);
        assert_eq!(llm.template, Some(ChatTemplate::for_gguf(&gguf).unwrap()));
        let mut worst = 0f32;
        let mut failed = None;
        let t0 = std::time::Instant::now();
        // ONNX Runtime runs the f32 model fastest: all ten prompts there; two elsewhere, to keep
        // the suite's time (tract, candle and burn take 30-100 s for ten in the dev profile).
        let n = if backend == "ort" { prompts.len() } else { 2 };
        for (i, (p, (cont, want_logits))) in prompts.iter().zip(&expected).enumerate().take(n) {
            assert_eq!(
                &llm.tokenizer.encode(&prompts_text(i)).unwrap(),
                p,
                "{name}: tokenizer.json vs the GGUF's tokenizer, prompt {i}"
            );
            let got = match greedy(llm.engine.as_mut(), p, STEPS) {
                Ok(g) => g,
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            };
            assert_eq!(&got, cont, "{name}: greedy {STEPS} tokens, prompt {i}");
            // Where the cache went round: in ONNX Runtime's and tract's own values, in host
            // tensors on the backends without values of their own.
            let decoder = llm
                .engine
                .as_any()
                .and_then(|a| a.downcast_ref::<OnnxDecoder>());
            let cache = decoder.expect("an OnnxDecoder").cache_backend();
            let want = matches!(backend, "ort" | "tract").then_some(backend);
            assert_eq!(cache, want, "{name}: where the cache lives after greedy");
            let seq: Vec<u32> = p.iter().chain(cont).copied().collect();
            llm.engine.reset();
            let logits = llm.engine.forward_all(&seq).unwrap();
            let r = rel(&logits, want_logits);
            worst = worst.max(r);
            assert!(r < TOLERANCE, "{name}: prompt {i}: logits rel {r:.2e}");
        }
        if let Some(e) = failed {
            eprintln!("{name}: cannot run the export: {e}");
            assert!(!matches!(backend, "tract" | "ort"), "{name}: {e}");
            continue;
        }
        if matches!(backend, "ort" | "tract") {
            // The same engine with the cache forced through host tensors: the same tokens.
            let mut host = OnnxEngine::new(edgeai::backend(backend).unwrap())
                .with_host_cache(true)
                .open(&dir, &opts)
                .unwrap();
            let got = greedy(host.engine.as_mut(), &prompts[0], STEPS).unwrap();
            assert_eq!(got, expected[0].0, "{name} with a host cache");
            let decoder = host
                .engine
                .as_any()
                .and_then(|a| a.downcast_ref::<OnnxDecoder>());
            assert_eq!(decoder.unwrap().cache_backend(), None, "{name}: host cache");
        }
        eprintln!(
            "{name}: greedy {STEPS} identical on {n} prompts; teacher-forced logits max rel \
             {worst:.2e} ({:.1} s)",
            t0.elapsed().as_secs_f64()
        );
        // A chat turn through the template and stop strings.
        let mut chat = llm.chat(None);
        let opts = GenerateOptions {
            max_tokens: 24,
            stop: Vec::new(),
            sampler: SamplerConfig {
                temperature: 0.0,
                ..Default::default()
            },
        };
        let g = chat
            .send(
                llm.engine.as_mut(),
                &llm.tokenizer,
                "What is the capital of France?",
                &opts,
                &mut |_| true,
            )
            .unwrap();
        assert!(g.text.contains("Paris"), "{name}: {:?}", g.text);
        ran.push(name);
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(ran.iter().any(|n| n == "onnx:tract"), "{ran:?}");
    assert_eq!(ran.contains(&"onnx:ort".to_string()), cfg!(feature = "ort"));
}

fn prompts_text(i: usize) -> String {
    prompts().swap_remove(i)
}
