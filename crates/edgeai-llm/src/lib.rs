//! # edgeai-llm
//!
//! Small-LLM inference on the `edgeai-core` quantized kernels: GGUF loading, tokenization,
//! a Llama-family decoder with a KV cache, sampling and chat templates.
#![warn(missing_docs)]
