//! The LLM engine registry: every compiled-in engine is listed and found by name, unknown
//! names are errors that list what exists, and the engines that read a GGUF agree with
//! `Llm::open` (skipped when the model is not fetched).

use edgeai::llm::engine::greedy;
use edgeai::llm::{EngineOptions, KvCacheType, Llm, LlmOptions};

const MODEL: &str = "llm/SmolLM2-135M-Instruct.Q4_1.gguf";

#[test]
fn every_listed_engine_is_found_and_unknown_ones_are_named_errors() {
    let names = edgeai::available_llm_engines();
    assert_eq!(names[0], "edgeai");
    assert_eq!(
        names.contains(&"candle".to_string()),
        cfg!(feature = "candle")
    );
    for b in edgeai::available_backends() {
        assert!(names.contains(&format!("onnx:{b}")), "{names:?}");
    }
    for n in &names {
        let e = edgeai::llm_engine(n).unwrap();
        assert_eq!(e.name(), n);
        assert!(!e.source().is_empty());
    }
    let e = edgeai::llm_engine("llama.cpp").err().unwrap().to_string();
    assert!(
        e.contains("unknown LLM engine `llama.cpp`") && e.contains("edgeai"),
        "{e}"
    );
    let e = edgeai::llm_engine("onnx:nope").err().unwrap().to_string();
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn onnx_engines_name_what_is_missing() {
    let dir = std::env::temp_dir().join(format!("edgeai-llm-engines-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for b in edgeai::available_backends() {
        let engine = edgeai::llm_engine(&format!("onnx:{b}")).unwrap();
        // No model in the directory.
        let e = engine
            .open(&dir, &LlmOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("model.onnx"), "{b}: {e}");
        // A cache type the ONNX model decides itself.
        let opts = LlmOptions {
            kv_cache: Some(KvCacheType::Q8_0),
            ..Default::default()
        };
        let e = engine.open(&dir, &opts).err().unwrap().to_string();
        assert!(e.contains("no KV cache choice"), "{b}: {e}");
        // A GGUF given to an ONNX engine, and a model without its tokenizer.
        let gguf = dir.join("model.gguf");
        std::fs::write(&gguf, b"GGUF").unwrap();
        let e = engine
            .open(&gguf, &LlmOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("edgeai export-onnx"), "{b}: {e}");
        std::fs::write(dir.join("model.onnx"), b"not onnx").unwrap();
        let e = engine
            .open(&dir, &LlmOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("tokenizer.json"), "{b}: {e}");
        std::fs::remove_file(dir.join("model.onnx")).unwrap();
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn gguf_engines_through_the_registry_match_llm_open() {
    let Some(path) = edgeai_testutil::model_path(MODEL) else {
        eprintln!("skipping: {MODEL} not fetched (run scripts/fetch-models)");
        return;
    };
    let prompt = [1u32, 504, 3458, 282, 4649, 314];
    let opts = LlmOptions {
        context_length: 256,
        kv_cache: Some(KvCacheType::F32),
        ..Default::default()
    };
    let mut direct = Llm::open(
        &path,
        &EngineOptions {
            context_length: 256,
            kv_cache: KvCacheType::F32,
            ..Default::default()
        },
    )
    .unwrap();
    let want = greedy(direct.engine.as_mut(), &prompt, 8).unwrap();
    let mut native = edgeai::llm_engine("edgeai")
        .unwrap()
        .open(&path, &opts)
        .unwrap();
    assert!(native.native().is_some());
    assert!(native.template.is_some());
    assert_eq!(native.engine.context_length(), 256);
    assert_eq!(greedy(native.engine.as_mut(), &prompt, 8).unwrap(), want);
    assert!(native.engine.describe().starts_with("edgeai (llama"));

    #[cfg(feature = "candle")]
    {
        let mut candle = edgeai::llm_engine("candle")
            .unwrap()
            .open(&path, &opts)
            .unwrap();
        assert!(candle.native().is_none());
        assert_eq!(candle.engine.name(), "candle");
        assert_eq!(candle.tokenizer.vocab_size(), native.tokenizer.vocab_size());
        // Quantized engines may part at a near tie (see llm_candle_crosscheck); the first
        // greedy token of this prompt is not one.
        assert_eq!(
            greedy(candle.engine.as_mut(), &prompt, 1).unwrap()[0],
            want[0]
        );
        let q8 = LlmOptions {
            kv_cache: Some(KvCacheType::Q8_0),
            ..opts.clone()
        };
        let e = edgeai::llm_engine("candle").unwrap().open(&path, &q8);
        assert!(e.err().unwrap().to_string().contains("f32 cache"));
    }
}
