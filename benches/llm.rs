//! LLM throughput on SmolLM2-135M-Instruct Q4_1 (groups `llm_*`) and Gemma 3 270M Q4_K_M
//! (groups `gemma3_*`): prefill of 64, 256 and 512 tokens and single-token decode, with 1 and 2
//! threads; the native engine, candle's engine on the same GGUF (`CandleLlama`,
//! `CandleGemma3`) when built with `--features candle`, and SmolLM2 exported to ONNX (f32
//! weights, `edgeai export-onnx`, into a temporary directory) on every graph backend compiled
//! in (`onnx:tract`, `onnx:ort` with `--features ort`, ...); on ort and tract, which keep the
//! KV cache in their own values between runs, also `onnx:<backend>-hostcache`, the cache
//! copied through host tensors every run (`OnnxEngine::with_host_cache`).
//!
//! ```text
//! cargo bench --bench llm                       # edgeai only
//! cargo bench --features candle --bench llm     # edgeai and candle
//! cargo bench --features full --bench llm -- '^llm_decode/'   # every engine, decode only
//! ```
//!
//! Decode is timed per token at positions 64..192 (the prompt that fills the first 64 is
//! untimed). Criterion's throughput line reads as tokens per second.
//!
//! `EDGEAI_KERNEL=avx2|...` forces a kernel path; `EDGEAI_KV_CACHE=f16|q8_0|f32` picks the
//! native engine's KV cache (default f16, as llama.cpp's `-ctk/-ctv`).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use edgeai::llm::export::{export_onnx, ExportOptions};
use edgeai::llm::{
    DecoderEngine, DecoderModel, EngineOptions, KvCacheType, LanguageModel, LlmEngine, LlmOptions,
    OnnxEngine, Packing,
};

const MODEL: &str = "llm/SmolLM2-135M-Instruct.Q4_1.gguf";
const GEMMA3: &str = "llm/gemma-3-270m-Q4_K_M.gguf";
const CTX: usize = 512;
const DECODE_FROM: usize = 64;
const DECODE_TO: usize = 192;

fn tokens(model: &str, n: usize) -> Vec<u32> {
    // A fixed, ordinary token sequence (ids of common words, repeated).
    let base: &[u32] = if model == MODEL {
        &[
            504u32, 3575, 282, 4649, 314, 7042, 30, 198, 1068, 253, 1345, 2155,
        ]
    } else {
        // Gemma's ids of "The capital of France is Paris. It is".
        &[818, 5279, 529, 7001, 563, 9079, 236761, 1030, 563]
    };
    base.iter().copied().cycle().take(n).collect()
}

/// Engines under test (label, engine), each with a thread count; candle's pool is fixed at
/// creation. `edgeai` is the default load (row-interleaved packed weights where the CPU has
/// the packed kernels); `edgeai-rowmajor` the weights left in the map, when that differs.
fn engines(model: &str, threads: usize) -> Vec<(String, Box<dyn LanguageModel>)> {
    let path = edgeai_testutil::model_path(model).expect("model checked by caller");
    let opts = EngineOptions {
        context_length: CTX,
        batch: 64,
        kv_cache: kv_cache(),
        ..Default::default()
    };
    let native = |pack: Packing| -> Box<dyn LanguageModel> {
        let gguf = edgeai::llm::gguf::GgufFile::open(&path).expect("open model");
        let model = DecoderModel::from_gguf_with(gguf, pack).expect("load model");
        Box::new(DecoderEngine::new(std::sync::Arc::new(model), &opts).expect("engine"))
    };
    let mut v = vec![("edgeai".to_string(), native(Packing::Auto))];
    if Packing::Auto.packs() {
        v.push(("edgeai-rowmajor".to_string(), native(Packing::Never)));
    }
    #[cfg(feature = "candle")]
    v.push((
        "candle".to_string(),
        edgeai::backend_candle::open_llm(&path, CTX, threads).expect("candle"),
    ));
    // The same model exported to ONNX (f32 weights), on every graph backend compiled in.
    if model == MODEL {
        let dir = onnx_export(&path);
        for b in edgeai::available_backends() {
            let name = format!("onnx:{b}");
            let opts = LlmOptions {
                context_length: CTX,
                threads,
                ..Default::default()
            };
            match edgeai::llm_engine(&name).and_then(|e| e.open(&dir, &opts)) {
                Ok(llm) => v.push((name.clone(), llm.engine)),
                Err(e) => eprintln!("skipping {name}: {e}"),
            }
            // Where the backend keeps the KV cache in its own values, the same engine with
            // the cache copied through host tensors every run, for the difference.
            if matches!(b, "ort" | "tract") {
                let host = edgeai::backend(b)
                    .map_err(edgeai::llm::Error::from)
                    .and_then(|be| OnnxEngine::new(be).with_host_cache(true).open(&dir, &opts));
                match host {
                    Ok(llm) => v.push((format!("{name}-hostcache"), llm.engine)),
                    Err(e) => eprintln!("skipping {name}-hostcache: {e}"),
                }
            }
        }
    }
    v
}

fn onnx_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("edgeai-bench-onnx-{}", std::process::id()))
}

/// `edgeai export-onnx` of `gguf` into the target dir (once per bench process).
fn onnx_export(gguf: &std::path::Path) -> std::path::PathBuf {
    let dir = onnx_dir();
    if !dir.join("model.onnx").is_file() {
        let g = edgeai::llm::gguf::GgufFile::open(gguf).expect("open model");
        let opts = ExportOptions::default().with_max_positions(CTX);
        export_onnx(&g, &dir, &opts).expect("export-onnx");
    }
    dir
}

/// The KV cache type from `EDGEAI_KV_CACHE` (default: the engine's default, f16).
fn kv_cache() -> KvCacheType {
    match std::env::var("EDGEAI_KV_CACHE") {
        Ok(v) => KvCacheType::from_name(&v).expect("EDGEAI_KV_CACHE: f16, q8_0 or f32"),
        Err(_) => KvCacheType::default(),
    }
}

fn bench(c: &mut Criterion) {
    // `EDGEAI_KERNEL=avx2|...` forces a kernel path (e.g. AVX2 on an AVX-512 host).
    if let Ok(v) = std::env::var("EDGEAI_KERNEL") {
        edgeai::core::quant::force_kernel_path_by_name(&v).expect("EDGEAI_KERNEL");
    }
    eprintln!(
        "kernel path {}, packed kernels {}, KV cache {}",
        edgeai::core::quant::kernel_path(),
        edgeai::core::quant::packed_kernels_available(),
        kv_cache().name()
    );
    for (model, prefix) in [(MODEL, "llm"), (GEMMA3, "gemma3")] {
        if edgeai_testutil::model_path(model).is_none() {
            eprintln!("skipping: {model} not fetched (run scripts/fetch-models)");
            continue;
        }
        bench_model(c, model, prefix);
    }
    let _ = std::fs::remove_dir_all(onnx_dir());
}

fn bench_model(c: &mut Criterion, model: &str, prefix: &str) {
    for threads in [1usize, 2] {
        edgeai::core::quant::set_num_threads(threads);
        let mut engines = engines(model, threads);
        for n in [64usize, 256, 512] {
            let mut g = c.benchmark_group(format!("{prefix}_prefill_{n}"));
            g.sample_size(10)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(8))
                .throughput(Throughput::Elements(n as u64));
            let toks = tokens(model, n);
            for (name, e) in engines.iter_mut() {
                let id = BenchmarkId::new(name.as_str(), format!("{threads}t"));
                g.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            e.reset();
                            let t = Instant::now();
                            std::hint::black_box(e.forward(&toks).expect("prefill"));
                            total += t.elapsed();
                        }
                        total
                    })
                });
            }
            g.finish();
        }
        let mut g = c.benchmark_group(format!("{prefix}_decode"));
        g.sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(8))
            .throughput(Throughput::Elements(1));
        let prompt = tokens(model, DECODE_FROM);
        for (name, e) in engines.iter_mut() {
            let id = BenchmarkId::new(name.as_str(), format!("{threads}t"));
            e.reset();
            g.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for i in 0..iters {
                        if e.position() < DECODE_FROM || e.position() >= DECODE_TO {
                            e.reset();
                            e.forward(&prompt).expect("prompt");
                        }
                        let tok = 1000 + (i % 1000) as u32;
                        let t = Instant::now();
                        std::hint::black_box(e.forward(&[tok]).expect("decode"));
                        total += t.elapsed();
                    }
                    total
                })
            });
        }
        g.finish();
    }
}

/// Tokenizer encode throughput (the GGUF vocabulary, BPE built without tokenizers' word cache,
/// see fuzz/FINDINGS.md), on README.md: throughput reads as bytes of text per second.
fn bench_tokenize(c: &mut Criterion) {
    let Some(path) = edgeai_testutil::model_path(MODEL) else {
        return;
    };
    let gguf = edgeai::llm::gguf::GgufFile::open(&path).expect("open model");
    let tok = edgeai::llm::Tokenizer::from_gguf(&gguf).expect("tokenizer");
    let text = include_str!("../README.md");
    let mut g = c.benchmark_group("tokenize");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("encode/README.md", |b| b.iter(|| tok.encode(text).unwrap()));
    g.finish();
}

criterion_group!(benches, bench_tokenize, bench);
criterion_main!(benches);
