//! `edgeai face`: the face_id example's features through `edgeai-vision`.

use std::path::{Path, PathBuf};

use edgeai::core::LoadOptions;
use edgeai::vision::{
    draw, FaceRecognizer, Gallery, GalleryConfig, Image, ImageLimits, SearchPrecision,
};

use serde_json::json;

use crate::fail::{Context, Failure, Result};
use crate::progress;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The gallery file (default: `$XDG_DATA_HOME/edgeai/gallery.sqlite`, else
    /// `~/.local/share/edgeai/gallery.sqlite`).
    #[arg(long, global = true)]
    pub gallery: Option<PathBuf>,
    /// Backend for the detector and the embedder (default: the first compiled in).
    #[arg(long, short, global = true)]
    pub backend: Option<String>,
    /// Cosine similarity at or above which two faces are the same person
    /// (default: the gallery's, SFace's 0.363).
    #[arg(long, global = true)]
    pub threshold: Option<f32>,
    /// Int8 gallery search with exact re-ranking.
    #[arg(long, global = true)]
    pub int8: bool,
    /// `identify` and `verify`: print one JSON document (full-precision scores) instead of
    /// text lines, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    /// Face detector model (default: models/face/yunet.onnx).
    #[arg(long, global = true, value_name = "ONNX")]
    pub detector: Option<PathBuf>,
    /// Face embedding model (default: models/face/sface.onnx).
    #[arg(long, global = true, value_name = "ONNX")]
    pub embedder: Option<PathBuf>,
    #[command(subcommand)]
    pub command: FaceCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum FaceCommand {
    /// Add NAME with the largest face of each photo (all photos are checked before anything
    /// is written).
    Enroll {
        name: String,
        #[arg(required = true)]
        photos: Vec<PathBuf>,
    },
    /// Find and name every face in a photo; writes an annotated PNG.
    Identify {
        photo: PathBuf,
        /// The annotated image (default: `<photo stem>_annotated.png`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Whether the largest faces of two photos are the same person.
    Verify { a: PathBuf, b: PathBuf },
    /// List enrolled identities.
    List,
    /// Remove an identity.
    Remove { name: String },
}

fn recognizer(a: &Args) -> Result<FaceRecognizer> {
    let backend = crate::run::backend(a.backend.as_deref())?;
    let models = crate::run::models_dir();
    Ok(progress::with_spinner("loading the face models", || {
        FaceRecognizer::from_default_models(
            backend.as_ref(),
            models.as_deref(),
            a.detector.clone(),
            a.embedder.clone(),
            &LoadOptions::new(),
        )
    })?)
}

fn gallery_path(a: &Args) -> PathBuf {
    a.gallery.clone().unwrap_or_else(|| {
        Gallery::default_path(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
    })
}

fn open_gallery(a: &Args) -> Result<Gallery> {
    let mut cfg = GalleryConfig::default();
    if let Some(t) = a.threshold {
        cfg.threshold = t;
    }
    if a.int8 {
        cfg.precision = SearchPrecision::Int8Rerank;
    }
    Ok(Gallery::open_creating(gallery_path(a), cfg)?)
}

fn open_image(p: &Path) -> Result<Image> {
    Ok(Image::open(p, &ImageLimits::default())?)
}

pub fn main(a: Args) -> Result<()> {
    if let Some(t) = a.threshold {
        if !(-1.0..=1.0).contains(&t) {
            return Err(Failure::usage("--threshold must be a cosine in [-1, 1]"));
        }
    }
    match &a.command {
        FaceCommand::Enroll { name, photos } => enroll(&a, name, photos),
        FaceCommand::Identify { photo, out } => identify(&a, photo, out.as_deref()),
        FaceCommand::Verify { a: pa, b: pb } => verify(&a, pa, pb),
        FaceCommand::List => {
            let g = open_gallery(&a)?;
            println!("{} identities in {}", g.len(), gallery_path(&a).display());
            for (name, n) in g.list() {
                println!("  {name} ({n} photo(s))");
            }
            Ok(())
        }
        FaceCommand::Remove { name } => {
            let mut g = open_gallery(&a)?;
            if g.remove(name)? {
                println!("removed `{name}`");
                Ok(())
            } else {
                Err(Failure::runtime(format!(
                    "no identity named `{name}` in {}",
                    gallery_path(&a).display()
                )))
            }
        }
    }
}

fn enroll(a: &Args, name: &str, photos: &[PathBuf]) -> Result<()> {
    let rec = recognizer(a)?;
    let pb = progress::bar(photos.len() as u64, format!("enrolling {name}"));
    let mut embeddings = Vec::new();
    for p in photos {
        let origin = p.display().to_string();
        let f = open_image(p).and_then(|img| Ok(rec.largest_face(&img, &origin)?));
        let f = match f {
            Ok(f) => f,
            Err(e) => {
                pb.abandon();
                return Err(e.context("nothing enrolled"));
            }
        };
        pb.suspend(|| {
            println!(
                "{origin}: face at ({:.0}, {:.0}) {:.0}x{:.0}, score {:.3}",
                f.face.bbox.x, f.face.bbox.y, f.face.bbox.width, f.face.bbox.height, f.face.score
            )
        });
        embeddings.push(f.embedding);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let mut g = open_gallery(a)?;
    g.enroll(name, &embeddings)?;
    println!(
        "enrolled `{name}` ({} photo(s)) in {}",
        embeddings.len(),
        gallery_path(a).display()
    );
    Ok(())
}

/// An f32 for JSON as its shortest decimal that reads back as the same f32 (`0.363`, not
/// `0.3630000054836273`).
fn num(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

fn identify(a: &Args, photo: &Path, out: Option<&Path>) -> Result<()> {
    let rec = recognizer(a)?;
    let g = open_gallery(a)?;
    let mut img = open_image(photo)?;
    let faces = rec.analyze(&img)?;
    if faces.is_empty() && !a.json {
        println!("{}: no face found", photo.display());
    }
    let mut labels = Vec::new();
    let mut docs = Vec::new();
    let embeddings: Vec<&[f32]> = faces.iter().map(|f| f.embedding.as_slice()).collect();
    let ids = g.identify_batch(&embeddings, 3)?;
    for (i, (f, id)) in faces.iter().zip(ids).enumerate() {
        let b = &f.face.bbox;
        let label = id.to_string();
        if a.json {
            docs.push(json!({
                "box": [num(b.x), num(b.y), num(b.width), num(b.height)],
                "detection": num(f.face.score),
                "identity": id.best().map(|m| m.name.as_str()),
                "candidates": id.candidates.iter()
                    .map(|m| json!({"name": m.name, "cosine": num(m.score)}))
                    .collect::<Vec<_>>(),
            }));
        } else {
            println!(
                "face {i}: box ({:.0}, {:.0}) {:.0}x{:.0}, detection {:.3}: {label}",
                b.x, b.y, b.width, b.height, f.face.score
            );
        }
        labels.push((f.face, id.best().is_some(), label));
    }
    for (face, known, label) in &labels {
        let color = if *known { [0, 220, 0] } else { [230, 40, 40] };
        draw::draw_face(&mut img, face, Some(label), color);
    }
    let out = out.map(Path::to_path_buf).unwrap_or_else(|| {
        let stem = photo
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "photo".into());
        PathBuf::from(format!("{stem}_annotated.png"))
    });
    img.save(&out)?;
    if a.json {
        let doc = json!({
            "photo": photo.display().to_string(),
            "threshold": num(g.config().threshold),
            "faces": docs,
            "annotated": out.display().to_string(),
        });
        println!("{doc}");
    } else {
        println!("annotated image: {}", out.display());
    }
    Ok(())
}

fn verify(a: &Args, pa: &Path, pb: &Path) -> Result<()> {
    let rec = recognizer(a)?;
    let mut emb = Vec::new();
    for p in [pa, pb] {
        let origin = p.display().to_string();
        let f = rec
            .largest_face(&open_image(p)?, &origin)
            .context(|| "verify")?;
        emb.push(f.embedding);
    }
    let threshold = a.threshold.unwrap_or(GalleryConfig::default().threshold);
    let v = edgeai::vision::verify(&emb[0], &emb[1], threshold)?;
    if a.json {
        let doc = json!({
            "a": pa.display().to_string(),
            "b": pb.display().to_string(),
            "cosine": num(v.score),
            "threshold": num(v.threshold),
            "same_person": v.same_person,
        });
        println!("{doc}");
        return Ok(());
    }
    println!(
        "cosine {:.3} (threshold {:.3}): {}",
        v.score,
        v.threshold,
        if v.same_person {
            "same person"
        } else {
            "different people"
        }
    );
    Ok(())
}
