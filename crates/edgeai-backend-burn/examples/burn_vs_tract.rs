//! Times one model on burn (flex, and ndarray when compiled in) and on tract, interleaved,
//! and prints the median run time and the max abs difference of the outputs.
//!
//! `cargo run -p edgeai-backend-burn --example burn_vs_tract [--release] -- [MODEL] [RUNS] [THREADS]`
//! (defaults: face/sface.onnx under the models folder, 20 runs, 1 thread).

use std::time::Instant;

use edgeai_backend_burn::{BurnBackend, Engine};
use edgeai_backend_tract::TractBackend;
use edgeai_core::{paths::model_path, Backend, Dim, LoadOptions, Model, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let rel = args.get(1).map_or("face/sface.onnx", String::as_str);
    let runs: usize = args.get(2).map_or(Ok(20), |s| s.parse())?;
    let threads: usize = args.get(3).map_or(Ok(1), |s| s.parse())?;
    let Some(path) = model_path(rel) else {
        eprintln!("skipping: {rel} not fetched (run scripts/fetch-models)");
        return Ok(());
    };
    let opts = LoadOptions::new().with_threads(threads);
    let mut models: Vec<(&str, Box<dyn Model>)> = vec![(
        "tract",
        TractBackend::new().load(path.clone().into(), &opts)?,
    )];
    for (name, e) in [
        ("burn-flex", Engine::Flex),
        ("burn-ndarray", Engine::NdArray),
    ] {
        if e.is_compiled() {
            let t = Instant::now();
            let m = BurnBackend::with_engine(e).load(path.clone().into(), &opts)?;
            println!("{name}: load {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
            models.push((name, m));
        }
    }
    // Symbolic dimensions (a batch) as 1, spatial ones as 48x192 (the PP-OCR classifier).
    let spec = &models[0].1.inputs()[0];
    let shape: Vec<usize> = spec
        .shape
        .as_ref()
        .ok_or("input rank unknown")?
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            Dim::Fixed(n) => *n,
            Dim::Symbolic(_) => [1, 3, 48, 192].get(i).copied().unwrap_or(1),
        })
        .collect();
    let n: usize = shape.iter().product();
    let x = Tensor::from_vec(
        shape.clone(),
        (0..n).map(|i| ((i * 7919) % 255) as f32).collect(),
    )?;
    let reference = models[0].1.run(vec![x.clone()])?;
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); models.len()];
    for _ in 0..runs {
        for (k, (_, m)) in models.iter().enumerate() {
            let t = Instant::now();
            let out = m.run(vec![x.clone()])?;
            times[k].push(t.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(out);
        }
    }
    println!("{rel} input {shape:?}, {runs} interleaved runs, {threads} thread(s)");
    for ((name, m), t) in models.iter().zip(&mut times) {
        t.sort_by(f64::total_cmp);
        let out = m.run(vec![x.clone()])?;
        let diff = out
            .iter()
            .zip(&reference)
            .map(|(a, b)| {
                let (a, b) = (
                    a.as_slice::<f32>().unwrap_or(&[]),
                    b.as_slice::<f32>().unwrap_or(&[]),
                );
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0f32, f32::max)
            })
            .fold(0.0f32, f32::max);
        println!(
            "{name:>13}: median {:7.2} ms  min {:7.2} ms  max abs diff vs tract {diff:.1e}",
            t[t.len() / 2],
            t[0]
        );
    }
    Ok(())
}
