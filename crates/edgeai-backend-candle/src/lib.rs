//! # edgeai-backend-candle
//!
//! The candle backend. It will hold (a later issue): ONNX graphs through `candle-onnx`'s
//! evaluator behind the `Backend` / `Model` traits, and the candle-transformers quantized
//! llama engine behind the `edgeai-llm` engine trait, used to cross-check the native decoder.
//! For now the crate compiles and offers nothing, so that the `candle` feature builds.
#![warn(missing_docs)]
