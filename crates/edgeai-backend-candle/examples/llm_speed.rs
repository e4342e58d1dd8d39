//! Quick prefill/decode throughput of the native engine and candle's on the same GGUF,
//! without criterion (the `benches/llm.rs` criterion bench measures the same things).
//!
//! `cargo run --release -p edgeai-backend-candle --example llm_speed -- [edgeai|candle|both] [threads...]`

use std::time::Instant;

use edgeai_backend_candle::CandleLlama;
use edgeai_llm::{DecoderEngine, DecoderModel, EngineOptions, LanguageModel};

const MODEL: &str = "llm/SmolLM2-135M-Instruct.Q4_1.gguf";

fn tokens(n: usize) -> Vec<u32> {
    let base = [
        504u32, 3575, 282, 4649, 314, 7042, 30, 198, 1068, 253, 1345, 2155,
    ];
    base.iter().copied().cycle().take(n).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn measure(e: &mut dyn LanguageModel, threads: usize) -> Result<(), edgeai_llm::Error> {
    let mut line = format!("{:7} {threads}t", e.name());
    for n in [64usize, 256] {
        let toks = tokens(n);
        let mut rates = Vec::new();
        for _ in 0..3 {
            e.reset();
            let t = Instant::now();
            e.forward(&toks)?;
            rates.push(n as f64 / t.elapsed().as_secs_f64());
        }
        line += &format!(" | prefill {n}: {:7.1} tok/s", median(rates));
    }
    let mut rates = Vec::new();
    for _ in 0..3 {
        e.reset();
        e.forward(&tokens(64))?;
        let n = 128;
        let t = Instant::now();
        for i in 0..n {
            e.forward(&[1000 + i as u32])?;
        }
        rates.push(n as f64 / t.elapsed().as_secs_f64());
    }
    line += &format!(" | decode (pos 64..192): {:6.1} tok/s", median(rates));
    println!("{line}");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "both".into());
    let threads: Vec<usize> = args.map(|a| a.parse()).collect::<Result<_, _>>()?;
    let threads = if threads.is_empty() {
        vec![1, 2]
    } else {
        threads
    };
    let path = edgeai_testutil::model_path(MODEL).ok_or("model not fetched")?;
    println!("kernels: {}", edgeai_core::quant::kernel_path().name());
    for &t in &threads {
        edgeai_core::quant::set_num_threads(t);
        if which != "candle" {
            let mut e = DecoderEngine::new(
                DecoderModel::open(&path)?,
                &EngineOptions {
                    context_length: 512,
                    batch: 64,
                    ..Default::default()
                },
            )?;
            measure(&mut e, t)?;
        }
        if which != "edgeai" {
            let mut c = CandleLlama::open(&path, 512, t)?;
            measure(&mut c, t)?;
        }
    }
    Ok(())
}
