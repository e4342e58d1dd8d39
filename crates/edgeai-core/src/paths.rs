//! Where fetched models live.
//!
//! `scripts/fetch-models` downloads the pinned models into `models/` at the workspace root.
//! Code that needs them (tests, examples, benches) finds that folder with [`models_dir`].
//!
//! Library code reads no environment variable: a program that honours `$EDGEAI_MODELS`
//! ([`MODELS_ENV`]) reads it itself and passes it in, as the CLI, the examples and the tests
//! do:
//!
//! ```
//! use edgeai_core::paths::{models_dir, MODELS_ENV};
//!
//! let dir = models_dir(std::env::var_os(MODELS_ENV));
//! # let _ = dir;
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The environment variable by which edgeai's programs (the CLI, examples, benches, tests)
/// let a user point at another models folder. The library never reads it; see
/// [`models_dir`].
pub const MODELS_ENV: &str = "EDGEAI_MODELS";

/// The models folder: `explicit` when given (typically `std::env::var_os(MODELS_ENV)`), else
/// the first `models/` folder found in the current directory or its ancestors, else in the
/// ancestors of this crate's source folder (so tests find the workspace's `models/` from any
/// crate).
pub fn models_dir(explicit: Option<OsString>) -> Option<PathBuf> {
    if let Some(p) = explicit {
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

/// The path of a fetched model file, if the models folder ([`models_dir`] of `explicit`)
/// exists and holds it.
pub fn model_path(explicit: Option<OsString>, relative: impl AsRef<Path>) -> Option<PathBuf> {
    let p = models_dir(explicit)?.join(relative);
    p.exists().then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_folder_wins_and_missing_files_are_none() {
        let dir = std::env::temp_dir().join(format!("edgeai-paths-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("face")).unwrap();
        std::fs::write(dir.join("face/x.onnx"), b"x").unwrap();
        let explicit = || Some(dir.clone().into_os_string());
        assert_eq!(models_dir(explicit()), Some(dir.clone()));
        assert_eq!(
            model_path(explicit(), "face/x.onnx"),
            Some(dir.join("face/x.onnx"))
        );
        assert_eq!(model_path(explicit(), "face/missing.onnx"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
