//! `edgeai`: inspect, run and benchmark models, chat with a GGUF LLM, identify faces.
//!
//! A thin layer over the `edgeai` library crates: every figure and every decision comes from
//! them; this binary parses arguments, shows progress and prints results.
//!
//! Exit codes: 0 success, 1 runtime error (a bad file, a failed run), 2 usage error (a bad
//! flag, an unknown backend or input name). Errors print one line, `edgeai: error: ...`.

mod bench;
mod chat;
mod export;
mod face;
mod fail;
mod inspect;
mod progress;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::fail::Failure;

/// Run AI models on edge devices: inspect, run and benchmark models, chat, face ID.
#[derive(Parser, Debug)]
#[command(name = "edgeai", version, about, propagate_version = true)]
struct Cli {
    /// Log level: error, warn, info, debug, trace, or a tracing filter such as
    /// `edgeai_llm=debug`. Without it, `RUST_LOG` is used, else `warn`.
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show what a model file holds: ONNX inputs/outputs, opsets, operators and which
    /// backends load it; GGUF architecture, size, tensor types, context, vocabulary.
    Inspect(inspect::Args),
    /// Run a graph model once on .npy (or random) inputs and write its outputs as .npy.
    Run(run::Args),
    /// Measure load time, latency and peak memory of a graph model on one or all backends.
    Bench(bench::Args),
    /// Chat with a GGUF LLM (Llama family, Gemma 3): interactive, one shot with --prompt, or
    /// raw text continuation with --raw.
    Chat(chat::Args),
    /// Face identification with a persistent gallery.
    Face(face::Args),
    /// Export a llama-architecture GGUF to an ONNX decoder (Optimum / transformers.js
    /// layout: model.onnx with KV-cache inputs and outputs, tokenizer.json, configs).
    ExportOnnx(export::Args),
}

fn init_logging(level: Option<&str>) -> Result<(), Failure> {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => {
            EnvFilter::try_new(l).map_err(|e| Failure::usage(format!("--log-level `{l}`: {e}")))?
        }
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

/// `EDGEAI_KERNEL=scalar|avx2|...` forces a kernel path (the library reads no environment
/// variable; this binary does and passes it on). A path this CPU lacks is a usage error that
/// names it and lists what the CPU has.
fn kernel_from_env() -> Result<(), Failure> {
    if let Some(v) = std::env::var_os("EDGEAI_KERNEL") {
        let v = v.to_string_lossy();
        edgeai::core::quant::force_kernel_path_by_name(&v)
            .map_err(|e| Failure::usage(format!("EDGEAI_KERNEL={v}: {e}")))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2 (0 for --help / --version).
    let cli = Cli::parse();
    let result = init_logging(cli.log_level.as_deref())
        .and_then(|()| kernel_from_env())
        .and_then(|()| match cli.command {
            Command::Inspect(a) => inspect::main(a),
            Command::Run(a) => run::main(a),
            Command::Bench(a) => bench::main(a),
            Command::Chat(a) => chat::main(a),
            Command::Face(a) => face::main(a),
            Command::ExportOnnx(a) => export::main(a),
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("edgeai: error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
