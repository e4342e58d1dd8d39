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
pub mod sampler;
pub mod tokenizer;

use std::path::Path;
use std::sync::Arc;

pub use chat::{ChatTemplate, Message, Role};
pub use decoder::{
    Architecture, DecoderConfig, DecoderEngine, DecoderModel, EngineOptions, KvCacheType, Packing,
};
pub use engine::LanguageModel;
pub use error::{Error, Result};
pub use generate::{Chat, GenerateOptions, Generation, StopReason, Throughput};
pub use sampler::{Sampler, SamplerConfig};
pub use tokenizer::Tokenizer;

/// A ready-to-use native LLM: model state, tokenizer and chat template.
pub struct Llm {
    /// The engine (model + KV cache).
    pub engine: DecoderEngine,
    /// The tokenizer from the same GGUF.
    pub tokenizer: Tokenizer,
    /// The chat template: the GGUF's when supported, Gemma's for a Gemma vocabulary without
    /// one, else ChatML; `None` when the GGUF's template is not one edgeai can apply.
    pub template: Option<ChatTemplate>,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm").field("engine", &self.engine).finish()
    }
}

impl Llm {
    /// Loads a GGUF of a supported architecture (see [`Architecture`]) with its tokenizer and
    /// chat template (repacking its weights as `opts.packing` says).
    pub fn open(path: impl AsRef<Path>, opts: &EngineOptions) -> Result<Self> {
        let model = DecoderModel::open_with(path, opts.packing)?;
        Self::from_model(model, opts)
    }

    /// Wraps an already loaded model (a new KV cache; weights shared).
    pub fn from_model(model: Arc<DecoderModel>, opts: &EngineOptions) -> Result<Self> {
        let tokenizer = Tokenizer::from_gguf(model.gguf())?;
        let template = match ChatTemplate::for_gguf(model.gguf()) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!("{e}; chat needs an explicit template");
                None
            }
        };
        let engine = DecoderEngine::new(model, opts)?;
        Ok(Self {
            engine,
            tokenizer,
            template,
        })
    }

    /// Continues `prompt` from an empty context.
    pub fn complete(&mut self, prompt: &str, opts: &GenerateOptions) -> Result<Generation> {
        self.engine.reset();
        let tokens = self.tokenizer.encode(prompt)?;
        generate::generate(
            &mut self.engine,
            &self.tokenizer,
            &tokens,
            opts,
            &mut |_| true,
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
