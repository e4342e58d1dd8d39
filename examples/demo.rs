//! The quick-start demo: air-gapped face recognition, then a short chat, on the default
//! backend (tract) and edgeai's own quantized kernels, with the models `scripts/fetch-models`
//! put in `models/`.
//!
//! ```text
//! python3 scripts/fetch-models && cargo run --example demo
//! cargo run --features ort --example demo -- --backend ort
//! ```
//!
//! 1. Loads YuNet + SFace, enrolls "Barack Obama" from `photos/obama.jpg` and "Joe Biden" from
//!    `photos/biden.jpg` into an in-memory gallery.
//! 2. Identifies the faces in the other photos (`obama2.jpg`, `obama3.jpg`, the group photo
//!    `t1.jpg`) and prints boxes, names and cosine scores.
//! 3. Asks SmolLM2-135M-Instruct (Q4_1 GGUF) a question and prints the answer with tokens/s;
//!    `--model models/llm/gemma-3-270m-Q4_K_M.gguf` picks another GGUF (a base model without a
//!    chat template, like that Gemma 3, continues a sentence instead).

use std::process::ExitCode;
use std::time::Instant;

use edgeai::core::{paths, LoadOptions};
use edgeai::llm::{EngineOptions, GenerateOptions, LanguageModel, Llm, Packing};
use edgeai::vision::{FaceRecognizer, Gallery, GalleryConfig, Image, ImageLimits, YuNetConfig};

fn need(rel: &str) -> Result<std::path::PathBuf, String> {
    paths::model_path(std::env::var_os(paths::MODELS_ENV), rel).ok_or_else(|| {
        format!("{rel} not found under models/: run `python3 scripts/fetch-models` first")
    })
}

fn faces(backend_name: &str, threads: usize) -> Result<(), Box<dyn std::error::Error>> {
    let backend = edgeai::backend(backend_name)?;
    let t = Instant::now();
    let recognizer = FaceRecognizer::from_backend(
        backend.as_ref(),
        need("face/yunet.onnx")?,
        need("face/sface.onnx")?,
        &LoadOptions::new().with_threads(threads),
        YuNetConfig::default(),
    )?;
    println!(
        "== face recognition on `{}`, {threads} thread(s) (models loaded in {:.0} ms)",
        backend.name(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let open = |name: &str| -> Result<Image, Box<dyn std::error::Error>> {
        Ok(Image::open(
            need(&format!("photos/{name}"))?,
            &ImageLimits::default(),
        )?)
    };
    let mut gallery = Gallery::open_in_memory(GalleryConfig::default())?;
    for (person, photo) in [("Barack Obama", "obama.jpg"), ("Joe Biden", "biden.jpg")] {
        let face = recognizer.largest_face(&open(photo)?, photo)?;
        gallery.enroll(person, &[face.embedding])?;
        println!("enrolled {person:<13} from {photo}");
    }
    for photo in ["obama2.jpg", "obama3.jpg", "t1.jpg"] {
        let img = open(photo)?;
        let t = Instant::now();
        let found = recognizer.analyze(&img)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        println!(
            "{photo} ({}x{}): {} face(s) in {ms:.0} ms",
            img.width(),
            img.height(),
            found.len()
        );
        for f in &found {
            let id = gallery.identify(&f.embedding, 1)?;
            let b = &f.face.bbox;
            let who = match (id.best(), id.candidates.first()) {
                (Some(m), _) => format!("{} (cosine {:.3})", m.name, m.score),
                (None, Some(m)) => format!("unknown (closest: {} at {:.3})", m.name, m.score),
                (None, None) => "unknown".to_string(),
            };
            println!(
                "  box x {:4.0} y {:4.0} w {:4.0} h {:4.0}, detection score {:.2}: {who}",
                b.x, b.y, b.width, b.height, f.face.score
            );
        }
    }
    Ok(())
}

fn chat(
    model: Option<&str>,
    threads: usize,
    packing: Packing,
) -> Result<(), Box<dyn std::error::Error>> {
    let path = match model {
        Some(p) => std::path::PathBuf::from(p),
        None => need("llm/SmolLM2-135M-Instruct.Q4_1.gguf")?,
    };
    let t = Instant::now();
    edgeai::core::quant::set_num_threads(threads);
    let mut llm = Llm::open(
        &path,
        &EngineOptions {
            packing,
            ..EngineOptions::default()
        },
    )?;
    let name = path
        .file_name()
        .map_or("the model".into(), |n| n.to_string_lossy().into_owned());
    // A base model (no chat template in the file, e.g. the fetched Gemma 3 270M) continues
    // text instead of answering turns.
    let native = llm.native().expect("Llm::open runs the native engine");
    let base = native
        .model()
        .gguf()
        .get_str("tokenizer.chat_template")
        .is_none();
    println!(
        "\n== {} {name} ({}) on edgeai kernels (loaded in {:.0} ms)",
        if base { "complete with" } else { "chat with" },
        native.model().config().arch.name(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let opts = GenerateOptions {
        max_tokens: 48,
        ..GenerateOptions::default()
    };
    let mut show = |piece: &str| {
        use std::io::Write;
        print!("{piece}");
        let _ = std::io::stdout().flush();
        true
    };
    let packed = native.model().is_packed();
    let gen = if base {
        let prompt = "The capital of Germany is";
        print!("{prompt}");
        llm.engine.reset();
        let tokens = llm.tokenizer.encode(prompt)?;
        edgeai::llm::generate::generate(
            llm.engine.as_mut(),
            &llm.tokenizer,
            &tokens,
            &opts,
            &mut show,
        )?
    } else {
        let question = "What is the capital of Germany? Answer in one sentence.";
        let mut conversation = llm.chat(None);
        println!("user: {question}");
        print!("assistant: ");
        conversation.send(
            llm.engine.as_mut(),
            &llm.tokenizer,
            question,
            &opts,
            &mut show,
        )?
    };
    println!(
        "\n[{} prompt tokens at {:.0} tok/s, {} generated at {:.1} tok/s, {} thread(s), kernels {}{}]",
        gen.prompt_tokens,
        gen.prefill_tok_s(),
        gen.tokens.len(),
        gen.decode_tok_s(),
        edgeai::core::quant::num_threads(),
        edgeai::core::quant::kernel_path(),
        if packed {
            " (packed weights)"
        } else {
            ""
        }
    );
    Ok(())
}

/// `EDGEAI_KERNEL=scalar|avx2|...` forces a kernel path, `EDGEAI_PACK=0|1|auto` the weight
/// layout, as in the `edgeai` CLI (the library reads no environment variable).
fn env_options() -> Result<Packing, String> {
    if let Ok(v) = std::env::var("EDGEAI_KERNEL") {
        edgeai::core::quant::force_kernel_path_by_name(&v)
            .map_err(|e| format!("EDGEAI_KERNEL={v}: {e}"))?;
    }
    match std::env::var("EDGEAI_PACK") {
        Ok(v) => v
            .parse::<Packing>()
            .map_err(|e| format!("EDGEAI_PACK: {e}")),
        Err(_) => Ok(Packing::Auto),
    }
}

fn main() -> ExitCode {
    let mut backend = "tract".to_string();
    let mut model: Option<String> = None;
    let mut threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--backend", Some(v)) => backend = v,
            ("--model", Some(v)) => model = Some(v),
            ("--threads", Some(v)) => match v.parse() {
                Ok(n) if n > 0 => threads = n,
                _ => {
                    eprintln!("demo: --threads needs a positive number, got `{v}`");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("usage: demo [--backend tract|ort|...] [--threads N] [--model LLM.gguf]");
                return ExitCode::from(2);
            }
        }
    }
    let packing = match env_options() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = faces(&backend, threads) {
        eprintln!("demo: face recognition failed: {e}");
        return ExitCode::from(1);
    }
    if let Err(e) = chat(model.as_deref(), threads, packing) {
        eprintln!("demo: chat failed: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
