//! `edgeai bench`: load time, latency and peak memory per backend, through `edgeai::bench`.

use std::path::PathBuf;

use edgeai::bench::{measure, BenchConfig, BenchReport, InputMaker};
use serde_json::json;

use crate::fail::{Failure, Result};
use crate::progress;
use crate::run::{backend, check_graph_model, make_inputs, InputArg};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The model file (ONNX).
    pub model: PathBuf,
    /// A backend name, or `all` for every backend compiled in.
    #[arg(long, short, default_value = "all")]
    pub backend: String,
    /// Timed runs per backend.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Untimed runs after the first one.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Threads each backend may use (default: the backend's choice).
    #[arg(long, short)]
    pub threads: Option<usize>,
    /// Inputs as for `edgeai run` (`NAME=FILE.npy` or `NAME=random`); by default every input
    /// is random.
    #[arg(long = "input", short, value_name = "NAME=FILE|random", value_parser = crate::run::parse_input_arg)]
    pub inputs: Vec<InputArg>,
    /// Seed of random inputs.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Size given to symbolic dimensions of random inputs.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub dim: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

enum Row {
    Ok(BenchReport),
    Failed(String, String),
}

pub fn main(a: Args) -> Result<()> {
    if a.runs == 0 {
        return Err(Failure::usage("--runs must be at least 1"));
    }
    let names: Vec<String> = if a.backend == "all" {
        edgeai::available_backends()
            .into_iter()
            .map(String::from)
            .collect()
    } else {
        backend(Some(&a.backend))?;
        vec![a.backend.clone()]
    };
    if names.is_empty() {
        return Err(Failure::usage("no backend compiled in"));
    }
    check_graph_model(&a.model, "bench")?;
    let mut cfg = BenchConfig::new().with_runs(a.runs).with_warmup(a.warmup);
    if let Some(t) = a.threads {
        cfg = cfg.with_threads(t);
    }
    let mut rows = Vec::new();
    for name in &names {
        let b = backend(Some(name))?;
        let maker = if a.inputs.is_empty() {
            InputMaker::Random {
                seed: a.seed,
                symbolic_default: a.dim,
            }
        } else {
            // The specs are the model's: load once to read them (not timed).
            let (model, _) = crate::run::load(b.as_ref(), &a.model, a.threads)?;
            InputMaker::Given(make_inputs(model.as_ref(), &a.inputs, a.seed, a.dim)?)
        };
        let r = progress::with_spinner(
            format!(
                "{name}: loading and running {} time(s)",
                1 + a.warmup + a.runs
            ),
            || measure(b.as_ref(), a.model.as_path().into(), maker, &cfg),
        );
        match r {
            Ok(r) => rows.push(Row::Ok(r)),
            Err(e) if names.len() == 1 => return Err(e.into()),
            Err(e) => rows.push(Row::Failed(name.clone(), crate::fail::chain(&e))),
        }
    }
    if a.json {
        print_json(&a, &cfg, &rows);
    } else {
        print_table(&a, &cfg, &rows);
    }
    if rows.iter().all(|r| matches!(r, Row::Failed(..))) {
        return Err(Failure::runtime("no backend could run the model"));
    }
    Ok(())
}

fn mib(b: Option<u64>) -> String {
    b.map(|b| format!("{:.1}", b as f64 / (1024.0 * 1024.0)))
        .unwrap_or_else(|| "-".into())
}

fn print_table(a: &Args, cfg: &BenchConfig, rows: &[Row]) {
    println!(
        "model {} | {} timed run(s), {} warm-up | threads {}",
        a.model.display(),
        cfg.runs,
        cfg.warmup,
        cfg.threads
            .map(|t| t.to_string())
            .unwrap_or_else(|| "backend default".into())
    );
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>10} {:>13}",
        "backend", "load ms", "first ms", "median ms", "p90 ms", "peak RSS MiB"
    );
    for r in rows {
        match r {
            Row::Ok(r) => println!(
                "{:<10} {:>10.1} {:>10.2} {:>10.2} {:>10.2} {:>13}",
                r.backend,
                r.load_ms,
                r.first_run_ms,
                r.median_ms,
                r.p90_ms,
                mib(r.peak_rss_bytes)
            ),
            Row::Failed(name, e) => println!("{name:<10} failed: {e}"),
        }
    }
}

fn print_json(a: &Args, cfg: &BenchConfig, rows: &[Row]) {
    let rows: Vec<_> = rows
        .iter()
        .map(|r| match r {
            Row::Ok(r) => json!({
                "backend": r.backend,
                "ok": true,
                "load_ms": r.load_ms,
                "first_run_ms": r.first_run_ms,
                "median_ms": r.median_ms,
                "p90_ms": r.p90_ms,
                "min_ms": r.min_ms,
                "run_ms": r.run_ms,
                "peak_rss_bytes": r.peak_rss_bytes,
                "peak_rss_reset": r.peak_rss_reset,
                "input_shapes": r.inputs.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>(),
                "output_shapes": r.outputs.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>(),
            }),
            Row::Failed(name, e) => json!({"backend": name, "ok": false, "error": e}),
        })
        .collect();
    let doc = json!({
        "model": a.model.display().to_string(),
        "runs": cfg.runs,
        "warmup": cfg.warmup,
        "threads": cfg.threads,
        "results": rows,
    });
    println!("{doc}");
}
