//! # edgeai
//!
//! Run AI models on edge devices: face recognition and small-LLM chat, on the backend you
//! pick at compile time.
//!
//! This facade re-exports the workspace crates and offers [`backend`] /
//! [`default_backend`] over the backends compiled in. Cargo features pick them:
//! `tract` (default, pure Rust), `ort` (ONNX Runtime), `candle`, `burn`, `full` (all).
//!
//! ```no_run
//! use edgeai::core::{LoadOptions, Tensor};
//!
//! let backend = edgeai::default_backend()?;
//! let model = backend.load("models/face/sface.onnx".into(), &LoadOptions::new().with_threads(2))?;
//! let out = model.run(vec![Tensor::zeros(edgeai::core::DType::F32, vec![1, 3, 112, 112])?])?;
//! println!("{:?}", out[0].shape());
//! # Ok::<(), edgeai::core::Error>(())
//! ```
#![warn(missing_docs)]

pub mod bench;

pub use edgeai_core as core;
pub use edgeai_llm as llm;
pub use edgeai_onnx as onnx;
pub use edgeai_vision as vision;

#[cfg(feature = "burn")]
pub use edgeai_backend_burn as backend_burn;
#[cfg(feature = "candle")]
pub use edgeai_backend_candle as backend_candle;
#[cfg(feature = "ort")]
pub use edgeai_backend_ort as backend_ort;
#[cfg(feature = "tract")]
pub use edgeai_backend_tract as backend_tract;

use std::path::PathBuf;

use edgeai_core::{Backend, Error, Result};

/// Where backends find what they load at run time. The library reads no environment
/// variable: a program that honours `$EDGEAI_MODELS` or `$ORT_DYLIB_PATH` (as the `edgeai`
/// CLI does) reads them and passes them here.
///
/// ```
/// let config = edgeai::BackendConfig::default().with_models_dir("models");
/// assert!(edgeai::backend_with("no-such-backend", &config).is_err());
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BackendConfig {
    /// The models folder (default: [`edgeai_core::paths::models_dir`] of `None`, the
    /// `models/` folder found from the current directory). ONNX Runtime looks for its library
    /// in its `lib/`.
    pub models_dir: Option<PathBuf>,
    /// The ONNX Runtime shared library, when it is not in the models folder.
    pub ort_library: Option<PathBuf>,
}

impl BackendConfig {
    /// This configuration with the models folder `dir`.
    pub fn with_models_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.models_dir = Some(dir.into());
        self
    }

    /// This configuration with the ONNX Runtime library at `path`.
    pub fn with_ort_library(mut self, path: impl Into<PathBuf>) -> Self {
        self.ort_library = Some(path.into());
        self
    }
}

/// The graph backends compiled into this build, in order of preference: tract (pure Rust,
/// the reference the others are checked against), ONNX Runtime, candle (candle-onnx),
/// burn (our run-time ONNX interpreter on burn tensor ops).
const COMPILED: &[&str] = &[
    #[cfg(feature = "tract")]
    "tract",
    #[cfg(feature = "ort")]
    "ort",
    #[cfg(feature = "candle")]
    "candle",
    #[cfg(feature = "burn")]
    "burn",
];

/// Names of the graph backends compiled into this build, in order of preference.
pub fn available_backends() -> Vec<&'static str> {
    COMPILED.to_vec()
}

/// The backend called `name`, if it was compiled in.
///
/// ```
/// assert!(edgeai::backend("no-such-backend").is_err());
/// ```
pub fn backend(name: &str) -> Result<Box<dyn Backend>> {
    backend_with(name, &BackendConfig::default())
}

/// The backend called `name`, if it was compiled in, configured by `config`.
#[allow(unused_variables)] // `config` is read only by backends that need it (ort).
pub fn backend_with(name: &str, config: &BackendConfig) -> Result<Box<dyn Backend>> {
    match name {
        #[cfg(feature = "tract")]
        "tract" => Ok(Box::new(edgeai_backend_tract::TractBackend::new())),
        #[cfg(feature = "ort")]
        "ort" => {
            let mut b = edgeai_backend_ort::OrtBackend::new();
            if let Some(p) = &config.ort_library {
                b = b.with_library(p);
            }
            if let Some(d) = &config.models_dir {
                b = b.with_models_dir(d);
            }
            Ok(Box::new(b))
        }
        #[cfg(feature = "candle")]
        "candle" => Ok(Box::new(edgeai_backend_candle::CandleBackend::new())),
        #[cfg(feature = "burn")]
        "burn" => Ok(Box::new(edgeai_backend_burn::BurnBackend::new())),
        _ => Err(Error::BackendUnavailable {
            backend: name.to_string(),
            reason: format!(
                "not compiled in (compiled: {}); enable the Cargo feature `{name}`",
                if available_backends().is_empty() {
                    "none".to_string()
                } else {
                    available_backends().join(", ")
                }
            ),
        }),
    }
}

/// The first compiled-in backend ([`available_backends`] order): tract in a default build.
pub fn default_backend() -> Result<Box<dyn Backend>> {
    default_backend_with(&BackendConfig::default())
}

/// The first compiled-in backend, configured by `config`.
pub fn default_backend_with(config: &BackendConfig) -> Result<Box<dyn Backend>> {
    let name =
        available_backends()
            .into_iter()
            .next()
            .ok_or_else(|| Error::BackendUnavailable {
                backend: "default".into(),
                reason: "no graph backend compiled in; enable the feature `tract` or `ort`".into(),
            })?;
    backend_with(name, config)
}

/// Names of the LLM engines compiled into this build: `edgeai` (the native kernels, GGUF),
/// `candle` (with the `candle` feature, GGUF), and `onnx:<backend>` for every graph backend
/// (decoder-only ONNX models, e.g. from `edgeai export-onnx`).
///
/// ```
/// assert_eq!(edgeai::available_llm_engines()[0], "edgeai");
/// ```
pub fn available_llm_engines() -> Vec<String> {
    let mut names = vec!["edgeai".to_string()];
    if cfg!(feature = "candle") {
        names.push("candle".to_string());
    }
    names.extend(available_backends().iter().map(|b| format!("onnx:{b}")));
    names
}

/// The LLM engine called `name` (see [`available_llm_engines`]).
///
/// ```no_run
/// use edgeai::llm::{GenerateOptions, LlmOptions};
///
/// let engine = edgeai::llm_engine("onnx:tract")?;
/// let mut llm = engine.open("models/llm/smollm2-onnx".as_ref(), &LlmOptions::default())?;
/// println!("{}", llm.complete("The capital of France is", &GenerateOptions::default())?.text);
/// # Ok::<(), edgeai::llm::Error>(())
/// ```
pub fn llm_engine(name: &str) -> edgeai_llm::Result<Box<dyn edgeai_llm::LlmEngine>> {
    llm_engine_with(name, &BackendConfig::default())
}

/// The LLM engine called `name`, its graph backend (for `onnx:<backend>`) configured by
/// `config`.
pub fn llm_engine_with(
    name: &str,
    config: &BackendConfig,
) -> edgeai_llm::Result<Box<dyn edgeai_llm::LlmEngine>> {
    if let Some(b) = name.strip_prefix("onnx:") {
        return Ok(Box::new(edgeai_llm::OnnxEngine::new(backend_with(
            b, config,
        )?)));
    }
    match name {
        "edgeai" => Ok(Box::new(edgeai_llm::NativeEngine)),
        #[cfg(feature = "candle")]
        "candle" => Ok(Box::new(edgeai_backend_candle::CandleEngine)),
        _ => Err(edgeai_llm::Error::InvalidArgument(format!(
            "unknown LLM engine `{name}` (compiled in: {}{})",
            available_llm_engines().join(", "),
            if name == "candle" {
                "; build with the Cargo feature `candle`"
            } else {
                ""
            }
        ))),
    }
}
