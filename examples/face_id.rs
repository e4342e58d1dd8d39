//! Air-gapped face identification from the command line.
//!
//! ```text
//! cargo run --release --example face_id -- enroll alice alice1.jpg alice2.jpg
//! cargo run --release --example face_id -- identify group.jpg --out group_annotated.png
//! cargo run --release --example face_id -- list
//! cargo run --release --example face_id -- remove alice
//! ```
//!
//! Options (anywhere on the line): `--gallery <path>` (default
//! `$XDG_DATA_HOME/edgeai/gallery.sqlite`, else `~/.local/share/edgeai/gallery.sqlite`),
//! `--backend <name>` (default: the first compiled in), `--threshold <cosine>`,
//! `--int8` (int8 gallery search with exact re-ranking), `--out <png>` (identify).
//! Models come from `models/` (`scripts/fetch-models`) or `$EDGEAI_MODELS`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use edgeai::core::{paths, LoadOptions};
use edgeai::vision::{
    draw, FaceRecognizer, Gallery, GalleryConfig, Image, ImageLimits, SearchPrecision,
};

type BoxError = Box<dyn std::error::Error>;

struct Args {
    gallery: PathBuf,
    backend: Option<String>,
    threshold: Option<f32>,
    int8: bool,
    out: Option<PathBuf>,
    rest: Vec<String>,
}

const USAGE: &str = "usage: face_id [--gallery PATH] [--backend NAME] [--threshold COS] [--int8] \
<enroll NAME PHOTO... | identify PHOTO [--out PNG] | list | remove NAME>";

fn parse() -> Result<Args, BoxError> {
    let mut a = Args {
        gallery: Gallery::default_path(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME")),
        backend: None,
        threshold: None,
        int8: false,
        out: None,
        rest: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--gallery" => a.gallery = value("--gallery")?.into(),
            "--backend" => a.backend = Some(value("--backend")?),
            "--threshold" => a.threshold = Some(value("--threshold")?.parse()?),
            "--out" => a.out = Some(value("--out")?.into()),
            "--int8" => a.int8 = true,
            "-h" | "--help" => return Err(USAGE.into()),
            _ => a.rest.push(arg),
        }
    }
    Ok(a)
}

fn recognizer(backend: Option<&str>) -> Result<FaceRecognizer, BoxError> {
    let backend = match backend {
        Some(name) => edgeai::backend(name)?,
        None => edgeai::default_backend()?,
    };
    let models = paths::models_dir(std::env::var_os(paths::MODELS_ENV));
    Ok(FaceRecognizer::from_default_models(
        backend.as_ref(),
        models.as_deref(),
        None,
        None,
        &LoadOptions::new(),
    )?)
}

fn open_gallery(a: &Args) -> Result<Gallery, BoxError> {
    let mut cfg = GalleryConfig::default();
    if let Some(t) = a.threshold {
        cfg.threshold = t;
    }
    if a.int8 {
        cfg.precision = SearchPrecision::Int8Rerank;
    }
    Ok(Gallery::open_creating(&a.gallery, cfg)?)
}

fn enroll(a: &Args, name: &str, photos: &[String]) -> Result<(), BoxError> {
    if photos.is_empty() {
        return Err(USAGE.into());
    }
    let rec = recognizer(a.backend.as_deref())?;
    // Every photo is checked before anything is written: one bad photo enrols nothing.
    let mut embeddings = Vec::new();
    for p in photos {
        let img = Image::open(p, &ImageLimits::default())?;
        let f = rec.largest_face(&img, p)?;
        println!(
            "{p}: face at ({:.0}, {:.0}) {:.0}x{:.0}, score {:.3}",
            f.face.bbox.x, f.face.bbox.y, f.face.bbox.width, f.face.bbox.height, f.face.score
        );
        embeddings.push(f.embedding);
    }
    let mut g = open_gallery(a)?;
    g.enroll(name, &embeddings)?;
    println!(
        "enrolled `{name}` ({} photo(s)) in {}",
        embeddings.len(),
        a.gallery.display()
    );
    Ok(())
}

fn identify(a: &Args, photo: &str) -> Result<(), BoxError> {
    let rec = recognizer(a.backend.as_deref())?;
    let g = open_gallery(a)?;
    let mut img = Image::open(photo, &ImageLimits::default())?;
    let faces = rec.analyze(&img)?;
    if faces.is_empty() {
        println!("{photo}: no face found");
    }
    let mut labels = Vec::new();
    for (i, f) in faces.iter().enumerate() {
        let id = g.identify(&f.embedding, 3)?;
        let b = &f.face.bbox;
        let label = id.to_string();
        println!(
            "face {i}: box ({:.0}, {:.0}) {:.0}x{:.0}, detection {:.3}: {label}",
            b.x, b.y, b.width, b.height, f.face.score
        );
        labels.push((f.face, id.best().is_some(), label));
    }
    for (face, known, label) in &labels {
        let color = if *known { [0, 220, 0] } else { [230, 40, 40] };
        draw::draw_face(&mut img, face, Some(label), color);
    }
    let out = a.out.clone().unwrap_or_else(|| {
        let stem = Path::new(photo)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "photo".into());
        PathBuf::from(format!("{stem}_annotated.png"))
    });
    img.save(&out)?;
    println!("annotated image: {}", out.display());
    Ok(())
}

fn run() -> Result<(), BoxError> {
    let a = parse()?;
    let cmd: Vec<&str> = a.rest.iter().map(String::as_str).collect();
    match cmd.as_slice() {
        ["enroll", name, photos @ ..] => {
            let photos: Vec<String> = photos.iter().map(|s| s.to_string()).collect();
            enroll(&a, name, &photos)
        }
        ["identify", photo] => identify(&a, photo),
        ["list"] => {
            let g = open_gallery(&a)?;
            println!("{} identities in {}", g.len(), a.gallery.display());
            for (name, n) in g.list() {
                println!("  {name} ({n} photo(s))");
            }
            Ok(())
        }
        ["remove", name] => {
            let mut g = open_gallery(&a)?;
            if g.remove(name)? {
                println!("removed `{name}`");
                Ok(())
            } else {
                Err(format!("no identity named `{name}` in {}", a.gallery.display()).into())
            }
        }
        _ => Err(USAGE.into()),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("face_id: {e}");
            ExitCode::FAILURE
        }
    }
}
