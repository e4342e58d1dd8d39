//! Chat with a small LLM (SmolLM2 by default) on edgeai's own kernels.
//!
//! ```text
//! cargo run --release --example chat                          # interactive
//! cargo run --release --example chat -- --prompt "Hi there"   # one shot
//! cargo run --release --features candle --example chat -- --engine candle --prompt "Hi"
//! # an ONNX decoder (edgeai export-onnx model.gguf out/) on ONNX Runtime:
//! cargo run --release --features ort --example chat -- --engine onnx:ort --model out --prompt "Hi"
//! ```
//!
//! Options: `--model PATH --prompt TEXT --system TEXT --seed N --temperature T --top-k K
//! --top-p P --min-p P --repeat-penalty R --max-tokens N --threads N --ctx N --engine
//! edgeai|candle|onnx:<backend>`. Interactive commands: `/reset` starts over, `/quit` (or EOF) exits.
//! Prefill and decode speeds are printed to stderr at the end.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use edgeai::llm::generate::{Chat, GenerateOptions, Throughput};
use edgeai::llm::{LanguageModel, LlmOptions, Packing, SamplerConfig};

const DEFAULT_MODEL: &str = "llm/SmolLM2-135M-Instruct.Q4_1.gguf";

struct Args {
    model: Option<PathBuf>,
    prompt: Option<String>,
    system: Option<String>,
    sampler: SamplerConfig,
    max_tokens: usize,
    threads: usize,
    ctx: usize,
    engine: String,
}

const USAGE: &str = "usage: chat [--model PATH] [--prompt TEXT] [--system TEXT] [--seed N] \
[--temperature T] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] [--max-tokens N] \
[--threads N] [--ctx N] [--engine edgeai|candle|onnx:<backend>]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        model: None,
        prompt: None,
        system: None,
        sampler: SamplerConfig::default(),
        max_tokens: 256,
        threads: 0,
        ctx: 2048,
        engine: "edgeai".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let val = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = |what: &str| format!("{flag}: `{val}` is not a valid {what}");
        match flag.as_str() {
            "--model" => a.model = Some(val.into()),
            "--prompt" => a.prompt = Some(val),
            "--system" => a.system = Some(val),
            "--seed" => a.sampler.seed = val.parse().map_err(|_| num("integer"))?,
            "--temperature" => a.sampler.temperature = val.parse().map_err(|_| num("number"))?,
            "--top-k" => a.sampler.top_k = val.parse().map_err(|_| num("integer"))?,
            "--top-p" => a.sampler.top_p = val.parse().map_err(|_| num("number"))?,
            "--min-p" => a.sampler.min_p = val.parse().map_err(|_| num("number"))?,
            "--repeat-penalty" => {
                a.sampler.repeat_penalty = val.parse().map_err(|_| num("number"))?
            }
            "--max-tokens" => a.max_tokens = val.parse().map_err(|_| num("integer"))?,
            "--threads" => a.threads = val.parse().map_err(|_| num("integer"))?,
            "--ctx" => a.ctx = val.parse().map_err(|_| num("integer"))?,
            "--engine" => a.engine = val,
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let path = match args.model.clone() {
        Some(p) => p,
        None => edgeai::core::paths::model_path(
            std::env::var_os(edgeai::core::paths::MODELS_ENV),
            DEFAULT_MODEL,
        )
        .ok_or_else(|| {
            format!("{DEFAULT_MODEL} not found: run scripts/fetch-models or pass --model")
        })?,
    };
    // The environment knobs the CLI has too (the library reads no environment variable).
    if let Ok(v) = std::env::var("EDGEAI_KERNEL") {
        edgeai::core::quant::force_kernel_path_by_name(&v)?;
    }
    let packing = match std::env::var("EDGEAI_PACK") {
        Ok(v) => v.parse::<Packing>()?,
        Err(_) => Packing::Auto,
    };
    let mut config = edgeai::BackendConfig::default();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        config = config.with_ort_library(p);
    }
    if let Some(d) = std::env::var_os(edgeai::core::paths::MODELS_ENV) {
        config = config.with_models_dir(d);
    }
    // One path for every engine: the registry opens the model with its tokenizer and template.
    let engine = edgeai::llm_engine_with(&args.engine, &config)?;
    let mut llm = engine.open(
        &path,
        &LlmOptions {
            context_length: args.ctx,
            threads: args.threads,
            packing,
            ..Default::default()
        },
    )?;
    eprintln!(
        "model {} | engine {} | context {}",
        path.display(),
        llm.engine.describe(),
        llm.engine.context_length(),
    );
    let opts = GenerateOptions {
        max_tokens: args.max_tokens,
        stop: Vec::new(),
        sampler: args.sampler.clone(),
    };
    let mut chat = llm.chat(args.system.as_deref());
    let (engine, tokenizer) = (llm.engine.as_mut(), &llm.tokenizer);
    let mut totals = Throughput::default();
    let turn = |chat: &mut Chat,
                engine: &mut dyn LanguageModel,
                text: &str,
                totals: &mut Throughput|
     -> Result<(), Box<dyn std::error::Error>> {
        let mut out = std::io::stdout().lock();
        let g = chat.send(engine, tokenizer, text, &opts, &mut |piece| {
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
            true
        })?;
        writeln!(out)?;
        totals.add(&g);
        tracing::debug!(reason = ?g.stop_reason, "turn done");
        Ok(())
    };

    if let Some(p) = &args.prompt {
        turn(&mut chat, engine, p, &mut totals)?;
    } else {
        eprintln!("type a message (/reset to start over, /quit to exit)");
        let stdin = std::io::stdin();
        loop {
            eprint!("> ");
            let mut line = String::new();
            if stdin.lock().read_line(&mut line)? == 0 {
                break;
            }
            let line = line.trim();
            match line {
                "" => continue,
                "/quit" | "/exit" => break,
                "/reset" => {
                    chat.clear();
                    engine.reset();
                    continue;
                }
                _ => {}
            }
            if let Err(e) = turn(&mut chat, engine, line, &mut totals) {
                eprintln!("error: {e}");
            }
        }
    }
    eprintln!("{totals}");
    Ok(())
}
