//! # edgeai-backend-candle
//!
//! The candle backend, in two parts:
//!
//! - [`CandleBackend`]: an edgeai [`Backend`](edgeai_core::Backend) for ONNX graphs, run by
//!   `candle-onnx`'s reference evaluator (`simple_eval`) on the CPU. Operators it lacks are
//!   reported when the model loads ([`edgeai_core::Error::UnsupportedOperator`]).
//! - [`CandleLlama`]: candle-transformers' quantized llama engine behind the `edgeai-llm`
//!   engine trait, used to cross-check and benchmark the native decoder on the same GGUF.
//! - [`CandleGemma3`]: Gemma 3 on candle's ops and quantized matmuls, the same role for
//!   `gemma3` GGUFs (candle-transformers' own `quantized_gemma3` has known bugs; see its
//!   docs). [`open_llm`] picks the engine from `general.architecture`.
//!
//! ```no_run
//! use edgeai_backend_candle::CandleBackend;
//! use edgeai_core::{Backend, DType, LoadOptions, Tensor};
//!
//! let model = CandleBackend::new().load("models/face/sface.onnx".into(), &LoadOptions::new())?;
//! let out = model.run(vec![Tensor::zeros(DType::F32, vec![1, 3, 112, 112])?])?;
//! assert_eq!(out[0].shape(), &[1, 128]);
//! # Ok::<(), edgeai_core::Error>(())
//! ```
//!
//! ```no_run
//! use edgeai_backend_candle::CandleLlama;
//! use edgeai_llm::LanguageModel;
//!
//! let mut m = CandleLlama::open("models/llm/SmolLM2-135M-Instruct.Q4_1.gguf", 512, 2)?;
//! let logits = m.forward(&[504, 3575, 282])?;
//! assert_eq!(logits.len(), m.vocab_size());
//! # Ok::<(), edgeai_llm::Error>(())
//! ```
#![warn(missing_docs)]

mod gemma3;
mod graph;
mod rewrite;

pub use gemma3::CandleGemma3;

pub use graph::{CandleBackend, CandleModel, SUPPORTED_OPS};

use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::{ModelWeights, MAX_SEQ_LEN};
use edgeai_core::{LoadOptions, RunPool};
use edgeai_llm::{Error as LlmError, LanguageModel, Result as LlmResult};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// candle failed.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// Reading the file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl From<Error> for LlmError {
    fn from(e: Error) -> Self {
        LlmError::Engine {
            engine: "candle".into(),
            reason: e.to_string(),
        }
    }
}

fn candle_err(e: candle_core::Error) -> LlmError {
    Error::Candle(e).into()
}

/// The pool an LLM engine runs candle in: `threads` threads, or rayon's global pool (every
/// core) for 0.
fn engine_pool(threads: usize) -> LlmResult<RunPool> {
    let opts = match threads {
        0 => LoadOptions::new(),
        n => LoadOptions::new().with_threads(n),
    };
    Ok(RunPool::new("candle", &opts)?)
}

/// The candle engine for a GGUF's `general.architecture` (`llama`: [`CandleLlama`], `gemma3`:
/// [`CandleGemma3`]); another architecture is an error naming it.
pub fn open_llm(
    path: impl AsRef<Path>,
    context_length: usize,
    threads: usize,
) -> LlmResult<Box<dyn LanguageModel>> {
    let path = path.as_ref();
    let arch = edgeai_llm::gguf::GgufFile::open(path)?
        .get_str("general.architecture")
        .unwrap_or("")
        .to_string();
    Ok(match arch.as_str() {
        "llama" => Box::new(CandleLlama::open(path, context_length, threads)?),
        "gemma3" => Box::new(CandleGemma3::open(path, context_length, threads)?),
        other => {
            return Err(LlmError::Unsupported(format!(
                "candle engine for architecture `{other}` (known: llama, gemma3)"
            )))
        }
    })
}

/// candle's LLM engine ([`open_llm`]) by name, for `edgeai::llm_engine("candle")`: opens a
/// GGUF with its tokenizer and template. The cache is always f32.
#[derive(Debug, Clone, Copy, Default)]
pub struct CandleEngine;

impl edgeai_llm::LlmEngine for CandleEngine {
    fn name(&self) -> &str {
        "candle"
    }

    fn source(&self) -> &'static str {
        "a GGUF file (llama or gemma3)"
    }

    fn open(&self, path: &Path, opts: &edgeai_llm::LlmOptions) -> LlmResult<edgeai_llm::Llm> {
        if let Some(kv) = opts.kv_cache {
            if kv != edgeai_llm::KvCacheType::F32 {
                return Err(LlmError::InvalidArgument(format!(
                    "engine `candle` keeps an f32 cache, not {}",
                    kv.name()
                )));
            }
        }
        let engine = open_llm(path, opts.context_length, opts.threads)?;
        let gguf = edgeai_llm::gguf::GgufFile::open(path)?;
        edgeai_llm::Llm::with_gguf_tokenizer(engine, &gguf)
    }
}

/// candle-transformers' quantized llama (`ModelWeights::from_gguf`) as a [`LanguageModel`].
///
/// Runs on the CPU inside its own rayon pool of the requested size, so thread counts are
/// comparable with the native engine's.
pub struct CandleLlama {
    model: ModelWeights,
    vocab: usize,
    ctx: usize,
    history: Vec<u32>,
    logits: Vec<f32>,
    pool: RunPool,
}

impl std::fmt::Debug for CandleLlama {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CandleLlama")
            .field("vocab", &self.vocab)
            .field("ctx", &self.ctx)
            .field("pos", &self.history.len())
            .finish()
    }
}

impl CandleLlama {
    /// Loads a llama GGUF with candle (weights are read into memory), with a context of
    /// `context_length` tokens (at most candle's 4096) and `threads` CPU threads (0 = all).
    pub fn open(path: impl AsRef<Path>, context_length: usize, threads: usize) -> LlmResult<Self> {
        let path = path.as_ref();
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let content = gguf_file::Content::read(&mut file).map_err(candle_err)?;
        let vocab = content
            .tensor_infos
            .get("token_embd.weight")
            .map(|t| t.shape.dims()[0])
            .ok_or_else(|| LlmError::Unsupported("tensor `token_embd.weight` missing".into()))?;
        let model =
            ModelWeights::from_gguf(content, &mut file, &Device::Cpu).map_err(candle_err)?;
        let pool = engine_pool(threads)?;
        Ok(Self {
            model,
            vocab,
            ctx: context_length.clamp(1, MAX_SEQ_LEN),
            history: Vec::new(),
            logits: Vec::new(),
            pool,
        })
    }
}

impl LanguageModel for CandleLlama {
    fn name(&self) -> &str {
        "candle"
    }

    fn vocab_size(&self) -> usize {
        self.vocab
    }

    fn context_length(&self) -> usize {
        self.ctx
    }

    fn position(&self) -> usize {
        self.history.len()
    }

    fn reset(&mut self) {
        self.model.clear_kv_cache();
        self.history.clear();
    }

    fn truncate(&mut self, len: usize) -> LlmResult<()> {
        if len > self.history.len() {
            return Err(LlmError::InvalidArgument(format!(
                "truncate to {len} tokens, only {} present",
                self.history.len()
            )));
        }
        if len == self.history.len() {
            return Ok(());
        }
        // candle's cache cannot be cut: rebuild it from the kept tokens.
        let keep: Vec<u32> = self.history[..len].to_vec();
        self.reset();
        if !keep.is_empty() {
            self.forward(&keep)?;
        }
        Ok(())
    }

    fn forward(&mut self, tokens: &[u32]) -> LlmResult<&[f32]> {
        edgeai_llm::engine::check_tokens(tokens, self.history.len(), self.ctx, self.vocab)?;
        let pos = self.history.len();
        let model = &mut self.model;
        let logits = self
            .pool
            .install(|| -> candle_core::Result<Vec<f32>> {
                let x = Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?;
                model.forward(&x, pos)?.squeeze(0)?.to_vec1::<f32>()
            })
            .map_err(candle_err)?;
        self.history.extend_from_slice(tokens);
        self.logits = logits;
        Ok(&self.logits)
    }
}
