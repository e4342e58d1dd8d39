//! `edgeai chat`: the chat example's features (streaming, sampling flags, one-shot prompt,
//! speeds at the end) through `edgeai-llm`; `--raw` continues text without a chat template
//! (for base models such as the fetched Gemma 3 270M).

use std::io::{BufRead, Write};
use std::path::PathBuf;

use edgeai::llm::generate::{self, Chat, GenerateOptions, Throughput};
use edgeai::llm::{ChatTemplate, KvCacheType, LanguageModel, LlmOptions, Packing, SamplerConfig};

use crate::fail::{Failure, Result};
use crate::progress;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model: a GGUF (architecture `llama` or `gemma3`) for the `edgeai` and `candle`
    /// engines; for `onnx:<backend>`, a decoder-only ONNX model (a directory with `model.onnx`
    /// and `tokenizer.json`, as `edgeai export-onnx` writes).
    pub model: PathBuf,
    /// Answer this one message and exit (default: interactive; `/reset`, `/quit`).
    #[arg(long, short)]
    pub prompt: Option<String>,
    /// No chat template: continue each prompt as raw text, from an empty context (for base
    /// models, which are not trained on chat turns).
    #[arg(long)]
    pub raw: bool,
    /// System prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Sampling temperature; 0 is greedy (deterministic).
    #[arg(long, default_value_t = SamplerConfig::default().temperature)]
    pub temperature: f32,
    /// Keep the K most likely tokens (0 = off).
    #[arg(long, default_value_t = SamplerConfig::default().top_k)]
    pub top_k: usize,
    /// Nucleus sampling threshold (1 = off).
    #[arg(long, default_value_t = SamplerConfig::default().top_p)]
    pub top_p: f32,
    /// Drop tokens below this fraction of the best one's probability (0 = off).
    #[arg(long, default_value_t = SamplerConfig::default().min_p)]
    pub min_p: f32,
    /// Repetition penalty (1 = off).
    #[arg(long, default_value_t = SamplerConfig::default().repeat_penalty)]
    pub repeat_penalty: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = SamplerConfig::default().seed)]
    pub seed: u64,
    /// Most tokens to generate per reply.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Kernel threads (0 = all cores).
    #[arg(long, short, default_value_t = 0)]
    pub threads: usize,
    /// Context length (KV cache size) in tokens.
    #[arg(long, default_value_t = 2048)]
    pub ctx: usize,
    /// Inference engine: `edgeai` (native kernels), `candle` (with the `candle` feature), or
    /// `onnx:<backend>` (`onnx:tract`, `onnx:ort`...: an ONNX decoder on a graph backend).
    #[arg(long, default_value = "edgeai")]
    pub engine: String,
    /// KV cache element type of the `edgeai` engine: `f16` (default, half the memory),
    /// `q8_0` (a quarter of f32's memory, as llama.cpp's `-ctk q8_0 -ctv q8_0`) or `f32`.
    /// candle's engine always keeps an f32 cache; an ONNX decoder keeps its model's type.
    #[arg(long)]
    pub kv_cache: Option<String>,
}

pub fn main(a: Args) -> Result<()> {
    let engines = edgeai::available_llm_engines();
    if !engines.contains(&a.engine) {
        return Err(Failure::usage(format!(
            "unknown engine `{}` (compiled in: {}{})",
            a.engine,
            engines.join(", "),
            if a.engine == "candle" {
                "; build with `--features candle`"
            } else {
                ""
            }
        )));
    }
    if !(a.temperature.is_finite() && a.temperature >= 0.0) {
        return Err(Failure::usage("--temperature must be a number >= 0"));
    }
    let kv_cache = match a.kv_cache.as_deref() {
        None => None,
        Some(s) => Some(KvCacheType::from_name(s).ok_or_else(|| {
            Failure::usage(format!("--kv-cache `{s}`: expected f16, q8_0 or f32"))
        })?),
    };
    if a.raw && a.system.is_some() {
        return Err(Failure::usage("--system needs a chat template: drop --raw"));
    }
    std::fs::metadata(&a.model).map_err(|e| edgeai::core::Error::io(&a.model, e))?;
    // `EDGEAI_PACK=0|1|auto`: whether the native engine repacks the weights at load (default:
    // where the kernel path has packed kernels).
    let packing = match std::env::var("EDGEAI_PACK") {
        Ok(v) => v
            .parse::<Packing>()
            .map_err(|e| Failure::usage(format!("EDGEAI_PACK: {e}")))?,
        Err(_) => Packing::Auto,
    };
    let engine = edgeai::llm_engine_with(&a.engine, &crate::run::backend_config())?;
    let opts = LlmOptions {
        context_length: a.ctx,
        threads: a.threads,
        kv_cache,
        packing,
    };
    let mut llm = progress::with_spinner(
        format!("loading {} on {}", a.model.display(), engine.name()),
        || engine.open(&a.model, &opts),
    )?;
    let template = if a.raw {
        None
    } else {
        Some(llm.template.clone().ok_or_else(|| {
            Failure::usage(
                "the model's chat template is not one edgeai can apply: pass --raw to continue \
                 text without one",
            )
        })?)
    };
    let threads = match a.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    eprintln!(
        "model {} | engine {} | {threads} thread(s) | context {} | {}",
        a.model.display(),
        llm.engine.describe(),
        llm.engine.context_length(),
        match &template {
            None => "raw completion".to_string(),
            Some(ChatTemplate::Gemma) => "Gemma turns".to_string(),
            Some(_) => "ChatML".to_string(),
        }
    );
    let opts = GenerateOptions {
        max_tokens: a.max_tokens,
        stop: Vec::new(),
        sampler: SamplerConfig {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            min_p: a.min_p,
            repeat_penalty: a.repeat_penalty,
            seed: a.seed,
            ..SamplerConfig::default()
        },
    };
    let raw = template.is_none();
    let mut chat = Chat::new(
        template.unwrap_or_else(ChatTemplate::chatml),
        a.system.as_deref(),
    );
    let mut totals = Throughput::default();
    let (engine, tokenizer) = (llm.engine.as_mut(), &llm.tokenizer);
    let mut turn = |chat: &mut Chat, engine: &mut dyn LanguageModel, text: &str| -> Result<()> {
        let mut out = std::io::stdout().lock();
        // A closed stdout (e.g. `| head`) stops generation instead of failing.
        let mut on_piece =
            |piece: &str| out.write_all(piece.as_bytes()).is_ok() && out.flush().is_ok();
        let g = if raw {
            engine.reset();
            let tokens = tokenizer.encode(text)?;
            generate::generate(engine, tokenizer, &tokens, &opts, &mut on_piece)?
        } else {
            chat.send(engine, tokenizer, text, &opts, &mut on_piece)?
        };
        let _ = writeln!(out);
        totals.add(&g);
        tracing::debug!(reason = ?g.stop_reason, "turn done");
        Ok(())
    };
    if let Some(p) = &a.prompt {
        turn(&mut chat, engine, p)?;
    } else {
        eprintln!("type a message (/reset to start over, /quit to exit)");
        let stdin = std::io::stdin();
        loop {
            eprint!("> ");
            let mut line = String::new();
            if stdin.lock().read_line(&mut line).map_err(Failure::from)? == 0 {
                break;
            }
            match line.trim() {
                "" => continue,
                "/quit" | "/exit" => break,
                "/reset" => {
                    chat.clear();
                    engine.reset();
                    continue;
                }
                text => {
                    if let Err(e) = turn(&mut chat, engine, text) {
                        eprintln!("edgeai: error: {}", e.message);
                    }
                }
            }
        }
    }
    eprintln!("{totals}");
    Ok(())
}
