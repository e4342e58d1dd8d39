//! Where fetched models live.
//!
//! `scripts/fetch-models` downloads the pinned models into `models/` at the workspace root.
//! Code that needs them (tests, examples, benches) finds that folder with [`models_dir`].

use std::path::{Path, PathBuf};

/// The environment variable that overrides the models folder.
pub const MODELS_ENV: &str = "EDGEAI_MODELS";

/// The models folder: `$EDGEAI_MODELS` if set, else the first `models/` folder found in the
/// current directory or its ancestors, else in the ancestors of this crate's source folder
/// (so tests find the workspace's `models/` from any crate).
pub fn models_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(MODELS_ENV) {
        return Some(PathBuf::from(p));
    }
    let from = |start: &Path| {
        start
            .ancestors()
            .map(|a| a.join("models"))
            .find(|p| p.is_dir())
    };
    std::env::current_dir()
        .ok()
        .and_then(|d| from(&d))
        .or_else(|| from(Path::new(env!("CARGO_MANIFEST_DIR"))))
}

/// The path of a fetched model file, if the models folder exists and holds it.
pub fn model_path(relative: impl AsRef<Path>) -> Option<PathBuf> {
    let p = models_dir()?.join(relative);
    p.exists().then_some(p)
}
