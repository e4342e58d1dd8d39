//! # edgeai-backend-burn
//!
//! The burn backend. It will hold (a later issue): ONNX loaded at run time (parsed with
//! `onnx-ir`) and executed node by node with burn tensor operations on the `flex` and
//! `ndarray` burn backends, behind the `Backend` / `Model` traits.
//! For now the crate compiles and offers nothing, so that the `burn` feature builds.
#![warn(missing_docs)]
