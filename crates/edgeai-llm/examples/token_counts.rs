//! What one decoded token asks of the kernels, counted ([`edgeai_core::quant::counters`]):
//! matrix products, weight bytes streamed and jobs handed to the helper threads, per kernel
//! path and weight layout. For CPUs where no timing is possible here (aarch64 under qemu),
//! and to check the [`Packing::Auto`] policy: on aarch64 it keeps the layout that reads
//! fewer bytes.
//!
//! ```text
//! cargo run --release -p edgeai-llm --example token_counts -- [MODEL.gguf] [--threads N] [--tokens N]
//! # aarch64, under qemu (scripts/test-aarch64's setup):
//! CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
//! CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -cpu cortex-a72 -L /usr/aarch64-linux-gnu" \
//! cargo run --release -p edgeai-llm --target aarch64-unknown-linux-gnu --example token_counts
//! ```
//!
//! Default model: the fetched SmolLM2-135M Q4_1. Each layout decodes `--tokens` tokens
//! (default 4) after a 16-token prompt; the counts are per token, identical for every token
//! of a decode (the work does not depend on the position, only the attention's length does,
//! and it streams no weights). Prints one table to stdout.

use std::path::PathBuf;

use edgeai_core::quant::{self, counters, KernelPath};
use edgeai_llm::{DecoderEngine, DecoderModel, EngineOptions, LanguageModel, Packing};

const DEFAULT_MODEL: &str = "llm/SmolLM2-135M-Instruct.Q4_1.gguf";

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut model, mut threads, mut tokens) = (None, 2usize, 4usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--threads" | "-t" => threads = args.next().ok_or("--threads N")?.parse()?,
            "--tokens" => tokens = args.next().ok_or("--tokens N")?.parse()?,
            "-h" | "--help" => {
                println!("usage: token_counts [MODEL.gguf] [--threads N] [--tokens N]");
                return Ok(());
            }
            p if !p.starts_with('-') && model.is_none() => model = Some(PathBuf::from(p)),
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    if tokens == 0 {
        return Err("--tokens must be at least 1".into());
    }
    let path = match model {
        Some(p) => p,
        None => edgeai_core::paths::model_path(
            std::env::var_os(edgeai_core::paths::MODELS_ENV),
            DEFAULT_MODEL,
        )
        .ok_or("no model given and SmolLM2 is not fetched (run scripts/fetch-models)")?,
    };
    quant::set_num_threads(threads);
    let file = std::fs::metadata(&path)?.len();
    println!(
        "{} ({:.1} MiB) | {} | {} thread(s) | per decoded token, {tokens} tokens after a \
         16-token prompt",
        path.display(),
        mib(file),
        std::env::consts::ARCH,
        quant::num_threads(),
    );
    println!(
        "{:<12} {:<10} {:>18} {:>10} {:>14} {:>12}",
        "path", "layout", "packed MiB (file)", "products", "weight MiB", "pool jobs"
    );
    let layouts = [
        ("row-major", Packing::Never),
        ("packed", Packing::Always),
        ("auto", Packing::Auto),
    ];
    for p in quant::available_kernel_paths() {
        quant::force_kernel_path(p)?;
        for (name, packing) in layouts {
            // Packed layouts on the scalar path run the scalar twin: the same bytes, but no
            // one would choose it; Auto there is row-major.
            if p == KernelPath::Scalar && packing == Packing::Always {
                continue;
            }
            let m = DecoderModel::open_with(&path, packing)?;
            let (packed_heap, packed_file) = m.packed_bytes();
            let mut e = DecoderEngine::new(
                m,
                &EngineOptions {
                    context_length: 64,
                    batch: 16,
                    ..Default::default()
                },
            )?;
            let prompt: Vec<u32> = (0..16).map(|i| 100 + i).collect();
            e.forward(&prompt)?;
            counters::reset();
            for t in 0..tokens {
                e.forward(&[200 + t as u32])?;
            }
            let c = counters::get();
            let per = |x: u64| x as f64 / tokens as f64;
            println!(
                "{:<12} {:<10} {:>18} {:>10.1} {:>14.2} {:>12.1}",
                p.name(),
                name,
                format!(
                    "{:.1} ({:.1})",
                    mib(packed_heap as u64),
                    mib(packed_file as u64)
                ),
                per(c.products),
                mib(c.weight_bytes) / tokens as f64,
                per(c.parallel_jobs),
            );
        }
    }
    Ok(())
}
