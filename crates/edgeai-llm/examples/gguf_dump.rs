//! Prints a GGUF file's metadata (arrays summarised) and tensor table.
//!
//! `cargo run -p edgeai-llm --example gguf_dump -- models/llm/SmolLM2-135M-Instruct.Q4_1.gguf`
use edgeai_llm::gguf::{GgufFile, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: gguf_dump FILE.gguf")?;
    let f = GgufFile::open(&path)?;
    println!(
        "GGUF v{} data at {} align {}",
        f.version(),
        f.data_offset(),
        f.alignment()
    );
    for (k, v) in f.metadata() {
        match v {
            Value::Array(a) => {
                let head: Vec<String> = a.iter().take(4).map(|e| format!("{e:?}")).collect();
                println!("{k}: array[{}] {}", a.len(), head.join(", "));
            }
            Value::String(s) if s.len() > 200 => println!("{k}: string[{}] {:?}", s.len(), s),
            v => println!("{k}: {v:?}"),
        }
    }
    for t in f.tensors() {
        println!(
            "{} {:?} {} off={} size={}",
            t.name, t.dims, t.ty, t.offset, t.size
        );
    }
    Ok(())
}
