use std::fmt;
use std::path::{Path, PathBuf};

use crate::{Error, Model, Result};

/// Where a model comes from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A file on disk.
    Path(PathBuf),
    /// The model file's bytes, already in memory.
    Bytes(Vec<u8>),
}

impl ModelSource {
    /// A short description for error messages: the path, or `<N bytes>`.
    pub fn origin(&self) -> String {
        match self {
            ModelSource::Path(p) => p.display().to_string(),
            ModelSource::Bytes(b) => format!("<{} bytes>", b.len()),
        }
    }

    /// Reads the whole model into memory (a copy only for [`ModelSource::Path`]).
    pub fn into_bytes(self) -> Result<Vec<u8>> {
        match self {
            ModelSource::Path(p) => std::fs::read(&p).map_err(|e| Error::io(p, e)),
            ModelSource::Bytes(b) => Ok(b),
        }
    }

    /// Errors with [`Error::UnsupportedFormat`] unless [`ModelSource::format`] is one of
    /// `supported`: the check every backend's `load` starts with.
    pub fn check_format(&self, backend: &str, supported: &[ModelFormat]) -> Result<ModelFormat> {
        let format = self.format();
        if supported.contains(&format) {
            Ok(format)
        } else {
            Err(Error::UnsupportedFormat {
                backend: backend.to_string(),
                format: format.to_string(),
            })
        }
    }

    /// Guesses the format from the file extension or, for bytes, from the first bytes.
    pub fn format(&self) -> ModelFormat {
        match self {
            ModelSource::Path(p) => match p
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
            {
                Some(e) if e == "tflite" => ModelFormat::Tflite,
                Some(e) if e == "gguf" => ModelFormat::Gguf,
                _ => ModelFormat::Onnx,
            },
            ModelSource::Bytes(b) => {
                if b.starts_with(b"GGUF") {
                    ModelFormat::Gguf
                } else if b.len() >= 8 && &b[4..8] == b"TFL3" {
                    ModelFormat::Tflite
                } else {
                    ModelFormat::Onnx
                }
            }
        }
    }
}

impl From<&Path> for ModelSource {
    fn from(p: &Path) -> Self {
        ModelSource::Path(p.to_path_buf())
    }
}

impl From<PathBuf> for ModelSource {
    fn from(p: PathBuf) -> Self {
        ModelSource::Path(p)
    }
}

impl From<&str> for ModelSource {
    fn from(p: &str) -> Self {
        ModelSource::Path(PathBuf::from(p))
    }
}

impl From<Vec<u8>> for ModelSource {
    fn from(b: Vec<u8>) -> Self {
        ModelSource::Bytes(b)
    }
}

/// Model file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelFormat {
    /// ONNX protobuf.
    Onnx,
    /// TensorFlow Lite flatbuffer.
    Tflite,
    /// GGUF (LLM weights; loaded by `edgeai-llm`, not by graph backends).
    Gguf,
}

impl fmt::Display for ModelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelFormat::Onnx => "ONNX",
            ModelFormat::Tflite => "TFLite",
            ModelFormat::Gguf => "GGUF",
        })
    }
}

/// Graph optimisation level asked of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OptLevel {
    /// No optimisation: load and run the graph as written.
    None,
    /// Cheap, always-safe rewrites (constant folding, redundant node removal).
    Basic,
    /// Everything the backend offers (operator fusion, layout changes). The default.
    #[default]
    All,
}

/// Options for [`Backend::load`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoadOptions {
    /// Threads the backend may use for one run; `None` lets the backend decide.
    pub threads: Option<usize>,
    /// Graph optimisation level.
    pub optimization: OptLevel,
    /// How many plans specialised to concrete input shapes a model may keep; `0` disables
    /// specialisation. Default [`LoadOptions::DEFAULT_SHAPE_PLANS`].
    ///
    /// Only backends that optimise a graph ahead of time and optimise symbolic dimensions
    /// badly use it: today tract, where YuNet with a symbolic image size runs about 4x slower
    /// than with a fixed one. Such a backend, given a run whose input shapes fill symbolic
    /// dimensions, builds (once) a plan optimised for those concrete shapes, keeps the
    /// `shape_plans` most recently used, and runs the generic symbolic plan when a
    /// specialised build fails. A model whose inputs are all fixed is unaffected.
    ///
    /// A model that sees a new shape on every run (an LLM decoder whose sequence length grows
    /// each step) would pay a full graph optimisation per step, so a backend stops
    /// specialising such a model for good, and frees its cached plans, when a new shape
    /// arrives while the cache is full and none of its plans has been used twice.
    ///
    /// ONNX Runtime, candle and burn ignore it (they size their work at run time).
    pub shape_plans: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            threads: None,
            optimization: OptLevel::default(),
            shape_plans: Self::DEFAULT_SHAPE_PLANS,
        }
    }
}

impl LoadOptions {
    /// The default of [`LoadOptions::shape_plans`]: a handful of distinct input sizes (a
    /// detector's two or three image sizes, an embedder's batch sizes) without holding many
    /// optimised copies of a large graph.
    pub const DEFAULT_SHAPE_PLANS: usize = 4;

    /// Default options: backend-chosen thread count, full optimisation, up to
    /// [`LoadOptions::DEFAULT_SHAPE_PLANS`] shape-specialised plans.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how many shape-specialised plans a model may keep (see
    /// [`LoadOptions::shape_plans`]); `0` disables specialisation.
    pub fn with_shape_plans(mut self, plans: usize) -> Self {
        self.shape_plans = plans;
        self
    }

    /// Sets the thread count.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads.max(1));
        self
    }

    /// Sets the optimisation level.
    pub fn with_optimization(mut self, level: OptLevel) -> Self {
        self.optimization = level;
        self
    }
}

/// A model-loading engine: tract, ONNX Runtime, candle, burn...
pub trait Backend: Send + Sync {
    /// Short lower-case name (`tract`, `ort`...).
    fn name(&self) -> &'static str;

    /// The model formats [`Backend::load`] accepts; `load` starts with
    /// [`Backend::check_format`], so this list is what it enforces.
    fn formats(&self) -> &'static [ModelFormat];

    /// Loads a model. A file that is missing, corrupt, not in a supported format, or uses
    /// operators the backend lacks is an `Err` that says which.
    fn load(&self, source: ModelSource, options: &LoadOptions) -> Result<Box<dyn Model>>;

    /// The format of `source`, or [`Error::UnsupportedFormat`] unless it is one of
    /// [`Backend::formats`].
    fn check_format(&self, source: &ModelSource) -> Result<ModelFormat> {
        source.check_format(self.name(), self.formats())
    }
}

/// Runs an engine's loading code, turning a panic inside it into [`Error::InvalidModel`]
/// for `origin` (engines panic on some malformed files; a user's file must never crash us).
pub fn guard_load<T>(engine: &str, origin: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(Error::InvalidModel {
            origin: origin.to_string(),
            reason: format!("{engine} panicked while loading: {}", panic_message(&*p)),
        })
    })
}

/// Runs an engine's inference code, turning a panic inside it into [`Error::Run`] for
/// `backend` (e.g. a shape the engine accepted at load but cannot execute).
pub fn guard_run<T>(backend: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(Error::Run {
            backend: backend.to_string(),
            reason: format!("the engine panicked: {}", panic_message(&*p)),
        })
    })
}

/// The message of a caught panic: its `&str` or `String` payload, else `"(no message)"`.
///
/// Backends that run a third-party engine under [`std::panic::catch_unwind`] use it to turn
/// the engine's panic into an [`Error`] that says what happened.
///
/// ```
/// let p = std::panic::catch_unwind(|| panic!("index {} out of range", 3)).unwrap_err();
/// assert_eq!(edgeai_core::panic_message(&*p), "index 3 out of range");
/// ```
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_plans_default_and_builder() {
        assert_eq!(
            LoadOptions::new().shape_plans,
            LoadOptions::DEFAULT_SHAPE_PLANS
        );
        assert_eq!(LoadOptions::default().shape_plans, 4);
        let o = LoadOptions::new().with_threads(2).with_shape_plans(0);
        assert_eq!((o.threads, o.shape_plans), (Some(2), 0));
        assert_eq!(o.optimization, OptLevel::All);
    }

    #[test]
    fn guards_turn_panics_into_errors() {
        let e = guard_load("eng", "m.onnx", || -> Result<()> { panic!("bad {}", 1) }).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid model m.onnx: eng panicked while loading: bad 1"
        );
        let e = guard_run("eng", || -> Result<()> { panic!("oops") }).unwrap_err();
        assert!(matches!(e, Error::Run { .. }), "{e}");
        assert!(e.to_string().contains("oops"), "{e}");
        assert_eq!(guard_run("eng", || Ok(3)).unwrap(), 3);
    }

    #[test]
    fn format_is_guessed_and_checked() {
        let tflite = ModelSource::Path("m/face.tflite".into());
        assert_eq!(tflite.format(), ModelFormat::Tflite);
        let e = tflite
            .check_format("tract", &[ModelFormat::Onnx])
            .unwrap_err();
        assert_eq!(e.to_string(), "backend `tract` cannot load TFLite models");
        let gguf = ModelSource::Bytes(b"GGUF\x03\0\0\0".to_vec());
        assert_eq!(
            gguf.check_format("x", &[ModelFormat::Gguf, ModelFormat::Onnx])
                .unwrap(),
            ModelFormat::Gguf
        );
        assert_eq!(
            ModelSource::from("a/b.onnx")
                .check_format("x", &[ModelFormat::Onnx])
                .unwrap(),
            ModelFormat::Onnx
        );
    }
}
