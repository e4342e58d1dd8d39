//! # edgeai-llm
//!
//! Small-LLM inference on the `edgeai-core` quantized kernels: GGUF loading, tokenization,
//! decoders for the Llama family and Gemma 3 with a KV cache, sampling and chat templates.
//!
//! - [`gguf`]: GGUF v2/v3 reader (memory-mapped, bounds-checked).
//! - [`tokenizer`]: byte-level BPE and SentencePiece from GGUF metadata, or a
//!   `tokenizer.json`.
//! - [`decoder`]: the native decoder ([`DecoderModel`] weights, [`DecoderEngine`] state), one
//!   block skeleton for every [`Architecture`] (`llama`, `gemma3`).
//! - [`engine::LanguageModel`]: the engine trait (also implemented by candle's engine).
//! - [`onnx`]: [`OnnxDecoder`], a decoder-only ONNX model with a KV cache through any graph
//!   backend's `Model`.
//! - [`LlmEngine`]: an engine by name ([`NativeEngine`], [`OnnxEngine`], candle's in
//!   `edgeai-backend-candle`), opening a model file into an [`Llm`]; the facade's
//!   `edgeai::llm_engine(name)` lists and builds them.
//! - [`sampler`]: llama.cpp-ordered sampler chain.
//! - [`generate`]: streaming generation with stop strings, and multi-turn [`Chat`].
//! - [`chat`]: chat templates (ChatML).
//! - [`export`]: a llama GGUF to a decoder-only ONNX model (Optimum / transformers.js
//!   layout) with its `tokenizer.json` and configs.
//!
//! ```no_run
//! use edgeai_llm::{generate::GenerateOptions, Llm};
//!
//! let mut llm = Llm::open("models/llm/SmolLM2-135M-Instruct.Q4_1.gguf", &Default::default())?;
//! let out = llm.complete("The capital of France is", &GenerateOptions::default())?;
//! println!("{}", out.text);
//! # Ok::<(), edgeai_llm::Error>(())
//! ```
#![warn(missing_docs)]

pub mod chat;
pub mod decoder;
pub mod engine;
mod error;
pub mod export;
pub mod generate;
pub mod gguf;
pub mod onnx;
pub mod sampler;
pub mod tokenizer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use chat::{ChatTemplate, Message, Role};
pub use decoder::{
    Architecture, DecoderConfig, DecoderEngine, DecoderModel, EngineOptions, KvCacheType, Packing,
};
pub use engine::LanguageModel;
pub use error::{Error, Result};
pub use generate::{Chat, GenerateOptions, Generation, StopReason, Throughput};
pub use onnx::{OnnxDecoder, OnnxDecoderOptions};
pub use sampler::{Sampler, SamplerConfig};
pub use tokenizer::Tokenizer;

/// A ready-to-use LLM: an engine (model + KV cache) of any kind, its tokenizer and its chat
/// template. Open one with [`Llm::open`] (native, from a GGUF) or through an [`LlmEngine`].
pub struct Llm {
    /// The engine (model + KV cache): the native one, candle's, an ONNX decoder...
    /// [`Llm::native`] reaches the native engine's own methods.
    pub engine: Box<dyn LanguageModel>,
    /// The tokenizer (of the same GGUF, or the `tokenizer.json` next to an ONNX model).
    pub tokenizer: Tokenizer,
    /// The chat template: the model's when edgeai can apply it (Gemma's for a Gemma
    /// vocabulary without one); `None` when the model has none edgeai recognises.
    pub template: Option<ChatTemplate>,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("engine", &self.engine.describe())
            .field("vocab", &self.tokenizer.vocab_size())
            .field("template", &self.template)
            .finish()
    }
}

impl Llm {
    /// Puts an engine, a tokenizer and a template together.
    ///
    /// Errors when the tokenizer has fewer tokens than the engine's logits (the ids above
    /// would be sampled but could not be decoded).
    pub fn new(
        engine: Box<dyn LanguageModel>,
        tokenizer: Tokenizer,
        template: Option<ChatTemplate>,
    ) -> Result<Self> {
        if tokenizer.vocab_size() < engine.vocab_size() {
            return Err(Error::Tokenizer(format!(
                "the tokenizer has {} tokens but engine `{}` scores {}: ids {}.. could not be \
                 decoded",
                tokenizer.vocab_size(),
                engine.name(),
                engine.vocab_size(),
                tokenizer.vocab_size()
            )));
        }
        Ok(Self {
            engine,
            tokenizer,
            template,
        })
    }

    /// Loads a GGUF of a supported architecture (see [`Architecture`]) on the native engine,
    /// with its tokenizer and chat template (repacking its weights as `opts.packing` says).
    pub fn open(path: impl AsRef<Path>, opts: &EngineOptions) -> Result<Self> {
        let model = DecoderModel::open_with(path, opts.packing)?;
        Self::from_model(model, opts)
    }

    /// Wraps an already loaded native model (a new KV cache; weights shared).
    pub fn from_model(model: Arc<DecoderModel>, opts: &EngineOptions) -> Result<Self> {
        let tokenizer = Tokenizer::from_gguf(model.gguf())?;
        let template = template_of_gguf(model.gguf());
        let engine = DecoderEngine::new(model, opts)?;
        Self::new(Box::new(engine), tokenizer, template)
    }

    /// Any engine that ran a GGUF (candle's, say), with the tokenizer and template of that
    /// GGUF.
    pub fn with_gguf_tokenizer(
        engine: Box<dyn LanguageModel>,
        gguf: &gguf::GgufFile,
    ) -> Result<Self> {
        let tokenizer = Tokenizer::from_gguf(gguf)?;
        Self::new(engine, tokenizer, template_of_gguf(gguf))
    }

    /// The native engine, when this is one (for its own methods: model, packing, KV bytes).
    pub fn native(&self) -> Option<&DecoderEngine> {
        self.engine.as_any()?.downcast_ref()
    }

    /// Continues `prompt` from an empty context.
    pub fn complete(&mut self, prompt: &str, opts: &GenerateOptions) -> Result<Generation> {
        self.complete_streaming(prompt, opts, &mut |_| true)
    }

    /// Continues `prompt` from an empty context, handing each piece of text to `on_piece` as
    /// it is decoded (return `false` to stop).
    pub fn complete_streaming(
        &mut self,
        prompt: &str,
        opts: &GenerateOptions,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        self.engine.reset();
        let tokens = self.tokenizer.encode(prompt)?;
        generate::generate(
            self.engine.as_mut(),
            &self.tokenizer,
            &tokens,
            opts,
            on_piece,
        )
    }

    /// A new conversation with the model's template (ChatML if it has none we recognise).
    pub fn chat(&self, system: Option<&str>) -> Chat {
        Chat::new(
            self.template.clone().unwrap_or_else(ChatTemplate::chatml),
            system,
        )
    }
}

/// The GGUF's chat template when edgeai can apply it (a warning and `None` otherwise): the one
/// place the template is detected for GGUF-backed engines.
fn template_of_gguf(g: &gguf::GgufFile) -> Option<ChatTemplate> {
    match ChatTemplate::for_gguf(g) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!("{e}; chat needs an explicit template");
            None
        }
    }
}

/// What every engine takes when it opens a model.
#[derive(Debug, Clone)]
pub struct LlmOptions {
    /// Most tokens in the KV cache (prompt and replies). Default 2048.
    pub context_length: usize,
    /// Threads (0: all cores). The native engine's kernel pool is process-wide, so opening a
    /// native model with a non-zero count sets it for every native engine.
    pub threads: usize,
    /// The KV cache's element type, for engines that offer a choice (the native one);
    /// `None` is the engine's default. An engine without the choice refuses `Some`.
    pub kv_cache: Option<KvCacheType>,
    /// Whether the native engine repacks the weights at load.
    pub packing: Packing,
}

impl Default for LlmOptions {
    fn default() -> Self {
        Self {
            context_length: 2048,
            threads: 0,
            kv_cache: None,
            packing: Packing::Auto,
        }
    }
}

/// An LLM engine by name: opens a model file into an [`Llm`]. The facade's
/// `edgeai::llm_engine(name)` and `edgeai::available_llm_engines()` list the compiled-in ones.
pub trait LlmEngine: Send + Sync {
    /// The engine's name (`edgeai`, `candle`, `onnx:ort`...).
    fn name(&self) -> &str;

    /// What [`LlmEngine::open`] takes, for help texts ("a GGUF file", ...).
    fn source(&self) -> &'static str;

    /// Opens `path` (see [`LlmEngine::source`]) with a fresh KV cache.
    fn open(&self, path: &Path, opts: &LlmOptions) -> Result<Llm>;
}

/// The native engine ([`DecoderEngine`] on edgeai's kernels), for GGUF files.
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeEngine;

impl LlmEngine for NativeEngine {
    fn name(&self) -> &str {
        "edgeai"
    }

    fn source(&self) -> &'static str {
        "a GGUF file (llama or gemma3)"
    }

    fn open(&self, path: &Path, opts: &LlmOptions) -> Result<Llm> {
        if opts.threads != 0 {
            edgeai_core::quant::set_num_threads(opts.threads);
        }
        Llm::open(
            path,
            &EngineOptions {
                context_length: opts.context_length,
                kv_cache: opts.kv_cache.unwrap_or_default(),
                packing: opts.packing,
                ..Default::default()
            },
        )
    }
}

/// Decoder-only ONNX models ([`OnnxDecoder`]) on a graph backend.
pub struct OnnxEngine {
    backend: Box<dyn edgeai_core::Backend>,
    name: String,
    host_cache: bool,
}

impl std::fmt::Debug for OnnxEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxEngine")
            .field("name", &self.name)
            .finish()
    }
}

impl OnnxEngine {
    /// The engine `onnx:<backend name>` on `backend`.
    pub fn new(backend: Box<dyn edgeai_core::Backend>) -> Self {
        let name = format!("onnx:{}", backend.name());
        Self {
            backend,
            name,
            host_cache: false,
        }
    }

    /// This engine with the decoders' caches kept in host tensors, copied through every run
    /// ([`OnnxDecoderOptions::host_cache`]; for comparisons).
    pub fn with_host_cache(mut self, host_cache: bool) -> Self {
        self.host_cache = host_cache;
        self
    }

    /// The model, tokenizer and config paths for `path`: a directory holding `model.onnx`,
    /// or an `.onnx` file; `tokenizer.json` (required), `tokenizer_config.json` and
    /// `config.json` (optional) lie next to the model.
    fn files(path: &Path) -> Result<(PathBuf, PathBuf)> {
        let model = if path.is_dir() {
            path.join("model.onnx")
        } else {
            path.to_path_buf()
        };
        if !model.is_file() {
            return Err(Error::Io {
                path: model,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no ONNX model (pass model.onnx or its directory)",
                ),
            });
        }
        let dir = model.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok((model, dir))
    }
}

/// Reads an optional JSON file next to an ONNX model; absent is `None`, malformed an error.
fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source: e,
            })
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))
}

impl LlmEngine for OnnxEngine {
    fn name(&self) -> &str {
        &self.name
    }

    fn source(&self) -> &'static str {
        "an ONNX decoder (model.onnx with tokenizer.json next to it, or their directory)"
    }

    fn open(&self, path: &Path, opts: &LlmOptions) -> Result<Llm> {
        if opts.kv_cache.is_some() {
            return Err(Error::InvalidArgument(format!(
                "engine `{}` keeps the cache in the model's own element type: no KV cache choice",
                self.name
            )));
        }
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            return Err(Error::InvalidArgument(format!(
                "engine `{}` runs ONNX decoders, {} is a GGUF: use the `edgeai` or `candle` \
                 engine, or convert it with `edgeai export-onnx`",
                self.name,
                path.display()
            )));
        }
        let (model_path, dir) = Self::files(path)?;
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(Error::Io {
                path: tokenizer_path,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "an ONNX decoder needs its tokenizer.json next to the model",
                ),
            });
        }
        let config = read_json(&dir.join("config.json"))?;
        let tok_config = read_json(&dir.join("tokenizer_config.json"))?;
        let mut tokenizer = Tokenizer::from_json_file(tokenizer_path)?;
        if let Some(c) = &tok_config {
            // tokenizer.json does not say whether a BOS goes first; tokenizer_config.json does.
            let bos = c.get("bos_token").and_then(|b| match b {
                serde_json::Value::String(s) => Some(s.as_str()),
                // The older form: {"content": "<s>", ...}.
                other => other.get("content").and_then(|s| s.as_str()),
            });
            // Only a BOS that is prepended must resolve; without add_bos_token an unknown
            // bos_token is harmless and the tokenizer stays as loaded.
            if c.get("add_bos_token").and_then(|a| a.as_bool()) == Some(true) {
                tokenizer = tokenizer.with_bos(bos, true)?;
            }
        }
        let template = match tok_config
            .as_ref()
            .and_then(|c| c.get("chat_template"))
            .and_then(|t| t.as_str())
        {
            Some(t) => match ChatTemplate::detect(t) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!("{e}; chat needs an explicit template");
                    None
                }
            },
            None => None,
        };
        let max_positions = config
            .as_ref()
            .and_then(|c| c.get("max_position_embeddings"))
            .and_then(|v| v.as_u64())
            .map(|v| v as usize);
        let mut context_length = opts.context_length;
        if let Some(m) = max_positions {
            if context_length > m {
                tracing::warn!(
                    context_length,
                    max_positions = m,
                    "the model has positions for {m} tokens: context capped"
                );
                context_length = m;
            }
        }
        let vocab_size = config
            .as_ref()
            .and_then(|c| c.get("vocab_size"))
            .and_then(|v| v.as_u64())
            .map(|v| v as usize);
        // The sequence length changes every step: per-shape plans (tract) would optimise
        // the whole decoder graph again for each new length.
        let load = match opts.threads {
            0 => edgeai_core::LoadOptions::new(),
            n => edgeai_core::LoadOptions::new().with_threads(n),
        }
        .with_shape_plans(0);
        let model = self
            .backend
            .load(edgeai_core::ModelSource::Path(model_path.clone()), &load)?;
        let engine = OnnxDecoder::new(
            model,
            &OnnxDecoderOptions {
                context_length,
                vocab_size,
                name: Some(self.name.clone()),
                host_cache: self.host_cache,
            },
        )?;
        Llm::new(Box::new(engine), tokenizer, template)
    }
}
