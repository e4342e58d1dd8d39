//! # edgeai-vision
//!
//! Face recognition on the `edgeai-core` [`Model`](edgeai_core::Model) /
//! [`Backend`](edgeai_core::Backend) traits: image decoding, face detection with five
//! landmarks, ArcFace alignment, embeddings and a persistent gallery. It depends on no
//! backend crate: any backend that loads the models runs the pipeline.
#![warn(missing_docs)]
