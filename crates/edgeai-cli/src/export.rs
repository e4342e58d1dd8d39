//! `edgeai export-onnx`: a llama-architecture GGUF to a decoder-only ONNX model (Hugging Face
//! Optimum / transformers.js layout) with its tokenizer and configs, through
//! `edgeai_llm::export`.

use std::path::PathBuf;
use std::time::Instant;

use edgeai::llm::export::{export_onnx, ExportOptions};
use edgeai::llm::gguf::GgufFile;

use crate::fail::{Context, Result};
use crate::inspect::human_bytes;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The GGUF model (architecture `llama`).
    pub model: PathBuf,
    /// The folder to write `model.onnx`, `tokenizer.json`, `tokenizer_config.json` and
    /// `config.json` into (created if missing).
    pub out_dir: PathBuf,
    /// Most positions the exported model runs at (rows of its RoPE tables; default: the
    /// GGUF's context length, at most 8192).
    #[arg(long)]
    pub max_positions: Option<usize>,
}

pub fn main(a: Args) -> Result<()> {
    let start = Instant::now();
    let gguf = GgufFile::open(&a.model)?;
    let mut opts = ExportOptions::default();
    if let Some(n) = a.max_positions {
        opts = opts.with_max_positions(n);
    }
    let report = export_onnx(&gguf, &a.out_dir, &opts)
        .context(|| format!("export-onnx {}", a.model.display()))?;
    let files: Vec<String> = report
        .files
        .iter()
        .map(|(p, n)| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            format!("{name} {}", human_bytes(*n))
        })
        .collect();
    println!(
        "{}: {} layers, opset {}, {}M parameters, {} positions, {:.1} s: {}",
        a.out_dir.display(),
        report.layers,
        report.opset,
        report.parameters / 1_000_000,
        report.max_positions,
        start.elapsed().as_secs_f64(),
        files.join(", ")
    );
    if !report.tokenizer_json {
        println!("(no tokenizer.json: the GGUF's tokenizer has no tokenizers-library form)");
    }
    Ok(())
}
