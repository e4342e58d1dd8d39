//! `edgeai inspect`: what a model file holds.

use std::path::{Path, PathBuf};
use std::time::Instant;

use edgeai::core::{LoadOptions, ModelFormat, ModelSource};
use edgeai::llm::gguf::GgufFile;
use edgeai::onnx::OnnxInfo;

use crate::fail::Result;
use crate::progress;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file (ONNX, GGUF; TFLite/NNEF are shown through the backends that load them).
    pub model: PathBuf,
    /// Do not try loading a graph model on each compiled-in backend.
    #[arg(long)]
    pub no_load: bool,
    /// Show every operator type (default: the 15 most frequent).
    #[arg(long)]
    pub all_ops: bool,
}

pub fn main(a: Args) -> Result<()> {
    let meta = std::fs::metadata(&a.model).map_err(|e| edgeai::core::Error::io(&a.model, e))?;
    println!(
        "file:            {} ({})",
        a.model.display(),
        human_bytes(meta.len())
    );
    match ModelSource::from(a.model.as_path()).format() {
        ModelFormat::Gguf => gguf(&a.model),
        ModelFormat::Onnx => {
            onnx(&a)?;
            if !a.no_load {
                backends(&a.model, false);
            }
            Ok(())
        }
        other => {
            println!("format:          {other}");
            backends(&a.model, true);
            Ok(())
        }
    }
}

pub fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

fn human_count(n: u64) -> String {
    let f = n as f64;
    if f >= 1e9 {
        format!("{:.2} B", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.1} M", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.1} k", f / 1e3)
    } else {
        n.to_string()
    }
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|x| x.to_string())
        .unwrap_or_else(|| "-".into())
}

fn gguf(path: &Path) -> Result<()> {
    let f = progress::with_spinner(format!("reading {}", path.display()), || {
        GgufFile::open(path)
    })?;
    let s = f.summary();
    println!("format:          GGUF v{}", s.version);
    println!("architecture:    {}", opt(&s.architecture));
    println!("name:            {}", opt(&s.name));
    println!(
        "parameters:      {} ({} tensors)",
        human_count(s.parameters),
        s.tensors
    );
    println!("context length:  {}", opt(&s.context_length));
    println!(
        "layers:          {} | embedding {} | heads {} | kv heads {}",
        opt(&s.block_count),
        opt(&s.embedding_length),
        opt(&s.head_count),
        opt(&s.head_count_kv)
    );
    println!(
        "vocab size:      {} (tokenizer {})",
        opt(&s.vocab_size),
        opt(&s.tokenizer_model)
    );
    println!("tensor types:");
    for (ty, n, bytes) in &s.tensor_types {
        println!("  {ty:<8} {n:>5} tensors  {:>10}", human_bytes(*bytes));
    }
    match &s.chat_template {
        None => println!(
            "chat template:   - (none; chat uses {})",
            match edgeai::llm::ChatTemplate::for_gguf(&f) {
                Ok(edgeai::llm::ChatTemplate::Gemma) => "Gemma turns; a base model: try --raw",
                _ => "ChatML",
            }
        ),
        Some(t) => {
            let kind = match edgeai::llm::ChatTemplate::detect(t) {
                Ok(_) => "supported".to_string(),
                Err(e) => format!("not supported: {e}"),
            };
            println!("chat template:   {} chars, {kind}", t.len());
            for line in t.lines() {
                println!("  | {line}");
            }
        }
    }
    Ok(())
}

fn onnx(a: &Args) -> Result<()> {
    let info = progress::with_spinner(format!("reading {}", a.model.display()), || {
        OnnxInfo::read(&a.model)
    })?;
    println!("format:          ONNX (IR version {})", info.ir_version);
    let producer = format!("{} {}", info.producer_name, info.producer_version);
    println!(
        "producer:        {}",
        if producer.trim().is_empty() {
            "-"
        } else {
            producer.trim()
        }
    );
    let opsets: Vec<String> = info
        .opsets
        .iter()
        .map(|(d, v)| format!("{d} {v}"))
        .collect();
    println!("opsets:          {}", opsets.join(", "));
    println!("inputs:");
    for i in &info.inputs {
        println!(
            "  {:<24} {:<8} {}",
            i.name,
            i.elem_type_name(),
            i.shape_string()
        );
    }
    println!("outputs:");
    for o in &info.outputs {
        println!(
            "  {:<24} {:<8} {}",
            o.name,
            o.elem_type_name(),
            o.shape_string()
        );
    }
    println!(
        "graph:           {} nodes, {} initializers{}",
        info.nodes,
        info.initializers,
        if info.subgraphs > 0 {
            format!(", {} subgraphs", info.subgraphs)
        } else {
            String::new()
        }
    );
    println!("operators ({} types):", info.op_histogram.len());
    let shown = if a.all_ops { usize::MAX } else { 15 };
    for (op, n) in info.op_histogram.iter().take(shown) {
        println!("  {op:<28} {n:>5}");
    }
    if info.op_histogram.len() > shown {
        println!("  ... {} more (--all-ops)", info.op_histogram.len() - shown);
    }
    Ok(())
}

/// Tries loading the model on every compiled-in backend and says which can.
fn backends(path: &Path, show_specs: bool) {
    println!("backends:");
    for name in edgeai::available_backends() {
        let r = edgeai::backend_with(name, &crate::run::backend_config()).and_then(|b| {
            let t0 = Instant::now();
            let m = progress::with_spinner(format!("loading on {name}"), || {
                b.load(path.into(), &LoadOptions::new())
            })?;
            Ok((m, t0.elapsed().as_secs_f64() * 1e3))
        });
        match r {
            Ok((m, ms)) => {
                println!("  {name:<8} loads ({ms:.0} ms)");
                if show_specs {
                    for s in m.inputs() {
                        println!("    input  {:<20} {} {}", s.name, s.dtype, s.shape_string());
                    }
                    for s in m.outputs() {
                        println!("    output {:<20} {} {}", s.name, s.dtype, s.shape_string());
                    }
                }
            }
            Err(e) => println!("  {name:<8} cannot load: {}", crate::fail::chain(&e)),
        }
    }
}
